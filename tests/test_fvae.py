"""f-VAE: ELBO <= IW bound <= log p(x) against quadrature over a 1-D latent, an exact conditional density,
conditional invertibility, the plain-VAE special case, checkpoints, bad input and the CLI."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest
import torch
import typer
from scipy import integrate, stats
from test_flows_layers import one_thread, randomize  # noqa: F401
from test_iresnet import assert_checkpoint_round_trip
from typer.testing import CliRunner

from sentflow.errors import SentflowError
from sentflow.flows import FVAE, FlowSequential, build_model

try:
    from sentflow.cli.flows import flows_app
except ImportError:  # not installed: run from the repository root
    from cli.flows import flows_app


def tiny(shape=(1, 1, 2), latent: int = 1, couplings: int = 2, seed: int = 0, scale: float = 0.2) -> FVAE:
    torch.manual_seed(seed)
    model = build_model(
        "fvae", data_shape=shape, n_bins=17, latent=latent, hidden=8, depth=1, couplings=couplings, iw_samples=32
    ).double()
    model.decoder_log_prob(torch.rand(16, *shape).double(), torch.randn(16, latent).double())  # ActNorm init
    return randomize(model, scale).eval()


@pytest.fixture(scope="module")
def points() -> torch.Tensor:
    return torch.tensor([[0.2, 0.7], [0.5, 0.5], [0.9, 0.1]], dtype=torch.float64).view(3, 1, 1, 2)


def quadrature_log_likelihood(model: FVAE, y: torch.Tensor) -> torch.Tensor:
    """log integral p(y|z) N(z; 0, 1) dz by the trapezoid rule on a dense grid (the oracle)."""
    grid = torch.linspace(-12, 12, 6001, dtype=torch.float64)
    out = []
    with torch.no_grad():
        for yi in y:
            log_joint = model.decoder_log_prob(yi.expand(len(grid), *yi.shape), grid[:, None])
            log_joint = log_joint + torch.as_tensor(stats.norm.logpdf(grid.numpy()))
            peak = log_joint.max()
            out.append(peak + math.log(integrate.trapezoid((log_joint - peak).exp().numpy(), grid.numpy())))
    return torch.stack(out)


def test_elbo_below_iw_bound_below_exact_log_likelihood(points) -> None:
    model = tiny()
    exact = quadrature_log_likelihood(model, points)
    torch.manual_seed(0)
    with torch.no_grad():
        elbo = model.elbo(points, k=20_000)
        iw = model.iw_bound(points.repeat(5000, 1, 1, 1), 4).view(5000, -1).mean(0)  # E[IW_4], 5000 draws
        iw_large = model.iw_bound(points, 200_000)
    assert (exact - elbo > 0.02).all(), (elbo, exact)  # a real posterior mismatch, so the test can fail
    assert (elbo < iw).all() and (iw < exact).all(), (elbo, iw, exact)
    torch.testing.assert_close(iw_large, exact, atol=5e-3, rtol=0)


def test_conditional_flow_density_integrates_to_one() -> None:
    """For fixed z the decoder after the logit is a density on R^2: integrate it on a wide grid."""
    model = tiny()
    body = FlowSequential(*model.flow.flows[1:])
    axis = torch.linspace(-40, 40, 1201, dtype=torch.float64)
    grid = torch.cartesian_prod(axis, axis).view(-1, 1, 1, 2)
    for z in (-1.5, 0.3):
        with torch.no_grad():
            u, logdet = body(grid, context=torch.full((len(grid), 1), z, dtype=torch.float64))
        density = (model.prior.log_prob(u) + logdet).exp().view(len(axis), len(axis)).numpy()
        mass = integrate.trapezoid(integrate.trapezoid(density, axis.numpy()), axis.numpy())
        assert mass == pytest.approx(1.0, abs=2e-3)


def test_conditional_flow_inverts_for_fixed_z() -> None:
    model = tiny(shape=(1, 8, 8), latent=4, couplings=3, scale=0.1)
    y = torch.rand(5, 1, 8, 8, dtype=torch.float64) * 0.9 + 0.05
    z = torch.randn(5, 4, dtype=torch.float64)
    u, _ = model.flow(y, context=z)
    torch.testing.assert_close(model.flow.inverse(u, context=z), y)
    assert (model.flow.inverse(u, context=-z) - y).abs().max() > 1e-3  # the decoder really depends on z


def test_plain_vae_decoder_is_a_factorised_gaussian_in_logit_space() -> None:
    model = tiny(couplings=0)
    y = torch.tensor([[0.3, 0.8]], dtype=torch.float64).view(1, 1, 1, 2)
    z = torch.tensor([[0.7]], dtype=torch.float64)
    shift, log_s = model.flow.flows[-1]._params(z)
    alpha = model.config["alpha"]
    s = alpha + (1 - 2 * alpha) * y.flatten().numpy()
    logit = np.log(s / (1 - s))
    oracle = stats.norm.logpdf(logit, shift.detach().numpy()[0], np.exp(log_s.detach().numpy()[0])).sum()
    oracle += np.sum(np.log((1 - 2 * alpha) / (s * (1 - s))))
    assert model.decoder_log_prob(y, z).item() == pytest.approx(oracle, abs=1e-9)


def test_checkpoint_round_trip(tmp_path) -> None:
    assert_checkpoint_round_trip(tiny(shape=(1, 4, 4), latent=2).float(), torch.rand(4, 1, 4, 4), tmp_path)


@pytest.mark.parametrize(
    ("config", "match"),
    [
        ({"latent": 0}, "latent=0 is out of range \\(1 to"),
        ({"couplings": -1}, "couplings=-1 is out of range \\(0 to"),
        ({"alpha": 0.5}, "alpha must be in"),
    ],
)
def test_bad_config_is_a_one_line_error(config: dict, match: str) -> None:
    with pytest.raises(SentflowError, match=match) as err:
        build_model("fvae", **{"data_shape": (1, 4, 4), **config})
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("x", [torch.rand(2, 1, 4, 4), torch.rand(2, 2), torch.zeros(2, 1, 1, 2, dtype=torch.long)])
def test_bad_input_is_a_one_line_error(x: torch.Tensor) -> None:
    model = tiny()
    with pytest.raises(SentflowError, match="fvae expects a float batch") as err:
        model.log_prob(x)
    assert "\n" not in str(err.value)


def test_cli_train_eval_sample(tmp_path) -> None:
    app = typer.Typer()
    app.add_typer(flows_app, name="flows")
    runner = CliRunner()
    config = json.dumps({"latent": 4, "hidden": 32, "depth": 1, "couplings": 2, "iw_samples": 8})
    trained = runner.invoke(
        app,
        [
            "flows",
            "train",
            "fvae",
            "--out",
            str(tmp_path),
            "--epochs",
            "2",
            "--batch-size",
            "128",
            "--config",
            config,
            "--threads",
            "1",
        ],
    )
    assert trained.exit_code == 0, trained.output
    assert "(importance-weighted bound, K=8)" in trained.output
    ckpt = tmp_path / "checkpoint.safetensors"
    evaluated = runner.invoke(app, ["flows", "eval", str(ckpt)])
    bpd = [float(re.search(r"test bits/dim: ([0-9.]+)", r.output).group(1)) for r in (trained, evaluated)]
    assert bpd[0] == bpd[1] and 1.0 < bpd[0] < 6.0
    sampled = runner.invoke(app, ["flows", "sample", str(ckpt), "--n", "4", "--out", str(tmp_path / "s.png")])
    assert sampled.exit_code == 0, sampled.output
