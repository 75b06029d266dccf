"""The layer contract, the sequential container and the model base with log_prob / sample / bits_per_dim.

Bits/dim convention: data are integer levels k in {0, ..., n_bins-1} scaled to x = k / n_bins in [0, 1).
Uniform dequantization gives y = (k + u) / n_bins with a density p(y) on [0, 1)^D, and
``bpd = -(log p(y) - D * log(n_bins)) / (D * ln 2)``: the D*log(n_bins) term turns the continuous density
on [0, 1)^D into a (lower bound on the) probability mass of the discrete data.  Every pre-processing layer
(logit, scaling, ...) is part of the flow, so its log-determinant is inside log p(y).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, cast

import torch
from torch import Tensor, nn


@dataclass(frozen=True)
class LogdetEstimator:
    """How a layer whose log-determinant is estimated computes it: exactly, or with `terms` power-series terms and
    `probes` Hutchinson probes (i-ResNet).  Layers with a closed-form log-determinant ignore it."""

    exact: bool = False
    terms: int = 5
    probes: int = 1

    def __str__(self) -> str:
        if self.exact:
            return "exact log-det (brute-force Jacobian)"
        return f"power series, {self.terms} terms, {self.probes} Hutchinson probe(s)"


class Flow(nn.Module):
    """An invertible block: ``forward(x, context, estimator) -> (z, logdet)`` (data to noise, logdet (N,)) and
    ``inverse(z, context) -> x``.

    Everything that changes what a layer computes is an argument of the call, never state set beforehand:
    `context` (N, K) conditions the layers that take one (f-VAE's decoder) and is ignored by the others;
    `estimator` chooses how estimated log-determinants are computed (i-ResNet) and is ignored by exact layers.
    The channel dimension is dim 1, so every layer works on (N, C) vectors and (N, C, H, W) images.
    """

    def forward(
        self, x: Tensor, context: Tensor | None = None, estimator: LogdetEstimator | None = None
    ) -> tuple[Tensor, Tensor]:
        """Data to noise: `(z, logdet)`, logdet of shape (N,), as the layer contract in `sentflow.flows.base` says."""
        raise NotImplementedError

    def inverse(self, z: Tensor, context: Tensor | None = None) -> Tensor:
        """Noise to data: the `x` whose `forward` gives `z`."""
        raise NotImplementedError


class FlowSequential(Flow):
    """Apply flows in order, passing the context and estimator to each; log-determinants add up."""

    def __init__(self, *flows: Flow) -> None:
        super().__init__()
        self.flows = nn.ModuleList(flows)

    def steps(self) -> list[Flow]:
        """The flows, in order."""
        return cast(list[Flow], list(self.flows))

    def forward(
        self, x: Tensor, context: Tensor | None = None, estimator: LogdetEstimator | None = None
    ) -> tuple[Tensor, Tensor]:
        """Data to noise: `(z, logdet)`, logdet of shape (N,), as the layer contract in `sentflow.flows.base` says."""
        logdet = x.new_zeros(x.shape[0])
        for flow in self.flows:
            x, ld = flow(x, context, estimator)
            logdet = logdet + ld
        return x, logdet

    def inverse(self, z: Tensor, context: Tensor | None = None) -> Tensor:
        """Noise to data: the `x` whose `forward` gives `z`."""
        for flow in reversed(self.steps()):
            z = flow.inverse(z, context)
        return z


def log_density(
    flow: Flow, prior: Any, x: Tensor, context: Tensor | None = None, estimator: LogdetEstimator | None = None
) -> Tensor:
    """log p(x) = log prior(z) + log|det dz/dx| (nats, shape (N,)) of a flow x -> z onto `prior`."""
    z, logdet = flow(x, context, estimator)
    return prior.log_prob(z) + logdet


def bits_per_dim(log_prob: Tensor, n_dims: int, n_bins: int) -> Tensor:
    """Mean bits/dim of per-example log densities of dequantized data: -(log p(y) - D log n) / (D ln 2)."""
    return -(log_prob - n_dims * math.log(n_bins)).mean() / (n_dims * math.log(2.0))


def channel_view(param: Tensor, x: Tensor) -> Tensor:
    """Reshape a per-channel vector (C,) to broadcast against x of shape (N, C, ...)."""
    return param.view(1, -1, *([1] * (x.dim() - 2)))


def spatial_size(x: Tensor) -> int:
    """Number of positions per channel: 1 for vectors, H*W for images."""
    return math.prod(x.shape[2:])


COUNT = (1, 256)  # layers, steps, blocks ...: a config asking for more is damaged or hostile
WIDTH = (1, 1 << 16)  # widths, shapes, bins, samples, iterations
NUMBER = (-(1 << 16), 1 << 16)  # real-valued options (the models check their own ranges)


class FlowModel(nn.Module):
    """A flow from data to a fixed prior, with a JSON-able constructor config that rebuilds it.

    Subclasses declare `_parameter_constraints`: the (low, high) bounds of each numeric constructor option, checked
    by `build_model` before anything is allocated (the constructors check what depends on several options)."""

    flow: Flow
    prior: Any  # StandardNormal or StandardLogistic: log_prob(z) and sample(shape, temperature, device)

    name: str = "flow"
    _parameter_constraints: ClassVar[dict[str, tuple[float, float] | None]] = {"data_shape": WIDTH, "n_bins": WIDTH}

    def __init__(
        self,
        flow: Flow,
        prior: nn.Module,
        data_shape: Sequence[int],
        n_bins: int,
        config: dict,
        latent_shape: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        self.flow = flow
        self.prior = prior
        self.data_shape = tuple(int(s) for s in data_shape)
        self.n_bins = int(n_bins)
        self.latent_shape = tuple(latent_shape or self.data_shape)
        self.config = dict(config, data_shape=list(self.data_shape), n_bins=self.n_bins)

    @property
    def n_dims(self) -> int:
        return math.prod(self.data_shape)

    def log_prob(self, x: Tensor, estimator: LogdetEstimator | None = None) -> Tensor:
        """Log density (nats) of the dequantized data on [0, 1)^D, shape (N,)."""
        return log_density(self.flow, self.prior, x, estimator=estimator)

    def bits_per_dim(self, x: Tensor, estimator: LogdetEstimator | None = None) -> Tensor:
        """Mean bits/dim of a batch: -(log p(y) - D log n_bins) / (D ln 2), see the module docstring."""
        return bits_per_dim(self.log_prob(x, estimator), self.n_dims, self.n_bins)

    @torch.no_grad()
    def sample(self, n: int, temperature: float = 1.0) -> Tensor:
        """Draw n images (discrete levels / n_bins) from the prior scaled by `temperature`."""
        device = next(self.parameters()).device
        z = self.prior.sample((n, *self.latent_shape), temperature, device)
        return self.flow.inverse(z)
