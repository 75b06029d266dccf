"""BERT-flow: invertibility, exact log-determinants, ActNorm init, maximum-likelihood fits with known optima."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from jacobian import jacobian_logdets

import sentflow
from sentflow import SentflowError
from sentflow.calibration.bertflow import BertFlow, vector_glow
from sentflow.flows import ActNorm, StandardNormal
from sentflow.runtime import using_threads


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
    with pytest.raises(
        SentflowError, match="BertFlow parameters: field 'depth': Input should be greater than or equal"
    ):
        small_flow(depth=0).fit(X)
    big_seed = small_flow(epochs=1, seed=2**62).fit(X)  # the shuffle seed (seed * stride + epoch) wraps, not overflows
    assert np.isfinite(big_seed.transform(X)).all()
    for huge in ({"depth": 2**70}, {"hidden": 100_000}, {"levels": 17}, {"lr": float("nan")}, {"seed": -1}):
        with pytest.raises(SentflowError, match=f"field '{next(iter(huge))}'"):  # refused before anything is built
            small_flow(**huge).fit(X)
    with pytest.raises(SentflowError, match="not fitted yet"):
        small_flow().transform(X)
    with pytest.raises(SentflowError, match="has 7 features but the flow calibration was fitted on 8-d"):
        small_flow(epochs=1).fit(X).transform(X[:, :7])


def recipe_fit(X: np.ndarray, seed: int, epochs: int, batch_size: int, lr: float = 1e-3, noise: float = 1e-2):
    """BERT-flow's recipe written out as a plain loop, independently of the shared Trainer: seeded 10% hold-out,
    ActNorm init on a noisy first batch, Adam with a 50-step warm-up, clipping at 10, noisy nats/dim batches."""
    n, d = X.shape
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        flow = vector_glow(d, levels=2, depth=2, hidden=16)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    train = torch.from_numpy(X)[order[round(0.1 * n) :]]
    sigma = noise * float(np.sqrt(X.var(axis=0, dtype=np.float64).mean()))
    with torch.random.fork_rng(), using_threads(1):
        torch.manual_seed(seed)
        with torch.no_grad():
            first = train[:1024]
            flow(first + sigma * torch.randn_like(first))
        optimizer, step = torch.optim.Adam(flow.parameters(), lr=lr), 0
        for epoch in range(epochs):
            shuffle = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch))
            for batch in train[shuffle].split(batch_size):
                for group in optimizer.param_groups:
                    group["lr"] = lr * min(1.0, (step + 1) / 50)
                z, logdet = flow(batch + sigma * torch.randn_like(batch))
                loss = -(StandardNormal().log_prob(z).double() + logdet.double()).mean() / d
                optimizer.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(flow.parameters(), 10.0)
                optimizer.step()
                step += 1
    return flow.eval()


def test_fit_is_the_bert_flow_recipe_run_through_the_shared_trainer():
    X = gaussian(900, 8, seed=6)
    X[:, 0] = 2.0  # a constant dimension, as in CLS vectors: the noise matters
    fitted = small_flow(epochs=1, seed=5, threads=1).fit(X)
    reference = recipe_fit(X, seed=5, epochs=1, batch_size=128)
    with torch.no_grad():
        expected = reference(torch.from_numpy(X))[0].numpy()
    np.testing.assert_allclose(fitted.transform(X), expected, atol=1e-6, rtol=0)


def test_resumed_fit_equals_an_uninterrupted_one(tmp_path):
    X = gaussian(800, 8, seed=7)
    straight = small_flow(epochs=3, patience=5, checkpoint_dir=tmp_path / "a").fit(X)
    small_flow(epochs=1, patience=5, checkpoint_dir=tmp_path / "b").fit(X)
    resumed = small_flow(epochs=3, patience=5, checkpoint_dir=tmp_path / "b").fit(X, resume=True)
    assert [h["epoch"] for h in resumed.history_] == [1, 2, 3]
    np.testing.assert_allclose(resumed.transform(X), straight.transform(X), atol=1e-6, rtol=0)
    with pytest.raises(SentflowError, match="checkpoint is for"):
        small_flow(epochs=3, hidden=8, checkpoint_dir=tmp_path / "b").fit(X, resume=True)
    with pytest.raises(SentflowError, match="resume=True needs a checkpoint"):
        small_flow(checkpoint_dir=tmp_path / "none").fit(X, resume=True)


def test_time_budget_stops_within_the_first_epoch():
    X = gaussian(3000, 8, seed=8)
    flow = small_flow(epochs=20, batch_size=16, max_minutes=0.005).fit(X)  # 0.3 s; an epoch is 169 steps
    assert len(flow.history_) == 1 and 1 <= flow.history_[0]["step"] < 2700 // 16
    assert np.isfinite(flow.transform(X)).all()


def test_any_accepted_seed_is_saved_and_loaded_back(tmp_path):
    flow = small_flow(epochs=1, seed=2**63 - 1).fit(gaussian(300, 8))
    flow.save(tmp_path / "f.safetensors")
    assert sentflow.load(tmp_path / "f.safetensors").seed == 2**63 - 1
