"""The CPU switch (SENTFLOW_CPU) and `backend="auto"`: sentflow's capability checks against torch's and OpenVINO's
own view of the CPU, the no-bf16 mode in a new interpreter, and the backend each CPU class gets."""

from __future__ import annotations

import subprocess
import sys

import pytest

from sentflow import Encoder, SentflowError
from sentflow.encoding import auto
from sentflow.encoding.cpu import AVX2_ENV, cpu_flags, cpu_mode, has_bf16, openvino_capabilities


def torch_capability(env: dict[str, str]) -> str:
    """The vector ISA torch dispatches to, asked in a new interpreter with `env` added."""
    import os

    code = "import torch; print(torch.backends.cpu.get_cpu_capability())"
    done = subprocess.run([sys.executable, "-c", code], env={**os.environ, **env}, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_the_flags_agree_with_what_torch_dispatches_to():
    if torch_capability({}) == "AVX512":
        assert "avx512f" in cpu_flags()
    elif torch_capability({}) == "AVX2":
        assert "avx2" in cpu_flags() and not any(f.startswith("avx512") for f in cpu_flags())


def test_the_avx2_mode_hides_everything_beyond_avx2_from_sentflow_and_torch(monkeypatch):
    assert torch_capability(AVX2_ENV) in ("AVX2", "DEFAULT")  # torch reads ATEN_CPU_CAPABILITY before it loads
    native = cpu_flags()
    monkeypatch.setenv("SENTFLOW_CPU", "avx2")
    assert cpu_mode() == "avx2" and not has_bf16()
    hidden = native - cpu_flags()
    assert not any(f.startswith(("avx512", "amx")) for f in cpu_flags())
    assert {f for f in native if f.startswith("avx512")} <= hidden
    assert ("avx2" in native) == ("avx2" in cpu_flags())
    assert openvino_capabilities(["FP32", "BF16", "FP16", "INT8"]) == ["FP32", "INT8"]


def test_a_bad_mode_is_one_line(monkeypatch):
    monkeypatch.setenv("SENTFLOW_CPU", "avx1024")
    with pytest.raises(SentflowError, match=r"^SENTFLOW_CPU='avx1024' is not a CPU mode: use one of native, avx2"):
        cpu_mode()


def test_bf16_as_sentflow_sees_it_is_what_openvino_reports(monkeypatch):
    ov = pytest.importorskip("openvino", reason="the openvino extra is not installed")
    monkeypatch.delenv("SENTFLOW_CPU", raising=False)
    assert has_bf16() == ("BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"))


@pytest.mark.parametrize("mode", ["native", "avx2"])
def test_auto_takes_the_first_installed_backend_of_the_cpu_class_order(monkeypatch, mode):
    monkeypatch.setenv("SENTFLOW_CPU", mode)
    order = auto.BF16_ORDER if has_bf16() else auto.AVX2_ORDER
    expected = next(b for b in order if auto.installed(b))
    assert Encoder(backend="auto", cache=False).backend == expected
    if mode == "avx2":
        assert "bf16" not in expected
        assert expected == ("onnx-int8" if auto.installed("onnx-int8") else expected)  # the AVX2 measurement's pick


def test_auto_falls_back_to_what_is_installed_and_to_torch_on_a_gpu(monkeypatch):
    monkeypatch.setenv("SENTFLOW_CPU", "avx2")
    for module in ("onnxruntime", "openvino"):
        monkeypatch.setitem(sys.modules, module, None)  # not importable: find_spec answers None
    assert auto.resolve_backend("auto") == "torch"
    monkeypatch.delitem(sys.modules, "openvino")
    if auto.installed("openvino"):
        assert auto.resolve_backend("auto") == "openvino"
    assert auto.resolve_backend("auto", device="cuda") == "torch"
    assert auto.resolve_backend("onnx", device="cuda") == "onnx"  # only "auto" is resolved
