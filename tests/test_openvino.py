"""OpenVINO backend: fp32 equals torch, bf16/int8 stay close, the IR is cached and content-checked, errors."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from conftest import SENTENCES

from sentflow import Encoder, SentflowError
from sentflow.encoding import onnx as onnx_backend
from sentflow.encoding import openvino as openvino_backend
from sentflow.encoding.cpu import openvino_capabilities

POOLINGS = ["cls", "pooler", "last-avg", "first-last-avg", "layers:0,2"]
# bf16 keeps 8 bits of mantissa: on the tiny BERT (and on all-MiniLM-L6-v2, eval/results/onnx_accuracy.md) unit
# vectors move by a few 1e-3; this bound leaves room for other CPUs' kernels.
BF16_UNIT_ATOL = 2e-2

ov = pytest.importorskip("openvino", reason="the openvino extra is not installed")


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def has_bf16() -> bool:
    """What OpenVINO reports, less what SENTFLOW_CPU=avx2 hides (the suite's no-bf16 mode)."""
    return "BF16" in openvino_capabilities(list(ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")))


@pytest.fixture
def ov_dir(tmp_path, monkeypatch):
    """A private cache directory per test (so each test sees its own conversions)."""
    monkeypatch.setenv("SENTFLOW_CACHE", str(tmp_path))
    return tmp_path / "openvino"


@pytest.mark.parametrize("pooling", POOLINGS)
def test_openvino_fp32_equals_torch(tiny_bert_dir, ov_dir, pooling):
    torch_vectors = Encoder(str(tiny_bert_dir), pooling=pooling, batch_size=2, cache=False).encode(SENTENCES)
    ov_vectors = Encoder(str(tiny_bert_dir), pooling=pooling, batch_size=2, cache=False, backend="openvino")
    np.testing.assert_allclose(ov_vectors.encode(SENTENCES), torch_vectors, atol=1e-4, rtol=0)


@pytest.mark.skipif(not has_bf16(), reason="this CPU has no bf16 instructions (or SENTFLOW_CPU=avx2 hides them)")
def test_openvino_bf16_is_close_to_torch(tiny_bert_dir, ov_dir):
    torch_vectors = Encoder(str(tiny_bert_dir), cache=False).encode(SENTENCES)
    bf16 = Encoder(str(tiny_bert_dir), cache=False, backend="openvino-bf16").encode(SENTENCES)
    assert not np.array_equal(bf16, torch_vectors)  # really computed in bfloat16
    np.testing.assert_allclose(unit(bf16), unit(torch_vectors), atol=BF16_UNIT_ATOL, rtol=0)
    assert [f.name.split("-")[1] for f in ov_dir.glob("*.xml")] == ["fp32.xml"]  # bf16 compiles the fp32 IR


def test_openvino_int8_is_close_and_compresses_the_matmuls(tiny_bert_dir, ov_dir):
    fp32 = Encoder(str(tiny_bert_dir), cache=False, backend="openvino").encode(SENTENCES)
    int8 = Encoder(str(tiny_bert_dir), cache=False, backend="openvino-int8").encode(SENTENCES)
    assert not np.array_equal(int8, fp32)
    assert np.sum(unit(int8) * unit(fp32), 1).min() > 0.99
    np.testing.assert_allclose(unit(int8) @ unit(int8).T, unit(fp32) @ unit(fp32).T, atol=0.02)
    (xml,) = ov_dir.glob("*-int8.xml")
    model = ov.Core().read_model(str(xml))
    compressed = [
        op for op in model.get_ops() if op.get_type_name() == "Constant" and op.get_element_type() == ov.Type.i8
    ]
    assert len(compressed) == 3 * 6  # 3 layers x (query, key, value, attention out, FFN in, FFN out)
    # a recipe keeping the last two layers' feed-forward inputs in fp32: another IR, two fewer int8 weights
    Encoder(str(tiny_bert_dir), cache=False, backend="openvino-int8", int8_recipe=onnx_backend.INT8_RECIPE).encode(
        SENTENCES
    )
    (kept,) = set(ov_dir.glob("*-int8.xml")) - {xml}
    model = ov.Core().read_model(str(kept))
    assert sum(op.get_type_name() == "Constant" and op.get_element_type() == ov.Type.i8 for op in model.get_ops()) == 16


def test_conversion_happens_once_and_is_content_checked(tiny_bert_dir, ov_dir, monkeypatch):
    Encoder(str(tiny_bert_dir), pooling="first-last-avg", cache=False, backend="openvino").encode(SENTENCES)
    (xml,) = ov_dir.glob("*.xml")
    stamp = xml.stat().st_mtime_ns
    built = []
    real_build = openvino_backend.build
    monkeypatch.setattr(openvino_backend, "build", lambda *a, **k: built.append(a) or real_build(*a, **k))
    for backend in ("openvino", "openvino-bf16") if has_bf16() else ("openvino",):
        Encoder(str(tiny_bert_dir), pooling="layers:-1,1", cache=False, backend=backend).encode(SENTENCES)
    assert built == [] and xml.stat().st_mtime_ns == stamp  # same outputs: the cached IR, for both precisions
    Encoder(str(tiny_bert_dir), pooling="cls", cache=False, backend="openvino").encode(SENTENCES)
    assert len(built) == 1  # other outputs, another IR
    # a damaged weights file no longer matches the manifest: rebuilt, not run
    weights = xml.with_suffix(".bin")
    weights.write_bytes(weights.read_bytes()[:-8])
    assert not openvino_backend.is_cached(xml)
    with pytest.warns(UserWarning, match="damaged OpenVINO model in the cache"):
        damaged = Encoder(str(tiny_bert_dir), pooling="first-last-avg", cache=False, backend="openvino")
        vectors = damaged.encode(SENTENCES)
    assert len(built) == 2 and openvino_backend.is_cached(xml)
    reference = Encoder(str(tiny_bert_dir), pooling="first-last-avg", cache=False).encode(SENTENCES)
    np.testing.assert_allclose(vectors, reference, atol=1e-4, rtol=0)


def test_embedding_cache_keeps_openvino_precisions_apart(tiny_bert_dir, ov_dir, tmp_path):
    backends = ("openvino", "openvino-int8")
    vectors = {b: Encoder(str(tiny_bert_dir), cache=tmp_path / "emb", backend=b).encode(SENTENCES) for b in backends}
    assert len(list((tmp_path / "emb").glob("*.npy"))) == 2
    assert not np.array_equal(vectors["openvino"], vectors["openvino-int8"])


def test_missing_openvino_is_a_one_line_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "openvino", None)  # makes `import openvino` raise ImportError
    with pytest.raises(SentflowError) as err:
        Encoder(backend="openvino")
    assert str(err.value) == "openvino is not installed; install it with: python3 -m pip install 'sentflow[openvino]'"


def test_bf16_is_refused_with_one_line_where_the_cpu_lacks_it(monkeypatch):
    class Core:
        def get_property(self, device: str, name: str) -> list[str]:
            assert (device, name) == ("CPU", "OPTIMIZATION_CAPABILITIES")
            return ["FP32", "INT8", "EXPORT_IMPORT"]

    monkeypatch.setattr(ov, "Core", Core)
    with pytest.raises(SentflowError) as err:
        Encoder(backend="openvino-bf16")
    assert "\n" not in str(err.value)
    assert str(err.value).startswith("backend='openvino-bf16' needs a CPU with bf16 instructions")
    Encoder(backend="openvino")  # fp32 needs nothing of the kind


def test_the_avx2_mode_refuses_bf16_whatever_the_cpu(monkeypatch):
    monkeypatch.setenv("SENTFLOW_CPU", "avx2")
    with pytest.raises(SentflowError) as err:
        Encoder(backend="openvino-bf16")
    assert "BF16" not in str(err.value).split("offers", 1)[1]
    assert str(err.value).startswith("backend='openvino-bf16' needs a CPU with bf16 instructions")


def test_openvino_runs_on_the_cpu_only():
    with pytest.raises(SentflowError, match="runs on the CPU"):
        Encoder(backend="openvino", device="cuda")


@pytest.mark.parametrize("streams_per_thread", [0, 1])
def test_streams_return_vectors_in_input_order(tiny_bert_dir, ov_dir, monkeypatch, streams_per_thread):
    monkeypatch.setattr(openvino_backend, "STREAMS_PER_THREAD", streams_per_thread)
    texts = SENTENCES * 3 + SENTENCES[::-1]
    expected = Encoder(str(tiny_bert_dir), cache=False).encode(texts)
    encoder = Encoder(str(tiny_bert_dir), cache=False, backend="openvino", threads=2, batch_size=2, batch_tokens=9)
    np.testing.assert_allclose(encoder.encode(texts), expected, atol=1e-4, rtol=0)
    session_streams = 2 if streams_per_thread else 1
    xml = next(ov_dir.glob("*.xml"))
    assert openvino_backend.OpenVinoModel(xml, "fp32", threads=2).streams == session_streams
