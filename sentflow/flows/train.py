"""The one training loop for every flow (BERT-flow and the image models).

Seeded shuffling, learning-rate warm-up, gradient clipping, a NaN/Inf guard, a tqdm bar, an optional wall-clock
budget, optional Gaussian input noise, optional held-out data with early stopping and best-state restore, and
checkpoints that resume exactly (weights, optimizer moments, RNG state, counters).  The objective is a parameter:
a function from a batch to the scalar loss to minimise (bits/dim for the image models, nats/dim for BERT-flow).
This module knows nothing about images, data sets or model registries.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from sentflow.errors import Param, SentflowError
from sentflow.files.io import check_state, first_line, load_tensors, save_tensors
from sentflow.files.schemas import FLOWS_FORMAT, TrainCounters
from sentflow.flows import CHECKPOINT_NAME
from sentflow.flows.base import LogdetEstimator, bits_per_dim
from sentflow.runtime import FLOW_THREADS, default_device, seed_everything, using_threads

OPTIMIZERS = {"adam": torch.optim.Adam, "adamax": torch.optim.Adamax}
OPTIMIZER_STATE = ("step", "exp_avg", "exp_avg_sq", "exp_inf")  # per-parameter tensors those optimizers keep
MIN_IMPROVEMENT = 1e-4  # held-out loss must drop by this much to count as better
EVAL_BATCH = 4096
SHUFFLE_STRIDE = 1_000_003  # epoch e of seed s shuffles with generator seed s * stride + e
DEFAULT_THREADS = FLOW_THREADS  # the old name

Objective = Callable[[Tensor], Tensor]

__all__ = [
    "CHECKPOINT_NAME",
    "TrainConfig",
    "TrainState",
    "Trainer",
    "TrainingDiverged",
    "evaluate_bpd",
    "default_device",
    "seed_everything",
]


class TrainingDiverged(SentflowError):
    """The loss or the gradients became NaN/Inf; the last good state (or checkpoint) is kept."""


@dataclass
class TrainConfig:
    """Training options.

    `max_minutes` stops after a wall-clock budget (checked after every step).  `threads`: torch CPU threads for
    the fit (None: FLOW_THREADS, one; $SENTFLOW_THREADS governs encoding and linear algebra, not flows).
    `noise`: standard deviation of Gaussian noise added to every training batch.  `patience`: with held-out data,
    stop after this many epochs without improvement; the best held-out state is restored at the end either way.
    """

    epochs: int = 10
    batch_size: int = 64
    lr: float = 1e-3
    optimizer: str = "adam"
    warmup_steps: int = 200
    clip_norm: float = 50.0
    seed: int = 0
    max_minutes: float | None = None
    progress: bool = True
    threads: int | None = None
    noise: float = 0.0
    patience: int | None = None


@dataclass
class TrainState:
    """Counters of a fit, saved in checkpoints so that a resumed fit continues where it stopped."""

    epoch: int = 0
    step: int = 0
    seconds: float = 0.0
    examples: int = 0
    history: list[dict] = field(default_factory=list)
    best: float = math.inf
    waited: int = 0


@torch.no_grad()
def evaluate_bpd(
    model: Any,  # a FlowModel: log_prob, n_dims, n_bins
    data: Tensor,
    batch_size: int = 500,
    seed: int = 0,
    estimator: LogdetEstimator | None = None,
    log_prob: Objective | None = None,
) -> float:
    """Test bits/dim with one dequantization sample per image, drawn from a fixed seed (reproducible).

    `estimator` picks an estimated log-det's estimator; `log_prob` replaces ``model.log_prob`` (e.g. a bound).
    """
    device = next(model.parameters()).device
    model.eval()
    log_prob = log_prob or (lambda x: model.log_prob(x, estimator))
    total = 0.0
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        for batch in data.split(batch_size):
            total += bits_per_dim(log_prob(batch.to(device)), model.n_dims, model.n_bins).item() * len(batch)
    return total / len(data)


class Trainer:
    """Fit `model` by minimising `objective(batch)` (default: ``model.bits_per_dim``).

    With `out_dir`, ``out_dir/checkpoint.safetensors`` is written after every epoch, its JSON header holding
    `header` (what the model is; default: the FlowModel's name, config and data shape) plus the training state.
    Epoch records name the loss `loss_name`: ``train_bpd``, ``held_out_bpd`` by default.
    """

    def __init__(
        self,
        model: nn.Module,
        config: TrainConfig,
        out_dir: str | Path | None = None,
        device: torch.device | str | None = None,
        objective: Objective | None = None,
        header: dict | None = None,
        loss_name: str = "bpd",
    ) -> None:
        self.device = default_device(device)
        self.model = model.to(self.device)
        self.config = config
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.objective: Objective = objective or model.bits_per_dim  # type: ignore[assignment]  # a FlowModel's
        self.header = header if header is not None else model_header(model)
        self.loss_name = loss_name
        if config.optimizer not in OPTIMIZERS:
            raise SentflowError(f"unknown optimizer {config.optimizer!r}; use one of {', '.join(OPTIMIZERS)}")
        self.optimizer = OPTIMIZERS[config.optimizer](model.parameters(), lr=config.lr)
        self.state = TrainState()
        self.best_state: dict[str, Tensor] | None = None
        self.budget_ended = False  # set when `max_minutes` stopped the fit before its last epoch
        self.rng_state = torch.Generator().manual_seed(config.seed).get_state()  # the trainer's own stream

    @contextmanager
    def random_stream(self) -> Iterator[None]:
        """Run the enclosed code on the trainer's own random stream (seeded by `config.seed`, saved in checkpoints
        and restored by `resume`); the caller's global generators are left as they were."""
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.set_rng_state(self.rng_state)
            if devices:
                torch.cuda.manual_seed((self.config.seed * SHUFFLE_STRIDE + self.state.step) % 2**63)
            try:
                yield
            finally:
                self.rng_state = torch.get_rng_state()

    @property
    def checkpoint_path(self) -> Path | None:
        return self.out_dir / CHECKPOINT_NAME if self.out_dir else None

    def fit(self, train: Tensor, test: Tensor | None = None, held_out: Tensor | None = None) -> list[dict]:
        """Train for the configured epochs (or time budget); returns one record per epoch.

        `test`: image data whose bits/dim is recorded each epoch.  `held_out`: data whose mean objective (in eval
        mode, without noise) is recorded each epoch, drives early stopping and picks the state kept at the end.
        """
        if held_out is not None and self.best_state is None:
            self.best_state = copy.deepcopy(self.model.state_dict())  # what a divergence in epoch 1 falls back to
        total = self.config.epochs * math.ceil(len(train) / self.config.batch_size)
        with (
            self.random_stream(),
            using_threads(self.config.threads, FLOW_THREADS, read_env=False),
            tqdm(total=total, initial=self.state.step, desc="train", disable=not self.config.progress) as bar,
        ):  # the bar ends its line before any error is printed
            start = time.perf_counter() - self.state.seconds
            while self.state.epoch < self.config.epochs and not self._out_of_time(start):
                record = self._epoch(train, start, bar)
                self.budget_ended = self._out_of_time(start) and self.state.epoch < self.config.epochs
                if test is not None:
                    record["test_bpd"] = evaluate_bpd(self.model, test, seed=self.config.seed)
                self.state.history.append(record)
                stop = held_out is not None and self._validate(held_out, record)
                self._save()
                if stop:
                    break
        if self.best_state is not None:
            self.model.load_state_dict(self.best_state)
        return self.state.history

    def _out_of_time(self, start: float) -> bool:
        budget = self.config.max_minutes
        return budget is not None and time.perf_counter() - start > 60 * budget

    def _fit_bar_to_budget(self, bar: tqdm, start: float) -> None:
        """With a time budget, the bar's total is the steps the budget still allows, so its ETA is honest."""
        budget, elapsed = self.config.max_minutes, time.perf_counter() - start
        if budget is None or elapsed <= 0 or bar.total is None:
            return
        reachable = self.state.step + (60 * budget - elapsed) * self.state.step / elapsed
        bar.total = max(bar.n, min(bar.total, math.ceil(reachable)))

    def _batches(self, train: Tensor) -> Iterator[Tensor]:
        gen = torch.Generator().manual_seed((self.config.seed * SHUFFLE_STRIDE + self.state.epoch) % 2**63)
        return iter(train[torch.randperm(len(train), generator=gen).to(train.device)].split(self.config.batch_size))

    def _epoch(self, train: Tensor, start: float, bar: tqdm) -> dict:
        self.model.train()
        total, seen = 0.0, 0
        for batch in self._batches(train):
            loss = self._step(batch.to(self.device))
            total, seen = total + loss * len(batch), seen + len(batch)
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.3f}")
            self._fit_bar_to_budget(bar, start)
            if self._out_of_time(start):
                break
        self.state.epoch += 1
        self.state.examples += seen
        self.state.seconds = time.perf_counter() - start
        return {
            "epoch": self.state.epoch,
            "step": self.state.step,
            f"train_{self.loss_name}": total / max(seen, 1),
            "seconds": round(self.state.seconds, 2),
        }

    def _step(self, batch: Tensor) -> float:
        lr = self.config.lr * min(1.0, (self.state.step + 1) / max(self.config.warmup_steps, 1))
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        if self.config.noise > 0:
            batch = batch + self.config.noise * torch.randn_like(batch)
        loss = self.objective(batch)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.clip_norm)
        if not (math.isfinite(loss.item()) and math.isfinite(norm.item())):
            self._diverged(
                f"training diverged at epoch {self.state.epoch + 1}, step {self.state.step} "
                f"(loss {loss.item()}, grad norm {norm.item()})"
            )
        self.optimizer.step()
        self.state.step += 1
        return loss.item()

    @torch.no_grad()
    def held_out_loss(self, data: Tensor) -> float:
        """Mean objective over `data` in eval mode (float64 accumulation), then back to train mode."""
        self.model.eval()
        total = sum(self.objective(b.to(self.device)).double().item() * len(b) for b in data.split(EVAL_BATCH))
        self.model.train()
        return total / len(data)

    def _validate(self, held_out: Tensor, record: dict) -> bool:
        """Record the held-out loss, keep the best state; True when patience is exhausted."""
        loss = self.held_out_loss(held_out)
        if not math.isfinite(loss):
            self._diverged(f"training diverged: held-out loss is {loss} after epoch {self.state.epoch}")
        record[f"held_out_{self.loss_name}"] = loss
        if loss < self.state.best - MIN_IMPROVEMENT:
            self.state.best, self.state.waited = loss, 0
            self.best_state = copy.deepcopy(self.model.state_dict())
            return False
        self.state.waited += 1
        return self.config.patience is not None and self.state.waited >= self.config.patience

    def _diverged(self, what: str) -> None:
        if self.best_state is not None:
            self.model.load_state_dict(self.best_state)
            raise TrainingDiverged(f"{what}; stopped, the best held-out state is kept; try a lower lr")
        kept = self.checkpoint_path if self.checkpoint_path and self.checkpoint_path.exists() else None
        where = f"last good checkpoint kept at {kept}" if kept else "no checkpoint written yet"
        raise TrainingDiverged(f"{what}; stopped, {where}; try a lower lr")

    def _save(self) -> None:
        if self.checkpoint_path is None:
            return
        tensors = {f"model.{k}": v for k, v in self.model.state_dict().items()}
        tensors.update({f"best.{k}": v for k, v in (self.best_state or {}).items()})
        tensors["extra.rng"] = torch.get_rng_state()
        for i, per_param in self.optimizer.state_dict()["state"].items():
            tensors.update({f"extra.optim.{i}.{k}": torch.as_tensor(v) for k, v in per_param.items()})
        counters = {**asdict(self.state), "best": self.state.best if math.isfinite(self.state.best) else None}
        save_tensors(self.checkpoint_path, tensors, {**self.header, "train": asdict(self.config), **counters})

    def resume(self, path: str | Path) -> None:
        """Load weights, optimizer moments, RNG state and counters from a checkpoint written by `fit`."""
        tensors, counters = load_tensors(path, TrainCounters)
        theirs = {k: (counters.model_extra or {}).get(k) for k in self.header}
        if theirs != self.header:
            raise SentflowError(f"{path}: checkpoint is for {theirs}, not {self.header}")
        weights, best = _prefixed(tensors, "model."), _prefixed(tensors, "best.")
        for state in (weights, best) if best else (weights,):
            check_state(self.model, state, path)
        self.model.load_state_dict(weights)
        self.best_state = best or None
        self._load_optimizer(_prefixed(tensors, "extra.optim."), path)
        if "extra.rng" in tensors:
            self.rng_state = _checked_rng(tensors["extra.rng"], path)
        self.state = TrainState(**counters.as_state())

    def _load_optimizer(self, flat: dict[str, Tensor], path: str | Path) -> None:
        params = dict(enumerate(self.model.parameters()))
        state: dict[int, dict[str, Tensor]] = {}
        for key, value in flat.items():
            index, _, name = key.partition(".")
            param = params.get(int(index)) if index.isdigit() else None
            shape = () if name == "step" or param is None else tuple(param.shape)
            if param is None or name not in OPTIMIZER_STATE or tuple(value.shape) != shape:
                raise SentflowError(f"{path}: optimizer tensor {key!r} does not belong to this model")
            state.setdefault(int(index), {})[name] = value  # load_state_dict moves it to the params' device
        current = self.optimizer.state_dict()
        self.optimizer.load_state_dict({"state": state, "param_groups": current["param_groups"]})


def _prefixed(tensors: dict[str, Tensor], prefix: str) -> dict[str, Tensor]:
    return {k.removeprefix(prefix): v for k, v in tensors.items() if k.startswith(prefix)}


def model_header(model: Any) -> dict:
    """What a checkpoint of `model` says it holds: a FlowModel's name, config and data shape (else nothing)."""
    if not hasattr(model, "config"):
        return {}
    return {
        "format": FLOWS_FORMAT,
        "model": model.name,
        "config": model.config,
        "data_shape": list(model.data_shape),
    }


def _checked_rng(state: Tensor, path: str | Path) -> Tensor:
    """Torch's CPU generator state from a checkpoint: a byte tensor of the generator's own size, else refused."""
    expected = torch.get_rng_state()
    if state.dtype != torch.uint8 or state.shape != expected.shape:
        raise SentflowError(
            f"{path}: extra.rng is not a random-number state ({state.dtype}, {tuple(state.shape)}; "
            f"expected uint8, {tuple(expected.shape)}); resume from another checkpoint or train with ",
            Param("overwrite", True),
        )
    try:
        torch.Generator().set_state(state)
    except (RuntimeError, TypeError, ValueError) as exc:
        raise SentflowError(f"{path}: extra.rng is not a valid random-number state ({first_line(exc)})") from None
    return state
