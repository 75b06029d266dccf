"""Checkpoints: safetensors tensors + a JSON header holding the model name, its constructor config and the
data shape, so `load_checkpoint(path)` rebuilds the model.  No pickle anywhere."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from sentflow.errors import SentflowError
from sentflow.files.io import load_tensors, restore_module, save_tensors
from sentflow.files.schemas import FlowHeader
from sentflow.flows.base import FlowModel
from sentflow.flows.models import build_model
from sentflow.flows.train import CHECKPOINT_NAME, model_header

__all__ = ["CHECKPOINT_NAME", "Checkpoint", "check_shape", "load_checkpoint", "read_checkpoint", "save_checkpoint"]


@dataclass
class Checkpoint:
    """A rebuilt model, the JSON meta, and the remaining (optimizer / RNG) tensors, keyed without prefix."""

    model: FlowModel
    meta: FlowHeader
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
    tensors, header = load_tensors(path, FlowHeader)
    state = {k.removeprefix("model."): v for k, v in tensors.items() if k.startswith("model.")}
    model = restore_module(lambda: build_model(header.model, **header.config), state, path)
    check_shape(model, tuple(header.data_shape), str(path))
    extra = {k.removeprefix("extra."): v for k, v in tensors.items() if k.startswith("extra.")}
    return Checkpoint(model, header, extra)


def load_checkpoint(path: str | Path) -> FlowModel:
    """Rebuild the trained model stored at `path` (in eval mode)."""
    return read_checkpoint(path).model.eval()


def check_shape(model: FlowModel, shape: tuple[int, ...], where: str) -> None:
    """Refuse data whose image shape differs from the one the model was built for."""
    if tuple(shape) != model.data_shape:
        raise SentflowError(f"{where}: model was trained on shape {list(model.data_shape)}, data has {list(shape)}")
