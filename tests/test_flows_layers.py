"""Every flow layer: exact inverse, log-determinant against the brute-force Jacobian, ActNorm init."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from jacobian import jacobian_logdets

from sentflow.flows import (
    MLP,
    ActNorm,
    AdditiveCoupling,
    AffineCoupling,
    ConvNet,
    Dequantize,
    DiagonalScaling,
    Flatten,
    Flow,
    FlowSequential,
    InvConv,
    Logit,
    Split,
    Squeeze,
    Unsqueeze,
    make_mask,
)
from sentflow.flows.fvae import ConditionalAffine


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models: one thread avoids OpenMP stalls when other jobs share the 2 cores."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _net(image: bool):
    return ConvNet(hidden=8) if image else MLP(hidden=16, depth=1)


# name -> builder(channels, is_image) for layers that take any real input; channels is even.
LAYERS: dict[str, Callable[[int, bool], Flow]] = {
    "actnorm": lambda c, img: ActNorm(c),
    "diagonal_scaling": lambda c, img: DiagonalScaling(c),
    "invconv": lambda c, img: InvConv(c),
    "affine_channel_sigmoid": lambda c, img: AffineCoupling(c, _net(img), "channel", 0, "sigmoid"),
    "affine_channel_tanh_odd": lambda c, img: AffineCoupling(c, _net(img), "channel", 1, "tanh"),
    "affine_checkerboard": lambda c, img: AffineCoupling(c, _net(img), "checkerboard", 1, "tanh"),
    "additive_checkerboard": lambda c, img: AdditiveCoupling(c, _net(img), "checkerboard", 0),
    "additive_channel": lambda c, img: AdditiveCoupling(c, _net(img), "channel", 1),
    "split": lambda c, img: Split(c, AffineCoupling(c // 2, _net(img), "checkerboard", 0), _net(img)),
    "sequential": lambda c, img: FlowSequential(ActNorm(c), InvConv(c), AffineCoupling(c, _net(img))),
    "glow_steps_with_split": lambda c, img: FlowSequential(
        ActNorm(c),
        InvConv(c),
        AffineCoupling(c, _net(img)),
        Split(c, FlowSequential(ActNorm(c // 2), InvConv(c // 2), AffineCoupling(c // 2, _net(img))), _net(img)),
    ),
}
IMAGE_ONLY: dict[str, Callable[[int, bool], Flow]] = {
    "squeeze": lambda c, img: Squeeze(),
    "squeeze_unsqueeze": lambda c, img: FlowSequential(Squeeze(), InvConv(4 * c), Unsqueeze()),
    "flatten": lambda c, img: Flatten((c, 4, 4)),
}


def randomize(flow: Flow, scale: float = 0.1) -> Flow:
    """Move every parameter off its (often identity) initialisation so the test sees a generic map."""
    with torch.no_grad():
        for p in flow.parameters():
            p.add_(torch.randn_like(p) * scale)
    return flow


def build(builder: Callable[[int, bool], Flow], shape: tuple[int, ...], seed: int) -> Flow:
    torch.manual_seed(seed)
    flow = randomize(builder(shape[0], len(shape) == 3))
    flow(torch.randn(8, *shape))  # data-dependent init (ActNorm) on a separate batch
    return flow


shapes = st.sampled_from([(4,), (6,), (10,), (2, 4, 4), (4, 4, 4), (2, 8, 8)])
image_shapes = st.sampled_from([(1, 4, 4), (2, 4, 4)])


@pytest.mark.parametrize("name", sorted(LAYERS))
@settings(max_examples=4, deadline=None)
@given(shape=shapes, n=st.integers(1, 5), seed=st.integers(0, 1000))
def test_inverse_undoes_forward(name: str, shape: tuple[int, ...], n: int, seed: int) -> None:
    flow = build(LAYERS[name], shape, seed)
    x = torch.randn(n, *shape)
    z, logdet = flow(x)
    assert logdet.shape == (n,)
    assert torch.allclose(flow.inverse(z), x, atol=1e-4)


@pytest.mark.parametrize("name", sorted(IMAGE_ONLY))
@settings(max_examples=3, deadline=None)
@given(shape=image_shapes, n=st.integers(1, 4), seed=st.integers(0, 1000))
def test_reshape_layers_are_exact_inverses(name: str, shape: tuple[int, ...], n: int, seed: int) -> None:
    flow = build(IMAGE_ONLY[name], shape, seed)
    x = torch.randn(n, *shape)
    z, _ = flow(x)
    assert torch.allclose(flow.inverse(z), x, atol=1e-5)


def brute_force_logdet(flow: Flow, x: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """slogdet of d flow(x_i) / d x_i for each example, via autograd (the oracle)."""
    return jacobian_logdets(lambda v: flow(v)[0], x, seed)


def layer_logdet(flow: Flow, x: torch.Tensor, seed: int = 0) -> torch.Tensor:
    values = []
    for xi in x:
        torch.manual_seed(seed)
        values.append(flow(xi.unsqueeze(0))[1][0])
    return torch.stack(values)


JACOBIAN_CASES = [(name, shape) for name in sorted(LAYERS) for shape in [(4,), (2, 4, 4)]]
JACOBIAN_CASES += [(name, (2, 4, 4)) for name in sorted(IMAGE_ONLY)]


@pytest.mark.parametrize(("name", "shape"), JACOBIAN_CASES)
def test_logdet_matches_jacobian(name: str, shape: tuple[int, ...]) -> None:
    builders = {**LAYERS, **IMAGE_ONLY}
    flow = build(builders[name], shape, seed=3).double()
    x = torch.randn(3, *shape, dtype=torch.float64)
    expected = brute_force_logdet(flow, x)
    assert torch.allclose(layer_logdet(flow, x), expected, atol=1e-8)
    if name not in IMAGE_ONLY and not name.startswith("additive"):
        assert expected.abs().max() > 1e-3  # the randomized layer is not volume preserving by accident


@pytest.mark.parametrize(("name", "shape"), JACOBIAN_CASES)
def test_inverse_logdet_matches_jacobian(name: str, shape: tuple[int, ...]) -> None:
    """log|det d inverse(z)/dz| by autograd equals minus the forward log-det at x = inverse(z)."""
    builders = {**LAYERS, **IMAGE_ONLY}
    flow = build(builders[name], shape, seed=4).double()
    z = flow(torch.randn(3, *shape, dtype=torch.float64))[0].detach()
    x = flow.inverse(z).detach()
    assert torch.allclose(jacobian_logdets(flow.inverse, z), -layer_logdet(flow, x), atol=1e-8)


CONDITIONAL = {
    "affine_coupling_with_context": lambda c, k: AffineCoupling(c, MLP(16, 1), "checkerboard", 1, "tanh", k),
    "conditional_affine": lambda c, k: ConditionalAffine(c, k, MLP(16, 1)),
    "sequential_with_context": lambda c, k: FlowSequential(
        ActNorm(c),
        AffineCoupling(c, MLP(16, 1), "channel", 0, "sigmoid", k),
        InvConv(c),
        ConditionalAffine(c, k, MLP(8, 1)),
    ),
}


@pytest.mark.parametrize("name", sorted(CONDITIONAL))
def test_conditional_layers_take_the_context_as_an_argument(name: str) -> None:
    """Given the context: forward and inverse log-dets match autograd, the inverse inverts, the map depends on it."""
    torch.manual_seed(5)
    flow = randomize(CONDITIONAL[name](6, 3), scale=0.3).double()
    context, other = torch.randn(4, 3, dtype=torch.float64), torch.randn(4, 3, dtype=torch.float64)
    flow(torch.randn(8, 6, dtype=torch.float64), torch.randn(8, 3, dtype=torch.float64))  # ActNorm init
    x = torch.randn(4, 6, dtype=torch.float64)
    z, logdet = flow(x, context)
    pairs = list(zip(x, z, context, strict=True))
    forward = torch.stack([jacobian_logdets(lambda v, c=c: flow(v, c[None])[0], xi[None])[0] for xi, _, c in pairs])
    inverse = torch.stack(
        [jacobian_logdets(lambda v, c=c: flow.inverse(v, c[None]), zi[None])[0] for _, zi, c in pairs]
    )
    assert torch.allclose(logdet, forward, atol=1e-8) and torch.allclose(inverse, -logdet, atol=1e-8)
    assert torch.allclose(flow.inverse(z, context), x, atol=1e-8)
    assert (flow(x, other)[0] - z).abs().max() > 1e-3


@pytest.mark.parametrize("shape", [(5,), (3, 4, 4)])
def test_logit_and_dequantize_logdets(shape: tuple[int, ...]) -> None:
    x = torch.randint(0, 17, (3, *shape)).double() / 17
    for flow in (Logit(0.05), FlowSequential(Dequantize(17), Logit(0.05))):
        assert torch.allclose(layer_logdet(flow, x, seed=1), brute_force_logdet(flow, x, seed=1), atol=1e-8)


@settings(max_examples=5, deadline=None)
@given(shape=shapes, n_bins=st.sampled_from([2, 17, 256]), seed=st.integers(0, 1000))
def test_dequantize_then_logit_inverts_to_the_discrete_levels(shape, n_bins: int, seed: int) -> None:
    torch.manual_seed(seed)
    x = torch.randint(0, n_bins, (4, *shape)).float() / n_bins
    flow = FlowSequential(Dequantize(n_bins), Logit(0.05))
    z, _ = flow(x)
    assert torch.allclose(flow.inverse(z), x, atol=1e-6)


@pytest.mark.parametrize("shape", [(6,), (3, 5, 5)])
def test_actnorm_initialises_to_zero_mean_unit_variance(shape: tuple[int, ...]) -> None:
    torch.manual_seed(0)
    spread = torch.tensor([3.0, 0.5, 7.0] * (shape[0] // 3)).view(1, -1, *[1] * (len(shape) - 1))
    x = torch.randn(64, *shape) * spread + 4
    layer = ActNorm(shape[0])
    assert int(layer.initialized) == 0
    z, _ = layer(x)
    per_channel = z.transpose(0, 1).flatten(1)
    assert torch.allclose(per_channel.mean(1), torch.zeros(shape[0]), atol=1e-5)
    assert torch.allclose(per_channel.std(1, unbiased=False), torch.ones(shape[0]), atol=1e-4)
    assert int(layer.initialized) == 1
    before = layer.bias.clone()
    layer(x * 10)  # a second batch must not re-initialise
    assert torch.equal(layer.bias, before)


def test_actnorm_initialized_flag_is_in_the_state_dict() -> None:
    layer = ActNorm(3)
    layer(torch.randn(10, 3))
    fresh = ActNorm(3)
    fresh.load_state_dict(layer.state_dict())
    assert int(fresh.initialized) == 1
    x = torch.randn(4, 3)
    assert torch.equal(fresh(x)[0], layer(x)[0])


def test_invconv_logdet_is_sum_of_log_abs_diag_u_times_positions() -> None:
    torch.manual_seed(0)
    conv = randomize(InvConv(5))
    x = torch.randn(2, 5, 3, 4)
    _, logdet = conv(x)
    expected = 12 * torch.linalg.slogdet(conv.weight().double()).logabsdet
    assert torch.allclose(logdet.double(), expected.expand(2), atol=1e-4)


def test_checkerboard_mask_alternates_and_channel_mask_halves() -> None:
    img = torch.zeros(1, 2, 4, 4)
    board = make_mask(img, "checkerboard", 0)[0, 0]
    assert board.sum() == 8 and board[0, 0] == 1 and board[0, 1] == 0 and board[1, 0] == 0
    assert torch.equal(make_mask(img, "checkerboard", 1)[0, 0], 1 - board)
    vec = torch.zeros(1, 6)
    assert make_mask(vec, "checkerboard", 0)[0].tolist() == [1, 0, 1, 0, 1, 0]
    assert make_mask(vec, "channel", 0)[0].tolist() == [1, 1, 1, 0, 0, 0]
    assert make_mask(vec, "channel", 1)[0].tolist() == [0, 0, 0, 1, 1, 1]


def test_coupling_starts_as_identity_and_keeps_the_masked_half() -> None:
    torch.manual_seed(0)
    x = torch.randn(5, 4, 4, 4)
    fresh = AffineCoupling(4, ConvNet(8), "channel", 0, "tanh")
    z, logdet = fresh(x)
    assert torch.equal(z, x) and torch.equal(logdet, torch.zeros(5))
    trained = randomize(AffineCoupling(4, ConvNet(8), "channel", 0, "sigmoid"))
    z, _ = trained(x)
    assert torch.equal(z[:, :2], x[:, :2]) and not torch.allclose(z[:, 2:], x[:, 2:])


def test_glow_sigmoid_scale_is_bounded() -> None:
    torch.manual_seed(0)
    coupling = randomize(AffineCoupling(6, MLP(16, 1), "channel", 0, "sigmoid"), scale=5.0)
    _, logdet = coupling(torch.randn(50, 6) * 100)
    assert (logdet <= 0).all() and torch.isfinite(logdet).all()
