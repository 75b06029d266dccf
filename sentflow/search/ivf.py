"""Inverted lists: k-means cells over the final vectors, so a search scores only the codes of the cells it probes.

The centroids are trained with faiss's k-means on a sample of the corpus (the rows a streamed build fits its codes
on). Every vector goes to its nearest centroid (L2) and is coded around it (`Quantizer.encode_around`: the
residual vector - centroid, or for RaBitQ the vector with the centroid as its anchor), so a code's estimate of
<query, vector> is <query, centroid> plus the quantizer's estimate of the rest (`Quantizer.scores_around`).
The codes are held grouped by cell: the slots of cell c are `offsets[c]:offsets[c + 1]` and `order`
maps a slot back to its row in build order. A query probes the cells whose centroids have the largest inner product
with it (as faiss's inner-product IVF does), scores their codes, and keeps the best `depth` slots.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from sentflow.errors import SentflowError
from sentflow.extras import require
from sentflow.runtime import blas_threads, resolve_threads, using_threads
from sentflow.search.codes import Quantizer, Visit

KMEANS_ITERATIONS = 10
SAMPLE_PER_LIST = 64  # k-means sees at most this many sample rows per list (faiss's own cap is 256)
MAX_LISTS = 1 << 20
SIZE_STEP = 32  # cells batch with cells within this many codes of their size (little padding)
ASSIGN_ROWS = 8_192  # vectors whose distances to every centroid are held at once
SCORE_BUDGET = 1 << 26  # candidate scores a search holds at once (256 MiB): larger query sets go in blocks
PROBE_BUDGET = 1 << 21  # (query, centroid) inner products ranked at once when choosing the cells to probe


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
    """The nearest centroid (L2) of every vector: int64 (n,), the largest <x, c> - |c|² / 2 (a matrix product per
    block of ASSIGN_ROWS vectors with the bias added in the same pass, in torch on every core: 2.5x faiss's
    IndexFlatL2 search here)."""
    right = torch.from_numpy(np.ascontiguousarray(centroids, dtype=np.float32))
    bias = (right * right).sum(dim=1) / -2
    nearest = np.empty(len(vectors), np.int64)
    with using_threads(resolve_threads(), read_env=False):
        for start in range(0, len(vectors), ASSIGN_ROWS):
            block = torch.from_numpy(np.ascontiguousarray(vectors[start : start + ASSIGN_ROWS], dtype=np.float32))
            nearest[start : start + len(block)] = torch.addmm(bias, block, right.T).argmax(dim=1).numpy()
    return nearest


@dataclass
class InvertedLists:
    """The cells of an index: centroids (lists, d) float32, slot offsets (lists + 1,) and the row of each slot.

    Build one from the cell of every row with `InvertedLists.group`; `search` scores the codes, which the caller
    holds in slot order (`codes[order]` of the build-order codes).
    """

    centroids: np.ndarray
    offsets: np.ndarray
    order: np.ndarray
    _anchors: tuple[Quantizer, np.ndarray] | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        lists = len(self.centroids)
        offsets, order = self.offsets, self.order
        if self.centroids.ndim != 2 or not lists or not np.isfinite(self.centroids).all():
            raise SentflowError(f"inverted lists need finite centroids (lists, dim), got {self.centroids.shape}")
        if offsets.shape != (lists + 1,) or offsets[0] != 0 or (np.diff(offsets) < 0).any():
            raise SentflowError(f"list offsets must rise from 0 with one entry per list and one more, got {offsets}")
        if order.shape != (offsets[-1],) or not _permutation(order):
            raise SentflowError("the slot order must name every row exactly once")

    @classmethod
    def group(cls, centroids: np.ndarray, cells: np.ndarray) -> InvertedLists:
        """Group rows by their cell (rows keep build order inside a cell)."""
        counts = np.bincount(cells, minlength=len(centroids))
        offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        return cls(centroids, offsets, np.argsort(cells, kind="stable").astype(np.int64))

    @property
    def sizes(self) -> np.ndarray:
        """The number of codes in each cell: int64 (lists,)."""
        return np.diff(self.offsets)

    @property
    def lists(self) -> int:
        """The number of cells."""
        return len(self.centroids)

    def residuals(self, vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(nearest cell of each vector, vector - its centroid)."""
        cells = assign(self.centroids, vectors)
        return cells, vectors - self.centroids[cells]

    def search(
        self, queries: np.ndarray, codes: np.ndarray, quantizer: Quantizer, probes: int, depth: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """The `depth` best rows per query among the cells it probes, by the quantizer's `scores_around` each
        cell's centroid: (scores float32 (nq, depth), rows int64 (nq, depth)), best first; rows -1 (score -inf)
        where the probed cells hold fewer than depth codes.

        Queries are prepared once, then searched in blocks of like widths whose candidate scores fit
        `SCORE_BUDGET`. Within a block the work goes cell by cell: each probed cell's codes are scored once for all
        the block's queries that probe it (`Quantizer.scores_visits`, which may batch cells into one product), and
        each query keeps its best `depth` at the end (torch's top-k)."""
        coarse, cells = self.probe(queries, min(probes, self.lists))
        prepared, anchors = quantizer.prepare(queries), self.anchors(quantizer)
        widths = _widths(self.sizes[cells], depth)
        order = np.argsort(widths, kind="stable")  # queries of like widths share a block: little of its rows idle
        blocks = _blocks(widths[order])
        buffer = np.empty(max(len(b) * int(widths[order[b]].max()) for b in blocks), np.float32)  # reused
        scores, slots = np.empty((len(queries), depth), np.float32), np.empty((len(queries), depth), np.int64)
        for block in blocks:
            rows = order[block]
            scores[rows], slots[rows] = self._search_block(
                prepared[rows], coarse[rows], cells[rows], codes, quantizer, anchors, depth, buffer
            )
        return scores, np.where(slots >= 0, self.order[np.maximum(slots, 0)], -1)

    def anchors(self, quantizer: Quantizer) -> np.ndarray:
        """`quantizer.prepare_anchors` of the centroids, kept for later searches with the same quantizer (at 4,096
        cells it costs a single query's search several times over)."""
        if self._anchors is None or self._anchors[0] is not quantizer:
            self._anchors = (quantizer, quantizer.prepare_anchors(self.centroids))
        return self._anchors[1]

    def probe(self, queries: np.ndarray, probes: int) -> tuple[np.ndarray, np.ndarray]:
        """(<q, centroid>, cell) of the `probes` cells nearest each query by inner product, ranked for
        PROBE_BUDGET // lists queries at a time (all of a query's inner products are held while ranking)."""
        if probes >= self.lists:
            coarse = queries @ self.centroids.T
            return coarse, np.ascontiguousarray(np.broadcast_to(np.arange(self.lists), coarse.shape))
        dots, cells = np.empty((len(queries), probes), np.float32), np.empty((len(queries), probes), np.int64)
        step = max(1, PROBE_BUDGET // self.lists)
        for start in range(0, len(queries), step):
            coarse = queries[start : start + step] @ self.centroids.T
            cells[start : start + step] = np.argpartition(-coarse, probes - 1, axis=1)[:, :probes]
            dots[start : start + step] = np.take_along_axis(coarse, cells[start : start + step], axis=1)
        return dots, cells

    def _search_block(self, prepared, coarse, cells, codes, quantizer, anchors, depth, buffer):
        """One block of queries: every probed cell scored into a row per query (its cells side by side, the rest
        of the row -inf), then the best `depth` columns of each row, mapped back to slots."""
        sizes = self.sizes[cells]  # (nq, probes): the width of each probed cell
        starts = np.cumsum(sizes, axis=1) - sizes  # where each probed cell's scores start in its query's row
        width = int(_widths(sizes, depth).max())
        scores = buffer[: len(cells) * width].reshape(len(cells), width)
        for row, used in enumerate(sizes.sum(axis=1)):
            scores[row, used:] = -np.inf
        visits, columns = self._visits(cells, coarse, starts)
        with blas_threads(1), using_threads(resolve_threads(), read_env=False):  # torch's products on every core
            found = quantizer.scores_visits(prepared, codes, anchors, visits)
            for visit, at, values in zip(visits, columns, found, strict=True):
                for row, start, row_values in zip(visit.rows, at, values, strict=True):
                    scores[row, start : start + len(row_values)] = row_values
            top = torch.topk(torch.from_numpy(scores), depth, dim=1, sorted=False)
        best, columns = top.values.numpy(), top.indices.numpy()
        probe = _probe_of(columns, starts, width)
        cell = np.take_along_axis(cells, probe, axis=1)
        slots = self.offsets[cell] + columns - np.take_along_axis(starts, probe, axis=1)
        return _top(best, np.where(np.isfinite(best), slots, -1), depth)

    def _visits(self, cells: np.ndarray, coarse: np.ndarray, starts: np.ndarray):
        """The block's (query, probe) pairs as one Visit per probed non-empty cell, ordered by how many queries
        visit the cell, then by its size (neighbours batch with little padding), and where each visit's queries put
        the cell's scores in their rows."""
        pairs = np.argsort(cells, axis=None, kind="stable")  # cell by cell
        groups = np.split(pairs, np.flatnonzero(np.diff(cells.ravel()[pairs])) + 1)
        sizes = self.sizes
        found = [(group, int(cells.flat[group[0]])) for group in groups]
        found = [(group, cell) for group, cell in found if sizes[cell]]
        found.sort(key=lambda f: (len(f[0]), sizes[f[1]] // SIZE_STEP))  # like query counts, then like sizes
        visits = [
            Visit(group // cells.shape[1], coarse.flat[group], cell, *map(int, self.offsets[cell : cell + 2]))
            for group, cell in found
        ]
        return visits, [starts.flat[group] for group, _ in found]


def _probe_of(columns: np.ndarray, starts: np.ndarray, width: int) -> np.ndarray:
    """For each column of each query's score row, the probe whose cell holds it: the last probe starting at or before
    it (rows' starts made one ascending sequence by offsetting row r by r * (width + 1), then one binary search)."""
    row = np.arange(len(starts))[:, None]
    lift = row * (width + 1)
    found = np.searchsorted((starts + lift).ravel(), (columns + lift).ravel(), side="right").reshape(columns.shape)
    return found - 1 - row * starts.shape[1]


def _permutation(order: np.ndarray) -> bool:
    """Whether order holds each of 0 .. len - 1 once (a flag per row, not a sort: 10M rows check in 1/8 of their
    size)."""
    if not len(order):
        return True
    if order.min() < 0 or order.max() >= len(order):
        return False
    seen = np.zeros(len(order), bool)
    seen[order] = True
    return bool(seen.all())


def _widths(sizes: np.ndarray, depth: int) -> np.ndarray:
    """The row each query's scores take: its probed cells' sizes (nq, probes) summed, at least depth."""
    return np.maximum(sizes.sum(axis=1), depth)


def _blocks(widths: np.ndarray) -> list[np.ndarray]:
    """Consecutive positions of ascending `widths` in blocks whose rows, each as wide as the block's widest, hold
    at most SCORE_BUDGET scores (one query a block where a single row is wider)."""
    blocks, start = [], 0
    while start < len(widths):
        held = np.arange(1, len(widths) - start + 1) * widths[start:]  # a block from start to each end: ascending
        end = start + max(1, int(np.searchsorted(held, SCORE_BUDGET, side="right")))
        blocks.append(np.arange(start, end))
        start = end
    return blocks


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
