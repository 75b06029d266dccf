"""`sentflow index --lists / --ids` and `sentflow search --probes / --candidates / --vectors` on real files, in
subprocesses, against numpy brute force and the library."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from sentflow.search.compact import CompactIndex

COMMAND = [sys.executable, "-m", "sentflow.cli"]


def sentflow_cli(*args):
    return subprocess.run([*COMMAND, *map(str, args)], capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def vectors(tmp_path_factory):
    """Clustered unit vectors in a .npy file, query vectors in another, and an id a line."""
    folder = tmp_path_factory.mktemp("vectors")
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(12, 16))
    x = centres[rng.integers(0, 12, 900)] + 0.3 * rng.normal(size=(900, 16))
    x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    np.save(folder / "v.npy", x)
    np.save(folder / "q.npy", x[:4] + 0.01)
    (folder / "ids.txt").write_text("".join(f"doc-{i}\n" for i in range(900)), encoding="utf-8")
    return folder, x


def test_vectors_index_with_lists_and_every_probe_is_exact_search(vectors, tmp_path):
    folder, x = vectors
    out = tmp_path / "ivf"
    built = sentflow_cli(
        "index", folder / "v.npy", "--ids", folder / "ids.txt", "--out", out, "--quantize", "none", "--lists", 6
    )
    assert built.returncode == 0, built.stderr
    assert "6 lists" in built.stderr and "no pipeline recorded" in built.stderr
    manifest = json.loads((out / "index.json").read_text())
    assert manifest["lists"] == 6 and manifest["pipeline"] is None
    found = sentflow_cli("search", out, "--vectors", folder / "q.npy", "--probes", 6, "--k", 5, "--json")
    assert found.returncode == 0, found.stderr
    rows = json.loads(found.stdout)
    queries = np.load(folder / "q.npy")
    best = np.argsort(-(queries.astype(np.float64) @ x.T), axis=1)[:, :5]
    assert [[h["id"] for h in r["hits"]] for r in rows] == [[f"doc-{i}" for i in b] for b in best]
    np.testing.assert_allclose(
        [[h["score"] for h in r["hits"]] for r in rows], np.take_along_axis(queries @ x.T, best, 1), atol=1e-5
    )


def test_probes_and_candidates_reach_the_library_search(vectors, tmp_path):
    folder, x = vectors
    out = tmp_path / "bits"
    assert sentflow_cli("index", folder / "v.npy", "--out", out, "--quantize", "rabitq", "--lists", 8).returncode == 0
    found = sentflow_cli("search", out, "--vectors", folder / "q.npy", "--probes", 2, "--candidates", 20, "--json")
    assert found.returncode == 0, found.stderr
    index = CompactIndex.load(out)
    _, rows = index.search(np.load(folder / "q.npy"), 10, probes=2, candidates=20)
    assert [[h["id"] for h in r["hits"]] for r in json.loads(found.stdout)] == [[str(i) for i in r] for r in rows]


def test_a_vectors_index_refuses_query_texts_and_wrong_ids(vectors, tmp_path):
    folder, _ = vectors
    out = tmp_path / "v"
    assert sentflow_cli("index", folder / "v.npy", "--out", out).returncode == 0
    text = sentflow_cli("search", out, "a query text")
    assert text.returncode != 0 and "records no pipeline" in text.stderr.strip().splitlines()[-1]
    assert "Traceback" not in text.stderr
    (tmp_path / "short.txt").write_text("a\nb\n", encoding="utf-8")
    bad = sentflow_cli("index", folder / "v.npy", "--ids", tmp_path / "short.txt", "--out", tmp_path / "w")
    assert bad.returncode != 0 and "2 ids for 900 vectors" in bad.stderr.strip().splitlines()[-1]
    assert not (tmp_path / "w").exists() and not list(tmp_path.glob(".w*"))
    mixed = sentflow_cli("index", folder / "v.npy", "--out", tmp_path / "x", "--pooling", "cls")
    assert mixed.returncode != 0 and "indexed as given" in mixed.stderr
    probes = sentflow_cli("search", out, "--vectors", folder / "q.npy", "--probes", 3)
    assert probes.returncode != 0 and "probes needs an index built with lists" in probes.stderr


def test_a_text_corpus_indexes_with_lists_and_searches_with_probes(tiny_bert_dir, tmp_path):
    from conftest import WORDS
    from sentflow.cli.main import app
    from typer.testing import CliRunner

    rng = np.random.default_rng(1)
    lines = [" ".join(rng.choice(WORDS, size=rng.integers(3, 10))) for _ in range(200)]
    (tmp_path / "docs.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    found = {}
    for name, extra in (("flat", []), ("ivf", ["--lists", "4"])):
        args = ["index", tmp_path / "docs.txt", "--out", tmp_path / name, "--model", tiny_bert_dir, *extra]
        built = CliRunner().invoke(app, [*map(str, args), "--quantize", "none"])
        assert built.exit_code == 0, built.stderr
        probes = ["--probes", "4"] if extra else []
        result = CliRunner().invoke(app, ["search", str(tmp_path / name), lines[7], "--json", *probes])
        assert result.exit_code == 0, result.stderr
        found[name] = [(hit["id"], hit["score"]) for hit in json.loads(result.stdout)[0]["hits"]]
    # every cell probed: the exact float search, up to the rounding of <q, centroid> + <q, x - centroid>, which
    # may order a near-tie differently (the tiny model's vectors lie close together: most of its scores tie)
    (ivf_ids, ivf_scores), (flat_ids, flat_scores) = zip(*found["ivf"], strict=True), zip(*found["flat"], strict=True)
    np.testing.assert_allclose(ivf_scores, flat_scores, atol=1e-5)
    ties = np.abs(np.diff(flat_scores)) < 1e-5
    near_tie = np.concatenate([[False], ties]) | np.concatenate([ties, [False]])
    assert all(a == b or tied for a, b, tied in zip(ivf_ids, flat_ids, near_tie, strict=True))
