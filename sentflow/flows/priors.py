"""Fixed base distributions over z; log_prob sums over every non-batch dimension."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class StandardNormal(nn.Module):
    """N(0, I); sampling at temperature T draws from N(0, T^2 I)."""

    def log_prob(self, z: Tensor) -> Tensor:
        """Log-density of each example, summed over its dimensions: shape (N,)."""
        return (-0.5 * (z**2 + math.log(2 * math.pi))).flatten(1).sum(1)

    def sample(self, shape: tuple[int, ...], temperature: float, device: torch.device) -> Tensor:
        """Draws of `shape` from N(0, I), scaled by `temperature`."""
        return torch.randn(shape, device=device) * temperature


class StandardLogistic(nn.Module):
    """Logistic(0, 1) per dimension, NICE's prior for images; temperature scales the samples."""

    def log_prob(self, z: Tensor) -> Tensor:
        """Log-density of each example, summed over its dimensions: shape (N,)."""
        return (-(F.softplus(z) + F.softplus(-z))).flatten(1).sum(1)

    def sample(self, shape: tuple[int, ...], temperature: float, device: torch.device) -> Tensor:
        """Draws of `shape` from the standard logistic, scaled by `temperature`."""
        u = torch.rand(shape, device=device).clamp(1e-6, 1 - 1e-6)
        return (torch.log(u) - torch.log1p(-u)) * temperature


PRIORS = {"normal": StandardNormal, "logistic": StandardLogistic}
