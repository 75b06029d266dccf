"""One trainer for every flow model: Adam/Adamax, warm-up, clipping, NaN guard, checkpoints and resume."""

from __future__ import annotations

import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from tqdm.auto import tqdm

from sentflow.errors import SentflowError
from sentflow.flows.base import FlowModel
from sentflow.flows.checkpoint import CHECKPOINT_NAME, read_checkpoint, save_checkpoint

OPTIMIZERS = {"adam": torch.optim.Adam, "adamax": torch.optim.Adamax}


class TrainingDiverged(SentflowError):
    """The loss or the gradients became NaN/Inf; the last good checkpoint is left in place."""


@dataclass
class TrainConfig:
    """Training options; `max_minutes` stops after a wall-clock budget (checked after every step);
    `threads` = 0 uses every CPU core."""

    epochs: int = 10
    batch_size: int = 64
    lr: float = 1e-3
    optimizer: str = "adam"
    warmup_steps: int = 200
    clip_norm: float = 50.0
    seed: int = 0
    max_minutes: float | None = None
    progress: bool = True
    threads: int = 0


@dataclass
class TrainState:
    epoch: int = 0
    step: int = 0
    seconds: float = 0.0
    examples: int = 0
    history: list[dict] = field(default_factory=list)


def default_device() -> torch.device:
    """The GPU when there is one, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)


@torch.no_grad()
def evaluate_bpd(model: FlowModel, data: torch.Tensor, batch_size: int = 500, seed: int = 0) -> float:
    """Test bits/dim with one dequantization sample per image, drawn from a fixed seed (reproducible)."""
    device = next(model.parameters()).device
    model.eval()
    total = 0.0
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        for batch in data.split(batch_size):
            total += model.bits_per_dim(batch.to(device)).item() * len(batch)
    return total / len(data)


class Trainer:
    """Fit a `FlowModel` by maximum likelihood; writes ``out_dir/checkpoint.safetensors`` after each epoch."""

    def __init__(self, model: FlowModel, config: TrainConfig, out_dir: str | Path | None = None,
                 device: torch.device | None = None) -> None:
        self.device = device or default_device()
        if self.device.type == "cpu":
            torch.set_num_threads(config.threads or os.cpu_count() or 1)
        self.model = model.to(self.device)
        self.config = config
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.optimizer = OPTIMIZERS[config.optimizer](model.parameters(), lr=config.lr)
        self.state = TrainState()
        torch.manual_seed(config.seed)

    @property
    def checkpoint_path(self) -> Path | None:
        return self.out_dir / CHECKPOINT_NAME if self.out_dir else None

    def fit(self, train: torch.Tensor, test: torch.Tensor | None = None) -> list[dict]:
        """Train for the configured epochs (or time budget); returns one record per epoch."""
        start = time.perf_counter() - self.state.seconds
        while self.state.epoch < self.config.epochs and not self._out_of_time(start):
            record = self._epoch(train, start)
            if test is not None:
                record["test_bpd"] = evaluate_bpd(self.model, test, seed=self.config.seed)
            self.state.history.append(record)
            self._save()
        return self.state.history

    def _out_of_time(self, start: float) -> bool:
        budget = self.config.max_minutes
        return budget is not None and time.perf_counter() - start > 60 * budget

    def _epoch(self, train: torch.Tensor, start: float) -> dict:
        self.model.train()
        gen = torch.Generator().manual_seed(self.config.seed * 100_003 + self.state.epoch)
        batches = train[torch.randperm(len(train), generator=gen)].split(self.config.batch_size)
        bar = tqdm(batches, desc=f"epoch {self.state.epoch + 1}", disable=not self.config.progress,
                   leave=False)
        total, seen = 0.0, 0
        for batch in bar:
            bpd = self._step(batch.to(self.device))
            total, seen = total + bpd * len(batch), seen + len(batch)
            bar.set_postfix(bpd=f"{bpd:.3f}")
            if self._out_of_time(start):
                break
        self.state.epoch += 1
        self.state.examples += seen
        self.state.seconds = time.perf_counter() - start
        return {"epoch": self.state.epoch, "step": self.state.step, "train_bpd": total / max(seen, 1),
                "seconds": round(self.state.seconds, 2)}

    def _step(self, batch: torch.Tensor) -> float:
        lr = self.config.lr * min(1.0, (self.state.step + 1) / max(self.config.warmup_steps, 1))
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        loss = self.model.bits_per_dim(batch)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.clip_norm)
        if not (math.isfinite(loss.item()) and math.isfinite(norm.item())):
            self._diverged(loss.item(), norm.item())
        self.optimizer.step()
        self.state.step += 1
        return loss.item()

    def _diverged(self, loss: float, norm: float) -> None:
        kept = self.checkpoint_path if self.checkpoint_path and self.checkpoint_path.exists() else None
        where = f"last good checkpoint kept at {kept}" if kept else "no checkpoint written yet"
        raise TrainingDiverged(f"training diverged at step {self.state.step} (loss {loss}, "
                               f"grad norm {norm}); stopped, {where}; try a lower --lr")

    def _save(self) -> None:
        if self.checkpoint_path is None:
            return
        extra = {"rng": torch.get_rng_state()}
        for i, per_param in self.optimizer.state_dict()["state"].items():
            extra.update({f"optim.{i}.{k}": torch.as_tensor(v) for k, v in per_param.items()})
        meta = {"train": asdict(self.config), "epoch": self.state.epoch, "step": self.state.step,
                "seconds": self.state.seconds, "examples": self.state.examples, "history": self.state.history,
                "n_bins": self.model.n_bins}
        save_checkpoint(self.checkpoint_path, self.model, extra, meta)

    def resume(self, path: str | Path) -> None:
        """Load weights, optimizer moments, RNG state and counters from a checkpoint written by `fit`."""
        ckpt = read_checkpoint(path)
        if ckpt.model.name != self.model.name or ckpt.model.config != self.model.config:
            raise SentflowError(f"{path}: checkpoint is for {ckpt.model.name} {ckpt.model.config}, "
                                f"not {self.model.name} {self.model.config}")
        self.model.load_state_dict(ckpt.model.state_dict())
        self._load_optimizer(ckpt.extra)
        if "rng" in ckpt.extra:
            torch.set_rng_state(ckpt.extra["rng"])
        meta = ckpt.meta
        self.state = TrainState(meta.get("epoch", 0), meta.get("step", 0), meta.get("seconds", 0.0),
                                meta.get("examples", 0), list(meta.get("history", [])))

    def _load_optimizer(self, extra: dict[str, torch.Tensor]) -> None:
        state: dict[int, dict[str, torch.Tensor]] = {}
        for key, value in extra.items():
            if key.startswith("optim."):
                _, index, name = key.split(".", 2)
                state.setdefault(int(index), {})[name] = value  # load_state_dict moves it to the params' device
        current = self.optimizer.state_dict()
        self.optimizer.load_state_dict({"state": state, "param_groups": current["param_groups"]})
