"""The interface every compact code implements (`Quantizer`: fit, encode, score, save) and the packed-bit arithmetic
the sign-based codes share (`rotate_queries`, `sign_estimate`); the codes themselves live in
`sentflow.search.quantize` and `sentflow.search.rabitq`.

Scoring is split in two so that a search does per-query work once: `prepare(queries)` (e.g. the rotated queries)
and `prepared_scores(prepared, codes)`, the estimate of <query, vector> for every pair. An inverted file codes each
vector relative to an anchor (its cell's centroid): `encode_around` and `scores_around`, which by default code the
residual and add <query, anchor> back; a code whose estimate can use the anchor better overrides them."""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from typing import ClassVar, NamedTuple

import numpy as np
import torch

from sentflow.calibration.stats import as_matrix
from sentflow.errors import SentflowError
from sentflow.files.io import save_tensors

SCORE_ROWS = 16_384  # codes unpacked to floats per block while scoring
CELL_CODES = 4096  # codes (padding included) a batch of visits unpacks to floats at once


class Visit(NamedTuple):
    """Some queries (`rows` of the prepared queries, with their inner products `dots` with the cell's centroid)
    visiting one inverted-file cell, whose codes are rows low:high."""

    rows: np.ndarray
    dots: np.ndarray
    cell: int
    low: int
    high: int


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

    def prepare(self, queries) -> np.ndarray:
        """What the estimate needs of each query, computed once per search (here: the float32 queries)."""
        return np.asarray(self.check_width(queries, "queries"), dtype=np.float32)

    def prepared_scores(self, prepared: np.ndarray, codes: np.ndarray) -> np.ndarray:
        """The estimate of <query, vector> for every `prepare`d query and code (already checked): float32
        (n_queries, n_codes); here prepared · decode(codes)."""
        decode = getattr(self, "decode", None)
        if decode is None:
            raise SentflowError(f"{self.spec} codes have no inner-product estimate to search with")
        return np.asarray(prepared @ decode(codes).T, dtype=np.float32)

    def scores(self, queries, codes: np.ndarray) -> np.ndarray:
        """The codes' estimate of <query, vector> for every query and code: float32 (n_queries, n_codes)."""
        return self.prepared_scores(self.prepare(queries), self.check_codes(codes))

    def encode_around(self, X: np.ndarray, anchors: np.ndarray) -> np.ndarray:
        """Codes of X relative to one anchor per row (an inverted file's cell centroids): here of X - anchors."""
        return self.encode(X - anchors)

    def prepare_anchors(self, anchors: np.ndarray) -> np.ndarray:
        """What `scores_around` needs of each anchor, computed once per search (here: nothing beyond the anchors)."""
        return anchors

    def scores_around(
        self, prepared: np.ndarray, codes: np.ndarray, anchor: np.ndarray, anchor_dots: np.ndarray
    ) -> np.ndarray:
        """`prepared_scores` of codes made by `encode_around` with one shared anchor (its row of
        `prepare_anchors`), given <query, anchor> (`anchor_dots`, one per prepared row): here the residual's
        estimate plus <query, anchor>."""
        return self.prepared_scores(prepared, codes) + anchor_dots[:, None].astype(np.float32)

    def scores_visits(
        self, prepared: np.ndarray, codes: np.ndarray, anchors: np.ndarray, visits: Sequence[Visit]
    ) -> Iterator[np.ndarray]:
        """`scores_around` for each visit in turn: (len(rows), high - low) float32 scores. Subclasses may score
        many visits in one batch."""
        for visit in visits:
            cell_codes = codes[visit.low : visit.high]
            yield self.scores_around(prepared[visit.rows], cell_codes, anchors[visit.cell], visit.dots)

    @abstractmethod
    def _expected_shapes(self) -> dict[str, tuple[int, ...]]:
        """The shapes of the tensors a fitted quantizer of this spec and width saves."""

    def save(self, path: str | os.PathLike) -> None:
        """Write the fitted quantizer: safetensors tensors and a checksummed JSON header (never pickle)."""
        tensors = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in self._tensors().items()}
        save_tensors(path, tensors, {"spec": self.spec, "dim": int(self.dim)})


def rotate_queries(queries: np.ndarray, projection: np.ndarray | None, mean: np.ndarray | None) -> np.ndarray:
    """Prepared queries of a sign-based code: float32 (nq, bits + 1), the projected query q P (q itself without a
    projection) and <q, mean> (0 without a mean)."""
    rotated = queries if projection is None else queries @ projection
    offset = np.zeros(len(queries)) if mean is None else queries @ mean
    return np.column_stack([rotated, offset]).astype(np.float32)


def sign_estimate(rotated: np.ndarray, bits: np.ndarray, n_bits: int, scale, offset) -> np.ndarray:
    """offset + scale · <2b - 1, r> for every float row r of `rotated` (nq, n_bits) and packed sign code b:
    float32 (nq, n). `scale` and `offset` broadcast against (nq, n) (a constant, a row per query, a column per code)."""
    signs = 2.0 * sign_dots(rotated, bits, n_bits) - rotated.sum(axis=1, keepdims=True, dtype=np.float32)
    return np.asarray(offset + scale * signs, dtype=np.float32)


def sign_dots(queries: np.ndarray, bits: np.ndarray, n_bits: int) -> np.ndarray:
    """<q, b> for float queries (nq, n_bits) and packed bit rows (n, ceil(n_bits/8)): float32 (nq, n), in blocks.

    The bits are unpacked to 0/1 and multiplied in torch, whose small float32 matrix products run several
    times faster than numpy's on the shapes an inverted file scores (a few queries by a cell's codes)."""
    left = torch.from_numpy(np.ascontiguousarray(queries, dtype=np.float32))
    out = np.empty((len(queries), len(bits)), np.float32)
    for start in range(0, len(bits), SCORE_ROWS):
        block = torch.from_numpy(np.unpackbits(bits[start : start + SCORE_ROWS], axis=1, count=n_bits))
        out[:, start : start + len(block)] = (left @ block.T.float()).numpy()
    return out


def byte_tables(rotated: np.ndarray) -> np.ndarray:
    """For float rows r (nq, n_bits): float32 (nq, ceil(n_bits/8), 256), entry [q, k, v] the sum of r[q, 8k + t]
    over the bits t set in byte value v (packbits order: the first coordinate is the high bit)."""
    nq, n_bits = rotated.shape
    padded = np.zeros((nq, -(-n_bits // 8) * 8), np.float32)
    padded[:, :n_bits] = rotated
    bits = np.unpackbits(np.arange(256, dtype=np.uint8)[:, None], axis=1).astype(np.float32)  # (256, 8)
    return padded.reshape(nq, -1, 8) @ bits.T


def visit_batches(visits: Sequence[Visit]) -> Iterator[Sequence[Visit]]:
    """Consecutive visits whose codes, each padded to the batch's largest cell, number at most CELL_CODES (a
    larger cell alone): order visits by cell size first so that little is padding."""
    start = 0
    while start < len(visits):
        end, widest = start + 1, _width(visits[start])
        while end < len(visits) and (end + 1 - start) * max(widest, _width(visits[end])) <= CELL_CODES:
            widest, end = max(widest, _width(visits[end])), end + 1
        yield visits[start:end]
        start = end


def _width(visit: Visit) -> int:
    return visit.high - visit.low


def ranges(starts, lengths) -> np.ndarray:
    """The integers start, start + 1, ... of each (start, length), concatenated: int64."""
    lengths = np.asarray(lengths, np.int64)
    ends = np.cumsum(lengths)
    total = int(ends[-1]) if len(ends) else 0
    return np.repeat(np.asarray(starts, np.int64) - (ends - lengths), lengths) + np.arange(total)


def padded_sign_dots(rotated: np.ndarray, bits: np.ndarray, n_bits: int) -> torch.Tensor:
    """<q, b> for a batch of cells at once: float queries (cells, m, n_bits) and packed bit rows (cells * n, bytes),
    each cell's rows padded to the same m and n: float32 (cells, m, n), one batched matrix product."""
    cells = len(rotated)
    unpacked = torch.from_numpy(np.unpackbits(bits, axis=1, count=n_bits)).view(cells, -1, n_bits)
    return torch.bmm(torch.from_numpy(rotated), unpacked.transpose(1, 2).float())
