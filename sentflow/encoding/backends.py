"""What turns an `Encoder`'s texts into vectors, as objects behind one small interface, chosen once by name.

`make_backend(model, pooling, backend, ...)` is the one place the model and backend names are read. It returns a
`Backend`: a `TorchBackend`, an `OnnxBackend` or an `OpenVinoBackend` runs a transformer (the three share
`TransformerBackend`'s tokenise / batch / pool loop and differ in their cache key, what batches are padded into,
whether they bring their own threads, and their forward function), and a `GloveBackend`
(`sentflow.encoding.glove`) averages GloVe word vectors. The encoder asks its backend for the vectors' width,
what names them in the cache, and the vectors; it never reads a name again.
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
from safetensors import SafetensorError
from tqdm.auto import tqdm

from sentflow.encoding import onnx as onnx_backend
from sentflow.encoding import openvino as openvino_backend
from sentflow.encoding.auto import resolve_backend
from sentflow.encoding.batching import Batching, length_batches
from sentflow.encoding.cache import digests_path
from sentflow.encoding.models import DEFAULT_POOLING, resolve_model
from sentflow.encoding.pooling import Pooling, parse_pooling, pool
from sentflow.errors import Param, SentflowError
from sentflow.extras import require
from sentflow.files.io import first_line
from sentflow.runtime import default_device, resolve_threads, using_threads

BACKENDS = ("torch", *onnx_backend.PRECISIONS, *openvino_backend.PRECISIONS)  # the transformer backends

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
    """What an `Encoder` asks of the thing that computes its vectors (a transformer runtime, or GloVe)."""

    @property
    def name(self) -> str:
        """The backend's name (`torch`, `onnx-int8`, `openvino-bf16`, `numpy` for GloVe, ...)."""
        ...

    @property
    def key(self) -> str:
        """The backend with everything that changes its vectors (precision, export and int8 recipe)."""
        ...

    @property
    def pooling(self) -> str:
        """The pooling as a pipeline records it."""
        ...

    @property
    def pooling_key(self) -> str:
        """The pooling with everything that changes the vectors (its layer set): part of the cache key."""
        ...

    @property
    def source(self) -> str:
        """What the vectors are computed from (a model directory or hub id, a folder of word vectors): the cache
        fingerprints it."""
        ...

    @property
    def device(self) -> torch.device:
        """Where the vectors are computed."""
        ...

    @property
    def dim(self) -> int:
        """Width of the vectors, known without loading any weights."""
        ...

    def encode(self, texts: list[str], batching: Batching) -> np.ndarray:
        """(len(texts), dim) float32 vectors, in the order of `texts`."""
        ...


class TransformerBackend:
    """A frozen HuggingFace transformer and a pooling, on one runtime: what the runtimes share.

    The tokenizer and config load on first use (the width reads the config alone); the weights load on the first
    encoding. A runtime subclass says what batches are padded into (`tensors`), whether it brings its own threads
    (`own_threads`), its cache `key`, and its forward function (`load`).
    """

    name = "torch"
    tensors = "pt"
    own_threads = False

    def __init__(self, model: str, pooling: str, device: torch.device) -> None:
        self._pooling = parse_pooling(pooling)
        self.model_name = model
        self.pooling = pooling
        self.device = device
        self.source = resolve_model(model)
        self._tokenizer: Any = None
        self._config: Any = None
        self._model: LoadedModel | None = None
        self._forward: Forward | None = None
        self._stream: Stream | None = None  # (rows, batch) pairs -> (rows, forward's result) pairs, overlapped

    @property
    def key(self) -> str:
        """The backend with everything that changes its vectors."""
        return self.name

    @property
    def pooling_key(self) -> str:
        """The pooling with its layer set."""
        return self._pooling.key

    @property
    def loaded(self) -> bool:
        """Whether the weights are loaded (the width alone never loads them)."""
        return self._forward is not None

    @property
    def dim(self) -> int:
        """Size of the sentence vectors, read from the model's config alone (no weights are loaded)."""
        if self._config is None:
            from transformers import AutoConfig

            try:
                self._config = AutoConfig.from_pretrained(self.source)
            except (OSError, ValueError) as exc:
                raise SentflowError(f"cannot load the config of model {self.model_name!r}: {first_line(exc)}") from None
        return int(self._config.hidden_size)

    def load(self, model: LoadedModel) -> tuple[Forward, Stream | None]:
        """The forward function over `model`, and a streaming one when the runtime overlaps batches (or None)."""
        raise NotImplementedError

    def _load(self, batching: Batching) -> None:
        from transformers import AutoConfig, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        try:
            self._tokenizer = AutoTokenizer.from_pretrained(self.source)
            self._config = self._config or AutoConfig.from_pretrained(self.source)
            self._model = LoadedModel(
                self.source, self.model_name, self._pooling, self._config, self._tokenizer, self.device,
                batching.threads, batching.show_progress,
            )
            self._forward, self._stream = self.load(self._model)
        except SentflowError:
            raise
        except (OSError, ValueError, RuntimeError, SafetensorError) as exc:  # missing, truncated or foreign files
            where = "directory" if Path(self.source).is_dir() else "hub id (needs network)"
            raise SentflowError(f"cannot load model {self.model_name!r} as a {where}: {first_line(exc)}") from None

    def encode(self, texts: list[str], batching: Batching) -> np.ndarray:
        """Tokenised, sorted by length, batched, run and pooled; (len(texts), dim) float32 in input order."""
        if self._forward is None:
            self._load(batching)
        assert self._model is not None and self._forward is not None
        n_hidden, forward = self._model.n_hidden, self._forward
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        limit = min(batching.max_length, getattr(self._config, "max_position_embeddings", batching.max_length))
        ids = self._tokenizer(texts, truncation=True, max_length=limit, add_special_tokens=True)
        groups = length_batches([len(x) for x in ids["input_ids"]], batching.batch_size, batching.batch_tokens)
        fields = list(ids.keys())
        show = batching.show_progress
        show = show if show is not None else len(texts) > 4 * batching.batch_size
        bar = tqdm(total=len(texts), disable=not show, desc="encode", unit="sent")
        # onnxruntime runs the ONNX backends on its own threads; torch only pools, and its second thread would
        # contend with onnxruntime's spinning ones (measured on 2 cores: about a quarter fewer sentences/s with two)
        torch_threads = 1 if self.own_threads else batching.threads
        with torch.inference_mode(), using_threads(torch_threads), bar:
            pad = self._tokenizer.pad
            padded = (
                (rows, dict(pad([{f: ids[f][i] for f in fields} for i in rows], return_tensors=self.tensors)))
                for rows in groups
            )
            # the OpenVINO backend keeps a batch per stream in flight; the others run one batch at a time
            results = self._stream(padded) if self._stream else ((r, forward(b)) for r, b in padded)
            for rows, (hidden, pooler, mask) in results:
                vectors = pool(self._pooling, hidden, mask, n_hidden, pooler)
                out[rows] = vectors.float().cpu().numpy()
                bar.update(len(rows))
        return out


class TorchBackend(TransformerBackend):
    """PyTorch on any device; `half` runs float16 (CUDA only)."""

    def __init__(self, model: str, pooling: str, device: torch.device, half: bool = False) -> None:
        super().__init__(model, pooling, device)
        self.half = half

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


class OnnxBackend(TransformerBackend):
    """ONNX Runtime on the CPU: the model exported once per pooling (and quantised for int8), cached."""

    tensors = "np"
    own_threads = True

    def __init__(self, model: str, pooling: str, device: torch.device, name: str, recipe: Mapping[str, Any]) -> None:
        super().__init__(model, pooling, device)
        self.name, self.recipe = name, recipe

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


class OpenVinoBackend(TransformerBackend):
    """OpenVINO's CPU plugin in fp32, bf16 or int8 weights: the ONNX export converted once to IR, cached."""

    tensors = "np"
    own_threads = True

    def __init__(
        self, model: str, pooling: str, device: torch.device, name: str, recipe: Mapping[str, Any] | None
    ) -> None:
        super().__init__(model, pooling, device)
        self.name, self.recipe = name, recipe  # recipe: int8 only

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
    model: str,
    pooling: str = DEFAULT_POOLING,
    backend: str | None = None,
    device: str | torch.device | None = None,
    half: bool = False,
    int8_recipe: Mapping[str, Any] | None = None,
) -> Backend:
    """The backend for `model`: GloVe averages for `glove-6b-50d`, else a transformer on the runtime `backend`
    names (None: torch; `auto`: the fastest accuracy-keeping one installed), its extras and device checked.

    Args:
        model: `glove-6b-50d`, or a transformer (`all-MiniLM-L6-v2`, a local directory, a hub id).
        pooling: How token vectors become a sentence vector (`sentflow.encoding.pooling`; GloVe: avg).
        backend: A name of `BACKENDS`, `auto`, or None for the model's default (torch; numpy for GloVe).
        device: Torch device (None: CUDA when available, else CPU).
        half: float16 on CUDA (torch only).
        int8_recipe: What the int8 backends quantise (None: the default recipe).
    """
    from sentflow.encoding.glove import glove_backend, is_glove

    if is_glove(model):
        return glove_backend(pooling, backend, device, half, int8_recipe)
    place = default_device(device)
    parse_pooling(pooling)  # a bad pooling is reported before a bad backend
    name = resolve_backend(backend or "torch", place)  # "auto": the fastest accuracy-keeping backend for this CPU
    if name not in BACKENDS:
        raise SentflowError(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}", param="backend")
    if name != "torch" and place.type != "cpu":
        raise SentflowError(
            Param("backend", name), " runs on the CPU; use ", Param("backend", "torch"), f" for device={str(place)!r}"
        )
    if half and place.type != "cuda":
        raise SentflowError(
            Param("half", True), f" needs a CUDA device (got device={str(place)!r}); drop ", Param("half", True)
        )
    if name == "torch":
        return TorchBackend(model, pooling, place, half)
    recipe = dict(int8_recipe or onnx_backend.INT8_RECIPE)
    if name in onnx_backend.PRECISIONS:
        require("onnxruntime", "onnx")
        return OnnxBackend(model, pooling, place, name, recipe)
    openvino_backend.openvino_module()
    require("onnx", "openvino")  # the graph OpenVINO converts is exported with torch.onnx
    precision = openvino_backend.PRECISIONS[name]
    openvino_backend.check_precision(precision)
    if precision != "int8":
        return OpenVinoBackend(model, pooling, place, name, None)
    # openvino-int8's own recipe, with `fp32_last_ffn_inputs` from a given `int8_recipe`
    own = {"fp32_last_ffn_inputs": recipe["fp32_last_ffn_inputs"]} if int8_recipe is not None else {}
    return OpenVinoBackend(model, pooling, place, name, openvino_backend.INT8_RECIPE | own)


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
