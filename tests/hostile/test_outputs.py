"""Outputs never destroy what they replace: links, special files, read-only files, inputs, directories.

Generated cases; the oracles are `hostile_support`'s (see its docstring).
"""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

import pytest
import torch
from hostile_support import (
    Base,
    assert_one_error,
    file_names,
    raw_header,
    sentflow_cli,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import sentflow

# --- 1. outputs never destroy what they replace --------------------------------------------------------------------

# command -> (output suffix, the command's inputs that --out may name)
OUTPUT_COMMANDS = {
    "encode": (".npy", ("text",)),
    "fit": (".safetensors", ("x",)),
    "fit-pipeline": ("", ("text",)),
    "transform": (".npy", ("x", "calib")),
    "flows-sample": (".png", ("ckpt",)),
}
KINDS = ("symlink", "dangling-symlink", "fifo", "read-only", "directory", "input", "hardlink-to-input")


def output_args(base: Base, command: str, out: Path) -> list[object]:
    if command == "encode":
        return ["encode", base.text, "--out", out, "--model", base.bert]
    if command == "fit":
        return ["fit", "--data", base.x, "--out", out]
    if command == "fit-pipeline":  # a pipeline names its encoder, so it is fitted on text that encoder reads
        return ["fit", "--data", base.text, "--model", base.bert, "--dim", 2, "--out", out]
    if command == "transform":
        return ["transform", base.x, "--calib", base.calib, "--out", out]
    return ["flows", "sample", base.ckpt, "--n", "2", "--out", out]


def snapshot(path: Path) -> tuple:
    """What a path is and holds, without following links."""
    info = os.lstat(path)
    if stat.S_ISLNK(info.st_mode):
        return ("link", os.readlink(path))
    if stat.S_ISDIR(info.st_mode):
        return ("dir", stat.S_IMODE(info.st_mode), sorted((p.name, p.read_bytes()) for p in path.iterdir()))
    if stat.S_ISREG(info.st_mode):
        return ("file", stat.S_IMODE(info.st_mode), info.st_ino, path.read_bytes())
    return ("special", stat.S_IFMT(info.st_mode))


def make_target(kind: str, where: Path, name: str, victim: Path) -> Path:
    """An output path of `kind` in `where`; `victim` is an existing file the command must not touch."""
    target = where / name
    if kind == "symlink":
        target.symlink_to(victim)
    elif kind == "dangling-symlink":
        target.symlink_to(where / "nowhere")
    elif kind == "fifo":
        os.mkfifo(target)
    elif kind == "read-only":
        target.write_bytes(b"precious")
        target.chmod(0o444)
    elif kind == "directory":
        target.mkdir()
        (target / "notes.txt").write_text("precious")
    elif kind == "hardlink-to-input":
        os.link(victim, target)
    return target


@pytest.mark.parametrize(("command", "kind"), [(command, kind) for command in OUTPUT_COMMANDS for kind in KINDS])
@given(data=st.data())
@settings(max_examples=2, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_an_output_never_replaces_a_link_special_file_read_only_file_directory_or_input(base, command, kind, data):
    suffix, inputs = OUTPUT_COMMANDS[command]
    where = base.fresh()
    role = data.draw(st.sampled_from(inputs), label="input")
    original = getattr(base, role)
    victim = where / f"victim{original.suffix}"
    shutil.copy(original, victim)
    if kind == "input":
        target = victim
    else:
        target = make_target(kind, where, data.draw(file_names(suffix), label="name"), victim)
    args = [victim if a == original else a for a in output_args(base, command, target)]
    before, victim_before, names = snapshot(target), snapshot(victim), sorted(os.listdir(where))

    line = assert_one_error(sentflow_cli(*args))

    assert snapshot(target) == before and snapshot(victim) == victim_before
    assert sorted(os.listdir(where)) == names, "a temporary file was left behind"
    assert str(target) in line, line  # names the target, not a temporary file


@pytest.mark.parametrize("command", OUTPUT_COMMANDS)
@given(data=st.data())
@settings(max_examples=3, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_a_new_output_with_any_valid_name_is_written(base, command, data):
    suffix, _ = OUTPUT_COMMANDS[command]
    where = base.fresh()
    target = where / data.draw(file_names(suffix), label="name")
    run = sentflow_cli(*output_args(base, command, target))
    assert run.code == 0, run.err
    assert target.is_dir() if command == "fit-pipeline" else target.is_file()
    assert os.listdir(where) == [target.name], "a temporary file was left behind"
    if command == "fit":
        assert sentflow.load(target).n_features_in_ == 4


@pytest.mark.parametrize("command", OUTPUT_COMMANDS)
@given(strays=st.lists(st.sampled_from(["file", "directory", "partial", "state"]), min_size=1, max_size=4))
@settings(max_examples=3, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_temporary_files_left_by_a_killed_run_do_not_change_the_next_run(base, command, strays):
    suffix, _ = OUTPUT_COMMANDS[command]
    clean, dirty = base.fresh(), base.fresh()
    name = f"out{suffix}"
    for i, stray in enumerate(strays):  # what a run killed mid-write leaves beside its output
        path = dirty / {
            "file": f".{name}.{i}x{suffix}",
            "directory": f".{name}.{i}x",
            "partial": f".{name}.partial",
        }.get(stray, f".{name}.partial.json")
        if stray == "directory":
            path.mkdir()
            (path / "calibration.safetensors").write_bytes(b"half")
        else:
            path.write_bytes(b"\x93NUMPY half written")
    assert sentflow_cli(*output_args(base, command, clean / name)).code == 0
    run = sentflow_cli(*output_args(base, command, dirty / name))
    assert run.code == 0, run.err
    assert_same_output(dirty / name, clean / name)


def assert_same_output(path: Path, reference: Path) -> None:
    """Same content: files compared by what they hold (safetensors headers may order their keys differently)."""
    if reference.is_dir():
        assert sorted(os.listdir(path)) == sorted(os.listdir(reference))
        for name in os.listdir(reference):
            assert_same_output(path / name, reference / name)
    elif reference.suffix == ".safetensors":
        (tensors, meta), (expected, expected_meta) = raw_header(path), raw_header(reference)
        assert meta == expected_meta and tensors.keys() == expected.keys()
        assert all(torch.equal(tensors[k], expected[k]) for k in expected)
    else:
        assert path.read_bytes() == reference.read_bytes()
