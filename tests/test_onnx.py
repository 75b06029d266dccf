"""ONNX Runtime backend: fp32 equals torch for every pooling, int8 stays close, the export is cached, errors."""

from __future__ import annotations

import sys
from contextlib import nullcontext

import numpy as np
import pytest
from conftest import SENTENCES

from sentflow import Encoder, SentflowError
from sentflow.encoding import onnx as onnx_backend

POOLINGS = ["cls", "pooler", "last-avg", "first-last-avg", "last2avg", "layers:0,2"]


@pytest.fixture
def onnx_dir(tmp_path, monkeypatch):
    """A private ONNX cache directory per test (so each test sees its own exports)."""
    monkeypatch.setenv("SENTFLOW_CACHE", str(tmp_path))
    return tmp_path / "onnx"


@pytest.mark.parametrize("pooling", POOLINGS)
def test_onnx_fp32_equals_torch(tiny_bert_dir, pooling):
    torch_vectors = Encoder(str(tiny_bert_dir), pooling=pooling, batch_size=2, cache=False).encode(SENTENCES)
    onnx_vectors = Encoder(str(tiny_bert_dir), pooling=pooling, batch_size=2, cache=False, backend="onnx")
    np.testing.assert_allclose(onnx_vectors.encode(SENTENCES), torch_vectors, atol=1e-4, rtol=0)


def test_onnx_int8_is_close_to_fp32(tiny_bert_dir):
    fp32 = Encoder(str(tiny_bert_dir), cache=False, backend="onnx").encode(SENTENCES)
    int8 = Encoder(str(tiny_bert_dir), cache=False, backend="onnx-int8").encode(SENTENCES)
    assert not np.array_equal(int8, fp32)  # it really is another graph
    unit = lambda x: x / np.linalg.norm(x, axis=1, keepdims=True)  # noqa: E731
    assert np.sum(unit(int8) * unit(fp32), 1).min() > 0.99
    # the sentences keep their similarity structure
    np.testing.assert_allclose(unit(int8) @ unit(int8).T, unit(fp32) @ unit(fp32).T, atol=0.02)


def test_last_ffn_inputs_picks_the_last_layers_feed_forward_inputs():
    names = [f"/model/encoder/layer.{i}/{part}/MatMul" for i in range(12) for part in ("intermediate/dense", "output")]
    assert onnx_backend.last_ffn_inputs(names, 2) == [
        f"/model/encoder/layer.{i}/intermediate/dense/MatMul" for i in (10, 11)
    ]
    assert onnx_backend.last_ffn_inputs(names, 0) == []
    assert onnx_backend.last_ffn_inputs(["/pooler/dense/MatMul"], 2) == []  # another naming: nothing kept


def test_int8_recipe_decides_what_is_quantised_and_the_cache_keys(tiny_bert_dir, onnx_dir, tmp_path):
    import onnx

    recipes = {"default": None, "all": onnx_backend.INT8_RECIPE | {"operators": None, "fp32_last_ffn_inputs": 0}}
    files, vectors = {}, {}
    for name, recipe in recipes.items():
        before = set(onnx_dir.glob("*-int8.onnx"))
        encoder = Encoder(str(tiny_bert_dir), cache=tmp_path / "emb", backend="onnx-int8", int8_recipe=recipe)
        vectors[name] = encoder.encode(SENTENCES)
        (files[name],) = set(onnx_dir.glob("*-int8.onnx")) - before  # another recipe, another cached graph
    ops = {name: [node.op_type for node in onnx.load(str(f)).graph.node] for name, f in files.items()}
    # 3 layers x 3 MatMuls, less the last two layers' feed-forward inputs; attention and embeddings stay fp32
    assert ops["default"].count("MatMulInteger") == 7 and "Attention" in ops["default"]
    assert "QAttention" not in ops["default"] and "QEmbedLayerNormalization" not in ops["default"]
    assert ops["all"].count("MatMulInteger") == 9 and "QAttention" in ops["all"]
    assert len(list((tmp_path / "emb").glob("*.npy"))) == 2  # one embedding-cache entry per recipe
    assert not np.array_equal(vectors["default"], vectors["all"])
    with pytest.raises(SentflowError, match="int8_recipe: field 'operators': Field required"):
        Encoder(backend="onnx-int8", int8_recipe={"per_channel": True})
    bad = {
        **onnx_backend.INT8_RECIPE,
        "weights": "QInt4",
    }  # a value onnxruntime does not have: refused before quantising
    with pytest.raises(SentflowError, match="int8_recipe: field 'weights': Input should be 'QInt8' or 'QUInt8'"):
        Encoder(backend="onnx-int8", int8_recipe=bad)


def test_export_happens_once_per_model_and_outputs(tiny_bert_dir, onnx_dir, monkeypatch):
    Encoder(str(tiny_bert_dir), pooling="first-last-avg", cache=False, backend="onnx-int8").encode(SENTENCES)
    files = sorted(onnx_dir.glob("*.onnx"))
    assert sorted(f.name.split("-")[1] for f in files) == ["fp32.onnx", "int8.onnx"]
    stamps = [f.stat().st_mtime_ns for f in files]

    def refuse(*args, **kwargs):
        raise AssertionError("exported again although the graph is cached")

    monkeypatch.setattr(onnx_backend, "export", refuse)
    monkeypatch.setattr(onnx_backend, "quantize", refuse)
    for backend in ("onnx", "onnx-int8"):  # the alias and its layers: spelling read the same outputs
        Encoder(str(tiny_bert_dir), pooling="layers:-1,1", cache=False, backend=backend).encode(SENTENCES)
    assert [f.stat().st_mtime_ns for f in sorted(onnx_dir.glob("*.onnx"))] == stamps
    with pytest.raises(AssertionError, match="exported again"):  # other outputs, another graph
        Encoder(str(tiny_bert_dir), pooling="cls", cache=False, backend="onnx").encode(SENTENCES)


def test_embedding_cache_keeps_backends_apart(tiny_bert_dir, tmp_path):
    vectors = {
        b: Encoder(str(tiny_bert_dir), cache=tmp_path, backend=b).encode(SENTENCES) for b in ("torch", "onnx-int8")
    }
    assert len(list(tmp_path.glob("*.npy"))) == 2
    assert not np.array_equal(vectors["torch"], vectors["onnx-int8"])


def test_missing_onnxruntime_is_a_one_line_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # makes `import onnxruntime` raise ImportError
    with pytest.raises(SentflowError) as err:
        Encoder(backend="onnx")
    assert str(err.value) == "onnxruntime is not installed; install it with: python3 -m pip install 'sentflow[onnx]'"


def test_bad_backend_options():
    with pytest.raises(SentflowError, match="unknown backend 'tensorrt'"):
        Encoder(backend="tensorrt")
    with pytest.raises(SentflowError, match="runs on the CPU"):
        Encoder(backend="onnx", device="cuda")
    with pytest.raises(SentflowError, match="half=True needs a CUDA device"):
        Encoder(half=True, device="cpu")


@pytest.mark.parametrize("damage", ["truncated", "empty", "other-graph", "garbage"])
def test_a_damaged_cached_graph_is_rebuilt_with_a_warning(tiny_bert_dir, onnx_dir, damage):
    reference = Encoder(str(tiny_bert_dir), cache=False, backend="onnx").encode(SENTENCES)
    Encoder(str(tiny_bert_dir), cache=False, backend="onnx-int8").encode(SENTENCES)
    (fp32,) = onnx_dir.glob("*-fp32.onnx")
    (int8,) = onnx_dir.glob("*-int8.onnx")
    original = fp32.read_bytes()
    replacement = {
        "truncated": original[: len(original) // 3],
        "empty": b"",
        "other-graph": int8.read_bytes(),  # a valid graph that gives other numbers
        "garbage": b"\x08\x07not a protobuf" * 100,
    }[damage]
    fp32.write_bytes(replacement)
    for _ in range(2):  # the second run finds the healed entry: no warning, same numbers
        with pytest.warns(UserWarning, match="damaged ONNX graph in the cache") if _ == 0 else nullcontext():
            vectors = Encoder(str(tiny_bert_dir), cache=False, backend="onnx").encode(SENTENCES)
        np.testing.assert_array_equal(vectors, reference)
    assert onnx_backend.is_cached(fp32)


def test_a_damaged_embedding_cache_entry_is_encoded_again(tiny_bert_dir, tmp_path):
    encoder = Encoder(str(tiny_bert_dir), cache=tmp_path)
    reference = encoder.encode(SENTENCES)
    (entry,) = tmp_path.glob("*.npy")
    swapped = np.load(entry)[::-1].copy()  # same shape and dtype, other rows: only the checksum tells
    np.save(entry, swapped)
    with pytest.warns(UserWarning, match="damaged embedding cache entry; encoding again"):
        np.testing.assert_array_equal(Encoder(str(tiny_bert_dir), cache=tmp_path).encode(SENTENCES), reference)
    np.testing.assert_array_equal(np.load(entry), reference)  # healed in place
