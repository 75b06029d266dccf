"""`sentflow flows train | eval | sample`: the image flows (NICE, RealNVP, Glow, i-ResNet, f-VAE).

torch and the models are imported inside the commands, so `sentflow --help` does not load them.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from sentflow.errors import SentflowError
from sentflow.files.schemas import (
    MAX_BATCH,
    MAX_EPOCHS,
    MAX_LR,
    MAX_MINUTES,
    MAX_WARMUP,
    MODEL_CONFIG,
    parse_json,
)
from sentflow.flows import CHECKPOINT_NAME, MODEL_NAMES
from sentflow.runtime import FLOW_THREADS

from .common import Command, Group, user_errors
from .options import seed_option

if TYPE_CHECKING:
    from sentflow.flows import FlowModel

flows_app = typer.Typer(
    cls=Group,
    help="Train, evaluate and sample image flows (NICE, RealNVP, Glow, i-ResNet, f-VAE).", no_args_is_help=True
)

Data = Annotated[str, typer.Option(help="'digits' (embedded 8x8, 17 levels) or 'mnist:DIR' (IDX, .gz ok).")]
Ckpt = Annotated[Path, typer.Argument(help="A checkpoint.safetensors written by `flows train`, or its run directory.")]
Threads = Annotated[
    int | None,
    typer.Option(
        min=1,
        help=f"CPU threads (default {FLOW_THREADS}: these small networks run fastest on one; "
        "$SENTFLOW_THREADS does not apply).",
    ),
]


def _config(text: str) -> dict:
    return parse_json(MODEL_CONFIG, text, "--config (a JSON object, e.g. '{\"hidden\": 64}')")


def _start_model(
    model: str, ckpt_path: Path, resume: bool, config: str, shape: tuple, n_bins: int, seed: int
) -> FlowModel:
    """The checkpoint's model when resuming, else a fresh seeded one."""
    from sentflow.flows import build_model, read_checkpoint, seed_everything

    if resume and ckpt_path.is_file():
        flow = read_checkpoint(ckpt_path).model
        if flow.name != model:
            raise SentflowError(f"{ckpt_path}: holds a {flow.name} model, not {model}")
        return flow
    options = _config(config)
    fixed = sorted({"data_shape", "n_bins"} & set(options))
    if fixed:
        verb = "come" if len(fixed) > 1 else "comes"
        raise SentflowError(f"--config: {' and '.join(fixed)} {verb} from --data; leave them out of --config")
    seed_everything(seed)
    return build_model(model, data_shape=shape, n_bins=n_bins, **options)


@flows_app.command(cls=Command)
@user_errors
def train(
    model: Annotated[str, typer.Argument(help=f"One of {', '.join(MODEL_NAMES)}.")],
    out: Annotated[Path, typer.Option(help="Directory for checkpoint.safetensors (the last good epoch).")],
    data: Data = "digits",
    epochs: Annotated[int, typer.Option(min=1, max=MAX_EPOCHS)] = 10,
    batch_size: Annotated[int, typer.Option(min=1, max=MAX_BATCH)] = 64,
    lr: Annotated[float, typer.Option(min=0.0, max=MAX_LR)] = 1e-3,
    seed: Annotated[int, seed_option("Random seed.")] = 0,
    optimizer: Annotated[str, typer.Option(help="adam or adamax.")] = "adam",
    warmup: Annotated[int, typer.Option(min=0, max=MAX_WARMUP, help="Learning-rate warm-up steps.")] = 200,
    clip: Annotated[float, typer.Option(min=0.0, max=1e9, help="Gradient-norm clipping.")] = 50.0,
    minutes: Annotated[
        float, typer.Option(min=0.0, max=MAX_MINUTES, help="Wall-clock budget in minutes (0: none).")
    ] = 0.0,
    config: Annotated[str, typer.Option(help="Model options as JSON, e.g. '{\"steps\": 4}'.")] = "{}",
    resume: Annotated[bool, typer.Option(help="Continue from OUT/checkpoint.safetensors.")] = False,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Start over, replacing OUT/checkpoint.safetensors.")
    ] = False,
    threads: Threads = None,
) -> None:
    """Train a flow; writes OUT/checkpoint.safetensors after every epoch and prints test bits/dim."""
    from sentflow.files.io import check_output
    from sentflow.flows import TrainConfig, load_data, train_image_flow
    from sentflow.flows.checkpoint import check_shape

    if model not in MODEL_NAMES:
        raise SentflowError(f"unknown model {model!r}; choose one of {', '.join(MODEL_NAMES)}")
    if optimizer not in ("adam", "adamax"):
        raise SentflowError(f"unknown optimizer {optimizer!r}; use adam or adamax")
    if out.is_symlink():
        raise SentflowError(f"{out}: is a symbolic link; sentflow does not write through links, give the real path")
    if out.exists() and not out.is_dir():
        raise SentflowError(f"{out}: is a file; --out names the run directory that will hold {CHECKPOINT_NAME}")
    ckpt_path = check_output(out / CHECKPOINT_NAME)
    if ckpt_path.is_file() and not (resume or overwrite):
        raise SentflowError(f"{ckpt_path}: exists; add --resume to continue it or --overwrite to start over")
    images = load_data(data)
    flow = _start_model(model, ckpt_path, resume, config, images.shape, images.n_bins, seed)
    check_shape(flow, images.shape, data)
    settings = TrainConfig(
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        optimizer=optimizer,
        warmup_steps=warmup,
        clip_norm=clip,
        seed=seed,
        max_minutes=minutes or None,
        threads=threads,
    )
    resume_from = ckpt_path if resume and ckpt_path.is_file() else None
    run = train_image_flow(flow, images, settings, out, resume_from)
    if run.budget_ended:
        ended = f"the time budget (--minutes {minutes:g}) ended training after epoch {run.state.epoch} of {epochs}"
        typer.echo(ended, err=True)
    typer.echo(_bpd_line(run.model, run.test_bpd))
    typer.echo(f"checkpoint: {ckpt_path}")


def _bpd_line(model: FlowModel, bpd: float) -> str:
    """The test bits/dim, followed by the estimator for models whose likelihood is estimated or bounded."""
    estimator = getattr(model, "estimator", None)
    return f"test bits/dim: {bpd:.4f}" + (f" ({estimator})" if estimator else "")


def _load(checkpoint: Path) -> FlowModel:
    """The model of a checkpoint file, or of the run directory `flows train --out` wrote."""
    from sentflow.flows import read_checkpoint
    from sentflow.runtime import default_device

    path = checkpoint / CHECKPOINT_NAME if checkpoint.is_dir() else checkpoint
    return read_checkpoint(path).model.eval().to(default_device())


@flows_app.command("eval", cls=Command)
@user_errors
def evaluate(
    checkpoint: Ckpt,
    data: Data = "digits",
    seed: Annotated[int, seed_option("Seed of the dequantization noise.")] = 0,
    threads: Threads = None,
) -> None:
    """Print the test bits/dim of a checkpoint."""
    from sentflow.flows import evaluate_bpd, load_data
    from sentflow.flows.checkpoint import check_shape
    from sentflow.runtime import using_threads

    model = _load(checkpoint)
    images = load_data(data)
    check_shape(model, images.shape, data)
    if images.n_bins != model.n_bins:
        raise SentflowError(f"{checkpoint}: model expects {model.n_bins} levels, {data} has {images.n_bins}")
    with using_threads(threads, FLOW_THREADS, read_env=False):
        typer.echo(_bpd_line(model, evaluate_bpd(model, images.test, seed=seed)))


@flows_app.command(cls=Command)
@user_errors
def sample(
    checkpoint: Ckpt,
    n: Annotated[int, typer.Option(min=1)] = 64,
    temperature: Annotated[float, typer.Option(min=0.0, max=10.0)] = 0.7,
    seed: Annotated[int, seed_option("Random seed.")] = 0,
    scale: Annotated[int, typer.Option(min=1, help="PNG pixels per image pixel.")] = 4,
    out: Annotated[Path, typer.Option(help="PNG file to write.")] = Path("grid.png"),
) -> None:
    """Draw N samples at a temperature and save them as a PNG grid."""
    from sentflow.files.io import check_output
    from sentflow.flows import seed_everything
    from sentflow.flows.grid import check_grid, save_grid

    check_output(out, [checkpoint])
    model = _load(checkpoint)
    check_grid(n, model.data_shape, scale)
    seed_everything(seed)
    save_grid(out, model.sample(n, temperature), scale)
    typer.echo(f"wrote {out}")
