"""The capabilities sentflow's parts are told apart by, as `typing.Protocol`s instead of `hasattr` checks.

Test an object with `conforms(obj, Protocol)`: before Python 3.12, `isinstance` against a Protocol with a property
runs the property (for an `Encoder`, `dim` reads the model's config, and fails for a model that cannot load).
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

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

    @property
    def backend_key(self) -> str:
        """The runtime with everything that changes the vectors (a resumed run must use the same)."""
        ...


@runtime_checkable
class ReproducibleEncoder(TextEncoder, Protocol):
    """A text encoder that says what decides its vectors (`Encoder`, `Pipeline`), so that a resumed encoding can
    prove it runs the same one."""

    def vector_settings(self) -> dict[str, Any]:
        """The JSON-able settings that decide the vectors (model, pooling, backend, a calibration's checksum...)."""
        ...


@runtime_checkable
class CalibratedEncoder(Protocol):
    """An encoder followed by an optional calibration and L2 normalisation (`Pipeline`): what a faiss index built
    from it applies inside itself."""

    calibration: Any
    normalize: bool


@runtime_checkable
class VectorTransform(Protocol):
    """A fitted map of raw embeddings to final vectors that knows its output width (a calibration, a pipeline)."""

    def transform(self, X: np.ndarray) -> np.ndarray:
        """(n, d_in) embeddings to (n, d_out) vectors."""
        ...

    def output_width(self, input_width: int) -> int:
        """d_out of `transform` on vectors `input_width` wide."""
        ...


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
        """(W of shape (d_in, d_out), b of shape (d_out,)) in float64; raises `NotFittedError` before a fit."""
        ...


def conforms(obj: object, protocol: type) -> bool:
    """Whether `obj` has every member of `protocol`, looked up without running properties or loading anything
    (the rule `isinstance` follows from Python 3.12 on)."""
    missing = object()
    return all(inspect.getattr_static(obj, name, missing) is not missing for name in _members(protocol))


def _members(protocol: type) -> set[str]:
    """The names a Protocol declares: its methods, properties and annotated attributes, its bases' included."""
    names: set[str] = set()
    for base in protocol.__mro__:
        if base in (Protocol, object) or not getattr(base, "_is_protocol", False):
            continue
        declared: dict[str, Any] = dict(vars(base))
        names |= {n for n in [*declared, *declared.get("__annotations__", {})] if not n.startswith("_")}
    return names
