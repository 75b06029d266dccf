"""ONNX Runtime backend: export a HF encoder once, optimise it, optionally quantise it to int8, run it.

The graph is exported with torch's TorchScript-based `torch.onnx.export` (dynamic batch and sequence axes), which
needs nothing beyond torch and onnx; its outputs are only the hidden states (and pooler output) that the pooling
reads. onnxruntime's transformer optimiser fuses attention, GELU and layer norms; `onnx-int8` then quantises the
optimised graph dynamically following `INT8_RECIPE` (measured on STS-B by eval/int8_recipes.py): int8 weights per
output channel for the plain MatMuls only (the fused attention and the embeddings stay fp32), activations quantised
per batch at run time, and the feed-forward input projections of the last two layers left in fp32. Files are cached
under the sentflow cache directory, keyed by the model fingerprint, the precision, the int8 recipe, the outputs and
the versions of the tools, and written atomically, so the export runs once per model and pooling.
"""

from __future__ import annotations

import logging
import re
import shutil
import tempfile
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sentflow.encoding.cache import graph_file, is_intact, record_digests, spec_digest
from sentflow.extras import require
from sentflow.files.io import write_atomic

PRECISIONS = {"onnx": "fp32", "onnx-int8": "int8"}
INPUTS = ("input_ids", "attention_mask", "token_type_ids")
OPSET = 17
# Quantising the fused Attention (QAttention: 7-bit weights) or the embedding table, per-tensor weights, or the
# feed-forward input projections of the last layers each cost STS-B Spearman with whitening (eval/int8_recipes.py).
INT8_RECIPE = {"operators": ["MatMul"], "weights": "QInt8", "per_channel": True, "fp32_last_ffn_inputs": 2}


def output_names(hidden: Sequence[int], pooler: bool) -> list[str]:
    """Graph output names: hidden_<i> for each hidden-state index, then pooler_output."""
    return [f"hidden_{i}" for i in hidden] + (["pooler_output"] if pooler else [])


def graph_tag(precision: str, recipe: Mapping | None = None) -> str:
    """What decides the graph's numbers besides model and outputs: precision, int8 recipe, tool versions."""
    ort = require("onnxruntime", "onnx")
    spec: dict[str, object] = {"precision": precision, "recipe": recipe if precision == "int8" else None}
    spec["tools"] = [torch.__version__, ort.__version__, OPSET]
    return spec_digest(spec, 16)


def model_file(
    model_path: str,
    precision: str,
    outputs: Sequence[str],
    recipe: Mapping | None = None,
    directory: Path | None = None,
) -> Path:
    """Where the ONNX graph of `model_path` with these outputs, precision and int8 recipe is cached."""
    return graph_file("onnx", model_path, graph_tag(precision, recipe), outputs, f"{precision}.onnx", directory)


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
    model: torch.nn.Module,
    example: Mapping[str, torch.Tensor],
    hidden: Sequence[int],
    pooler: bool,
    path: Path,
    optimise: bool = True,
):
    """Export `model` (loaded with eager attention) to an fp32 ONNX graph at `path`, optimised for CPU.

    `example` is a padded tokenizer batch (so that the tracer records the masking); its model inputs become the
    graph's inputs, with dynamic batch and token axes. `optimise=False` writes the plain exported graph, without
    onnxruntime's fused operators (what the OpenVINO backend converts; it needs no onnxruntime).
    """
    require("onnx", "onnx")

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
        if not optimise:
            write_atomic(path, lambda tmp_path: shutil.copyfile(raw, tmp_path))
            record_digests(path)
            return
        from onnxruntime.transformers.optimizer import optimize_model

        config: Any = model.config
        optimised = optimize_model(
            str(raw), "bert", num_heads=config.num_attention_heads, hidden_size=config.hidden_size, opt_level=0
        )
        write_atomic(path, lambda tmp_path: optimised.save_model_to_file(str(tmp_path)))
    record_digests(path)


def last_ffn_inputs(names: Sequence[str], layers: int) -> list[str]:
    """The MatMuls of the feed-forward input projections (`layer.<i>/intermediate/`) of the last `layers` layers."""
    found = {name: int(m[1]) for name in names if (m := re.search(r"layer\.(\d+)/intermediate/", name))}
    last = sorted(set(found.values()))[-layers:] if layers else []
    return [name for name, layer in found.items() if layer in last]


def quantize(source: Path, path: Path, recipe: Mapping = INT8_RECIPE) -> None:
    """Dynamically quantise the fp32 graph at `source` to int8 following `recipe` (see INT8_RECIPE) at `path`."""
    onnx = require("onnx", "onnx")
    from onnxruntime.quantization import QuantType, quantize_dynamic

    graph = onnx.load(str(source), load_external_data=False).graph
    matmuls = [node.name for node in graph.node if node.op_type == "MatMul"]
    # the fused (com.microsoft) nodes defeat ONNX shape inference; their tensors are float
    options = {"DefaultTensorType": onnx.TensorProto.FLOAT, "MatMulConstBOnly": True}
    settings = {
        "weight_type": getattr(QuantType, recipe["weights"]),
        "per_channel": recipe["per_channel"],
        "op_types_to_quantize": recipe["operators"],  # None: every operator onnxruntime can quantise
        "nodes_to_exclude": last_ffn_inputs(matmuls, recipe["fp32_last_ffn_inputs"]),
        "extra_options": options,
    }
    with warnings.catch_warnings(), _quiet_root_logger():  # its "consider pre-processing" advice is for authors
        warnings.simplefilter("ignore")
        write_atomic(path, lambda tmp: quantize_dynamic(source, tmp, **settings))
    record_digests(path)


def is_cached(path: Path) -> bool:
    """Whether the cached graph at `path` is complete and unchanged since it was written (its checksum)."""
    return is_intact(path)


@contextmanager
def _quiet_root_logger() -> Iterator[None]:
    """Silence the root logger below ERROR for the block (onnxruntime's quantiser logs through it). A handler is
    present meanwhile, so `logging.warning` does not call basicConfig and leave one installed for good."""
    root, handler = logging.getLogger(), logging.NullHandler()
    level = root.level
    root.setLevel(logging.ERROR)
    root.addHandler(handler)
    try:
        yield
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


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
