"""The LanceDB integration: a round trip of vectors, ids and sentflow codes through an embedded LanceDB table,
and searches through it against numpy brute force."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("lancedb", reason="needs the lancedb extra: pip install 'sentflow[lancedb]'")

from sentflow import SentflowError  # noqa: E402
from sentflow.integrations.lancedb import build_index, search_table, write_table  # noqa: E402
from sentflow.search.compact import CompactIndex  # noqa: E402


def unit_vectors(n: int, d: int = 24, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)) + 0.2
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def brute_force(queries: np.ndarray, corpus: np.ndarray, k: int) -> np.ndarray:
    return np.argsort(-(queries.astype(np.float64) @ corpus.T), axis=1, kind="stable")[:, :k]


def test_vectors_ids_and_codes_round_trip_through_a_table(tmp_path):
    corpus = unit_vectors(2500)
    index = CompactIndex.build(corpus, "rabitq", lists=6)
    ids = [f"doc-{i}" for i in range(2500)]
    table = write_table(tmp_path / "db", "docs", (corpus[s : s + 700] for s in range(0, 2500, 700)), ids, index)
    stored = table.to_arrow()
    assert stored["id"].to_pylist() == ids
    np.testing.assert_array_equal(np.stack(stored["vector"].to_numpy(zero_copy_only=False)), corpus)
    codes = np.frombuffer(b"".join(stored["codes"].to_pylist()), np.uint8).reshape(2500, -1)
    np.testing.assert_array_equal(codes[index.lists.order], index.codes)  # row order, from the index's slot order


def test_search_without_and_with_an_ivf_index_matches_brute_force(tmp_path):
    corpus, queries = unit_vectors(3000), unit_vectors(6, seed=1)
    table = write_table(tmp_path / "db", "docs", corpus)
    best = brute_force(queries, corpus, 10)
    scores, found = search_table(table, queries, 10)  # no index yet: LanceDB's exact scan
    assert found == [[str(i) for i in row] for row in best]
    np.testing.assert_allclose(scores, np.take_along_axis(queries @ corpus.T, best, 1), atol=1e-5)
    build_index(table, "IVF_FLAT", partitions=4)
    _, every_list = search_table(table, queries, 10, probes=4)
    assert every_list == [[str(i) for i in row] for row in best]  # every list probed: exact again
    build_index(table, "IVF_RQ", partitions=4)  # LanceDB trains it unseeded: 40 queries, so the mean is steady
    many = unit_vectors(40, seed=2)
    _, rabitq = search_table(table, many, 10, probes=4, refine=20)
    truth = brute_force(many, corpus, 10)
    hits = np.mean([len(set(a) & {str(i) for i in b}) / 10 for a, b in zip(rabitq, truth, strict=True)])
    assert hits >= 0.7  # 1-bit codes of 24 dims, 200 candidates rescored with the stored floats (0.82-0.85 seen)


def test_bad_tables_get_one_line(tmp_path):
    corpus = unit_vectors(50)
    write_table(tmp_path / "db", "docs", corpus)
    with pytest.raises(SentflowError, match="already has a table 'docs'"):
        write_table(tmp_path / "db", "docs", corpus)
    with pytest.raises(SentflowError, match="3 ids for 50 vectors"):
        write_table(tmp_path / "db", "other", corpus, ids=["a", "b", "c"], overwrite=True)
    with pytest.raises(SentflowError, match="unknown LanceDB index"):
        build_index(write_table(tmp_path / "db", "docs", corpus, overwrite=True), "HNSW")
