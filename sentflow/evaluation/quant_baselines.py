"""The compact-search baselines that sentflow's quantizers are measured against, on the same vectors: the codes
sentence-transformers users get (`quantize_embeddings`, `semantic_search_faiss`) and faiss's own codecs at the
same bytes. Each is an object with `search(queries, k) -> (scores, rows)` and `ram_bytes_per_doc`."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np

from sentflow.errors import SentflowError
from sentflow.extras import require

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
}
OPQ_ITERATIONS = 10
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


class StUbinaryRescore:
    """sentence-transformers' binary codes (`ubinary`) searched by `semantic_search_faiss` with its rescoring
    (float query · ±1 document bits on `rescore_multiplier × k` candidates)."""

    def __init__(self, corpus: np.ndarray, rescore: int) -> None:
        quantization = require("sentence_transformers.util.quantization", "st")
        self._search = quantization.semantic_search_faiss
        codes = quantization.quantize_embeddings(corpus, precision="ubinary")
        empty = np.zeros((1, corpus.shape[1]), np.float32)
        _, _, self.index = self._search(empty, corpus_embeddings=codes, corpus_precision="ubinary", output_index=True)
        self.rescore = rescore
        self.ram_bytes_per_doc = float(codes.shape[1])

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Its top k, as arrays."""
        results, _ = self._search(
            queries, corpus_index=self.index, corpus_precision="ubinary", top_k=k, rescore_multiplier=self.rescore
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


def make_baseline(name: str, corpus: np.ndarray, rescore: int = 4):
    """The baseline `name` (one of BASELINES) built on the corpus vectors it is compared on."""
    corpus = np.ascontiguousarray(corpus, np.float32)
    if name == "st-ubinary-rescore":
        return StUbinaryRescore(corpus, rescore)
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
