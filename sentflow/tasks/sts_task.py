"""An STS task as one object (the twin of `RetrievalTask`): its splits, the sentences calibrations are fitted on,
the pairs of a split, and one function that encodes it."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from sentflow.errors import Param, SentflowError
from sentflow.protocols import TextEncoder
from sentflow.tasks.sts import SENTEVAL_TASKS, SPLITS, StsPairs, load_sts

FIT_ON = ("all", *SPLITS)


def fit_splits(task: str, fit_on: str) -> tuple[str, ...]:
    """Which splits' sentences the calibration is fitted on (never their labels)."""
    if fit_on not in FIT_ON:
        raise SentflowError(Param("fit_on", fit_on), f": unknown; choose one of {', '.join(FIT_ON)}")
    if task in SENTEVAL_TASKS:
        if fit_on not in ("all", "test"):
            raise SentflowError(
                f"{task} has only a test split; use ", Param("fit_on", "all"), " or ", Param("fit_on", "test")
            )
        return ("test",)
    return SPLITS if fit_on == "all" else (fit_on,)


@dataclass(frozen=True)
class StsTask:
    """The splits of an STS task that one evaluation reads, and which of them calibrations are fitted on."""

    name: str
    splits: Mapping[str, StsPairs]
    fit_on: tuple[str, ...]

    def pairs(self, split: str) -> StsPairs:
        """The scored pairs of one loaded split."""
        if split not in self.splits:
            raise SentflowError(f"{self.name}: split {split!r} is not loaded (have {', '.join(self.splits)})")
        return self.splits[split]

    @property
    def fit_sentences(self) -> list[str]:
        """Every sentence occurrence of the fit splits, in their order (labels are never read)."""
        return [s for split in self.fit_on for s in self.splits[split].sentences]

    @property
    def subsets(self) -> tuple[int, ...]:
        """Scored test pairs per subset (one subset unless the task joins several, as the SemEval years do)."""
        test = self.pairs("test")
        return test.subsets or (len(test),)


def load_sts_task(
    name: str,
    fit_on: str = "all",
    data_dir: str | os.PathLike | None = None,
    also: tuple[str, ...] = ("test",),
    extra: Mapping[str, StsPairs] | None = None,
) -> StsTask:
    """Load the fit splits of `name` and the splits in `also`; `extra` adds pairs from elsewhere by name."""
    fitted = fit_splits(name, fit_on)
    splits = {split: load_sts(name, split, data_dir) for split in sorted({*fitted, *also})}
    return StsTask(name, {**splits, **(extra or {})}, fitted)


@dataclass(frozen=True)
class EncodedStsTask:
    """A task's vectors: per split, the first sentences' rows then the second sentences' rows."""

    task: StsTask
    vectors: Mapping[str, np.ndarray]

    @property
    def fit_rows(self) -> np.ndarray:
        """The rows calibrations are fitted on: every sentence occurrence of the fit splits."""
        return np.concatenate([self.vectors[split] for split in self.task.fit_on])

    def pair_vectors(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        """(first, second) sentence vectors of a split's pairs."""
        rows, n = self.vectors[split], len(self.task.pairs(split))
        return rows[:n], rows[n:]


def encode_sts_task(encoder: TextEncoder, task: StsTask) -> EncodedStsTask:
    """Encode every distinct sentence of the task once and lay the rows out per split."""
    unique = sorted({s for pairs in task.splits.values() for s in pairs.sentences})
    vectors = encoder.encode(unique)
    index = {s: i for i, s in enumerate(unique)}
    return EncodedStsTask(task, {name: vectors[[index[s] for s in p.sentences]] for name, p in task.splits.items()})
