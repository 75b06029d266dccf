"""The autograd oracle every log-determinant test uses: per-example Jacobians of a batched map."""

from __future__ import annotations

from collections.abc import Callable

import torch


def jacobians(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, seed: int | None = None) -> torch.Tensor:
    """(N, D, D) Jacobians of the batched map fn at each example of x, one example at a time.

    `seed` re-seeds torch before every evaluation, which fixes any sampling inside fn (dequantization).
    """

    def single(v: torch.Tensor) -> torch.Tensor:
        if seed is not None:
            torch.manual_seed(seed)
        return fn(v.unsqueeze(0))[0].flatten()

    return torch.stack([torch.autograd.functional.jacobian(single, xi).reshape(-1, xi.numel()) for xi in x])


def jacobian_logdets(
    fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, seed: int | None = None
) -> torch.Tensor:
    """log|det J_fn(x_i)| for each example, shape (N,)."""
    return torch.linalg.slogdet(jacobians(fn, x, seed)).logabsdet
