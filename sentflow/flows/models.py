"""NICE, RealNVP and Glow for images of shape (C, H, W), plus the name -> class registry.

Every model takes x = k / n_bins in [0, 1) (see `sentflow.flows.base` for bits/dim) and starts with
uniform dequantization.  Constructor arguments are plain JSON values, stored in checkpoints.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from torch import nn

from sentflow.errors import SentflowError
from sentflow.files.io import first_line
from sentflow.flows.actnorm import ActNorm, DiagonalScaling
from sentflow.flows.base import COUNT, NUMBER, WIDTH, Flow, FlowModel, FlowSequential
from sentflow.flows.coupling import AdditiveCoupling, AffineCoupling
from sentflow.flows.fvae import FVAE
from sentflow.flows.invconv import InvConv
from sentflow.flows.iresnet import IResNet
from sentflow.flows.nets import MLP, ConvNet
from sentflow.flows.preprocess import Dequantize, Logit
from sentflow.flows.priors import PRIORS
from sentflow.flows.reshape import Flatten, Split, Squeeze, Unsqueeze

PRIOR_STD = {"logistic": math.pi / math.sqrt(3.0), "normal": 1.0}


class NICE(FlowModel):
    """NICE (Dinh et al. 2014): flatten, `couplings` additive couplings of ReLU MLPs (`depth` hidden layers of
    `hidden` units; the paper uses 4 couplings, 5 x 1000 on MNIST) with alternating odd/even partitions, a
    diagonal scaling, and a logistic prior by default (prior="normal" for Gaussian). No logit: data in [0, 1).
    The scaling starts at prior std / data std (uniform on [0, 1): 1/sqrt(12)) instead of 1: Adam moves a
    log-scale by about lr per step, so from 1 the model stayed worse than uniform for thousands of steps.
    """

    name = "nice"
    _parameter_constraints = {
        **FlowModel._parameter_constraints,
        "hidden": WIDTH,
        "depth": COUNT,
        "couplings": COUNT,
        "prior": None,  # a name, checked by the constructor
    }

    def __init__(
        self,
        data_shape: Sequence[int] = (1, 8, 8),
        n_bins: int = 17,
        hidden: int = 1000,
        depth: int = 5,
        couplings: int = 4,
        prior: str = "logistic",
    ) -> None:
        if prior not in PRIORS:
            raise SentflowError(f"unknown prior {prior!r}; choose one of {sorted(PRIORS)}")
        d = math.prod(data_shape)
        layers: list[Flow] = [Dequantize(n_bins), Flatten(data_shape)]
        layers += [AdditiveCoupling(d, MLP(hidden, depth), "checkerboard", i % 2) for i in range(couplings)]
        scaling = DiagonalScaling(d)
        nn.init.constant_(scaling.log_scale, math.log(PRIOR_STD[prior] * math.sqrt(12.0)))
        layers.append(scaling)
        config = {"hidden": hidden, "depth": depth, "couplings": couplings, "prior": prior}
        flow = FlowSequential(*layers)
        super().__init__(flow, PRIORS[prior](), data_shape, n_bins, config, latent_shape=(d,))


def _realnvp_scale(channels: int, size: int, scales_left: int, hidden: int) -> Flow:
    """One RealNVP scale on (channels, size, size): 3 checkerboard couplings, squeeze, 3 channel couplings,
    factor out half and recurse; the last scale has 4 checkerboard couplings.  Keeps the input shape."""
    net = ConvNet(hidden)
    if scales_left == 1 or size % 2:
        return FlowSequential(*(AffineCoupling(channels, net, "checkerboard", i % 2, "tanh") for i in range(4)))
    c4 = 4 * channels
    inner = _realnvp_scale(c4 // 2, size // 2, scales_left - 1, hidden)
    return FlowSequential(
        *(AffineCoupling(channels, net, "checkerboard", i % 2, "tanh") for i in range(3)),
        Squeeze(),
        *(AffineCoupling(c4, net, "channel", i % 2, "tanh") for i in range(3)),
        Split(c4, inner, net),
        Unsqueeze(),
    )


class RealNVP(FlowModel):
    """RealNVP (Dinh et al. 2016): logit pre-processing, then `scales` multi-scale levels of affine couplings
    (tanh-bounded scale, conv nets of width `hidden`), factoring out half of the channels per level with a
    learned conditional Gaussian prior.  Simplification: plain conv nets, no batch norm / ResNets."""

    name = "realnvp"
    _parameter_constraints = {**FlowModel._parameter_constraints, "hidden": WIDTH, "scales": COUNT, "alpha": NUMBER}

    def __init__(
        self,
        data_shape: Sequence[int] = (1, 8, 8),
        n_bins: int = 17,
        hidden: int = 64,
        scales: int = 2,
        alpha: float = 0.05,
    ) -> None:
        c, h, _ = data_shape
        flow = FlowSequential(Dequantize(n_bins), Logit(alpha), _realnvp_scale(c, h, scales, hidden))
        config = {"hidden": hidden, "scales": scales, "alpha": alpha}
        super().__init__(flow, PRIORS["normal"](), data_shape, n_bins, config)


def _glow_level(channels: int, levels_left: int, steps: int, hidden: int) -> Flow:
    """Squeeze, `steps` x (ActNorm, 1x1 conv, affine coupling), split and recurse; keeps the input shape."""
    c4 = 4 * channels
    net = ConvNet(hidden)
    body: list[Flow] = [Squeeze()]
    for _ in range(steps):
        body += [ActNorm(c4), InvConv(c4), AffineCoupling(c4, net, "channel", 0, "sigmoid")]
    if levels_left > 1:
        body.append(Split(c4, _glow_level(c4 // 2, levels_left - 1, steps, hidden), net))
    return FlowSequential(*body, Unsqueeze())


class Glow(FlowModel):
    """Glow (Kingma & Dhariwal 2018): `levels` levels x `steps` steps of ActNorm, LU 1x1 conv and affine
    coupling (zero-initialised, scale sigmoid(s + 2)), conv nets of width `hidden`; split latents get a
    learned conditional Gaussian prior.  As in the paper there is no logit (the first ActNorm centres the
    input); logit=True adds RealNVP's logit pre-processing (an ablation)."""

    name = "glow"
    _parameter_constraints = {
        **FlowModel._parameter_constraints,
        "levels": COUNT,
        "steps": COUNT,
        "hidden": WIDTH,
        "logit": None,
    }

    def __init__(
        self,
        data_shape: Sequence[int] = (1, 8, 8),
        n_bins: int = 17,
        levels: int = 2,
        steps: int = 8,
        hidden: int = 64,
        logit: bool = False,
    ) -> None:
        c, h, w = data_shape
        if h % (2**levels) or w % (2**levels):
            raise SentflowError(f"Glow with {levels} levels needs H and W divisible by {2**levels}, got {h}x{w}")
        pre: list[Flow] = [Dequantize(n_bins), *([Logit()] if logit else [])]
        flow = FlowSequential(*pre, _glow_level(c, levels, steps, hidden))
        config = {"levels": levels, "steps": steps, "hidden": hidden, "logit": logit}
        super().__init__(flow, PRIORS["normal"](), data_shape, n_bins, config)


MODELS: dict[str, type[FlowModel]] = {"nice": NICE, "realnvp": RealNVP, "glow": Glow, "iresnet": IResNet, "fvae": FVAE}


def check_config(name: str, config: dict) -> None:
    """Bound every number of a model config by the bounds its class declares, before anything is allocated."""
    constraints = MODELS[name]._parameter_constraints
    for key, value in config.items():
        bounds = constraints.get(key)
        if bounds is None:  # not a number (a name, a switch): the constructor checks it
            continue
        low, high = bounds
        for item in value if isinstance(value, list | tuple) else [value]:
            if isinstance(item, bool) or not isinstance(item, int | float):
                continue
            if not (math.isfinite(item) and low <= item <= high):
                raise SentflowError(f"config of model {name!r}: {key}={item} is out of range ({low:g} to {high:g})")


def _check_keys(name: str, config: dict) -> None:
    """Refuse options the model's constructor does not take, listing the ones it does."""
    import inspect

    taken = [p for p in inspect.signature(MODELS[name]).parameters if p not in ("self", "data_shape", "n_bins")]
    unknown = sorted(set(config) - {*taken, "data_shape", "n_bins"})
    if unknown:
        raise SentflowError(f"unknown option(s) {', '.join(unknown)} for model {name!r}; valid: {', '.join(taken)}")


def build_model(name: str, **config) -> FlowModel:
    """Instantiate a registered model by name with its constructor config (numbers bounded first)."""
    if name not in MODELS:
        raise SentflowError(f"unknown model {name!r}; choose one of {sorted(MODELS)}")
    _check_keys(name, config)
    check_config(name, config)
    try:
        return MODELS[name](**config)
    except SentflowError:
        raise
    except (TypeError, ValueError, RuntimeError) as exc:  # e.g. a negative width reaching torch
        raise SentflowError(f"bad config for model {name!r}: {first_line(exc)}") from None
