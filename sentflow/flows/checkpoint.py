"""Checkpoints: safetensors tensors + a JSON header holding the model name, its constructor config and the
data shape, so `load_checkpoint(path)` rebuilds the model.  No pickle anywhere."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from sentflow.errors import SentflowError
from sentflow.flows.base import FlowModel
from sentflow.flows.models import build_model
from sentflow.flows.train import CHECKPOINT_NAME, FORMAT, model_header
from sentflow.io import load_tensors, save_tensors

__all__ = ["CHECKPOINT_NAME", "Checkpoint", "check_shape", "load_checkpoint", "read_checkpoint", "save_checkpoint"]


@dataclass
class Checkpoint:
    """A rebuilt model, the JSON meta, and the remaining (optimizer / RNG) tensors, keyed without prefix."""

    model: FlowModel
    meta: dict
    extra: dict[str, torch.Tensor]


def save_checkpoint(
    path: str | Path, model: FlowModel, extra: dict[str, torch.Tensor] | None = None, meta: dict | None = None
) -> None:
    """Write model weights/buffers (prefix ``model.``) and `extra` tensors (prefix ``extra.``) atomically."""
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    tensors.update({f"extra.{k}": v for k, v in (extra or {}).items()})
    save_tensors(path, tensors, {**model_header(model), **(meta or {})})


def read_checkpoint(path: str | Path) -> Checkpoint:
    """Rebuild the model from a checkpoint; SentflowError for foreign, corrupted or mismatching files."""
    tensors, meta = load_tensors(path)
    if meta.get("format") != FORMAT or "model" not in meta or not isinstance(meta.get("config"), dict):
        raise SentflowError(f"{path}: not a sentflow flows checkpoint (format {meta.get('format')!r})")
    model = build_model(meta["model"], **meta["config"])
    state = {k.removeprefix("model."): v for k, v in tensors.items() if k.startswith("model.")}
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise SentflowError(f"{path}: weights do not match a {meta['model']} model ({first})") from None
    extra = {k.removeprefix("extra."): v for k, v in tensors.items() if k.startswith("extra.")}
    return Checkpoint(model, meta, extra)


def load_checkpoint(path: str | Path) -> FlowModel:
    """Rebuild the trained model stored at `path` (in eval mode)."""
    return read_checkpoint(path).model.eval()


def check_shape(model: FlowModel, shape: tuple[int, ...], where: str) -> None:
    """Refuse data whose image shape differs from the one the model was built for."""
    if tuple(shape) != model.data_shape:
        raise SentflowError(f"{where}: model was trained on shape {list(model.data_shape)}, data has {list(shape)}")
