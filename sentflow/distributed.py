"""Whitening at cluster scale on Dask: per-chunk float64 moments, one tree reduction, one eigendecomposition.

Whitening needs only (count, mean, sum of outer products), which merge exactly (`MomentAccumulator.merge`), so a
fit is one pass over the chunks where they live and a few megabytes sent to the client. Dask is optional
(`sentflow[dask]`) and imported on first use. Every function runs on the active Dask scheduler: this process's
threads by default, or a cluster once a `distributed.Client` exists (`connect`). Shards must be readable at the same
path by every worker (a shared filesystem).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import os
import pickle
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import numpy as np
from tqdm.auto import tqdm

from sentflow.calibration.stats import MomentAccumulator, as_matrix
from sentflow.calibration.whitening import Whitening
from sentflow.encoding.models import resolve_model
from sentflow.errors import SentflowError
from sentflow.extras import require
from sentflow.files.finite import check_finite
from sentflow.files.io import first_line
from sentflow.files.npy import NpyShard, NpyShards
from sentflow.tasks.sources import embedding_files

if TYPE_CHECKING:
    from sentflow.calibration.base import Calibrator
    from sentflow.encoding.encoder import Encoder

CHUNK_ROWS = 65_536  # rows per task when reading shards: 192 MiB of float32 at 768 dims
SPLIT_EVERY = 8  # accumulators merged per node of the reduction tree
CONNECT_TIMEOUT_S = 5.0
WORKERS_TIMEOUT_S = 30.0  # how long a scheduler may have no worker before the run is refused
_SCHEME_NEEDS = {  # what a scheme needs beyond an address, for the message when a connection cannot be made
    "tls": "Dask's TLS settings (distributed.comm.tls.* in the Dask config)",
    "wss": "Dask's TLS settings (distributed.comm.tls.* in the Dask config)",
    "ucx": "UCX support in Dask (the distributed-ucxx package)",
}
_WORKER_ENCODERS: dict[str, Encoder] = {}  # settings digest -> encoder, one per worker process (see `encode`)

PathSpec = str | os.PathLike | Sequence[str | os.PathLike]


def connect(address: str, timeout: float = CONNECT_TIMEOUT_S, workers_timeout: float = WORKERS_TIMEOUT_S):
    """A `distributed.Client` of the scheduler at `address` that has at least one worker; a one-line SentflowError
    if it cannot be reached or no worker joins within `workers_timeout` seconds."""
    distributed = require("distributed", "dask")
    security = distributed.Security()  # TLS settings from the Dask config, if any

    async def probe() -> None:  # fail fast, before a Client exists to complain on garbage collection
        comm = await distributed.comm.connect(address, timeout=timeout, **security.get_connection_args("client"))
        await comm.close()

    try:
        with ThreadPoolExecutor(1) as thread:  # its own event loop, even when the caller runs one (notebooks)
            thread.submit(asyncio.run, probe()).result()
        client = distributed.Client(address, timeout=timeout, security=security)
    except (OSError, ValueError, TimeoutError, TypeError, NotImplementedError) as exc:
        scheme = address.partition("://")[0] if "://" in address else "tcp"
        needs = f"; {scheme}:// needs {_SCHEME_NEEDS[scheme]}" if scheme in _SCHEME_NEEDS else ""
        raise SentflowError(
            f"cannot reach the Dask scheduler at {address!r} within {timeout:g} s ({first_line(exc)}){needs}; "
            "check the address, or start one with `dask scheduler`"
        ) from None
    try:
        _check_workers(client, workers_timeout)
    except SentflowError:
        client.close()
        raise
    return client


def _read_rows(shard: NpyShard, start: int, stop: int, version: tuple[int, int]) -> np.ndarray:
    """Rows start:stop of a shard, read on the worker (`version` makes a rewritten file a new task)."""
    rows = shard.read(start, stop)
    check_finite(rows, f"{shard.path}:", start)
    return rows if rows.dtype in (np.float32, np.float64) else rows.astype(np.float64)


def from_npy(paths: PathSpec, chunk_rows: int = CHUNK_ROWS):
    """.npy shards (files, directories or globs) as one lazy (n, d) dask array; workers read their own chunks.

    Only the headers are read here: widths, dtypes, lengths and readability are checked for every file up front.
    """
    dask, da = require("dask", "dask"), require("dask.array", "dask")
    if chunk_rows < 1:
        raise SentflowError(f"chunk_rows must be >= 1, got {chunk_rows}")
    specs = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    shards = NpyShards([path for spec in specs for path in embedding_files(spec, role="a Dask fit")])
    blocks = []
    for shard in shards.shards:
        stat = shard.path.stat()
        dtype = shard.dtype if shard.dtype in (np.float32, np.float64) else np.dtype(np.float64)
        for start in range(0, shard.rows, chunk_rows):
            stop = min(start + chunk_rows, shard.rows)
            rows = dask.delayed(_read_rows, pure=True)(shard, start, stop, (stat.st_size, stat.st_mtime_ns))
            blocks.append(da.from_delayed(rows, shape=(stop - start, shards.cols), dtype=dtype))
    if not blocks:
        raise SentflowError(f"{shards.paths[0]}: the shards hold no rows")
    return da.concatenate(blocks, axis=0)


def _as_dask_matrix(X):
    """X as a 2-D numeric dask array with whole rows in each chunk."""
    da = require("dask.array", "dask")
    X = da.asarray(X)
    if X.ndim != 2 or not np.issubdtype(X.dtype, np.number):
        raise SentflowError(f"X must be a 2-D numeric array (n_samples, n_features), got shape {X.shape}, {X.dtype}")
    return X if X.numblocks[1] == 1 else X.rechunk({1: -1})


def _block_moments(block: np.ndarray) -> MomentAccumulator:
    block = as_matrix(block)
    moments = MomentAccumulator(block.shape[1])
    moments.update(block)
    return moments


def _merge(*parts: MomentAccumulator) -> MomentAccumulator:
    return functools.reduce(MomentAccumulator.merge, parts)


def _moment_tree(X, split_every: int) -> tuple[list, object]:
    """Lazy per-chunk MomentAccumulators of X's rows, and the root of the tree that merges them."""
    dask = require("dask", "dask")
    if split_every < 2:
        raise SentflowError(f"split_every must be >= 2, got {split_every}")
    leaves = [dask.delayed(_block_moments, pure=True)(block) for block in _as_dask_matrix(X).to_delayed().ravel()]
    parts = leaves
    while len(parts) > 1:
        parts = [
            dask.delayed(_merge, pure=True)(*parts[i : i + split_every]) for i in range(0, len(parts), split_every)
        ]
    return leaves, parts[0]


def _current_client():
    """The distributed Client this process computes on, or None (local scheduler)."""
    try:
        return require("distributed", "dask").get_client()
    except (ValueError, SentflowError):
        return None


def _check_workers(client, timeout: float) -> None:
    """A client whose scheduler has no worker would wait forever: refuse it once `timeout` seconds pass."""
    try:
        client.wait_for_workers(1, timeout=timeout)
    except TimeoutError:
        raise SentflowError(
            f"the Dask scheduler of the active client ({client.scheduler.address}) has no worker after "
            f"{timeout:g} s; start one with `dask worker ADDRESS`"
        ) from None


def _reduce(leaves: list, root, progress: bool) -> MomentAccumulator:
    """Compute the tree; on a distributed client with `progress`, a tqdm bar counts the chunks done."""
    client = _current_client()
    if client is not None:
        _check_workers(client, WORKERS_TIMEOUT_S)
    if client is None or not progress:
        (merged,) = require("dask", "dask").compute(root)
        return merged
    root_future, *leaf_futures = client.compute([root, *leaves])
    done = require("distributed", "dask").as_completed(leaf_futures)
    del leaf_futures  # as_completed holds the last reference: each chunk's statistics are freed once merged
    for _ in tqdm(done, total=len(leaves), desc="moments", unit="chunk"):
        pass
    return root_future.result()


def fit_whitening(
    X,
    n_components: int | None = None,
    power: float = 0.5,
    *,
    eps: float = 1e-9,
    split_every: int = SPLIT_EVERY,
    progress: bool = False,
) -> Whitening:
    """A `Whitening` fitted on a dask array (or anything `dask.array.asarray` takes), equal to the in-memory fit.

    One tree reduction of float64 per-chunk statistics runs on the active scheduler; the eigendecomposition runs
    here. The result is an ordinary `Whitening` (save, transform, `partial_fit` further). `progress` shows a bar
    of finished chunks when computing on a distributed client.
    """
    Whitening(n_components, power, eps)._check_params(_as_dask_matrix(X).shape[1])  # fail before the cluster works
    merged = _reduce(*_moment_tree(X, split_every), progress)
    return Whitening.from_moments(merged, n_components=n_components, power=power, eps=eps)


def fit_shards(
    paths: PathSpec,
    scheduler: str | None = None,
    *,
    n_components: int | None = None,
    power: float = 0.5,
    eps: float = 1e-9,
    chunk_rows: int = CHUNK_ROWS,
    progress: bool = False,
) -> Whitening:
    """Fit a whitening on .npy shards, on the Dask cluster at `scheduler` (an address) or in this process."""
    X = from_npy(paths, chunk_rows)  # every shard checked before connecting
    with connect(scheduler) if scheduler is not None else contextlib.nullcontext():
        return fit_whitening(X, n_components, power, eps=eps, progress=progress)


def transform(calibration: Calibrator, X):
    """`calibration.transform` on every chunk of X where it lives: a lazy (n, k) dask array."""
    X = _as_dask_matrix(X)
    probe = calibration.transform(np.zeros((1, X.shape[1]), dtype=X.dtype))  # checks fitted and width here
    meta = np.empty((0, probe.shape[1]), dtype=probe.dtype)
    return X.map_blocks(calibration.transform, chunks=(X.chunks[0], (probe.shape[1],)), dtype=probe.dtype, meta=meta)


def _encode_partition(texts: Sequence[str], key: str, encoder: Encoder) -> np.ndarray:
    """Encode one partition with this worker process's copy of the encoder (its model loads on first use)."""
    return _WORKER_ENCODERS.setdefault(key, encoder).encode(list(texts))


def encode(texts, encoder: Encoder):
    """Vectors of a dask bag of strings, encoded on the workers: a lazy (n, dim) float32 dask array, in bag order.

    The encoder's settings travel to the workers, never weights: each worker process keeps one copy per distinct
    settings and loads its model once, on first use. Pass an encoder that has not loaded its model in this process.
    Row counts per chunk are unknown until computed (`compute_chunk_sizes`).
    """
    dask, da = require("dask", "dask"), require("dask.array", "dask")
    try:
        settings = pickle.dumps(encoder)
    except (pickle.PicklingError, AttributeError, TypeError):
        raise SentflowError(
            "encode needs an encoder that has not loaded its model in this process (each worker loads its own); "
            "pass a fresh Encoder(...)"
        ) from None
    key = hashlib.sha256(settings).hexdigest()
    shipped = dask.delayed(encoder, name=f"sentflow-encoder-{key}")
    dim = _hidden_size(encoder.model_name)
    parts = [dask.delayed(_encode_partition, pure=True)(part, key, shipped) for part in texts.to_delayed()]
    blocks = [da.from_delayed(part, shape=(np.nan, dim), dtype=np.float32) for part in parts]
    return da.concatenate(blocks, axis=0)


def _hidden_size(model: str) -> int:
    """The model's vector size, read from its config without loading the weights."""
    from transformers import AutoConfig

    try:
        return int(AutoConfig.from_pretrained(resolve_model(model)).hidden_size)
    except (OSError, ValueError) as exc:
        raise SentflowError(f"cannot read the config of model {model!r}: {first_line(exc)}") from None
