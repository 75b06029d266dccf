"""The capabilities sentflow's parts are told apart by, as `typing.Protocol`s instead of `hasattr` checks."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class TextEncoder(Protocol):
    """Turns texts into vectors: `Encoder`, the GloVe encoder and `Pipeline` all are one."""

    @property
    def dim(self) -> int:
        """Width of the vectors `encode` returns."""
        ...

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """An (n, dim) float32 array, one row per text."""
        ...


@runtime_checkable
class ModelEncoder(TextEncoder, Protocol):
    """A text encoder that is a model with settings a pipeline records (`Encoder`, the GloVe encoder)."""

    model_name: str
    pooling: str
    max_length: int


@runtime_checkable
class Calibration(Protocol):
    """A fitted map from raw embeddings to calibrated ones (`Whitening`, `BertFlow`)."""

    method: str

    def transform(self, X: np.ndarray) -> np.ndarray:
        """(n, d_in) embeddings to (n, d_out) calibrated vectors."""
        ...


@runtime_checkable
class LinearMap(Protocol):
    """A calibration that is one affine map y = x W + b, so faiss, sentence-transformers and torch can hold it."""

    def linear_map(self) -> tuple[np.ndarray, np.ndarray]:
        """(W of shape (d_in, d_out), b of shape (d_out,)) in float64."""
        ...
