"""Saved tensors: damaged files are detected, non-finite weights are never written or loaded, outputs are safe."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from forge import forge_tensors

import sentflow
from sentflow.errors import SentflowError
from sentflow.files.io import load_tensors, save_tensors
from sentflow.files.schemas import CalibrationHeader


def fitted(tmp_path):
    path = tmp_path / "w.safetensors"
    sentflow.Whitening(n_components=3).fit(np.random.default_rng(0).standard_normal((100, 6))).save(path)
    return path


def test_a_flipped_bit_is_detected(tmp_path):
    path = fitted(tmp_path)
    data = bytearray(path.read_bytes())
    data[-5] ^= 0x10  # a bit inside the last tensor's bytes
    path.write_bytes(bytes(data))
    with pytest.raises(SentflowError, match="checksum mismatch: the file is damaged"):
        sentflow.load(path)


def test_non_finite_weights_are_neither_written_nor_loaded(tmp_path):
    weights = {"mean": torch.tensor([1.0, float("nan")])}
    with pytest.raises(SentflowError, match="refusing to write NaN/Inf values"):
        save_tensors(tmp_path / "x.safetensors", weights, {"method": "whitening"})
    assert not list(tmp_path.iterdir())
    good = fitted(tmp_path)
    tensors, meta = load_tensors(good, CalibrationHeader)
    tensors["weight"][0, 0] = float("inf")  # a foreign writer: valid header and checksum, an Inf weight
    forge_tensors(tmp_path / "inf.safetensors", tensors, meta.model_dump())
    with pytest.raises(SentflowError, match="tensor 'weight' holds NaN/Inf values"):
        sentflow.load(tmp_path / "inf.safetensors")


def test_metadata_of_the_wrong_json_type_is_refused(tmp_path):
    forge_tensors(tmp_path / "m.safetensors", {"a": torch.zeros(1)}, "[1, 2]")
    with pytest.raises(SentflowError, match="sentflow metadata: Input should be an object"):
        sentflow.load(tmp_path / "m.safetensors")


def whitening_header(**changes) -> dict:
    header = {"method": "whitening", "version": "1", "params": {}, "dim_in": 6, "dim_out": 6}
    return {**header, **changes}


@pytest.mark.parametrize(
    ("meta", "message"),
    [
        (whitening_header(dim_in="6"), "field 'dim_in': Input should be a valid integer"),
        (whitening_header(dim_in=10**12), "field 'dim_in': Input should be less than or equal to 65536"),
        (whitening_header(dim_out=True), "field 'dim_out': Input should be a valid integer"),
        (whitening_header(surprise=1), "field 'surprise': Extra inputs are not permitted"),
        (whitening_header(model=["a"]), "field 'model'"),
        (whitening_header(method="pickle"), "unknown calibration method 'pickle'"),
        (whitening_header(params={"eps": -1.0}), "whitening parameters: field 'eps'"),
        (whitening_header(params={"power": "0.5"}), "whitening parameters: field 'power'"),
        (whitening_header(params={"device": "cuda"}), "whitening parameters: field 'device': Extra inputs"),
        (whitening_header(params={"n_components": 4}), "dim_out 6 does not match n_components=4"),
        (whitening_header(dim_out=4, params={"n_components": 4}), "do not match a 6 -> 4 whitening"),
        ({"method": "whitening"}, "field 'version': Field required"),
        ('{"method": NaN}', "field 'method': Input should be a valid string"),
        ('{"a": ' * 5000, "Invalid JSON: recursion limit exceeded"),
    ],
)
def test_calibration_headers_are_validated_against_their_schema(tmp_path, meta, message):
    sentflow.Whitening().fit(np.random.default_rng(0).standard_normal((100, 6))).save(tmp_path / "full.safetensors")
    tensors, _ = load_tensors(tmp_path / "full.safetensors", CalibrationHeader)
    path = forge_tensors(tmp_path / "crafted.safetensors", tensors, meta)
    with pytest.raises(SentflowError, match=message) as info:
        sentflow.load(path)
    assert str(info.value).startswith(str(path)) and "\n" not in str(info.value)


def test_a_flow_header_asking_for_a_huge_model_is_refused_before_allocating(tmp_path, monkeypatch):
    import sentflow.calibration.bertflow as bertflow

    X = np.random.default_rng(0).standard_normal((64, 4))
    flow = sentflow.BertFlow(levels=1, depth=1, hidden=8, epochs=1, progress=False).fit(X)
    flow.save(tmp_path / "flow.safetensors")
    tensors, header = load_tensors(tmp_path / "flow.safetensors", CalibrationHeader)
    huge = {**header.model_dump(), "dim_in": 65536, "dim_out": 65536}
    huge["params"] = {**huge["params"], "levels": 16, "depth": 256, "hidden": 65536}  # ~10^13 weights if built
    forged = forge_tensors(tmp_path / "huge.safetensors", tensors, huge)

    built = []
    real_build = bertflow.vector_glow

    def build_on_meta_only(*args, **kwargs):  # no memory: only shapes, on torch's meta device
        module = real_build(*args, **kwargs)
        built.append(all(p.is_meta for p in module.parameters()))
        return module

    monkeypatch.setattr(bertflow, "vector_glow", build_on_meta_only)
    with pytest.raises(SentflowError, match="the model described by the header needs"):
        sentflow.load(forged)
    assert built and all(built)  # its levels built as shapes only, and refused before a real build


def test_temporary_files_of_killed_runs_are_removed_by_the_next_write(tmp_path):
    import subprocess
    import sys

    from sentflow.files.io import save_npy, temp_prefix

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)
    target = tmp_path / "out.npy"
    orphan = tmp_path / f"{temp_prefix(target, dead_pid)}x1.npy"  # a killed writer's temp file
    staging = tmp_path / f"{temp_prefix(target, dead_pid)}x2"  # and its staging directory
    live = tmp_path / f"{temp_prefix(target)}x3.npy"  # this process is alive: never touched
    other = tmp_path / ".other.npy.1.x4.npy"  # another target's name
    user_file, user_dir = tmp_path / ".out.npy.20251124.txt", tmp_path / ".out.npy.777777"  # not sentflow's
    user_dir.mkdir()
    for path in (orphan, live, other, user_file):
        path.write_bytes(b"partial")
    staging.mkdir()
    save_npy(target, np.zeros((2, 2), np.float32))
    assert not orphan.exists() and not staging.exists() and live.exists() and other.exists()
    kept = [target, live, other, user_file, user_dir]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in kept)


def test_an_interrupted_directory_swap_keeps_the_only_copy(tmp_path):
    import subprocess
    import sys

    from sentflow.files.io import atomic_directory, remove_orphans, temp_prefix

    dead_pid = int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True).stdout)
    target = tmp_path / "pipe"
    old = tmp_path / f"{temp_prefix(target, dead_pid)}old.x"  # killed after moving the previous output aside
    (old / "previous").mkdir(parents=True)
    remove_orphans(target)
    assert (old / "previous").is_dir()  # target is missing: the old copy is all there is, so it is kept
    target.mkdir()
    with atomic_directory(target, marker="m.json") as staging:
        (staging / "m.json").write_text("{}")
    assert not old.exists() and (target / "m.json").is_file()


def test_outputs_beyond_float32_are_refused_not_written_as_inf(tmp_path):
    from sentflow.files.npy import npy_writer

    whitening = sentflow.Whitening().fit(np.random.default_rng(0).standard_normal((100, 4)))
    with pytest.raises(SentflowError, match="whitening output overflows"):
        whitening.transform(np.full((3, 4), 1.7e308))  # finite float64 inputs, an Inf result
    refused = pytest.raises(SentflowError, match="refusing to write NaN or Inf values .3 rows, first at row 0.")
    with refused, npy_writer(tmp_path / "o.npy", 3, 4) as writer:
        writer.write(np.full((3, 4), 1e300))  # finite in float64, Inf once stored as float32
    assert not (tmp_path / "o.npy").exists()


def test_a_npy_header_numpy_cannot_tokenize_is_one_line(tmp_path):
    from sentflow.files.npy import load_npy

    path = tmp_path / "x.npy"
    np.save(path, np.zeros((6, 4), np.float32))
    raw = bytearray(path.read_bytes())
    raw[raw.index(b", 4)")] = ord("(")  # unbalanced brackets: tokenize.TokenError inside numpy
    path.write_bytes(bytes(raw))
    with pytest.raises(SentflowError, match="x.npy: not a readable .npy array"):
        load_npy(path)
