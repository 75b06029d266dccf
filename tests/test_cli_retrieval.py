"""`sentflow eval retrieval` end to end: JSON keys, agreement with the library, and one-line errors."""

from __future__ import annotations

import json

from sentflow.cli.main import app
from typer.testing import CliRunner

import sentflow
from sentflow.evaluation.retrieval import evaluate_retrieval

REQUIRED = {"method", "dim", "ndcg@10", "mrr@10", "recall@1", "recall@10", "recall@100", "index_bytes", "qps"}


def run(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def test_eval_retrieval_json_matches_the_library(tiny_bert_dir, stsb_slice_dir):
    args = ["eval", "retrieval", "sts-b", "--model", tiny_bert_dir, "--data-dir", stsb_slice_dir, "--dims", "16,8"]
    result = run(*args, "--approx-index", "", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert {"task", "model", "pooling", "n_queries", "n_corpus", "results"} <= set(report)
    assert [(r["method"], r["dim"]) for r in report["results"]] == [
        ("none", 32), ("whitening", 16), ("whitening", 8), ("pca", 16), ("pca", 8)
    ]  # fmt: skip
    assert all(set(row) >= REQUIRED for row in report["results"])
    encoder = sentflow.Encoder(str(tiny_bert_dir), cache=False)
    expected = evaluate_retrieval(encoder, "sts-b", dims=(16, 8), approx_index=None, data_dir=stsb_slice_dir)
    for row, want in zip(report["results"], expected.to_dict()["results"], strict=True):
        assert {k: row[k] for k in ("ndcg@10", "recall@100")} == {k: want[k] for k in ("ndcg@10", "recall@100")}


def test_eval_retrieval_errors_are_one_line(tiny_bert_dir, stsb_slice_dir, tmp_path):
    base = ["eval", "retrieval", "--model", tiny_bert_dir]
    cases = [
        ([*base, "sts-b", "--data-dir", stsb_slice_dir, "--dims", "64"], "64"),
        ([*base, "sts-b", "--dims", "x"], "--dims must be comma-separated whole numbers"),
        ([*base], "eval retrieval needs a task"),
        ([*base, tmp_path], "corpus.jsonl"),
        (["eval", "sts-b", "extra"], "only `eval retrieval TASK` takes two"),
    ]
    for args, message in cases:
        result = run(*args)
        assert result.exit_code == 1, result.output
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], result.stderr
