"""Quantizers fitted on a corpus (no labels): compact codes for the final vectors of a pipeline.

Specs a user types:

- `none`: float32 vectors (4 bytes a dimension);
- `int8[:P]` / `int4[:P]`: one code a dimension, with per-dimension ranges from the corpus' P-th and (100-P)-th
  percentiles (default P = 99.9; `int8:100` is min/max); scored asymmetrically, float query · decoded code;
- `binary`: the sign of each dimension, one bit a dimension;
- `itq:BITS`: centring, a PCA cut to BITS and ITQ (Gong & Lazebnik 2011: alternate sign codes B = sgn(VR) and the
  orthogonal Procrustes rotation R from the SVD of Vᵀ B), then one bit a direction; `pca:BITS` is the same
  without the ITQ rotation;
- `rabitq` / `rabitq:BITS`: RaBitQ (Gao & Long, SIGMOD 2024): centring, a PCA cut to BITS (none for `rabitq`), a
  random rotation, one bit a direction and a per-vector correction factor (see `sentflow.search.rabitq`).

Sign and RaBitQ codes have `scores(queries, codes)`: an estimate of the inner product of float queries with the
coded vectors, what the first stage of a compact search ranks by (`stage1_candidates` says how many it keeps).

Fitting accumulates in float64; codes are uint8 arrays of `code_bytes` per vector. A quantizer saves as
safetensors with a checksummed JSON header and loads back exactly.
"""

from __future__ import annotations

import math
import os

import numpy as np

from sentflow.errors import SentflowError
from sentflow.files.io import load_tensors
from sentflow.files.schemas import MAX_DIM, QuantizerHeader
from sentflow.search.codes import Quantizer, rotate_queries, sign_estimate
from sentflow.search.rabitq import RaBitQuantizer
from sentflow.search.specs import parse_spec

DEFAULT_PERCENTILE = 99.9
ITQ_ITERATIONS = 50
DEFAULT_CANDIDATES = 100  # stage 1's default budget: every two-stage code within 0.2 of int8's nDCG@10 on SciFact
# at k = 10 (eval/results/compact_search.md, the budget table)


class FloatCodes(Quantizer):
    """`none`: the float32 vectors themselves."""

    kind = "none"

    @property
    def spec(self) -> str:
        return "none"

    @property
    def code_bytes(self) -> int:
        return 4 * self.dim

    def _fit(self, X: np.ndarray) -> None:
        pass

    def _encode(self, X: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(X, dtype=np.float32).view(np.uint8)

    def decode(self, codes: np.ndarray) -> np.ndarray:
        """The float32 vectors back."""
        return np.ascontiguousarray(codes).view(np.float32)

    def _tensors(self) -> dict[str, np.ndarray]:
        return {}

    def _restore(self, tensors: dict[str, np.ndarray]) -> None:
        pass

    def _expected_shapes(self) -> dict[str, tuple[int, ...]]:
        return {}


class ScalarQuantizer(Quantizer):
    """`int8` / `int4`: each dimension mapped linearly onto 2^bits levels between corpus percentiles."""

    kind = "scalar"

    def __init__(self, bits: int = 8, percentile: float = DEFAULT_PERCENTILE) -> None:
        if bits not in (4, 8):
            raise SentflowError(f"scalar codes have 4 or 8 bits, not {bits}")
        if not 50.0 < percentile <= 100.0:
            raise SentflowError(f"the percentile of a scalar code must be in (50, 100], got {percentile:g}")
        self.bits = bits
        self.percentile = float(percentile)

    @property
    def spec(self) -> str:
        suffix = "" if self.percentile == DEFAULT_PERCENTILE else f":{self.percentile:g}"
        return f"int{self.bits}{suffix}"

    @property
    def levels(self) -> int:
        """The largest code value (255 or 15)."""
        return (1 << self.bits) - 1

    @property
    def code_bytes(self) -> int:
        return self.dim if self.bits == 8 else (self.dim + 1) // 2

    def _fit(self, X: np.ndarray) -> None:
        low = np.percentile(X, 100.0 - self.percentile, axis=0)
        high = np.percentile(X, self.percentile, axis=0)
        flat = high - low <= 0  # a constant dimension: any positive width decodes it exactly
        self.low_ = low.astype(np.float64)
        self.step_ = np.where(flat, 1.0, (high - low) / self.levels)

    def _encode(self, X: np.ndarray) -> np.ndarray:
        codes = np.clip(np.rint((X - self.low_) / self.step_), 0, self.levels).astype(np.uint8)
        if self.bits == 4:
            if codes.shape[1] % 2:
                codes = np.pad(codes, ((0, 0), (0, 1)))
            codes = (codes[:, 0::2] << 4) | codes[:, 1::2]
        return np.ascontiguousarray(codes)

    def decode(self, codes: np.ndarray) -> np.ndarray:
        """The float32 vectors the codes stand for: low + code · step per dimension."""
        codes = np.asarray(codes, dtype=np.uint8)
        if self.bits == 4:
            codes = np.stack([codes >> 4, codes & 0x0F], axis=2).reshape(len(codes), -1)[:, : self.dim]
        return (self.low_ + codes * self.step_).astype(np.float32)

    def _tensors(self) -> dict[str, np.ndarray]:
        return {"low": self.low_, "step": self.step_}

    def _restore(self, tensors: dict[str, np.ndarray]) -> None:
        self.low_, self.step_ = tensors["low"], tensors["step"]
        if (self.step_ <= 0).any():
            raise SentflowError("the scalar quantizer's steps must be positive")

    def _expected_shapes(self) -> dict[str, tuple[int, ...]]:
        return {"low": (self.dim,), "step": (self.dim,)}


class SignQuantizer(Quantizer):
    """`binary` (the sign of every dimension), `pca:BITS` and `itq:BITS` (the signs after a fitted rotation)."""

    kind = "sign"

    def __init__(self, bits: int | None = None, rotation: str = "none", seed: int = 0) -> None:
        if rotation not in ("none", "pca", "itq"):
            raise SentflowError(f"unknown rotation {rotation!r}; use none, pca or itq")
        if (bits is None) != (rotation == "none") or (bits is not None and not 1 <= bits <= MAX_DIM):
            raise SentflowError(f"{rotation} codes need between 1 and {MAX_DIM} bits, e.g. {rotation}:128")
        self.bits = bits
        self.rotation = rotation
        self.seed = seed

    @property
    def spec(self) -> str:
        return "binary" if self.rotation == "none" else f"{self.rotation}:{self.bits}"

    @property
    def n_bits(self) -> int:
        """Bits per vector."""
        return self.bits if self.bits is not None else self.dim

    @property
    def code_bytes(self) -> int:
        return (self.n_bits + 7) // 8

    def _fit(self, X: np.ndarray) -> None:
        if self.bits is None:  # binary: the signs of the vectors themselves
            return
        if self.bits > X.shape[1]:
            raise SentflowError(f"{self.spec}: {self.bits} bits is more than the {X.shape[1]} calibrated dimensions")
        if len(X) <= self.bits:
            raise SentflowError(
                f"{self.spec}: fitting the rotation needs more corpus vectors than bits ({len(X)} <= {self.bits}); "
                "index more documents or use fewer bits"
            )
        X = X.astype(np.float64)
        self.mean_ = X.mean(axis=0)
        centred = X - self.mean_
        _, vectors = np.linalg.eigh(centred.T @ centred)
        projection = vectors[:, ::-1][:, : self.bits]
        if self.rotation == "itq":
            projection = projection @ itq_rotation(centred @ projection, self.seed)
        self.projection_ = projection

    def project(self, X) -> np.ndarray:
        """The vectors in the space whose signs are the codes (the identity for `binary`)."""
        X = self.check_width(X, "vectors")
        return X if self.rotation == "none" else (X - self.mean_) @ self.projection_

    def _encode(self, X: np.ndarray) -> np.ndarray:
        return np.packbits(self.project(X) > 0, axis=1)

    def prepare(self, queries) -> np.ndarray:
        """The projected queries and their inner product with the mean, once per search (`rotate_queries`)."""
        queries = self.check_width(queries, "queries")
        if self.rotation == "none":
            return rotate_queries(queries, None, None)
        return rotate_queries(queries, self.projection_, self.mean_)

    def prepared_scores(self, prepared: np.ndarray, codes: np.ndarray) -> np.ndarray:
        """An estimate of <query, vector> from the signs alone: <q, c> + √(π / 2B) · <2b - 1, q P> (c the mean, P
        the projection; for `binary` c = 0, P = I): RaBitQ's estimator with the per-vector factor replaced by its
        value for a unit vector of Gaussian coordinates, so it ranks by the float query against the ±1 code
        (asymmetric), not by Hamming distance."""
        scale = math.sqrt(math.pi / (2 * self.n_bits))
        return sign_estimate(prepared[:, :-1], codes, self.n_bits, scale, prepared[:, -1:])

    def _tensors(self) -> dict[str, np.ndarray]:
        return {} if self.rotation == "none" else {"mean": self.mean_, "projection": self.projection_}

    def _restore(self, tensors: dict[str, np.ndarray]) -> None:
        if self.rotation != "none":
            self.mean_, self.projection_ = tensors["mean"], tensors["projection"]

    def _expected_shapes(self) -> dict[str, tuple[int, ...]]:
        return {} if self.rotation == "none" else {"mean": (self.dim,), "projection": (self.dim, self.n_bits)}


def itq_rotation(V: np.ndarray, seed: int = 0, iterations: int = ITQ_ITERATIONS) -> np.ndarray:
    """The orthogonal R (bits x bits) that ITQ finds for projected data V: minimise ||sgn(VR) - VR||_F by
    alternating the codes B = sgn(VR) and R from the SVD of Vᵀ B (orthogonal Procrustes), from a random rotation."""
    rng = np.random.default_rng(seed)
    rotation, _ = np.linalg.qr(rng.standard_normal((V.shape[1], V.shape[1])))
    for _ in range(iterations):
        codes = np.where(V @ rotation >= 0, 1.0, -1.0)
        left, _, right = np.linalg.svd(V.T @ codes)
        rotation = left @ right
    return rotation


def stage1_candidates(k: int, candidates: int | None, rows: int, rescore: int = 4) -> int:
    """How many candidates stage 1 keeps for k results over `rows` codes: `candidates`, or by default the larger
    of DEFAULT_CANDIDATES and `rescore` x k; never fewer than k nor more than rows."""
    if candidates is None:
        candidates = max(DEFAULT_CANDIDATES, rescore * int(k))
    if isinstance(candidates, bool) or not isinstance(candidates, int | np.integer) or candidates < 1:
        raise SentflowError(f"candidates must be a whole number >= 1, got {candidates!r}")
    return min(rows, max(int(k), int(candidates)))


def check_quantizer(spec: str, dim: int, rows: int) -> Quantizer:
    """The quantizer a spec names, refused before any work if `rows` vectors of `dim` dims cannot fit it."""
    quantizer = make_quantizer(spec)
    bits = getattr(quantizer, "bits", None) if quantizer.kind in ("sign", "rabitq") else None
    if bits is not None:
        if bits > dim:
            raise SentflowError(f"{quantizer.spec}: {bits} bits is more than the {dim} calibrated dimensions")
        if rows <= bits:
            raise SentflowError(
                f"{quantizer.spec}: fitting the rotation needs more corpus vectors than bits ({rows} <= {bits}); "
                "index more documents or use fewer bits"
            )
    return quantizer


def make_quantizer(spec: str, seed: int = 0) -> Quantizer:
    """The unfitted quantizer a spec names: none, int8[:P], int4[:P], binary, itq:BITS, pca:BITS, rabitq or
    rabitq:BITS.

    Args:
        spec: The code: `none` (float), `int8[:P]` / `int4[:P]` (ranges from the P-th and (100-P)-th percentiles),
            `binary` (signs), `itq:BITS` or `pca:BITS` (a PCA cut to BITS, rotated by ITQ or not, then signs),
            `rabitq` / `rabitq:BITS` (RaBitQ: signs after a random rotation, with a per-vector factor; BITS cuts).
        seed: Seed of ITQ's random start and RaBitQ's rotation.

    Returns:
        A quantizer to `fit` on the corpus' final vectors.
    """
    kind, number = parse_spec(spec)
    if kind in ("none", "binary"):
        return FloatCodes() if kind == "none" else SignQuantizer()
    if kind == "rabitq":
        return RaBitQuantizer(None if number is None else int(number), seed)
    if kind in ("int8", "int4"):
        return ScalarQuantizer(int(kind[3:]), DEFAULT_PERCENTILE if number is None else number)
    return SignQuantizer(int(number or 0), kind, seed)


def load_quantizer(path: str | os.PathLike) -> Quantizer:
    """Read a quantizer written by `Quantizer.save`; its tensors must have the shapes its header implies."""
    tensors, header = load_tensors(path, QuantizerHeader)
    quantizer = make_quantizer(header.spec)
    quantizer.dim = header.dim
    arrays = {k: v.numpy().astype(np.float64) for k, v in tensors.items()}
    expected = quantizer._expected_shapes()
    found = {k: v.shape for k, v in arrays.items()}
    if found != expected:
        raise SentflowError(f"{path}: tensors {found} do not match a {header.spec} quantizer of {header.dim} dims")
    quantizer._restore(arrays)
    return quantizer
