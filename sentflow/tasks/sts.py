"""STS data sets: STS-B shipped in the package; STS12-16 and SICK-R from a directory or the hub."""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path

import numpy as np

from sentflow.errors import Param, SentflowError
from sentflow.files.lines import iter_lines
from sentflow.files.schemas import SCORE, parse_value

SPLITS = ("train", "dev", "test")
SENTEVAL_TASKS = ("sts12", "sts13", "sts14", "sts15", "sts16")
TASKS = ("sts-b", *SENTEVAL_TASKS, "sick-r")
_SICK_FILES = {"train": "SICK_train.txt", "dev": "SICK_trial.txt", "test": "SICK_test_annotated.txt"}


@dataclass(frozen=True)
class StsPairs:
    """Sentence pairs with gold similarity scores.

    Attributes:
        sentences1: The first sentence of each pair.
        sentences2: The second sentence of each pair.
        scores: The gold similarity of each pair, shape (n,).
        subsets: Scored pairs per subset, in order, when the split joins several (the SemEval years of STS12-16);
            empty otherwise.
    """

    sentences1: list[str]
    sentences2: list[str]
    scores: np.ndarray
    subsets: tuple[int, ...] = ()  # scored pairs per subset, in order, when the split joins several (SemEval years)

    def __len__(self) -> int:
        return len(self.scores)

    @property
    def sentences(self) -> list[str]:
        """Every sentence occurrence: first sentences, then second sentences."""
        return self.sentences1 + self.sentences2


def packaged_stsb_dir() -> Path:
    """The STS-B copy (with its LICENSE and readme) shipped inside sentflow."""
    return Path(str(resources.files("sentflow") / "data" / "stsbenchmark"))


def read_stsb_file(path: str | os.PathLike) -> StsPairs:
    """Parse an STS-B csv: tab-separated genre, file, year, id, score, s1, s2[, extra fields]."""
    s1, s2, scores = [], [], []
    for lineno, fields in _tab_lines(path):
        if len(fields) < 7:
            raise SentflowError(f"{path}, line {lineno}: expected at least 7 tab-separated fields, got {len(fields)}")
        scores.append(_score(fields[4], path, lineno))
        s1.append(fields[5])
        s2.append(fields[6])
    return _pairs(s1, s2, scores, path)


def read_senteval_task(directory: str | os.PathLike) -> StsPairs:
    """All subsets of one SemEval STS year (STS.input.X.txt + STS.gs.X.txt), unscored pairs skipped."""
    directory = Path(directory)
    inputs = sorted(directory.glob("STS.input.*.txt"))
    if not inputs:
        raise SentflowError(f"{directory}: no STS.input.*.txt files")
    s1: list[str] = []
    s2: list[str] = []
    scores: list[float] = []
    sizes: list[int] = []
    for inp in inputs:
        sizes.append(len(scores))
        gold_path = inp.with_name(inp.name.replace("STS.input.", "STS.gs."))
        gold = read_lines(gold_path)
        for lineno, fields in _tab_lines(inp):
            if lineno > len(gold):
                raise SentflowError(f"{gold_path}: no score for line {lineno} of {inp.name}")
            score = gold[lineno - 1]
            if not score.strip():
                continue
            if len(fields) < 2:
                raise SentflowError(f"{inp}, line {lineno}: expected 2 tab-separated sentences")
            s1.append(fields[0])
            s2.append(fields[1])
            scores.append(_score(score, gold_path, lineno))
    pairs = _pairs(s1, s2, scores, directory)
    return replace(pairs, subsets=tuple(np.diff([*sizes, len(scores)]).tolist()))


def read_sick_file(path: str | os.PathLike) -> StsPairs:
    """SICK: pair_ID, sentence_A, sentence_B, relatedness_score, ... (header line optional)."""
    s1, s2, scores = [], [], []
    for lineno, fields in _tab_lines(path):
        if lineno == 1 and fields[0] == "pair_ID":
            continue
        if len(fields) < 4:
            raise SentflowError(f"{path}, line {lineno}: expected at least 4 tab-separated fields")
        s1.append(fields[1])
        s2.append(fields[2])
        scores.append(_score(fields[3], path, lineno))
    return _pairs(s1, s2, scores, path)


def load_sts(
    name: str = "sts-b", split: str = "test", data_dir: str | os.PathLike | None = None, hub: str | None = None
) -> StsPairs:
    """Load an STS split. STS-B comes from the package; `data_dir` points at other copies
    (the SentEval layout for sts12-16, the SICK files for sick-r); `hub` loads a dataset id or local
    dataset folder with `datasets.load_dataset` (columns sentence1, sentence2, score).

    Args:
        name: `sts-b`, `sts12` ... `sts16` or `sick-r`.
        split: `train`, `dev` or `test` (STS12-16 have only `test`).
        data_dir: The folder holding the tasks not shipped with sentflow.
        hub: A `datasets` hub id (needs the network) or a local dataset folder, instead of the files.

    Returns:
        The split's scored pairs.
    """
    if split not in SPLITS:
        raise SentflowError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    if hub is not None:
        return load_hub_sts(hub, split)
    if name not in TASKS:
        raise SentflowError(f"unknown STS task {name!r}; choose one of {', '.join(TASKS)}")
    if name == "sts-b":
        return read_stsb_file(Path(data_dir or packaged_stsb_dir()) / f"sts-{split}.csv")
    if data_dir is None:
        raise SentflowError(f"{name} is not shipped with sentflow: pass its directory (", Param("data_dir"), ")")
    if name in SENTEVAL_TASKS:
        if split != "test":
            raise SentflowError(f"{name} has only a test split")
        return read_senteval_task(senteval_dir(Path(data_dir), name))
    if name == "sick-r":
        return read_sick_file(Path(data_dir) / _SICK_FILES[split])
    raise SentflowError(f"unknown STS task {name!r}; choose one of {', '.join(TASKS)}")


def load_hub_sts(source: str, split: str) -> StsPairs:
    """STS pairs via `datasets.load_dataset(source)`; a score column in [0, 1] is used as is."""
    import datasets

    hub_split = {"dev": "validation"}.get(split, split)
    try:
        data = datasets.load_dataset(source, split=hub_split)
    except (FileNotFoundError, ValueError, ConnectionError) as exc:
        raise SentflowError(f"cannot load dataset {source!r} split {hub_split!r}: {exc}") from None
    score_col = next((c for c in ("score", "label", "similarity_score") if c in data.column_names), None)
    if score_col is None or not {"sentence1", "sentence2"} <= set(data.column_names):
        raise SentflowError(f"{source}: needs columns sentence1, sentence2 and score, has {data.column_names}")
    scores = [parse_value(SCORE, value, f"{source}, row {i}: {score_col}") for i, value in enumerate(data[score_col])]
    return _pairs(list(data["sentence1"]), list(data["sentence2"]), scores, source)


def senteval_dir(root: Path, name: str) -> Path:
    folder = f"STS{name[3:]}-en-test"
    for candidate in (root / folder, root / "sts12-16" / folder, root):
        if candidate.is_dir() and any(candidate.glob("STS.input.*.txt")):
            return candidate
    raise SentflowError(f"{root}: no {folder} directory with STS.input.*.txt files")


def read_lines(path: str | os.PathLike) -> list[str]:
    """The file's lines, split on newlines only (not on the other characters str.splitlines splits on), each
    of bounded length (`sentflow.files.lines.iter_lines`)."""
    return [line for _, line in iter_lines(path)]


def _tab_lines(path: str | os.PathLike):
    """(line number, fields) for each non-empty line; errors name the file."""
    for lineno, line in enumerate(read_lines(path), start=1):
        if line.strip():
            yield lineno, line.split("\t")


def _score(text: str, path, lineno: int) -> float:
    return parse_value(SCORE, text, f"{path}, line {lineno}: score")


def _pairs(s1: list[str], s2: list[str], scores: list[float], source) -> StsPairs:
    if not scores:
        raise SentflowError(f"{source}: no sentence pairs")
    return StsPairs(s1, s2, np.asarray(scores, dtype=np.float64))
