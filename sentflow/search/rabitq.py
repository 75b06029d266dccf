"""RaBitQ codes (Gao & Long, SIGMOD 2024): sign bits of the centred, randomly rotated vectors and two factors per
vector, from which an inner product with a float query is estimated without bias.

A vector x is coded around an anchor a (the corpus mean; in an inverted file, its cell's centroid). With a fitted
projection P (d x B: the identity or a PCA cut to B directions, times a random rotation), y = (x - a) P is coded
as its signs b in {0, 1}^B, the factor f = ||y||² / Σ|y_i| and the exact g = <a, x - a>. Then

    <q, x> = <q, a> + <a, x - a> + <q - a, x - a>,

and RaBitQ's estimator of the last term, <ō, q'> / <ō, ŷ> · ||y|| for q' = (q - a) P and ō = (2b - 1)/√B the unit
vector of the code, is f · <2b - 1, q'>. Centring the query on the anchor too (as RaBitQ's L2 form does) makes the
error shrink with ||q - a|| rather than ||q||: for sentence vectors, which share a large common direction, that
is most of it. The estimate is unbiased over random rotations, with an error that shrinks as 1/√B (after a cut,
the dropped directions of q - a and x - a are ignored as well).

A code is `ceil(B/8)` bytes of bits followed by f and g as little-endian float32 (8 bytes).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from itertools import groupby

import numpy as np
import torch

from sentflow.errors import SentflowError
from sentflow.files.schemas import MAX_DIM
from sentflow.search.codes import (
    Quantizer,
    Visit,
    byte_tables,
    padded_sign_dots,
    ranges,
    rotate_queries,
    sign_estimate,
    visit_batches,
)

FACTOR_BYTES = 8  # f and g, two little-endian float32
TABLE_VISITS = 256  # one-query visits whose byte tables (48 KiB each at 384 bits) are held at once
LOOKUP_BUDGET = 1 << 20  # byte lookups (codes x code bytes) of one-query visits made at once: 8 MiB of indices


class RaBitQuantizer(Quantizer):
    """`rabitq` (one bit per dimension) and `rabitq:BITS` (a PCA cut to BITS directions first): RaBitQ codes
    with two per-vector factors, scored by its unbiased inner-product estimator.

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
        return self._code(X.astype(np.float64), np.broadcast_to(self.mean_, X.shape))

    def encode_around(self, X: np.ndarray, anchors: np.ndarray) -> np.ndarray:
        """Codes of X around one anchor per row (an inverted file's cell centroids) instead of the corpus mean."""
        X = self.check_width(X, "vectors").astype(np.float64)
        return self._code(X, np.asarray(anchors, np.float64))

    def _code(self, X: np.ndarray, anchors: np.ndarray) -> np.ndarray:
        """[sign bits of y | f | g] per row, y = (x - a) P (see the module docstring)."""
        centred = X - anchors
        y = centred @ self.projection_
        l1 = np.abs(y).sum(axis=1)
        f = np.divide((y * y).sum(axis=1), l1, out=np.zeros_like(l1), where=l1 > 0)
        g = (anchors * centred).sum(axis=1)
        factors = np.column_stack([f, g]).astype("<f4").view(np.uint8)
        return np.ascontiguousarray(np.concatenate([np.packbits(y > 0, axis=1), factors], axis=1))

    def factors(self, codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The per-vector factors (f, g) of codes (float32), refused unless finite with f >= 0."""
        f, g = _factors(self.check_codes(codes))
        if not (np.isfinite(f).all() and np.isfinite(g).all()) or (f < 0).any():
            raise SentflowError(f"{self.spec} codes hold a negative or non-finite correction factor: damaged codes")
        return f, g

    def scores(self, queries, codes: np.ndarray) -> np.ndarray:
        """RaBitQ's estimate of <query, vector> for every query and code: float32 (n_queries, n_codes)."""
        self.factors(codes)  # checks the codes and their factors
        return self.prepared_scores(self.prepare(queries), codes)

    def prepare(self, queries) -> np.ndarray:
        """The rotated queries q P and <q, mean>, once per search: float32 (n_queries, bits + 1)."""
        return rotate_queries(self.check_width(queries, "queries"), self.projection_, self.mean_)

    def prepared_scores(self, prepared: np.ndarray, codes: np.ndarray) -> np.ndarray:
        """`scores` from `prepare`d queries and codes already checked, around the corpus mean."""
        return self.scores_around(prepared, codes, self.prepare_anchors(self.mean_), prepared[:, -1])

    def prepare_anchors(self, anchors: np.ndarray) -> np.ndarray:
        """The rotated anchors a P (float32, computed in float32: 16,384 centroids would take 50 MB in float64),
        once per search."""
        return np.asarray(anchors, np.float32) @ self.projection_.astype(np.float32)

    def scores_around(
        self, prepared: np.ndarray, codes: np.ndarray, anchor: np.ndarray, anchor_dots: np.ndarray
    ) -> np.ndarray:
        """The estimate for codes made around one anchor (`anchor`: its rotation a P from `prepare_anchors`),
        given <query, anchor> (one per prepared row): <q, a> + g + f · <2b - 1, q P - a P>."""
        f, g = _factors(codes)
        offset = anchor_dots[:, None].astype(np.float32) + g[None, :]
        return sign_estimate(prepared[:, :-1] - anchor, codes[:, :-FACTOR_BYTES], self.n_bits, f[None, :], offset)

    def scores_visits(
        self, prepared: np.ndarray, codes: np.ndarray, anchors: np.ndarray, visits: Sequence[Visit]
    ) -> Iterator[np.ndarray]:
        """`scores_around` of many visits, batched (a Python step per cell costs more than its arithmetic): the
        cells of visits by one query each through byte tables, the others padded to a common size and their sign
        dots taken in one batched product per `visit_batches` batch."""
        for alone, run in groupby(visits, key=lambda visit: len(visit.rows) == 1):
            if alone:  # unpacking a cell's bits costs more than one query's lookups, which need no padding
                for part in _lookup_parts(list(run), codes.shape[1] - FACTOR_BYTES):
                    yield from self._lookup_scores(prepared, codes, anchors, part)
            else:
                for batch in visit_batches(list(run)):
                    yield from self._batch_scores(prepared, codes, anchors, batch)

    def _lookup_scores(self, prepared, codes, anchors, batch: Sequence[Visit]) -> Iterator[np.ndarray]:
        """Visits of one query each, by byte tables: <b, r> is the sum over the code's bytes of a table of the 256
        sums of r's eight matching coordinates (`byte_tables`), so the bits are never unpacked."""
        sizes = np.array([v.high - v.low for v in batch])
        rows, cells = np.concatenate([v.rows for v in batch]), np.array([v.cell for v in batch])
        rotated = prepared[rows, :-1] - anchors[cells]  # a row per visit
        tables = byte_tables(rotated).reshape(-1)  # visit v's tables at v * bytes * 256
        cell_codes = codes[ranges([v.low for v in batch], sizes)]
        visit = np.repeat(np.arange(len(batch)), sizes)
        width = cell_codes.shape[1] - FACTOR_BYTES
        index = visit[:, None] * width + np.arange(width)  # built in place: one (codes, bytes) int64 array
        index *= 256
        index += cell_codes[:, :-FACTOR_BYTES]
        f, g = _factors(cell_codes)
        signs = 2 * tables[index].sum(axis=1) - rotated.sum(axis=1)[visit]
        dots = np.concatenate([v.dots for v in batch])
        yield from np.split((dots[visit] + g + f * signs).astype(np.float32)[None], np.cumsum(sizes)[:-1], axis=1)

    def _batch_scores(self, prepared, codes, anchors, batch: Sequence[Visit]) -> Iterator[np.ndarray]:
        """One batch of visits, each cell's queries and codes padded to the batch's largest: with r = q P - a P,
        the estimate <q, a> + g + f (2 <b, r> - Σ r) from one batched product <b, r>."""
        queries = np.array([len(v.rows) for v in batch])
        sizes = np.array([v.high - v.low for v in batch])
        m, n, count = int(queries.max()), int(sizes.max()), len(batch)
        slots = ranges(np.arange(count) * m, queries)  # each visit's queries in the padded (count * m) rows
        rows, cells = np.concatenate([v.rows for v in batch]), np.repeat([v.cell for v in batch], queries)
        rotated = np.zeros((count * m, self.n_bits), np.float32)
        rotated[slots] = prepared[rows, :-1] - anchors[cells]
        dots = np.zeros(count * m, np.float32)
        dots[slots] = np.concatenate([v.dots for v in batch])
        padded = np.zeros((count * n, codes.shape[1]), np.uint8)  # padding: no bits, f = g = 0
        padded[ranges(np.arange(count) * n, sizes)] = codes[ranges([v.low for v in batch], sizes)]
        f, g = (torch.from_numpy(factor).view(count, 1, n) for factor in _factors(padded))
        estimate = padded_sign_dots(rotated.reshape(count, m, -1), padded[:, :-FACTOR_BYTES], self.n_bits)
        estimate.mul_(2).sub_(torch.from_numpy(rotated.sum(axis=1)).view(count, m, 1)).mul_(f).add_(g)
        values = estimate.add_(torch.from_numpy(dots).view(count, m, 1)).numpy()
        for number in range(count):
            yield values[number, : queries[number], : sizes[number]]

    def _tensors(self) -> dict[str, np.ndarray]:
        return {"mean": self.mean_, "projection": self.projection_}

    def _restore(self, tensors: dict[str, np.ndarray]) -> None:
        self.mean_, self.projection_ = tensors["mean"], tensors["projection"]

    def _expected_shapes(self) -> dict[str, tuple[int, ...]]:
        return {"mean": (self.dim,), "projection": (self.dim, self.n_bits)}


def _lookup_parts(visits: Sequence[Visit], width: int) -> Iterator[Sequence[Visit]]:
    """Consecutive runs of one-query visits with at most TABLE_VISITS visits and LOOKUP_BUDGET byte lookups (a
    larger cell alone), `width` code bytes a code."""
    ends = np.cumsum([visit.high - visit.low for visit in visits]) * width
    start = 0
    while start < len(visits):
        room = LOOKUP_BUDGET + (ends[start - 1] if start else 0)
        end = min(start + TABLE_VISITS, max(start + 1, int(np.searchsorted(ends, room, side="right"))))
        yield visits[start:end]
        start = end


def _factors(codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(f, g) float32 of each code, unchecked."""
    pairs = np.ascontiguousarray(codes[:, -FACTOR_BYTES:]).view("<f4")
    return pairs[:, 0].astype(np.float32), pairs[:, 1].astype(np.float32)


def random_rotation(size: int, seed: int = 0) -> np.ndarray:
    """A random orthogonal matrix (size x size), uniform over rotations (QR of a Gaussian matrix, signs fixed)."""
    gaussian = np.random.default_rng(seed).standard_normal((size, size))
    q, r = np.linalg.qr(gaussian)
    return q * np.where(np.diag(r) < 0, -1.0, 1.0)
