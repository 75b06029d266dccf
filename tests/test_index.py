"""faiss indexes with the calibration inside, against exact numpy search on transformed vectors."""

from __future__ import annotations

import faiss
import numpy as np
import pytest

from sentflow import BertFlow, Encoder, Pipeline, SentflowError, Whitening
from sentflow.search.faiss_index import build_index, index_bytes, search_exact
from sentflow.tasks.retrieval import load_retrieval_task


def anisotropic(n: int, d: int = 24, seed: int = 0) -> np.ndarray:
    """Correlated float32 vectors with a common mean, like raw BERT vectors."""
    rng = np.random.default_rng(seed)
    mixing = rng.standard_normal((d, d)) * np.logspace(0, -1.5, d)[:, None]
    return (rng.standard_normal((n, d)) @ mixing + rng.random(d)).astype(np.float32)


def corpus_and_queries(n: int, n_queries: int, d: int = 24) -> tuple[np.ndarray, np.ndarray]:
    """Corpus and queries drawn from the same anisotropic distribution."""
    data = anisotropic(n + n_queries, d)
    return data[:n], data[n:]


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def assert_same_top_k(scores, ids, oracle_scores, oracle_ids, tol: float) -> None:
    """Scores agree within tol, and ids agree wherever the oracle's ranking is not a near tie (gap > tol)
    that float32 rounding may reorder; oracle arrays hold k + 1 columns to see the gap after the k-th."""
    k = ids.shape[1]
    np.testing.assert_allclose(scores, oracle_scores[:, :k], atol=tol)
    gaps = -np.diff(oracle_scores, axis=1)
    fixed = (gaps[:, :k] > tol) & np.c_[np.ones(len(ids), bool), gaps[:, : k - 1] > tol]
    np.testing.assert_array_equal(ids[fixed], oracle_ids[:, :k][fixed])
    assert fixed.mean() > 0.9  # the comparison covers nearly every position


@pytest.mark.parametrize(("power", "k"), [(0.5, None), (0.5, 8), (0.0, 12)])
def test_flat_index_matches_exact_search_on_transformed_vectors(power, k):
    corpus, queries = corpus_and_queries(2000, 100)
    whitening = Whitening(n_components=k, power=power).fit(corpus)
    scores, ids = build_index(whitening, corpus).search(queries, 10)
    want = search_exact(unit(whitening.transform(queries.astype(np.float64))), unit(whitening.transform(corpus)), 11)
    assert_same_top_k(scores, ids, *want, tol=1e-4)


def test_pipeline_without_normalisation_searches_raw_inner_products(tiny_bert_dir):
    encoder = Encoder(str(tiny_bert_dir), cache=False)
    corpus, queries = corpus_and_queries(500, 20, d=encoder.dim)
    whitening = Whitening().fit(corpus)
    pipeline = Pipeline(encoder, whitening, normalize=False)
    scores, ids = build_index(pipeline, corpus).search(queries, 10)
    want = search_exact(whitening.transform(queries.astype(np.float64)), whitening.transform(corpus), 11)
    assert_same_top_k(scores, ids, *want, tol=1e-4 * np.abs(scores).max())


def test_no_calibration_is_plain_cosine_search():
    corpus, queries = corpus_and_queries(300, 10)
    _, ids = build_index(None, corpus).search(queries, 5)
    brute = np.argsort(-(unit(queries.astype(np.float64)) @ unit(corpus.astype(np.float64)).T), axis=1)[:, :5]
    np.testing.assert_array_equal(ids, brute)


def test_hnsw_finds_most_exact_neighbours_and_serialises():
    corpus, queries = corpus_and_queries(1500, 50)
    whitening = Whitening(n_components=16).fit(corpus)
    index = build_index(whitening, corpus, "HNSW32")
    _, ids = index.search(queries, 10)
    _, exact = search_exact(unit(whitening.transform(queries)), unit(whitening.transform(corpus)), 10)
    overlap = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(ids, exact, strict=True)])
    assert overlap > 0.9
    blob = faiss.serialize_index(index)
    assert index_bytes(index) == blob.size
    np.testing.assert_array_equal(faiss.deserialize_index(blob).search(queries, 10)[1], ids)


def test_search_exact_is_brute_force_with_ties_to_the_lower_id():
    rng = np.random.default_rng(0)
    corpus = np.repeat(rng.integers(-2, 3, size=(40, 3)).astype(np.float64), 2, axis=0)  # every row twice
    queries = rng.integers(-2, 3, size=(7, 3)).astype(np.float64)
    scores, ids = search_exact(queries, corpus, 6)
    products = queries @ corpus.T
    for q in range(len(queries)):
        want = sorted(range(len(corpus)), key=lambda i: (-products[q, i], i))[:6]
        np.testing.assert_array_equal(ids[q], want)
        np.testing.assert_array_equal(scores[q], products[q, want])


def test_flow_calibration_is_refused_with_what_to_do():
    with pytest.raises(SentflowError, match="not a linear map.*build_index\\(None"):
        build_index(BertFlow(), anisotropic(50))


@pytest.mark.parametrize(
    ("factory", "n", "message"),
    [("NoSuchIndex", 100, "cannot build index 'NoSuchIndex'"), ("IVF256,Flat", 100, "cannot train faiss index")],
)
def test_bad_factories_are_one_line_errors(factory, n, message):
    with pytest.raises(SentflowError, match=message) as info:
        build_index(None, anisotropic(n), factory)
    assert "\n" not in str(info.value)


def test_vectors_of_the_wrong_size_are_refused():
    whitening = Whitening().fit(anisotropic(200))
    with pytest.raises(SentflowError, match="vectors have 12 features .* fitted on 24-d"):
        build_index(whitening, anisotropic(200, d=12))


@pytest.mark.slow
def test_faiss_path_equals_numpy_top10_on_stsb_corpus_embeddings(stsb_slice_dir):
    task = load_retrieval_task("sts-b", data_dir=stsb_slice_dir)
    encoder = Encoder(show_progress=False)  # the real all-MiniLM-L6-v2
    corpus, queries = encoder.encode(task.corpus_texts[:240]), encoder.encode(task.query_texts[:20])
    for whitening in (Whitening(n_components=128).fit(corpus), Whitening(power=0.0).fit(corpus)):
        scores, ids = build_index(whitening, corpus).search(queries, 10)
        want = search_exact(
            unit(whitening.transform(queries.astype(np.float64))), unit(whitening.transform(corpus)), 11
        )
        assert_same_top_k(scores, ids, *want, tol=1e-5)
