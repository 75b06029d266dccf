"""Retrieval tasks: STS-B / SICK-R duplicate retrieval built from their gold scores, and BEIR-layout folders."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from sentflow.errors import SentflowError
from sentflow.files.lines import MAX_JSON_LINE_BYTES, iter_lines
from sentflow.files.schemas import GRADE, BeirRecord, parse_json, parse_value
from sentflow.tasks.sts import SPLITS, StsPairs, load_sts, read_lines

DUPLICATE_TASKS = ("sts-b", "sick-r")
DUPLICATE_THRESHOLD = 4.0
QRELS_HEADER = "query-id"


@dataclass(frozen=True)
class RetrievalTask:
    """A corpus, queries and graded relevance judgements (qrels: query id -> {doc id: grade}).

    Attributes:
        name: The task's name in reports.
        corpus_ids: Document ids, in corpus order.
        corpus_texts: Document texts, in corpus order.
        query_ids: Query ids, in query order.
        query_texts: Query texts, in query order.
        qrels: Query id -> {document id: relevance grade}.
        exclude: Query id -> the document id never returned for it (its own sentence, in STS duplicates).
    """

    name: str
    corpus_ids: list[str]
    corpus_texts: list[str]
    query_ids: list[str]
    query_texts: list[str]
    qrels: dict[str, dict[str, int]]
    exclude: dict[str, str] = field(default_factory=dict)  # query id -> doc id never returned for it (itself)


def load_retrieval_task(
    task: str | os.PathLike, split: str = "test", data_dir: str | os.PathLike | None = None
) -> RetrievalTask:
    """`sts-b` (shipped), `sick-r` (with `data_dir`) as duplicate retrieval, or the path of a BEIR folder.

    In duplicate retrieval, every test pair with gold >= 4.0 makes sentence1 a query whose relevant document is
    sentence2, over a corpus of every distinct sentence of the task, the query's own sentence excluded.

    Args:
        task: `sts-b`, `sick-r`, or a BEIR folder.
        split: The qrels file of a BEIR folder (`qrels/SPLIT.tsv`).
        data_dir: The folder holding `sick-r`.

    Returns:
        The loaded task.
    """
    from sentflow.tasks.sources import BeirSource, StsTaskSource, resolve_source

    source = resolve_source(task, (StsTaskSource, BeirSource), role="a retrieval task")
    if isinstance(source, BeirSource):
        return load_beir(source.path, split)
    assert isinstance(source, StsTaskSource)
    if source.name not in DUPLICATE_TASKS:
        choices = " or ".join(DUPLICATE_TASKS)
        raise SentflowError(f"{source.name} has no duplicate retrieval: use {choices}, or a BEIR folder")
    if split not in SPLITS:
        raise SentflowError(f"unknown split {split!r} for {task}; choose one of {', '.join(SPLITS)}")
    pairs = {s: load_sts(source.name, s, data_dir) for s in SPLITS}
    return duplicate_task(source.name, pairs, split)


def duplicate_task(name: str, pairs: dict[str, StsPairs], split: str) -> RetrievalTask:
    """Duplicate retrieval from gold scores: each `split` pair scored >= 4.0 makes sentence1 a query whose
    relevant document is sentence2; the corpus is every distinct sentence of all splits. A sentence that is the
    first sentence of several such pairs is one query with several relevant documents; a pair of identical
    sentences is skipped (its only relevant document is the query itself, which is excluded)."""
    corpus = sorted({s for p in pairs.values() for s in p.sentences})
    doc_id = {s: str(i) for i, s in enumerate(corpus)}
    qrels: dict[str, dict[str, int]] = {}
    split_pairs = pairs[split]
    for s1, s2, score in zip(split_pairs.sentences1, split_pairs.sentences2, split_pairs.scores, strict=True):
        if score >= DUPLICATE_THRESHOLD and s1 != s2:
            qrels.setdefault(s1, {})[doc_id[s2]] = 1
    if not qrels:
        raise SentflowError(f"{name} {split}: no pair has a gold score >= {DUPLICATE_THRESHOLD}, so no queries")
    texts = list(qrels)
    query_ids = [f"q{doc_id[t]}" for t in texts]
    return RetrievalTask(
        name=name,
        corpus_ids=[doc_id[s] for s in corpus],
        corpus_texts=corpus,
        query_ids=query_ids,
        query_texts=texts,
        qrels={q: qrels[t] for q, t in zip(query_ids, texts, strict=True)},
        exclude={q: doc_id[t] for q, t in zip(query_ids, texts, strict=True)},
    )


def load_beir(folder: str | os.PathLike, split: str = "test") -> RetrievalTask:
    """A BEIR folder: corpus.jsonl (documents embedded as title + " " + text), queries.jsonl, qrels/SPLIT.tsv.

    Only the queries judged in the qrels are kept; every bad line is an error naming the file and line.

    Args:
        folder: The BEIR folder.
        split: Which `qrels/SPLIT.tsv` to read.

    Returns:
        The loaded task.
    """
    folder = Path(folder)
    corpus = _read_jsonl(folder / "corpus.jsonl", with_title=True)
    if not corpus:
        raise SentflowError(f"{folder / 'corpus.jsonl'}: the corpus is empty")
    queries = _read_jsonl(folder / "queries.jsonl", with_title=False)
    qrels = _read_qrels(folder / "qrels" / f"{split}.tsv", queries, corpus)
    query_ids = [q for q in queries if q in qrels]
    return RetrievalTask(
        name=folder.name,
        corpus_ids=list(corpus),
        corpus_texts=list(corpus.values()),
        query_ids=query_ids,
        query_texts=[queries[q] for q in query_ids],
        qrels={q: qrels[q] for q in query_ids},
    )


def _read_jsonl(path: Path, with_title: bool) -> dict[str, str]:
    """id -> text of a BEIR jsonl file (title + " " + text when `with_title`), in file order."""
    return dict(iter_jsonl(path, with_title))


def iter_jsonl(path: str | os.PathLike, with_title: bool = True) -> Iterator[tuple[str, str]]:
    """(id, text) of each record of a BEIR jsonl file, read one line at a time (title + " " + text when
    `with_title`, as BEIR and MTEB embed documents); a bad or repeated record is an error naming its line."""
    seen: set[str] = set()
    for lineno, line in iter_lines(path, MAX_JSON_LINE_BYTES):
        if not line.strip():
            continue
        record = parse_json(BeirRecord, line, f"{path}, line {lineno}")
        if record.id in seen:
            raise SentflowError(f"{path}, line {lineno}: duplicate _id {record.id!r}")
        seen.add(record.id)
        yield record.id, f"{record.title or ''} {record.text}".strip() if with_title else record.text


def _read_qrels(path: Path, queries: dict[str, str], corpus: dict[str, str]) -> dict[str, dict[str, int]]:
    """query id -> {doc id: grade} from a BEIR qrels tsv (header line optional, CRLF accepted)."""
    qrels: dict[str, dict[str, int]] = {}
    for lineno, line in enumerate(read_lines(path), start=1):
        fields = line.split("\t")
        if not line or (lineno == 1 and fields[0] == QRELS_HEADER):
            continue
        if len(fields) != 3 or not line.strip():
            raise SentflowError(f"{path}, line {lineno}: expected query-id, corpus-id, score separated by tabs")
        query, doc, grade = fields
        if query not in queries:
            raise SentflowError(f"{path}, line {lineno}: query id {query!r} is not in queries.jsonl")
        if doc not in corpus:
            raise SentflowError(f"{path}, line {lineno}: corpus id {doc!r} is not in corpus.jsonl")
        value = parse_value(GRADE, grade, f"{path}, line {lineno}: score")
        if doc in qrels.get(query, {}):
            raise SentflowError(f"{path}, line {lineno}: duplicate judgement for query {query!r}, doc {doc!r}")
        qrels.setdefault(query, {})[doc] = value
    if not any(grade > 0 for judged in qrels.values() for grade in judged.values()):
        raise SentflowError(f"{path}: no relevant (score > 0) judgements")
    return qrels
