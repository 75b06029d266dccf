"""Benchmark i-ResNet and f-VAE against a plain VAE (same encoder) and Glow (similar parameter count) on digits,
each trained with the shared Trainer under the same wall-clock CPU budget.

Run: python eval/iresnet_fvae_bench.py [--minutes 2.5] [--threads 1] [--smoke]
Writes eval/results/flows_iresnet_fvae.md and eval/results/samples_{iresnet,fvae}_digits.png.
--smoke: 1 s per model, 8 test images, report and sample grids in a temporary folder; prints, writes nothing.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path

import torch

from sentflow.files.io import write_atomic
from sentflow.flows import (
    FVAE,
    FlowModel,
    IResNet,
    TrainConfig,
    build_model,
    evaluate_bpd,
    load_data,
    seed_everything,
    train_image_flow,
)
from sentflow.flows.data import ImageData
from sentflow.flows.grid import save_grid

RESULTS = Path(__file__).resolve().parents[1] / "eval" / "results"
ENCODER = {"latent": 16, "hidden": 128, "depth": 2}
CONFIGS = {  # label -> (model, config); glow is sized to the f-VAE's parameter count, vae is f-VAE minus couplings
    "iresnet": ("iresnet", {"levels": 2, "blocks": 4, "hidden": 64, "terms": 5, "probes": 1}),
    "fvae": ("fvae", {**ENCODER, "couplings": 4}),
    "vae": ("fvae", {**ENCODER, "couplings": 0}),
    "glow": ("glow", {"levels": 2, "steps": 8, "hidden": 64}),
}
SAMPLE_GRIDS = ("iresnet", "fvae")
IW_K = (64, 512)


@dataclass
class Result:
    label: str
    params: int
    steps: int
    epochs: int
    minutes: float
    train_bpd: float
    train_objective: str
    test: dict[str, float] = field(default_factory=dict)
    sample_per_s: float = 0.0
    note: str = ""


def test_metrics(model: FlowModel, data: torch.Tensor, seed: int) -> dict[str, float]:
    """Every test figure the model supports, keyed by the estimator that produced it."""
    model.eval()
    if isinstance(model, FVAE):
        fvae = model
        bounds: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {"ELBO (1 sample)": fvae.elbo}
        bounds.update({f"IW bound K={k}": partial(fvae.iw_bound, k=k) for k in IW_K})
        return {
            name: evaluate_bpd(model, data, 120, seed, log_prob=lambda x, b=bound: b(fvae.dequantize(x)[0]))
            for name, bound in bounds.items()
        }
    if not isinstance(model, IResNet):
        return {"exact": evaluate_bpd(model, data, seed=seed)}
    return {
        model.estimator: evaluate_bpd(model, data, seed=seed),
        f"{model.train_estimator} (train estimator)": evaluate_bpd(
            model, data, seed=seed, estimator=model.train_estimator
        ),
    }


def sampling_rate(model: FlowModel, n: int = 64) -> float:
    start = time.perf_counter()
    model.sample(n, 0.7)
    return n / (time.perf_counter() - start)


def inverse_note(model: FlowModel) -> str:
    """Worst fixed-point residual / iterations of the last i-ResNet sampling call."""
    if not isinstance(model, IResNet):
        return ""
    reports = [b.last_inverse for b in model.blocks if b.last_inverse is not None]
    return (
        f"sampling: fixed-point inverse max residual {max(r.residual for r in reports):.1e}, "
        f"max {max(r.iterations for r in reports)} iterations"
    )


def run(label: str, data: ImageData, args: argparse.Namespace) -> Result:
    seed_everything(args.seed)
    name, config = CONFIGS[label]
    model = build_model(name, data_shape=data.shape, n_bins=data.n_bins, **config)
    objective = str(getattr(model, "estimator", "exact log-likelihood"))
    settings = TrainConfig(
        epochs=10_000,
        batch_size=64,
        lr=1e-3,
        warmup_steps=200,
        seed=args.seed,
        max_minutes=args.minutes,
        progress=False,
        threads=args.threads,
    )
    trained = train_image_flow(model, data, settings, keep_last_good=True, evaluate=False)
    state = trained.state
    note = f"diverged at step {state.step}" if trained.diverged else ""
    result = Result(
        label,
        sum(p.numel() for p in model.parameters()),
        state.step,
        state.epoch,
        state.seconds / 60,
        state.history[-1]["train_bpd"] if state.history else math.nan,
        objective,
        test_metrics(model, data.test, args.seed),
        note=note,
    )
    seed_everything(args.seed)
    result.sample_per_s = sampling_rate(model)
    if label in SAMPLE_GRIDS:
        seed_everything(args.seed)
        save_grid(args.samples / f"samples_{label}_{data.name.split('-')[0]}.png", model.sample(64, 0.7), scale=4)
    result.note = "; ".join(filter(None, [note, inverse_note(model)]))
    print(result, flush=True)
    return result


def table(results: list[Result]) -> list[str]:
    lines = [
        "| model | params | steps | epochs | train min | train objective | train bits/dim (last epoch) |"
        " test estimator | test bits/dim | sample img/s |",
        "|" + "---|" * 10,
    ]
    for r in results:
        for i, (estimator, bpd) in enumerate(r.test.items()):
            head = (
                (
                    f"| {r.label} | {r.params:,} | {r.steps} | {r.epochs} | {r.minutes:.1f} | {r.train_objective} | "
                    f"{r.train_bpd:.3f} |"
                )
                if i == 0
                else "| | | | | | | |"
            )
            lines.append(f"{head} {estimator} | {bpd:.3f} | " + (f"{r.sample_per_s:.0f} |" if i == 0 else "|"))
    return lines


def report(results: list[Result], args: argparse.Namespace) -> str:
    notes = [f"- {r.label}: {r.note}" for r in results if r.note]
    return "\n".join(
        [
            "# i-ResNet and f-VAE benchmark (`python eval/iresnet_fvae_bench.py`)",
            "",
            f"Machine: {platform.machine()}, {os.cpu_count()} CPU cores, {args.threads} torch threads, "
            f"torch {torch.__version__}. Data: scikit-learn digits 8x8, 17 levels, 1,437 train / 360 test. Budget: "
            f"{args.minutes} min wall-clock training per model with the shared Trainer (Adam lr 1e-3, 200 warm-up "
            f"steps, batch 64, clip 50, seed {args.seed}). Test bits/dim: one uniform-dequantization sample per image "
            "(fixed seed), bpd = -(log p(y) - D log 17) / (D ln 2); ELBO and IW figures are upper bounds on the true "
            "bits/dim, the i-ResNet series figure is a (biased, truncated) estimate, exact figures are exact.",
            "",
            "Configs: " + "; ".join(f"{k}: {m} {c}" for k, (m, c) in CONFIGS.items()) + ".",
            "",
            *table(results),
            "",
            *notes,
            "",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=2.5, help="training budget per model")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--models", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--out", type=Path, default=RESULTS / "flows_iresnet_fvae.md")
    parser.add_argument("--smoke", action="store_true", help="1 s per model, temporary outputs; writes nothing")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        args.samples = Path(tmp) if args.smoke else RESULTS
        if args.smoke:
            args.minutes, args.out = 1 / 60, Path(tmp, args.out.name)
        data = load_data("digits")
        if args.smoke:  # the test figures (importance-weighted bounds, i-ResNet estimators) on 8 test images
            data = replace(data, test=data.test[:8], test_labels=data.test_labels[:8])
        results = []
        for label in args.models:
            results.append(run(label, data, args))
            write_atomic(args.out, lambda tmp: Path(tmp).write_text(report(results, args)))
        print(report(results, args))


if __name__ == "__main__":
    main()
