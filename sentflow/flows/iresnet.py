"""Invertible ResNet (Behrmann et al. 2019): residual blocks y = x + g(x) with Lip(g) < 1.

Every convolution of g is rescaled so that its operator norm on the block's input shape (estimated by power
iteration with conv2d / conv_transpose2d) is at most `coeff` < 1; with 1-Lipschitz ELUs in between,
Lip(g) <= coeff^3, so the block is invertible by the fixed-point iteration x <- y - g(x).

log|det(I + J_g)| is either the power series sum_k (-1)^(k+1) tr(J_g^k) / k with Hutchinson probes
(training; a truncated, slightly biased estimate) or the exact slogdet of the brute-force Jacobian (small
inputs, evaluation).  The model picks the estimator from the mode and reports it in `estimator`.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sentflow.errors import SentflowError
from sentflow.flows.actnorm import ActNorm
from sentflow.flows.base import COUNT, NUMBER, WIDTH, Flow, FlowModel, FlowSequential, LogdetEstimator
from sentflow.flows.checks import check_batch, check_range
from sentflow.flows.nets import ConvNet
from sentflow.flows.preprocess import Dequantize, Logit
from sentflow.flows.priors import StandardNormal
from sentflow.flows.reshape import Split, Squeeze, Unsqueeze


class SpectralConv(nn.Module):
    """A stride-1 'same' conv2d whose operator norm on (in_channels, *size) inputs is kept <= coeff.

    The power-iteration vector `u` lives in input space (a buffer, so checkpoints keep it); training
    forwards with gradients refine it by `power_iterations` steps; evaluation and inverses use it as is.
    """

    u: Tensor

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel: int,
        size: Sequence[int],
        coeff: float,
        power_iterations: int = 1,
    ) -> None:
        super().__init__()
        conv = nn.Conv2d(in_channels, out_channels, kernel, padding=kernel // 2)
        self.weight, self.bias = conv.weight, conv.bias
        self.padding, self.coeff, self.power_iterations = kernel // 2, coeff, power_iterations
        u = torch.randn(1, in_channels, *size)
        self.register_buffer("u", u / u.norm())
        self.refine(50)

    @torch.no_grad()
    def refine(self, iterations: int) -> None:
        """Power iteration on A^T A, A the convolution operator: u <- A^T A u / ||A^T A u||."""
        u = self.u
        for _ in range(iterations):
            u = F.conv_transpose2d(F.conv2d(u, self.weight, padding=self.padding), self.weight, padding=self.padding)
            u = u / u.norm()
        self.u.copy_(u)

    def sigma(self) -> Tensor:
        """Estimated largest singular value ||A u|| (differentiable in the weight)."""
        return F.conv2d(self.u, self.weight, padding=self.padding).norm()

    def normalized_weight(self) -> Tensor:
        """The weight rescaled so that its estimated operator norm is at most `coeff`."""
        return self.weight * (self.coeff / self.sigma()).clamp(max=1.0)

    def forward(self, x: Tensor) -> Tensor:
        """The convolution with the normalised weight (refining the power iteration first while training)."""
        if self.training and torch.is_grad_enabled():
            self.refine(self.power_iterations)
        return F.conv2d(x, self.normalized_weight(), self.bias, padding=self.padding)


@dataclass
class InverseReport:
    """Outcome of the last fixed-point inverse: iterations used and max |x + g(x) - y| reached."""

    iterations: int
    residual: float


def exact_jacobian(fn: Callable[[Tensor], Tensor], x: Tensor, create_graph: bool = False) -> Tensor:
    """(N, D, D) Jacobians of a per-example map by D backward passes (examples must not interact)."""
    with torch.enable_grad():
        x = x if x.requires_grad else x.detach().requires_grad_()
        y = fn(x).flatten(1)
        rows = [
            torch.autograd.grad(y[:, i].sum(), x, retain_graph=True, create_graph=create_graph)[0]
            for i in range(y.shape[1])
        ]
    return torch.stack([r.flatten(1) for r in rows], dim=1)


def series_logdet(gx: Tensor, x: Tensor, terms: int, probes: int, create_graph: bool) -> Tensor:
    """sum_{k<=terms} (-1)^(k+1) v^T J^k v / k averaged over Gaussian probes v; gx = g(x) with x in the graph."""
    total = x.new_zeros(x.shape[0])
    for _ in range(probes):
        v = torch.randn_like(x)
        w = v
        for k in range(1, terms + 1):
            w = torch.autograd.grad(gx, x, w, retain_graph=True, create_graph=create_graph)[0]
            total = total + (-1) ** (k + 1) * (w * v).flatten(1).sum(1) / k
    return total / probes


class ResidualBlock(Flow):
    """y = x + g(x), g = SpectralConv 3x3 -> ELU -> 1x1 -> ELU -> 3x3, each conv normalised to `coeff`."""

    def __init__(
        self,
        channels: int,
        size: Sequence[int],
        hidden: int,
        coeff: float = 0.9,
        power_iterations: int = 1,
        tol: float = 1e-6,
        max_iterations: int = 200,
    ) -> None:
        super().__init__()
        self.g = nn.Sequential(
            SpectralConv(channels, hidden, 3, size, coeff, power_iterations),
            nn.ELU(),
            SpectralConv(hidden, hidden, 1, size, coeff, power_iterations),
            nn.ELU(),
            SpectralConv(hidden, channels, 3, size, coeff, power_iterations),
        )
        self.tol, self.max_iterations = tol, max_iterations
        self.last_inverse: InverseReport | None = None

    def forward(
        self, x: Tensor, context: Tensor | None = None, estimator: LogdetEstimator | None = None
    ) -> tuple[Tensor, Tensor]:
        """y = x + g(x) and log|det(I + J_g)| by `estimator` (default: the 5-term, 1-probe power series)."""
        estimator = estimator or LogdetEstimator()
        graph = torch.is_grad_enabled()
        if estimator.exact:
            gx = self.g(x)
            eye = torch.eye(x[0].numel(), device=x.device, dtype=x.dtype)
            jac = exact_jacobian(self.g, x, create_graph=graph)
            return x + gx, torch.linalg.slogdet(eye + jac).logabsdet
        with torch.enable_grad():
            xg = x if x.requires_grad else x.detach().requires_grad_()
            gx = self.g(xg)
            logdet = series_logdet(gx, xg, estimator.terms, estimator.probes, graph)
        y = xg + gx
        return (y, logdet) if graph else (y.detach(), logdet.detach())

    @torch.no_grad()
    def inverse(self, z: Tensor, context: Tensor | None = None) -> Tensor:
        """Noise to data by the fixed-point iteration `x <- z - g(x)`; the residual reached is in `last_inverse`."""
        x, step, it = z.clone(), math.inf, 0
        while step >= self.tol and it < self.max_iterations:
            x_next = z - self.g(x)
            step, x, it = (x_next - x).abs().max().item(), x_next, it + 1
        self.last_inverse = InverseReport(it, (x + self.g(x) - z).abs().max().item())
        if step >= self.tol:
            warnings.warn(
                f"i-ResNet inverse stopped at the cap of {self.max_iterations} fixed-point iterations "
                f"(last step {step:.2e} >= tol {self.tol:.0e}, residual {self.last_inverse.residual:.2e})",
                stacklevel=2,
            )
        return x


def _level(
    channels: int, size: int, levels_left: int, blocks: int, hidden: int, coeff: float, power_iterations: int
) -> Flow:
    """`blocks` x (ActNorm, residual block), then squeeze, factor out half (learned Gaussian) and recurse."""
    body: list[Flow] = []
    for _ in range(blocks):
        body += [ActNorm(channels), ResidualBlock(channels, (size, size), hidden, coeff, power_iterations)]
    if levels_left > 1:
        c4 = 4 * channels
        inner = _level(c4 // 2, size // 2, levels_left - 1, blocks, hidden, coeff, power_iterations)
        body += [Squeeze(), Split(c4, inner, ConvNet(hidden)), Unsqueeze()]
    return FlowSequential(*body)


class IResNet(FlowModel):
    """Multi-scale i-ResNet density model: dequantize, logit, then `levels` levels of `blocks` x (ActNorm,
    residual block of width `hidden`) with squeeze + factor-out between levels (RealNVP-style).

    Training uses the power series with `terms` terms and `probes` probes; evaluation uses the exact
    log-det when a block sees at most `exact_max_dims` dimensions, else the series with `eval_terms` /
    `eval_probes`.
    """

    name = "iresnet"
    _parameter_constraints = {
        **FlowModel._parameter_constraints,
        "levels": COUNT,
        "blocks": COUNT,
        "hidden": WIDTH,
        "coeff": NUMBER,
        "power_iterations": WIDTH,
        "terms": WIDTH,
        "probes": WIDTH,
        "exact_max_dims": WIDTH,
        "eval_terms": WIDTH,
        "eval_probes": WIDTH,
        "alpha": NUMBER,
    }

    def __init__(
        self,
        data_shape: Sequence[int] = (1, 8, 8),
        n_bins: int = 17,
        levels: int = 2,
        blocks: int = 4,
        hidden: int = 32,
        coeff: float = 0.9,
        power_iterations: int = 1,
        terms: int = 5,
        probes: int = 1,
        exact_max_dims: int = 256,
        eval_terms: int = 20,
        eval_probes: int = 4,
        alpha: float = 0.05,
    ) -> None:
        c, h, w = data_shape
        check_range("coeff", coeff, 0.0, 1.0)
        if h != w or h % 2 ** (levels - 1):
            raise SentflowError(
                f"i-ResNet with {levels} levels needs square images with a side divisible by "
                f"{2 ** (levels - 1)}, got {h}x{w}"
            )
        if min(levels, blocks, hidden, terms, probes, eval_terms, eval_probes) < 1:
            raise SentflowError("i-ResNet levels, blocks, hidden, terms and probes must be >= 1")
        body = _level(c, h, levels, blocks, hidden, coeff, power_iterations)
        flow = FlowSequential(Dequantize(n_bins), Logit(alpha), body)
        config = {
            "levels": levels,
            "blocks": blocks,
            "hidden": hidden,
            "coeff": coeff,
            "power_iterations": power_iterations,
            "terms": terms,
            "probes": probes,
            "exact_max_dims": exact_max_dims,
            "eval_terms": eval_terms,
            "eval_probes": eval_probes,
            "alpha": alpha,
        }
        super().__init__(flow, StandardNormal(), data_shape, n_bins, config)
        self.train_estimator = LogdetEstimator(False, terms, probes)
        exact = math.prod(data_shape) <= exact_max_dims
        self.eval_estimator = LogdetEstimator(exact, eval_terms, eval_probes)

    @property
    def blocks(self) -> list[ResidualBlock]:
        return [m for m in self.modules() if isinstance(m, ResidualBlock)]

    @property
    def estimator(self) -> str:
        """The log-det estimator the current mode (train / eval) uses."""
        return str(self.train_estimator if self.training else self.eval_estimator)

    def log_prob(self, x: Tensor, estimator: LogdetEstimator | None = None) -> Tensor:
        """log p(x) with `estimator`, by default the one of the current mode (see `estimator`)."""
        check_batch(x, self.data_shape, self.name)
        return super().log_prob(x, estimator or (self.train_estimator if self.training else self.eval_estimator))
