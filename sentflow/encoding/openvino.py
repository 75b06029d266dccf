"""OpenVINO backend: sentflow's own ONNX export, converted once to OpenVINO IR, run by the OpenVINO CPU plugin.

The graph is the plain `torch.onnx.export` of the model (`onnx_backend.export(..., optimise=False)`: no
onnxruntime fusions, which OpenVINO would have to undo; its own CPU plugin fuses attention, GELU and layer norms
at compile time). `openvino.convert_model` turns it into IR (.xml + .bin), saved with fp32 weights and cached under
the sentflow cache directory, keyed by the model fingerprint, the outputs, the weight precision, the int8 recipe
and the tool versions, with a sha256 manifest written last: a truncated or altered IR is rebuilt, never run.

Precisions (the backend name says which, as `onnx` / `onnx-int8` do):
- `openvino`: fp32 (INFERENCE_PRECISION_HINT f32), equal to torch within 1e-4;
- `openvino-bf16`: the same IR computed in bfloat16 on a CPU with bf16 instructions (AVX512_BF16 or AMX),
  refused with one line elsewhere (OpenVINO would silently fall back to fp32);
- `openvino-int8`: the weights of every MatMul stored as int8 per output channel (`INT8_RECIPE`), activations
  quantised per group at run time by the CPU plugin (VNNI), everything else fp32.
"""

from __future__ import annotations

import os
import tempfile
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch

from sentflow.encoding.cache import digests_path, graph_file, is_intact, record_digests, spec_digest
from sentflow.errors import SentflowError
from sentflow.extras import require

PRECISIONS = {"openvino": "fp32", "openvino-bf16": "bf16", "openvino-int8": "int8"}
HINTS = {"fp32": "f32", "bf16": "bf16", "int8": "f32"}  # INFERENCE_PRECISION_HINT per precision
# int8: symmetric int8 weights per output channel for every MatMul with a constant weight; the CPU plugin quantises
# the activations per group of 32 at run time. Unlike onnx-int8, quantising the last layers' feed-forward inputs
# too keeps STS-B within 0.05 Spearman of torch and runs about a quarter faster (eval/results/onnx_accuracy.md,
# eval/results/bench_encode.md); `fp32_last_ffn_inputs` keeps those of the last N layers in fp32.
INT8_RECIPE: dict[str, Any] = {"weights": "int8-per-channel", "fp32_last_ffn_inputs": 0}
STREAMS_PER_THREAD = 1  # OpenVinoModel's default streams: one per thread (0 would mean one stream in all)
Key = TypeVar("Key")


def openvino_module() -> Any:
    """The openvino package, or a one-line error naming the extra."""
    return require("openvino", "openvino")


def weights_precision(precision: str) -> str:
    """What the cached IR stores: bf16 computes the fp32 IR in bfloat16, so the two share one file."""
    return "int8" if precision == "int8" else "fp32"


def check_precision(precision: str) -> None:
    """Refuse bf16 where the CPU plugin does not report bf16 support (it would quietly run fp32)."""
    if precision != "bf16":
        return
    from sentflow.encoding.cpu import openvino_capabilities

    reported = list(openvino_module().Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"))
    capabilities = openvino_capabilities(reported)  # less what SENTFLOW_CPU=avx2 hides
    if "BF16" not in capabilities:
        raise SentflowError(
            "backend='openvino-bf16' needs a CPU with bf16 instructions (AVX512_BF16 or AMX); this one offers "
            f"{', '.join(capabilities)}: use backend='openvino' (fp32) or 'openvino-int8'"
        )


def graph_tag(precision: str, recipe: Mapping | None = None) -> str:
    """What decides the IR's numbers besides model and outputs: weight precision, int8 recipe, tool versions."""
    ov = openvino_module()
    weights = weights_precision(precision)
    spec: dict[str, object] = {"weights": weights, "recipe": dict(recipe or INT8_RECIPE) if weights == "int8" else None}
    spec["tools"] = [torch.__version__, ov.get_version(), "opset17"]
    return spec_digest(spec, 16)


def model_file(
    model_path: str,
    precision: str,
    outputs: Sequence[str],
    recipe: Mapping | None = None,
    directory: Path | None = None,
) -> Path:
    """Where the IR (.xml; its weights in the .bin beside it) of `model_path` with these outputs is cached."""
    name = f"{weights_precision(precision)}.xml"
    return graph_file("openvino", model_path, graph_tag(precision, recipe), outputs, name, directory)


def is_cached(xml: Path) -> bool:
    """True when the IR and its weights exist and match the checksums written after them."""
    return is_intact(xml, (xml.with_suffix(".bin"),))


def build(export: Callable[[Path], None], xml: Path, precision: str, recipe: Mapping | None = None) -> None:
    """Export the ONNX graph with `export(path)`, convert it to IR (int8 weights for int8), cache it at `xml`."""
    ov = openvino_module()
    xml.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=xml.parent, prefix=".build-") as tmp:
        onnx_path = Path(tmp) / "model.onnx"
        export(onnx_path)
        model = ov.convert_model(str(onnx_path))
        if weights_precision(precision) == "int8":
            compress_int8(model, dict(recipe or INT8_RECIPE))
        staged = Path(tmp) / xml.name
        ov.save_model(model, str(staged), compress_to_fp16=False)
        digests_path(xml).unlink(missing_ok=True)  # the files below are not the checksums' any more
        os.replace(staged.with_suffix(".bin"), xml.with_suffix(".bin"))
        os.replace(staged, xml)
    record_digests(xml, (xml.with_suffix(".bin"),))


def last_ffn_weights(names: Sequence[str], layers: int) -> list[str]:
    """The MatMul nodes of the feed-forward input projections (`layer.<i>/intermediate/`) of the last layers."""
    from sentflow.encoding.onnx import last_ffn_inputs

    return last_ffn_inputs(names, layers)


def compress_int8(model: Any, recipe: Mapping) -> int:
    """Replace the constant fp32 weight of each MatMul (but the recipe's fp32 ones) by int8 x per-channel scale.

    The CPU plugin recognises the Constant(int8) -> Convert -> Multiply(scale) pattern as a compressed
    FullyConnected and quantises its activations at run time. Returns the number of MatMuls compressed.
    """
    ov = openvino_module()
    from openvino import opset13 as ops

    matmuls = [op for op in model.get_ordered_ops() if op.get_type_name() == "MatMul"]
    keep = set(last_ffn_weights([m.get_friendly_name() for m in matmuls], int(recipe["fp32_last_ffn_inputs"])))
    compressed = 0
    for matmul in matmuls:
        source = matmul.input_value(1).get_node()
        if matmul.get_friendly_name() in keep or source.get_type_name() != "Constant":
            continue
        weight = source.get_data().astype(np.float32)
        if weight.ndim != 2:
            continue
        transposed = bool(matmul.get_attributes().get("transpose_b"))
        axis = 1 if transposed else 0  # reduce over the input dimension: one scale per output channel
        scale = np.abs(weight).max(axis=axis, keepdims=True) / 127.0
        scale[scale == 0] = 1.0
        q = np.clip(np.round(weight / scale), -127, 127).astype(np.int8)
        decompressed = ops.multiply(ops.convert(ops.constant(q), ov.Type.f32), ops.constant(scale.astype(np.float32)))
        matmul.input(1).replace_source_output(decompressed.output(0))
        compressed += 1
    model.validate_nodes_and_infer_types()
    return compressed


class OpenVinoModel:
    """A compiled OpenVINO CPU model over a cached IR, at one precision and a fixed number of threads.

    `streams` batches run at once, each on threads / streams threads (default: one stream per thread, which
    measured faster than one stream over every thread: eval/results/bench_encode.md); `map` keeps that many
    batches in flight.
    """

    def __init__(self, xml: Path, precision: str, threads: int, streams: int | None = None) -> None:
        ov = openvino_module()
        core = ov.Core()
        self.streams = max(1, min(threads, STREAMS_PER_THREAD * threads if streams is None else streams))
        config = {"INFERENCE_PRECISION_HINT": HINTS[precision], "INFERENCE_NUM_THREADS": threads}
        config |= {"NUM_STREAMS": self.streams, "PERFORMANCE_HINT": "THROUGHPUT" if self.streams > 1 else "LATENCY"}
        self._compiled = core.compile_model(core.read_model(str(xml)), "CPU", config)
        self._requests = [self._compiled.create_infer_request() for _ in range(self.streams)]
        self.inputs = [port.get_any_name() for port in self._compiled.inputs]
        self.outputs = [port.get_any_name() for port in self._compiled.outputs]

    def _feed(self, batch: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {name: np.asarray(batch[name], dtype=np.int64) for name in self.inputs}

    def _results(self, request: Any) -> dict[str, torch.Tensor]:
        """The request's outputs by name, copied (its buffers are reused by the next batch)."""
        return {
            name: torch.from_numpy(np.array(request.get_tensor(port).data, dtype=np.float32))
            for name, port in zip(self.outputs, self._compiled.outputs, strict=True)
        }

    def __call__(self, batch: Mapping[str, np.ndarray]) -> dict[str, torch.Tensor]:
        """Run one padded batch (int64 arrays by input name): output name -> tensor."""
        self._requests[0].infer(self._feed(batch))
        return self._results(self._requests[0])

    def map(self, batches: Iterable[tuple[Key, Mapping[str, np.ndarray]]]) -> Iterator[tuple[Key, dict[str, Any]]]:
        """Run (key, batch) pairs with up to `streams` batches in flight; yield (key, outputs) in input order."""
        free, pending = list(self._requests), deque[tuple[Key, Any]]()
        for key, batch in batches:
            if not free:
                done_key, request = pending.popleft()
                request.wait()
                yield done_key, self._results(request)
                free.append(request)
            request = free.pop()
            request.start_async(self._feed(batch))
            pending.append((key, request))
        while pending:
            done_key, request = pending.popleft()
            request.wait()
            yield done_key, self._results(request)
