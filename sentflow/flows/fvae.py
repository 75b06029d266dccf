"""f-VAE (Su et al. 2018): a VAE whose decoder p(x|z) is a flow conditioned on z, so log p(x|z) is exact.

Encoder q(z|x) = N(mu(x), diag sigma(x)^2) (an MLP on the flattened image), prior p(z) = N(0, I).
Decoder, data to noise: logit, flatten, `couplings` x (ActNorm, 1x1 "conv", affine coupling whose MLP sees
the kept half *and* z), then a z-conditioned elementwise affine u = (x - m(z)) / s(z), u ~ N(0, I); z reaches
the conditional layers as the flow's `context` argument.
With couplings=0 the decoder is a factorised Gaussian in logit space: the plain VAE baseline with the same
encoder.  Training maximises the one-sample ELBO; evaluation reports the importance-weighted bound with
`iw_samples` samples, log (1/K) sum_k p(x, z_k) / q(z_k|x) (>= ELBO, -> log p(x) as K grows).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from sentflow.errors import SentflowError
from sentflow.flows.actnorm import ActNorm
from sentflow.flows.base import COUNT, NUMBER, WIDTH, Flow, FlowModel, FlowSequential, LogdetEstimator
from sentflow.flows.checks import check_batch, check_range
from sentflow.flows.coupling import AffineCoupling
from sentflow.flows.invconv import InvConv
from sentflow.flows.nets import MLP, NetFactory
from sentflow.flows.preprocess import Dequantize, Logit
from sentflow.flows.priors import StandardNormal
from sentflow.flows.reshape import Flatten


class ConditionalAffine(Flow):
    """u = (x - m(z)) * exp(-log_s(z)) per feature, z the context; log_s bounded to (-5, 5); starts as the identity."""

    def __init__(self, features: int, cond_features: int, net: NetFactory) -> None:
        super().__init__()
        self.net = net(cond_features, 2 * features)

    def _params(self, context: Tensor | None) -> tuple[Tensor, Tensor]:
        if context is None:
            raise ValueError("ConditionalAffine needs a context (the latent code z)")
        shift, raw = self.net(context).chunk(2, dim=1)
        return shift, 5.0 * torch.tanh(raw / 5.0)

    def forward(
        self, x: Tensor, context: Tensor | None = None, estimator: LogdetEstimator | None = None
    ) -> tuple[Tensor, Tensor]:
        shift, log_s = self._params(context)
        return (x - shift) * torch.exp(-log_s), -log_s.sum(1)

    def inverse(self, z: Tensor, context: Tensor | None = None) -> Tensor:
        shift, log_s = self._params(context)
        return z * log_s.exp() + shift


class GaussianEncoder(nn.Module):
    """q(z|x) = N(mu, diag exp(2 log_sigma)) from an MLP on the flattened, centred image (starts as N(0, I))."""

    def __init__(self, features: int, latent: int, net: NetFactory) -> None:
        super().__init__()
        self.net = net(features, 2 * latent)

    def forward(self, y: Tensor) -> tuple[Tensor, Tensor]:
        mu, log_sigma = self.net(y.flatten(1) - 0.5).chunk(2, dim=1)
        return mu, log_sigma.clamp(-7.0, 3.0)


def normal_log_prob(z: Tensor, mu: Tensor | float = 0.0, log_sigma: Tensor | float = 0.0) -> Tensor:
    """log N(z; mu, exp(log_sigma)^2) summed over the last dimension."""
    log_sigma = torch.as_tensor(log_sigma, dtype=z.dtype)
    return (-0.5 * ((z - mu) * torch.exp(-log_sigma)) ** 2 - log_sigma - 0.5 * math.log(2 * math.pi)).sum(-1)


class FVAE(FlowModel):
    """f-VAE on images: `latent`-dim code, MLP encoder / coupling nets (`hidden` x `depth`), `couplings`
    conditional coupling steps in the decoder (0: plain VAE), logit(alpha) pre-processing."""

    name = "fvae"
    _parameter_constraints = {
        **FlowModel._parameter_constraints,
        "latent": WIDTH,
        "hidden": WIDTH,
        "depth": COUNT,
        "couplings": (0, COUNT[1]),  # 0: a plain VAE
        "iw_samples": WIDTH,
        "alpha": NUMBER,
    }

    def __init__(
        self,
        data_shape: Sequence[int] = (1, 8, 8),
        n_bins: int = 17,
        latent: int = 16,
        hidden: int = 256,
        depth: int = 2,
        couplings: int = 4,
        iw_samples: int = 64,
        alpha: float = 0.05,
    ) -> None:
        d = math.prod(data_shape)
        check_range("alpha", alpha, 0.0, 0.5)
        if min(latent, hidden, depth, iw_samples) < 1 or couplings < 0:
            raise SentflowError("f-VAE latent, hidden, depth and iw_samples must be >= 1, couplings >= 0")
        net = MLP(hidden, depth)
        layers: list[Flow] = [Logit(alpha), Flatten(data_shape)]
        for i in range(couplings):
            layers += [ActNorm(d), InvConv(d)]
            layers.append(AffineCoupling(d, net, "checkerboard", i % 2, "tanh", context_features=latent))
        layers.append(ConditionalAffine(d, latent, net))
        config = {
            "latent": latent,
            "hidden": hidden,
            "depth": depth,
            "couplings": couplings,
            "iw_samples": iw_samples,
            "alpha": alpha,
        }
        super().__init__(FlowSequential(*layers), StandardNormal(), data_shape, n_bins, config, latent_shape=(d,))
        self.dequantize = Dequantize(n_bins)
        self.encoder = GaussianEncoder(d, latent, net)
        self.latent = latent

    def decoder_log_prob(self, y: Tensor, z: Tensor) -> Tensor:
        """Exact log p(y|z) of dequantized images y (N, *data_shape) given codes z (N, latent)."""
        u, logdet = self.flow(y, context=z)
        return self.prior.log_prob(u) + logdet

    def log_weights(self, y: Tensor, k: int) -> Tensor:
        """(k, N) log p(y, z_j) - log q(z_j|y) for k reparameterised draws z_j ~ q(z|y)."""
        mu, log_sigma = self.encoder(y)
        z = mu + log_sigma.exp() * torch.randn(k, *mu.shape, device=y.device)
        log_q = normal_log_prob(z, mu, log_sigma)
        log_joint = self.decoder_log_prob(y.repeat(k, *[1] * (y.dim() - 1)), z.flatten(0, 1)).view(k, -1)
        return log_joint + normal_log_prob(z) - log_q

    def elbo(self, y: Tensor, k: int = 1) -> Tensor:
        """ELBO of dequantized y, averaged over k samples of z, shape (N,)."""
        return self.log_weights(y, k).mean(0)

    def iw_bound(self, y: Tensor, k: int) -> Tensor:
        """Importance-weighted bound log (1/k) sum_j w_j (Burda et al.), shape (N,)."""
        return torch.logsumexp(self.log_weights(y, k), dim=0) - math.log(k)

    @property
    def estimator(self) -> str:
        return "ELBO (1 sample)" if self.training else f"importance-weighted bound, K={self.config['iw_samples']}"

    def log_prob(self, x: Tensor, estimator: LogdetEstimator | None = None) -> Tensor:
        """A lower bound on log p(y): the ELBO when training, the IW bound in eval mode (log-dets are exact)."""
        check_batch(x, self.data_shape, self.name)
        y, _ = self.dequantize(x)
        return self.elbo(y) if self.training else self.iw_bound(y, self.config["iw_samples"])

    @torch.no_grad()
    def sample(self, n: int, temperature: float = 1.0) -> Tensor:
        """z ~ N(0, I), u ~ N(0, temperature^2 I), x = decoder^-1(u; z), rounded to the data levels."""
        device = next(self.parameters()).device
        z = torch.randn(n, self.latent, device=device)
        u = self.prior.sample((n, *self.latent_shape), temperature, device)
        return self.dequantize.inverse(self.flow.inverse(u, context=z))
