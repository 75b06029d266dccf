"""Entry point: `sentflow encode | fit | transform | eval | flows ...`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from sentflow.errors import SentflowError

from .common import user_errors
from .data import fit_data, read_embeddings, read_sentences
from .flows import flows_app

app = typer.Typer(
    name="sentflow",
    help="Whitening and flows for sentence embeddings, and the image flows behind them.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(flows_app, name="flows")

Model = Annotated[str, typer.Option(help="all-MiniLM-L6-v2 (embedded), a local HF directory, or a hub id.")]
Pooling = Annotated[str, typer.Option(help="cls | pooler | last-avg | first-last-avg | last2avg")]
BatchSize = Annotated[int, typer.Option(help="Sentences per forward pass.")]
Dim = Annotated[int | None, typer.Option(help="Keep the first K whitened dimensions.")]
Power = Annotated[float, typer.Option(help="Whitening power: 0.5 full, 0 centring only.")]
Levels = Annotated[int | None, typer.Option(help="Flow: levels (multi-scale); default 3 as in BERT-flow.")]
Depth = Annotated[int | None, typer.Option(help="Flow: steps per level; default 3.")]
Hidden = Annotated[int | None, typer.Option(help="Flow: coupling network width; default 32.")]
Epochs = Annotated[int | None, typer.Option(help="Flow: max epochs (early stopping may end sooner).")]
Lr = Annotated[float | None, typer.Option(help="Flow: learning rate; default 1e-3.")]
Seed = Annotated[int, typer.Option(help="Random seed (flow training).")]


def _encoder(model: str, pooling: str, batch_size: int):
    from sentflow.encoder import Encoder

    return Encoder(model=model, pooling=pooling, batch_size=batch_size)


def _flow_options(levels, depth, hidden, epochs, lr, seed: int) -> dict:
    """The flow options given on the command line; the rest keep BertFlow's defaults."""
    given = {"levels": levels, "depth": depth, "hidden": hidden, "epochs": epochs, "lr": lr, "seed": seed}
    return {k: v for k, v in given.items() if v is not None}


@app.command()
@user_errors
def encode(
    input: Annotated[Path, typer.Argument(help="Text file, one sentence per line.")],
    out: Annotated[Path, typer.Option(help="Where to write the (n, d) float32 .npy.")],
    model: Model = "all-MiniLM-L6-v2",
    pooling: Pooling = "last-avg",
    batch_size: BatchSize = 64,
) -> None:
    """Encode sentences into a .npy array of sentence vectors."""
    from sentflow.io import save_npy

    vectors = _encoder(model, pooling, batch_size).encode(read_sentences(input))
    save_npy(out, vectors)
    typer.echo(f"wrote {out} {vectors.shape}", err=True)


@app.command()
@user_errors
def fit(
    out: Annotated[Path, typer.Option(help="Calibration file to write (.safetensors).")],
    method: Annotated[str, typer.Option(help="whitening | flow")] = "whitening",
    data: Annotated[str, typer.Option(help="sts-b, sick-r, sts12..16, a text file or an .npy file.")] = "sts-b",
    data_dir: Annotated[Path | None, typer.Option(help="Directory of a task not shipped with sentflow.")] = None,
    dim: Dim = None,
    power: Power = 0.5,
    model: Model = "all-MiniLM-L6-v2",
    pooling: Pooling = "last-avg",
    batch_size: BatchSize = 64,
    levels: Levels = None,
    depth: Depth = None,
    hidden: Hidden = None,
    epochs: Epochs = None,
    lr: Lr = None,
    seed: Seed = 0,
) -> None:
    """Fit a calibration (no labels used) and save it."""
    from sentflow.evaluation import make_calibrator

    if method not in ("whitening", "flow"):
        raise SentflowError(f"unknown --method {method!r}; choose whitening or flow")
    if method == "flow" and (dim is not None or power != 0.5):
        raise SentflowError("--dim and --power apply to whitening; a flow keeps every dimension")
    rows = fit_data(data, _encoder(model, pooling, batch_size), data_dir)
    if dim is not None and dim > rows.shape[1]:
        raise SentflowError(f"--dim {dim} is larger than the embedding size {rows.shape[1]}")
    calibrator = make_calibrator(method, dim, power, **_flow_options(levels, depth, hidden, epochs, lr, seed))
    calibrator.fit(rows)
    from_npy = data.endswith(".npy")
    calibrator.save(out, model=None if from_npy else model, pooling=None if from_npy else pooling)
    typer.echo(
        f"wrote {out}: {method} {rows.shape[1]} -> {calibrator.n_components_out_} dims, fitted on {len(rows)} rows",
        err=True,
    )


@app.command()
@user_errors
def transform(
    embeddings: Annotated[Path, typer.Argument(help="Input .npy of shape (n, d).")],
    calib: Annotated[Path, typer.Option(help="Calibration written by `sentflow fit`.")],
    out: Annotated[Path, typer.Option(help="Where to write the transformed .npy.")],
) -> None:
    """Apply a saved calibration to an array of embeddings."""
    import numpy as np

    import sentflow
    from sentflow.io import save_npy

    calibrator = sentflow.load(calib)
    result = calibrator.transform(read_embeddings(embeddings))
    save_npy(out, result.astype(np.float32))
    typer.echo(f"wrote {out} {result.shape}", err=True)


@app.command("eval")
@user_errors
def evaluate(
    task: Annotated[str, typer.Argument(help="sts-b (shipped), or sts12..sts16 / sick-r with --data-dir.")] = "sts-b",
    model: Model = "all-MiniLM-L6-v2",
    pooling: Pooling = "last-avg",
    methods: Annotated[str, typer.Option(help="Comma-separated: none, whitening, flow.")] = "none,whitening",
    dim: Dim = None,
    power: Power = 0.5,
    fit_on: Annotated[str, typer.Option(help="Sentences to fit on (no labels): all, train, dev or test.")] = "all",
    data_dir: Annotated[Path | None, typer.Option(help="Directory of a task not shipped with sentflow.")] = None,
    batch_size: BatchSize = 64,
    levels: Levels = None,
    depth: Depth = None,
    hidden: Hidden = None,
    epochs: Epochs = None,
    lr: Lr = None,
    seed: Seed = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON on stdout and nothing else.")] = False,
) -> None:
    """Test-split Spearman x100 of each method on an STS task."""
    from sentflow.evaluation import compare

    report = compare(
        _encoder(model, pooling, batch_size),
        task=task,
        methods=[m.strip() for m in methods.split(",") if m.strip()],
        dim=dim,
        power=power,
        fit_on=fit_on,
        data_dir=str(data_dir) if data_dir else None,
        flow_options=_flow_options(levels, depth, hidden, epochs, lr, seed),
    )
    if as_json:
        typer.echo(json.dumps(report))
    else:
        _print_table(report)


def _print_table(report: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{report['task']} test | {report['model']} | {report['pooling']} | fit on {report['fit_on']}")
    for column in ("method", "dim", "Spearman x100", "Pearson x100", "fit s"):
        table.add_column(column, justify="left" if column == "method" else "right")
    for row in report["results"]:
        table.add_row(
            row["method"],
            str(row["dim"]),
            f"{row['spearman']:.2f}",
            f"{row['pearson']:.2f}",
            f"{row['fit_seconds']:.2f}",
        )
    Console().print(table)


def main() -> None:
    app()
