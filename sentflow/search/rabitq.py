"""RaBitQ codes (Gao & Long, SIGMOD 2024): sign bits of the centred, randomly rotated vectors and one correction
factor per vector, from which an inner product with a float query is estimated without bias.

For a vector x, the corpus mean c and a fitted projection P (d x B: the identity or a PCA cut to B directions,
times a random rotation), y = (x - c) P is coded as its signs b in {0, 1}^B and the factor f = ||y||² / Σ|y_i|.
With ō = (2b - 1)/√B the unit vector of the code, RaBitQ's estimator of <y, q'> for q' = q P is
<ō, q'> / <ō, ŷ> (ŷ = y/||y||), which is f · Σ(2b_i - 1) q'_i. The estimate of <q, x> is then
<q, c> + f · <2b - 1, q P>: linear in q, exact up to the code's error (and, after a cut, the dropped directions).
Over random rotations it is unbiased, with an error that shrinks as 1/√B.

A code is `ceil(B/8)` bytes of bits followed by f as a little-endian float32 (4 bytes).
"""

from __future__ import annotations

import numpy as np

from sentflow.errors import SentflowError
from sentflow.files.schemas import MAX_DIM
from sentflow.search.codes import Quantizer, sign_dots

FACTOR_BYTES = 4


class RaBitQuantizer(Quantizer):
    """`rabitq` (one bit per dimension) and `rabitq:BITS` (a PCA cut to BITS directions first): RaBitQ codes
    with a per-vector correction factor, scored by its unbiased inner-product estimator.

    Args:
        bits: Directions kept (None: every dimension).
        seed: Seed of the random rotation.
    """

    kind = "rabitq"

    def __init__(self, bits: int | None = None, seed: int = 0) -> None:
        if bits is not None and not 1 <= bits <= MAX_DIM:
            raise SentflowError(f"rabitq codes need between 1 and {MAX_DIM} bits, e.g. rabitq:128")
        self.bits = bits
        self.seed = seed

    @property
    def spec(self) -> str:
        return "rabitq" if self.bits is None else f"rabitq:{self.bits}"

    @property
    def n_bits(self) -> int:
        """Sign bits per vector."""
        return self.bits if self.bits is not None else self.dim

    @property
    def code_bytes(self) -> int:
        return (self.n_bits + 7) // 8 + FACTOR_BYTES

    def _fit(self, X: np.ndarray) -> None:
        if self.bits is not None and self.bits > X.shape[1]:
            raise SentflowError(f"{self.spec}: {self.bits} bits is more than the {X.shape[1]} calibrated dimensions")
        X = X.astype(np.float64)
        self.mean_ = X.mean(axis=0)
        if self.bits is None:
            cut = np.eye(X.shape[1])
        else:
            if len(X) <= self.bits:
                raise SentflowError(
                    f"{self.spec}: fitting the rotation needs more corpus vectors than bits ({len(X)} <= {self.bits}); "
                    "index more documents or use fewer bits"
                )
            centred = X - self.mean_
            _, vectors = np.linalg.eigh(centred.T @ centred)
            cut = vectors[:, ::-1][:, : self.bits]
        self.projection_ = cut @ random_rotation(cut.shape[1], self.seed)

    def _encode(self, X: np.ndarray) -> np.ndarray:
        y = (X.astype(np.float64) - self.mean_) @ self.projection_
        l1 = np.abs(y).sum(axis=1)
        factor = np.divide((y * y).sum(axis=1), l1, out=np.zeros_like(l1), where=l1 > 0)
        factors = factor.astype("<f4").view(np.uint8).reshape(len(y), FACTOR_BYTES)
        return np.ascontiguousarray(np.concatenate([np.packbits(y > 0, axis=1), factors], axis=1))

    def factors(self, codes: np.ndarray) -> np.ndarray:
        """The per-vector correction factors f of codes (float32), refused unless finite and >= 0."""
        codes = self.check_codes(codes)
        factor = np.ascontiguousarray(codes[:, -FACTOR_BYTES:]).view("<f4").ravel()
        if not np.isfinite(factor).all() or (factor < 0).any():
            raise SentflowError(f"{self.spec} codes hold a negative or non-finite correction factor: damaged codes")
        return factor.astype(np.float32)

    def scores(self, queries, codes: np.ndarray) -> np.ndarray:
        """RaBitQ's estimate of <query, vector> for every query and code: float32 (n_queries, n_codes)."""
        self.factors(codes)  # checks the codes and their factors
        return self.prepared_scores(self.prepare(queries), codes)

    def prepare(self, queries) -> np.ndarray:
        """What the estimate needs of each query, computed once per search: float32 (n_queries, bits + 2), the
        rotated query, its inner product with the mean and the sum of its rotated coordinates."""
        queries = self.check_width(queries, "queries")
        rotated = queries @ self.projection_
        return np.column_stack([rotated, queries @ self.mean_, rotated.sum(axis=1)]).astype(np.float32)

    def prepared_scores(self, prepared: np.ndarray, codes: np.ndarray) -> np.ndarray:
        """`scores` from `prepare`d queries and codes already checked (the inner loop of an inverted-file search)."""
        factor = np.ascontiguousarray(codes[:, -FACTOR_BYTES:]).view("<f4").ravel()
        signs = 2.0 * sign_dots(prepared[:, :-2], codes[:, :-FACTOR_BYTES], self.n_bits) - prepared[:, -1:]
        return (prepared[:, -2:-1] + signs * factor[None, :]).astype(np.float32)

    def _tensors(self) -> dict[str, np.ndarray]:
        return {"mean": self.mean_, "projection": self.projection_}

    def _restore(self, tensors: dict[str, np.ndarray]) -> None:
        self.mean_, self.projection_ = tensors["mean"], tensors["projection"]

    def _expected_shapes(self) -> dict[str, tuple[int, ...]]:
        return {"mean": (self.dim,), "projection": (self.dim, self.n_bits)}


def random_rotation(size: int, seed: int = 0) -> np.ndarray:
    """A random orthogonal matrix (size x size), uniform over rotations (QR of a Gaussian matrix, signs fixed)."""
    gaussian = np.random.default_rng(seed).standard_normal((size, size))
    q, r = np.linalg.qr(gaussian)
    return q * np.where(np.diag(r) < 0, -1.0, 1.0)
