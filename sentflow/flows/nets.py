"""Networks for coupling layers. A factory maps (in_channels, out_channels) to a module whose last layer is
zero-initialised, so every coupling starts as the identity."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

NetFactory = Callable[[int, int], nn.Module]


def _zero(layer: nn.Linear | nn.Conv2d) -> nn.Module:
    nn.init.zeros_(layer.weight)
    if layer.bias is not None:
        nn.init.zeros_(layer.bias)
    return layer


@dataclass(frozen=True)
class MLP:
    """Factory for ReLU MLPs on (N, D) vectors: `depth` hidden layers of `hidden` units."""

    hidden: int = 256
    depth: int = 2

    def __call__(self, in_features: int, out_features: int) -> nn.Module:
        layers: list[nn.Module] = []
        width = in_features
        for _ in range(self.depth):
            layers += [nn.Linear(width, self.hidden), nn.ReLU()]
            width = self.hidden
        return nn.Sequential(*layers, _zero(nn.Linear(width, out_features)))


@dataclass(frozen=True)
class ConvNet:
    """Factory for Glow-style conv nets on (N, C, H, W): 3x3 -> ReLU -> 1x1 -> ReLU -> zero 3x3."""

    hidden: int = 64

    def __call__(self, in_channels: int, out_channels: int) -> nn.Module:
        return nn.Sequential(
            nn.Conv2d(in_channels, self.hidden, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(self.hidden, self.hidden, 1),
            nn.ReLU(),
            _zero(nn.Conv2d(self.hidden, out_channels, 3, padding=1)),
        )
