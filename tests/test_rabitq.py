"""RaBitQ codes and the inner-product estimates of sign codes: the estimator against brute-force inner products
(unbiased over random rotations, inside the paper's error bound, equal to the formula computed by hand), spec
parsing, damaged codes, and save/load round trips read back in a new process."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest

from sentflow import SentflowError
from sentflow.search.quantize import (
    DEFAULT_CANDIDATES,
    check_quantizer,
    load_quantizer,
    make_quantizer,
    stage1_candidates,
)
from sentflow.search.rabitq import FACTOR_BYTES, RaBitQuantizer, random_rotation


def unit_rows(n: int, d: int, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, d))
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def by_hand(quantizer, queries: np.ndarray, vectors: np.ndarray, anchors: np.ndarray | None = None) -> np.ndarray:
    """RaBitQ's estimate in float64 from its definition, around anchors a (default: the fitted mean):
    <q, a> + <a, x - a> + ||y|| <ō, (q - a) P> / <ō, ŷ>, y = (x - a) P."""
    anchors = np.broadcast_to(quantizer.mean_, vectors.shape) if anchors is None else anchors
    y = (vectors - anchors) @ quantizer.projection_
    o_bar = np.where(y > 0, 1.0, -1.0) / math.sqrt(y.shape[1])
    y_hat = y / np.linalg.norm(y, axis=1, keepdims=True)
    centred = queries @ quantizer.projection_ @ o_bar.T - ((anchors @ quantizer.projection_) * o_bar).sum(axis=1)
    ratio = centred / (o_bar * y_hat).sum(axis=1)
    exact = queries @ anchors.T + ((vectors - anchors) * anchors).sum(axis=1)
    return exact + ratio * np.linalg.norm(y, axis=1)


@pytest.mark.parametrize("spec", ["rabitq", "rabitq:24", "rabitq:13"])
def test_scores_are_the_estimator_of_the_paper(spec):
    corpus, queries = unit_rows(500, 40), unit_rows(9, 40, seed=1)
    quantizer = make_quantizer(spec).fit(corpus)
    codes = quantizer.encode(corpus)
    assert codes.shape == (500, quantizer.code_bytes) and codes.dtype == np.uint8
    np.testing.assert_allclose(quantizer.scores(queries, codes), by_hand(quantizer, queries, corpus), atol=2e-5)


def test_the_estimate_is_unbiased_over_random_rotations():
    corpus, queries = unit_rows(200, 32), unit_rows(3, 32, seed=1)
    truth = queries @ corpus[:5].T
    estimates = []
    for seed in range(300):
        quantizer = make_quantizer("rabitq", seed=seed).fit(corpus)
        estimates.append(quantizer.scores(queries, quantizer.encode(corpus[:5])))
    estimates = np.array(estimates)
    standard_error = estimates.std(axis=0) / math.sqrt(len(estimates))
    assert (np.abs(estimates.mean(axis=0) - truth) < 4.5 * standard_error + 1e-6).all()
    assert (estimates.std(axis=0) > 0.01).all()  # the estimate is random: the check above has teeth


def shared_direction(n: int, d: int, seed: int = 0) -> np.ndarray:
    """Unit vectors that share a large common direction, as sentence vectors do (anisotropy)."""
    x = unit_rows(n, d, seed) + 1.5 * unit_rows(1, d, seed=99)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_the_error_stays_inside_the_papers_bound():
    """|est - <y, q'>| <= ||y|| ||q'|| sqrt((1 - <ō,ŷ>²) / <ō,ŷ>²) · ε0 / sqrt(B - 1) (Gao & Long, SIGMOD 2024)
    fails with a probability falling as exp(-c ε0²): the scale is a standard deviation, so about 94% of pairs
    lie inside at the paper's ε0 = 1.9, 99% at 3, and fewer than half at 0.5 (the bound is not loose).
    q' = (q - c) P is the query centred like the vectors: on data with a common direction the bound is far
    tighter than with q P, so an estimator that did not centre the query would fail it."""
    corpus, queries = shared_direction(2000, 128), shared_direction(20, 128, seed=1)
    quantizer = make_quantizer("rabitq", seed=3).fit(corpus)
    y = (corpus - quantizer.mean_) @ quantizer.projection_
    rotated = (queries - quantizer.mean_) @ quantizer.projection_
    assert np.linalg.norm(rotated, axis=1).max() < 0.7  # the common direction is most of each query
    error = quantizer.scores(queries, quantizer.encode(corpus)) - queries @ corpus.T
    cosine = np.abs(y).sum(axis=1) / (math.sqrt(128) * np.linalg.norm(y, axis=1))  # <ō, ŷ>
    scale = np.sqrt((1 - cosine**2) / cosine**2) / math.sqrt(127)
    scale = scale[None, :] * np.linalg.norm(y, axis=1)[None, :] * np.linalg.norm(rotated, axis=1)[:, None]
    inside = {eps: float((np.abs(error) <= eps * scale).mean()) for eps in (0.5, 1.9, 3.0)}
    assert inside[0.5] < 0.5 and inside[1.9] >= 0.9 and inside[3.0] >= 0.99, inside
    assert np.abs(error).max() > 0.01  # a 1-bit code does err


def test_a_cut_that_keeps_every_direction_of_the_data_loses_nothing():
    rng = np.random.default_rng(0)
    corpus = rng.standard_normal((400, 6)) @ rng.standard_normal((6, 30))  # rank 6 in 30 dimensions
    queries = rng.standard_normal((5, 30))
    truth = queries @ corpus.T
    estimates = []
    for seed in range(200):
        quantizer = make_quantizer("rabitq:6", seed=seed).fit(corpus)
        estimates.append(quantizer.scores(queries, quantizer.encode(corpus[:4])))
    mean = np.array(estimates).mean(axis=0)
    spread = np.array(estimates).std(axis=0) / math.sqrt(200)
    assert (np.abs(mean - truth[:, :4]) < 4.5 * spread + 1e-6).all()


@pytest.mark.parametrize("spec", ["binary", "itq:16", "pca:16"])
def test_sign_scores_rank_by_the_float_query_against_the_plus_minus_one_code(spec):
    corpus, queries = unit_rows(300, 24), unit_rows(6, 24, seed=1)
    quantizer = make_quantizer(spec).fit(corpus)
    projected = quantizer.project(corpus)
    rotated = quantizer.project(queries) if spec == "binary" else queries @ quantizer.projection_
    offset = 0.0 if spec == "binary" else (queries @ quantizer.mean_)[:, None]
    bits = projected.shape[1]
    expected = offset + math.sqrt(math.pi / (2 * bits)) * rotated @ np.where(projected > 0, 1.0, -1.0).T
    np.testing.assert_allclose(quantizer.scores(queries, quantizer.encode(corpus)), expected, atol=2e-5)


def test_random_rotation_is_orthogonal_and_seeded():
    rotation = random_rotation(17, seed=5)
    np.testing.assert_allclose(rotation @ rotation.T, np.eye(17), atol=1e-12)
    np.testing.assert_array_equal(rotation, random_rotation(17, seed=5))
    assert not np.allclose(rotation, random_rotation(17, seed=6))


@pytest.mark.parametrize(
    ("spec", "name", "code_bytes"),
    [("rabitq", "rabitq", 48 + FACTOR_BYTES), (" RaBitQ:128 ", "rabitq:128", 16 + 8), ("rabitq:13", "rabitq:13", 10)],
)
def test_spec_parsing(spec, name, code_bytes):
    quantizer = make_quantizer(spec)
    assert isinstance(quantizer, RaBitQuantizer) and quantizer.spec == name
    quantizer.fit(unit_rows(400, 384))
    assert quantizer.code_bytes == code_bytes


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("rabitq:0", "'0' is not a whole number from 1 to"),
        ("rabitq:1.5", "'1.5' is not a whole number"),
        ("rabitq:", "'' is not a whole number"),
        ("rabitq:99999999999", "not a whole number from 1 to"),
        ("rabitqs", "unknown quantizer"),
    ],
)
def test_bad_specs_are_one_line_errors(spec, message):
    with pytest.raises(SentflowError, match=message):
        make_quantizer(spec)


def test_fitting_checks_happen_before_any_work():
    with pytest.raises(SentflowError, match="500 bits is more than the 384"):
        check_quantizer("rabitq:500", 384, 10_000)
    with pytest.raises(SentflowError, match="more corpus vectors than bits \\(64 <= 64\\)"):
        check_quantizer("rabitq:64", 384, 64)
    assert check_quantizer("rabitq", 384, 2).spec == "rabitq"  # no cut: any corpus fits


def test_damaged_codes_are_refused():
    quantizer = make_quantizer("rabitq").fit(unit_rows(50, 16))
    codes = quantizer.encode(unit_rows(4, 16, seed=1))
    with pytest.raises(SentflowError, match=r"uint8 of shape \(n, 10\)"):
        quantizer.scores(unit_rows(1, 16), codes[:, :5])
    codes[2, -FACTOR_BYTES:-4] = np.frombuffer(np.float32(np.nan).tobytes(), np.uint8)
    with pytest.raises(SentflowError, match="non-finite correction factor"):
        quantizer.scores(unit_rows(1, 16), codes)
    with pytest.raises(SentflowError, match="queries have 15 dimensions but the rabitq codes were fitted on 16"):
        quantizer.scores(unit_rows(1, 15), codes[:2])


def test_a_vector_at_the_mean_scores_the_query_against_the_mean():
    corpus = unit_rows(30, 8)
    quantizer = make_quantizer("rabitq").fit(corpus)
    codes = quantizer.encode(quantizer.mean_[None, :])
    query = unit_rows(1, 8, seed=2)
    np.testing.assert_allclose(quantizer.scores(query, codes), query @ quantizer.mean_[:, None], atol=1e-6)


@pytest.mark.parametrize("spec", ["rabitq", "rabitq:12"])
def test_a_saved_quantizer_scores_identically_in_a_new_process(spec, tmp_path):
    corpus, queries = unit_rows(200, 20), unit_rows(3, 20, seed=1)
    quantizer = make_quantizer(spec, seed=7).fit(corpus)
    quantizer.save(tmp_path / "q.safetensors")
    np.save(tmp_path / "corpus.npy", corpus)
    np.save(tmp_path / "queries.npy", queries)
    script = (
        "import json, sys, numpy as np\n"
        "from sentflow.search.quantize import load_quantizer\n"
        "d = sys.argv[1]\n"
        "q = load_quantizer(d + '/q.safetensors')\n"
        "codes = q.encode(np.load(d + '/corpus.npy'))\n"
        "np.save(d + '/codes.npy', codes)\n"
        "np.save(d + '/scores.npy', q.scores(np.load(d + '/queries.npy'), codes))\n"
        "print(json.dumps({'spec': q.spec, 'bytes': q.code_bytes}))\n"
    )
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"spec": quantizer.spec, "bytes": quantizer.code_bytes}
    codes = np.load(tmp_path / "codes.npy", allow_pickle=False)
    np.testing.assert_array_equal(codes, quantizer.encode(corpus))
    np.testing.assert_array_equal(np.load(tmp_path / "scores.npy"), quantizer.scores(queries, codes))
    assert load_quantizer(tmp_path / "q.safetensors").spec == quantizer.spec


def test_a_quantizer_file_with_the_wrong_shapes_is_refused(tmp_path):
    import torch

    from sentflow.files.io import save_tensors

    wider = make_quantizer("rabitq:5").fit(unit_rows(50, 12))
    tensors = {k: torch.from_numpy(v) for k, v in wider._tensors().items()}
    save_tensors(tmp_path / "q.safetensors", tensors, {"spec": "rabitq:4", "dim": 12})
    with pytest.raises(SentflowError, match="do not match a rabitq:4 quantizer of 12 dims"):
        load_quantizer(tmp_path / "q.safetensors")


@pytest.mark.parametrize(
    ("k", "candidates", "rows", "rescore", "budget"),
    [
        (10, None, 5000, 4, DEFAULT_CANDIDATES),
        (100, None, 5000, 4, 400),
        (10, None, 30, 4, 30),
        (10, 3, 5000, 4, 10),
        (10, 250, 5000, 4, 250),
    ],
)
def test_stage_one_budget(k, candidates, rows, rescore, budget):
    assert stage1_candidates(k, candidates, rows, rescore) == budget


@pytest.mark.parametrize("candidates", [0, -1, 2.5, True, "10"])
def test_a_bad_budget_is_refused(candidates):
    with pytest.raises(SentflowError, match="candidates must be a whole number >= 1"):
        stage1_candidates(10, candidates, 100)


@pytest.mark.parametrize("spec", ["rabitq", "rabitq:16"])
def test_codes_around_anchors_are_the_estimator_around_them(spec):
    """An inverted file codes each vector around its cell's centroid: the estimate (with <q, anchor> given, as the
    inverted file has it from probing) is the paper's estimator around that anchor, and for the exact inner
    product it errs less than the same codes around the corpus mean when the anchor is near the vectors."""
    corpus, queries = shared_direction(600, 32), shared_direction(7, 32, seed=1)
    quantizer = make_quantizer(spec).fit(corpus - corpus.mean(axis=0))
    anchor = corpus[:300].mean(axis=0)
    codes = quantizer.encode_around(corpus[:300], np.broadcast_to(anchor, (300, 32)))
    prepared = quantizer.prepare(queries)
    estimate = quantizer.scores_around(prepared, codes, quantizer.prepare_anchors(anchor), queries @ anchor)
    hand = by_hand(quantizer, queries, corpus[:300], np.broadcast_to(anchor, (300, 32)))
    np.testing.assert_allclose(estimate, hand, atol=3e-5)


@pytest.mark.parametrize("lookups", [1, 300, 1 << 20])
@pytest.mark.parametrize("most_queries", [1, 9])
@pytest.mark.parametrize("cell_codes", [5, 64, 10_000])
def test_batched_visits_score_as_each_cell_alone(cell_codes, most_queries, lookups, monkeypatch):
    """An inverted file hands RaBitQ many (queries, cell) visits at once; padded into batches of any size (one
    cell each, a few, all), every visit's scores are those of `scores_around` on that cell alone, whether the
    batch is scored by unpacked bits or (one query a cell) by byte tables."""
    import sentflow.search.codes as codes_module
    from sentflow.search.codes import Visit

    monkeypatch.setattr(codes_module, "CELL_CODES", cell_codes)
    monkeypatch.setattr("sentflow.search.rabitq.TABLE_VISITS", 2)  # byte tables for a few visits at a time
    monkeypatch.setattr("sentflow.search.rabitq.LOOKUP_BUDGET", lookups)  # or for a cell alone, or ~one cell
    rng = np.random.default_rng(3)
    corpus, queries = shared_direction(400, 32), shared_direction(9, 32, seed=1)
    quantizer = make_quantizer("rabitq").fit(corpus)
    cells = rng.integers(0, 6, 400)
    order = np.argsort(cells, kind="stable")
    centroids = np.stack([corpus[cells == c].mean(axis=0) for c in range(6)])
    codes = quantizer.encode_around(corpus[order], centroids[cells[order]])
    offsets = np.searchsorted(cells[order], np.arange(7))
    prepared, anchors = quantizer.prepare(queries), quantizer.prepare_anchors(centroids)
    visits = [
        Visit(rows, (queries[rows] @ centroids[c]).astype(np.float32), c, int(offsets[c]), int(offsets[c + 1]))
        for c in range(6)
        for rows in [np.sort(rng.choice(9, size=rng.integers(1, most_queries + 1), replace=False))]
    ]
    for visit, batched in zip(visits, quantizer.scores_visits(prepared, codes, anchors, visits), strict=True):
        alone = quantizer.scores_around(
            prepared[visit.rows], codes[visit.low : visit.high], anchors[visit.cell], visit.dots
        )
        assert batched.shape == alone.shape == (len(visit.rows), visit.high - visit.low)
        np.testing.assert_allclose(batched, alone, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("budget", [1, 50, 400, 10_000])
def test_lookup_parts_keep_order_and_both_budgets(budget, monkeypatch):
    """One-query visits are cut into consecutive runs of at most TABLE_VISITS visits and LOOKUP_BUDGET byte lookups,
    a visit over the budget alone."""
    from sentflow.search.codes import Visit
    from sentflow.search.rabitq import _lookup_parts

    monkeypatch.setattr("sentflow.search.rabitq.LOOKUP_BUDGET", budget)
    monkeypatch.setattr("sentflow.search.rabitq.TABLE_VISITS", 7)
    sizes = np.random.default_rng(4).integers(1, 60, 40)
    lows = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    one = (np.array([0]), np.zeros(1, np.float32))
    spans = enumerate(zip(lows, sizes, strict=True))
    visits = [Visit(*one, cell, int(low), int(low + size)) for cell, (low, size) in spans]
    parts = list(_lookup_parts(visits, 6))
    assert [visit.cell for part in parts for visit in part] == list(range(40))
    for part, following in zip(parts, [*parts[1:], None], strict=True):
        lookups = 6 * sum(visit.high - visit.low for visit in part)
        assert 1 <= len(part) <= 7 and (lookups <= budget or len(part) == 1)
        if following is not None and len(part) < 7:  # cut only where the next visit would pass the budget
            assert lookups + 6 * (following[0].high - following[0].low) > budget


@pytest.mark.parametrize("n_bits", [8, 13, 384])
def test_byte_tables_sum_to_the_dot_with_the_unpacked_bits(n_bits):
    """Summing a query's byte tables at a code's bytes gives <r, b> for the unpacked bits b (packbits order)."""
    from sentflow.search.codes import byte_tables

    rng = np.random.default_rng(5)
    rotated = rng.standard_normal((3, n_bits)).astype(np.float32)
    packed = np.packbits(rng.integers(0, 2, (50, n_bits)).astype(bool), axis=1)
    tables = byte_tables(rotated)
    assert tables.shape == (3, packed.shape[1], 256)
    looked_up = tables[:, np.arange(packed.shape[1]), packed].sum(axis=2)
    brute = rotated @ np.unpackbits(packed, axis=1, count=n_bits).T.astype(np.float64)
    np.testing.assert_allclose(looked_up, brute, rtol=1e-5, atol=1e-4)
