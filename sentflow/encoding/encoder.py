"""Sentence vectors from any HuggingFace encoder: batched, length-sorted, cached; on the runtime its backend runs
(PyTorch, ONNX Runtime or OpenVINO, `sentflow.encoding.backends`)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from tqdm.auto import tqdm

from sentflow.encoding import onnx as onnx_backend
from sentflow.encoding.auto import resolve_backend
from sentflow.encoding.backends import LoadedModel, make_backend
from sentflow.encoding.cache import EmbeddingCache
from sentflow.encoding.models import DEFAULT_MODEL, resolve_model
from sentflow.encoding.pooling import parse_pooling, pool
from sentflow.errors import SentflowError
from sentflow.files.io import first_line
from sentflow.files.schemas import Int8Recipe, parse
from sentflow.runtime import default_device, resolve_threads, using_threads


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
        backend: `torch`, `onnx`, `onnx-int8`, `openvino` (fp32), `openvino-bf16`, `openvino-int8`, or `auto`
            (the fastest accuracy-keeping one installed for this CPU: `sentflow.encoding.auto`).
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

        backend = resolve_backend(backend, device)  # "auto": the fastest accuracy-keeping backend for this CPU
        if is_glove(model):
            raise SentflowError(
                f"{model!r} averages word vectors and is no transformer: use sentflow.make_encoder({model!r})"
            )
        self._pooling = parse_pooling(pooling)
        if batch_tokens is not None and batch_tokens < 1:
            raise SentflowError(f"batch_tokens must be >= 1 (or None for batch_size sentences), got {batch_tokens}")
        if batch_size < 1 or max_length < 2:
            raise SentflowError(f"batch_size must be >= 1 and max_length >= 2, got {batch_size}, {max_length}")
        if int8_recipe is not None:
            parse(Int8Recipe, dict(int8_recipe), "int8_recipe")
        self.device = default_device(device)
        self._backend = make_backend(backend, self.device, half, int8_recipe)  # the one place a name is read
        resolve_threads(threads)  # a bad count fails here, not mid-encoding
        self.model_name = model
        self.pooling = pooling
        self.backend = backend
        self.batch_size = batch_size
        self.max_length = max_length
        self.threads = threads
        self.half = half
        self.int8_recipe = dict(int8_recipe or onnx_backend.INT8_RECIPE)
        self.batch_tokens = batch_tokens
        self.show_progress = show_progress
        self._cache = None if cache is False else EmbeddingCache(None if cache is True else cache)
        self._path = resolve_model(model)
        self._tokenizer: Any = None  # loaded on first use
        self._config: Any = None
        self._model: LoadedModel | None = None  # what the backend runs, once loaded
        self._forward: Any = None
        self._pipeline: Any = None  # (rows, batch) pairs -> (rows, forward's result) pairs, batches overlapped

    def _load(self) -> None:
        from transformers import AutoConfig, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        try:
            self._tokenizer = AutoTokenizer.from_pretrained(self._path)
            self._config = self._config or AutoConfig.from_pretrained(self._path)
            self._model = LoadedModel(
                str(self._path), self.model_name, self._pooling, self._config, self._tokenizer, self.device,
                self.threads, self.show_progress,
            )
            self._forward, self._pipeline = self._backend.load(self._model)
        except SentflowError:
            raise
        except (OSError, ValueError, RuntimeError, SafetensorError) as exc:  # missing, truncated or foreign files
            where = "directory" if Path(self._path).is_dir() else "hub id (needs network)"
            raise SentflowError(f"cannot load model {self.model_name!r} as a {where}: {first_line(exc)}") from None

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
        return self._backend.key

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """(len(texts), dim) float32 sentence vectors, in the order of `texts`."""
        if isinstance(texts, str):
            raise SentflowError("encode expects a list of strings, got one string; wrap it in a list")
        texts = list(texts)
        if not all(isinstance(t, str) for t in texts):
            raise SentflowError("encode expects a list of strings")
        if self._cache is None or not texts:
            return self._finite(self._encode(texts))
        cache, backend = self._cache, self.backend_key

        def key_of(block: list[str]) -> str:
            return cache.key(self._path, self._pooling.key, self.max_length, block, backend=backend)

        return cache.encode(texts, key_of, self.dim, lambda todo: self._finite(self._encode(todo)))

    def _finite(self, vectors: np.ndarray) -> np.ndarray:
        if not np.isfinite(vectors).all():
            raise SentflowError(f"model {self.model_name!r} produced non-finite vectors; try half=False")
        return vectors

    def _encode(self, texts: list[str]) -> np.ndarray:
        if self._model is None:
            self._load()
        assert self._model is not None
        n_hidden = self._model.n_hidden
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        limit = min(self.max_length, getattr(self._config, "max_position_embeddings", self.max_length))
        ids = self._tokenizer(texts, truncation=True, max_length=limit, add_special_tokens=True)
        groups = length_batches([len(x) for x in ids["input_ids"]], self.batch_size, self.batch_tokens)
        fields = list(ids.keys())
        show = self.show_progress if self.show_progress is not None else len(texts) > 4 * self.batch_size
        tensors = self._backend.tensors
        bar = tqdm(total=len(texts), disable=not show, desc="encode", unit="sent")
        # onnxruntime runs the ONNX backends on its own threads; torch only pools, and its second thread would
        # contend with onnxruntime's spinning ones (measured on 2 cores: about a quarter fewer sentences/s with two)
        torch_threads = 1 if self._backend.own_threads else self.threads
        with torch.inference_mode(), using_threads(torch_threads), bar:
            pad = self._tokenizer.pad
            padded = (
                (rows, dict(pad([{f: ids[f][i] for f in fields} for i in rows], return_tensors=tensors)))
                for rows in groups
            )
            # the OpenVINO backend keeps a batch per stream in flight; the others run one batch at a time
            results = self._pipeline(padded) if self._pipeline else ((r, self._forward(b)) for r, b in padded)
            for rows, (hidden, pooler, mask) in results:
                vectors = pool(self._pooling, hidden, mask, n_hidden, pooler)
                out[rows] = vectors.float().cpu().numpy()
                bar.update(len(rows))
        return out

