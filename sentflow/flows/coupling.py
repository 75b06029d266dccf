"""Coupling layers: additive (NICE) and affine (RealNVP / Glow) with channel or checkerboard masks.

A binary mask m keeps x*m fixed and transforms the rest: y = m*x + (1-m) * (x * exp(log_scale) + shift),
with (log_scale, shift) computed by a network from x*m.  Channel masks split dim 1 in two halves;
checkerboard masks alternate over (H, W) for images and over features for vectors.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from sentflow.flows.base import Flow, LogdetEstimator
from sentflow.flows.nets import NetFactory

MaskKind = Literal["channel", "checkerboard"]
ScaleKind = Literal["sigmoid", "tanh"]


def make_mask(x: Tensor, kind: MaskKind, parity: int) -> Tensor:
    """1 where x is kept (conditioning), 0 where it is transformed; broadcastable against x."""
    if kind == "channel":
        c = x.shape[1]
        keep = torch.arange(c, device=x.device) < c // 2
        keep = keep if parity == 0 else ~keep
        return keep.to(x.dtype).view(1, c, *([1] * (x.dim() - 2)))
    if kind == "checkerboard":
        grids = torch.meshgrid(*(torch.arange(s, device=x.device) for s in x.shape[2:] or x.shape[1:]), indexing="ij")
        board = (torch.stack(grids).sum(0) + parity) % 2 == 0
        return board.to(x.dtype).view(1, *([1] if x.dim() > 2 else []), *board.shape)
    raise ValueError(f"unknown mask kind {kind!r}")


class AffineCoupling(Flow):
    """Affine coupling with a bounded scale and a zero-initialised network (identity at start).

    scale="sigmoid": Glow's y = (x + t) * sigmoid(s + 2); scale="tanh": RealNVP's y = x * exp(tanh(s)) + t.
    `net` is a factory (in_channels, out_channels) -> module: an MLP for vectors, a conv net for images.
    With `context_features` > 0 the layer is conditional: its network sees cat(x * m, context) on dim 1, and
    every call must pass a `context` of that width.
    """

    def __init__(
        self,
        channels: int,
        net: NetFactory,
        mask: MaskKind = "channel",
        parity: int = 0,
        scale: ScaleKind = "sigmoid",
        context_features: int = 0,
    ) -> None:
        super().__init__()
        if scale not in ("sigmoid", "tanh"):
            raise ValueError(f"unknown scale {scale!r}")
        self.mask_kind, self.parity, self.scale = mask, parity, scale
        self.context_features = context_features
        self.net = net(channels + context_features, self._out_channels(channels))

    def _out_channels(self, channels: int) -> int:
        return 2 * channels

    def _log_scale_shift(self, h: Tensor) -> tuple[Tensor, Tensor]:
        s, t = h.chunk(2, dim=1)
        if self.scale == "sigmoid":
            log_scale = F.logsigmoid(s + 2.0)
            return log_scale, t * log_scale.exp()
        return torch.tanh(s), t

    def _params(self, x: Tensor, context: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
        m = make_mask(x, self.mask_kind, self.parity)
        h = x * m
        if self.context_features:
            if context is None or context.shape[1:] != (self.context_features,):
                got = "none" if context is None else list(context.shape)
                raise ValueError(f"this coupling needs a context of shape (N, {self.context_features}), got {got}")
            h = torch.cat([h, context], dim=1)
        log_scale, shift = self._log_scale_shift(self.net(h))
        return m, log_scale * (1 - m), shift * (1 - m)

    def forward(
        self, x: Tensor, context: Tensor | None = None, estimator: LogdetEstimator | None = None
    ) -> tuple[Tensor, Tensor]:
        """Data to noise: `(z, logdet)`, logdet of shape (N,), as the layer contract in `sentflow.flows.base` says."""
        _, log_scale, shift = self._params(x, context)
        z = x * log_scale.exp() + shift
        return z, log_scale.flatten(1).sum(1)

    def inverse(self, z: Tensor, context: Tensor | None = None) -> Tensor:
        """Noise to data: the `x` whose `forward` gives `z`."""
        _, log_scale, shift = self._params(z, context)
        return (z - shift) * torch.exp(-log_scale)


class AdditiveCoupling(AffineCoupling):
    """NICE's additive coupling y = x + (1-m) * t(x*m): volume preserving (logdet 0)."""

    def __init__(self, channels: int, net: NetFactory, mask: MaskKind = "checkerboard", parity: int = 0) -> None:
        super().__init__(channels, net, mask, parity)

    def _out_channels(self, channels: int) -> int:
        return channels

    def _log_scale_shift(self, h: Tensor) -> tuple[Tensor, Tensor]:
        return torch.zeros_like(h), h
