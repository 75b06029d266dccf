"""faiss indexes that apply a calibration inside the index, and the exact numpy search they are checked against.

`build_index` chains the whitening's `LinearTransform`, an optional L2 normalisation and any faiss index built
by a factory string (inner-product metric), so raw encoder vectors are added and raw query vectors are searched.
"""

from __future__ import annotations

import re

import numpy as np

from sentflow.calibration.faiss_map import affine_transform as affine_transform  # compact.py imports it from here
from sentflow.calibration.faiss_map import linear_transform
from sentflow.calibration.stats import as_matrix
from sentflow.errors import SentflowError
from sentflow.extras import require
from sentflow.files.io import first_line
from sentflow.protocols import CalibratedEncoder, Calibration, conforms


def _calibration_and_normalize(pipeline_or_calibration, normalize: bool | None):
    """(calibration or None, normalize) from a Pipeline, a fitted calibration, or None."""
    obj = pipeline_or_calibration
    if conforms(obj, CalibratedEncoder):
        return obj.calibration, obj.normalize if normalize is None else normalize
    if obj is None or conforms(obj, Calibration):
        return obj, True if normalize is None else normalize
    raise SentflowError(f"build_index expects a Pipeline, a fitted calibration or None, got {type(obj).__name__}")


def build_index(pipeline_or_calibration, vectors, factory: str = "Flat", normalize: bool | None = None):
    """An inner-product faiss index over calibrated (and, if `normalize`, L2-normalised) `vectors`.

    `pipeline_or_calibration` is a Pipeline (its calibration and normalize flag are used), a fitted linear
    calibration (then `normalize` defaults to True: cosine similarity), or None (no calibration). The returned
    index takes raw vectors: `index.search(raw_queries, k)` applies the same transform to the queries.
    `factory` is any faiss index_factory string ("Flat", "HNSW32", "IVF256,PQ16", ...); the index is trained on
    `vectors` when it needs training.

    Args:
        pipeline_or_calibration: A `Pipeline`, a fitted linear calibration, or None.
        vectors: (n, d) raw encoder vectors of the corpus.
        factory: A faiss index_factory string.
        normalize: L2-normalise after the calibration (None: the pipeline's flag, or True for a calibration).

    Returns:
        A faiss `IndexPreTransform` holding the corpus, with the calibration and normalisation inside it, so
        it is searched with raw query vectors.
    """
    faiss = require("faiss", "faiss")
    calibration, normalize = _calibration_and_normalize(pipeline_or_calibration, normalize)
    vectors = np.ascontiguousarray(as_matrix(vectors, "vectors"), dtype=np.float32)
    transforms = []
    dim = vectors.shape[1]
    if calibration is not None:
        linear = linear_transform(calibration)
        if linear.d_in != dim:
            raise SentflowError(
                f"vectors have {dim} features but the {calibration.method} calibration was fitted on "
                f"{linear.d_in}-d embeddings"
            )
        transforms.append(linear)
        dim = linear.d_out
    if normalize:
        transforms.append(faiss.NormalizationTransform(dim, 2.0))
    inner = make_faiss_index(factory, dim)
    index = faiss.IndexPreTransform(inner)
    for transform in reversed(transforms):
        index.prepend_transform(transform)
    if not index.is_trained:
        try:
            index.train(vectors)
        except RuntimeError as exc:
            raise SentflowError(
                f"cannot train faiss index {factory!r} on {len(vectors)} vectors: {first_line(exc)}"
            ) from None
    index.add(vectors)
    return index


def index_bytes(index) -> int:
    """Size of the index as faiss serialises it (vectors, graph or codes, plus the transforms)."""
    faiss = require("faiss", "faiss")
    return int(faiss.serialize_index(index).size)


def search_exact(queries, corpus, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-k inner products by brute force: (scores, ids), each (n_queries, k), best first, ties by lower id."""
    queries = as_matrix(queries, "queries")
    corpus = as_matrix(corpus, "corpus")
    if queries.shape[1] != corpus.shape[1]:
        raise SentflowError(f"queries have {queries.shape[1]} features but the corpus has {corpus.shape[1]}")
    scores = queries @ corpus.T
    ids = np.argsort(-scores, axis=1, kind="stable")[:, : min(k, len(corpus))]
    return np.take_along_axis(scores, ids, axis=1), ids


_GRAPH_DEGREE = re.compile(r"(HNSW|NSG)(\d+)")  # faiss aborts the process on a graph degree below 2
MAX_FACTORY_NUMBER = 1 << 24


def make_faiss_index(factory: str, dim: int):
    """`faiss.index_factory(dim, factory)` for inner products, with the parameters faiss would abort the process
    on (rather than raise) refused first as one-line SentflowErrors."""
    faiss = require("faiss", "faiss")
    for kind, degree in _GRAPH_DEGREE.findall(factory):
        if not 2 <= int(degree) <= 1024:
            raise SentflowError(f"index {factory!r}: {kind}{degree} needs a graph degree from 2 to 1024, e.g. {kind}32")
    too_large = [n for n in re.findall(r"\d+", factory) if int(n) > MAX_FACTORY_NUMBER]
    if too_large:
        raise SentflowError(f"index {factory!r}: {too_large[0]} is out of range (at most {MAX_FACTORY_NUMBER})")
    try:
        return faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT)
    except RuntimeError as exc:
        raise SentflowError(f"faiss cannot build index {factory!r} for {dim}-d vectors: {first_line(exc)}") from None
