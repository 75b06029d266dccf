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
from typing import NamedTuple

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
NEARBY_LEAF = 16  # queries ordered as they come below this many (`_nearby`)
GROUP_SLACK = 1.25  # queries share a score matrix when the widest probes at most this times the codes of the first
PROBE_BUDGET = 1 << 20  # (query, centroid) inner products ranked at once when choosing the cells to probe
NARROW_ROWS = 1 << 31  # below this many rows, slot order is held as int32 (4 bytes a vector instead of 8)


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
    """The cells of an index: centroids (lists, d) float32, slot offsets (lists + 1,) and the row of each slot
    (held as int32 below NARROW_ROWS rows, saved as int64).

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
        self.order = order.astype(np.int32 if len(order) < NARROW_ROWS else np.int64, copy=False)

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

        Queries are prepared once, then searched in blocks of nearby queries (`_runs`: they probe many of the same
        cells) whose score matrices hold at most `SCORE_BUDGET` scores; within a block, queries of like widths share
        a matrix as wide as the widest of them (`_layout`). Within a block the work goes cell by cell: each probed
        cell's codes are scored once for all the block's queries that probe it (`Quantizer.scores_visits`, which may
        batch cells into one product), and each query keeps its best `depth` at the end (torch's top-k, a matrix at
        a time)."""
        coarse, cells = self.probe(queries, min(probes, self.lists))
        prepared, anchors = quantizer.prepare(queries), self.anchors(quantizer)
        widths = _widths(self.sizes[cells], depth)
        blocks = [(run[g[0].start : g[-1].stop], g) for run in _runs(queries, widths) for g in _layout(widths[run])]
        buffer = np.empty(max(sum(g.size for g in groups) for _, groups in blocks), np.float32)  # reused
        scores, slots = np.empty((len(queries), depth), np.float32), np.empty((len(queries), depth), np.int64)
        for rows, groups in blocks:
            scores[rows], slots[rows] = self._search_block(
                prepared[rows], coarse[rows], cells[rows], codes, quantizer, anchors, depth, _matrices(buffer, groups)
            )
        return scores, np.where(slots >= 0, self.order[np.maximum(slots, 0)].astype(np.int64), -1)

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

    def _search_block(self, prepared, coarse, cells, codes, quantizer, anchors, depth, matrices):
        """One block of queries: every probed cell scored into its query's row of a score matrix (its cells side by
        side, the rest of the row -inf), then the best `depth` columns of each row, mapped back to slots."""
        sizes = self.sizes[cells]  # (nq, probes): the width of each probed cell
        starts = np.cumsum(sizes, axis=1) - sizes  # where each probed cell's scores start in its query's row
        rows = [row for matrix in matrices for row in matrix]  # a view per query, in block order
        for row, used in zip(rows, sizes.sum(axis=1), strict=True):
            row[used:] = -np.inf
        visits, columns = self._visits(cells, coarse, starts)
        with blas_threads(1), using_threads(resolve_threads(), read_env=False):  # torch's products on every core
            found = quantizer.scores_visits(prepared, codes, anchors, visits)
            for visit, at, values in zip(visits, columns, found, strict=True):
                for row, start, row_values in zip(visit.rows, at, values, strict=True):
                    rows[row][start : start + len(row_values)] = row_values
            tops = [torch.topk(torch.from_numpy(matrix), depth, dim=1, sorted=False) for matrix in matrices]
        best = np.concatenate([top.values.numpy() for top in tops])
        columns = np.concatenate([top.indices.numpy() for top in tops])
        probe = _probe_of(columns, starts, max(matrix.shape[1] for matrix in matrices))
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


class _Group(NamedTuple):
    """Consecutive queries (positions start:stop of the ascending widths) scored in one (stop - start, width)
    matrix."""

    start: int
    stop: int
    width: int

    @property
    def size(self) -> int:
        return (self.stop - self.start) * self.width


def _runs(queries: np.ndarray, widths: np.ndarray) -> list[np.ndarray]:
    """The queries in runs whose scores (widths, padded by up to GROUP_SLACK) fit SCORE_BUDGET, each run sorted
    by width. Where one run will not do, runs follow `_nearby` order: queries near each other probe many of the same
    cells, whose codes a block scores once for all its queries."""
    held = widths * GROUP_SLACK
    if held.sum() <= SCORE_BUDGET:
        return [np.argsort(widths, kind="stable")]
    order = _nearby(queries)
    ends, runs, start = np.cumsum(held[order]), [], 0
    while start < len(order):
        room = SCORE_BUDGET + (ends[start - 1] if start else 0)
        end = max(start + 1, int(np.searchsorted(ends, room, side="right")))
        runs.append(order[start:end][np.argsort(widths[order[start:end]], kind="stable")])
        start = end
    return runs


def _nearby(points: np.ndarray) -> np.ndarray:
    """An order of the points in which neighbours are near in space: halves split at the median along their
    principal direction (a few power iterations), recursively down to NEARBY_LEAF points."""
    order, stack = [], [np.arange(len(points))]
    while stack:
        part = stack.pop()
        if len(part) <= NEARBY_LEAF:
            order.append(part)
            continue
        centred = points[part] - points[part].mean(axis=0)
        direction = centred[np.argmax((centred * centred).sum(axis=1))]
        for _ in range(3):
            direction = centred.T @ (centred @ direction)
            direction /= max(float(np.linalg.norm(direction)), 1e-30)
        ranked = part[np.argsort(centred @ direction, kind="stable")]
        stack += [ranked[len(part) // 2 :], ranked[: len(part) // 2]]  # the lower half next
    return np.concatenate(order)


def _layout(widths: np.ndarray) -> list[list[_Group]]:
    """Blocks of groups over ascending `widths`: a group's rows are at most GROUP_SLACK times as wide as its first
    (cut further where one matrix would pass SCORE_BUDGET, one row at least), and a block's groups, consecutive,
    hold at most SCORE_BUDGET scores (a larger group alone)."""
    groups, start = [], 0
    while start < len(widths):
        end = max(start + 1, int(np.searchsorted(widths, widths[start] * GROUP_SLACK, side="right")))
        step = max(1, SCORE_BUDGET // int(widths[end - 1]))
        for low in range(start, end, step):
            stop = min(low + step, end)
            groups.append(_Group(low, stop, int(widths[stop - 1])))
        start = end
    blocks: list[list[_Group]] = [[]]
    for group in groups:
        if blocks[-1] and sum(g.size for g in blocks[-1]) + group.size > SCORE_BUDGET:
            blocks.append([])
        blocks[-1].append(group)
    return blocks


def _matrices(buffer: np.ndarray, groups: list[_Group]) -> list[np.ndarray]:
    """The score matrix of each group, side by side in `buffer`."""
    ends = np.cumsum([g.size for g in groups])
    return [buffer[end - g.size : end].reshape(g.stop - g.start, g.width) for g, end in zip(groups, ends, strict=True)]


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
