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

import torch
from torch import Tensor, nn


class Flow(nn.Module):
    """An invertible block: ``forward(x) -> (z, logdet)`` (data to noise, logdet (N,)), ``inverse(z) -> x``.

    The channel dimension is dim 1, so every layer works on (N, C) vectors and (N, C, H, W) images.
    """

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        raise NotImplementedError

    def inverse(self, z: Tensor) -> Tensor:
        raise NotImplementedError


class FlowSequential(Flow):
    """Apply flows in order; log-determinants add up."""

    def __init__(self, *flows: Flow) -> None:
        super().__init__()
        self.flows = nn.ModuleList(flows)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        logdet = x.new_zeros(x.shape[0])
        for flow in self.flows:
            x, ld = flow(x)
            logdet = logdet + ld
        return x, logdet

    def inverse(self, z: Tensor) -> Tensor:
        for flow in reversed(self.flows):
            z = flow.inverse(z)
        return z


def channel_view(param: Tensor, x: Tensor) -> Tensor:
    """Reshape a per-channel vector (C,) to broadcast against x of shape (N, C, ...)."""
    return param.view(1, -1, *([1] * (x.dim() - 2)))


def spatial_size(x: Tensor) -> int:
    """Number of positions per channel: 1 for vectors, H*W for images."""
    return math.prod(x.shape[2:])


class FlowModel(nn.Module):
    """A flow from data to a fixed prior, with a JSON-able constructor config that rebuilds it."""

    name: str = "flow"

    def __init__(self, flow: Flow, prior: nn.Module, data_shape: Sequence[int], n_bins: int,
                 config: dict, latent_shape: Sequence[int] | None = None) -> None:
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

    def log_prob(self, x: Tensor) -> Tensor:
        """Log density (nats) of the dequantized data on [0, 1)^D, shape (N,)."""
        z, logdet = self.flow(x)
        return self.prior.log_prob(z) + logdet

    def bits_per_dim(self, x: Tensor) -> Tensor:
        """Mean bits/dim of a batch: -(log p(y) - D log n_bins) / (D ln 2), see the module docstring."""
        d = self.n_dims
        return -(self.log_prob(x) - d * math.log(self.n_bins)).mean() / (d * math.log(2.0))

    @torch.no_grad()
    def sample(self, n: int, temperature: float = 1.0) -> Tensor:
        """Draw n images (discrete levels / n_bins) from the prior scaled by `temperature`."""
        device = next(self.parameters()).device
        z = self.prior.sample((n, *self.latent_shape), temperature, device)
        return self.flow.inverse(z)
