"""`sentflow eval retrieval` end to end: JSON keys, agreement with the library, and one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
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
        ([*base, tmp_path], "corpus.jsonl"),
        ([*base, "sts-b", "--methods", ",,"], "',,' names nothing"),
    ]
    for args, message in cases:
        result = run(*args)
        assert result.exit_code == 1, result.output
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["eval", "retrieval", "sts-b", "--dim", "128"], "No such option: --dim (Possible options: --dims)"),
        (["eval", "sts-b", "--dims", "128"], "No such option: --dims"),
        (["eval", "sts-b", "--split", "dev"], "No such option: --split"),
        (["eval", "sts", "sts-b", "--quantize", "int8"], "No such option: --quantize"),
        (["eval", "retrieval"], "Missing argument 'task'"),
        (["eval", "sts-b", "extra"], "unexpected extra argument(s) (extra)"),
    ],
)
def test_each_evaluation_takes_only_its_own_options(args, message):
    done = subprocess.run([sys.executable, "-m", "sentflow.cli", *args], capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and message in done.stderr, done.stderr
    assert done.stderr.strip().startswith("error:") and "Traceback" not in done.stderr


def test_eval_sts_b_is_short_for_eval_sts(tiny_bert_dir, stsb_slice_dir):
    common = ["--model", tiny_bert_dir, "--data-dir", stsb_slice_dir, "--json"]
    short, long = run("eval", "sts-b", *common), run("eval", "sts", "sts-b", *common)
    assert short.exit_code == long.exit_code == 0, short.output
    drop = ("fit_seconds",)
    rows = [
        [{k: v for k, v in r.items() if k not in drop} for r in json.loads(x.stdout)["results"]] for x in (short, long)
    ]
    assert rows[0] == rows[1]


def test_the_retrieval_table_is_readable_at_80_columns(tiny_bert_dir, stsb_slice_dir):
    args = ["eval", "retrieval", "sts-b", "--model", str(tiny_bert_dir), "--data-dir", str(stsb_slice_dir)]
    args += ["--methods", "none,whitening,pca", "--dims", "16"]
    narrow = CliRunner().invoke(app, args, env={"COLUMNS": "80"})
    assert narrow.exit_code == 0, narrow.output
    table = narrow.stdout.splitlines()
    assert max(len(line) for line in table) <= 80 and "…" not in narrow.stdout
    assert "nDCG@10" in narrow.stdout and "whitening" in narrow.stdout and "MRR@10" not in narrow.stdout
    wide = CliRunner().invoke(app, [*args, "--wide"], env={"COLUMNS": "160"})
    assert wide.exit_code == 0 and "MRR@10" in wide.stdout and "…" not in wide.stdout


def test_eval_retrieval_candidates_set_the_stage_one_budget(tiny_bert_dir, stsb_slice_dir):
    args = ["eval", "retrieval", "sts-b", "--model", tiny_bert_dir, "--data-dir", stsb_slice_dir, "--methods", "none"]
    result = run(*args, "--approx-index", "", "--quantize", "int8,rabitq", "--candidates", "20", "--json")
    assert result.exit_code == 0, result.output
    rows = [r for r in json.loads(result.stdout)["results"] if "quantize" in r]
    assert [(r["quantize"], r["k"], r["candidates"]) for r in rows] == [("int8", 10, None), ("rabitq", 10, 20)]
    done = subprocess.run(
        [sys.executable, "-m", "sentflow.cli", *args, "--candidates", "0"], capture_output=True, text=True, timeout=120
    )
    assert done.returncode != 0 and "--candidates" in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith("error:")
