"""Shape layers: squeeze / unsqueeze (space-to-channel), flatten, and the multi-scale split."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from sentflow.flows.base import Flow, LogdetEstimator
from sentflow.flows.coupling import AffineCoupling
from sentflow.flows.nets import NetFactory


def squeeze(x: Tensor, factor: int = 2) -> Tensor:
    """(N, C, H, W) -> (N, C*f*f, H/f, W/f), each f x f block moved into channels."""
    n, c, h, w = x.shape
    x = x.view(n, c, h // factor, factor, w // factor, factor)
    return x.permute(0, 1, 3, 5, 2, 4).reshape(n, c * factor * factor, h // factor, w // factor)


def unsqueeze(x: Tensor, factor: int = 2) -> Tensor:
    """Inverse of `squeeze`."""
    n, c, h, w = x.shape
    x = x.view(n, c // (factor * factor), factor, factor, h, w)
    return x.permute(0, 1, 4, 2, 5, 3).reshape(n, c // (factor * factor), h * factor, w * factor)


class Squeeze(Flow):
    """Space-to-channel reshape (RealNVP); volume preserving."""

    def __init__(self, factor: int = 2) -> None:
        super().__init__()
        self.factor = factor

    def forward(
        self, x: Tensor, context: Tensor | None = None, estimator: LogdetEstimator | None = None
    ) -> tuple[Tensor, Tensor]:
        """Data to noise: `(z, logdet)`, logdet of shape (N,), as the layer contract in `sentflow.flows.base` says."""
        return squeeze(x, self.factor), x.new_zeros(x.shape[0])

    def inverse(self, z: Tensor, context: Tensor | None = None) -> Tensor:
        """Noise to data: the `x` whose `forward` gives `z`."""
        return unsqueeze(z, self.factor)


class Unsqueeze(Squeeze):
    """Channel-to-space reshape: closes a multi-scale level so the level keeps its input's shape."""

    def forward(
        self, x: Tensor, context: Tensor | None = None, estimator: LogdetEstimator | None = None
    ) -> tuple[Tensor, Tensor]:
        """Data to noise: `(z, logdet)`, logdet of shape (N,), as the layer contract in `sentflow.flows.base` says."""
        return unsqueeze(x, self.factor), x.new_zeros(x.shape[0])

    def inverse(self, z: Tensor, context: Tensor | None = None) -> Tensor:
        """Noise to data: the `x` whose `forward` gives `z`."""
        return squeeze(z, self.factor)


class Flatten(Flow):
    """(N, *shape) <-> (N, prod(shape)), e.g. NICE on flattened images."""

    def __init__(self, shape: Sequence[int]) -> None:
        super().__init__()
        self.shape = tuple(shape)

    def forward(
        self, x: Tensor, context: Tensor | None = None, estimator: LogdetEstimator | None = None
    ) -> tuple[Tensor, Tensor]:
        """Data to noise: `(z, logdet)`, logdet of shape (N,), as the layer contract in `sentflow.flows.base` says."""
        return x.flatten(1), x.new_zeros(x.shape[0])

    def inverse(self, z: Tensor, context: Tensor | None = None) -> Tensor:
        """Noise to data: the `x` whose `forward` gives `z`."""
        return z.view(z.shape[0], *self.shape)


class Split(Flow):
    """Factor-out (RealNVP / Glow): the first C//2 channels go on to `inner`, the rest get a learned prior.

    The factored-out half x2 gets a Gaussian prior whose mean and scale are predicted from the kept half x1
    (zero-initialised, so it starts as N(0, I)).  Here it is written as the bijection
    eps2 = (x2 - mu(x1)) / sigma(x1), whose logdet -sum(log sigma) plus a N(0, I) prior on eps2 equals
    log N(x2; mu, sigma).  Output: cat(inner(x1), eps2) on the channel dim -- same shape as the input, so
    the split composes like any layer and sampling at temperature T draws x2 = mu + sigma * T * eps.
    Works on (N, D) vectors and (N, C, H, W) images; `inner` must keep its input's shape.
    """

    def __init__(self, channels: int, inner: Flow, net: NetFactory) -> None:
        super().__init__()
        self.inner = inner
        self.prior = AffineCoupling(channels, net, mask="channel", parity=0, scale="tanh")
        self.kept = channels // 2

    def forward(
        self, x: Tensor, context: Tensor | None = None, estimator: LogdetEstimator | None = None
    ) -> tuple[Tensor, Tensor]:
        """Data to noise: `(z, logdet)`, logdet of shape (N,), as the layer contract in `sentflow.flows.base` says."""
        y, logdet = self.prior(x, context, estimator)
        z1, inner_logdet = self.inner(y[:, : self.kept], context, estimator)
        return torch.cat([z1, y[:, self.kept :]], dim=1), logdet + inner_logdet

    def inverse(self, z: Tensor, context: Tensor | None = None) -> Tensor:
        """Noise to data: the `x` whose `forward` gives `z`."""
        x1 = self.inner.inverse(z[:, : self.kept], context)
        return self.prior.inverse(torch.cat([x1, z[:, self.kept :]], dim=1), context)
