"""How an encoder hands its texts to its backend: the batching settings, and batches sorted by length."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


class Batching(NamedTuple):
    """How an encoder hands its texts over: the settings that may change between calls, not the vectors."""

    batch_size: int
    max_length: int
    batch_tokens: int | None = None
    threads: int | None = None
    show_progress: bool | None = None


def length_batches(lengths: list[int], batch_size: int, batch_tokens: int | None = None) -> list[np.ndarray]:
    """Row indices of each batch, longest sentences first (so that a batch pads little).

    With `batch_tokens`, a batch holds as many sentences as fit `batch_tokens` padded tokens (its longest length
    times its rows; at least one sentence), so batches of short sentences are larger; else `batch_size` sentences.
    """
    order = np.argsort([-n for n in lengths], kind="stable")
    if batch_tokens is None:
        return [order[start : start + batch_size] for start in range(0, len(order), batch_size)]
    groups, start = [], 0
    while start < len(order):
        rows = max(1, batch_tokens // max(1, lengths[order[start]]))
        groups.append(order[start : start + rows])
        start += rows
    return groups
