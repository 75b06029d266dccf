"""`sentflow.fit`: fit a calibration without labels and save it, alone or as a pipeline; `sentflow fit` calls it.

Every check that needs no work runs first (the method, the output path, whether the encoder of the vectors is
known), then the data are encoded and fitted a chunk at a time, on a Dask cluster when a scheduler is given.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sentflow.calibration.base import Calibrator
from sentflow.calibration.factory import METHODS, POWERS, make_calibrator
from sentflow.encoding.factory import make_encoder
from sentflow.encoding.models import DEFAULT_MODEL, DEFAULT_POOLING
from sentflow.errors import Param, SentflowError
from sentflow.files.io import check_inputs, check_output
from sentflow.files.schemas import is_calibration_path
from sentflow.pipeline import check_encoder_known, check_normalize_out, save_fitted
from sentflow.streaming import data_width, fit_calibration, fit_source
from sentflow.tasks.sources import EmbeddingSource, Source


@dataclass(frozen=True)
class FitReport:
    """What `fit` made.

    Attributes:
        calibration: The fitted calibration.
        out: Where it was written (a `.safetensors` file or a pipeline directory), or None.
        rows: The rows it was fitted on.
        dim_in: The width of the vectors it was fitted on.
    """

    calibration: Calibrator
    out: Path | None
    rows: int
    dim_in: int


def fit(
    data: str | os.PathLike = "sts-b",
    method: str = "whitening",
    out: str | os.PathLike | None = None,
    *,
    dim: int | None = None,
    power: float | None = None,
    normalize: bool = False,
    model: str | None = None,
    pooling: str | None = None,
    data_dir: str | os.PathLike | None = None,
    scheduler: str | None = None,
    encoder_options: Mapping[str, Any] | None = None,
    flow_options: Mapping[str, Any] | None = None,
) -> FitReport:
    """Fit a calibration on `data` (no labels are read) and write it to `out`.

    Args:
        data: An STS task name, a text file, a BEIR corpus (file or folder) or `.npy` embeddings (a file, a
            directory of shards or a glob).
        method: `whitening`, `pca` (centring and rotation only) or `flow` (BERT-flow).
        out: A `.safetensors` path (the calibration alone), any other path (a pipeline directory with the
            encoder's settings), or None (nothing written).
        dim: Dimensions kept by whitening or pca (None: all).
        power: Whitening power, instead of the method's own.
        normalize: Pipeline setting: L2-normalise the final vectors.
        model: The encoder of the data (default all-MiniLM-L6-v2); with `.npy` data, the one that made them.
        pooling: That encoder's pooling (default last-avg).
        data_dir: The folder of a task not shipped with sentflow.
        scheduler: A Dask scheduler address: fit `.npy` shards on that cluster (whitening or pca).
        encoder_options: Other `Encoder` options (batch_size, max_length, backend, ...).
        flow_options: `BertFlow` parameters (levels, depth, hidden, epochs, lr, seed, ...).

    Returns:
        The fitted calibration, where it was written, and the rows and width it was fitted on.

    Raises:
        SentflowError: A bad option or input, found before any work where that needs none.
    """
    source = _check(data, method, out, dim, power, normalize, scheduler)
    named = not isinstance(source, EmbeddingSource) or model is not None or pooling is not None
    if out is not None:
        check_encoder_known(out, named)  # before any work
    encoder = make_encoder(model or DEFAULT_MODEL, pooling or DEFAULT_POOLING, **dict(encoder_options or {}))
    width = data_width(source, encoder)
    if dim is not None and dim > width:
        raise SentflowError(Param("dim", dim), f": larger than the embedding size {width}")
    if scheduler is not None:
        from sentflow import distributed

        assert isinstance(source, EmbeddingSource)
        power = POWERS[method] if power is None else power
        calibrator = distributed.fit_shards(source.spec, scheduler, n_components=dim, power=power, progress=True)
        rows = calibrator.n_samples_seen_
    else:
        calibrator = make_calibrator(method, dim, power, **dict(flow_options or {}))
        rows = fit_calibration(calibrator, source, encoder, data_dir)
    written = save_fitted(calibrator, out, encoder if named else None, normalize) if out is not None else None
    return FitReport(calibrator, written, rows, width)


def _check(data, method, out, dim, power, normalize, scheduler) -> Source:
    """The checks that need no work: the method and its options, the output path and what the data are."""
    if method not in METHODS or method == "none":
        raise SentflowError(Param("method", method), ": unknown; choose whitening, pca or flow")
    if method == "flow" and (dim is not None or power is not None):
        raise SentflowError(
            Param("dim"), " and ", Param("power"), " apply to whitening and pca; a flow keeps every dimension"
        )
    check_normalize_out(normalize, out, out_required=True)
    if out is not None and is_calibration_path(out):
        check_output(out, [data])  # never the data file itself, not even through a hard link
    elif out is not None:
        check_inputs(out, [data])  # a pipeline directory never holds, or lies inside, the data
    source = fit_source(data)
    if scheduler is not None and (method not in POWERS or not isinstance(source, EmbeddingSource)):
        raise SentflowError(
            Param("scheduler"), " fits a whitening or pca on .npy embeddings (a file, directory or glob)"
        )
    return source
