"""BERT-flow (Li et al., EMNLP 2020): a Glow fitted by maximum likelihood on frozen sentence vectors.

The flow maps embeddings x to z with a standard Gaussian prior; cosine similarity is taken on z.
It is built from the `sentflow.flows` layers the image flows use: per level, `depth` steps of
ActNorm (data-dependent init), an LU-parametrised invertible linear map (the 1x1 convolution on a
1x1 "image") and an affine coupling with a zero-initialised MLP and a sigmoid-bounded scale; then
half of the dimensions are factored out under a learned conditional Gaussian (multi-level split).

Defaults follow the released BERT-flow configuration `config_l3_d3_w32` (3 levels, 3 steps, coupling
width 32, Adam, learning rate 1e-3, the flow trained on the task's sentences without labels while
the encoder stays frozen), including its budget: one epoch at batch size 32. Longer training raises
the likelihood but lowers STS scores (measured in eval/flow_vs_whitening.py's notes). Training runs
through the image flows' `Trainer` (time budget, checkpoints and resume included). sentflow
departs in five ways: a 10% held-out slice that reports the likelihood and, with epochs > 1, stops
early; a learning-rate warm-up; gradient clipping; affine instead of additive couplings (the image
Glow's layer); and small Gaussian noise on the training vectors (`noise` times their RMS per-dimension
standard deviation). The noise matters: sentence vectors often have constant dimensions or lie on a
hyperplane (a post-LN output does), where the likelihood is unbounded and an unregularised flow
blows those directions up; all-MiniLM-L6-v2's CLS vectors have both.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Annotated

import numpy as np
import torch
from pydantic import Field
from torch import Tensor, nn

from sentflow.calibration.base import Calibrator
from sentflow.calibration.stats import as_matrix
from sentflow.errors import Param, SentflowError
from sentflow.files.io import restore_module
from sentflow.files.schemas import MAX_DIM, MAX_LR, BatchSize, CalibrationHeader, Epochs, Patience, Seed
from sentflow.flows.actnorm import ActNorm
from sentflow.flows.base import Flow, FlowSequential, log_density
from sentflow.flows.coupling import AffineCoupling
from sentflow.flows.invconv import InvConv
from sentflow.flows.nets import MLP
from sentflow.flows.priors import StandardNormal
from sentflow.flows.reshape import Split
from sentflow.flows.train import TrainConfig, Trainer
from sentflow.runtime import FLOW_THREADS, default_device, using_threads

WARMUP_STEPS = 50
CLIP_NORM = 10.0
PROGRESS_ROWS = 5_000  # a fit over more sample-epochs than this (a few seconds) shows a bar unless told
INIT_ROWS = 1024  # ActNorm's data-dependent initialisation sees at least this many training rows
CHECKPOINT_FORMAT = "sentflow.calibration.bertflow-fit/1"


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
    """BERT-flow calibration with the `Whitening` interface (fit / transform / save / to_torch).

    A Glow-style flow on (n, d) vectors, built from the `sentflow.flows` layers: per level, `depth` steps of
    ActNorm, an LU-parametrised invertible linear map and an affine coupling, then half of the dimensions factored
    out under a learned conditional Gaussian. The defaults follow BERT-flow's released `config_l3_d3_w32`, budget
    included (one epoch at batch 32). Training runs through `sentflow.flows.Trainer`.

    Args:
        levels: Levels of the multi-scale flow.
        depth: Flow steps per level.
        hidden: Width of the coupling networks.
        epochs: Passes over the training rows.
        lr: Adam's learning rate.
        batch_size: Rows per step.
        seed: Seed of the initialisation, the held-out split, the batches and the noise.
        device: Torch device of the fit (None: CUDA when available, else CPU); not saved with the calibration.
        validation: Share of the rows held out to report the likelihood and stop early.
        patience: Epochs without held-out improvement before training stops (when `epochs > 1`).
        noise: Gaussian noise added to the training rows, relative to the vectors' scale.
        progress: Show a progress bar (None: only for long fits); not saved with the calibration.
        max_minutes: Wall-clock budget of the fit; the best held-out state is kept.
        checkpoint_dir: Where the full training state is written after every epoch, for `fit(X, resume=True)`.
        threads: Torch CPU threads of the fit (None: `$SENTFLOW_THREADS`, else 1); restored afterwards.
    """

    method = "flow"
    _parameter_constraints = {
        "levels": Annotated[int, Field(ge=1, le=16)],
        "depth": Annotated[int, Field(ge=1, le=256)],
        "hidden": Annotated[int, Field(ge=1, le=MAX_DIM)],
        "epochs": Epochs,
        "lr": Annotated[float, Field(gt=0.0, le=MAX_LR, allow_inf_nan=False)],
        "batch_size": BatchSize,
        "seed": Seed,
        "validation": Annotated[float, Field(gt=0.0, lt=1.0, allow_inf_nan=False)],
        "patience": Patience | None,
        "noise": Annotated[float, Field(ge=0.0, le=1e3, allow_inf_nan=False)],
    }

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
        max_minutes: float | None = None,
        checkpoint_dir: str | Path | None = None,
        threads: int | None = None,
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
        self.max_minutes = max_minutes
        self.checkpoint_dir = checkpoint_dir
        self.threads = threads

    @property
    def n_components_out_(self) -> int:
        return self.n_features_in_

    def _build(self, dim: int) -> Flow:
        with torch.random.fork_rng():
            torch.manual_seed(self.seed)
            return vector_glow(dim, self.levels, self.depth, self.hidden)

    def fit(self, X, y=None, resume: bool = False) -> BertFlow:
        """Train the flow by maximum likelihood on the rows of X; keeps the best held-out state.

        With `checkpoint_dir` set, the training state is written to ``checkpoint_dir/checkpoint.safetensors``
        after every epoch, and `resume=True` continues from it (same X, seed and flow options; `epochs` and
        `max_minutes` may change).
        """
        X = self._validate_fit(X)
        device = default_device(self.device)
        self.n_features_in_ = X.shape[1]
        self.flow_ = self._build(X.shape[1]).to(device)
        train, held_out = self._split(torch.from_numpy(X.astype(np.float32)))
        sigma = self.noise * float(np.sqrt(X.var(axis=0, dtype=np.float64).mean()))
        with using_threads(self.threads, FLOW_THREADS, False) as threads:
            trainer = self._trainer(device, sigma, threads, len(train))
            if resume:
                trainer.resume(self._checkpoint_path(trainer))
            else:
                with trainer.random_stream(), torch.no_grad():  # ActNorm's data-dependent init on a large batch
                    self.flow_(self._noisy(train[: max(self.batch_size, INIT_ROWS)].to(device), sigma))
            self.history_ = trainer.fit(train.to(device), held_out=held_out.to(device))
        self.flow_.eval()
        return self

    def _trainer(self, device: torch.device, sigma: float, threads: int, n_train: int) -> Trainer:
        show = self.progress if self.progress is not None else n_train * self.epochs > PROGRESS_ROWS
        config = TrainConfig(
            epochs=self.epochs,
            batch_size=self.batch_size,
            lr=self.lr,
            warmup_steps=WARMUP_STEPS,
            clip_norm=CLIP_NORM,
            seed=self.seed,
            max_minutes=self.max_minutes,
            threads=threads,
            noise=sigma,
            patience=self.patience,
            progress=show,
        )
        header = {"format": CHECKPOINT_FORMAT, "options": self._fit_options()}
        return Trainer(self.flow_, config, self.checkpoint_dir, device, self._nats_per_dim, header, "nats_per_dim")

    def _fit_options(self) -> dict:
        """The options a checkpoint must agree on to be resumed (not the budget, not where it runs)."""
        runtime = ("device", "progress", "max_minutes", "checkpoint_dir", "threads", "epochs")
        return {k: v for k, v in self.get_params().items() if k not in runtime}

    def _checkpoint_path(self, trainer: Trainer) -> Path:
        if trainer.checkpoint_path is None or not trainer.checkpoint_path.is_file():
            raise SentflowError(
                Param("resume", True), " needs a checkpoint; none at ", Param("checkpoint_dir", self.checkpoint_dir)
            )
        return trainer.checkpoint_path

    @staticmethod
    def _noisy(x: Tensor, sigma: float) -> Tensor:
        return x + sigma * torch.randn_like(x) if sigma > 0 else x

    def _validate_fit(self, X) -> np.ndarray:
        X = as_matrix(X)
        n, d = X.shape
        if n <= d:
            raise SentflowError(f"fewer sentences ({n}) than dimensions ({d}): a flow needs more rows than dims")
        self._validate_params()
        return X

    def _split(self, X: Tensor) -> tuple[Tensor, Tensor]:
        order = torch.randperm(len(X), generator=torch.Generator().manual_seed(self.seed))
        n_val = max(1, int(round(self.validation * len(X))))
        return X[order[n_val:]], X[order[:n_val]]

    def _log_prob(self, x: Tensor) -> Tensor:
        """Per-row log density in float64 (nats)."""
        return log_density(self.flow_, StandardNormal(), x).double()

    def _nats_per_dim(self, x: Tensor) -> Tensor:
        return -self._log_prob(x).mean() / x.shape[1]

    @torch.no_grad()
    def _batched(self, fn, X: np.ndarray) -> np.ndarray:
        """Apply `fn` to float32 batches of X on the flow's device; results back on the CPU."""
        device = next(self.flow_.parameters()).device
        with np.errstate(over="ignore"):
            x = torch.from_numpy(X.astype(np.float32))
        return self._finite(torch.cat([fn(b.to(device)).cpu() for b in x.split(8192)]).numpy())

    def transform(self, X) -> np.ndarray:
        """The latent z (same dimension as X) used for cosine similarity, float32."""
        return self._batched(lambda b: self.flow_(b)[0], self._check_input(X))

    def inverse_transform(self, Z) -> np.ndarray:
        """Map latents back to embedding space."""
        return self._batched(self.flow_.inverse, self._check_input(Z, "Z"))

    def log_prob(self, X) -> np.ndarray:
        """Log density (nats) of each row under the fitted flow."""

        return self._batched(self._log_prob, self._check_input(X))

    def to_torch(self) -> nn.Module:
        """An nn.Module x -> z (a copy; training it does not change this calibrator)."""
        return _Latent(copy.deepcopy(self.flow_)).eval()

    def _tensors(self) -> dict[str, torch.Tensor]:
        return dict(self.flow_.state_dict())

    def _restore(self, tensors: dict[str, torch.Tensor], header: CalibrationHeader) -> None:
        if header.dim_out != header.dim_in:
            raise ValueError(f"a flow keeps the dimension, the header says {header.dim_in} -> {header.dim_out}")
        self.flow_ = restore_module(lambda: self._build(header.dim_in), tensors, "the flow")
        self.flow_.to(default_device(self.device)).eval()
        self.n_features_in_ = header.dim_in
