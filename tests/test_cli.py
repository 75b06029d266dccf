"""The command line end to end on real files: STS-B slices, a tiny BERT, and every bad input."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from scipy.stats import spearmanr
from sentflow.cli.main import app
from sklearn.decomposition import PCA
from typer.testing import CliRunner

import sentflow

runner = CliRunner()


def run(*args: str):
    return runner.invoke(app, [str(a) for a in args])


def assert_user_error(result, message: str) -> None:
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], result.stderr


@pytest.fixture()
def sentences(tmp_path, stsb_slice_dir):
    path = tmp_path / "sentences.txt"
    pairs = sentflow.load_sts("sts-b", "train", stsb_slice_dir)
    path.write_text("\n".join(pairs.sentences) + "\n", encoding="utf-8")
    return path


def test_encode_fit_transform_pipeline(tmp_path, tiny_bert_dir, sentences):
    emb, calib, out = tmp_path / "emb.npy", tmp_path / "calib.safetensors", tmp_path / "out.npy"
    model = ["--model", tiny_bert_dir, "--pooling", "first-last-avg"]
    assert run("encode", sentences, "--out", emb, *model).exit_code == 0
    X = np.load(emb, allow_pickle=False)
    assert X.shape == (240, 32) and X.dtype == np.float32
    assert run("fit", "--method", "whitening", "--data", sentences, "--dim", 8, "--out", calib, *model).exit_code == 0
    result = run("transform", emb, "--calib", calib, "--out", out)
    assert result.exit_code == 0, result.output
    expected = sentflow.Whitening(n_components=8).fit(X).transform(X)
    np.testing.assert_allclose(np.load(out), expected, rtol=1e-4, atol=1e-4)
    assert sentflow.load(calib).fitted_for_ == {"model": str(tiny_bert_dir), "pooling": "first-last-avg"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["calib.safetensors", "emb.npy", "out.npy", "sentences.txt"]
    assert out.stat().st_mode & 0o777 == sentences.stat().st_mode & 0o777  # same permissions as a plain write


def test_fit_from_npy_matches_library(tmp_path):
    X = np.random.default_rng(0).standard_normal((300, 12)).astype(np.float32)
    np.save(tmp_path / "x.npy", X)
    calib = tmp_path / "c.safetensors"
    assert run("fit", "--data", tmp_path / "x.npy", "--power", 0.25, "--out", calib).exit_code == 0
    np.testing.assert_allclose(sentflow.load(calib).transform(X), sentflow.Whitening(power=0.25).fit(X).transform(X))


def test_eval_json_on_an_stsb_slice(stsb_slice_dir):
    """The real embedded model on real STS-B lines, checked against scikit-learn's PCA and scipy's Spearman."""
    args = ["--pooling", "first-last-avg", "--methods", "none,whitening", "--dim", 64, "--fit-on", "train"]
    result = run("eval", "sts-b", *args, "--data-dir", stsb_slice_dir, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert set(report) >= {"task", "model", "pooling", "results"}
    rows = {r["method"]: r for r in report["results"]}
    assert rows["none"]["dim"] == 384 and rows["whitening"]["dim"] == 64
    assert set(rows["whitening"]) == {"method", "dim", "spearman", "pearson", "fit_seconds"}
    encoder = sentflow.Encoder(pooling="first-last-avg", cache=False)
    train, test = (sentflow.load_sts("sts-b", s, stsb_slice_dir) for s in ("train", "test"))
    a, b = (encoder.encode(side).astype(np.float64) for side in (test.sentences1, test.sentences2))
    assert rows["none"]["spearman"] == pytest.approx(100 * spearmanr(cosines(a, b), test.scores).statistic, abs=1e-3)
    pca = PCA(n_components=64, whiten=True, svd_solver="full").fit(encoder.encode(train.sentences).astype(np.float64))
    whitened = 100 * spearmanr(cosines(pca.transform(a), pca.transform(b)), test.scores).statistic
    assert rows["whitening"]["spearman"] == pytest.approx(whitened, abs=0.05)


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def test_flow_fit_and_eval(tmp_path, tiny_bert_dir, stsb_slice_dir):
    X = np.random.default_rng(3).standard_normal((400, 6)).astype(np.float32)
    np.save(tmp_path / "x.npy", X)
    calib = tmp_path / "flow.safetensors"
    args = ["--levels", 2, "--depth", 2, "--hidden", 8, "--epochs", 2, "--lr", 1e-3, "--seed", 1]
    assert run("fit", "--method", "flow", "--data", tmp_path / "x.npy", "--out", calib, *args).exit_code == 0
    expected = sentflow.BertFlow(levels=2, depth=2, hidden=8, epochs=2, seed=1).fit(X).transform(X)
    np.testing.assert_array_equal(sentflow.load(calib).transform(X), expected)
    result = run(
        "eval",
        "sts-b",
        "--model",
        tiny_bert_dir,
        "--data-dir",
        stsb_slice_dir,
        "--methods",
        "none,whitening,flow",
        "--levels",
        2,
        "--depth",
        1,
        "--json",
    )
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)["results"]
    assert [r["method"] for r in rows] == ["none", "whitening", "flow"]
    assert rows[2]["dim"] == 32 and rows[2]["fit_seconds"] > 0


def test_eval_table_is_printed(tiny_bert_dir, stsb_slice_dir):
    result = run("eval", "sts-b", "--model", tiny_bert_dir, "--data-dir", stsb_slice_dir, "--dim", 8)
    assert result.exit_code == 0, result.output
    assert "whitening" in result.stdout and "Spearman" in result.stdout


def bad_npy(tmp_path, name: str, array) -> str:
    path = tmp_path / name
    np.save(path, np.asarray(array), allow_pickle=False)
    return str(path)


def test_bad_inputs_give_one_line_errors_and_no_output(tmp_path, tiny_bert_dir):
    out = tmp_path / "out.safetensors"
    rng = np.random.default_rng(1)
    nan = rng.standard_normal((50, 4))
    nan[7, 1] = np.inf
    not_npy = tmp_path / "text.npy"
    not_npy.write_text("hello")
    cases = [
        (["encode", tmp_path / "missing.txt", "--out", out, "--model", tiny_bert_dir], "missing.txt: no such file"),
        (["fit", "--data", not_npy, "--out", out], "text.npy: not a readable .npy array"),
        (
            ["fit", "--data", bad_npy(tmp_path, "nan.npy", nan), "--out", out],
            "NaN or Inf values (1 rows, first at row 7)",
        ),
        (["fit", "--data", bad_npy(tmp_path, "few.npy", nan[:3]), "--out", out], "fewer sentences (3) than dimensions"),
        (["fit", "--data", bad_npy(tmp_path, "ok.npy", nan[:6]), "--dim", 9, "--out", out], "--dim 9: larger than"),
        (["fit", "--method", "glow", "--out", out], "--method glow: unknown; choose whitening, pca or flow"),
        (["fit", "--data", bad_npy(tmp_path, "one.npy", nan[0]), "--out", out], "must be 2-D"),
        (["eval", "sts-b", "--fit-on", "everything", "--model", tiny_bert_dir], "--fit-on everything: unknown"),
        (["eval", "sts-b", "--pooling", "mean"], "unknown pooling 'mean'"),
        (
            ["eval", "sts-b", "--model", tiny_bert_dir, "--dim", 33],
            "--dim 33 must be between 1 and the embedding size 32",
        ),
        (["eval", "sts13", "--model", tiny_bert_dir], "sts13 is not shipped with sentflow"),
        (
            ["fit", "--data", bad_npy(tmp_path, "p.npy", nan[:6]), "--power", 2, "--out", out],
            "Whitening parameters: field 'power': Input should be less than or equal to 1",
        ),
        (["fit", "--method", "flow", "--dim", 3, "--out", out], "--dim and --power apply to whitening"),
    ]
    for args, message in cases:
        assert_user_error(run(*args), message)
        assert not out.exists()
    assert not list(tmp_path.glob(".*"))  # no temporary files left behind


def test_transform_refuses_a_calibration_for_another_dimension(tmp_path):
    calib = tmp_path / "c.safetensors"
    sentflow.Whitening().fit(np.random.default_rng(2).standard_normal((100, 8))).save(calib)
    out = tmp_path / "o.npy"
    result = run("transform", bad_npy(tmp_path, "x.npy", np.zeros((5, 6))), "--calib", calib, "--out", out)
    assert_user_error(result, "has 6 features but the whitening calibration was fitted on 8-d embeddings")
    assert not out.exists()
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(calib.read_bytes()[:100])
    result = run("transform", bad_npy(tmp_path, "y.npy", np.zeros((5, 8))), "--calib", corrupt, "--out", out)
    assert_user_error(result, "corrupt.safetensors: not a readable safetensors file")


@pytest.mark.slow
def test_console_script_runs_the_embedded_model(tmp_path, stsb_slice_dir):
    """The installed `sentflow` command, the real all-MiniLM-L6-v2, real STS-B lines."""
    env_cache = {"SENTFLOW_CACHE": str(tmp_path / "cache")}
    cmd = [sys.executable, "-m", "sentflow.cli", "eval", "sts-b", "--data-dir", str(stsb_slice_dir), "--json"]
    done = subprocess.run(
        cmd, capture_output=True, text=True, env={**__import__("os").environ, **env_cache}, timeout=600
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["model"] == "all-MiniLM-L6-v2" and report["results"][0]["dim"] == 384
    assert report["results"][0]["spearman"] > 60
