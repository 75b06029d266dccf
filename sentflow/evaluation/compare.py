"""Compare calibration methods on an STS task: encode once, fit without labels, score the test split."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from sentflow.calibration.base import Calibrator
from sentflow.encoding.encoder import Encoder
from sentflow.errors import SentflowError
from sentflow.evaluation.sts import SENTEVAL_TASKS, SPLITS, StsPairs, evaluate_sts, load_sts

METHODS = ("none", "whitening", "flow")
FIT_ON = ("all", *SPLITS)


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


def make_calibrator(method: str, dim: int | None = None, power: float = 0.5, **flow_options) -> Calibrator | None:
    """The calibrator a method name stands for (None for `none`)."""
    if method == "none":
        return None
    if method == "whitening":
        from sentflow.calibration.whitening import Whitening

        return Whitening(n_components=dim, power=power)
    if method == "flow":
        from sentflow.calibration.bertflow import BertFlow

        return BertFlow(**flow_options)
    raise SentflowError(f"unknown method {method!r}; choose from {', '.join(METHODS)}")


def fit_splits(task: str, fit_on: str) -> tuple[str, ...]:
    """Which splits' sentences the calibration is fitted on (never their labels)."""
    if fit_on not in FIT_ON:
        raise SentflowError(f"unknown --fit-on {fit_on!r}; choose one of {', '.join(FIT_ON)}")
    if task in SENTEVAL_TASKS:
        if fit_on not in ("all", "test"):
            raise SentflowError(f"{task} has only a test split; use --fit-on all or test")
        return ("test",)
    return SPLITS if fit_on == "all" else (fit_on,)


def encode_pairs(encoder: Encoder, splits: dict[str, StsPairs]) -> dict[str, np.ndarray]:
    """Embeddings of every sentence occurrence per split, encoding each distinct sentence once."""
    unique = sorted({s for pairs in splits.values() for s in pairs.sentences})
    vectors = encoder.encode(unique)
    index = {s: i for i, s in enumerate(unique)}
    return {name: vectors[[index[s] for s in pairs.sentences]] for name, pairs in splits.items()}


def score(calibrator: Calibrator | None, fit_rows: np.ndarray, test_rows: np.ndarray, gold: np.ndarray) -> MethodResult:
    """Fit `calibrator` on fit_rows, transform the test pairs and report the correlations."""
    seconds = 0.0
    if calibrator is not None:
        start = time.perf_counter()
        calibrator.fit(fit_rows)
        seconds = time.perf_counter() - start
        test_rows = calibrator.transform(test_rows)
    n = len(gold)
    metrics = evaluate_sts(test_rows[:n], test_rows[n:], gold)
    method = calibrator.method if calibrator is not None else "none"
    return MethodResult(method, int(test_rows.shape[1]), metrics["spearman"], metrics["pearson"], seconds)


def compare(
    encoder: Encoder,
    task: str = "sts-b",
    methods: Sequence[str] = ("none", "whitening"),
    dim: int | None = None,
    power: float = 0.5,
    fit_on: str = "all",
    data_dir: str | None = None,
    flow_options: dict | None = None,
) -> StsReport:
    """Test-split Spearman/Pearson x100 of each method, fitted without labels on `fit_on` sentences."""
    wanted = fit_splits(task, fit_on)
    splits = {name: load_sts(task, name, data_dir) for name in sorted({*wanted, "test"})}
    if dim is not None and not 1 <= dim <= encoder.dim:
        raise SentflowError(f"dim={dim} must be between 1 and the embedding size {encoder.dim}")
    calibrators = [make_calibrator(m, dim, power, **(flow_options or {})) for m in methods]
    vectors = encode_pairs(encoder, splits)
    fit_rows = np.concatenate([vectors[name] for name in wanted])
    results = [score(c, fit_rows, vectors["test"], splits["test"].scores) for c in calibrators]
    return StsReport(task, str(encoder.model_name), encoder.pooling, fit_on, int(len(fit_rows)), tuple(results))
