"""Fit, transform and encode corpora larger than memory: every pass reads and writes one chunk at a time.

- `fit_calibration` fits on a task's sentences, a text file, or .npy shards (whitening streams them through
  `partial_fit`; BERT-flow needs all rows in memory);
- `transform_file` applies a calibration or pipeline to .npy shards, writing straight into one output .npy;
- `encode_file` encodes a text file chunk by chunk into a pre-sized .npy and can resume an interrupted run.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from sentflow.calibration.base import Calibrator
from sentflow.errors import Interrupted, Param, SentflowError
from sentflow.files.finite import check_finite
from sentflow.files.io import check_output, file_hash, first_line, write_atomic
from sentflow.files.lines import iter_lines, open_regular
from sentflow.files.npy import npy_writer, open_shard, write_header
from sentflow.files.schemas import ResumeState, parse_json
from sentflow.protocols import ReproducibleEncoder, TextEncoder, VectorTransform
from sentflow.tasks.retrieval import iter_jsonl
from sentflow.tasks.sources import (
    BeirSource,
    CorpusSource,
    EmbeddingSource,
    Source,
    StsTaskSource,
    TextSource,
    npy_shards,
    resolve_source,
)
from sentflow.tasks.sts_task import encode_sts_task, load_sts_task

CHUNK_LINES = 512  # small enough that an interrupted run of a few thousand lines keeps most rows (--resume), a
# multiple of the embedding cache's block (encoding.cache.CACHE_BLOCK) so chunks and whole-corpus calls share entries
STATE_SUFFIX = ".partial.json"


FIT_SOURCES = (StsTaskSource, EmbeddingSource, TextSource, CorpusSource, BeirSource)


def fit_source(data: str | os.PathLike | Source) -> Source:
    """The typed source a fit reads: an STS task's sentences, .npy embeddings, a text file or a BEIR corpus."""
    return data if isinstance(data, FIT_SOURCES) else resolve_source(str(data), FIT_SOURCES, role="a fit")


def fit_calibration(
    calibrator: Calibrator,
    data: str | os.PathLike | Source,
    encoder: TextEncoder | None,
    data_dir: str | os.PathLike | None = None,
) -> int:
    """Fit `calibrator` without labels on a task's sentences (all splits), .npy shards or a text file.

    Returns the number of rows fitted on. Whitening streams chunks; other calibrators get every row at once.
    `encoder` may be None only for .npy embeddings.
    """
    source = fit_source(data)
    if isinstance(source, EmbeddingSource):
        shards = source.shards()
        return _fit_chunks(calibrator, (chunk for _, _, chunk in shards.chunks()))
    if encoder is None:
        raise SentflowError(f"{data}: is {source.kind}; encoding it needs an encoder")
    if isinstance(source, StsTaskSource):
        task = load_sts_task(source.name, "all", data_dir)
        return _fit_chunks(calibrator, iter([encode_sts_task(encoder, task).fit_rows]))
    if isinstance(source, TextSource):
        return _fit_chunks(calibrator, (encoder.encode(chunk) for chunk in text_chunks(source.path, 0, CHUNK_LINES)))
    assert isinstance(source, CorpusSource | BeirSource)
    documents = (text for _, text in iter_jsonl(corpus_file(source)))
    return _fit_chunks(calibrator, (encoder.encode(chunk) for chunk in batched(documents, CHUNK_LINES)))


def corpus_file(source: CorpusSource | BeirSource) -> Path:
    """The corpus.jsonl of a BEIR corpus file or folder."""
    return source.path / "corpus.jsonl" if isinstance(source, BeirSource) else source.path


def batched(items: Iterable[str], size: int) -> Iterator[list[str]]:
    """Lists of `size` items (the last one shorter), read lazily."""
    iterator = iter(items)
    while chunk := list(itertools.islice(iterator, size)):
        yield chunk


def data_width(data: str | os.PathLike | Source, encoder: TextEncoder | None) -> int:
    """The embedding width a fit on `data` sees: the shards' columns, else the encoder's dimension."""
    source = fit_source(data)
    if isinstance(source, EmbeddingSource):
        return source.shards().cols
    if encoder is None:
        raise SentflowError(f"{data}: is {source.kind}; encoding it needs an encoder")
    return encoder.dim


def _fit_chunks(calibrator: Calibrator, chunks: Iterator[np.ndarray]) -> int:
    """Fit on the chunks (streamed where the calibrator streams, `Calibrator.fit_chunks`); the rows it saw."""
    rows = 0

    def counted() -> Iterator[np.ndarray]:
        nonlocal rows
        for chunk in chunks:
            rows += len(chunk)
            yield chunk

    calibrator.fit_chunks(counted())
    return rows


def transform_file(
    transformer: VectorTransform, source: str, out: str | os.PathLike, inputs: Sequence[str | os.PathLike] = ()
) -> tuple[int, int]:
    """Apply a calibration or pipeline (`.transform`) to .npy shards, chunk by chunk, into one .npy at `out`.

    `inputs`: other files the output must not replace (e.g. the calibration file it was loaded from)."""
    shards = npy_shards(source, role="transform")
    check_output(out, [*shards.paths, *inputs])
    dim = transformer.output_width(shards.cols)
    with npy_writer(out, shards.rows, dim) as writer:
        for _, _, chunk in shards.chunks():
            writer.write(transformer.transform(chunk))
    return shards.rows, dim


def scan_text(path: str | os.PathLike) -> tuple[int, str]:
    """(number of lines, sha256 of the bytes) of a text file, read in blocks; a line per row, as `read_lines`."""
    p = check_text_file(path)
    digest, lines, last = hashlib.sha256(), 0, b"\n"
    with open_regular(p) as fh:
        while block := fh.read(1 << 20):
            digest.update(block)
            lines += block.count(b"\n")
            last = block[-1:]
    lines += last != b"\n"
    if lines == 0:
        raise SentflowError(f"{p}: the file is empty; expected one sentence per line")
    return lines, digest.hexdigest()


def check_text_file(path: str | os.PathLike) -> Path:
    """The path of an existing regular file, or a one-line error saying what it is instead."""
    p = Path(path)
    if p.is_dir():
        raise SentflowError(f"{p}: is a directory, expected a text file with one sentence per line")
    if not p.is_file():
        raise SentflowError(f"{p}: no such file" if not p.exists() else f"{p}: not a regular file (a FIFO or device)")
    return p


def text_chunks(path: str | os.PathLike, start: int, size: int) -> Iterator[list[str]]:
    """Lists of `size` lines from line index `start` on (read by `iter_lines`: "\n"-separated, bounded length)."""
    chunk: list[str] = []
    for _, line in iter_lines(path, start=start):
        chunk.append(line)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def encode_file(
    encoder: ReproducibleEncoder,
    source: str | os.PathLike,
    out: str | os.PathLike,
    chunk_lines: int = CHUNK_LINES,
    resume: bool = False,
    progress: bool | None = None,
    inputs: Sequence[str | os.PathLike] = (),
    restart: bool = False,
) -> tuple[int, int]:
    """Encode a text file (one sentence per line) into a (lines, dim) float32 .npy, one chunk at a time.

    `encoder` is an Encoder or a Pipeline (any `ReproducibleEncoder`: `encode(texts)`, `dim` and
    `vector_settings()`); `inputs`: other files or
    directories the output must not replace (e.g. the pipeline directory).

    Rows are written as they are made into `.OUT.partial` beside `out`, with a small JSON state recording the
    input's hash, the encoder's settings (a pipeline's calibration checksum included), the rows done and their
    sha256. `resume=True` continues such a run from its last finished chunk once those rows match their checksum;
    `restart=True` discards it; with neither, a resumable partial output is refused rather than overwritten. The
    input is checked again at the end, and the finished file replaces `out` in one rename.
    """
    if chunk_lines < 1:
        raise SentflowError(f"chunk_lines must be >= 1, got {chunk_lines}")
    check_resume_flags(resume, restart)
    text = resolve_source(source, (TextSource,), role="encoding (one sentence per line)")
    assert isinstance(text, TextSource)
    target = check_output(out, [text.path, *inputs])
    target.parent.mkdir(parents=True, exist_ok=True)  # as every other output does
    lines, digest = scan_text(source)
    partial, state_path = side_file(target, ".partial"), side_file(target, STATE_SUFFIX)
    state = {"input_sha256": digest, "lines": lines, "encoder": encoder_settings(encoder), "done": 0}
    dim = encoder.dim
    if not (resume or restart):
        _refuse_resumable(target, state, state_path, partial, dim)
    done, rows = _resume_point(state, state_path, partial, dim) if resume else (0, hashlib.sha256())
    if done == 0:
        _start_partial(partial, lines, dim)
    offset = _partial_offset(partial, lines, dim)
    show = progress if progress is not None else lines > 256
    with (
        open(partial, "r+b") as fh,
        tqdm(total=lines, initial=done, unit="sent", desc="encode", disable=not show) as bar,
        _resume_hint(lambda: done, lines),
    ):
        for chunk in text_chunks(source, done, chunk_lines):
            vectors = np.ascontiguousarray(encoder.encode(chunk), dtype=np.float32)
            check_finite(vectors, f"{source}:", done)
            fh.seek(offset + done * dim * 4)
            fh.write(vectors.tobytes())
            fh.flush()
            os.fsync(fh.fileno())
            rows.update(vectors.tobytes())
            done += len(chunk)
            _save_state(state_path, {**state, "done": done, "rows_sha256": rows.hexdigest()})
            bar.update(len(chunk))
    _check_unchanged(source, (lines, digest), done, partial, state_path)
    os.replace(partial, target)
    state_path.unlink(missing_ok=True)
    return lines, dim


def check_resume_flags(resume: bool, restart: bool) -> None:
    """Refuse asking to both continue and discard an interrupted run."""
    if resume and restart:
        raise SentflowError(
            Param("resume", True), " continues an interrupted run and ", Param("restart", True), " discards it: "
            "give one"
        )


@contextmanager
def _resume_hint(done: Callable[[], int], lines: int) -> Iterator[None]:
    """Turn Ctrl-C into an `Interrupted` that says how much is kept and how to continue."""
    try:
        yield
    except KeyboardInterrupt:
        raise Interrupted(
            f"{done()} of {lines} sentences are kept; run the same command with ", Param("resume", True),
            " to continue (", Param("restart", True), " starts over)",
        ) from None


def _refuse_resumable(target: Path, state: dict, state_path: Path, partial: Path, dim: int) -> None:
    """The finished rows of an interrupted run of this very input and encoder are never discarded silently (what
    cannot be resumed, e.g. the remains of a killed run of another input, is simply replaced)."""
    try:
        done, _ = _resume_point(state, state_path, partial, dim)
    except SentflowError:
        return
    if done:
        raise SentflowError(
            f"{target}: an interrupted run of this input left {done} of {state['lines']} rows; add ",
            Param("resume", True), " to continue it or ", Param("restart", True), " to start over",
        )


def _check_unchanged(
    source: str | os.PathLike, before: tuple[int, str], done: int, partial: Path, state: Path
) -> None:
    """The input must be the file the run started on (another writer may have changed it meanwhile)."""
    try:
        after = scan_text(source)
    except SentflowError:
        after = (0, "")
    if after != before or done != before[0]:
        partial.unlink(missing_ok=True)
        state.unlink(missing_ok=True)
        raise SentflowError(
            f"{source}: the file changed while it was encoded ({before[0]} lines at the start, {after[0]} at the "
            "end); nothing was written: run again once it is complete"
        )


def side_file(target: Path, suffix: str) -> Path:
    """A hidden file beside `target` (a partial output, its resume state) whose name stays within NAME_MAX."""
    if len(target.name) <= 200:
        return target.with_name(f".{target.name}{suffix}")
    digest = hashlib.sha256(target.name.encode()).hexdigest()[:16]
    return target.with_name(f".{target.name[:64]}.h{digest}{suffix}")


def encoder_settings(encoder: ReproducibleEncoder) -> dict:
    """What decides the vectors of an encoder or pipeline (a resumed run must use the same)."""
    return encoder.vector_settings()


def _resume_point(state: dict, state_path: Path, partial: Path, dim: int) -> tuple[int, hashlib._Hash]:
    """(rows done, the running sha256 of those rows) of an interrupted run, once its rows are proven."""
    if not state_path.is_file() or not partial.is_file():
        return 0, hashlib.sha256()
    try:
        text = state_path.read_bytes()[: 1 << 20]
    except OSError as exc:
        raise SentflowError(f"{state_path}: unreadable resume state ({first_line(exc)}); delete it") from None
    saved = parse_json(ResumeState, text, f"{state_path} (resume state; restart=True starts over)")
    if saved.model_dump(exclude={"done", "rows_sha256"}) != {k: v for k, v in state.items() if k != "done"}:
        raise SentflowError(
            f"{state_path}: the resume state belongs to another input or encoder (or the pipeline was fitted "
            "again); ", Param("restart", True), " starts over",
        )
    if saved.done > state["lines"]:
        raise SentflowError(f"{state_path}: resume state has an invalid row count {saved.done}")
    rows = file_hash(partial, _partial_offset(partial, state["lines"], dim), saved.done * dim * 4)
    if rows.hexdigest() != saved.rows_sha256:
        raise SentflowError(
            f"{partial}: its {saved.done} finished rows do not match the checksum in the resume state; ",
            Param("restart", True), " starts over",
        )
    return saved.done, rows


def _start_partial(partial: Path, rows: int, dim: int) -> None:
    partial.unlink(missing_ok=True)  # never write through a link left in its place
    with open(partial, "xb") as fh:
        write_header(fh, rows, dim, np.dtype(np.float32))
        fh.truncate(fh.tell() + rows * dim * 4)


def _partial_offset(partial: Path, rows: int, dim: int) -> int:
    """Where the rows of the partial output start, once it is known to be ours: a regular float32 (rows, dim)."""
    shard = open_shard(partial) if not partial.is_symlink() else None
    if shard is None or (shard.rows, shard.cols, shard.dtype) != (rows, dim, np.dtype(np.float32)):
        raise SentflowError(f"{partial}: the partial output does not match this run; delete it to start over")
    return shard.offset


def _save_state(path: Path, state: dict) -> None:
    write_atomic(path, lambda tmp: tmp.write_text(json.dumps(state), encoding="utf-8"))
