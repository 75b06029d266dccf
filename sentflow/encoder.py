"""Sentence vectors from any HuggingFace encoder: batched, length-sorted, cached."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from sentflow.cache import EmbeddingCache
from sentflow.errors import SentflowError
from sentflow.io import first_line
from sentflow.models import DEFAULT_MODEL, resolve_model
from sentflow.pooling import POOLINGS, needs_hidden_states, pool


def default_device() -> str:
    """cuda when a GPU is visible, else cpu."""
    return "cuda" if torch.cuda.is_available() else "cpu"


class Encoder:
    """Encode sentences with a frozen transformer and one of the `sentflow.pooling` strategies.

    `cache` is a directory for embeddings (default: ~/.cache/sentflow/embeddings), or False to
    disable it; re-encoding the same texts with the same model and pooling then costs nothing.
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
    ) -> None:
        if pooling not in POOLINGS:
            raise SentflowError(f"unknown pooling {pooling!r}; choose one of {', '.join(POOLINGS)}")
        if batch_size < 1 or max_length < 2:
            raise SentflowError(f"batch_size must be >= 1 and max_length >= 2, got {batch_size}, {max_length}")
        self.model_name = model
        self.pooling = pooling
        self.batch_size = batch_size
        self.max_length = max_length
        self.device = torch.device(device or default_device())
        self.show_progress = show_progress
        self._cache = None if cache is False else EmbeddingCache(None if cache is True else cache)
        self._path = resolve_model(model)
        self._tokenizer = None
        self._model = None

    def _load(self) -> None:
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        if self.device.type == "cpu":
            torch.set_num_threads(os.cpu_count() or 1)
        try:
            self._tokenizer = AutoTokenizer.from_pretrained(self._path)
            self._model = AutoModel.from_pretrained(self._path).to(self.device).eval()
        except (OSError, ValueError) as exc:
            where = "directory" if Path(self._path).is_dir() else "hub id (needs network)"
            raise SentflowError(f"cannot load model {self.model_name!r} as a {where}: {first_line(exc)}") from None

    @property
    def dim(self) -> int:
        """Size of the sentence vectors."""
        if self._model is None:
            self._load()
        return int(self._model.config.hidden_size)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """(len(texts), dim) float32 sentence vectors, in the order of `texts`."""
        texts = list(texts)
        if not all(isinstance(t, str) for t in texts):
            raise SentflowError("encode expects a list of strings")
        key = None
        if self._cache is not None and texts:
            key = self._cache.key(self._path, self.pooling, self.max_length, texts)
            hit = self._cache.get(key, len(texts))
            if hit is not None:
                return hit
        vectors = self._encode(texts)
        if key is not None:
            self._cache.put(key, vectors)
        return vectors

    def _encode(self, texts: list[str]) -> np.ndarray:
        if self._model is None:
            self._load()
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        limit = min(self.max_length, getattr(self._model.config, "max_position_embeddings", self.max_length))
        ids = self._tokenizer(texts, truncation=True, max_length=limit, add_special_tokens=True)
        order = np.argsort([-len(x) for x in ids["input_ids"]], kind="stable")
        fields = list(ids.keys())
        show = self.show_progress if self.show_progress is not None else len(texts) > 4 * self.batch_size
        hidden = needs_hidden_states(self.pooling)
        with torch.inference_mode(), tqdm(total=len(texts), disable=not show, desc="encode", unit="sent") as bar:
            for start in range(0, len(texts), self.batch_size):
                rows = order[start : start + self.batch_size]
                batch = self._tokenizer.pad([{f: ids[f][i] for f in fields} for i in rows], return_tensors="pt")
                batch = {k: v.to(self.device) for k, v in batch.items()}
                outputs = self._model(**batch, output_hidden_states=hidden)
                out[rows] = pool(outputs, batch["attention_mask"], self.pooling).float().cpu().numpy()
                bar.update(len(rows))
        return out
