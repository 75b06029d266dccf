"""What a user's data argument names, decided once by one set of rules at every entry point.

A data argument is an STS task name, a BEIR folder, a pipeline directory, a calibration file, `.npy` embeddings
(a file, a directory of shards or a glob) or a text file with one sentence per line. `resolve_source` turns it
into one of the typed sources below, or fails with one line saying what it could not tell.
"""

from __future__ import annotations

import glob
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from sentflow.errors import SentflowError
from sentflow.files.npy import NpyShards
from sentflow.files.schemas import is_calibration_path
from sentflow.tasks.sts import TASKS

PIPELINE_MARKER = "pipeline.json"
BEIR_MARKERS = ("corpus.jsonl", "queries.jsonl", "qrels")


class DataSource:
    """What every kind of source says about itself."""

    kind: ClassVar[str]


@dataclass(frozen=True)
class StsTaskSource(DataSource):
    """An STS task by name (`sts-b` is shipped; the others are read from a data directory)."""

    name: str
    kind: ClassVar[str] = "an STS task"


@dataclass(frozen=True)
class BeirSource(DataSource):
    """A BEIR folder: corpus.jsonl, queries.jsonl and qrels/*.tsv."""

    path: Path
    kind: ClassVar[str] = "a BEIR folder"


@dataclass(frozen=True)
class CorpusSource(DataSource):
    """A BEIR corpus file (`.jsonl`: one JSON record a line with `_id`, `title` and `text`)."""

    path: Path
    kind: ClassVar[str] = "a BEIR corpus (.jsonl)"


@dataclass(frozen=True)
class PipelineSource(DataSource):
    """A pipeline directory written by `sentflow fit` (it holds pipeline.json)."""

    path: Path
    kind: ClassVar[str] = "a pipeline directory"


@dataclass(frozen=True)
class CalibrationSource(DataSource):
    """A calibration file written by `Calibrator.save` (safetensors)."""

    path: Path
    kind: ClassVar[str] = "a calibration file"


@dataclass(frozen=True)
class EmbeddingSource(DataSource):
    """`.npy` embeddings: one file, a directory of shards, or a glob of files."""

    spec: str
    kind: ClassVar[str] = ".npy embeddings"

    def files(self) -> list[Path]:
        """The .npy files, in order: the file itself, a directory's shards or a glob's matches, sorted by name."""
        path = Path(self.spec)
        if path.is_dir():
            return sorted(f for f in path.iterdir() if not f.name.startswith("."))
        if path.exists():
            return [path]
        return sorted(Path(f) for f in glob.glob(self.spec))

    def shards(self) -> NpyShards:
        """The files as one (n, d) array read in chunks, every header checked."""
        return NpyShards(self.files())


@dataclass(frozen=True)
class TextSource(DataSource):
    """A text file, one sentence (or document) per line."""

    path: Path
    kind: ClassVar[str] = "a text file"


DIRECTORY_KINDS = (BeirSource, PipelineSource, EmbeddingSource)
ALL_KINDS = (StsTaskSource, BeirSource, CorpusSource, PipelineSource, CalibrationSource, EmbeddingSource, TextSource)
Source = (
    StsTaskSource | BeirSource | CorpusSource | PipelineSource | CalibrationSource | EmbeddingSource | TextSource
)


def embedding_files(argument: str | os.PathLike, role: str) -> list[Path]:
    """The .npy files `argument` names (a file, a directory of shards or a glob), for `role`."""
    source = resolve_source(argument, (EmbeddingSource,), role=role)
    assert isinstance(source, EmbeddingSource)
    return source.files()


def npy_shards(argument: str | os.PathLike, role: str) -> NpyShards:
    """The .npy embeddings `argument` names as one array read in chunks, for `role`."""
    return NpyShards(embedding_files(argument, role))


def resolve_source(
    argument: str | os.PathLike, accept: tuple[type[DataSource], ...] | None = None, role: str = "data"
) -> Source:
    """The typed source `argument` names; `accept` limits the kinds the caller can use (`role` names it in errors).

    Rules, in order: an STS task name; an existing directory (pipeline.json: a pipeline, corpus.jsonl: a BEIR
    folder, only .npy files: embedding shards); an existing file (.npy: embeddings, .jsonl: a BEIR corpus, a
    safetensors file: a calibration, anything else: text); a pattern matching existing files: embeddings. An
    existing path always wins over a pattern, so `x[1].npy` is that file.
    """
    wanted = " or ".join(kind.kind for kind in accept or ALL_KINDS)
    if accept is not None and not set(accept) & set(DIRECTORY_KINDS) and Path(argument).is_dir():
        raise SentflowError(f"{argument}: is a directory, expected {wanted}")
    source = _classify(str(argument), wanted)
    if accept is not None and not isinstance(source, accept):
        raise SentflowError(f"{argument}: is {source.kind}, but {role} takes {wanted}")
    return source


def _classify(text: str, wanted: str) -> Source:
    if text in TASKS:
        return StsTaskSource(text)
    path = Path(text)
    if path.is_dir():
        return _classify_directory(path)
    if path.exists():
        return _classify_file(path)
    if glob.has_magic(text) and glob.glob(text):
        return EmbeddingSource(text)
    raise SentflowError(f"{text}: no such file or directory, and not a task name ({', '.join(TASKS)}); give {wanted}")


def _classify_directory(path: Path) -> Source:
    if (path / PIPELINE_MARKER).is_file():
        return PipelineSource(path)
    if any((path / marker).exists() for marker in BEIR_MARKERS):
        return BeirSource(path)  # loading it names any BEIR file that is missing
    entries = sorted(e for e in path.iterdir() if not e.name.startswith("."))
    strays = [e for e in entries if e.suffix.lower() != ".npy" or not e.is_file()]
    if entries and not strays:
        return EmbeddingSource(str(path))
    if len(strays) < len(entries):
        raise SentflowError(f"{strays[0]}: not a .npy file in the shard directory {path}")
    raise SentflowError(
        f"{path}: cannot tell what this directory is: it holds no {PIPELINE_MARKER} (a pipeline), "
        "no corpus.jsonl (a BEIR folder) and not only .npy shards"
    )


def _classify_file(path: Path) -> Source:
    suffix = path.suffix.lower()
    if suffix == ".npz":
        raise SentflowError(f"{path}: .npz archives are not read; save each array as its own .npy file")
    if not path.is_file():  # before anything opens it: a FIFO would block
        raise SentflowError(f"{path}: not a regular file (a FIFO, device or socket); give a file")
    if suffix == ".npy":
        return EmbeddingSource(str(path))
    if suffix == ".jsonl":
        return CorpusSource(path)
    if is_calibration_path(path) or _looks_like_safetensors(path):
        return CalibrationSource(path)
    return TextSource(path)


def _looks_like_safetensors(path: Path) -> bool:
    """A safetensors file opens with an 8-byte little-endian header length and then a JSON object."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(9)
        size = path.stat().st_size
    except OSError:
        return False
    return len(head) == 9 and head[8:9] == b"{" and 0 < struct.unpack("<Q", head[:8])[0] < size
