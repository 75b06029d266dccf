"""Diagnostics against numpy written out by hand on constructed data, and the plots as real PNG files."""

from __future__ import annotations

import json

import matplotlib
import numpy as np
import pytest

import sentflow
from sentflow.errors import SentflowError
from sentflow.evaluation.diagnostics import diagnose, embedding_stats, random_pairs, save_plots, task_vectors


def anisotropic(n=2000, d=16, seed=0):
    rng = np.random.default_rng(seed)
    return (5.0 + rng.standard_normal((n, d)) * np.logspace(0, -2, d)).astype(np.float32)


def test_metrics_equal_numpy_by_hand():
    X = anisotropic()
    stats = embedding_stats(X, n_pairs=500, seed=3)
    i, j = random_pairs(len(X), 500, seed=3)
    assert (i != j).all()
    by_hand = [float(X[a] @ X[b]) / np.linalg.norm(X[a]) / np.linalg.norm(X[b]) for a, b in zip(i, j, strict=True)]
    assert stats.anisotropy == pytest.approx(np.mean(by_hand), abs=1e-6)
    values = np.sort(np.linalg.eigvalsh(np.cov(X.astype(np.float64), rowvar=False)))[::-1]
    np.testing.assert_allclose(stats.eigenvalues, values, rtol=1e-8, atol=1e-14)
    p = values / values.sum()
    assert stats.effective_rank == pytest.approx(np.exp(-(p * np.log(p)).sum()), rel=1e-9)
    assert stats.top1_share == pytest.approx(values[0] / values.sum())
    assert stats.top10_share == pytest.approx(values[:10].sum() / values.sum())
    assert stats.anisotropy > 0.99  # a large common offset: every pair points the same way


def test_extreme_cases():
    rng = np.random.default_rng(1)
    line = np.outer(rng.standard_normal(500), rng.standard_normal(8))  # rank one
    assert embedding_stats(line).effective_rank == pytest.approx(1.0, abs=1e-6)
    white = rng.standard_normal((20000, 8))
    stats = embedding_stats(white)
    assert stats.effective_rank == pytest.approx(8.0, abs=0.01) and abs(stats.anisotropy) < 0.03
    with pytest.raises(SentflowError, match="at least 2 rows"):
        embedding_stats(white[:1])
    with pytest.raises(SentflowError, match="zero covariance"):
        embedding_stats(np.ones((10, 4)))


def test_pairs_are_seeded():
    assert all((a == b).all() for a, b in zip(random_pairs(50, 100, 7), random_pairs(50, 100, 7), strict=True))
    assert not (random_pairs(50, 100, 7)[0] == random_pairs(50, 100, 8)[0]).all()


def test_whitening_removes_the_anisotropy_and_plots(tmp_path):
    X = anisotropic()
    similar = (X[:100], X[:100] + 0.01 * np.random.default_rng(2).standard_normal((100, 16)).astype(np.float32))
    whitening = sentflow.Whitening().fit(X)
    diagnosis = diagnose(X, similar, whitening.transform, "whitening")
    assert diagnosis.after.effective_rank == pytest.approx(16, abs=0.05) and abs(diagnosis.after.anisotropy) < 0.05
    assert diagnosis.before.effective_rank < 8
    data = json.loads(json.dumps(diagnosis.to_dict(), allow_nan=False))
    assert sum(data["before"]["random_pairs"]["counts"]) == 10_000 and data["after"]["similar_pairs"]["n"] == 100
    backend = matplotlib.get_backend()
    paths = save_plots(diagnosis, tmp_path / "plots", "constructed")
    assert [p.name for p in paths] == ["spectrum.png", "cosines.png"]
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in paths)
    assert matplotlib.get_backend() == backend  # no global backend switch
    (tmp_path / "file").write_text("x")
    with pytest.raises(SentflowError, match="not a directory"):
        save_plots(diagnosis, tmp_path / "file")


def test_task_vectors_pick_gold_similar_test_pairs(tiny_bert_dir, stsb_slice_dir):
    encoder = sentflow.Encoder(str(tiny_bert_dir), "last-avg", show_progress=False)
    vectors, (first, second) = task_vectors(encoder, "sts-b", stsb_slice_dir)
    test = sentflow.load_sts("sts-b", "test", stsb_slice_dir)
    keep = [k for k, s in enumerate(test.scores) if s >= 4.0]
    assert len(vectors) == 6 * 120 and len(first) == len(keep) > 0
    np.testing.assert_allclose(first, encoder.encode([test.sentences1[k] for k in keep]), atol=1e-5)
    np.testing.assert_allclose(second, encoder.encode([test.sentences2[k] for k in keep]), atol=1e-5)


def test_cli_diagnose_npy(tmp_path):
    from sentflow.cli.main import app
    from typer.testing import CliRunner

    X = anisotropic()
    np.save(tmp_path / "x.npy", X)
    sentflow.Whitening(n_components=8).fit(X).save(tmp_path / "w.safetensors")
    args = ["diagnose", str(tmp_path / "x.npy"), "--calib", str(tmp_path / "w.safetensors")]
    result = CliRunner().invoke(app, [*args, "--json", "--plots", str(tmp_path / "plots"), "--n-pairs", "300"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["before"]["anisotropy"] == pytest.approx(embedding_stats(X, n_pairs=300).anisotropy)
    assert data["after"]["dim"] == 8 and data["calibration"] == "w.safetensors"
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == ["cosines.png", "spectrum.png"]
    text = CliRunner().invoke(app, args[:2])
    assert text.exit_code == 0 and "effective rank" in text.stdout and "after: whitening" in text.stdout
    missing = CliRunner().invoke(app, ["diagnose", str(tmp_path / "nope.npy")])
    assert missing.exit_code == 1 and missing.stderr.startswith("error: ") and "nope.npy" in missing.stderr
