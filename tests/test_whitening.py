"""Whitening against independent oracles: numpy covariance, scikit-learn PCA(whiten=True)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.base import clone
from sklearn.decomposition import PCA
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import Normalizer

import sentflow
from sentflow import SentflowError, Whitening
from sentflow.calibration.whitening import SingularCovarianceWarning
from sentflow.evaluation.sts import cosine_scores


def anisotropic(n: int = 600, d: int = 24, seed: int = 0, offset: float = 40.0) -> np.ndarray:
    """Correlated data with a large common mean, like raw BERT vectors."""
    rng = np.random.default_rng(seed)
    mixing = rng.standard_normal((d, d)) * np.logspace(0, -1.5, d)[:, None]
    return rng.standard_normal((n, d)) @ mixing + offset * rng.random(d)


def test_whitened_covariance_is_identity_and_mean_zero():
    X = anisotropic()
    Z = Whitening(eps=0).fit(X).transform(X)
    np.testing.assert_allclose(np.cov(Z, rowvar=False), np.eye(X.shape[1]), atol=1e-9)
    np.testing.assert_allclose(Z.mean(axis=0), 0, atol=1e-9)


@pytest.mark.parametrize("k", [None, 10, 3])
def test_cosine_scores_equal_sklearn_pca_whiten(k):
    X = anisotropic(seed=1)
    a, b = anisotropic(50, seed=2), anisotropic(50, seed=3)
    ours = Whitening(n_components=k, eps=0).fit(X)
    pca = PCA(n_components=k, whiten=True, svd_solver="full").fit(X)
    np.testing.assert_allclose(
        cosine_scores(ours.transform(a), ours.transform(b)),
        cosine_scores(pca.transform(a), pca.transform(b)),
        atol=1e-9,
    )
    np.testing.assert_allclose(ours.eigenvalues_[: ours.n_components_out_], pca.explained_variance_, rtol=1e-9)


def test_power_zero_only_centres_and_rotates():
    X = anisotropic(seed=4)
    Z = Whitening(power=0.0).fit(X).transform(X)
    centred = X - X.mean(axis=0)
    np.testing.assert_allclose(Z @ Z.T, centred @ centred.T, rtol=1e-9, atol=1e-7)


def test_soft_whitening_covariance_spectrum():
    X = anisotropic(seed=5)
    w = Whitening(power=0.25, eps=0).fit(X)
    spectrum = np.linalg.eigvalsh(np.cov(w.transform(X), rowvar=False))[::-1]
    expected = np.linalg.eigvalsh(np.cov(X, rowvar=False))[::-1] ** 0.5
    np.testing.assert_allclose(spectrum, expected, rtol=1e-8)


@settings(max_examples=15, deadline=None)
@given(chunks=st.integers(2, 12), seed=st.integers(0, 1000))
def test_partial_fit_equals_fit(chunks, seed):
    X = anisotropic(700, 16, seed=seed).astype(np.float32)
    full = Whitening(eps=0).fit(X)
    streamed = Whitening(eps=0)
    for part in np.array_split(X, chunks):
        streamed.partial_fit(part)
    np.testing.assert_allclose(streamed.mean_, full.mean_, rtol=1e-10, atol=1e-9)
    probe = X[:40].astype(np.float64)
    np.testing.assert_allclose(streamed.transform(probe), full.transform(probe), atol=1e-6)


def test_float64_accumulation_survives_a_large_offset():
    X = anisotropic(2000, 8, seed=6, offset=1e4)
    reference = np.cov(X, rowvar=False)
    w = Whitening(eps=0).fit(X.astype(np.float64))
    np.testing.assert_allclose(w._moments.covariance(), reference, rtol=1e-9, atol=1e-9)


def test_inverse_transform_round_trip():
    X = anisotropic(seed=7)
    w = Whitening().fit(X)
    np.testing.assert_allclose(w.inverse_transform(w.transform(X)), X, rtol=1e-10, atol=1e-9)
    with pytest.raises(SentflowError, match="full-rank"):
        Whitening(n_components=5).fit(X).inverse_transform(np.zeros((2, 5)))


def test_save_load_round_trip_is_exact(tmp_path):
    X = anisotropic(seed=8)
    w = Whitening(n_components=12, power=0.4).fit(X)
    path = tmp_path / "calib.safetensors"
    w.save(path, model="tiny", pooling="cls")
    loaded = sentflow.load(path)
    assert isinstance(loaded, Whitening)
    assert loaded.get_params() == w.get_params()
    assert loaded.fitted_for_ == {"model": "tiny", "pooling": "cls"}
    np.testing.assert_array_equal(loaded.transform(X), w.transform(X))


def test_to_torch_matches_numpy():
    X = anisotropic(seed=9).astype(np.float32)
    w = Whitening(n_components=8).fit(X)
    with torch.no_grad():
        out = w.to_torch()(torch.from_numpy(X)).numpy()
    np.testing.assert_allclose(out, w.transform(X), rtol=1e-4, atol=1e-4)


def test_sklearn_conventions_and_pipeline():
    X = anisotropic(seed=10)
    w = Whitening(n_components=6, power=0.5)
    assert clone(w).get_params() == {"n_components": 6, "power": 0.5, "eps": 1e-9}
    out = make_pipeline(Whitening(n_components=6), Normalizer()).fit_transform(X)
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, rtol=1e-12)


def test_transform_keeps_float32():
    X = anisotropic(seed=11).astype(np.float32)
    assert Whitening().fit(X).transform(X).dtype == np.float32


def test_singular_covariance_is_an_error_without_ridge_and_a_warning_with_it():
    X = anisotropic(400, 10, seed=12)
    X = np.hstack([X, X[:, :1] + X[:, 1:2]])  # exactly dependent column
    with pytest.raises(SentflowError, match=r"singular: 1 of the 11 .*n_components <= 10"):
        Whitening(eps=0).fit(X)
    with pytest.warns(SingularCovarianceWarning, match="1 of the 11"):
        Z = Whitening(eps=1e-6).fit(X).transform(X)
    assert np.isfinite(Z).all()
    Whitening(n_components=10, eps=0).fit(X)  # dropping the null direction is fine


def test_bad_inputs_are_named():
    X = anisotropic(50, 8)
    with pytest.raises(SentflowError, match="fewer sentences \\(5\\) than dimensions to whiten \\(8\\)"):
        Whitening().fit(X[:5])
    bad = X.copy()
    bad[3, 2] = np.nan
    with pytest.raises(SentflowError, match="NaN or Inf values \\(1 rows, first at row 3\\)"):
        Whitening().fit(bad)
    with pytest.raises(SentflowError, match="n_components=9 must be between 1 and the embedding size 8"):
        Whitening(n_components=9).fit(X)
    with pytest.raises(SentflowError, match="has 7 features but the whitening calibration was fitted on 8-d"):
        Whitening().fit(X).transform(X[:, :7])
    with pytest.raises(SentflowError, match="must be 2-D"):
        Whitening().fit(X[0])


def test_set_params_after_fit_re_solves_from_the_moments():
    X = anisotropic(seed=13)
    w = Whitening(eps=0).fit(X)
    w.set_params(n_components=3, power=0.25)
    expected = Whitening(n_components=3, power=0.25, eps=0).fit(X)
    np.testing.assert_allclose(w.transform(X), expected.transform(X), rtol=1e-12, atol=1e-12)
    with pytest.raises(SentflowError, match="n_components=99"):
        w.set_params(n_components=99)


def test_empty_chunks_are_ignored():
    X = anisotropic(seed=14)
    w = Whitening(eps=0).partial_fit(X[:0]).partial_fit(X).partial_fit(X[:0])
    np.testing.assert_allclose(w.transform(X), Whitening(eps=0).fit(X).transform(X), atol=1e-10)


def test_unfitted_and_wrong_width_inputs_are_named():
    with pytest.raises(SentflowError, match="not fitted yet"):
        Whitening().transform(np.zeros((2, 3)))
    w = Whitening().fit(anisotropic(seed=15))
    with pytest.raises(SentflowError, match="Z has 5 features"):
        w.inverse_transform(np.zeros((2, 5)))


def test_degenerate_inputs_are_one_line_errors_not_nan(tmp_path):
    with pytest.raises(SentflowError, match="every row is the same vector"):
        Whitening().fit(np.ones((100, 8)))
    for eps in (float("nan"), float("inf"), -1.0):
        with pytest.raises(SentflowError, match="Whitening parameters: field 'eps'"):
            Whitening(eps=eps).fit(np.random.default_rng(0).standard_normal((50, 4)))
    with np.errstate(all="ignore"), pytest.raises(SentflowError, match="covariance overflows float64"):
        Whitening().fit(np.random.default_rng(0).random((100, 8)) * 1e200)
    assert Whitening(power=0).fit(np.ones((100, 8))).transform(np.ones((2, 8))).tolist() == [[0.0] * 8] * 2


def test_a_few_null_directions_are_logged_many_are_warned(caplog):
    """A post-LN hyperplane (1 null direction of 200) is expected and only logged; 20 of 32 still warns."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((2000, 200))
    X -= X.mean(axis=1, keepdims=True)  # every row sums to 0: one exactly-null direction, as after LayerNorm
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with caplog.at_level("INFO", logger="sentflow.calibration.whitening"):
            Whitening().fit(X)
    assert "1 of the 200 kept directions" in caplog.text and "post-LayerNorm" in caplog.text
    low_rank = rng.standard_normal((500, 12)) @ rng.standard_normal((12, 32))
    with pytest.warns(SingularCovarianceWarning, match="20 of the 32"):
        Whitening().fit(low_rank)


def test_transform_before_fit_is_scikit_learns_not_fitted_error_too():
    from sklearn.exceptions import NotFittedError

    for calibrator in (Whitening(), sentflow.BertFlow()):
        with pytest.raises(NotFittedError, match="not fitted yet") as info:
            calibrator.transform(np.zeros((2, 3)))
        assert isinstance(info.value, SentflowError)
