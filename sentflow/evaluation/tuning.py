"""Choose a calibration on labels that are not the test set: a grid of whitening settings, BERT-flow and none.

Every candidate is fitted without labels, as `sentflow eval` does (on the task's sentences for STS, on the corpus
for retrieval); the candidate with the best score on the selection labels (an STS task's dev or train split, a
file of labelled pairs, or a BEIR folder's dev or train qrels) is chosen, and only then is every candidate's test
score reported beside it. Test labels never take part in the choice.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from sentflow.calibration.base import Calibrator
from sentflow.calibration.factory import make_calibrator
from sentflow.calibration.stats import MomentAccumulator, as_matrix
from sentflow.calibration.whitening import Whitening
from sentflow.errors import Param, SentflowError
from sentflow.evaluation.sts import evaluate_sts
from sentflow.files.schemas import SCORE, parse_value
from sentflow.protocols import ModelEncoder
from sentflow.tasks.sts import SENTEVAL_TASKS, StsPairs, read_lines
from sentflow.tasks.sts_task import encode_sts_task, fit_splits, load_sts_task

POWERS = (0.0, 0.1, 0.2, 0.25, 0.3, 0.4, 0.5)
DIMS = (256, 128, 64)  # besides the full embedding size and the max_dim budget
SELECT_ON = ("dev", "train")
RETRIEVAL_METRIC = "ndcg@10"

Scorer = Callable[[Calibrator | None], float]


@dataclass(frozen=True)
class Setting:
    """One point of the search: a method, its output dimension and (whitening only) its power."""

    method: str
    dim: int
    power: float | None = None

    @property
    def label(self) -> str:
        if self.method == "whitening":
            return f"whitening k={self.dim} power={self.power:g}"
        return f"{self.method} ({self.dim})"


@dataclass(frozen=True)
class Candidate:
    """A setting with its score on the selection labels (`dev`) and on the test labels (`test`)."""

    setting: Setting
    dev: float
    test: float

    def to_dict(self, metric: str) -> dict:
        s = self.setting
        return {
            "method": s.method,
            "dim": s.dim,
            "power": s.power,
            f"dev_{metric}": self.dev,
            f"test_{metric}": self.test,
        }


@dataclass(frozen=True)
class TuneReport:
    """What was searched, what was chosen on the selection labels, and the test scores of everything."""

    task: str
    model: str
    pooling: str
    metric: str
    select_on: str
    n_fit: int
    max_dim: int | None
    size: int
    candidates: tuple[Candidate, ...]
    selected: Candidate
    calibrator: Calibrator | None = field(default=None, compare=False, repr=False)

    def baseline(self) -> dict[str, Candidate]:
        """No calibration and full BERT-whitening (power 0.5, every dimension), whether or not they fit max_dim."""
        wanted = {"none": Setting("none", self.size), "whitening": Setting("whitening", self.size, 0.5)}
        found = {c.setting: c for c in self.candidates}
        return {name: found[s] for name, s in wanted.items() if s in found}

    def to_dict(self) -> dict:
        """The JSON of `sentflow tune --json`: settings, the selected candidate, baselines and every candidate."""
        head = {k: getattr(self, k) for k in ("task", "model", "pooling", "metric", "select_on", "n_fit", "max_dim")}
        return {
            **head,
            "selected": self.selected.to_dict(self.metric),
            "baseline": {name: c.to_dict(self.metric) for name, c in self.baseline().items()},
            "candidates": [c.to_dict(self.metric) for c in self.candidates],
        }


def settings_for(size: int, max_dim: int | None = None, with_flow: bool = True) -> list[Setting]:
    """The search space: none, whitening over POWERS x {size, 256, 128, 64, max_dim} (k <= min(size, max_dim)),
    and BERT-flow. Settings wider than `max_dim` are left out, except the two baselines (none and full whitening),
    which are always scored to be reported; `search(..., max_dim=)` never selects them."""
    if max_dim is not None and max_dim < 1:
        raise SentflowError(Param("max_dim", max_dim), ": must be a positive number of dimensions")
    budget = min(size, max_dim or size)
    dims = sorted({d for d in (size, *DIMS, budget) if d <= budget}, reverse=True)
    settings = [Setting("none", size)] + [Setting("whitening", k, p) for k in dims for p in POWERS]
    if budget < size:
        settings.append(Setting("whitening", size, 0.5))
    if with_flow and size <= budget:
        settings.append(Setting("flow", size))
    return settings


def search(
    settings: Sequence[Setting],
    fit_rows: np.ndarray,
    select: Scorer,
    test: Scorer,
    flow_options: dict | None = None,
    progress: bool | None = None,
    max_dim: int | None = None,
) -> tuple[tuple[Candidate, ...], Candidate, Calibrator | None]:
    """Fit every setting on `fit_rows` (the whitenings share one pass of float64 moments), score it with `select`
    and `test`; among settings of at most `max_dim` dimensions, the first with the highest `select` score wins.
    Returns (candidates, chosen, its calibrator)."""
    fit_rows = as_matrix(fit_rows, "fit rows")
    moments = None
    if any(s.method == "whitening" for s in settings):
        moments = MomentAccumulator(fit_rows.shape[1])
        moments.update(fit_rows)
    if max_dim is not None and not any(s.dim <= max_dim for s in settings):
        raise SentflowError(Param("max_dim", max_dim), ": no setting has at most this many dimensions")
    candidates, best, best_calibrator = [], None, None
    bar = tqdm(settings, desc="tune", unit="setting", disable=progress is False)
    for setting in bar:
        bar.set_postfix_str(setting.label)  # the slow one (a flow fit) is named while it runs, with its own bar
        calibrator = fit_setting(setting, fit_rows, moments, flow_options)
        candidate = Candidate(setting, _finite(select(calibrator), setting), _finite(test(calibrator), setting))
        candidates.append(candidate)
        if (max_dim is None or setting.dim <= max_dim) and (best is None or candidate.dev > best.dev):
            best, best_calibrator = candidate, calibrator
    if best is None:  # every score was finite, so a setting within max_dim was chosen; never reached
        raise SentflowError("no setting could be chosen")
    return tuple(candidates), best, best_calibrator


def fit_setting(
    setting: Setting, fit_rows: np.ndarray, moments: MomentAccumulator | None = None, flow_options: dict | None = None
) -> Calibrator | None:
    """The calibrator of `setting` fitted on `fit_rows` (a whitening from their `moments` when given)."""
    if setting.method == "none":
        return None
    if setting.method == "whitening":
        k = None if setting.dim == fit_rows.shape[1] else setting.dim
        power = 0.5 if setting.power is None else setting.power
        if moments is None:
            return Whitening(n_components=k, power=power).fit(fit_rows)
        return Whitening.from_moments(moments, n_components=k, power=power)
    return make_calibrator(setting.method, **(flow_options or {})).fit(fit_rows)


def _finite(value: float, setting: Setting) -> float:
    if not np.isfinite(value):
        raise SentflowError(f"{setting.label} scored {value}: a calibration produced non-finite or constant vectors")
    return float(value)


def sts_scorer(vectors: np.ndarray, gold: np.ndarray) -> Scorer:
    """Spearman x100 of the cosine of calibrated pair vectors (first sentences, then second sentences)."""
    n = len(gold)

    def scorer(calibrator: Calibrator | None) -> float:
        rows = vectors if calibrator is None else calibrator.transform(vectors)
        return evaluate_sts(rows[:n], rows[n:], gold)["spearman"]

    return scorer


def read_pairs_file(path: str | os.PathLike) -> StsPairs:
    """Labelled pairs: one `sentence1<TAB>sentence2<TAB>score` per line (empty lines skipped)."""
    s1, s2, scores = [], [], []
    for lineno, line in enumerate(read_lines(path), start=1):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) != 3:
            raise SentflowError(f"{path}, line {lineno}: expected sentence1, sentence2, score separated by 2 tabs")
        s1.append(fields[0])
        s2.append(fields[1])
        scores.append(parse_value(SCORE, fields[2], f"{path}, line {lineno}: score"))
    if len(scores) < 3:
        raise SentflowError(f"{path}: {len(scores)} scored pairs; selection needs at least 3")
    return StsPairs(s1, s2, np.asarray(scores))


def tune(
    encoder: ModelEncoder,
    task: str | os.PathLike = "sts-b",
    select_on: str = "dev",
    max_dim: int | None = None,
    pairs_file: str | os.PathLike | None = None,
    with_flow: bool = True,
    fit_on: str = "all",
    data_dir: str | os.PathLike | None = None,
    flow_options: dict | None = None,
    progress: bool | None = None,
) -> TuneReport:
    """Search none / whitening (power x dimension) / BERT-flow and choose on labels that are not the test set.

    `task` is an STS task (sts-b shipped; sts12-16 and sick-r from `data_dir`) or the path of a BEIR folder.
    STS: calibrations are fitted on the `fit_on` sentences without labels, chosen on the Spearman of the
    `select_on` split (or of `pairs_file`, lines `s1<TAB>s2<TAB>score`), and reported on test. BEIR: fitted on
    the corpus, chosen on nDCG@10 of qrels/`select_on`.tsv, reported on qrels/test.tsv. `max_dim` keeps only
    settings of at most that many dimensions. The report's `calibrator` is the chosen one, fitted (None for none).

    Args:
        encoder: The encoder whose vectors are calibrated.
        task: An STS task name or a BEIR folder.
        select_on: The labels chosen on: `dev` or `train` (never test).
        max_dim: Dimension budget: only settings with at most this many dimensions can be chosen.
        pairs_file: Your own labelled pairs to choose on, instead of `select_on`.
        with_flow: Include BERT-flow (default settings) among the candidates.
        fit_on: STS sentences the candidates are fitted on, without labels: `all`, `train`, `dev` or `test`.
        data_dir: The folder holding the tasks not shipped with sentflow.
        flow_options: `BertFlow` parameters of the flow candidate.
        progress: Show a progress bar over the candidates (None: yes; False: no).

    Returns:
        Every candidate with its selection and test scores, the one `selected`, and its fitted `calibrator`.
    """
    if select_on not in SELECT_ON:
        raise SentflowError(
            Param("select_on", select_on), f": choose on {' or '.join(SELECT_ON)}, never on the test labels"
        )
    from sentflow.tasks.sources import BeirSource, StsTaskSource, resolve_source

    if isinstance(resolve_source(task, (StsTaskSource, BeirSource), role="tune"), BeirSource):
        if pairs_file is not None:
            raise SentflowError(
                Param("pairs_file"), " selects on STS pairs; a BEIR folder selects on its qrels (",
                Param("select_on"), ")",
            )
        return _tune_retrieval(encoder, Path(task), select_on, max_dim, with_flow, flow_options, progress)
    return _tune_sts(
        encoder, str(task), select_on, max_dim, pairs_file, with_flow, fit_on, data_dir, flow_options, progress
    )


def _tune_sts(
    encoder: ModelEncoder, task, select_on, max_dim, pairs_file, with_flow, fit_on, data_dir, flow_options, progress
):
    data_dir = str(data_dir) if data_dir else None
    fit_splits(task, fit_on)  # a bad fit_on fails before the selection check
    if pairs_file is None and task in SENTEVAL_TASKS:
        raise SentflowError(
            f"{task} has no {select_on} split to select on: pass ", Param("pairs_file"),
            " (your labelled pairs), or tune on sts-b and transfer the setting",
            param="select_on",
        )
    select_name = "pairs" if pairs_file is not None else select_on
    extra = {select_name: read_pairs_file(pairs_file)} if pairs_file is not None else None
    also = ("test",) if pairs_file is not None else ("test", select_on)
    sts = load_sts_task(task, fit_on, data_dir, also=also, extra=extra)
    encoded = encode_sts_task(encoder, sts)
    fit_rows = encoded.fit_rows
    candidates, selected, calibrator = search(
        settings_for(int(fit_rows.shape[1]), max_dim, with_flow),
        fit_rows,
        select=sts_scorer(encoded.vectors[select_name], sts.pairs(select_name).scores),
        test=sts_scorer(encoded.vectors["test"], sts.pairs("test").scores),
        flow_options=flow_options,
        progress=progress,
        max_dim=max_dim,
    )
    return _report(
        encoder, task, "spearman", str(pairs_file or select_on), fit_rows, max_dim, candidates, selected, calibrator
    )


def _tune_retrieval(encoder: ModelEncoder, folder: Path, select_on, max_dim, with_flow, flow_options, progress):
    from sentflow.evaluation.retrieval import measure_index
    from sentflow.tasks.retrieval import load_retrieval_task

    if not (folder / "qrels" / f"{select_on}.tsv").is_file():
        other = next((s for s in SELECT_ON if (folder / "qrels" / f"{s}.tsv").is_file()), None)
        if other is None:
            raise SentflowError(
                f"{folder}: no qrels/{select_on}.tsv to select on; add qrels/dev.tsv or qrels/train.tsv"
            )
        if select_on != "dev":
            raise SentflowError(
                f"{folder}: no qrels/{select_on}.tsv to select on; use ", Param("select_on", other), param="select_on"
            )
        warnings.warn(f"{folder}: no qrels/dev.tsv; choosing on qrels/{other}.tsv instead", stacklevel=2)
        select_on = other  # the default split is missing: the other labelled split is the only honest choice
    tasks = {split: load_retrieval_task(folder, split) for split in (select_on, "test")}
    corpus = as_matrix(encoder.encode(tasks["test"].corpus_texts), "corpus embeddings")
    queries = {split: as_matrix(encoder.encode(t.query_texts), "query embeddings") for split, t in tasks.items()}

    def scorer(split: str) -> Scorer:
        def ndcg(calibrator: Calibrator | None) -> float:
            result = measure_index(calibrator, corpus, queries[split], tasks[split], "Flat", normalize=True, repeats=1)
            return result.metrics[RETRIEVAL_METRIC]

        return ndcg

    candidates, selected, calibrator = search(
        settings_for(int(corpus.shape[1]), max_dim, with_flow),
        corpus,
        select=scorer(select_on),
        test=scorer("test"),
        flow_options=flow_options,
        progress=progress,
        max_dim=max_dim,
    )
    return _report(encoder, folder.name, RETRIEVAL_METRIC, select_on, corpus, max_dim, candidates, selected, calibrator)


def _report(
    encoder: ModelEncoder, task, metric, select_on, fit_rows, max_dim, candidates, selected, calibrator
) -> TuneReport:
    return TuneReport(
        task=task,
        model=str(encoder.model_name),
        pooling=str(encoder.pooling),
        metric=metric,
        select_on=select_on,
        n_fit=int(len(fit_rows)),
        max_dim=max_dim,
        size=int(fit_rows.shape[1]),
        candidates=candidates,
        selected=selected,
        calibrator=calibrator,
    )


@dataclass(frozen=True)
class TransferScore:
    """A setting refitted (without labels) on another task's sentences: test Spearman x100 over all pairs at once
    (`all`) and the pair-weighted mean over the task's subsets (`wmean`, SentEval's; equal to `all` for one set)."""

    task: str
    n_pairs: int
    all: float
    wmean: float


def transfer(
    encoder, setting: Setting, task: str, data_dir: str | os.PathLike | None = None, flow_options: dict | None = None
) -> TransferScore:
    """Apply a chosen setting to `task`: fit it on the task's own sentences (no labels), score its test split."""
    sts = load_sts_task(task, "all", str(data_dir) if data_dir else None)
    encoded = encode_sts_task(encoder, sts)
    calibrator = fit_setting(setting, encoded.fit_rows, flow_options=flow_options)
    test = sts.pairs("test")
    rows = encoded.vectors["test"] if calibrator is None else calibrator.transform(encoded.vectors["test"])
    first, second = rows[: len(test)], rows[len(test) :]
    sizes = list(sts.subsets)
    bounds = np.cumsum([0, *sizes])
    if bounds[-1] != len(test):
        raise SentflowError(f"{task}: subsets hold {bounds[-1]} scored pairs but the task has {len(test)}")
    spans = zip(bounds[:-1], bounds[1:], strict=True)
    per_subset = [evaluate_sts(first[a:b], second[a:b], test.scores[a:b])["spearman"] for a, b in spans]
    wmean = float(np.average(per_subset, weights=sizes))
    overall = evaluate_sts(first, second, test.scores)["spearman"]
    return TransferScore(task, len(test), _finite(overall, setting), _finite(wmean, setting))
