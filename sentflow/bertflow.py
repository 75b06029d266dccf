"""BERT-flow (Li et al., EMNLP 2020): a Glow fitted by maximum likelihood on frozen sentence vectors.

The flow maps embeddings x to z with a standard Gaussian prior; cosine similarity is taken on z.
It is built from the `sentflow.flows` layers the image flows use: per level, `depth` steps of
ActNorm (data-dependent init), an LU-parametrised invertible linear map (the 1x1 convolution on a
1x1 "image") and an affine coupling with a zero-initialised MLP and a sigmoid-bounded scale; then
half of the dimensions are factored out under a learned conditional Gaussian (multi-level split).

Defaults follow the released BERT-flow configuration `config_l3_d3_w32` (3 levels, 3 steps, coupling
width 32, Adam, learning rate 1e-3, the flow trained on the task's sentences without labels while
the encoder stays frozen), including its budget: one epoch at batch size 32. Longer training raises
the likelihood but lowers STS scores (measured in eval/flow_vs_whitening.py's notes). sentflow
departs in five ways: a 10% held-out slice that reports the likelihood and, with epochs > 1, stops
early; a learning-rate warm-up; gradient clipping; affine instead of additive couplings (the image
Glow's layer); and small Gaussian noise on the training vectors (`noise` times their RMS per-dimension
standard deviation). The noise matters: sentence vectors often have constant dimensions or lie on a
hyperplane (a post-LN output does), where the likelihood is unbounded and an unregularised flow
blows those directions up; all-MiniLM-L6-v2's CLS vectors have both.
"""

from __future__ import annotations

import copy
import math
import os
import time
from collections.abc import Iterator

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from sentflow.calibration import Calibrator
from sentflow.errors import SentflowError
from sentflow.flows import MLP, ActNorm, AffineCoupling, Flow, FlowSequential, InvConv, Split, StandardNormal
from sentflow.flows.train import TrainingDiverged
from sentflow.stats import as_matrix

WARMUP_STEPS = 50
CLIP_NORM = 10.0


def vector_glow(dim: int, levels: int, depth: int, hidden: int) -> Flow:
    """A multi-level Glow on (N, dim) vectors; every level halves the dimensions it passes on."""
    net = MLP(hidden=hidden, depth=2)
    steps: list[Flow] = []
    for _ in range(depth):
        steps += [ActNorm(dim), InvConv(dim), AffineCoupling(dim, net, mask="channel", scale="sigmoid")]
    if levels > 1 and dim >= 4:
        steps.append(Split(dim, vector_glow(dim // 2, levels - 1, depth, hidden), net))
    return FlowSequential(*steps)


class _Latent(nn.Module):
    """x -> z of a fitted flow, as a plain torch module."""

    def __init__(self, flow: Flow) -> None:
        super().__init__()
        self.flow = flow

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.flow(x)[0]


class BertFlow(Calibrator):
    """BERT-flow calibration with the `Whitening` interface (fit / transform / save / to_torch)."""

    method = "flow"

    def __init__(
        self,
        levels: int = 3,
        depth: int = 3,
        hidden: int = 32,
        epochs: int = 1,
        lr: float = 1e-3,
        batch_size: int = 32,
        seed: int = 0,
        device: str | None = None,
        validation: float = 0.1,
        patience: int = 2,
        noise: float = 1e-2,
        progress: bool | None = None,
    ) -> None:
        self.levels = levels
        self.depth = depth
        self.hidden = hidden
        self.epochs = epochs
        self.lr = lr
        self.batch_size = batch_size
        self.seed = seed
        self.device = device
        self.validation = validation
        self.patience = patience
        self.noise = noise
        self.progress = progress

    @property
    def n_components_out_(self) -> int:
        return self.n_features_in_

    def _build(self, dim: int) -> Flow:
        with torch.random.fork_rng():
            torch.manual_seed(self.seed)
            return vector_glow(dim, self.levels, self.depth, self.hidden)

    def _device(self) -> torch.device:
        return torch.device(self.device or ("cuda" if torch.cuda.is_available() else "cpu"))

    def fit(self, X, y=None) -> BertFlow:
        """Train the flow by maximum likelihood on the rows of X; keeps the best held-out state."""
        X = self._validate_fit(X)
        device = self._device()
        if device.type == "cpu":
            torch.set_num_threads(os.cpu_count() or 1)
        self.n_features_in_ = X.shape[1]
        self.flow_ = self._build(X.shape[1]).to(device)
        train, held_out = self._split(torch.from_numpy(X.astype(np.float32)))
        sigma = self.noise * float(np.sqrt(X.var(axis=0, dtype=np.float64).mean()))
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(self.seed)
            with torch.no_grad():  # ActNorm's data-dependent initialisation on a large first batch
                self.flow_(self._noisy(train[: max(self.batch_size, 1024)].to(device), sigma))
            self.history_ = self._train(train.to(device), held_out.to(device), sigma)
        return self

    @staticmethod
    def _noisy(x: torch.Tensor, sigma: float) -> torch.Tensor:
        return x + sigma * torch.randn_like(x) if sigma > 0 else x

    def _validate_fit(self, X) -> np.ndarray:
        X = as_matrix(X)
        n, d = X.shape
        if n <= d:
            raise SentflowError(f"fewer sentences ({n}) than dimensions ({d}): a flow needs more rows than dims")
        if min(self.levels, self.depth, self.hidden) < 1:
            raise SentflowError(
                f"flow options: levels, depth and hidden must be >= 1, got {self.levels}, {self.depth}, {self.hidden}"
            )
        if not 0 < self.validation < 1 or self.epochs < 1 or self.batch_size < 1 or self.lr <= 0 or self.noise < 0:
            raise SentflowError(
                "flow options: need 0 < validation < 1, epochs >= 1, batch_size >= 1, lr > 0, noise >= 0"
            )
        return X

    def _split(self, X: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        order = torch.randperm(len(X), generator=torch.Generator().manual_seed(self.seed))
        n_val = max(1, int(round(self.validation * len(X))))
        return X[order[n_val:]], X[order[:n_val]]

    def _nats_per_dim(self, x: torch.Tensor) -> torch.Tensor:
        z, logdet = self.flow_(x)
        log_prob = StandardNormal().log_prob(z).double() + logdet.double()
        return -log_prob.mean() / x.shape[1]

    @torch.no_grad()
    def _held_out_nats(self, held_out: torch.Tensor) -> float:
        self.flow_.eval()
        total = sum(self._nats_per_dim(b).item() * len(b) for b in held_out.split(4096))
        self.flow_.train()
        return total / len(held_out)

    def _batches(self, train: torch.Tensor, epoch: int) -> Iterator[torch.Tensor]:
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        return iter(train[torch.randperm(len(train), generator=gen).to(train.device)].split(self.batch_size))

    def _train(self, train: torch.Tensor, held_out: torch.Tensor, sigma: float) -> list[dict]:
        optimizer = torch.optim.Adam(self.flow_.parameters(), lr=self.lr)
        best, best_state, waited, step, history = math.inf, copy.deepcopy(self.flow_.state_dict()), 0, 0, []
        show = self.progress if self.progress is not None else len(train) * self.epochs > 50_000
        start = time.perf_counter()
        bar = tqdm(total=self.epochs * math.ceil(len(train) / self.batch_size), desc="flow", disable=not show)
        for epoch in range(self.epochs):
            for batch in self._batches(train, epoch):
                for group in optimizer.param_groups:
                    group["lr"] = self.lr * min(1.0, (step + 1) / WARMUP_STEPS)
                loss = self._nats_per_dim(self._noisy(batch, sigma))
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                norm = torch.nn.utils.clip_grad_norm_(self.flow_.parameters(), CLIP_NORM)
                if not (torch.isfinite(loss) and torch.isfinite(norm)):
                    self.flow_.load_state_dict(best_state)
                    raise TrainingDiverged(
                        f"flow training diverged at epoch {epoch + 1}, step {step} (loss {loss.item()}); the last "
                        "good state is kept; try a lower --lr or standardised inputs"
                    )
                optimizer.step()
                step += 1
                bar.update(1)
                bar.set_postfix(nats_per_dim=f"{loss.item():.3f}")
            val = self._held_out_nats(held_out)
            if not math.isfinite(val):
                self.flow_.load_state_dict(best_state)
                raise TrainingDiverged(
                    f"flow training diverged: held-out loss is {val} after epoch {epoch + 1}; the last good state "
                    "is kept; try a lower --lr"
                )
            history.append({"epoch": epoch + 1, "held_out_nats_per_dim": val, "seconds": time.perf_counter() - start})
            if val < best - 1e-4:
                best, best_state, waited = val, copy.deepcopy(self.flow_.state_dict()), 0
            else:
                waited += 1
                if waited >= self.patience:
                    break
        bar.close()
        self.flow_.load_state_dict(best_state)
        self.flow_.eval()
        return history

    @torch.no_grad()
    def _batched(self, fn, X: np.ndarray) -> np.ndarray:
        """Apply `fn` to float32 batches of X on the flow's device; results back on the CPU."""
        device = next(self.flow_.parameters()).device
        x = torch.from_numpy(X.astype(np.float32))
        return torch.cat([fn(b.to(device)).cpu() for b in x.split(8192)]).numpy()

    def transform(self, X) -> np.ndarray:
        """The latent z (same dimension as X) used for cosine similarity, float32."""
        return self._batched(lambda b: self.flow_(b)[0], self._check_input(X))

    def inverse_transform(self, Z) -> np.ndarray:
        """Map latents back to embedding space."""
        return self._batched(self.flow_.inverse, self._check_input(Z, "Z"))

    def log_prob(self, X) -> np.ndarray:
        """Log density (nats) of each row under the fitted flow."""

        def nats(b: torch.Tensor) -> torch.Tensor:
            z, logdet = self.flow_(b)
            return StandardNormal().log_prob(z).double() + logdet.double()

        return self._batched(nats, self._check_input(X))

    def to_torch(self) -> nn.Module:
        """An nn.Module x -> z (a copy; training it does not change this calibrator)."""
        return _Latent(copy.deepcopy(self.flow_)).eval()

    def _tensors(self) -> dict[str, torch.Tensor]:
        return dict(self.flow_.state_dict())

    def _restore(self, tensors: dict[str, torch.Tensor], meta: dict) -> None:
        self.n_features_in_ = int(meta["dim_in"])
        self.flow_ = self._build(self.n_features_in_)
        self.flow_.load_state_dict(tensors, strict=True)
        self.flow_.to(self._device()).eval()
