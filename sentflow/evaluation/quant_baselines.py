"""The compact-search baselines that sentflow's quantizers are measured against, on the same vectors: the codes
sentence-transformers users get (`quantize_embeddings`, `semantic_search_faiss`) and faiss's own codecs at the
same bytes, RaBitQ's among them (1 bit a dimension with and without SQ8 refinement, and 2 and 4 bits). Each is an
object with `search(queries, k) -> (scores, rows)`, `ram_bytes_per_doc` and `budget(k)`, the candidates its first
stage keeps for a refinement (None without one); a refining baseline keeps as many as sentflow's two-stage codes.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np

from sentflow.errors import SentflowError
from sentflow.extras import require
from sentflow.search.quantize import stage1_candidates

BASELINES = (
    "st-ubinary-rescore",
    "st-int8",
    "faiss-binary",
    "faiss-sq8",
    "faiss-sq4",
    "faiss-pq48",
    "faiss-opq48",
    "faiss-pq16",
    "faiss-opq16",
    "faiss-rabitq",
    "faiss-rabitq-sq8",
    "faiss-rabitq2",
    "faiss-rabitq4",
)
BASELINE_CODES = {  # the code each baseline keeps per document, in sentflow's spec words where one fits
    "st-ubinary-rescore": "binary",
    "st-int8": "int8",
    "faiss-binary": "binary",
    "faiss-sq8": "int8",
    "faiss-sq4": "int4",
    "faiss-pq48": "pq48",
    "faiss-opq48": "opq48",
    "faiss-pq16": "pq16",
    "faiss-opq16": "opq16",
    "faiss-rabitq": "rabitq",
    "faiss-rabitq-sq8": "rabitq",
    "faiss-rabitq2": "rabitq 2-bit",
    "faiss-rabitq4": "rabitq 4-bit",
}
OPQ_ITERATIONS = 10
RABITQ_QUERY_BITS = 8  # faiss' qb: the query's scalar quantization inside RaBitQ's estimator
_RABITQ_BITS = {"faiss-rabitq": 1, "faiss-rabitq-sq8": 1, "faiss-rabitq2": 2, "faiss-rabitq4": 4}
_FAISS_FACTORIES = {
    "faiss-sq8": "SQ8",
    "faiss-sq4": "SQ4",
    "faiss-pq48": "PQ48",
    "faiss-opq48": "OPQ48,PQ48",
    "faiss-pq16": "PQ16",
    "faiss-opq16": "OPQ16,PQ16",
}


class FaissCodec:
    """A faiss index built by a factory string (inner product), trained and filled with the corpus."""

    def __init__(self, name: str, corpus: np.ndarray) -> None:
        faiss = require("faiss", "faiss")
        dim = corpus.shape[1]
        self.index = faiss.index_factory(dim, _FAISS_FACTORIES[name], faiss.METRIC_INNER_PRODUCT)
        if name.startswith("faiss-opq"):  # faiss' default of 50 rotation updates takes minutes on 2 cores
            faiss.downcast_VectorTransform(self.index.chain.at(0)).niter = OPQ_ITERATIONS
        with _quiet_native_stderr():  # k-means warns, once per sub-quantizer, when a corpus has < 39 x 256 rows
            self.index.train(corpus)
        self.index.add(corpus)
        self.ram_bytes_per_doc = float(self.index.sa_code_size())

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """faiss's own top k (inner products on its codes)."""
        return self.index.search(np.ascontiguousarray(queries, np.float32), k)

    def budget(self, k: int) -> int | None:
        """No refinement: the codes' ranking is final."""
        return None


class FaissRaBitQ:
    """faiss' `IndexRaBitQ` (Gao & Long's codes: `bits` per dimension and per-vector factors, the query quantized
    to RABITQ_QUERY_BITS), optionally refined by an `IndexRefine` with SQ8 codes held in RAM, which rescores
    `stage1_candidates` of them (the same budget as sentflow's two-stage codes)."""

    def __init__(self, corpus: np.ndarray, bits: int, refine: bool, rescore: int = 4, candidates: int | None = None):
        faiss = require("faiss", "faiss")
        dim = corpus.shape[1]
        self.base = faiss.IndexRaBitQ(dim, faiss.METRIC_INNER_PRODUCT, bits)
        self.base.qb = RABITQ_QUERY_BITS
        self.index = self.base
        if refine:
            self.index = faiss.IndexRefine(
                self.base, faiss.IndexScalarQuantizer(dim, faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT)
            )
        self.index.train(corpus)
        self.index.add(corpus)
        self.refine, self.rescore, self.candidates, self.rows = refine, rescore, candidates, len(corpus)
        self.ram_bytes_per_doc = float(self.base.sa_code_size() + (dim if refine else 0))

    def budget(self, k: int) -> int | None:
        """Candidates the refinement rescores at k (None without one)."""
        return stage1_candidates(k, self.candidates, self.rows, self.rescore) if self.refine else None

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """faiss's top k: RaBitQ's estimates, then (refined) SQ8 inner products of the budget's candidates."""
        budget = self.budget(k)
        if budget is not None:
            self.index.k_factor = budget / k
        return self.index.search(np.ascontiguousarray(queries, np.float32), k)


class FaissSignBits:
    """faiss `IndexBinaryFlat` on the plain sign bits of the vectors (no rotation, no rescoring)."""

    def __init__(self, corpus: np.ndarray) -> None:
        faiss = require("faiss", "faiss")
        codes = np.packbits(corpus > 0, axis=1)
        self.index = faiss.IndexBinaryFlat(codes.shape[1] * 8)
        self.index.add(codes)
        self.bits = corpus.shape[1]
        self.ram_bytes_per_doc = float(codes.shape[1])

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Hamming top k, scored 1 - 2·distance/bits."""
        distances, rows = self.index.search(np.packbits(queries > 0, axis=1), k)
        return 1.0 - 2.0 * distances / self.bits, rows

    def budget(self, k: int) -> int | None:
        """No rescoring: the Hamming ranking is final."""
        return None


class StUbinaryRescore:
    """sentence-transformers' binary codes (`ubinary`) searched by `semantic_search_faiss` with its rescoring
    (float query · ±1 document bits on `rescore_multiplier × k` candidates, the multiplier the one that gives
    `stage1_candidates`)."""

    def __init__(self, corpus: np.ndarray, rescore: int, candidates: int | None = None) -> None:
        quantization = require("sentence_transformers.util.quantization", "st")
        self._search = quantization.semantic_search_faiss
        codes = quantization.quantize_embeddings(corpus, precision="ubinary")
        empty = np.zeros((1, corpus.shape[1]), np.float32)
        _, _, self.index = self._search(empty, corpus_embeddings=codes, corpus_precision="ubinary", output_index=True)
        self.rescore, self.candidates, self.rows = rescore, candidates, len(corpus)
        self.ram_bytes_per_doc = float(codes.shape[1])

    def budget(self, k: int) -> int:
        """Candidates rescored at k: k x the whole multiplier that reaches `stage1_candidates`."""
        return k * math.ceil(stage1_candidates(k, self.candidates, self.rows, self.rescore) / k)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Its top k, as arrays."""
        multiplier = self.budget(k) // k
        results, _ = self._search(
            queries, corpus_index=self.index, corpus_precision="ubinary", top_k=k, rescore_multiplier=multiplier
        )
        return _as_arrays(results, k)


class StInt8:
    """sentence-transformers' int8 codes with the corpus as calibration embeddings, queries coded the same way,
    searched exactly by integer inner product (what an int8 vector store computes)."""

    def __init__(self, corpus: np.ndarray) -> None:
        quantization = require("sentence_transformers.util.quantization", "st")
        self._quantize = quantization.quantize_embeddings
        self.corpus = corpus
        self.codes = self._quantize(corpus, precision="int8", calibration_embeddings=corpus).astype(np.int32)
        self.ram_bytes_per_doc = float(corpus.shape[1])

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The exact top k of int8 query codes · int8 document codes."""
        coded = self._quantize(queries, precision="int8", calibration_embeddings=self.corpus).astype(np.int32)
        scores = (coded @ self.codes.T).astype(np.float64)
        rows = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        return np.take_along_axis(scores, rows, 1), rows

    def budget(self, k: int) -> int | None:
        """A full scan: no first stage."""
        return None


def make_baseline(name: str, corpus: np.ndarray, rescore: int = 4, candidates: int | None = None):
    """The baseline `name` (one of BASELINES) built on the corpus vectors it is compared on; one that rescores
    keeps `stage1_candidates(k, candidates, rows, rescore)` candidates."""
    corpus = np.ascontiguousarray(corpus, np.float32)
    if name == "st-ubinary-rescore":
        return StUbinaryRescore(corpus, rescore, candidates)
    if name in _RABITQ_BITS:
        return FaissRaBitQ(corpus, _RABITQ_BITS[name], name.endswith("-sq8"), rescore, candidates)
    if name == "st-int8":
        return StInt8(corpus)
    if name == "faiss-binary":
        return FaissSignBits(corpus)
    if name in _FAISS_FACTORIES:
        return FaissCodec(name, corpus)
    raise SentflowError(f"unknown baseline {name!r}; choose from {', '.join(BASELINES)}")


@contextmanager
def _quiet_native_stderr() -> Iterator[None]:
    """Silence what C++ code prints on file descriptor 2 during the block (errors still raise in Python)."""
    sys.stderr.flush()
    saved = os.dup(2)
    with open(os.devnull, "w") as devnull:
        os.dup2(devnull.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def _as_arrays(results: list[list[dict]], k: int) -> tuple[np.ndarray, np.ndarray]:
    scores = np.full((len(results), k), -np.inf)
    rows = np.full((len(results), k), -1, np.int64)
    for i, hits in enumerate(results):
        for j, hit in enumerate(hits[:k]):
            scores[i, j], rows[i, j] = hit["score"], hit["corpus_id"]
    return scores, rows
