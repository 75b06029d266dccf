"""Streaming mean and covariance in float64 (exact merge of chunks, shifted-data algorithm)."""

from __future__ import annotations

import numpy as np

from sentflow.errors import SentflowError, first_line
from sentflow.files.finite import check_finite

CHUNK_ROWS = 8192


def as_matrix(X, name: str = "X") -> np.ndarray:
    """Check that X is a finite 2-D numeric array and return it as a float32/float64 ndarray."""
    if hasattr(X, "detach"):
        X = X.detach().cpu()
        X = (X.double() if X.is_floating_point() and X.dtype.itemsize < 4 else X).numpy()  # bf16/fp16: no numpy twin
    try:
        X = np.asarray(X)
    except (ValueError, TypeError) as exc:  # a ragged list
        raise SentflowError(f"{name} must be 2-D numbers, rows of equal length ({first_line(exc)})") from None
    if X.ndim != 2:
        raise SentflowError(f"{name} must be 2-D (n_samples, n_features), got shape {X.shape}")
    if not np.issubdtype(X.dtype, np.number):
        raise SentflowError(f"{name} must be numeric, got dtype {X.dtype}")
    if X.shape[1] == 0:
        raise SentflowError(f"{name} has no features (shape {X.shape})")
    if X.dtype not in (np.float32, np.float64):
        X = X.astype(np.float64)
    check_finite(X, f"{name} has")
    return X


class MomentAccumulator:
    """n, sum and sum of outer products of (x - shift), accumulated in float64.

    The shift (the mean of the first rows seen) keeps the products small, so the covariance
    does not lose digits to cancellation when the data have a large common mean. Accumulators
    over disjoint rows combine exactly with `merge`, in any order; every attribute is a plain
    int or numpy array, so they pickle (and travel between Dask workers) as raw buffers.
    """

    def __init__(self, n_features: int) -> None:
        self.n_features = n_features
        self.count = 0
        self.shift: np.ndarray | None = None
        self.sum = np.zeros(n_features)
        self.outer = np.zeros((n_features, n_features))

    def update(self, X: np.ndarray) -> None:
        if X.shape[1] != self.n_features:
            raise SentflowError(f"expected {self.n_features} features, got shape {X.shape}")
        if len(X) == 0:
            return
        with np.errstate(over="ignore", invalid="ignore"):  # an overflow shows as a non-finite covariance
            if self.shift is None:
                self.shift = X[: min(len(X), 1024)].mean(axis=0, dtype=np.float64)
            for start in range(0, len(X), CHUNK_ROWS):
                chunk = X[start : start + CHUNK_ROWS].astype(np.float64) - self.shift
                self.sum += chunk.sum(axis=0)
                self.outer += chunk.T @ chunk
        self.count += len(X)

    def merge(self, other: MomentAccumulator) -> MomentAccumulator:
        """A new accumulator over the rows of both (neither is changed), whatever their shifts.

        Both are re-expressed around their pooled mean: with y = x - b and d = b - c,
        sum (x - c) = sum y + n d and sum (x - c)(x - c)^T = sum y y^T + (sum y) d^T + d (sum y)^T + n d d^T.
        Shifting to the pooled mean keeps the merged products centred, as a single pass would.
        """
        if other.n_features != self.n_features:
            raise SentflowError(f"cannot merge moments of {self.n_features} and {other.n_features} features")
        merged = MomentAccumulator(self.n_features)
        parts = [part for part in (self, other) if part.count]
        if not parts:
            return merged
        merged.count = sum(part.count for part in parts)
        shift = np.sum([part.count * part.mean() for part in parts], axis=0) / merged.count
        merged.shift = shift
        for part in parts:
            delta = np.asarray(part.shift) - shift
            cross = np.outer(part.sum, delta)
            merged.sum += part.sum + part.count * delta
            merged.outer += part.outer + cross + cross.T + part.count * np.outer(delta, delta)
        return merged

    def mean(self) -> np.ndarray:
        """The mean of every row seen (float64)."""
        if self.shift is None:
            raise SentflowError("no rows seen yet: there is no mean")
        return self.shift + self.sum / self.count

    def covariance(self) -> np.ndarray:
        """Unbiased (n - 1) covariance, as numpy.cov and scikit-learn's PCA use."""
        if self.count < 2:
            raise SentflowError(f"need at least 2 rows to estimate a covariance, got {self.count}")
        with np.errstate(over="ignore", invalid="ignore"):  # callers check the result is finite
            centred = self.outer - np.outer(self.sum, self.sum) / self.count
            return (centred + centred.T) / (2 * (self.count - 1))
