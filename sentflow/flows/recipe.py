"""The image-flow training recipe that `sentflow flows train` and the eval benchmarks share: fit a model on an
`ImageData`'s training images with the one training loop, then score its test bits/dim."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from torch import nn

from sentflow.flows.data import ImageData
from sentflow.flows.train import TrainConfig, Trainer, TrainingDiverged, TrainState, evaluate_bpd


@dataclass(frozen=True)
class TrainedFlow:
    """What a training run ended with: the model, the loop's counters and the test bits/dim."""

    model: nn.Module
    state: TrainState
    test_bpd: float | None  # None when the caller scores the model itself
    diverged: bool = False  # the run hit a non-finite step; `model` is the last good one
    budget_ended: bool = False  # the time budget (`max_minutes`) stopped training before its last epoch


def train_image_flow(
    model: nn.Module,
    data: ImageData,
    config: TrainConfig,
    run_dir: str | Path | None = None,
    resume_from: str | Path | None = None,
    keep_last_good: bool = False,
    evaluate: bool = True,
) -> TrainedFlow:
    """Train `model` on `data.train` and evaluate it on `data.test` (bits/dim, seeded by `config.seed`).

    Args:
        model: An image flow from `build_model` (or a checkpoint's model when resuming).
        data: The images, already scaled to k / n_bins.
        config: The training settings.
        run_dir: Where the loop writes its checkpoint after every epoch (None: no checkpoint).
        resume_from: A checkpoint to continue from (optimizer, counters and random state included).
        keep_last_good: On divergence, return the last good model (marked `diverged`) instead of raising.
        evaluate: Score test bits/dim (False when the caller measures the model its own way).
    """
    trainer = Trainer(model, config, run_dir)
    if resume_from is not None:
        trainer.resume(resume_from)
    diverged = False
    try:
        trainer.fit(data.train)
    except TrainingDiverged:  # raised before the bad update: the model in memory is the last good one
        if not keep_last_good:
            raise
        diverged = True
    bpd = evaluate_bpd(trainer.model, data.test, seed=config.seed) if evaluate else None
    return TrainedFlow(trainer.model, trainer.state, bpd, diverged, trainer.budget_ended)
