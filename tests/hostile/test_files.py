"""File contents are validated before use: headers, configs, checkpoints, resume states, npy, IDX.

Generated cases; the oracles are `hostile_support`'s (see its docstring).
"""

from __future__ import annotations

import copy
import json
import math
import re
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from forge import forge_tensors
from hostile_support import (
    FEW,
    SOME,
    assert_ok_or_one_error,
    assert_one_error,
    bounded,
    load_npy_finite,
    raw_header,
    sentflow_cli,
)
from hypothesis import given
from hypothesis import strategies as st

import sentflow
from sentflow.errors import SentflowError
from sentflow.flows.checkpoint import read_checkpoint

# --- 3. file contents are validated before use ---------------------------------------------------------------------

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**80), 2**80),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=12),
)
json_values = st.recursive(
    json_scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
)
# JSON text that json.dumps never writes: not JSON at all, or beyond any bound
RAW_TOKENS = [
    "NaN",
    "Infinity",
    "-Infinity",
    "1e999",
    "9" * 5000,
    "[" * 3000 + "]" * 3000,
    '{"a":' * 3000 + "1" + "}" * 3000,
]
SLOT = "\x00slot\x00"


def kind_of(value) -> str:
    """The JSON type of a value; ints and floats are both numbers."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    return type(value).__name__


def key_paths(meta: dict) -> list[tuple[str, ...]]:
    """Top-level keys and the keys of nested objects, as paths."""
    paths = []
    for key, value in meta.items():
        paths.append((key,))
        if isinstance(value, dict):
            paths += [(key, inner) for inner in value]
    return paths


@st.composite
def mutated_headers(draw, meta: dict, keep_strings: tuple[str, ...] = ()) -> tuple[str, bool]:
    """(JSON text, must be refused): `meta` with one key replaced, deleted or added, or a raw token put in.

    A replacement by another JSON type than the original's (null aside) and any raw token must be refused.
    Keys in `keep_strings` are never given a string (a model name would make the loader look on the hub).
    """
    meta = copy.deepcopy(meta)
    path = draw(st.sampled_from(key_paths(meta)), label="key")
    parent = meta
    for key in path[:-1]:
        parent = parent[key]
    old = parent[path[-1]]
    action = draw(st.sampled_from(["replace", "delete", "add", "raw"]), label="action")
    if action == "delete":
        del parent[path[-1]]
        return json.dumps(meta), False
    if action == "add":
        parent[draw(st.text(min_size=1, max_size=8).filter(lambda k: k not in parent), label="new key")] = draw(
            json_values
        )
        return json.dumps(meta), False
    if action == "raw":
        parent[path[-1]] = SLOT
        token = draw(st.sampled_from(RAW_TOKENS), label="token")
        return json.dumps(meta).replace(json.dumps(SLOT), token), True
    values = json_values.filter(lambda v: not isinstance(v, str)) if path[-1] in keep_strings else json_values
    new = draw(values, label="value")
    parent[path[-1]] = new
    return json.dumps(meta), None not in (old, new) and kind_of(new) != kind_of(old)


@given(data=st.data())
@SOME
def test_calibration_headers_are_validated(base, data):
    tensors, meta = raw_header(base.calib)
    text, must_fail = data.draw(mutated_headers(meta))
    where = base.fresh()
    forged = forge_tensors(where / "c.safetensors", tensors, text)
    try:
        loaded = sentflow.load(forged)
    except SentflowError as exc:
        assert "\n" not in str(exc)
        loaded = None
    assert not (must_fail and loaded is not None), f"loaded a calibration whose header is {text[:300]}"
    run = sentflow_cli("transform", base.x, "--calib", forged, "--out", where / "z.npy")
    if assert_ok_or_one_error(run):
        load_npy_finite(where / "z.npy")


@given(depth=st.integers(1, 20_000), brackets=st.sampled_from(["[]", "{}"]))
@FEW
def test_deeply_nested_headers_are_refused(base, depth, brackets):
    tensors, _ = raw_header(base.calib)
    opening, closing = brackets
    text = (opening if opening == "[" else '{"a":') * depth + ("0" if opening == "{" else "") + closing * depth
    forged = forge_tensors(base.fresh() / "c.safetensors", tensors, text)
    with pytest.raises(SentflowError):
        sentflow.load(forged)


@st.composite
def poisoned_tensors(draw, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The same tensors with one element of one floating tensor made NaN, +Inf or -Inf."""
    tensors = {k: v.clone() for k, v in tensors.items()}
    name = draw(st.sampled_from(sorted(k for k, v in tensors.items() if v.is_floating_point() and v.numel())))
    flat = tensors[name].view(-1)
    flat[draw(st.integers(0, flat.numel() - 1))] = draw(st.sampled_from([math.nan, math.inf, -math.inf]))
    return tensors


@given(data=st.data())
@FEW
def test_non_finite_weights_are_refused_even_with_a_valid_checksum(base, data):
    where = base.fresh()
    for path, args in (
        (base.calib, ["transform", base.x, "--calib", "{}", "--out", where / "z.npy"]),
        (base.ckpt, ["flows", "eval", "{}"]),
    ):
        tensors, meta = raw_header(path)
        forged = forge_tensors(where / path.name, data.draw(poisoned_tensors(tensors)), meta)
        assert_one_error(sentflow_cli(*[forged if a == "{}" else a for a in args]))
        assert not (where / "z.npy").exists()


@pytest.fixture(scope="module")
def pipeline_dir(base) -> Path:
    from sentflow.pipeline import Pipeline

    directory = base.root / "pipeline"
    encoder = sentflow.Encoder(str(base.bert), "last-avg", cache=False)
    Pipeline(encoder, sentflow.Whitening().fit(np.random.default_rng(1).standard_normal((80, 32)))).save(directory)
    return directory


@given(data=st.data())
@FEW
def test_pipeline_configs_are_validated(base, pipeline_dir, data):
    config = json.loads((pipeline_dir / "pipeline.json").read_text())
    text, must_fail = data.draw(mutated_headers(config, keep_strings=("model",)))
    where = base.fresh()
    shutil.copytree(pipeline_dir, where / "p")
    (where / "p" / "pipeline.json").write_text(text)
    np.save(where / "x.npy", np.random.default_rng(2).standard_normal((5, 32)).astype(np.float32))
    run = sentflow_cli("transform", where / "x.npy", "--calib", where / "p", "--out", where / "z.npy")
    if assert_ok_or_one_error(run):
        assert not must_fail, f"a pipeline with config {text[:300]} was used"
        load_npy_finite(where / "z.npy", (5, 32))


@given(data=st.data())
@SOME
def test_flow_checkpoint_configs_are_validated_before_anything_is_built(base, data):
    tensors, meta = raw_header(base.ckpt)
    text, must_fail = data.draw(mutated_headers(meta))
    forged = forge_tensors(base.fresh() / "ckpt.safetensors", tensors, text)
    with bounded():
        run = sentflow_cli("flows", "eval", forged)
    if assert_ok_or_one_error(run):
        assert not must_fail, f"evaluated a checkpoint whose header is {text[:300]}"
        assert math.isfinite(float(re.search(r"test bits/dim: (\S+)", run.out).group(1)))


@given(
    key=st.sampled_from(["hidden", "depth", "couplings"]),
    value=st.integers(2**10, 2**16) | st.sampled_from([2**16, 2**20, 2**31, 2**63 - 1]),
)
@FEW
def test_a_checkpoint_asking_for_a_huge_model_is_refused_without_allocating_it(base, key, value):
    tensors, meta = raw_header(base.ckpt)
    meta["config"] = {**meta["config"], key: value}
    forged = forge_tensors(base.fresh() / "ckpt.safetensors", tensors, meta)
    with bounded(memory=1 << 30):
        assert_one_error(sentflow_cli("flows", "eval", forged))


TINY_NICE = '{"hidden": 4, "depth": 1, "couplings": 2}'


@pytest.fixture(scope="module")
def trained_run(base) -> Path:
    """A run directory of `flows train` after one epoch: its checkpoint holds the training counters."""
    run = sentflow_cli("flows", "train", "nice", "--out", base.root / "run", "--epochs", "1", "--config", TINY_NICE)
    assert run.code == 0, run.err
    return base.root / "run"


@given(data=st.data())
@FEW
def test_training_counters_are_validated_on_resume(base, trained_run, data):
    checkpoint = trained_run / "checkpoint.safetensors"
    tensors, meta = raw_header(checkpoint)
    text, must_fail = data.draw(mutated_headers(meta))
    where = base.fresh()
    forge_tensors(where / checkpoint.name, tensors, text)
    args = ["flows", "train", "nice", "--out", where, "--resume", "--epochs", "2", "--config", TINY_NICE]
    with bounded():
        run = sentflow_cli(*args, "--minutes", "0.005")
    if assert_ok_or_one_error(run):
        assert not must_fail, f"resumed from a checkpoint whose header is {text[:300]}"
        read_checkpoint(where / checkpoint.name)


class Interrupted(Exception):
    pass


@pytest.fixture(scope="module")
def interrupted_run(base) -> tuple[Path, int, Path]:
    """An encode of base.text into `o.npy` stopped after 2 of 5 rows: (its directory, rows done, a .npy of what
    the full run writes)."""
    from sentflow.streaming import encode_file

    encoder = sentflow.Encoder(str(base.bert), "last-avg", cache=False)

    class Stopping:
        calls = 0

        def __getattr__(self, name):
            return getattr(encoder, name)

        def encode(self, texts):
            Stopping.calls += 1
            if Stopping.calls > 2:
                raise Interrupted
            return encoder.encode(texts)

    directory = base.root / "interrupted"
    directory.mkdir()
    with pytest.raises(Interrupted):
        encode_file(Stopping(), base.text, directory / "o.npy", chunk_lines=1)
    hidden = sorted(p.name for p in directory.iterdir())
    assert hidden == [".o.npy.partial", ".o.npy.partial.json"], hidden
    reference = base.root / "encoded.npy"
    np.save(reference, encoder.encode(base.text.read_text().splitlines()))
    return directory, 2, reference


@given(data=st.data())
@FEW
def test_resume_states_are_validated(base, interrupted_run, data):
    source, done, reference = interrupted_run
    state = json.loads((source / ".o.npy.partial.json").read_text())
    assert state["done"] == done
    text, must_fail = data.draw(mutated_headers(state))
    where = base.fresh()
    shutil.copytree(source, where, dirs_exist_ok=True)
    (where / ".o.npy.partial.json").write_text(text)
    run = sentflow_cli("encode", base.text, "--out", where / "o.npy", "--model", base.bert, "--resume")
    if assert_ok_or_one_error(run):
        assert not must_fail, f"resumed from the state {text[:300]}"
        expected = np.load(reference)
        result = load_npy_finite(where / "o.npy", expected.shape)
        resumed_from = json.loads(text).get("done")
        if not (isinstance(resumed_from, int) and resumed_from > done):  # rows it says are done but are not
            np.testing.assert_allclose(result, expected, rtol=1e-5, atol=1e-6)


NPY_DTYPES = ["<f4", "<f8", ">f8", "<f2", "<i4", "|u1", "|b1", "<c8", "<c16", "|O", "<U4", "<M8[s]", "|V8"]
dims = st.one_of(st.integers(-3, 12), st.integers(-(2**64), 2**64), st.sampled_from([2**31, 2**32, 2**62, 2**63 - 1]))


@st.composite
def npy_files(draw) -> tuple[bytes, str, tuple]:
    """.npy bytes with any header values (descr, order, shape, extra keys) and a payload of any length; half of them
    start from a valid (n, 4) array."""
    valid = draw(st.booleans())
    descr = draw(st.sampled_from(NPY_DTYPES[:6] if valid else NPY_DTYPES))
    shape = (draw(st.integers(1, 12)), 4) if valid else tuple(draw(st.lists(dims, max_size=3)))
    header = {"descr": descr, "fortran_order": draw(st.booleans()), "shape": shape}
    if draw(st.integers(0, 9)) == 0:
        header["extra"] = 1
    size = math.prod(shape) * np.dtype(descr).itemsize if all(0 <= d < 256 for d in shape) else 0
    if valid:
        values = np.random.default_rng(draw(st.integers(0, 2**32 - 1))).standard_normal(shape) * 10
        return npy_header(header) + values.astype(descr).tobytes(), descr, shape
    length = draw(st.sampled_from([size, max(size - 1, 0), size + 1]) | st.integers(0, 512))
    payload = draw(st.binary(min_size=min(length, 512), max_size=min(length, 512))) if length <= 512 else bytes(length)
    return npy_header(header) + payload, descr, shape


def npy_header(header: dict) -> bytes:
    """The .npy v1.0 preamble for any header dict (no checks: numpy's writer would refuse the hostile ones)."""
    text = repr(header).encode()
    text += b" " * ((64 - (10 + len(text) + 1) % 64) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text)) + text


@given(npy=npy_files())
@SOME
def test_npy_headers_are_checked_before_reading(base, npy):
    raw, descr, shape = npy
    where = base.fresh()
    (where / "x.npy").write_bytes(raw)
    refused = np.dtype(descr).kind in "cOUSMV" or any(d < 0 for d in shape)  # not real numbers, or no size
    with bounded(memory=1 << 30):
        runs = [
            sentflow_cli("transform", where / "x.npy", "--calib", base.calib, "--out", where / "z.npy"),
            sentflow_cli("fit", "--data", where / "x.npy", "--out", where / "c.safetensors"),
            sentflow_cli("diagnose", where / "x.npy", "--json", "--n-pairs", "10"),
        ]
    for run in runs:
        if assert_ok_or_one_error(run):
            assert not refused, f"read a .npy with descr {descr!r} and shape {shape}"
    if (where / "z.npy").exists():
        load_npy_finite(where / "z.npy")


IDX_CODES = [0x08, 0x09, 0x0B, 0x0C, 0x0D, 0x0E, 0x00, 0x07, 0xFF]
IDX_SIZES = {0x08: 1, 0x09: 1, 0x0B: 2, 0x0C: 4, 0x0D: 4, 0x0E: 8}


@st.composite
def idx_files(draw) -> tuple[bytes, int, tuple[int, ...]]:
    """IDX bytes: any type code, up to 8 dimensions of any u32 size (some overflowing int64 together), a payload of
    any length."""
    code = draw(st.sampled_from(IDX_CODES))
    exponents = st.lists(st.integers(8, 31), min_size=3, max_size=8).filter(lambda e: sum(e) >= 64)
    overflowing = exponents.map(lambda e: [2**k for k in e])  # a product that wraps to exactly 0 in int64
    shape = tuple(draw(overflowing | st.lists(st.integers(0, 30) | st.integers(0, 2**32 - 1), max_size=8)))
    size = math.prod(shape) * IDX_SIZES.get(code, 1) if math.prod(shape) < 1 << 16 else 0
    length = draw(st.sampled_from([size, max(size - 1, 0), size + 3]) | st.integers(0, 256))
    header = struct.pack(">BBBB", 0, 0, code, len(shape)) + struct.pack(f">{len(shape)}I", *shape)
    return header + bytes(length), code, shape


@given(idx=idx_files(), gz=st.booleans())
@SOME
def test_idx_headers_are_checked_before_reading(base, idx, gz):
    import gzip

    from sentflow.flows import read_idx

    raw, code, shape = idx
    path = base.fresh() / ("images.gz" if gz else "images")
    path.write_bytes(gzip.compress(raw) if gz else raw)
    with bounded(memory=1 << 30):
        try:
            array = read_idx(path)
        except SentflowError as exc:
            assert "\n" not in str(exc)
            return
    assert code in IDX_SIZES and shape and array.shape == shape
    assert len(raw) == 4 + 4 * len(shape) + array.size * IDX_SIZES[code]


@given(idx=idx_files(), labels=st.integers(0, 40))
@FEW
def test_mnist_directories_with_hostile_idx_files(base, idx, labels):
    where = base.fresh()
    (where / "t10k-images-idx3-ubyte").write_bytes(idx[0])
    (where / "t10k-labels-idx1-ubyte").write_bytes(struct.pack(">BBBBI", 0, 0, 0x08, 1, labels) + bytes(labels))
    with bounded(memory=1 << 30):
        run = sentflow_cli("flows", "eval", base.ckpt, "--data", f"mnist:{where}")
    assert_one_error(run)  # the checkpoint is for 8x8 digits: no MNIST-like directory fits it
