"""Inverted lists: k-means cells over the final vectors, so a search scores only the codes of the cells it probes.

The centroids are trained with faiss's k-means on a sample of the corpus (the rows a streamed build fits its codes
on). Every vector goes to its nearest centroid (L2); its stage-1 code codes the residual (vector - centroid), so a
code's estimate of <query, vector> is <query, centroid> + the quantizer's estimate of <query, residual> (linear in
the query). The codes are held grouped by cell: the slots of cell c are `offsets[c]:offsets[c + 1]` and `order`
maps a slot back to its row in build order. A query probes the cells whose centroids have the largest inner product
with it (as faiss's inner-product IVF does), scores their codes, and keeps the best `depth` slots.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from sentflow.errors import SentflowError
from sentflow.extras import require
from sentflow.runtime import blas_threads

KMEANS_ITERATIONS = 10
SAMPLE_PER_LIST = 64  # k-means sees at most this many sample rows per list (faiss's own cap is 256)
MAX_LISTS = 1 << 20
BAND_CANDIDATES = 4  # a band of cells scored together holds about this many times depth codes per query

Estimate = Callable[[np.ndarray, np.ndarray], np.ndarray]


def default_probes(lists: int) -> int:
    """Cells a search probes unless told: 1/64 of them, at least 1."""
    return max(1, lists // 64)


def train_centroids(sample: np.ndarray, lists: int, seed: int = 0) -> np.ndarray:
    """k-means centroids (lists, d) float32 of `sample` (faiss, L2, `KMEANS_ITERATIONS` rounds)."""
    faiss = require("faiss", "faiss")
    if isinstance(lists, bool) or not isinstance(lists, int | np.integer) or not 1 <= lists <= MAX_LISTS:
        raise SentflowError(f"lists must be a whole number from 1 to {MAX_LISTS}, got {lists!r}")
    if len(sample) < lists:
        raise SentflowError(f"{lists} lists need at least as many vectors to train on, got {len(sample)}")
    rows = np.random.default_rng(seed).permutation(len(sample))[: lists * SAMPLE_PER_LIST]
    kmeans = faiss.Kmeans(
        sample.shape[1], int(lists), niter=KMEANS_ITERATIONS, seed=seed, max_points_per_centroid=SAMPLE_PER_LIST
    )
    kmeans.train(np.ascontiguousarray(sample[np.sort(rows)], dtype=np.float32))
    return np.ascontiguousarray(kmeans.centroids, dtype=np.float32)


def assign(centroids: np.ndarray, vectors: np.ndarray) -> np.ndarray:
    """The nearest centroid (L2) of every vector: int64 (n,)."""
    faiss = require("faiss", "faiss")
    flat = faiss.IndexFlatL2(centroids.shape[1])
    flat.add(centroids)
    _, nearest = flat.search(np.ascontiguousarray(vectors, dtype=np.float32), 1)
    return nearest[:, 0].astype(np.int64)


@dataclass
class InvertedLists:
    """The cells of an index: centroids (lists, d) float32, slot offsets (lists + 1,) and the row of each slot.

    Build one from the cell of every row with `InvertedLists.group`; `search` scores the codes, which the caller
    holds in slot order (`codes[order]` of the build-order codes).
    """

    centroids: np.ndarray
    offsets: np.ndarray
    order: np.ndarray

    def __post_init__(self) -> None:
        lists = len(self.centroids)
        offsets, order = self.offsets, self.order
        if self.centroids.ndim != 2 or not lists or not np.isfinite(self.centroids).all():
            raise SentflowError(f"inverted lists need finite centroids (lists, dim), got {self.centroids.shape}")
        if offsets.shape != (lists + 1,) or offsets[0] != 0 or (np.diff(offsets) < 0).any():
            raise SentflowError(f"list offsets must rise from 0 with one entry per list and one more, got {offsets}")
        if order.shape != (offsets[-1],) or (len(order) and not np.array_equal(np.sort(order), np.arange(len(order)))):
            raise SentflowError("the slot order must name every row exactly once")

    @classmethod
    def group(cls, centroids: np.ndarray, cells: np.ndarray) -> InvertedLists:
        """Group rows by their cell (rows keep build order inside a cell)."""
        counts = np.bincount(cells, minlength=len(centroids))
        offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        return cls(centroids, offsets, np.argsort(cells, kind="stable").astype(np.int64))

    @property
    def lists(self) -> int:
        """The number of cells."""
        return len(self.centroids)

    def residuals(self, vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(nearest cell of each vector, vector - its centroid)."""
        cells = assign(self.centroids, vectors)
        return cells, vectors - self.centroids[cells]

    def search(
        self,
        queries: np.ndarray,
        codes: np.ndarray,
        estimate: Estimate,
        probes: int,
        depth: int,
        prepare: Callable[[np.ndarray], np.ndarray] | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """The `depth` best rows per query among the cells it probes, by <q, centroid> + estimate(q, residual code):
        (scores float32 (nq, depth), rows int64 (nq, depth)), best first; rows -1 (score -inf) where the probed
        cells hold fewer than depth codes.

        All the queries are searched together, cell by cell: each probed cell's codes are scored once for every
        query that probes it (one matrix product), a band of cells at a time, and every band's results are merged
        into each query's best `depth`. With `prepare`, `estimate` is given `prepare(queries)` rows (what the
        estimator needs of a query, computed once per search) instead of the queries."""
        coarse, cells = self.probe(queries, min(probes, self.lists))
        scored = queries if prepare is None else prepare(queries)
        flat = cells.ravel()
        by_cell = np.argsort(flat, kind="stable")
        sizes = self.offsets[1:] - self.offsets[:-1]
        best = np.full((len(queries), depth), -np.inf, np.float32), np.full((len(queries), depth), -1, np.int64)
        widest = max(int(sizes[cells].sum(axis=1).max()), 1)
        band = max(1, self.lists * BAND_CANDIDATES * depth // widest)  # cells a band holds: ~4 x depth codes a query
        bounds = np.searchsorted(flat[by_cell], np.arange(0, self.lists + band, band))
        with blas_threads(1):  # many small products: one thread each beats BLAS's threads
            for low, high in zip(bounds[:-1], bounds[1:], strict=False):
                if high > low:
                    found = self._score_band(scored, coarse.ravel(), flat, by_cell[low:high], codes, estimate)
                    best = _keep(np.concatenate([best[0], found[0]], 1), np.concatenate([best[1], found[1]], 1), depth)
        scores, slots = _top(*best, depth)
        return scores, np.where(slots >= 0, self.order[np.maximum(slots, 0)], -1)

    def probe(self, queries: np.ndarray, probes: int) -> tuple[np.ndarray, np.ndarray]:
        """(<q, centroid>, cell) of the `probes` cells nearest each query by inner product."""
        coarse = queries @ self.centroids.T
        if probes >= self.lists:
            return coarse, np.ascontiguousarray(np.broadcast_to(np.arange(self.lists), coarse.shape))
        cells = np.argpartition(-coarse, probes - 1, axis=1)[:, :probes]
        return np.take_along_axis(coarse, cells, axis=1), cells

    def _score_band(self, queries, coarse, flat, entries, codes, estimate):
        """Scores of one band of cells: a row per query, its probed cells of the band side by side."""
        probes = len(flat) // len(queries)
        sizes = self.offsets[flat[entries] + 1] - self.offsets[flat[entries]]
        owner = entries // probes
        order = np.lexsort((entries, owner))  # the band's entries query by query
        ends = np.cumsum(sizes[order])
        first = np.searchsorted(owner[order], owner[order], side="left")
        starts = np.empty_like(ends)
        starts[order] = ends - sizes[order] - np.concatenate([[0], ends])[first]
        width = max(int(np.bincount(owner, weights=sizes, minlength=len(queries)).max()), 1)
        scores = np.full((len(queries), width), -np.inf, np.float32)
        slots = np.full((len(queries), width), -1, np.int64)
        cell_of = flat[entries]
        for group in np.split(np.arange(len(entries)), np.flatnonzero(np.diff(cell_of)) + 1):
            cell, q = cell_of[group[0]], owner[group]
            low, high = self.offsets[cell], self.offsets[cell + 1]
            if high == low:
                continue
            columns = starts[group][:, None] + np.arange(high - low)
            scores[q[:, None], columns] = estimate(queries[q], codes[low:high]) + coarse[entries[group]][:, None]
            slots[q[:, None], columns] = np.arange(low, high)
        return scores, slots


def _keep(scores: np.ndarray, slots: np.ndarray, depth: int) -> tuple[np.ndarray, np.ndarray]:
    """The `depth` best (score, slot) pairs per row, in no order."""
    if scores.shape[1] <= depth:
        return scores, slots
    part = np.argpartition(-scores, depth - 1, axis=1)[:, :depth]
    return np.take_along_axis(scores, part, 1), np.take_along_axis(slots, part, 1)


def _top(scores: np.ndarray, slots: np.ndarray, depth: int) -> tuple[np.ndarray, np.ndarray]:
    """The `depth` best (score, slot) pairs per row, best first (ties to the lower slot)."""
    scores, slots = _keep(scores, slots, depth)
    order = np.lexsort((slots, -scores), axis=1)
    return np.take_along_axis(scores, order, 1), np.take_along_axis(slots, order, 1)
