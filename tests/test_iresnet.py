"""i-ResNet: contraction (SVD of explicit Jacobians), fixed-point inverse, log-det series vs exact slogdet,
model likelihood, checkpoints, bad input and the CLI."""

from __future__ import annotations

import json
import re

import pytest
import torch
import typer
from jacobian import jacobians
from matplotlib.image import imread
from test_flows_layers import one_thread, randomize  # noqa: F401
from typer.testing import CliRunner

from sentflow.errors import SentflowError
from sentflow.flows import (
    FlowModel,
    FlowSequential,
    IResNet,
    LogdetEstimator,
    ResidualBlock,
    SpectralConv,
    build_model,
    read_checkpoint,
    save_checkpoint,
)

try:
    from sentflow.cli.flows import flows_app
except ImportError:  # not installed: run from the repository root
    from cli.flows import flows_app

TINY = {"levels": 2, "blocks": 1, "hidden": 8}


def strong_block(shape=(2, 4, 4), seed: int = 0, coeff: float = 0.9) -> ResidualBlock:
    """A block whose raw weights are far too large, so the spectral normalisation has to act."""
    torch.manual_seed(seed)
    block = ResidualBlock(shape[0], shape[1:], hidden=8, coeff=coeff).double()
    with torch.no_grad():
        for m in block.modules():
            if isinstance(m, SpectralConv):
                m.weight.mul_(10.0)
                m.bias.zero_()
                m.refine(200)
    return block.eval()


@pytest.mark.parametrize(("kernel", "coeff"), [(3, 0.9), (1, 0.5)])
def test_spectral_conv_norm_is_the_operator_norm_of_the_convolution(kernel: int, coeff: float) -> None:
    torch.manual_seed(1)
    conv = SpectralConv(3, 5, kernel, (4, 4), coeff).double().eval()
    conv.refine(300)
    operator = jacobians(
        lambda v: torch.nn.functional.conv2d(v, conv.weight, padding=kernel // 2),
        torch.zeros(1, 3, 4, 4, dtype=torch.float64),
    )[0]
    top = torch.linalg.svdvals(operator)[0]
    assert conv.sigma().item() == pytest.approx(top.item(), rel=1e-4)
    normalized = jacobians(lambda v: conv(v) - conv(torch.zeros_like(v)), torch.zeros(1, 3, 4, 4).double())[0]
    assert torch.linalg.svdvals(normalized)[0].item() == pytest.approx(min(coeff, top.item()), rel=1e-4)


@pytest.mark.parametrize("coeff", [0.9, 0.6])
def test_residual_branch_is_a_contraction_below_coeff(coeff: float) -> None:
    block = strong_block(coeff=coeff)
    x = torch.randn(6, 2, 4, 4, dtype=torch.float64)
    top = torch.linalg.svdvals(jacobians(block.g, x))[:, 0]
    assert (top < coeff).all(), top
    assert top.max() > 0.1 * coeff**3  # the normalisation does not shrink g to nothing


def test_fixed_point_inverse_reconstructs_and_reports_its_residual() -> None:
    block = strong_block()
    x = torch.randn(5, 2, 4, 4, dtype=torch.float64) * 2
    y, _ = block(x)
    assert (block.inverse(y) - x).abs().max() < 1e-4
    assert block.last_inverse.residual < 1e-5 and 1 < block.last_inverse.iterations < block.max_iterations


def test_inverse_warns_when_the_iteration_cap_is_reached() -> None:
    block = strong_block()
    block.max_iterations = 2
    y, _ = block(torch.randn(3, 2, 4, 4, dtype=torch.float64))
    with pytest.warns(UserWarning, match="cap of 2 fixed-point iterations"):
        block.inverse(y)
    assert block.last_inverse.iterations == 2 and block.last_inverse.residual > 1e-6


def test_exact_logdet_matches_slogdet_of_the_autograd_jacobian() -> None:
    block = strong_block()
    x = torch.randn(4, 2, 4, 4, dtype=torch.float64)
    _, logdet = block(x, estimator=LogdetEstimator(exact=True))
    oracle = torch.linalg.slogdet(jacobians(lambda v: block(v)[0], x)).logabsdet
    torch.testing.assert_close(logdet, oracle)


def test_power_series_converges_to_the_exact_logdet() -> None:
    block = strong_block(seed=2)
    x = torch.randn(4, 2, 4, 4, dtype=torch.float64)
    exact = torch.linalg.slogdet(jacobians(lambda v: block(v)[0], x)).logabsdet
    torch.manual_seed(0)
    errors = []
    for terms, probes in [(1, 1), (3, 20), (12, 400)]:
        errors.append((block(x, estimator=LogdetEstimator(False, terms, probes))[1] - exact).abs().mean().item())
    assert errors[0] > errors[1] > errors[2], errors
    assert errors[2] < 0.02 * exact.abs().mean().item() + 0.05, (errors, exact)


def tiny_model(shape=(1, 4, 4), seed: int = 0, **extra) -> FlowModel:
    torch.manual_seed(seed)
    model = randomize(build_model("iresnet", data_shape=shape, n_bins=17, **TINY, **extra), scale=0.1)
    model.log_prob(torch.rand(16, *shape))  # data-dependent ActNorm init, power iterations in train mode
    return model.eval()


def test_model_log_prob_is_exact_change_of_variables_and_inverse_recovers_levels() -> None:
    model = tiny_model()
    x = torch.randint(0, 17, (5, 1, 4, 4)).float() / 17
    torch.manual_seed(3)
    log_p = model.log_prob(x)
    torch.manual_seed(3)
    y, _ = model.flow.flows[0](x)  # the same dequantized input
    body = FlowSequential(*model.flow.flows[1:])
    z = body(y)[0]
    oracle = torch.linalg.slogdet(jacobians(lambda v: body(v)[0], y)).logabsdet + model.prior.log_prob(z)
    torch.testing.assert_close(log_p, oracle, rtol=1e-4, atol=1e-3)
    assert model.estimator.startswith("exact")
    assert torch.equal(model.flow.inverse(model.flow(x)[0]), x)


def assert_checkpoint_round_trip(model: FlowModel, x: torch.Tensor, tmp_path) -> None:
    """Saved and reloaded, the model gives bit-identical log-probabilities under the same seed."""
    path = tmp_path / "model.safetensors"
    save_checkpoint(path, model)
    loaded = read_checkpoint(path).model.eval()
    assert loaded.config == model.config and type(loaded) is type(model)
    log_p = []
    for m in (model, loaded):
        torch.manual_seed(7)
        with torch.no_grad():
            log_p.append(m.log_prob(x))
    assert torch.equal(*log_p)


def test_checkpoint_round_trip(tmp_path) -> None:
    assert_checkpoint_round_trip(tiny_model(), torch.rand(4, 1, 4, 4), tmp_path)


@pytest.mark.parametrize(
    ("config", "match"),
    [
        ({"coeff": 1.0}, "coeff must be in"),
        ({"data_shape": (1, 5, 5)}, "divisible by 2"),
        ({"blocks": 0}, "blocks=0 is out of range \\(1 to"),
    ],
)
def test_bad_config_is_a_one_line_error(config: dict, match: str) -> None:
    with pytest.raises(SentflowError, match=match) as err:
        build_model("iresnet", **{"data_shape": (1, 4, 4), **TINY, **config})
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("x", [torch.rand(2, 1, 8, 8), torch.rand(2, 16), torch.zeros(2, 1, 4, 4, dtype=torch.long)])
def test_bad_input_is_a_one_line_error(x: torch.Tensor) -> None:
    model = tiny_model()
    with pytest.raises(SentflowError, match="iresnet expects a float batch") as err:
        model.log_prob(x)
    assert "\n" not in str(err.value) and isinstance(model, IResNet)


def test_cli_train_eval_sample(tmp_path) -> None:
    app = typer.Typer()
    app.add_typer(flows_app, name="flows")
    runner = CliRunner()
    config = json.dumps({**TINY, "blocks": 1})
    trained = runner.invoke(
        app,
        [
            "flows",
            "train",
            "iresnet",
            "--out",
            str(tmp_path),
            "--epochs",
            "1",
            "--batch-size",
            "256",
            "--config",
            config,
            "--threads",
            "1",
        ],
    )
    assert trained.exit_code == 0, trained.output
    assert "(exact log-det (brute-force Jacobian))" in trained.output
    ckpt = tmp_path / "checkpoint.safetensors"
    evaluated = runner.invoke(app, ["flows", "eval", str(ckpt)])
    bpd = [float(re.search(r"test bits/dim: ([0-9.]+)", r.output).group(1)) for r in (trained, evaluated)]
    assert bpd[0] == bpd[1] and 1.0 < bpd[0] < 8.0
    sampled = runner.invoke(
        app, ["flows", "sample", str(ckpt), "--n", "9", "--scale", "1", "--out", str(tmp_path / "grid.png")]
    )
    assert sampled.exit_code == 0, sampled.output
    assert imread(tmp_path / "grid.png").shape[:2] == (28, 28)
