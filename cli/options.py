"""Option types and the encoder factory shared by every command."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from sentflow.encoding.models import DEFAULT_MAX_LENGTH
from sentflow.files.schemas import MAX_BATCH, MAX_DIM, MAX_LENGTH, MAX_SEED, MIN_LENGTH

Model = Annotated[
    str, typer.Option(help="all-MiniLM-L6-v2 (embedded), glove-6b-50d, a local HF directory, or a hub id.")
]
Pooling = Annotated[str, typer.Option(help="cls | pooler | last-avg | first-last-avg | last2avg | layers:I,J,...")]
BatchSize = Annotated[int, typer.Option(help="Sentences per forward pass.", min=1, max=MAX_BATCH)]
MaxLength = Annotated[
    int, typer.Option(help="Tokens per sentence at most (longer ones are truncated).", min=MIN_LENGTH, max=MAX_LENGTH)
]
Backend = Annotated[
    str | None,
    typer.Option(
        help="torch | onnx | onnx-int8 (need sentflow\\[onnx]) | openvino | openvino-bf16 | openvino-int8 "
        "(need sentflow\\[openvino]) | auto (the fastest accuracy-keeping one installed for this CPU) "
        "(default: torch; numpy for glove-6b-50d, its only backend).",
        show_default=False,
    ),
]
Dim = Annotated[int | None, typer.Option(help="Keep the first K whitened dimensions.", min=1, max=MAX_DIM)]
Power = Annotated[
    float | None, typer.Option(help="Whitening power: 0.5 full, 0 centring only (default: 0.5, or 0 for pca).")
]
Levels = Annotated[int | None, typer.Option(help="Flow: levels (multi-scale); default 3 as in BERT-flow.")]
Depth = Annotated[int | None, typer.Option(help="Flow: steps per level; default 3.")]
Hidden = Annotated[int | None, typer.Option(help="Flow: coupling network width; default 32.")]
Epochs = Annotated[int | None, typer.Option(help="Flow: max epochs (early stopping may end sooner).")]
Lr = Annotated[float | None, typer.Option(help="Flow: learning rate; default 1e-3.")]


def seed_option(help: str) -> typer.models.OptionInfo:
    """A seed option, bounded to what the generators accept."""
    return typer.Option(help=help, min=0, max=MAX_SEED)


Seed = Annotated[int, seed_option("Random seed (flow training).")]
Threads = Annotated[
    int | None,
    typer.Option(
        help="CPU threads for encoding and linear algebra (default: $SENTFLOW_THREADS, else every core); "
        "flow fits always use one, their fastest."
    ),
]
DataDir = Annotated[Path | None, typer.Option(help="Directory of a task not shipped with sentflow.")]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON on stdout and nothing else.")]


def make_encoder(
    model: str,
    pooling: str,
    batch_size: int,
    max_length: int = DEFAULT_MAX_LENGTH,
    backend: str | None = None,
    cache: bool = True,
):
    """The encoder the options describe (GloVe or a transformer; `backend` None: the model's default)."""
    from sentflow.encoding.factory import make_encoder as make

    return make(model, pooling, batch_size=batch_size, max_length=max_length, backend=backend, cache=cache)
