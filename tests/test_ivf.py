"""Inverted-file compact search against numpy brute force: the cells probed, the rows found in them, exact
rankings when every cell is probed, a saved index searched by a new process, and codes spilled to disk."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from sentflow import SentflowError
from sentflow.search.compact import CompactIndex


def clustered(n: int, d: int = 24, clusters: int = 30, seed: int = 0) -> np.ndarray:
    """Unit vectors around `clusters` centres (real corpora have cluster structure)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, d))
    x = centres[rng.integers(0, clusters, n)] + 0.4 * rng.normal(size=(n, d))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(a) & set(b)) / len(b) for a, b in zip(found, truth, strict=True)]))


@pytest.mark.parametrize(
    "queries_a_ranking, scores_held",
    [(None, None), (3, None), (None, 2000)],
    ids=["all queries", "3 queries at a time", "score matrices in blocks"],
)
def test_float_lists_find_the_brute_force_best_of_the_probed_cells(monkeypatch, queries_a_ranking, scores_held):
    """Also with the cells to probe ranked 3 queries at a time (blocks and a short tail), and with the scores held
    in many small matrices over several blocks."""
    import sentflow.search.ivf as ivf

    if queries_a_ranking:
        monkeypatch.setattr(ivf, "PROBE_BUDGET", 16 * queries_a_ranking)
    if scores_held:
        monkeypatch.setattr(ivf, "SCORE_BUDGET", scores_held)
        monkeypatch.setattr(ivf, "GROUP_SLACK", 1.02)
    corpus, queries = clustered(3000), clustered(20, seed=1)
    index = CompactIndex.build(corpus, "none", lists=16)
    centroids = index.lists.centroids.astype(np.float64)
    nearest = np.argmin(((corpus[:, None, :] - centroids[None]) ** 2).sum(axis=2), axis=1)  # numpy assignment
    scores, rows = index.search(queries, 10, probes=3)
    for q in range(len(queries)):
        probed = np.argsort(-(queries[q] @ centroids.T))[:3]
        inside = np.flatnonzero(np.isin(nearest, probed))
        exact = corpus[inside].astype(np.float64) @ queries[q]
        best = inside[np.argsort(-exact, kind="stable")[:10]]
        np.testing.assert_array_equal(rows[q], best)
        np.testing.assert_allclose(scores[q], corpus[best] @ queries[q], atol=1e-5)


@pytest.mark.parametrize("budget, slack", [(50, 1.0), (400, 1.25), (10_000, 2.0), (1 << 26, 1.25)])
def test_score_layout_covers_every_query_within_its_budgets(budget, slack, monkeypatch):
    """Groups tile the ascending widths in order, each as wide as its widest row and at most `slack` times its
    narrowest (or cut by the budget); blocks are runs of whole groups within the budget (a larger group alone)."""
    import sentflow.search.ivf as ivf

    monkeypatch.setattr(ivf, "SCORE_BUDGET", budget)
    monkeypatch.setattr(ivf, "GROUP_SLACK", slack)
    widths = np.sort(np.random.default_rng(6).integers(10, 300, 200))
    blocks = ivf._layout(widths)
    groups = [group for block in blocks for group in block]
    assert [g.start for g in groups] == [0] + [g.stop for g in groups[:-1]] and groups[-1].stop == len(widths)
    for g in groups:
        assert g.width == widths[g.stop - 1] <= slack * widths[g.start]
        assert g.size <= budget or g.stop - g.start == 1
    for block in blocks:
        assert sum(g.size for g in block) <= budget or len(block) == 1
    buffer = np.arange(sum(g.size for g in blocks[0]), dtype=np.float32)
    matrices = ivf._matrices(buffer, blocks[0])
    assert [m.shape for m in matrices] == [(g.stop - g.start, g.width) for g in blocks[0]]
    assert np.concatenate([m.ravel() for m in matrices]).tolist() == buffer.tolist()  # side by side, no overlap


def test_runs_cover_every_query_once_in_budget_and_keep_neighbours_together(monkeypatch):
    """Runs take each query once, sorted by width, within the budget; two far-apart clusters of queries, shuffled,
    come out in runs of one cluster each."""
    import sentflow.search.ivf as ivf

    rng = np.random.default_rng(7)
    points = np.concatenate([rng.normal(size=(64, 8)), rng.normal(size=(64, 8)) + 50])
    shuffled = rng.permutation(128)
    points, cluster = points[shuffled], shuffled >= 64
    widths = rng.integers(100, 200, 128)
    monkeypatch.setattr(ivf, "SCORE_BUDGET", 3000)
    runs = ivf._runs(points, widths)
    assert np.array_equal(np.sort(np.concatenate(runs)), np.arange(128))
    for run in runs:
        assert (np.diff(widths[run]) >= 0).all() and (widths[run].sum() * ivf.GROUP_SLACK <= ivf.SCORE_BUDGET)
    monkeypatch.setattr(ivf, "SCORE_BUDGET", 64 * 160 * ivf.GROUP_SLACK)  # room for one cluster at 160 a query
    runs = ivf._runs(points, np.full(128, 160))
    assert len(runs) == 2 and all(len(set(cluster[run])) == 1 for run in runs)
    monkeypatch.setattr(ivf, "SCORE_BUDGET", 1 << 30)
    assert [run.tolist() for run in ivf._runs(points, widths)] == [np.argsort(widths, kind="stable").tolist()]


@pytest.mark.parametrize("spec", ["binary", "int8", "itq:16"])
def test_probing_every_cell_with_every_candidate_is_the_exact_int8_ranking(spec):
    corpus, queries = clustered(1500), clustered(12, seed=2)
    index = CompactIndex.build(corpus, spec, lists=20)
    scores, rows = index.search(queries, 10, probes=20, candidates=1500)
    if index.rescorer is not None:
        decoded = index.rescorer.decode(np.asarray(index.rescore_codes)).astype(np.float64)
    else:  # int8 lists: the residual codes decode to vector - centroid
        decoded = index.quantizer.decode(index.codes) + index.lists.centroids[_cells(index)]
        decoded = decoded[np.argsort(index.lists.order)].astype(np.float64)
    brute = queries @ decoded.T
    np.testing.assert_array_equal(rows, np.argsort(-brute, axis=1, kind="stable")[:, :10])
    np.testing.assert_allclose(scores, np.take_along_axis(brute, rows, 1), atol=1e-4)


def _cells(index: CompactIndex) -> np.ndarray:
    """The cell of every slot, from the list offsets."""
    return np.repeat(np.arange(index.lists.lists), np.diff(index.lists.offsets))


def test_recall_rises_with_probes_to_exact_search_on_clustered_data():
    corpus, queries = clustered(6000, d=32), clustered(50, d=32, seed=3)
    truth = np.argsort(-(queries @ corpus.T), axis=1)[:, :10]
    index = CompactIndex.build(corpus, "none", lists=40)
    found = [recall(index.search(queries, 10, probes=p)[1], truth) for p in (1, 4, 40)]
    assert found[0] <= found[1] <= found[2] == 1.0
    assert found[1] >= 0.9  # clustered data: a few cells hold the neighbours


def test_a_saved_index_searches_identically_in_a_new_process(tmp_path):
    corpus, queries = clustered(2000), clustered(8, seed=4)
    index = CompactIndex.build(corpus, "binary", lists=12, ids=[f"doc{i}" for i in range(2000)])
    index.save(tmp_path / "ivf")
    manifest = json.loads((tmp_path / "ivf" / "index.json").read_text())
    assert manifest["lists"] == 12 and {"centroids", "list_offsets", "list_order"} <= set(manifest["files"])
    assert np.load(tmp_path / "ivf" / "list_order.npy").dtype == np.int64  # held as int32, saved as int64
    assert index.lists.order.dtype == np.int32 and CompactIndex.load(tmp_path / "ivf").lists.order.dtype == np.int32
    np.save(tmp_path / "q.npy", queries)
    script = (
        "import sys, json, numpy as np\n"
        "from sentflow.search.compact import CompactIndex\n"
        "index = CompactIndex.load(sys.argv[1])\n"
        "s, r = index.search(np.load(sys.argv[2]), 5, probes=3, candidates=30)\n"
        "print(json.dumps({'rows': r.tolist(), 'scores': s.tolist(), 'ids': [index.ids[i] for i in r[0]]}))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "ivf"), str(tmp_path / "q.npy")],
        capture_output=True,
        text=True,
        check=True,
    )
    loaded = json.loads(out.stdout)
    scores, rows = index.search(queries, 5, probes=3, candidates=30)
    assert rows.dtype == np.int64
    np.testing.assert_array_equal(loaded["rows"], rows)
    np.testing.assert_allclose(loaded["scores"], scores, rtol=1e-6)
    assert loaded["ids"] == [f"doc{i}" for i in rows[0]]


def test_spilled_rescoring_codes_are_the_in_memory_ones_and_leave_no_file(tmp_path):
    corpus, queries = clustered(1000), clustered(5, seed=5)
    spill = tmp_path / "spill"
    spill.mkdir()
    chunks = (corpus[s : s + 300] for s in range(0, 1000, 300))
    spilled = CompactIndex.build_chunks(chunks, corpus, "binary", lists=8, spill=spill)
    in_ram = CompactIndex.build(corpus, "binary", lists=8)
    assert isinstance(spilled.rescore_codes, np.memmap) and len(list(spill.iterdir())) == 1
    np.testing.assert_array_equal(np.asarray(spilled.rescore_codes), in_ram.rescore_codes)
    np.testing.assert_array_equal(spilled.search(queries, 5)[1], in_ram.search(queries, 5)[1])
    spilled.save(tmp_path / "a")
    in_ram.save(tmp_path / "b")
    assert (tmp_path / "a" / "rescore.npy").read_bytes() == (tmp_path / "b" / "rescore.npy").read_bytes()
    del spilled
    assert not list(spill.iterdir())


def test_a_damaged_list_file_is_refused(tmp_path):
    CompactIndex.build(clustered(500), "binary", lists=4).save(tmp_path / "ivf")
    order = tmp_path / "ivf" / "list_order.npy"
    np.save(order, np.zeros(500, np.int64))
    with pytest.raises(SentflowError, match="checksum mismatch"):
        CompactIndex.load(tmp_path / "ivf")


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda X: CompactIndex.build(X[:10], "binary", lists=16), "16 lists need at least as many vectors"),
        (lambda X: CompactIndex.build(X, "binary", lists=0), "lists must be a whole number from 1"),
        (lambda X: CompactIndex.build(X, "binary", lists=4, hnsw=True), "lists and hnsw"),
        (lambda X: CompactIndex.build(X, "binary").search(X[:2], 5, probes=2), "probes needs an index built with"),
        (lambda X: CompactIndex.build(X, "binary", lists=4).search(X[:2], 5, probes=0), "probes must be a whole"),
    ],
)
def test_bad_list_settings_get_one_line(call, message):
    with pytest.raises(SentflowError, match=message):
        call(clustered(300))


def test_assignment_in_blocks_is_the_nearest_centroid(monkeypatch):
    """Vectors are assigned a block at a time (here 7 rows, so blocks and a short tail): each goes to the centroid
    nearest in L2, as a numpy brute force finds it."""
    import sentflow.search.ivf as ivf

    monkeypatch.setattr(ivf, "ASSIGN_ROWS", 7)
    corpus, centroids = clustered(100), clustered(9, seed=2)
    nearest = np.argmin(((corpus[:, None, :] - centroids[None]) ** 2).sum(axis=2), axis=1)
    np.testing.assert_array_equal(ivf.assign(centroids, corpus), nearest)


@pytest.mark.parametrize(
    "order",
    [[0, 1, 1, 3], [0, 1, 2, 4], [-1, 1, 2, 3], [3, 2, 1]],
    ids=["repeated", "past the end", "negative", "one short"],
)
def test_a_slot_order_that_is_not_a_permutation_is_refused(order):
    from sentflow.search.ivf import InvertedLists

    centroids = clustered(2)
    InvertedLists(centroids, np.array([0, 2, 4]), np.array([3, 1, 0, 2]))  # a permutation loads
    with pytest.raises(SentflowError, match="name every row exactly once"):
        InvertedLists(centroids, np.array([0, 2, 4]), np.array(order))


def test_each_scored_column_maps_to_the_probe_that_holds_it():
    """Against the definition (the number of probes starting at or before the column, less one), with empty
    cells, cells starting at the same column and padding columns past the last cell."""
    from sentflow.search.ivf import _probe_of

    rng = np.random.default_rng(0)
    sizes = rng.integers(0, 4, size=(30, 6)) * rng.integers(0, 2, size=(30, 6))  # many empty cells
    starts = np.cumsum(sizes, axis=1) - sizes
    width = int(sizes.sum(axis=1).max()) + 3
    columns = rng.integers(0, width, size=(30, 8))
    expected = np.minimum((columns[:, :, None] >= starts[:, None, :]).sum(axis=2) - 1, sizes.shape[1] - 1)
    np.testing.assert_array_equal(_probe_of(columns, starts, width), expected)
