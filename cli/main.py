"""Entry point: `sentflow encode | fit | transform | eval | flows ...`."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from sentflow.encoding.models import DEFAULT_BATCH_SIZE, DEFAULT_MAX_LENGTH, DEFAULT_MODEL, DEFAULT_POOLING

from .common import DEBUG_ENV, Command, Group, printable, status, threads_from, user_errors
from .evaluate import eval_app
from .flows import flows_app
from .guidance import register as register_guidance
from .options import (
    Backend,
    BatchSize,
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
from .prechecks import existing, pipeline_fixes
from .search import register as register_search

app = typer.Typer(
    cls=Group,
    name="sentflow",
    help="Whitening and flows for sentence embeddings, and the image flows behind them.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(flows_app, name="flows")
app.add_typer(eval_app, name="eval")


@app.callback()
def _options(
    debug: Annotated[bool, typer.Option("--debug", help="Show the traceback of internal errors.")] = False,
) -> None:
    if debug:
        os.environ[DEBUG_ENV] = "1"


register_guidance(app)
register_search(app)


def _flow_options(levels, depth, hidden, epochs, lr, seed: int) -> dict:
    """The flow options given on the command line; the rest keep BertFlow's defaults."""
    given = {"levels": levels, "depth": depth, "hidden": hidden, "epochs": epochs, "lr": lr, "seed": seed}
    return {k: v for k, v in given.items() if v is not None}


@app.command(cls=Command)
@user_errors
def encode(
    ctx: typer.Context,
    input: Annotated[Path, typer.Argument(help="Text file, one sentence per line.")],
    out: Annotated[Path, typer.Option(help="Where to write the (n, d) float32 .npy.")],
    pipeline: Annotated[Path | None, typer.Option(help="A pipeline directory written by `sentflow fit`.")] = None,
    model: Model = DEFAULT_MODEL,
    pooling: Pooling = DEFAULT_POOLING,
    batch_size: BatchSize = DEFAULT_BATCH_SIZE,
    max_length: MaxLength = DEFAULT_MAX_LENGTH,
    backend: Backend = None,
    chunk_lines: Annotated[int, typer.Option(help="Lines encoded and written per chunk.")] = 512,
    resume: Annotated[bool, typer.Option(help="Continue an interrupted run from its last finished chunk.")] = False,
    restart: Annotated[bool, typer.Option("--restart", help="Discard an interrupted run's rows; start over.")] = False,
    threads: Threads = None,
) -> None:
    """Encode a text file into a .npy of sentence vectors, chunk by chunk (memory does not grow with the file)."""
    existing(input)  # cheap checks first: a bad argument answers before torch loads
    pipeline_fixes(ctx, pipeline, ("model", "pooling", "max_length"))
    from sentflow.pipeline import load_pipeline
    from sentflow.streaming import encode_file

    with threads_from(threads):
        if pipeline is not None:
            encoder = load_pipeline(pipeline, batch_size=batch_size, backend=backend, cache=False)
        else:
            encoder = make_encoder(model, pooling, batch_size, max_length, backend, cache=False)
        shape = encode_file(encoder, input, out, chunk_lines, resume, inputs=[pipeline or input], restart=restart)
    typer.echo(f"wrote {out} {shape}", err=True)


@app.command(cls=Command)
@user_errors
def fit(
    out: Annotated[
        Path, typer.Option(help="A .safetensors calibration file, or a pipeline directory (any other name).")
    ],
    method: Annotated[str, typer.Option(help="whitening | pca | flow")] = "whitening",
    data: Annotated[
        str, typer.Option(help="sts-b, sick-r, sts12..16, a text file, or .npy embeddings (a file, directory or glob).")
    ] = "sts-b",
    data_dir: Annotated[Path | None, typer.Option(help="Directory of a task not shipped with sentflow.")] = None,
    dim: Dim = None,
    power: Power = None,
    normalize: Annotated[bool, typer.Option(help="Pipeline: L2-normalise the final vectors.")] = False,
    model: Annotated[
        str | None,
        typer.Option(help="Encoder of the data (default all-MiniLM-L6-v2); with .npy data, the one that made them."),
    ] = None,
    pooling: Annotated[
        str | None, typer.Option(help="Pooling of that encoder (default last-avg); see `encode --help`.")
    ] = None,
    batch_size: BatchSize = DEFAULT_BATCH_SIZE,
    max_length: MaxLength = DEFAULT_MAX_LENGTH,
    backend: Backend = None,
    levels: Levels = None,
    depth: Depth = None,
    hidden: Hidden = None,
    epochs: Epochs = None,
    lr: Lr = None,
    seed: Seed = 0,
    scheduler: Annotated[
        str | None, typer.Option(help="Dask scheduler address: fit .npy shards on that cluster.")
    ] = None,
    threads: Threads = None,
) -> None:
    """Fit a calibration (no labels used) and save it, alone or as a pipeline with its encoder settings."""
    status(f"fitting {method} on {data} (encoding it first, unless its vectors are cached)")  # at a terminal only
    from sentflow.fitting import fit as fit_data

    with threads_from(threads):
        report = fit_data(
            data, method, out, dim=dim, power=power, normalize=normalize, model=model, pooling=pooling,
            data_dir=data_dir, scheduler=scheduler,
            encoder_options={"batch_size": batch_size, "max_length": max_length, "backend": backend},
            flow_options=_flow_options(levels, depth, hidden, epochs, lr, seed),
        )
    dims = f"{report.dim_in} -> {report.calibration.n_components_out_} dims"
    typer.echo(f"wrote {out}: {method} {dims}, fitted on {report.rows} rows", err=True)


@app.command(cls=Command)
@user_errors
def transform(
    embeddings: Annotated[
        str, typer.Argument(help="Input .npy of shape (n, d), a directory of .npy shards, or a glob.")
    ],
    calib: Annotated[Path, typer.Option(help="Calibration file or pipeline directory written by `sentflow fit`.")],
    out: Annotated[Path, typer.Option(help="Where to write the transformed .npy (float32).")],
    threads: Threads = None,
) -> None:
    """Apply a saved calibration (or pipeline) to embeddings, chunk by chunk, into one .npy."""
    import sentflow
    from sentflow.streaming import transform_file

    with threads_from(threads):
        shape = transform_file(sentflow.load(calib), embeddings, out, inputs=[calib])
    typer.echo(f"wrote {out} {shape}", err=True)


def main() -> None:
    """Run the app; usage errors (a bad option value, a missing argument) are one `error:` line and exit 1."""
    try:
        code = app(standalone_mode=False)
        sys.stdout.flush()
    except BrokenPipeError:  # the reader stopped early (`| head`): stop quietly, as Unix tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # nothing left to flush at exit
        code = 141  # 128 + SIGPIPE
    except typer.Abort:
        typer.echo("interrupted", err=True)
        code = 130
    except Exception as exc:  # click's usage errors, told apart by class name: typer's click module is private
        kinds = {cls.__name__ for cls in type(exc).__mro__}
        if "NoArgsIsHelpError" in kinds:
            typer.echo(exc.ctx.get_help() if exc.ctx else str(exc))  # type: ignore[attr-defined]
            code = 0
        elif "UsageError" in kinds:
            message = exc.format_message()  # type: ignore[attr-defined]
            typer.echo(f"error: {printable(' '.join(message.split()))}", err=True)
            code = 1
        else:
            raise
    sys.exit(code or 0)
