"""`backend="auto"`: the fastest backend that keeps the accuracy on this CPU, among those installed.

The orders are measured (docs/guide/encode.md, "Which backend on which CPU"; docs/results/speed.md): on a CPU
with bf16 instructions (the AVX-512 machine of eval/results/bench_encode*.md) openvino-int8 ran fastest, then
openvino-bf16; on an AVX2-only CPU (an AMD EPYC Zen 3, eval/results/bench_encode_avx2.md) onnx-int8 ran fastest,
then onnx, openvino and openvino-int8. Every backend listed keeps STS-B Spearman within 0.3 points of torch fp32;
torch comes last, as the one always installed. A CUDA device always gets torch.
"""

from __future__ import annotations

from importlib.util import find_spec

from sentflow.encoding.cpu import has_bf16
from sentflow.runtime import default_device

AUTO = "auto"
BF16_ORDER = ("openvino-int8", "openvino-bf16", "openvino", "onnx-int8", "onnx", "torch")
AVX2_ORDER = ("onnx-int8", "onnx", "openvino", "openvino-int8", "torch")
NEEDS = {"onnx": ("onnxruntime",), "openvino": ("openvino", "onnx")}  # a backend family -> the modules it imports


def installed(backend: str) -> bool:
    """Whether the packages `backend` runs on are importable (torch always is)."""
    family = backend.split("-")[0]
    return all(find_spec(module) is not None for module in NEEDS.get(family, ()))


def resolve_backend(backend: str, device=None) -> str:
    """`backend` itself, or for "auto" the first installed backend of this CPU's measured order."""
    if backend != AUTO:
        return backend
    if default_device(device).type != "cpu":
        return "torch"
    order = BF16_ORDER if has_bf16() else AVX2_ORDER
    return next(b for b in order if installed(b))
