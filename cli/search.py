"""`sentflow index` and `sentflow search`: compact search from the command line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from sentflow.encoding.models import DEFAULT_BATCH_SIZE, DEFAULT_MAX_LENGTH, DEFAULT_MODEL, DEFAULT_POOLING
from sentflow.errors import SentflowError

from .common import Command, threads_from, user_errors
from .options import BatchSize, MaxLength, Threads
from .prechecks import existing, pipeline_fixes, quantize_specs, sentflow_directory

SNIPPET_WIDTH = 48


@user_errors
def index(
    ctx: typer.Context,
    corpus: Annotated[
        Path,
        typer.Argument(
            help="A text file (one document a line), a BEIR corpus.jsonl or folder, or vectors: a .npy file or a "
            "folder of .npy shards (indexed as given, without encoding)."
        ),
    ],
    out: Annotated[Path, typer.Option(help="The index directory to write.")],
    pipeline: Annotated[
        Path | None, typer.Option(help="A pipeline directory from `sentflow fit` (default: the plain encoder).")
    ] = None,
    quantize: Annotated[
        str, typer.Option(help="none | int8[:P] | int4[:P] | binary | itq:BITS | pca:BITS (see the docs).")
    ] = "binary",
    rescore: Annotated[
        int, typer.Option(min=0, max=1 << 20, help="Sign codes: candidates per result rescored with int8 codes.")
    ] = 4,
    hnsw: Annotated[bool, typer.Option("--hnsw", help="Stage 1 on an HNSW graph (large corpora).")] = False,
    lists: Annotated[
        int | None,
        typer.Option(min=1, max=1 << 20, help="An inverted file of N k-means cells (large corpora; see --probes)."),
    ] = None,
    ids: Annotated[
        Path | None, typer.Option(help="Vectors only: a text file of ids, one a line (default: row numbers).")
    ] = None,
    model: Annotated[str | None, typer.Option(help="Without --pipeline: the encoder (all-MiniLM-L6-v2).")] = None,
    pooling: Annotated[str | None, typer.Option(help="Without --pipeline: its pooling (last-avg).")] = None,
    batch_size: BatchSize = DEFAULT_BATCH_SIZE,
    max_length: MaxLength = DEFAULT_MAX_LENGTH,
    resume: Annotated[bool, typer.Option(help="Continue an interrupted encoding of the same corpus.")] = False,
    restart: Annotated[bool, typer.Option("--restart", help="Discard an interrupted encoding; start over.")] = False,
    threads: Threads = None,
) -> None:
    """Encode a corpus (or take vectors as given) and write a compact index of its vectors: quantized codes, ids
    and snippets."""
    existing(corpus)  # cheap checks first: a bad argument answers before torch loads
    quantize_specs(quantize)
    pipeline_fixes(ctx, pipeline, ("model", "pooling", "max_length"))
    from sentflow.search.indexing import index_corpus, index_vectors
    from sentflow.tasks.sources import EmbeddingSource, resolve_source

    vectors = isinstance(resolve_source(corpus), EmbeddingSource)
    if vectors and (pipeline or model or pooling or resume or restart):
        raise SentflowError(
            f"{corpus}: vectors are indexed as given; --pipeline, --model, --pooling, --resume and "
            "--restart are for text corpora"
        )
    if ids is not None and not vectors:
        raise SentflowError("--ids names the rows of a .npy corpus; a text corpus has its own ids")
    with threads_from(threads):
        if vectors:
            built = index_vectors(corpus, out, ids, quantize, rescore, hnsw, lists)
        else:
            encoder = _pipeline(pipeline, model, pooling, batch_size, max_length)
            built = index_corpus(
                corpus, out, encoder, quantize, rescore, hnsw, resume, pipeline, restart=restart, lists=lists
            )
    cells = f", {lists:,} lists" if lists else ""
    origin = "; no pipeline recorded: search it with --vectors" if vectors else ""
    typer.echo(
        f"wrote {out}: {len(built):,} documents, {built.quantize}{cells}, {built.ram_bytes_per_doc:g} B/doc in RAM, "
        f"{built.disk_bytes_per_doc:g} B/doc on disk{origin}",
        err=True,
    )


def _pipeline(directory: Path | None, model: str | None, pooling: str | None, batch_size: int, max_length: int):
    """The pipeline that encodes the corpus: a saved one, or the plain encoder with L2 normalisation (cosine).

    Its vectors go to the embedding cache, so `eval retrieval` and `tune` on the same corpus do not encode it again
    (the index's progress bar is the chunked encoding's, one step a chunk; the encoder's own bar stays off)."""
    from sentflow.encoding.factory import make_encoder
    from sentflow.pipeline import Pipeline, load_pipeline

    if directory is not None:
        return load_pipeline(directory, batch_size=batch_size, show_progress=False)
    options = {"batch_size": batch_size, "max_length": max_length, "show_progress": False}
    encoder = make_encoder(model or DEFAULT_MODEL, pooling or DEFAULT_POOLING, **options)
    return Pipeline(encoder, None, normalize=True)


@user_errors
def search(
    index_dir: Annotated[Path, typer.Argument(help="An index directory written by `sentflow index`.")],
    query: Annotated[str | None, typer.Argument(help="The query text.", show_default=False)] = None,
    k: Annotated[int, typer.Option("--k", min=1, max=10_000, help="Results per query.")] = 10,
    queries: Annotated[Path | None, typer.Option(help="A text file of queries, one a line.")] = None,
    vectors: Annotated[
        Path | None, typer.Option(help="Query vectors (.npy), made like the indexed ones, instead of texts.")
    ] = None,
    probes: Annotated[
        int | None, typer.Option(min=1, max=1 << 20, help="An index with --lists: cells searched per query.")
    ] = None,
    candidates: Annotated[
        int | None, typer.Option(min=1, max=1 << 20, help="Candidates stage 1 passes to the int8 rescoring.")
    ] = None,
    as_json: Annotated[
        bool,
        typer.Option("--json", help='Print JSON on stdout and nothing else: [{"query", "hits": [{"id", "score", '
                     '"snippet"}]}], one row per query ("#ROW" for --vectors).'),  # fmt: skip
    ] = False,
    threads: Threads = None,
) -> None:
    """Search an index with query texts (or query vectors): ids, scores and snippets, best first."""
    sentflow_directory(index_dir, "index.json", "index")  # cheap checks first: answered before torch loads
    for path in (queries, vectors):
        if path is not None:
            existing(path)
    from sentflow.search.indexing import search_index, search_vectors
    from sentflow.streaming import text_chunks

    if [query is not None, queries is not None, vectors is not None].count(True) != 1:
        raise SentflowError("give one query text, --queries FILE or --vectors Q.npy")
    with threads_from(threads):
        if vectors is not None:
            results = search_vectors(index_dir, vectors, k, probes, candidates)
            texts = [f"#{row}" for row in range(len(results))]
        else:
            texts = [t for chunk in text_chunks(queries, 0, 8192) for t in chunk] if queries else [str(query)]
            results = search_index(index_dir, texts, k, probes, candidates, cache=False, show_progress=False)
    if as_json:
        rows = [{"query": t, "hits": [vars(h) for h in hits]} for t, hits in zip(texts, results, strict=True)]
        typer.echo(json.dumps(rows, allow_nan=False, ensure_ascii=False))  # one shape: a list, one row per query
        return
    for text, hits in zip(texts, results, strict=True):
        _print_hits(text, hits)


def _print_hits(query: str, hits) -> None:
    """A rich table that fits 80 columns: rank, id, score and the start of the document."""
    from rich.console import Console
    from rich.table import Table

    from .tables import printable

    table = Table(title=printable(query if len(query) <= 70 else query[:69] + "…"), title_justify="left")
    table.add_column("#", justify="right")
    table.add_column("id", overflow="fold", max_width=16)
    table.add_column("score", justify="right")
    table.add_column("document", overflow="ellipsis", no_wrap=True, max_width=SNIPPET_WIDTH)
    for rank, hit in enumerate(hits, start=1):
        table.add_row(str(rank), printable(hit.id), f"{hit.score:.3f}", printable(hit.snippet))
    Console().print(table)


def register(app: typer.Typer) -> None:
    """Add `index` and `search` to the main app."""
    app.command("index", cls=Command)(index)
    app.command("search", cls=Command)(search)
