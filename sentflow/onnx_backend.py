"""ONNX Runtime backend: export a HF encoder once, optimise it, optionally quantise it to int8, run it.

The graph is exported with torch's TorchScript-based `torch.onnx.export` (dynamic batch and sequence axes), which
needs nothing beyond torch and onnx; its outputs are only the hidden states (and pooler output) that the pooling
reads. onnxruntime's transformer optimiser fuses attention, GELU and layer norms; `onnx-int8` then quantises the
weights of the optimised graph dynamically (QInt8, activations quantised per batch at run time). Files are cached
under the sentflow cache directory, keyed by the model fingerprint, the precision, the outputs and the versions of
the tools, and written atomically, so the export runs once per model and pooling.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch

from sentflow.cache import default_cache_dir, model_fingerprint
from sentflow.extras import require
from sentflow.io import write_atomic

PRECISIONS = {"onnx": "fp32", "onnx-int8": "int8"}
INPUTS = ("input_ids", "attention_mask", "token_type_ids")
OPSET = 17


def output_names(hidden: Sequence[int], pooler: bool) -> list[str]:
    """Graph output names: hidden_<i> for each hidden-state index, then pooler_output."""
    return [f"hidden_{i}" for i in hidden] + (["pooler_output"] if pooler else [])


def model_file(model_path: str, precision: str, outputs: Sequence[str], directory: Path | None = None) -> Path:
    """Where the ONNX graph of `model_path` with these outputs and precision is cached."""
    ort = require("onnxruntime", "onnx")
    spec = {
        "model": model_fingerprint(model_path),
        "precision": precision,
        "outputs": list(outputs),
        "tools": [torch.__version__, ort.__version__, OPSET],
    }
    digest = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:32]
    return (directory or default_cache_dir() / "onnx") / f"{digest}-{precision}.onnx"


class _Outputs(torch.nn.Module):
    """The HF model as a function of positional input tensors returning the chosen hidden states."""

    def __init__(self, model: torch.nn.Module, inputs: Sequence[str], hidden: Sequence[int], pooler: bool) -> None:
        super().__init__()
        self.model, self.inputs, self.hidden, self.pooler = model, list(inputs), list(hidden), pooler

    def forward(self, *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.model(**dict(zip(self.inputs, tensors, strict=True)), output_hidden_states=True)
        states = [out.hidden_states[i] for i in self.hidden]
        return tuple(states + [out.pooler_output] if self.pooler else states)


def export(
    model: torch.nn.Module, example: Mapping[str, torch.Tensor], hidden: Sequence[int], pooler: bool, path: Path
):
    """Export `model` (loaded with eager attention) to an fp32 ONNX graph at `path`, optimised for CPU.

    `example` is a padded tokenizer batch (so that the tracer records the masking); its model inputs become the
    graph's inputs, with dynamic batch and token axes.
    """
    require("onnx", "onnx")
    from onnxruntime.transformers.optimizer import optimize_model

    inputs = [name for name in example if name in INPUTS]
    tensors = tuple(example[name] for name in inputs)
    names = output_names(hidden, pooler)
    axes = {name: {0: "batch", 1: "tokens"} for name in [*inputs, *names] if name != "pooler_output"}
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the exporter's tracer warnings are about shapes we made dynamic
        raw = Path(tmp) / "raw.onnx"
        torch.onnx.export(
            _Outputs(model.eval(), inputs, hidden, pooler),
            tensors,
            str(raw),
            dynamo=False,
            input_names=list(inputs),
            output_names=names,
            dynamic_axes=axes | ({"pooler_output": {0: "batch"}} if pooler else {}),
            opset_version=OPSET,
        )
        config = model.config
        optimised = optimize_model(
            str(raw), "bert", num_heads=config.num_attention_heads, hidden_size=config.hidden_size, opt_level=0
        )
        write_atomic(path, lambda tmp_path: optimised.save_model_to_file(str(tmp_path)))


def quantize(source: Path, path: Path) -> None:
    """Dynamically quantise the fp32 graph at `source` to int8 weights at `path`."""
    onnx = require("onnx", "onnx")
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # the fused (com.microsoft) nodes defeat ONNX shape inference; their tensors are float
    options = {"DefaultTensorType": onnx.TensorProto.FLOAT}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        write_atomic(
            path, lambda tmp: quantize_dynamic(source, tmp, weight_type=QuantType.QInt8, extra_options=options)
        )


class OnnxSession:
    """An onnxruntime CPU session over a cached graph, with a fixed number of intra-op threads."""

    def __init__(self, path: Path, threads: int) -> None:
        ort = require("onnxruntime", "onnx")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self._session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.inputs = [i.name for i in self._session.get_inputs()]
        self.outputs = [o.name for o in self._session.get_outputs()]

    def __call__(self, batch: Mapping[str, np.ndarray]) -> dict[str, torch.Tensor]:
        """Run one padded batch (int64 arrays by input name): output name -> tensor."""
        feed = {name: np.asarray(batch[name], dtype=np.int64) for name in self.inputs}
        return {name: torch.from_numpy(a) for name, a in zip(self.outputs, self._session.run(None, feed), strict=True)}
