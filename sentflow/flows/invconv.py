"""Invertible 1x1 convolution (Glow) with an LU parametrisation: logdet in O(C)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from sentflow.flows.base import Flow, LogdetEstimator, spatial_size


class InvConv(Flow):
    """y = W x over the channel dim, W = P L (U + diag(sign * exp(log_s))), initialised to a random rotation.

    On (N, C) vectors this is an invertible linear layer; on (N, C, H, W) a 1x1 convolution.
    logdet = H * W * sum(log_s), i.e. the exact sum of log|diag U|.
    """

    perm: Tensor
    sign: Tensor
    lower_mask: Tensor

    def __init__(self, channels: int) -> None:
        super().__init__()
        q, _ = torch.linalg.qr(torch.randn(channels, channels, dtype=torch.float64))
        p, lower, upper = torch.linalg.lu(q)
        diag = torch.diagonal(upper)
        self.register_buffer("perm", p.float())
        self.register_buffer("sign", torch.sign(diag).float())
        self.register_buffer("lower_mask", torch.tril(torch.ones(channels, channels), -1))
        self.lower = nn.Parameter(lower.float())
        self.upper = nn.Parameter(torch.triu(upper, 1).float())
        self.log_s = nn.Parameter(torch.log(diag.abs()).float())

    def weight(self) -> Tensor:
        """The invertible C x C matrix, rebuilt from its LU factors (permutation, lower, upper, signed diagonal)."""
        eye = torch.eye(self.lower.shape[0], dtype=self.lower.dtype, device=self.lower.device)
        lower = self.lower * self.lower_mask + eye
        upper = self.upper * self.lower_mask.T + torch.diag(self.sign * self.log_s.exp())
        return self.perm @ lower @ upper

    @staticmethod
    def _mix(matrix: Tensor, x: Tensor) -> Tensor:
        return (x.movedim(1, -1) @ matrix.T).movedim(-1, 1)

    def forward(
        self, x: Tensor, context: Tensor | None = None, estimator: LogdetEstimator | None = None
    ) -> tuple[Tensor, Tensor]:
        """Data to noise: `(z, logdet)`, logdet of shape (N,), as the layer contract in `sentflow.flows.base` says."""
        logdet = self.log_s.sum() * spatial_size(x)
        return self._mix(self.weight(), x), logdet.expand(x.shape[0])

    def inverse(self, z: Tensor, context: Tensor | None = None) -> Tensor:
        """Noise to data: the `x` whose `forward` gives `z`."""
        return self._mix(torch.linalg.inv(self.weight()), z)
