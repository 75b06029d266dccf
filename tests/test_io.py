"""Saved tensors: damaged files are detected, non-finite weights are never written or loaded, outputs are safe."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

import sentflow
from sentflow.errors import SentflowError
from sentflow.io import load_tensors, save_tensors


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
    tensors, meta = load_tensors(good)
    tensors["weight"][0, 0] = float("inf")  # a foreign writer: valid header, no checksum, an Inf weight
    save_file(tensors, str(tmp_path / "inf.safetensors"), metadata={"sentflow": json.dumps(meta)})
    with pytest.raises(SentflowError, match="tensor 'weight' holds NaN/Inf values"):
        sentflow.load(tmp_path / "inf.safetensors")


def test_metadata_of_the_wrong_json_type_is_refused(tmp_path):
    save_file({"a": torch.zeros(1)}, str(tmp_path / "m.safetensors"), metadata={"sentflow": "[1, 2]"})
    with pytest.raises(SentflowError, match="metadata must be a JSON object"):
        sentflow.load(tmp_path / "m.safetensors")
