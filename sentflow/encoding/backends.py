"""The runtimes an `Encoder` runs its transformer on, as objects behind one small interface, chosen once by name.

`make_backend(name, ...)` turns a backend name into a `TorchBackend`, an `OnnxBackend` or an `OpenVinoBackend`;
the encoder then asks it what differs between runtimes: its cache key, what its batches are padded into, whether
it brings its own threads, and the forward function over a loaded model (`load`).
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from sentflow.encoding import onnx as onnx_backend
from sentflow.encoding import openvino as openvino_backend
from sentflow.encoding.cache import digests_path
from sentflow.encoding.pooling import Pooling
from sentflow.errors import Param, SentflowError
from sentflow.extras import require
from sentflow.runtime import resolve_threads, using_threads

BACKENDS = ("torch", *onnx_backend.PRECISIONS, *openvino_backend.PRECISIONS)

Forward = Callable[[dict], tuple[dict, Any, torch.Tensor]]  # padded batch -> (hidden states, pooler, mask)
Stream = Callable[[Iterable[tuple[Any, dict]]], Iterator[tuple[Any, tuple[dict, Any, torch.Tensor]]]]


@dataclass(frozen=True)
class LoadedModel:
    """What a backend needs of the model it runs: where it is, its config and tokenizer, and the run settings."""

    path: str
    name: str
    pooling: Pooling
    config: Any
    tokenizer: Any
    device: torch.device
    threads: int | None
    show_progress: bool | None

    @property
    def n_hidden(self) -> int:
        """Hidden states the model returns: the embeddings and one per layer."""
        return int(self.config.num_hidden_layers) + 1

    def hf_model(self, **kwargs: Any) -> torch.nn.Module:
        """The HuggingFace model in eval mode, loaded with `trust_remote_code` off."""
        from transformers import AutoModel

        return AutoModel.from_pretrained(self.path, **kwargs).eval()

    def export_source(self, pooler: bool) -> tuple[torch.nn.Module, Any]:
        """The model to trace (eager attention, so the exporter records the masking) and a padded example batch."""
        model = self.hf_model(attn_implementation="eager")
        if pooler and getattr(model, "pooler", None) is None:
            raise SentflowError("pooling 'pooler': this model has no pooler layer; use cls or last-avg")
        example = self.tokenizer(["a sentence to trace the graph with", "a"], padding=True, return_tensors="pt")
        return model, example

    def status(self, message: str) -> None:
        """One line on stderr for a slow step the user would otherwise wait through in silence."""
        if self.show_progress is not False:
            print(message, file=sys.stderr, flush=True)


class Backend(Protocol):
    """A runtime for the encoder's forward passes."""

    @property
    def name(self) -> str:
        """The backend's name (`torch`, `onnx-int8`, `openvino-bf16`, ...)."""
        ...

    @property
    def tensors(self) -> str:
        """What batches are padded into: `pt` (torch tensors) or `np` (numpy arrays)."""
        ...

    @property
    def own_threads(self) -> bool:
        """Whether it runs on its own thread pool (torch then only pools, on one thread)."""
        ...

    @property
    def key(self) -> str:
        """The backend with everything that changes its vectors (precision, export and int8 recipe)."""
        ...

    def load(self, model: LoadedModel) -> tuple[Forward, Stream | None]:
        """The forward function over `model`, and a streaming one when the runtime overlaps batches (or None)."""
        ...


@dataclass(frozen=True)
class TorchBackend:
    """PyTorch on any device; `half` runs float16 (CUDA only)."""

    half: bool = False
    name: str = "torch"
    tensors: str = "pt"
    own_threads: bool = False

    @property
    def key(self) -> str:
        """`torch`, or `torch-fp16` with `half`."""
        return "torch-fp16" if self.half else "torch"

    def load(self, model: LoadedModel) -> tuple[Forward, Stream | None]:
        """The torch model on its device, returning every hidden state the pooling reads."""
        pooling, n_hidden, device = model.pooling, model.n_hidden, model.device
        pooling.hidden_states(n_hidden)  # a bad layer spec fails before the model loads
        network = model.hf_model(dtype=torch.float16 if self.half else torch.float32).to(device)

        def forward(batch: dict) -> tuple[dict, Any, torch.Tensor]:
            batch = {k: torch.as_tensor(v).to(device) for k, v in batch.items()}
            out = network(**batch, output_hidden_states=pooling.kind == "layers")
            hidden = dict(enumerate(out.hidden_states)) if out.hidden_states else {}
            hidden[n_hidden - 1] = out.last_hidden_state
            return hidden, getattr(out, "pooler_output", None), batch["attention_mask"]

        return forward, None


@dataclass(frozen=True)
class OnnxBackend:
    """ONNX Runtime on the CPU: the model exported once per pooling (and quantised for int8), cached."""

    name: str
    recipe: Mapping[str, Any]
    tensors: str = "np"
    own_threads: bool = True

    @property
    def precision(self) -> str:
        """`fp32` or `int8`."""
        return onnx_backend.PRECISIONS[self.name]

    @property
    def key(self) -> str:
        """The name and the graph's tag (precision and int8 recipe)."""
        return f"{self.name}-{onnx_backend.graph_tag(self.precision, self.recipe)}"

    def load(self, model: LoadedModel) -> tuple[Forward, Stream | None]:
        """A session over the cached graph, exported (and quantised) on first use."""
        hidden, pooler = _outputs(model)
        names = onnx_backend.output_names(hidden, pooler)
        path = onnx_backend.model_file(model.path, self.precision, names, self.recipe)
        if not onnx_backend.is_cached(path):
            _say_if_damaged(path, "ONNX graph")
            model.status(f"building the {self.name} graph of {model.name} (first use; cached in {path.parent})")
            self._build(model, path, hidden, pooler, names)
        session = onnx_backend.OnnxSession(path, resolve_threads(model.threads))
        return lambda batch: _result(hidden, batch, session(batch)), None

    def _build(self, model: LoadedModel, path: Path, hidden, pooler: bool, names: list[str]) -> None:
        fp32 = onnx_backend.model_file(model.path, "fp32", names)
        if not onnx_backend.is_cached(fp32):
            _say_if_damaged(fp32, "ONNX graph")
            network, example = model.export_source(pooler)
            with using_threads(model.threads):
                onnx_backend.export(network, example, hidden, pooler, fp32)
        if self.precision == "int8":
            onnx_backend.quantize(fp32, path, self.recipe)


@dataclass(frozen=True)
class OpenVinoBackend:
    """OpenVINO's CPU plugin in fp32, bf16 or int8 weights: the ONNX export converted once to IR, cached."""

    name: str
    recipe: Mapping[str, Any] | None  # int8 only
    tensors: str = "np"
    own_threads: bool = True

    @property
    def precision(self) -> str:
        """`fp32`, `bf16` or `int8`."""
        return openvino_backend.PRECISIONS[self.name]

    @property
    def key(self) -> str:
        """The name and the model's tag (precision and int8 recipe)."""
        return f"{self.name}-{openvino_backend.graph_tag(self.precision, self.recipe)}"

    def load(self, model: LoadedModel) -> tuple[Forward, Stream | None]:
        """The compiled IR, converted on first use; batches are kept in flight, one per stream."""
        hidden, pooler = _outputs(model)
        names = onnx_backend.output_names(hidden, pooler)
        xml = openvino_backend.model_file(model.path, self.precision, names, self.recipe)
        if not openvino_backend.is_cached(xml):
            _say_if_damaged(xml, "OpenVINO model")
            model.status(f"building the {self.name} model of {model.name} (first use; cached in {xml.parent})")
            network, example = model.export_source(pooler)

            def export(path: Path) -> None:
                onnx_backend.export(network, example, hidden, pooler, path, optimise=False)

            with using_threads(model.threads):
                openvino_backend.build(export, xml, self.precision, self.recipe)
        session = openvino_backend.OpenVinoModel(xml, self.precision, resolve_threads(model.threads))

        def stream(batches: Iterable[tuple[Any, dict]]) -> Iterator[tuple[Any, tuple[dict, Any, torch.Tensor]]]:
            pairs = (((rows, batch), batch) for rows, batch in batches)
            for (rows, batch), out in session.map(pairs):
                yield rows, _result(hidden, batch, out)

        return lambda batch: _result(hidden, batch, session(batch)), stream


def make_backend(
    name: str, device: torch.device, half: bool = False, int8_recipe: Mapping[str, Any] | None = None
) -> Backend:
    """The backend a name stands for, its extras and device checked (`int8_recipe` None: the default recipe)."""
    if name not in BACKENDS:
        raise SentflowError(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}", param="backend")
    if name != "torch" and device.type != "cpu":
        raise SentflowError(
            Param("backend", name), " runs on the CPU; use ", Param("backend", "torch"), f" for device={str(device)!r}"
        )
    if half and device.type != "cuda":
        raise SentflowError(
            Param("half", True), f" needs a CUDA device (got device={str(device)!r}); drop ", Param("half", True)
        )
    if name == "torch":
        return TorchBackend(half)
    recipe = dict(int8_recipe or onnx_backend.INT8_RECIPE)
    if name in onnx_backend.PRECISIONS:
        require("onnxruntime", "onnx")
        return OnnxBackend(name, recipe)
    openvino_backend.openvino_module()
    require("onnx", "openvino")  # the graph OpenVINO converts is exported with torch.onnx
    precision = openvino_backend.PRECISIONS[name]
    openvino_backend.check_precision(precision)
    if precision != "int8":
        return OpenVinoBackend(name, None)
    # openvino-int8's own recipe, with `fp32_last_ffn_inputs` from a given `int8_recipe`
    own = {"fp32_last_ffn_inputs": recipe["fp32_last_ffn_inputs"]} if int8_recipe is not None else {}
    return OpenVinoBackend(name, openvino_backend.INT8_RECIPE | own)


def _outputs(model: LoadedModel) -> tuple[tuple[int, ...], bool]:
    """The hidden states a graph must return for the pooling, and whether it returns the pooler output."""
    return model.pooling.hidden_states(model.n_hidden), model.pooling.kind == "pooler"


def _result(hidden: tuple[int, ...], batch: dict, out: Mapping[str, Any]) -> tuple[dict, Any, torch.Tensor]:
    """A graph's named outputs as (hidden states by index, pooler output, attention mask)."""
    states = {i: out[f"hidden_{i}"] for i in hidden}
    return states, out.get("pooler_output"), torch.from_numpy(np.asarray(batch["attention_mask"]))


def _say_if_damaged(path: Path, what: str) -> None:
    """Warn that a cache entry about to be rebuilt was there but damaged (rather than missing, or written by a
    version that recorded no checksum)."""
    if path.exists() and digests_path(path).exists():
        warnings.warn(f"{path}: damaged {what} in the cache (its checksum does not match); rebuilding it", stacklevel=4)
