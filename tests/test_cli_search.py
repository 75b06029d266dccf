"""`sentflow index` / `sentflow search` on real files: every corpus layout, JSON output, the library's results,
resumable builds, and one-line refusals that leave nothing behind."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from conftest import WORDS
from sentflow.cli.main import app
from typer.testing import CliRunner

import sentflow
from sentflow.search.compact import CompactIndex
from sentflow.search.indexing import corpus_documents, search_index


def run(*args, columns: int | None = None):
    """The command run in-process (as the installed `sentflow` runs it): exit code, stdout and stderr."""
    env = {"COLUMNS": str(columns)} if columns else None
    result = CliRunner().invoke(app, list(map(str, args)), env=env)
    return SimpleNamespace(returncode=result.exit_code, stdout=result.stdout, stderr=result.stderr)


def test_the_installed_command_runs_index_and_search(corpus, pipeline_dir, tmp_path):
    folder, lines = corpus
    command = [sys.executable, "-m", "sentflow.cli"]
    built = subprocess.run(
        [*command, "index", folder / "docs.txt", "--pipeline", pipeline_dir, "--out", tmp_path / "i"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stderr
    found = subprocess.run([*command, "search", tmp_path / "i", lines[0], "--json"], capture_output=True, text=True)
    assert found.returncode == 0 and json.loads(found.stdout)[0]["hits"][0]["snippet"] == lines[0]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """A text corpus of 300 sentences over the tiny BERT's vocabulary, and a whitening pipeline fitted on it."""
    rng = np.random.default_rng(0)
    folder = tmp_path_factory.mktemp("corpus")
    lines = [" ".join(rng.choice(WORDS, size=rng.integers(3, 14))) for _ in range(300)]
    (folder / "docs.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder, lines


@pytest.fixture(scope="module")
def pipeline_dir(corpus, tiny_bert_dir):
    folder, lines = corpus
    encoder = sentflow.Encoder(str(tiny_bert_dir), cache=False, show_progress=False)
    whitening = sentflow.Whitening(n_components=24, power=0.0).fit(encoder.encode(lines))
    return sentflow.Pipeline(encoder, whitening, normalize=True).save(folder / "pipe")


def test_index_and_search_agree_with_the_library(corpus, pipeline_dir, tmp_path):
    folder, lines = corpus
    out = tmp_path / "idx"
    done = run("index", folder / "docs.txt", "--pipeline", pipeline_dir, "--quantize", "itq:16", "--out", out)
    assert done.returncode == 0, done.stderr
    assert "300 documents, itq:16, 2 B/doc in RAM, 24 B/doc on disk" in done.stderr
    vectors = sentflow.load(pipeline_dir).encode(lines)
    expected = CompactIndex.build(vectors, "itq:16", rescore=4)
    query = lines[7]
    found = run("search", out, query, "--k", "5", "--json")
    assert found.returncode == 0, found.stderr
    (row,) = json.loads(found.stdout)  # one shape: a list of one row per query, even for one query
    assert row["query"] == query
    hits = row["hits"]
    scores, rows = expected.search(sentflow.load(pipeline_dir).encode([query]), 5)
    assert [h["id"] for h in hits] == [str(r + 1) for r in rows[0]]  # ids are line numbers from 1
    np.testing.assert_allclose([h["score"] for h in hits], scores[0], atol=1e-5)
    assert hits[0]["snippet"] == lines[rows[0][0]]


def test_jsonl_and_beir_folders_are_corpora(tmp_path):
    records = [{"_id": "a", "title": "T", "text": "first\ndocument"}, {"_id": "b", "text": "second"}]
    (tmp_path / "corpus.jsonl").write_text("\n".join(json.dumps(r) for r in records) + "\n")
    assert list(corpus_documents(tmp_path / "corpus.jsonl")) == [("a", "T first\ndocument"), ("b", "second")]
    assert list(corpus_documents(tmp_path)) == list(corpus_documents(tmp_path / "corpus.jsonl"))


def test_the_table_fits_80_columns_and_queries_come_from_a_file(corpus, pipeline_dir, tmp_path):
    folder, lines = corpus
    out = tmp_path / "idx"
    assert (
        run("index", folder / "docs.txt", "--pipeline", pipeline_dir, "--out", out, "--quantize", "int8").returncode
        == 0
    )
    (tmp_path / "q.txt").write_text(f"{lines[1]}\n{lines[2]}\n")
    shown = run("search", out, "--queries", tmp_path / "q.txt", "--k", "3", columns=80)
    assert shown.returncode == 0, shown.stderr
    assert max(len(line) for line in shown.stdout.splitlines()) <= 80
    assert shown.stdout.count("│ 1 │") == 2
    both = json.loads(run("search", out, "--queries", tmp_path / "q.txt", "--json").stdout)
    assert [row["query"] for row in both] == lines[1:3]


def test_search_refuses_an_index_whose_pipeline_changed(corpus, pipeline_dir, tmp_path, tiny_bert_dir):
    folder, lines = corpus
    moved = tmp_path / "pipe"
    sentflow.load(pipeline_dir).save(moved)
    out = tmp_path / "idx"
    assert run("index", folder / "docs.txt", "--pipeline", moved, "--out", out).returncode == 0
    encoder = sentflow.Encoder(str(tiny_bert_dir), cache=False, show_progress=False)
    sentflow.Pipeline(
        encoder, sentflow.Whitening(n_components=24, power=0.0).fit(encoder.encode(lines[:150])), True
    ).save(moved)
    refused = run("search", out, "a man")
    assert refused.returncode == 1 and "fingerprint mismatch" in refused.stderr
    assert refused.stderr.strip().startswith("error:") and "Traceback" not in refused.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--quantize", "itq:64"], "64 bits is more than the 24 calibrated dimensions"),
        (["--quantize", "int3"], "unknown quantizer 'int3'"),
        (["--quantize", "itq:24", "EMPTY"], "the corpus is empty"),
    ],
)
def test_bad_index_options_get_one_line_and_no_output(corpus, pipeline_dir, tmp_path, args, message):
    folder, _ = corpus
    source = folder / "docs.txt"
    if "EMPTY" in args:
        args = [a for a in args if a != "EMPTY"]
        source = tmp_path / "empty.txt"
        source.write_text("")
    done = run("index", source, "--pipeline", pipeline_dir, "--out", tmp_path / "idx", *args)
    assert done.returncode == 1 and message in done.stderr, done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith("error:") and "Traceback" not in done.stderr
    assert not (tmp_path / "idx").exists() and not list(tmp_path.glob(".idx*"))


def test_too_few_documents_for_itq_and_bad_search_options(pipeline_dir, tmp_path):
    small = tmp_path / "small.txt"
    small.write_text("\n".join(["a man", "the dog", "a cat"]) + "\n")
    done = run("index", small, "--pipeline", pipeline_dir, "--out", tmp_path / "idx", "--quantize", "itq:8")
    assert done.returncode == 1 and "needs more corpus vectors than bits (3 <= 8)" in done.stderr
    assert run("index", small, "--pipeline", pipeline_dir, "--out", tmp_path / "idx").returncode == 0
    assert "--k" in run("search", tmp_path / "idx", "a man", "--k", "0").stderr
    assert "give one query text, --queries FILE or --vectors Q.npy" in run("search", tmp_path / "idx").stderr
    codes = tmp_path / "idx" / "codes.npy"
    codes.write_bytes(codes.read_bytes()[:-1])
    damaged = run("search", tmp_path / "idx", "a man")
    assert damaged.returncode == 1 and "codes.npy: checksum mismatch" in damaged.stderr


def test_an_index_directory_never_replaces_a_foreign_directory(corpus, pipeline_dir, tmp_path):
    folder, _ = corpus
    foreign = tmp_path / "photos"
    foreign.mkdir()
    (foreign / "holiday.jpg").write_bytes(b"precious")
    done = run("index", folder / "docs.txt", "--pipeline", pipeline_dir, "--out", foreign)
    assert done.returncode == 1 and "non-empty directory without index.json" in done.stderr
    assert (foreign / "holiday.jpg").read_bytes() == b"precious"


def test_the_library_search_returns_hits(corpus, pipeline_dir, tmp_path):
    folder, lines = corpus
    from sentflow.search.indexing import index_corpus

    index_corpus(
        folder / "docs.txt", tmp_path / "idx", sentflow.load(pipeline_dir), "binary", pipeline_dir=pipeline_dir
    )
    [hits] = search_index(tmp_path / "idx", [lines[3]], k=2)
    assert len(hits) == 2 and hits[0].snippet == lines[int(hits[0].id) - 1]
    with pytest.raises(sentflow.SentflowError, match="list of strings"):
        search_index(tmp_path / "idx", "one string")


@pytest.mark.parametrize("kind", ["corpus", "vectors"])
def test_builds_spill_their_rescoring_codes_privately(corpus, pipeline_dir, tmp_path, kind, monkeypatch):
    from sentflow.search import compact
    from sentflow.search.indexing import index_corpus, index_vectors

    folder, lines = corpus
    pipeline = sentflow.load(pipeline_dir)
    vectors = pipeline.encode(lines)
    np.save(tmp_path / "vectors.npy", vectors)
    spills, real = [], compact._CodeSink.__init__

    def spy(self, spill, width):
        spills.append(spill)
        real(self, spill, width)

    monkeypatch.setattr(compact._CodeSink, "__init__", spy)
    out = tmp_path / "out" / "idx"
    if kind == "corpus":
        index = index_corpus(folder / "docs.txt", out, pipeline, "binary", rescore=4)
    else:
        index = index_vectors(tmp_path / "vectors.npy", out, quantize="binary", rescore=4)
    [spill] = spills  # the int8 codes went to a file in the build's own directory beside the output, not to RAM
    assert spill is not None and Path(spill).parent == out.parent
    assert Path(spill).name.startswith(".idx.sentflow-build-")
    assert sorted(p.name for p in out.parent.iterdir()) == ["idx"]  # and left with it
    monkeypatch.setattr(compact._CodeSink, "__init__", real)
    expected = compact.CompactIndex.build(vectors, "binary", 4, [str(i + 1) for i in range(len(lines))])
    assert index.search(vectors[:5], 3)[1].tolist() == expected.search(vectors[:5], 3)[1].tolist()


def test_eval_retrieval_measures_compact_codes_beside_the_baselines(tmp_path):
    records = [{"_id": f"d{i}", "text": " ".join(np.random.default_rng(i).choice(WORDS, 8))} for i in range(120)]
    (tmp_path / "corpus.jsonl").write_text("\n".join(json.dumps(r) for r in records) + "\n")
    queries = [{"_id": f"q{i}", "text": records[i]["text"]} for i in range(20)]
    (tmp_path / "queries.jsonl").write_text("\n".join(json.dumps(q) for q in queries) + "\n")
    (tmp_path / "qrels").mkdir()
    (tmp_path / "qrels" / "test.tsv").write_text("".join(f"q{i}\td{i}\t1\n" for i in range(20)))
    args = ["eval", "retrieval", tmp_path, "--methods", "none", "--approx-index", "", "--json", "--baselines"]
    done = run(*args, "--quantize", "int8,binary,itq:16", "--rescore", "3")
    assert done.returncode == 0, done.stderr
    rows = [r for r in json.loads(done.stdout)["results"] if "quantize" in r]
    keys = {"method", "dim", "quantize", "ram_bytes_per_doc", "disk_bytes_per_doc", "ndcg@10", "recall@100", "qps"}
    assert all(keys <= row.keys() for row in rows)
    ours = {r["quantize"]: r for r in rows if r["baseline"] is None}
    assert (
        ours["int8"]["ram_bytes_per_doc"],
        ours["binary"]["ram_bytes_per_doc"],
        ours["itq:16"]["ram_bytes_per_doc"],
    ) == (
        384,
        48,
        2,
    )
    assert {"st-ubinary-rescore", "st-int8", "faiss-sq8", "faiss-binary"} <= {r["baseline"] for r in rows}
    assert "unknown quantizer 'int2'" in run(*args, "--quantize", "int2").stderr
