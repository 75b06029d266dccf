"""No input produces a traceback, and option values are one-line errors or work.

Generated cases; the oracles are `hostile_support`'s (see its docstring).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hostile_support import (
    FEW,
    Base,
    Run,
    assert_ok_or_one_error,
    assert_one_error,
    bounded,
    load_npy_finite,
    sentflow_cli,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import sentflow
from sentflow.errors import SentflowError
from sentflow.flows.checkpoint import read_checkpoint

# --- 4. no input produces a traceback ------------------------------------------------------------------------------


@st.composite
def damaged(draw, original: bytes) -> bytes:
    """Random bytes, a truncation, or a few flipped bits of a valid file."""
    how = draw(st.sampled_from(["random", "truncated", "flipped"]))
    if how == "random":
        return draw(st.binary(max_size=300))
    if how == "truncated":
        return original[: draw(st.integers(0, len(original) - 1))]
    data = bytearray(original)
    for _ in range(draw(st.integers(1, 3))):
        data[draw(st.integers(0, len(data) - 1))] ^= 1 << draw(st.integers(0, 7))
    return bytes(data)


DAMAGED_INPUTS = {  # role -> (the file, the command with {} for the damaged copy)
    "embeddings": ("x", ["transform", "{}", "--calib", "<calib>", "--out", "<out>.npy"]),
    "calibration": ("calib", ["transform", "<x>", "--calib", "{}", "--out", "<out>.npy"]),
    "fit data": ("x", ["fit", "--data", "{}", "--out", "<out>.safetensors"]),
    "diagnose": ("x", ["diagnose", "{}", "--json"]),
    "checkpoint": ("ckpt", ["flows", "eval", "{}"]),
    "sample": ("ckpt", ["flows", "sample", "{}", "--n", "2", "--out", "<out>.png"]),
}


def _fill(arg: str, values: dict[str, Path]) -> str:
    for key, value in values.items():
        arg = arg.replace(key, str(value))
    return arg


@pytest.mark.parametrize("role", DAMAGED_INPUTS)
@given(data=st.data())
@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_damaged_files_never_produce_a_traceback(base, role, data):
    attr, template = DAMAGED_INPUTS[role]
    original = getattr(base, attr)
    where = base.fresh()
    copy_path = where / f"in{original.suffix}"
    copy_path.write_bytes(data.draw(damaged(original.read_bytes())))
    fill = {"{}": copy_path, "<calib>": base.calib, "<x>": base.x, "<out>": where / "out"}
    args = [_fill(a, fill) for a in template]
    with bounded():
        run = sentflow_cli(*args)
    if assert_ok_or_one_error(run) and (where / "out.npy").exists():
        load_npy_finite(where / "out.npy")


def test_a_real_process_prints_one_line_for_a_damaged_calibration(base):
    damaged_file = base.fresh() / "c.safetensors"
    damaged_file.write_bytes(base.calib.read_bytes()[:-7])
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "sentflow.cli",
            "transform",
            str(base.x),
            "--calib",
            str(damaged_file),
            "--out",
            "z.npy",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=damaged_file.parent,
    )
    assert_one_error(Run(done.returncode, done.stdout, done.stderr))


# --- 5. the one-line rule for option values ------------------------------------------------------------------------

option_values = st.one_of(
    st.sampled_from(["abc", "0", "-1", "nan", "inf", "-inf", "1e3", "2.5", "", " ", "0x10", "1_000", "--", "1e-400"]),
    st.integers(-(2**70), 2**70).map(str),
    st.integers(-3, 70).map(lambda k: str(2**k)),
    st.floats().map(repr),
)


def options_case(base: Base, where: Path, option: str, value: str) -> list[object]:
    """A cheap command taking `option`, with `value` for it."""
    x, out = base.x, where / "out"
    if option in ("--dim", "--power"):
        return ["fit", "--data", x, "--out", f"{out}.safetensors", option, value]
    if option in ("--levels", "--depth", "--hidden", "--epochs", "--lr", "--seed"):
        return ["fit", "--method", "flow", "--data", x, "--out", f"{out}.safetensors", option, value]
    if option in ("--threads", "--batch-size", "--max-length"):
        return ["fit", "--data", x, "--out", out, "--model", base.bert, option, value]  # a pipeline records them
    if option == "--chunk-lines":
        return ["encode", base.text, "--out", f"{out}.npy", "--model", base.bert, option, value]
    if option == "--n-pairs":
        return ["diagnose", x, "--json", option, value]
    if option.startswith("flows-train"):
        flag = option.removeprefix("flows-train")
        budget = ["--minutes", "0.005"] if flag != "--minutes" else []
        tiny = '{"hidden": 4, "depth": 1, "couplings": 2}'
        return ["flows", "train", "nice", "--out", out, "--config", tiny, *budget, flag, value]
    return ["flows", "sample", base.ckpt, "--out", f"{out}.png", option, value]


OPTIONS = [
    "--dim",
    "--power",
    "--levels",
    "--depth",
    "--hidden",
    "--epochs",
    "--lr",
    "--seed",
    "--threads",
    "--batch-size",
    "--max-length",
    "--chunk-lines",
    "--n-pairs",
    "--n",
    "--temperature",
    "--scale",
    "flows-train--epochs",
    "flows-train--batch-size",
    "flows-train--lr",
    "flows-train--minutes",
]


@pytest.mark.parametrize("option", OPTIONS)
@given(value=option_values)
@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_option_values_are_one_line_errors_or_work(base, option, value):
    where = base.fresh()
    args = options_case(base, where, option, value)
    with bounded(seconds=30):
        run = sentflow_cli(*args)
    if run.code != 0:
        line = assert_one_error(run, user=False)
        assert "internal error" not in line, line  # a value too large for memory may say "out of memory"
        return
    for path in where.iterdir():  # whatever a command writes, sentflow reads back
        if path.suffix == ".npy":
            load_npy_finite(path)
        elif path.suffix == ".safetensors" or (path / "pipeline.json").is_file():
            sentflow.load(path)
        elif (path / "checkpoint.safetensors").is_file():
            read_checkpoint(path / "checkpoint.safetensors")


@pytest.fixture(scope="module")
def tiny_encoder(base):
    return sentflow.Encoder(str(base.bert), "last-avg", cache=False)


@given(text=st.text(max_size=40))
@FEW
def test_one_string_is_never_encoded_as_its_characters(tiny_encoder, text):
    try:
        vectors = tiny_encoder.encode(text)
    except SentflowError as exc:
        assert "\n" not in str(exc)
        return
    assert vectors.shape == (1, tiny_encoder.dim) and np.isfinite(vectors).all()


@given(value=st.sampled_from(["abc", "0", "-5", "nan", "2.5"]))
@settings(max_examples=2, deadline=None)
def test_a_real_process_prints_one_line_for_a_bad_option(base, value):
    done = subprocess.run(
        [sys.executable, "-m", "sentflow.cli", "fit", "--data", str(base.x), "--out", "o.safetensors", "--dim", value],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=base.fresh(),
    )
    assert_one_error(Run(done.returncode, done.stdout, done.stderr))
