"""Pre-processing as flow layers: uniform dequantization and the logit transform.

Their log-determinants are part of log p, so bits/dim counts them (see `sentflow.flows.base`).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from sentflow.flows.base import Flow, LogdetEstimator


class Dequantize(Flow):
    """x = k / n_bins -> y = (k + u) / n_bins with u ~ U[0, 1); inverse rounds back down to the level.

    The Jacobian of y w.r.t. x is the identity (logdet 0); the cell volume n_bins^-D enters bits/dim as
    the D * log(n_bins) term.
    """

    def __init__(self, n_bins: int) -> None:
        super().__init__()
        self.n_bins = n_bins

    def forward(
        self, x: Tensor, context: Tensor | None = None, estimator: LogdetEstimator | None = None
    ) -> tuple[Tensor, Tensor]:
        """Data to noise: `(z, logdet)`, logdet of shape (N,), as the layer contract in `sentflow.flows.base` says."""
        return x + torch.rand_like(x) / self.n_bins, x.new_zeros(x.shape[0])

    def inverse(self, z: Tensor, context: Tensor | None = None) -> Tensor:
        """Noise to data: the `x` whose `forward` gives `z`."""
        return torch.floor(z.clamp(0, 1 - 0.5 / self.n_bins) * self.n_bins) / self.n_bins


class Logit(Flow):
    """RealNVP's y = logit(alpha + (1 - 2 alpha) x) for x in [0, 1], with its exact logdet."""

    def __init__(self, alpha: float = 0.05) -> None:
        super().__init__()
        self.alpha = alpha

    def forward(
        self, x: Tensor, context: Tensor | None = None, estimator: LogdetEstimator | None = None
    ) -> tuple[Tensor, Tensor]:
        """Data to noise: `(z, logdet)`, logdet of shape (N,), as the layer contract in `sentflow.flows.base` says."""
        s = self.alpha + (1 - 2 * self.alpha) * x
        y = torch.log(s) - torch.log1p(-s)
        logdet = math.log(1 - 2 * self.alpha) + F.softplus(y) + F.softplus(-y)
        return y, logdet.flatten(1).sum(1)

    def inverse(self, z: Tensor, context: Tensor | None = None) -> Tensor:
        """Noise to data: the `x` whose `forward` gives `z`."""
        return (torch.sigmoid(z) - self.alpha) / (1 - 2 * self.alpha)
