"""Hostile cases for values given to the library in Python: tensors of any float dtype, ragged lists, a refit that is
refused, a missing spec, one string where a list belongs, a cache setting that names a file, an IDX header that
announces more than the file holds, and a Dask client whose scheduler has no worker.
"""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest
import torch

import sentflow
from sentflow.errors import SentflowError

RNG = np.random.default_rng(0)
X = RNG.standard_normal((200, 8)) @ RNG.standard_normal((8, 8))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32, torch.float64])
def test_whitening_fits_a_tensor_of_any_float_dtype_as_its_float64_values(dtype):
    tensor = torch.from_numpy(X).to(dtype)
    got = sentflow.Whitening().fit(tensor)
    want = sentflow.Whitening().fit(tensor.double().numpy())  # the same values, given as numpy
    np.testing.assert_allclose(got.transform(X), want.transform(X), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("ragged", [[[1.0, 2.0], [3.0]], [[1.0], [2.0, 3.0], 4.0], [[[1.0]], [2.0]]])
def test_a_ragged_list_is_one_line_naming_the_rows(ragged):
    with pytest.raises(SentflowError, match="rows of equal length") as info:
        sentflow.Whitening().fit(ragged)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("bad", ["nan", "inf", "ragged", "too-few"])
def test_a_refused_refit_leaves_the_earlier_fit_in_place(bad):
    whitening = sentflow.Whitening(n_components=4).fit(X)
    before = whitening.transform(X)
    data = {"nan": np.where(np.eye(200, 8, dtype=bool), np.nan, X), "inf": X * np.inf, "ragged": [[1.0], [1.0, 2.0]],
            "too-few": X[:3]}[bad]
    with pytest.raises(SentflowError):
        whitening.fit(data)
    np.testing.assert_array_equal(whitening.transform(X), before)


def test_a_compact_index_without_a_spec_is_one_line():
    from sentflow.search.compact import CompactIndex

    with pytest.raises(SentflowError, match="a quantizer spec is a string"):
        CompactIndex.build(X.astype(np.float32), None)  # type: ignore[arg-type]


def test_chroma_refuses_one_string_instead_of_splitting_it(tiny_bert_dir):
    pytest.importorskip("chromadb")
    from sentflow.integrations.chroma import ChromaEmbeddingFunction

    pipeline = sentflow.Pipeline(sentflow.Encoder(str(tiny_bert_dir), cache=False))
    function = ChromaEmbeddingFunction(pipeline)
    with pytest.raises(SentflowError, match="got one string: wrap it in a list"):
        function("abc")  # type: ignore[arg-type]
    assert len(function(["abc"])) == 1


def test_a_cache_setting_that_names_a_file_is_blamed_not_the_model(tmp_path, monkeypatch, tiny_bert_dir):
    from sentflow.encoding.onnx import model_file

    blocked = tmp_path / "a-file"
    blocked.write_text("not a directory")
    monkeypatch.setenv("SENTFLOW_CACHE", str(blocked))
    with pytest.raises(SentflowError, match="point SENTFLOW_CACHE at a directory") as info:
        model_file(str(tiny_bert_dir), "fp32", ["hidden_2"])
    assert str(blocked) in str(info.value)


def idx_header(dims: tuple[int, ...]) -> bytes:
    return struct.pack(">BBBB", 0, 0, 0x08, len(dims)) + struct.pack(f">{len(dims)}I", *dims)


@pytest.mark.parametrize("compressed", [False, True])
def test_an_idx_file_announcing_more_than_the_limit_is_refused_before_reading(tmp_path, compressed):
    from sentflow.flows.data import read_idx

    dims = (1 << 20, 32, 32)  # 1 GiB announced, 100 bytes given
    raw = idx_header(dims) + bytes(100)
    path = tmp_path / ("big-idx3-ubyte.gz" if compressed else "big-idx3-ubyte")
    path.write_bytes(gzip.compress(raw) if compressed else raw)
    with pytest.raises(SentflowError, match="not an image set"):
        read_idx(path)


def test_a_plain_idx_file_shorter_than_announced_is_refused_by_its_size(tmp_path):
    from sentflow.flows.data import read_idx

    dims = (1000, 28, 28)
    path = tmp_path / "short-idx3-ubyte"
    path.write_bytes(idx_header(dims) + bytes(100))
    with pytest.raises(SentflowError, match=r"truncated IDX data for dims \[1000, 28, 28\]"):
        read_idx(path)


def test_an_active_dask_client_without_workers_is_refused_not_waited_on(monkeypatch):
    distributed = pytest.importorskip("distributed")
    from sentflow import distributed as sf_distributed

    monkeypatch.setattr(sf_distributed, "WORKERS_TIMEOUT_S", 1.0)
    with (
        distributed.LocalCluster(n_workers=0, processes=False, dashboard_address=":0") as empty,
        distributed.Client(empty),
        pytest.raises(SentflowError, match="has no worker after 1 s"),
    ):
        sf_distributed.fit_whitening(X.astype(np.float32))
