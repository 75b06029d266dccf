"""`sentflow eval sts TASK` and `sentflow eval retrieval TASK`, each with only its own options.

`sentflow eval sts-b` (and every other STS task name) is short for `sentflow eval sts sts-b`."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from sentflow.encoding.models import DEFAULT_BATCH_SIZE, DEFAULT_MAX_LENGTH, DEFAULT_MODEL, DEFAULT_POOLING
from sentflow.errors import SentflowError

from .common import Command, Group, threads_from, user_errors
from .options import (
    AsJson,
    Backend,
    BatchSize,
    DataDir,
    Depth,
    Dim,
    Epochs,
    Hidden,
    Levels,
    Lr,
    MaxLength,
    Model,
    Pooling,
    Power,
    Seed,
    Threads,
    make_encoder,
)
from .prechecks import quantize_specs
from .tables import print_retrieval, print_sts

STS_TASKS = ("sts-b", "sts12", "sts13", "sts14", "sts15", "sts16", "sick-r")

eval_app = typer.Typer(
    cls=Group,
    help="Score calibrations: `eval sts TASK` (Spearman x100; `eval sts-b` for short) or `eval retrieval TASK`.",
    no_args_is_help=True,
)

Methods = Annotated[str | None, typer.Option(help="Comma-separated: none, whitening, pca, flow.")]
FitOn = Annotated[str, typer.Option(help="Sentences to fit on (no labels): all, train, dev or test.")]


def sts(
    task: Annotated[str, typer.Argument(help="sts-b (shipped), or sts12..sts16 / sick-r with --data-dir.")],
    model: Model = DEFAULT_MODEL,
    pooling: Pooling = DEFAULT_POOLING,
    methods: Methods = None,
    dim: Dim = None,
    power: Power = None,
    fit_on: FitOn = "all",
    data_dir: DataDir = None,
    batch_size: BatchSize = DEFAULT_BATCH_SIZE,
    max_length: MaxLength = DEFAULT_MAX_LENGTH,
    backend: Backend = None,
    levels: Levels = None,
    depth: Depth = None,
    hidden: Hidden = None,
    epochs: Epochs = None,
    lr: Lr = None,
    seed: Seed = 0,
    threads: Threads = None,
    as_json: AsJson = False,
) -> None:
    """Test-split Spearman x100 of each method on an STS task, calibrations fitted without labels."""
    from sentflow.evaluation.compare import compare

    with threads_from(threads):
        encoder = make_encoder(model, pooling, batch_size, max_length, backend)
        if dim is not None and not 1 <= dim <= encoder.dim:
            raise SentflowError(f"--dim {dim} must be between 1 and the embedding size {encoder.dim}")
        flow = {"levels": levels, "depth": depth, "hidden": hidden, "epochs": epochs, "lr": lr, "seed": seed}
        report = compare(
            encoder,
            task=task,
            methods=names(methods or "none,whitening"),
            dim=dim,
            power=power,
            fit_on=fit_on,
            data_dir=str(data_dir) if data_dir else None,
            flow_options={k: v for k, v in flow.items() if v is not None},
        )
    if as_json:
        typer.echo(json.dumps(report.to_dict(), allow_nan=False))
    else:
        print_sts(report.to_dict())


def retrieval(
    task: Annotated[str, typer.Argument(help="sts-b, sick-r (with --data-dir) or a BEIR folder.")],
    model: Model = DEFAULT_MODEL,
    pooling: Pooling = DEFAULT_POOLING,
    methods: Methods = None,
    dims: Annotated[str | None, typer.Option(help="Comma-separated dimensions to cut to, e.g. 256,128.")] = None,
    index: Annotated[str, typer.Option(help="faiss factory string of the scored index.")] = "Flat",
    approx_index: Annotated[str, typer.Option(help="A second, approximate index ('' for none).")] = "HNSW32",
    split: Annotated[str, typer.Option(help="The qrels split of a BEIR folder.")] = "test",
    quantize: Annotated[
        str | None, typer.Option(help="Compact codes to measure, e.g. none,int8,int4,binary,itq:128,rabitq.")
    ] = None,
    rescore: Annotated[
        int,
        typer.Option(min=0, max=1 << 20, help="Two-stage codes: candidates per result rescored in int8 at large k."),
    ] = 4,
    candidates: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=1 << 24,
            help="Two-stage codes: stage 1's budget for the int8 rescoring (default: max(100, rescore x k)).",
        ),
    ] = None,
    baselines: Annotated[
        bool, typer.Option("--baselines", help="Also sentence-transformers' and faiss's codes.")
    ] = False,
    data_dir: DataDir = None,
    batch_size: BatchSize = DEFAULT_BATCH_SIZE,
    max_length: MaxLength = DEFAULT_MAX_LENGTH,
    backend: Backend = None,
    threads: Threads = None,
    wide: Annotated[bool, typer.Option("--wide", help="Every metric and index column (needs ~120 columns).")] = False,
    as_json: AsJson = False,
) -> None:
    """Retrieval quality (nDCG@10, MRR@10, recall) and index cost of each method, dimension and compact code."""
    quantize_specs(quantize)  # cheap checks first: a bad spec answers before torch loads
    from sentflow.evaluation.quant_baselines import BASELINES
    from sentflow.evaluation.retrieval import evaluate_retrieval

    with threads_from(threads):
        encoder = make_encoder(model, pooling, batch_size, max_length, backend)
        report = evaluate_retrieval(
            encoder,
            task,
            methods=names(methods or "none,whitening,pca"),
            dims=parse_dims(dims),
            index=index,
            approx_index=approx_index or None,
            split=split,
            data_dir=data_dir,
            quantize=names(quantize or ""),
            rescore=rescore,
            baselines=BASELINES if baselines else (),
            candidates=candidates,
        )
    if as_json:
        typer.echo(json.dumps(report.to_dict(), allow_nan=False))
    else:
        print_retrieval(report, wide)


def names(text: str) -> list[str]:
    """A comma-separated option as a list; one that names nothing (`,,`) is refused."""
    items = [m.strip() for m in text.split(",") if m.strip()]
    if text.strip() and not items:
        raise SentflowError(f"{text!r} names nothing; give comma-separated names")
    return items


def parse_dims(text: str | None) -> list[int | None]:
    """--dims as integers (None: the full size)."""
    if not text:
        return [None]
    try:
        return [int(d) for d in names(text)]
    except ValueError:
        raise SentflowError(f"--dims must be comma-separated whole numbers, got {text!r}") from None


def _sts_alias(task: str):
    """`eval TASK` for an STS task name: `eval sts TASK` with the same options."""

    def alias(**options) -> None:
        sts(task, **options)

    alias.__signature__ = _without_task()  # type: ignore[attr-defined]  # Typer reads the options from it
    alias.__doc__ = f"Short for `sentflow eval sts {task}`."
    return alias


def _without_task():
    import inspect

    signature = inspect.signature(sts, eval_str=True)  # real types: this module defers its annotations
    return signature.replace(parameters=[p for name, p in signature.parameters.items() if name != "task"])


eval_app.command("sts", cls=Command)(user_errors(sts))
eval_app.command("retrieval", cls=Command)(user_errors(retrieval))
for _task in STS_TASKS:
    eval_app.command(_task, hidden=_task != "sts-b", cls=Command)(user_errors(_sts_alias(_task)))
