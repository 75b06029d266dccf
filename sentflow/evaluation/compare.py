"""Compare calibration methods on an STS task: encode once, fit without labels, score the test split."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from sentflow.calibration.base import Calibrator
from sentflow.calibration.factory import make_calibrator
from sentflow.errors import SentflowError
from sentflow.evaluation.sts import evaluate_sts
from sentflow.protocols import ModelEncoder
from sentflow.tasks.sts_task import encode_sts_task, load_sts_task


@dataclass(frozen=True)
class MethodResult:
    """One row of a comparison table."""

    method: str
    dim: int
    spearman: float
    pearson: float
    fit_seconds: float


@dataclass(frozen=True)
class StsReport:
    """What `compare` measured: one MethodResult per method, and how the calibrations were fitted."""

    task: str
    model: str
    pooling: str
    fit_on: str
    n_fit: int
    results: tuple[MethodResult, ...]

    def to_dict(self) -> dict:
        """The JSON of `sentflow eval --json`."""
        return {
            **{k: v for k, v in asdict(self).items() if k != "results"},
            "results": [asdict(r) for r in self.results],
        }


def score(
    method: str, calibrator: Calibrator | None, fit_rows: np.ndarray, test_rows: np.ndarray, gold: np.ndarray
) -> MethodResult:
    """Fit `calibrator` (what `method` names) on fit_rows, transform the test pairs and report the correlations."""
    seconds = 0.0
    if calibrator is not None:
        start = time.perf_counter()
        calibrator.fit(fit_rows)
        seconds = time.perf_counter() - start
        test_rows = calibrator.transform(test_rows)
    n = len(gold)
    metrics = evaluate_sts(test_rows[:n], test_rows[n:], gold)
    return MethodResult(method, int(test_rows.shape[1]), metrics["spearman"], metrics["pearson"], seconds)


def compare(
    encoder: ModelEncoder,
    task: str = "sts-b",
    methods: Sequence[str] = ("none", "whitening"),
    dim: int | None = None,
    power: float | None = None,
    fit_on: str = "all",
    data_dir: str | None = None,
    flow_options: dict | None = None,
) -> StsReport:
    """Test-split Spearman/Pearson x100 of each method, fitted without labels on `fit_on` sentences.

    This is `sentflow eval sts TASK`.

    Args:
        encoder: The encoder whose vectors are calibrated (an `Encoder`, or anything with its settings).
        task: An STS task: `sts-b` (shipped), `sts12` ... `sts16` or `sick-r` (from `data_dir`).
        methods: Calibrations to compare: `none`, `whitening`, `pca`, `flow`.
        dim: Dimensions kept by whitening and pca (None: all).
        power: Whitening power, overriding each method's own.
        fit_on: The sentences the calibrations are fitted on, without labels: `all` (train+dev+test, the
            papers' protocol), `train`, `dev` or `test`.
        data_dir: The folder holding the tasks not shipped with sentflow.
        flow_options: `BertFlow` parameters for the `flow` method.

    Returns:
        One `MethodResult` per method (`report.results`); `report.to_dict()` is the JSON of `sentflow eval --json`.
    """
    sts = load_sts_task(task, fit_on, data_dir)
    if dim is not None and not 1 <= dim <= encoder.dim:
        raise SentflowError(f"dim={dim} must be between 1 and the embedding size {encoder.dim}")
    calibrators = [None if m == "none" else make_calibrator(m, dim, power, **(flow_options or {})) for m in methods]
    encoded = encode_sts_task(encoder, sts)
    fit_rows = encoded.fit_rows
    gold = sts.pairs("test").scores
    results = [score(m, c, fit_rows, encoded.vectors["test"], gold) for m, c in zip(methods, calibrators, strict=True)]
    return StsReport(task, str(encoder.model_name), encoder.pooling, fit_on, int(len(fit_rows)), tuple(results))
