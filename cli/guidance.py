"""`sentflow tune` and `sentflow diagnose`: whether and how to calibrate."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from sentflow.encoding.models import DEFAULT_BATCH_SIZE, DEFAULT_MODEL, DEFAULT_POOLING
from sentflow.files.schemas import MAX_PAIRS

from .common import Command, threads_from, user_errors
from .options import (
    AsJson,
    BatchSize,
    DataDir,
    Model,
    Pooling,
    Threads,
    make_encoder,
    seed_option,
)


@user_errors
def tune(
    task: Annotated[str, typer.Argument(help="sts-b (shipped), sick-r with --data-dir, or a BEIR folder.")] = "sts-b",
    model: Model = DEFAULT_MODEL,
    pooling: Pooling = DEFAULT_POOLING,
    select_on: Annotated[str, typer.Option(help="Labels to choose on: dev or train (never test).")] = "dev",
    pairs_file: Annotated[
        Path | None,
        typer.Option("--pairs", help="Choose on your own labelled pairs: sentence1 TAB sentence2 TAB score."),
    ] = None,
    max_dim: Annotated[int | None, typer.Option(help="Dimension budget: only settings with at most K dims.")] = None,
    flow: Annotated[bool, typer.Option(help="Include BERT-flow (default settings) among the candidates.")] = True,
    fit_on: Annotated[str, typer.Option(help="STS sentences to fit on (no labels): all, train, dev or test.")] = "all",
    out: Annotated[
        Path | None, typer.Option(help="Write the chosen calibration (.safetensors) or a pipeline (any other name).")
    ] = None,
    normalize: Annotated[bool, typer.Option(help="Pipeline: L2-normalise the final vectors.")] = False,
    data_dir: DataDir = None,
    batch_size: BatchSize = DEFAULT_BATCH_SIZE,
    seed: Annotated[int, seed_option("Random seed of the flow candidate.")] = 0,
    threads: Threads = None,
    as_json: AsJson = False,
) -> None:
    """Choose none / whitening (power x dimension) / BERT-flow on labels that are not the test set; report test."""
    from sentflow.evaluation.tuning import tune as run_tune
    from sentflow.pipeline import check_normalize_out

    check_normalize_out(normalize, out)
    with threads_from(threads):
        encoder = make_encoder(model, pooling, batch_size)
        report = run_tune(
            encoder,
            task,
            select_on=select_on,
            max_dim=max_dim,
            pairs_file=pairs_file,
            with_flow=flow,
            fit_on=fit_on,
            data_dir=data_dir,
            flow_options={"seed": seed},
        )
    if as_json:
        typer.echo(json.dumps(report.to_dict(), allow_nan=False))
    else:
        _print_tune(report)
    if out is not None:
        _save(report, encoder, out, normalize)
        typer.echo(f"wrote {out}: {report.selected.setting.label}", err=True)


def _print_tune(report) -> None:
    """The chosen setting, the baselines, then every candidate (selection score, test score)."""
    metric = report.metric
    typer.echo(f"{report.task}  {report.model} / {report.pooling}: chosen on {report.select_on} {metric}")
    rows = [("selected: " + report.selected.setting.label, report.selected)]
    rows += [(name, c) for name, c in report.baseline().items()]
    rows += [("  " + c.setting.label, c) for c in report.candidates]
    width = max(len(label) for label, _ in rows)
    typer.echo(f"{'setting':<{width}}  {'select':>7}  {'test':>7}")
    for label, c in rows:
        typer.echo(f"{label:<{width}}  {c.dev:7.2f}  {c.test:7.2f}")


def _save(report, encoder, out: Path, normalize: bool) -> None:
    """The chosen calibration as a .safetensors file, or a pipeline directory (which may hold no calibration)."""
    from sentflow.pipeline import save_fitted

    save_fitted(report.calibrator, out, encoder, normalize)


@user_errors
def diagnose(
    source: Annotated[str, typer.Argument(help="An STS task (sts-b, sts12..16, sick-r) or an (n, d) .npy file.")],
    calib: Annotated[
        Path | None, typer.Option(help="Calibration file or pipeline directory (default: whitening fitted here).")
    ] = None,
    plots: Annotated[Path | None, typer.Option(help="Directory for spectrum.png and cosines.png.")] = None,
    model: Model = DEFAULT_MODEL,
    pooling: Pooling = DEFAULT_POOLING,
    data_dir: DataDir = None,
    batch_size: BatchSize = DEFAULT_BATCH_SIZE,
    n_pairs: Annotated[
        int, typer.Option(help="Random pairs for the anisotropy and the histogram.", min=1, max=MAX_PAIRS)
    ] = 10_000,
    seed: Annotated[int, seed_option("Seed of the random pairs.")] = 0,
    threads: Threads = None,
    as_json: AsJson = False,
) -> None:
    """Anisotropy, effective rank, variance shares, spectrum and cosine histograms, before and after calibrating."""
    import sentflow
    from sentflow.evaluation.diagnostics import diagnose as run_diagnose
    from sentflow.evaluation.diagnostics import save_plots, task_vectors
    from sentflow.tasks.sources import EmbeddingSource, StsTaskSource, resolve_source

    with threads_from(threads):
        kind = resolve_source(source, (StsTaskSource, EmbeddingSource), role="diagnose")
        if isinstance(kind, EmbeddingSource):
            vectors, similar, title = kind.shards().read_all(), None, Path(source).name
        else:
            encoder = make_encoder(model, pooling, batch_size)
            vectors, similar = task_vectors(encoder, source, data_dir)
            title = f"{encoder.model_name} {encoder.pooling}, {source}"
        if calib is not None:
            transform, name = sentflow.load(calib).transform, calib.name
        else:
            transform, name = sentflow.Whitening().fit(vectors).transform, "whitening"
        diagnosis = run_diagnose(vectors, similar, transform, name, n_pairs=n_pairs, seed=seed)
        written = save_plots(diagnosis, plots, title) if plots is not None else []
    if as_json:
        typer.echo(json.dumps(diagnosis.to_dict(), allow_nan=False))
    else:
        _print_diagnosis(diagnosis)
    for path in written:
        typer.echo(f"wrote {path}", err=True)


def _print_diagnosis(diagnosis) -> None:
    stages = [("before", diagnosis.before), (f"after: {diagnosis.calibration}", diagnosis.after)]
    rows = [
        ("vectors", lambda s: f"{s.n} x {s.dim}"),
        ("anisotropy (mean cosine, random pairs)", lambda s: f"{s.anisotropy:.3f}"),
        ("effective rank", lambda s: f"{s.effective_rank:.1f}"),
        ("variance in top 1 direction", lambda s: f"{100 * s.top1_share:.1f}%"),
        ("variance in top 10 directions", lambda s: f"{100 * s.top10_share:.1f}%"),
    ]
    if diagnosis.before.similar_cosines is not None:
        rows.append(("mean cosine, gold-similar pairs", lambda s: f"{s.similar_cosines.mean():.3f}"))
    width = max(len(label) for label, _ in rows)
    typer.echo(f"{'':<{width}}  " + "  ".join(f"{name:>16}" for name, _ in stages))
    for label, show in rows:
        typer.echo(f"{label:<{width}}  " + "  ".join(f"{show(stats):>16}" for _, stats in stages))


def register(app: typer.Typer) -> None:
    """Add the guidance commands to the main app."""
    app.command("tune", cls=Command)(tune)
    app.command("diagnose", cls=Command)(diagnose)
