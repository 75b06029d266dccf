"""Reading the CLI's inputs: text files, .npy embeddings, and the named STS data."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from sentflow.encoder import Encoder
from sentflow.errors import SentflowError
from sentflow.evaluation import fit_splits
from sentflow.io import load_npy
from sentflow.stats import as_matrix
from sentflow.sts import TASKS, load_sts, read_lines


def read_sentences(path: Path) -> list[str]:
    """One sentence per line (every line is a row, so rows match line numbers)."""
    lines = read_lines(path)
    if not lines:
        raise SentflowError(f"{path}: the file is empty; expected one sentence per line")
    return lines


def read_embeddings(path: Path) -> np.ndarray:
    """A 2-D finite float array from a .npy file; errors name the file."""
    try:
        return as_matrix(load_npy(path), name=str(path))
    except SentflowError as exc:
        message = str(exc)
        raise SentflowError(message if message.startswith(str(path)) else f"{path}: {message}") from None


def fit_data(data: str, encoder: Encoder, data_dir: Path | None) -> np.ndarray:
    """Rows to fit on: a task name (its sentences, all splits), a .npy file, or a text file."""
    if data in TASKS:
        splits = fit_splits(data, "all")
        return encoder.encode([s for split in splits for s in load_sts(data, split, data_dir).sentences])
    path = Path(data)
    if path.suffix == ".npy":
        return read_embeddings(path)
    return encoder.encode(read_sentences(path))
