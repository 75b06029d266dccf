"""The interface every compact code implements (`Quantizer`: fit, encode, save) and the packed-bit arithmetic the
sign-based codes share (`sign_dots`); the codes themselves live in `sentflow.search.quantize` and
`sentflow.search.rabitq`."""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from typing import ClassVar

import numpy as np
import torch

from sentflow.calibration.stats import as_matrix
from sentflow.errors import SentflowError
from sentflow.files.io import save_tensors

SCORE_ROWS = 16_384  # codes unpacked to floats per block while scoring
_UNPACK = np.unpackbits(np.arange(256, dtype=np.uint8)[:, None], axis=1).astype(np.float32)  # byte -> its 8 bits


class Quantizer(ABC):
    """fit / encode on (n, d) float vectors; subclasses say how codes are made and scored."""

    kind: ClassVar[str]
    dim: int  # the width of the vectors it codes, once fitted

    @property
    @abstractmethod
    def spec(self) -> str:
        """The spec that makes this quantizer (e.g. `itq:128`)."""

    @property
    @abstractmethod
    def code_bytes(self) -> int:
        """Bytes of one vector's code."""

    @abstractmethod
    def _fit(self, X: np.ndarray) -> None: ...

    @abstractmethod
    def _encode(self, X: np.ndarray) -> np.ndarray: ...

    @abstractmethod
    def _tensors(self) -> dict[str, np.ndarray]: ...

    @abstractmethod
    def _restore(self, tensors: dict[str, np.ndarray]) -> None: ...

    def fit(self, X) -> Quantizer:
        """Fit the codes' ranges or rotation on corpus vectors X (n, d)."""
        X = as_matrix(X, "corpus vectors")
        self.dim = X.shape[1]
        self._fit(X)
        return self

    def encode(self, X) -> np.ndarray:
        """The uint8 codes of X: (n, code_bytes)."""
        return self._encode(self.check_width(X, "vectors"))

    def check_width(self, X, name: str) -> np.ndarray:
        """X as a finite float matrix of the fitted width, or one line saying what is wrong."""
        if not hasattr(self, "dim"):
            raise SentflowError(f"this {self.spec} quantizer is not fitted yet; call fit first")
        X = as_matrix(X, name)
        if X.shape[1] != self.dim:
            raise SentflowError(
                f"{name} have {X.shape[1]} dimensions but the {self.spec} codes were fitted on {self.dim}"
            )
        return X

    def check_codes(self, codes) -> np.ndarray:
        """codes as a uint8 matrix of `code_bytes` columns, or one line saying what is wrong."""
        codes = np.asarray(codes)
        if codes.dtype != np.uint8 or codes.ndim != 2 or codes.shape[1] != self.code_bytes:
            raise SentflowError(
                f"{self.spec} codes must be uint8 of shape (n, {self.code_bytes}), got {codes.dtype} {codes.shape}"
            )
        return codes

    @abstractmethod
    def _expected_shapes(self) -> dict[str, tuple[int, ...]]:
        """The shapes of the tensors a fitted quantizer of this spec and width saves."""

    def save(self, path: str | os.PathLike) -> None:
        """Write the fitted quantizer: safetensors tensors and a checksummed JSON header (never pickle)."""
        tensors = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in self._tensors().items()}
        save_tensors(path, tensors, {"spec": self.spec, "dim": int(self.dim)})


def sign_dots(queries: np.ndarray, bits: np.ndarray, n_bits: int) -> np.ndarray:
    """<q, b> for float queries (nq, n_bits) and packed bit rows (n, ceil(n_bits/8)): float32 (nq, n), in blocks."""
    queries = np.asarray(queries, np.float32)
    out = np.empty((len(queries), len(bits)), np.float32)
    for start in range(0, len(bits), SCORE_ROWS):
        block = _UNPACK[bits[start : start + SCORE_ROWS]].reshape(-1, bits.shape[1] * 8)[:, :n_bits]
        out[:, start : start + len(block)] = queries @ block.T
    return out
