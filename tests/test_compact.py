"""Compact search against independent oracles: numpy brute force for Hamming and rescored rankings, faiss's own
distances, and exact round trips of saved indexes."""

from __future__ import annotations

import json

import numpy as np
import pytest

from sentflow import SentflowError
from sentflow.search.compact import CompactIndex
from sentflow.search.quantize import ScalarQuantizer, itq_rotation, load_quantizer, make_quantizer


def unit_vectors(n: int, d: int = 40, seed: int = 0) -> np.ndarray:
    """Anisotropic unit vectors with a common offset, like calibrated-then-normalised sentence vectors."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)) @ rng.normal(size=(d, d)) * np.linspace(2, 0.2, d) + 0.5
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def hamming(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """All pairwise Hamming distances of packed bit codes, by unpacking (numpy only)."""
    return (np.unpackbits(a, axis=1)[:, None, :] != np.unpackbits(b, axis=1)[None, :, :]).sum(axis=2)


def test_bit_codes_are_the_signs_and_stage_one_ranks_by_the_float_query_against_them():
    corpus, queries = unit_vectors(300), unit_vectors(7, seed=1)
    index = CompactIndex.build(corpus, "binary", rescore=0)
    expected = np.packbits(corpus > 0, axis=1)
    np.testing.assert_array_equal(index.codes, expected)
    _, rows = index.search(queries, 20)
    asymmetric = queries.astype(np.float64) @ np.where(corpus > 0, 1.0, -1.0).T  # the ±1 code, not Hamming
    for q in range(len(queries)):
        np.testing.assert_allclose(np.sort(asymmetric[q])[::-1][:20], asymmetric[q][rows[q]], atol=1e-5)


def test_hnsw_stage_one_searches_by_hamming_distance_like_faiss_and_numpy():
    corpus, queries = unit_vectors(300), unit_vectors(7, seed=1)
    index = CompactIndex.build(corpus, "binary", rescore=0, hnsw=True)
    scores, rows = index.search(queries, 20)
    distances = hamming(np.packbits(queries > 0, axis=1), np.packbits(corpus > 0, axis=1))
    found = np.take_along_axis(distances, rows, 1)
    np.testing.assert_allclose(scores, 1 - 2 * found / 40, atol=1e-6)
    assert (found[:, :5] == np.sort(distances, axis=1)[:, :5]).mean() > 0.9  # HNSW is approximate


def test_two_stage_with_every_candidate_rescored_is_the_exact_int8_ranking():
    corpus, queries = unit_vectors(200), unit_vectors(9, seed=2)
    index = CompactIndex.build(corpus, "itq:24", rescore=50)  # 50 x k=5 >= 200: stage 2 sees the whole corpus
    decoded = index.rescorer.decode(np.asarray(index.rescore_codes))
    brute = queries.astype(np.float64) @ decoded.T.astype(np.float64)
    scores, rows = index.search(queries, 5)
    np.testing.assert_array_equal(rows, np.argsort(-brute, axis=1, kind="stable")[:, :5])
    np.testing.assert_allclose(scores, np.take_along_axis(brute, rows, 1), atol=1e-5)


def test_stage_two_rescores_exactly_the_stage_one_candidates():
    corpus, queries = unit_vectors(500), unit_vectors(6, seed=3)
    index = CompactIndex.build(corpus, "binary", rescore=3)
    candidates = sign_candidates(corpus, queries, 115)
    decoded = index.rescorer.decode(np.asarray(index.rescore_codes))
    scores, rows = index.search(queries, 5, candidates=115)
    for q in range(len(queries)):
        exact = decoded[candidates[q]] @ queries[q]
        order = np.argsort(-exact, kind="stable")[:5]
        np.testing.assert_array_equal(np.sort(rows[q]), np.sort(candidates[q][order]))
        np.testing.assert_allclose(np.sort(scores[q]), np.sort(exact[order]), atol=1e-5)


def test_candidates_set_the_stage_one_budget():
    corpus, queries = unit_vectors(400), unit_vectors(6, seed=4)
    index = CompactIndex.build(corpus, "binary", rescore=2)
    stage_one = sign_candidates(corpus, queries, 37)
    decoded = index.rescorer.decode(np.asarray(index.rescore_codes)).astype(np.float64)
    _, rows = index.search(queries, 5, candidates=37)
    for q in range(len(queries)):
        exact = decoded[stage_one[q]] @ queries[q]
        np.testing.assert_array_equal(np.sort(rows[q]), np.sort(stage_one[q][np.argsort(-exact)[:5]]))
    _, everything = index.search(queries, 5, candidates=400)  # every document rescored: the exact int8 ranking
    np.testing.assert_array_equal(everything, np.argsort(-(queries @ decoded.T), axis=1, kind="stable")[:, :5])
    with pytest.raises(SentflowError, match="candidates must be a whole number >= 1"):
        index.search(queries, 5, candidates=0)


class SignedScores(type(make_quantizer("binary"))):  # type: ignore[misc]
    """Sign codes with an inner-product estimate: query · (±1 per bit) (what the quantizer's `scores` hook gives)."""

    def scores(self, queries: np.ndarray, codes: np.ndarray) -> np.ndarray:
        signs = np.unpackbits(codes, axis=1)[:, : self.dim].astype(np.float32) * 2 - 1
        return (queries @ signs.T).astype(np.float32)


def test_stage_one_ranks_by_the_quantizers_scores_when_it_has_them():
    corpus, queries = unit_vectors(300), unit_vectors(5, seed=6)
    quantizer = SignedScores().fit(corpus)
    index = CompactIndex(quantizer, quantizer.encode(corpus), rescore=0)
    scores, rows = index.search(queries, 8)
    brute = queries @ np.where(corpus > 0, 1.0, -1.0).T
    np.testing.assert_allclose(scores, -np.sort(-brute, axis=1)[:, :8], rtol=1e-5)
    np.testing.assert_allclose(np.take_along_axis(brute, rows, 1), scores, rtol=1e-5)


def sign_candidates(corpus: np.ndarray, queries: np.ndarray, depth: int) -> np.ndarray:
    """Stage 1 of binary codes by numpy brute force: the depth best rows by float query · (±1 signs)."""
    asymmetric = queries.astype(np.float64) @ np.where(corpus > 0, 1.0, -1.0).T
    return np.argsort(-asymmetric, axis=1, kind="stable")[:, :depth]


@pytest.mark.parametrize("spec", ["int8", "int4", "int8:100", "none"])
def test_full_scan_is_the_numpy_asymmetric_ranking(spec):
    corpus, queries = unit_vectors(333, d=33), unit_vectors(8, d=33, seed=4)
    index = CompactIndex.build(corpus, spec)
    decoded = corpus if spec == "none" else index.quantizer.decode(index.codes)
    brute = queries.astype(np.float64) @ decoded.T.astype(np.float64)
    scores, rows = index.search(queries, 12)
    np.testing.assert_array_equal(rows, np.argsort(-brute, axis=1, kind="stable")[:, :12])
    np.testing.assert_allclose(scores, np.take_along_axis(brute, rows, 1), atol=1e-5)
    assert index.ram_bytes_per_doc == {"int8": 33, "int4": 17, "int8:100": 33, "none": 132}[spec]


def test_scalar_codes_round_trip_within_half_a_step_inside_the_fitted_range():
    X = unit_vectors(400, d=9)
    for bits in (8, 4):
        quantizer = ScalarQuantizer(bits, percentile=100.0).fit(X)
        error = np.abs(quantizer.decode(quantizer.encode(X)) - X)
        assert (error <= quantizer.step_ / 2 + 1e-6).all()
        assert quantizer.encode(X).shape == (400, 9 if bits == 8 else 5)
    clipped = ScalarQuantizer(8, percentile=90.0).fit(X)
    assert clipped.decode(clipped.encode(X)).max() <= np.percentile(X, 90.0, axis=0).max() + 1e-6


def test_itq_rotation_is_orthogonal_and_lowers_the_quantisation_loss():
    X = unit_vectors(600, d=32).astype(np.float64)
    centred = X - X.mean(axis=0)
    projection = np.linalg.eigh(centred.T @ centred)[1][:, ::-1][:, :16]
    V = centred @ projection
    rotation = itq_rotation(V, seed=0)
    np.testing.assert_allclose(rotation.T @ rotation, np.eye(16), atol=1e-10)

    def loss(R: np.ndarray) -> float:
        return float(np.square(np.where(V @ R >= 0, 1.0, -1.0) - V @ R).sum())

    start = np.linalg.qr(np.random.default_rng(0).standard_normal((16, 16)))[0]  # ITQ's own starting point
    assert loss(rotation) < loss(start) and loss(rotation) < loss(np.eye(16))


@pytest.mark.parametrize("spec", ["none", "int8", "int4:99", "binary", "pca:16", "itq:16"])
def test_a_saved_quantizer_loads_back_exactly(spec, tmp_path):
    X = unit_vectors(100, d=20)
    quantizer = make_quantizer(spec).fit(X)
    quantizer.save(tmp_path / "q.safetensors")
    loaded = load_quantizer(tmp_path / "q.safetensors")
    assert loaded.spec == quantizer.spec and loaded.code_bytes == quantizer.code_bytes
    np.testing.assert_array_equal(loaded.encode(X), quantizer.encode(X))


@pytest.mark.parametrize("hnsw", [False, True])
def test_a_saved_index_searches_identically(tmp_path, hnsw):
    corpus, queries = unit_vectors(300), unit_vectors(5, seed=5)
    ids = [f"doc-{i}" for i in range(300)]
    index = CompactIndex.build(corpus, "itq:32", rescore=4, ids=ids, hnsw=hnsw)
    index.save(tmp_path / "idx", snippets=[f"text {i}" for i in range(300)])
    loaded = CompactIndex.load(tmp_path / "idx")
    for got, want in zip(loaded.search(queries, 10), index.search(queries, 10), strict=True):
        np.testing.assert_array_equal(got, want)
    assert loaded.ids == ids and isinstance(loaded.rescore_codes, np.memmap)
    assert (loaded.ram_bytes_per_doc, loaded.disk_bytes_per_doc) == (index.ram_bytes_per_doc, 40.0)


def test_damaged_or_foreign_index_files_are_refused(tmp_path):
    index = CompactIndex.build(unit_vectors(120), "binary", rescore=2)
    index.save(tmp_path / "idx")
    codes = tmp_path / "idx" / "codes.npy"
    codes.write_bytes(codes.read_bytes()[:-7])
    with pytest.raises(SentflowError, match="codes.npy: checksum mismatch"):
        CompactIndex.load(tmp_path / "idx")
    index.save(tmp_path / "idx2")
    manifest = json.loads((tmp_path / "idx2" / "index.json").read_text())
    manifest["files"]["codes"]["name"] = "../codes.npy"
    (tmp_path / "idx2" / "index.json").write_text(json.dumps(manifest))
    with pytest.raises(SentflowError, match="index.json: field 'files.codes.name'"):
        CompactIndex.load(tmp_path / "idx2")
    with pytest.raises(SentflowError, match="not a sentflow index directory"):
        CompactIndex.load(tmp_path)


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda X: CompactIndex.build(X, "itq:64"), "64 bits is more than the 40 calibrated dimensions"),
        (lambda X: CompactIndex.build(X[:20], "itq:32"), "needs more corpus vectors than bits"),
        (lambda X: CompactIndex.build(X[:0], "binary"), "the corpus is empty"),
        (lambda X: CompactIndex.build(X, "int3"), "unknown quantizer 'int3'"),
        (lambda X: CompactIndex.build(X, "itq"), "itq needs a whole number of bits"),
        (lambda X: CompactIndex.build(X, "binary").search(X[:2, :10], 5), "queries have 10 dimensions"),
        (lambda X: CompactIndex.build(X, "binary").search(X[:2], 0), "k must be a whole number >= 1"),
        (lambda X: CompactIndex.build(X, "binary", rescore=-1), "rescore must be >= 0"),
    ],
)
def test_bad_input_gets_one_line(build, message):
    with pytest.raises(SentflowError, match=message):
        build(unit_vectors(100))


def test_k_larger_than_the_corpus_returns_every_document():
    index = CompactIndex.build(unit_vectors(30), "binary", rescore=4)
    scores, rows = index.search(unit_vectors(2, seed=9), 50)
    assert rows.shape == (2, 30) and sorted(rows[0]) == list(range(30)) and np.isfinite(scores).all()


@pytest.mark.parametrize("spec", ["binary", "itq:8"])
def test_the_faiss_export_searches_raw_vectors_like_stage_one(spec):
    from sentflow import Whitening

    rng = np.random.default_rng(0)
    raw = (rng.normal(size=(400, 24)) @ rng.normal(size=(24, 24)) + 1.0).astype(np.float32)
    whitening = Whitening(n_components=12).fit(raw)
    final = whitening.transform(raw)
    final /= np.linalg.norm(final, axis=1, keepdims=True)
    index = CompactIndex.build(final, spec, rescore=0)
    exported = index.to_faiss(whitening)
    exported.add(raw)
    distances, _ = exported.search(raw[:6], 15)
    expected = np.sort(hamming(index.quantizer.encode(final[:6]), index.codes), axis=1)[:, :15]
    np.testing.assert_array_equal(distances, expected)  # the Hamming ranking of sentflow's own codes
    with pytest.raises(SentflowError, match="int8 codes do not export to faiss"):
        CompactIndex.build(final, "int8").to_faiss(whitening)
