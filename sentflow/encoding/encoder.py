"""Sentence vectors from any HuggingFace encoder: batched, length-sorted, cached; PyTorch or ONNX Runtime."""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from tqdm.auto import tqdm

from sentflow.encoding import onnx as onnx_backend
from sentflow.encoding import openvino as openvino_backend
from sentflow.encoding.cache import EmbeddingCache, digests_path
from sentflow.encoding.models import DEFAULT_MODEL, resolve_model
from sentflow.encoding.pooling import parse_pooling, pool
from sentflow.errors import SentflowError
from sentflow.extras import require
from sentflow.files.io import first_line
from sentflow.files.schemas import Int8Recipe, parse
from sentflow.runtime import default_device, resolve_threads, using_threads

BACKENDS = ("torch", *onnx_backend.PRECISIONS, *openvino_backend.PRECISIONS)


def length_batches(lengths: Sequence[int], batch_size: int, batch_tokens: int | None = None) -> list[np.ndarray]:
    """Row indices of each batch, longest sentences first (so that a batch pads little).

    With `batch_tokens`, a batch holds as many sentences as fit `batch_tokens` padded tokens (its longest length
    times its rows; at least one sentence), so batches of short sentences are larger; else `batch_size` sentences.
    """
    order = np.argsort([-n for n in lengths], kind="stable")
    if batch_tokens is None:
        return [order[start : start + batch_size] for start in range(0, len(order), batch_size)]
    groups, start = [], 0
    while start < len(order):
        rows = max(1, batch_tokens // max(1, lengths[order[start]]))
        groups.append(order[start : start + rows])
        start += rows
    return groups


class Encoder:
    """Encode sentences with a frozen transformer and one of the `sentflow.encoding.pooling` strategies.

    `backend` is "torch" (any device; `half=True` runs float16 on CUDA), "onnx" (ONNX Runtime, fp32) or
    "onnx-int8" (ONNX Runtime, dynamically quantised int8); the ONNX graph is exported once per model and
    pooling and cached; `int8_recipe` says what onnx-int8 quantises (default `onnx_backend.INT8_RECIPE`).
    "openvino", "openvino-bf16" and "openvino-int8" run that export, converted once to OpenVINO IR and cached,
    on OpenVINO's CPU plugin in fp32, bfloat16 (CPUs with bf16 instructions) or with int8 weights
    (`sentflow.encoding.openvino`; a given `int8_recipe`'s `fp32_last_ffn_inputs` applies to it too).
    `threads` caps the CPU threads of the forward passes (default: every available core, or
    $SENTFLOW_THREADS); torch's global setting is restored afterwards.
    `cache` is a directory for embeddings (default: ~/.cache/sentflow/embeddings), or False to
    disable it; re-encoding the same texts with the same model, pooling and backend then costs nothing.

    Args:
        model: `all-MiniLM-L6-v2` (the embedded copy), a local HuggingFace directory, or a hub id (needs the
            network); loaded with `trust_remote_code` off.
        pooling: `cls`, `pooler`, `last-avg`, `first-last-avg`, `last2avg` or `layers:I,J,...`.
        batch_size: Sentences per forward pass (sentences are sorted by length first).
        max_length: Tokens kept per sentence.
        device: Torch device of the torch backend (None: CUDA when available, else CPU).
        cache: True for the default cache directory, a directory, or False for no cache.
        show_progress: Show a progress bar (None: only when there are more than four batches).
        backend: `torch`, `onnx`, `onnx-int8`, `openvino` (fp32), `openvino-bf16` or `openvino-int8`.
        threads: CPU threads of the forward passes (None: `$SENTFLOW_THREADS`, else every available core).
        half: Run the torch backend in float16 (CUDA only); vectors still come back as float32.
        int8_recipe: What `onnx-int8` quantises (keys of `onnx_backend.INT8_RECIPE`); None for the default.
        batch_tokens: Padded tokens per forward pass at most (rows x longest sentence); replaces `batch_size`
            when set, so that short sentences go in larger batches.
    """

    def __init__(
        self,
        model: str = DEFAULT_MODEL,
        pooling: str = "last-avg",
        batch_size: int = 64,
        max_length: int = 256,
        device: str | None = None,
        cache: str | os.PathLike | bool = True,
        show_progress: bool | None = None,
        backend: str = "torch",
        threads: int | None = None,
        half: bool = False,
        int8_recipe: Mapping | None = None,
        batch_tokens: int | None = None,
    ) -> None:
        from sentflow.encoding.glove import is_glove

        if is_glove(model):
            raise SentflowError(
                f"{model!r} averages word vectors and is no transformer: use sentflow.make_encoder({model!r})"
            )
        self._pooling = parse_pooling(pooling)
        if batch_tokens is not None and batch_tokens < 1:
            raise SentflowError(f"batch_tokens must be >= 1 (or None for batch_size sentences), got {batch_tokens}")
        if batch_size < 1 or max_length < 2:
            raise SentflowError(f"batch_size must be >= 1 and max_length >= 2, got {batch_size}, {max_length}")
        if backend not in BACKENDS:
            raise SentflowError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
        self.device = default_device(device)
        if backend in openvino_backend.PRECISIONS:
            openvino_backend.openvino_module()
            require("onnx", "openvino")  # the graph OpenVINO converts is exported with torch.onnx
            openvino_backend.check_precision(openvino_backend.PRECISIONS[backend])
        elif backend != "torch":
            require("onnxruntime", "onnx")
        if backend != "torch" and self.device.type != "cpu":
            raise SentflowError(f"backend={backend!r} runs on the CPU; use backend='torch' for device={device!r}")
        if half and self.device.type != "cuda":
            raise SentflowError(f"half=True needs a CUDA device (got device={str(self.device)!r}); drop half=True")
        resolve_threads(threads)  # a bad count fails here, not mid-encoding
        if int8_recipe is not None:
            parse(Int8Recipe, dict(int8_recipe), "int8_recipe")
        self.model_name = model
        self.pooling = pooling
        self.backend = backend
        self.batch_size = batch_size
        self.max_length = max_length
        self.threads = threads
        self.half = half
        self.int8_recipe = dict(int8_recipe or onnx_backend.INT8_RECIPE)
        self._own_int8_recipe = int8_recipe is not None
        self.batch_tokens = batch_tokens
        self.show_progress = show_progress
        self._cache = None if cache is False else EmbeddingCache(None if cache is True else cache)
        self._path = resolve_model(model)
        self._tokenizer: Any = None  # loaded on first use
        self._config: Any = None
        self._forward: Any = None
        self._pipeline: Any = None  # (rows, batch) pairs -> (rows, forward's result) pairs, batches overlapped

    def _load(self) -> None:
        from transformers import AutoConfig, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        try:
            self._tokenizer = AutoTokenizer.from_pretrained(self._path)
            self._config = self._config or AutoConfig.from_pretrained(self._path)
            if self.backend == "torch":
                self._forward = self._torch_forward()
            elif self.backend in openvino_backend.PRECISIONS:
                self._forward = self._openvino_forward()
            else:
                self._forward = self._onnx_forward()
        except SentflowError:
            raise
        except (OSError, ValueError, RuntimeError, SafetensorError) as exc:  # missing, truncated or foreign files
            where = "directory" if Path(self._path).is_dir() else "hub id (needs network)"
            raise SentflowError(f"cannot load model {self.model_name!r} as a {where}: {first_line(exc)}") from None

    @property
    def _n_hidden(self) -> int:
        return int(self._config.num_hidden_layers) + 1

    def _hf_model(self, **kwargs) -> torch.nn.Module:
        from transformers import AutoModel

        return AutoModel.from_pretrained(self._path, **kwargs).eval()

    def _torch_forward(self):
        """A function from a padded batch to (hidden states by index, pooler output), running the torch model."""
        self._pooling.hidden_states(self._n_hidden)  # a bad layer spec fails before the model loads
        model = self._hf_model(dtype=torch.float16 if self.half else torch.float32).to(self.device)

        def forward(batch):
            batch = {k: torch.as_tensor(v).to(self.device) for k, v in batch.items()}
            out = model(**batch, output_hidden_states=self._pooling.kind == "layers")
            hidden = dict(enumerate(out.hidden_states)) if out.hidden_states else {}
            hidden[self._n_hidden - 1] = out.last_hidden_state
            return hidden, getattr(out, "pooler_output", None), batch["attention_mask"]

        return forward

    def _onnx_forward(self):
        """The same function, running the cached (exported on first use) ONNX graph in onnxruntime."""
        hidden = self._pooling.hidden_states(self._n_hidden)
        pooler = self._pooling.kind == "pooler"
        names = onnx_backend.output_names(hidden, pooler)
        precision = onnx_backend.PRECISIONS[self.backend]
        path = onnx_backend.model_file(self._path, precision, names, self.int8_recipe)
        if not onnx_backend.is_cached(path):
            _say_if_damaged(path, "ONNX graph")
            self._status(f"building the {self.backend} graph of {self.model_name} (first use; cached in {path.parent})")
            self._build_onnx(path, precision, hidden, pooler, names)
        session = onnx_backend.OnnxSession(path, resolve_threads(self.threads))

        def forward(batch):
            out = session(batch)
            states = {i: out[f"hidden_{i}"] for i in hidden}
            return states, out.get("pooler_output"), torch.from_numpy(np.asarray(batch["attention_mask"]))

        return forward

    def _openvino_forward(self):
        """The same function, running the cached (converted on first use) OpenVINO IR on the CPU plugin."""
        hidden = self._pooling.hidden_states(self._n_hidden)
        pooler = self._pooling.kind == "pooler"
        names = onnx_backend.output_names(hidden, pooler)
        precision = openvino_backend.PRECISIONS[self.backend]
        recipe = self._openvino_recipe() if precision == "int8" else None
        xml = openvino_backend.model_file(self._path, precision, names, recipe)
        if not openvino_backend.is_cached(xml):
            _say_if_damaged(xml, "OpenVINO model")
            self._status(f"building the {self.backend} model of {self.model_name} (first use; cached in {xml.parent})")
            model, example = self._export_source(pooler)

            def export(path: Path) -> None:
                onnx_backend.export(model, example, hidden, pooler, path, optimise=False)

            with using_threads(self.threads):
                openvino_backend.build(export, xml, precision, recipe)
        session = openvino_backend.OpenVinoModel(xml, precision, resolve_threads(self.threads))

        def result(batch, out):
            states = {i: out[f"hidden_{i}"] for i in hidden}
            return states, out.get("pooler_output"), torch.from_numpy(np.asarray(batch["attention_mask"]))

        def pipeline(batches):
            pairs = (((rows, batch), batch) for rows, batch in batches)
            for (rows, batch), out in session.map(pairs):
                yield rows, result(batch, out)

        self._pipeline = pipeline
        return lambda batch: result(batch, session(batch))

    def _openvino_recipe(self) -> dict[str, Any]:
        """openvino-int8's recipe: its own, with `fp32_last_ffn_inputs` from `int8_recipe` when one was given."""
        if self._own_int8_recipe:
            return openvino_backend.INT8_RECIPE | {"fp32_last_ffn_inputs": self.int8_recipe["fp32_last_ffn_inputs"]}
        return dict(openvino_backend.INT8_RECIPE)

    def _build_onnx(self, path: Path, precision: str, hidden, pooler: bool, names: list[str]) -> None:
        fp32 = onnx_backend.model_file(self._path, "fp32", names)
        if not onnx_backend.is_cached(fp32):
            _say_if_damaged(fp32, "ONNX graph")
            model, example = self._export_source(pooler)
            with using_threads(self.threads):
                onnx_backend.export(model, example, hidden, pooler, fp32)
        if precision == "int8":
            onnx_backend.quantize(fp32, path, self.int8_recipe)

    def _export_source(self, pooler: bool) -> tuple[torch.nn.Module, Any]:
        """The model to trace (eager attention, so the exporter records the masking) and a padded example batch."""
        model = self._hf_model(attn_implementation="eager")
        if pooler and getattr(model, "pooler", None) is None:
            raise SentflowError("pooling 'pooler': this model has no pooler layer; use cls or last-avg")
        example = self._tokenizer(["a sentence to trace the graph with", "a"], padding=True, return_tensors="pt")
        return model, example

    def _status(self, message: str) -> None:
        """One line on stderr for a slow step the user would otherwise wait through in silence."""
        if self.show_progress is not False:
            print(message, file=sys.stderr, flush=True)

    @property
    def dim(self) -> int:
        """Size of the sentence vectors, read from the model's config alone (no weights are loaded)."""
        if self._config is None:
            from transformers import AutoConfig

            try:
                self._config = AutoConfig.from_pretrained(self._path)
            except (OSError, ValueError) as exc:
                raise SentflowError(f"cannot load the config of model {self.model_name!r}: {first_line(exc)}") from None
        return int(self._config.hidden_size)

    @property
    def backend_key(self) -> str:
        """The backend with everything that changes its vectors (fp16, the ONNX export and int8 recipe)."""
        backend = f"{self.backend}-fp16" if self.half else self.backend
        if self.backend in openvino_backend.PRECISIONS:
            precision = openvino_backend.PRECISIONS[self.backend]
            recipe = self._openvino_recipe() if precision == "int8" else None
            backend += "-" + openvino_backend.graph_tag(precision, recipe)
        elif self.backend != "torch":
            backend += "-" + onnx_backend.graph_tag(onnx_backend.PRECISIONS[self.backend], self.int8_recipe)
        return backend

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """(len(texts), dim) float32 sentence vectors, in the order of `texts`."""
        if isinstance(texts, str):
            raise SentflowError("encode expects a list of strings, got one string; wrap it in a list")
        texts = list(texts)
        if not all(isinstance(t, str) for t in texts):
            raise SentflowError("encode expects a list of strings")
        key = None
        if self._cache is not None and texts:
            key = self._cache.key(self._path, self._pooling.key, self.max_length, texts, backend=self.backend_key)
            hit = self._cache.get(key, len(texts), self.dim)
            if hit is not None:
                return hit
        vectors = self._encode(texts)
        if not np.isfinite(vectors).all():
            raise SentflowError(f"model {self.model_name!r} produced non-finite vectors; try half=False")
        if key is not None and self._cache is not None:
            self._cache.put(key, vectors)
        return vectors

    def _encode(self, texts: list[str]) -> np.ndarray:
        if self._forward is None:
            self._load()
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        limit = min(self.max_length, getattr(self._config, "max_position_embeddings", self.max_length))
        ids = self._tokenizer(texts, truncation=True, max_length=limit, add_special_tokens=True)
        groups = length_batches([len(x) for x in ids["input_ids"]], self.batch_size, self.batch_tokens)
        fields = list(ids.keys())
        show = self.show_progress if self.show_progress is not None else len(texts) > 4 * self.batch_size
        tensors = "pt" if self.backend == "torch" else "np"
        bar = tqdm(total=len(texts), disable=not show, desc="encode", unit="sent")
        # onnxruntime runs the ONNX backends on its own threads; torch only pools, and its second thread would
        # contend with onnxruntime's spinning ones (measured on 2 cores: about a quarter fewer sentences/s with two)
        torch_threads = self.threads if self.backend == "torch" else 1
        with torch.inference_mode(), using_threads(torch_threads), bar:
            pad = self._tokenizer.pad
            padded = (
                (rows, dict(pad([{f: ids[f][i] for f in fields} for i in rows], return_tensors=tensors)))
                for rows in groups
            )
            # the OpenVINO backend keeps a batch per stream in flight; the others run one batch at a time
            results = self._pipeline(padded) if self._pipeline else ((r, self._forward(b)) for r, b in padded)
            for rows, (hidden, pooler, mask) in results:
                vectors = pool(self._pooling, hidden, mask, self._n_hidden, pooler)
                out[rows] = vectors.float().cpu().numpy()
                bar.update(len(rows))
        return out


def _say_if_damaged(path: Path, what: str) -> None:
    """Warn that a cache entry about to be rebuilt was there but damaged (rather than missing, or written by a
    version that recorded no checksum)."""
    if path.exists() and digests_path(path).exists():
        warnings.warn(f"{path}: damaged {what} in the cache (its checksum does not match); rebuilding it", stacklevel=4)
