"""Where and how computation runs: device choice, thread counts and seeding, without global side effects.

Nothing here runs at import. Thread counts are set for the duration of a `using_threads` block and restored
afterwards, so a library call never leaves the process with a different torch configuration.
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from typing import TYPE_CHECKING

from sentflow.errors import SentflowError
from sentflow.parsing import whole_number

if TYPE_CHECKING:
    import torch

THREADS_ENV = "SENTFLOW_THREADS"
FLOW_THREADS = 1  # flow fits: their small layers run fastest on one thread, and a shared machine hurts them least
MAX_THREADS = 4096


def default_device(device: str | torch.device | None = None) -> torch.device:
    """`device` if given, else cuda when a GPU is visible, else cpu."""
    import torch

    if device is not None:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity, not the machine's total)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def env_threads() -> int | None:
    """$SENTFLOW_THREADS as a thread count (None when unset or blank); a value that is not one is refused."""
    raw = os.environ.get(THREADS_ENV, "").strip()
    if not raw:
        return None
    return whole_number(raw, f"{THREADS_ENV} (a thread count)", 1, MAX_THREADS)


def resolve_threads(threads: int | None = None, default: int | None = None, read_env: bool = True) -> int:
    """The thread count to use: `threads`, else $SENTFLOW_THREADS (when `read_env`), else `default`, else every
    available core."""
    if threads is None and read_env:
        threads = env_threads()
    if threads is None:
        threads = default if default is not None else available_cores()
    if not 1 <= threads <= MAX_THREADS:
        raise SentflowError(f"threads must be between 1 and {MAX_THREADS}, got {threads}")
    return threads


@contextmanager
def using_threads(threads: int | None = None, default: int | None = None, read_env: bool = True) -> Iterator[int]:
    """Run the block with torch using `resolve_threads(threads, default, read_env)` intra-op threads, then
    restore."""
    import torch

    wanted = resolve_threads(threads, default, read_env)
    before = torch.get_num_threads()
    if wanted != before:
        torch.set_num_threads(wanted)
    try:
        yield wanted
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)


@contextmanager
def blas_threads(threads: int | None = None) -> Iterator[int]:
    """Run the block with numpy's BLAS (OpenBLAS, MKL) on `resolve_threads(threads)` threads, then restore.

    numpy's BLAS keeps its own thread pool, which torch's setting does not reach: whitening fits and transforms
    run there. threadpoolctl sets and restores it, through one controller that lists the loaded BLAS libraries at
    the first call (listing them costs a few milliseconds with torch loaded: more than a one-query search), so a
    BLAS loaded later is left alone.
    """
    wanted = resolve_threads(threads)
    with _blas_controller().limit(limits=wanted, user_api="blas"):
        yield wanted


@cache
def _blas_controller():
    """threadpoolctl's controller of the thread pools loaded so far (numpy's BLAS is loaded with numpy)."""
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


def seed_everything(seed: int) -> None:
    """Seed Python's, numpy's and torch's global generators (for scripts; the library uses local generators)."""
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
