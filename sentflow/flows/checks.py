"""Input validation shared by the models whose log-likelihood is not a plain flow pass (i-ResNet, f-VAE)."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor

from sentflow.errors import SentflowError


def check_batch(x: Tensor, data_shape: Sequence[int], model: str) -> None:
    """Refuse anything but a floating (N, *data_shape) batch, with a one-line SentflowError."""
    if not x.is_floating_point() or tuple(x.shape[1:]) != tuple(data_shape) or x.dim() != len(data_shape) + 1:
        raise SentflowError(
            f"{model} expects a float batch of shape (N, {', '.join(map(str, data_shape))}), "
            f"got {x.dtype} {list(x.shape)}"
        )


def check_range(name: str, value: float, low: float, high: float) -> None:
    """Refuse a model option outside the open interval (low, high)."""
    if not low < value < high:
        raise SentflowError(f"{name} must be in ({low}, {high}), got {value}")
