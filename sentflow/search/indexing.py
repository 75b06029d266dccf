"""Index a corpus with a pipeline into a compact-search directory, and search it with query texts.

A corpus is a text file (one document a line; ids are line numbers from 1), a BEIR `corpus.jsonl` (`_id`, `title`,
`text`; a document is embedded as title + " " + text, as BEIR and MTEB do) or a BEIR folder. Documents are read
and encoded a chunk at a time through the resumable `encode_file`, so memory holds the codes, ids and snippets,
never the corpus' vectors or text. Vectors a user already has (a `.npy` file or a folder of shards, with an id a
line in a text file) index without encoding (`index_vectors`); such an index records no pipeline and is searched
with query vectors (`search_vectors`).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sentflow.errors import Interrupted, SentflowError
from sentflow.files.io import check_inputs, check_output_directory, locked_directory
from sentflow.files.lines import MAX_LINE_BYTES
from sentflow.files.npy import NpyShards
from sentflow.files.schemas import CompactManifest, IndexPipeline
from sentflow.pipeline import Pipeline, load_pipeline
from sentflow.search.compact import FIT_ROWS, MANIFEST, CompactIndex, load_compact_index, read_snippets
from sentflow.search.quantize import check_quantizer, make_quantizer
from sentflow.streaming import check_resume_flags, corpus_file, encode_file, text_chunks
from sentflow.tasks.retrieval import iter_jsonl
from sentflow.tasks.sources import (
    BeirSource,
    CorpusSource,
    PipelineSource,
    TextSource,
    npy_shards,
    resolve_source,
)

SNIPPET_CHARS = 200
CORPUS_KINDS = (TextSource, CorpusSource, BeirSource)


@dataclass(frozen=True)
class Hit:
    """One search result: the document's id, its score and the start of its text."""

    id: str
    score: float
    snippet: str


def corpus_documents(corpus: str | os.PathLike) -> Iterator[tuple[str, str]]:
    """(id, text) of every document of a corpus, read one at a time."""
    source = resolve_source(corpus, CORPUS_KINDS, role="a corpus")
    if isinstance(source, TextSource):
        for start, chunk in _numbered_chunks(source.path):
            yield from ((str(start + i + 1), text) for i, text in enumerate(chunk))
    else:
        assert isinstance(source, CorpusSource | BeirSource)
        yield from iter_jsonl(corpus_file(source))


def _numbered_chunks(path: Path, size: int = 8192) -> Iterator[tuple[int, list[str]]]:
    start = 0
    for chunk in text_chunks(path, 0, size):
        yield start, chunk
        start += len(chunk)


def index_corpus(
    corpus: str | os.PathLike,
    out: str | os.PathLike,
    pipeline: Pipeline,
    quantize: str = "binary",
    rescore: int = 4,
    hnsw: bool = False,
    resume: bool = False,
    pipeline_dir: str | os.PathLike | None = None,
    seed: int = 0,
    restart: bool = False,
    lists: int | None = None,
) -> CompactIndex:
    """Encode `corpus` with `pipeline` and write a compact index directory at `out` (atomically); `lists` makes
    it an inverted file of that many k-means cells (searched with `probes`).

    The build holds an exclusive lock on `out` (a second build into it is refused while this one runs) and works
    in a private directory beside it, made with an exclusive create under a random name; the index appears at
    `out` in one rename, and no path the user named is ever opened for writing. `pipeline_dir`, when the pipeline
    was loaded from one, is recorded so that `search_index` encodes queries the same way (and refuses if that
    directory has changed since). `resume` continues an interrupted encoding (kept in the private directory after
    an interruption), `restart` discards one. The int8 rescoring codes are written to a file in the private
    directory as they are made, so memory holds the stage-1 codes, ids and snippets only.
    """
    check_resume_flags(resume, restart)  # before any work
    target = check_output_directory(out, MANIFEST)
    inputs = [Path(corpus), *([Path(pipeline_dir)] if pipeline_dir is not None else [])]
    check_inputs(target, inputs)
    make_quantizer(quantize)  # a bad spec fails before the corpus is read
    with locked_directory(target), _work_directory(target, restart) as work:
        texts_path, vectors_path = work / "corpus.txt", work / "vectors.npy"
        ids, snippets = _write_texts(corpus, texts_path)
        check_quantizer(quantize, pipeline.dim, len(ids))
        encode_file(pipeline, texts_path, vectors_path, resume=resume, inputs=inputs, restart=restart)
        shards = NpyShards([vectors_path])
        record = _record(pipeline, pipeline_dir)
        return _build(target, shards, quantize, rescore, ids, hnsw, seed, lists, work, record, snippets)


def _work_prefix(target: Path) -> str:
    """The start of the names of `target`'s private build directories (bounded, and told apart by a hash)."""
    digest = hashlib.sha256(target.name.encode("utf-8", "surrogateescape")).hexdigest()[:12]
    return f".{target.name[:64]}.sentflow-build-{digest}-"


@contextmanager
def _work_directory(target: Path, restart: bool) -> Iterator[Path]:
    """The private directory of a build of `target`, entered while holding `target`'s lock.

    An earlier build's directory (kept after an interruption, for `resume`) is reused unless `restart`; a new
    one is made with an exclusive create (mode 0700, a random name). It is removed once the index is published;
    after a failure only a new one is, and not after an interruption: the finished rows stay for `resume`."""
    prefix = _work_prefix(target)
    earlier = sorted((p for p in target.parent.iterdir() if _ours(p, prefix)), key=lambda p: p.stat().st_mtime)
    for stale in earlier[:-1] if not restart else earlier:
        shutil.rmtree(stale, ignore_errors=True)
    reused = bool(earlier) and not restart
    work = earlier[-1] if reused else Path(tempfile.mkdtemp(prefix=prefix, dir=target.parent))
    try:
        yield work
    except BaseException as exc:
        if not (reused or isinstance(exc, Interrupted)):
            shutil.rmtree(work, ignore_errors=True)
        raise
    shutil.rmtree(work, ignore_errors=True)


def _ours(path: Path, prefix: str) -> bool:
    """Whether `path` is a build directory of this user for this output (a real directory, not a link)."""
    if not path.name.startswith(prefix) or path.is_symlink() or not path.is_dir():
        return False
    return path.stat().st_uid == os.getuid()


def index_vectors(
    vectors: str | os.PathLike,
    out: str | os.PathLike,
    ids: str | os.PathLike | None = None,
    quantize: str = "binary",
    rescore: int = 4,
    hnsw: bool = False,
    lists: int | None = None,
    seed: int = 0,
) -> CompactIndex:
    """Index vectors a user already has, without encoding: a `.npy` file (or a folder of `.npy` shards) of the
    final vectors (calibrated and, for cosine, L2-normalised), streamed in chunks; `ids` a text file with one id a
    line (default: row numbers from 0). The int8 rescoring codes go through a temporary file beside `out`, so
    memory holds the stage-1 codes only (as for `index_corpus`). The index records no pipeline: search it with
    `search_vectors`."""
    target = check_output_directory(out, MANIFEST)
    shards = npy_shards(vectors, role="index (vectors)")
    inputs = [*shards.paths, *([Path(ids)] if ids is not None else [])]
    check_inputs(target, inputs)
    names = read_ids(ids, shards.rows) if ids is not None else None
    check_quantizer(quantize, shards.cols, shards.rows)
    with locked_directory(target), tempfile.TemporaryDirectory(prefix=_work_prefix(target), dir=target.parent) as spill:
        return _build(target, shards, quantize, rescore, names, hnsw, seed, lists, Path(spill))


def _build(
    target: Path,
    shards: NpyShards,
    quantize: str,
    rescore: int,
    ids: list[str] | None,
    hnsw: bool,
    seed: int,
    lists: int | None,
    spill: Path,
    pipeline: dict | None = None,
    snippets: list[str] | None = None,
) -> CompactIndex:
    """Code the vectors of `shards` a chunk at a time (the quantizers fitted on the first `FIT_ROWS`), with the int8
    rescoring codes written to a file in the build's private directory `spill`, so that RAM holds the stage-1
    codes only; save the index at `target` and return it as loaded from there (the spilled file goes with `spill`).
    """
    index = CompactIndex.build_chunks(
        (chunk for _, _, chunk in shards.chunks()),
        _first_rows(shards, FIT_ROWS),
        quantize,
        rescore,
        ids,
        hnsw,
        seed,
        total=shards.rows,
        lists=lists,
        spill=spill,
    )
    index.save(target, pipeline=pipeline, snippets=snippets)
    del index  # its memory map of the spilled codes, before their directory goes
    return CompactIndex.load(target)


def read_ids(path: str | os.PathLike, rows: int) -> list[str]:
    """One id a line of a text file; exactly `rows` of them, none empty."""
    found: list[str] = []
    for chunk in text_chunks(Path(path), 0, 8192):
        for number, line in enumerate(chunk, start=len(found) + 1):
            if not line.strip():
                raise SentflowError(f"{path}, line {number}: an empty id")
        found.extend(chunk)
        if len(found) > rows:
            break
    if len(found) != rows:
        raise SentflowError(f"{path}: {len(found):,}{'+' if len(found) > rows else ''} ids for {rows:,} vectors")
    return found


def _write_texts(corpus: str | os.PathLike, path: Path) -> tuple[list[str], list[str]]:
    """Write each document as one line (line breaks become spaces) for the chunked encoder; (ids, snippets)."""
    ids, snippets = [], []
    path.unlink(missing_ok=True)
    with open(path, "x", encoding="utf-8", newline="\n") as fh:
        for doc_id, text in corpus_documents(corpus):
            fh.write(_bounded(text.replace("\r", " ").replace("\n", " ")) + "\n")  # else as read: cached vectors match
            ids.append(doc_id)
            snippets.append(" ".join(text.split())[:SNIPPET_CHARS])
    if not ids:
        raise SentflowError(f"{corpus}: the corpus is empty: there is nothing to index")
    return ids, snippets


def _bounded(line: str) -> str:
    """A document cut to the longest line the encoder reads (`MAX_LINE_BYTES`, far past what any model's
    `max_length` tokens cover, so its vector is unchanged): a BEIR record may hold more."""
    raw = line.encode("utf-8")
    return line if len(raw) <= MAX_LINE_BYTES else raw[:MAX_LINE_BYTES].decode("utf-8", "ignore")


def _first_rows(shards: NpyShards, rows: int) -> np.ndarray:
    """The first `rows` vectors, to fit the quantizers on."""
    taken, parts = 0, []
    for _, _, chunk in shards.chunks():
        parts.append(chunk[: rows - taken])
        taken += len(parts[-1])
        if taken >= rows:
            break
    return np.concatenate(parts)


def _record(pipeline: Pipeline, pipeline_dir: str | os.PathLike | None) -> dict:
    """What the index remembers of the pipeline that made its vectors."""
    config = pipeline.config()
    record = {k: config[k] for k in ("model", "pooling", "max_length", "normalize")}
    record["fingerprint"] = pipeline.fingerprint()
    if pipeline_dir is not None:
        record["directory"] = str(Path(pipeline_dir).resolve())
    return record


def query_pipeline(record: IndexPipeline | None, where: Path, **encoder_options) -> Pipeline:
    """The pipeline that encodes queries for an index, checked against the fingerprint the index recorded."""
    from sentflow.encoding.factory import make_encoder

    if record is None:
        raise SentflowError(
            f"{where}: was built from vectors and records no pipeline to encode query texts; search it with "
            "query vectors (--vectors Q.npy)"
        )
    if record.directory is not None:
        resolve_source(record.directory, (PipelineSource,), role="the index's pipeline")
        pipeline = load_pipeline(record.directory, **encoder_options)
    else:
        encoder = make_encoder(record.model, record.pooling, max_length=record.max_length, **encoder_options)
        pipeline = Pipeline(encoder, None, record.normalize)
    if pipeline.fingerprint() != record.fingerprint:
        raise SentflowError(
            f"{where}: was built with another pipeline than {record.directory or record.model} is now "
            "(fingerprint mismatch); rebuild the index with `sentflow index`"
        )
    return pipeline


def search_index(
    directory: str | os.PathLike,
    queries: Sequence[str],
    k: int = 10,
    probes: int | None = None,
    candidates: int | None = None,
    **encoder_options,
) -> list[list[Hit]]:
    """The k best documents of an index directory for each query text, best first (`probes`, `candidates`: see
    `CompactIndex.search`)."""
    if isinstance(queries, str):
        raise SentflowError("queries must be a list of strings, not one string")
    if not queries:
        raise SentflowError("no queries to search")
    directory = Path(directory)
    index, manifest = load_compact_index(directory)
    pipeline = query_pipeline(manifest.pipeline, directory, **encoder_options)
    return _hits(directory, index, manifest, pipeline.encode(list(queries)), k, probes, candidates)


def search_vectors(
    directory: str | os.PathLike,
    queries: str | os.PathLike | np.ndarray,
    k: int = 10,
    probes: int | None = None,
    candidates: int | None = None,
) -> list[list[Hit]]:
    """The k best documents for each query vector (an array, or a `.npy` file of them), made like the indexed
    vectors; no pipeline is involved, so any index can be searched this way."""
    directory = Path(directory)
    index, manifest = load_compact_index(directory)
    if not isinstance(queries, np.ndarray):
        queries = npy_shards(queries, role="query vectors").read_all()
    return _hits(directory, index, manifest, queries, k, probes, candidates)


def _hits(
    directory: Path,
    index: CompactIndex,
    manifest: CompactManifest,
    queries,
    k: int,
    probes: int | None,
    candidates: int | None,
) -> list[list[Hit]]:
    """Search and name the results: ids, scores and snippets (empty when the index has none)."""
    scores, rows = index.search(queries, k, probes=probes, candidates=candidates)
    snippets = read_snippets(directory, manifest) or [""] * len(index)
    return [
        [Hit(index.ids[r], float(s), snippets[r]) for s, r in zip(row_scores, row_ids, strict=True) if r >= 0]
        for row_scores, row_ids in zip(scores, rows, strict=True)
    ]
