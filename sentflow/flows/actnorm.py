"""Per-channel scaling layers: NICE's diagonal scaling and Glow's ActNorm."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from sentflow.flows.base import Flow, LogdetEstimator, channel_view, spatial_size


class DiagonalScaling(Flow):
    """NICE's final layer: z = x * exp(log_scale) per channel (per feature on vectors)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.log_scale = nn.Parameter(torch.zeros(channels))

    def _bias(self, x: Tensor) -> Tensor | float:
        return 0.0

    def forward(
        self, x: Tensor, context: Tensor | None = None, estimator: LogdetEstimator | None = None
    ) -> tuple[Tensor, Tensor]:
        """Data to noise: `(z, logdet)`, logdet of shape (N,), as the layer contract in `sentflow.flows.base` says."""
        z = (x + self._bias(x)) * channel_view(self.log_scale.exp(), x)
        logdet = self.log_scale.sum() * spatial_size(x)
        return z, logdet.expand(x.shape[0])

    def inverse(self, z: Tensor, context: Tensor | None = None) -> Tensor:
        """Noise to data: the `x` whose `forward` gives `z`."""
        return z * channel_view(torch.exp(-self.log_scale), z) - self._bias(z)


class ActNorm(DiagonalScaling):
    """Glow's y = (x + bias) * exp(log_scale) per channel; the first forward sets zero mean / unit variance.

    The ``initialized`` buffer is saved with the state dict, so a loaded model is not re-initialised.
    """

    initialized: Tensor

    def __init__(self, channels: int, eps: float = 1e-6) -> None:
        super().__init__(channels)
        self.bias = nn.Parameter(torch.zeros(channels))
        self.register_buffer("initialized", torch.tensor(0, dtype=torch.uint8))
        self.eps = eps

    def _bias(self, x: Tensor) -> Tensor:
        return channel_view(self.bias, x)

    @torch.no_grad()
    def _initialize(self, x: Tensor) -> None:
        per_channel = x.transpose(0, 1).flatten(1)
        self.bias.copy_(-per_channel.mean(1))
        self.log_scale.copy_(-torch.log(per_channel.std(1, unbiased=False) + self.eps))
        self.initialized.fill_(1)

    def forward(
        self, x: Tensor, context: Tensor | None = None, estimator: LogdetEstimator | None = None
    ) -> tuple[Tensor, Tensor]:
        """Data to noise: `(z, logdet)`, logdet of shape (N,), as the layer contract in `sentflow.flows.base` says."""
        if not self.initialized:
            self._initialize(x)
        return super().forward(x)
