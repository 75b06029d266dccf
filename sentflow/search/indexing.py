"""Index a corpus with a pipeline into a compact-search directory, and search it with query texts.

A corpus is a text file (one document a line; ids are line numbers from 1), a BEIR `corpus.jsonl` (`_id`, `title`,
`text`; a document is embedded as title + " " + text, as BEIR and MTEB do) or a BEIR folder. Documents are read
and encoded a chunk at a time through the resumable `encode_file`, so memory holds the codes, ids and snippets,
never the corpus' vectors or text.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sentflow.errors import SentflowError
from sentflow.files.io import check_inputs, check_output_directory
from sentflow.files.npy import NpyShards
from sentflow.pipeline import Pipeline, load_pipeline
from sentflow.search.compact import FIT_ROWS, MANIFEST, CompactIndex, load_compact_index, read_snippets
from sentflow.search.quantize import check_quantizer, make_quantizer
from sentflow.streaming import check_resume_flags, corpus_file, encode_file, side_file, text_chunks
from sentflow.tasks.retrieval import iter_jsonl
from sentflow.tasks.sources import BeirSource, CorpusSource, PipelineSource, TextSource, resolve_source

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
) -> CompactIndex:
    """Encode `corpus` with `pipeline` and write a compact index directory at `out` (atomically).

    `pipeline_dir`, when the pipeline was loaded from one, is recorded so that `search_index` encodes queries the
    same way (and refuses if that directory has changed since). `resume` continues an interrupted encoding,
    `restart` discards one.
    """
    check_resume_flags(resume, restart)  # before any work
    target = check_output_directory(out, MANIFEST)
    inputs = [Path(corpus), *([Path(pipeline_dir)] if pipeline_dir is not None else [])]
    check_inputs(target, inputs)
    texts_path, vectors_path = side_file(target, ".corpus.txt"), side_file(target, ".vectors.npy")
    make_quantizer(quantize)  # a bad spec fails before the corpus is read
    ids, snippets = _write_texts(corpus, texts_path)
    try:
        check_quantizer(quantize, pipeline.dim, len(ids))
    except SentflowError:
        texts_path.unlink(missing_ok=True)
        raise
    encode_file(pipeline, texts_path, vectors_path, resume=resume, inputs=inputs, restart=restart)
    shards = NpyShards([vectors_path])
    index = CompactIndex.build_chunks(
        (chunk for _, _, chunk in shards.chunks()),
        _first_rows(shards, FIT_ROWS),
        quantize,
        rescore,
        ids,
        hnsw,
        seed,
        total=shards.rows,
    )
    index.save(target, pipeline=_record(pipeline, pipeline_dir), snippets=snippets)
    for side in (texts_path, vectors_path):
        side.unlink(missing_ok=True)
    return index


def _write_texts(corpus: str | os.PathLike, path: Path) -> tuple[list[str], list[str]]:
    """Write each document as one line (line breaks become spaces) for the chunked encoder; (ids, snippets)."""
    ids, snippets = [], []
    with open(path, "w", encoding="utf-8") as fh:
        for doc_id, text in corpus_documents(corpus):
            line = " ".join(text.split())
            fh.write(line + "\n")
            ids.append(doc_id)
            snippets.append(line[:SNIPPET_CHARS])
    if not ids:
        path.unlink(missing_ok=True)
        raise SentflowError(f"{corpus}: the corpus is empty: there is nothing to index")
    return ids, snippets


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


def query_pipeline(record: dict | None, where: Path, **encoder_options) -> Pipeline:
    """The pipeline that encodes queries for an index, checked against the fingerprint the index recorded."""
    from sentflow.encoding.factory import make_encoder

    if not record:
        raise SentflowError(f"{where}: the index records no pipeline; search it from Python with query vectors")
    directory = record.get("directory")
    if directory is not None:
        resolve_source(directory, (PipelineSource,), role="the index's pipeline")
        pipeline = load_pipeline(directory, **encoder_options)
    else:
        encoder = make_encoder(
            str(record["model"]), str(record["pooling"]), max_length=int(record["max_length"]), **encoder_options
        )
        pipeline = Pipeline(encoder, None, bool(record["normalize"]))
    if pipeline.fingerprint() != record.get("fingerprint"):
        raise SentflowError(
            f"{where}: was built with another pipeline than {directory or record['model']} is now (fingerprint "
            "mismatch); rebuild the index with `sentflow index`"
        )
    return pipeline


def search_index(
    directory: str | os.PathLike, queries: Sequence[str], k: int = 10, **encoder_options
) -> list[list[Hit]]:
    """The k best documents of an index directory for each query text, best first."""
    if isinstance(queries, str):
        raise SentflowError("queries must be a list of strings, not one string")
    if not queries:
        raise SentflowError("no queries to search")
    directory = Path(directory)
    index, manifest = load_compact_index(directory)
    pipeline = query_pipeline(manifest.pipeline, directory, **encoder_options)
    scores, rows = index.search(pipeline.encode(list(queries)), k)
    snippets = read_snippets(directory, manifest) or [""] * len(index)
    return [
        [Hit(index.ids[r], float(s), snippets[r]) for s, r in zip(row_scores, row_ids, strict=True) if r >= 0]
        for row_scores, row_ids in zip(scores, rows, strict=True)
    ]
