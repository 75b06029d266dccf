"""BERT-flow: invertibility, exact log-determinants, ActNorm init, maximum-likelihood fits with known optima."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from jacobian import jacobian_logdets

import sentflow
from sentflow import SentflowError
from sentflow.bertflow import BertFlow, vector_glow
from sentflow.flows import ActNorm


def gaussian(n: int, d: int, seed: int = 0) -> np.ndarray:
    """Correlated Gaussian data (a random rotation of scales 1 .. 0.1) with an offset, float32."""
    rng = np.random.default_rng(seed)
    rotation, _ = np.linalg.qr(rng.standard_normal((d, d)))
    mixing = np.logspace(0, -1, d)[:, None] * rotation
    return (rng.standard_normal((n, d)) @ mixing + 3 * rng.random(d)).astype(np.float32)


def small_flow(**kw) -> BertFlow:
    options = {"levels": 2, "depth": 2, "hidden": 16, "epochs": 3, "batch_size": 128, "progress": False}
    return BertFlow(**{**options, **kw})


def perturbed(flow: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Give every parameter a random value, so zero-initialised couplings are not the identity."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in flow.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=gen, dtype=p.dtype))
    return flow


def test_vector_glow_logdet_equals_slogdet_of_the_jacobian():
    torch.manual_seed(0)
    flow = vector_glow(6, levels=2, depth=2, hidden=8).double()
    x = torch.randn(16, 6, dtype=torch.float64)
    flow(x)  # ActNorm initialisation
    flow = perturbed(flow)
    oracle = jacobian_logdets(lambda v: flow(v)[0], x[:4])
    for row, expected in zip(x[:4], oracle, strict=True):
        _, logdet = flow(row.unsqueeze(0))
        assert logdet.item() == pytest.approx(expected.item(), abs=1e-9)


def test_fitted_flow_is_invertible():
    X = gaussian(600, 8)
    flow = small_flow().fit(X)
    Z = flow.transform(X)
    assert Z.shape == X.shape and Z.dtype == np.float32
    np.testing.assert_allclose(flow.inverse_transform(Z), X, atol=1e-4, rtol=1e-4)


def test_actnorm_initialisation_standardises_the_first_batch():
    X = torch.from_numpy(gaussian(500, 8, seed=1))
    y, _ = ActNorm(8)(X)
    np.testing.assert_allclose(y.mean(0).detach().numpy(), 0, atol=1e-5)
    np.testing.assert_allclose(y.std(0, unbiased=False).detach().numpy(), 1, atol=1e-4)


def test_likelihood_rises_during_a_short_fit():
    X = gaussian(2000, 8, seed=2)
    flow = small_flow(epochs=4, patience=10).fit(X)
    untrained = small_flow(epochs=1, lr=1e-12).fit(X)
    nll = [h["held_out_nats_per_dim"] for h in flow.history_]
    assert nll[-1] < nll[0] < untrained.history_[0]["held_out_nats_per_dim"] + 1e-3
    assert flow.log_prob(X).mean() > untrained.log_prob(X).mean() + 0.5


def test_linear_gaussian_optimum_whitens_the_data():
    """For Gaussian data the maximum-likelihood flow output is N(0, I): its covariance approaches identity."""
    X = gaussian(4000, 6, seed=3)
    flow = small_flow(epochs=10, lr=3e-3, batch_size=64, patience=10).fit(X)
    Z = flow.transform(X).astype(np.float64)
    assert np.abs(np.cov(Z, rowvar=False) - np.eye(6)).max() < 0.15
    assert np.abs(Z.mean(0)).max() < 0.1
    # and the fitted density is close to the Gaussian maximum likelihood
    mean, cov = X.mean(0, dtype=np.float64), np.cov(X.astype(np.float64), rowvar=False)
    diff = X - mean
    gauss = -0.5 * (np.einsum("ij,jk,ik->i", diff, np.linalg.inv(cov), diff) + np.linalg.slogdet(2 * np.pi * cov)[1])
    assert abs(flow.log_prob(X).mean() - gauss.mean()) < 0.1 * 6


def test_fit_is_reproducible_with_a_seed():
    X = gaussian(500, 8, seed=4)
    a, b, other = small_flow(seed=7).fit(X), small_flow(seed=7).fit(X), small_flow(seed=8).fit(X)
    np.testing.assert_array_equal(a.transform(X), b.transform(X))
    assert np.abs(a.transform(X) - other.transform(X)).max() > 1e-3


def test_save_load_gives_identical_outputs(tmp_path):
    X = gaussian(500, 8, seed=5)
    flow = small_flow().fit(X)
    path = tmp_path / "flow.safetensors"
    flow.save(path, model="m", pooling="cls")
    loaded = sentflow.load(path)
    runtime = ("device", "progress")
    fitted = {k: v for k, v in flow.get_params().items() if k not in runtime}
    assert isinstance(loaded, BertFlow) and {k: loaded.get_params()[k] for k in fitted} == fitted
    np.testing.assert_array_equal(loaded.transform(X), flow.transform(X))
    assert loaded.device is None and loaded.progress is None  # where it ran is not part of the file
    with torch.no_grad():
        np.testing.assert_array_equal(loaded.to_torch()(torch.from_numpy(X)).numpy(), flow.transform(X))


def test_bad_inputs_are_refused():
    X = gaussian(300, 8)
    bad = X.copy()
    bad[5, 0] = np.nan
    with pytest.raises(SentflowError, match="NaN or Inf"):
        small_flow().fit(bad)
    with pytest.raises(SentflowError, match=r"fewer sentences \(8\) than dimensions \(8\)"):
        small_flow().fit(X[:8])
    with pytest.raises(SentflowError, match="levels, depth and hidden must be >= 1"):
        small_flow(depth=0).fit(X)
    with pytest.raises(SentflowError, match="not fitted yet"):
        small_flow().transform(X)
    with pytest.raises(SentflowError, match="has 7 features but the flow calibration was fitted on 8-d"):
        small_flow(epochs=1).fit(X).transform(X[:, :7])
