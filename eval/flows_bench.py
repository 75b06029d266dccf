"""Benchmark NICE, RealNVP and Glow on digits and on MNIST (t10k split) under one CPU time budget per model.

Run: python eval/flows_bench.py [--minutes 3] [--mnist DIR]
Writes eval/results/flows_bench.md and eval/results/samples_{model}_{data}.png.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from sentflow.flows import TrainConfig, Trainer, TrainingDiverged, build_model, evaluate_bpd, load_data, seed_everything
from sentflow.flows.data import ImageData
from sentflow.flows.grid import save_grid
from sentflow.io import write_atomic

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "eval" / "results"
RAW = RESULTS / "flows_bench.json"
MNIST_DIR = ROOT.parent / "shared" / "data" / "mnist"
PUBLISHED_MNIST = {"nice": "4.36", "realnvp": "1.06", "glow": "1.05"}
CONFIGS = {  # label -> (model, config). NICE as in the paper (4 couplings, 5 x 1000 MLPs, logistic prior);
    # the conv flows are kept CPU-sized; glow+logit is an ablation (Glow with RealNVP's logit pre-processing)
    "nice": ("nice", {"hidden": 1000, "depth": 5, "couplings": 4, "prior": "logistic"}),
    "realnvp": ("realnvp", {"hidden": 64, "scales": 2}),
    "glow": ("glow", {"levels": 2, "steps": 8, "hidden": 64}),
    "glow+logit": ("glow", {"levels": 2, "steps": 8, "hidden": 64, "logit": True}),
}


@dataclass
class Row:
    model: str
    data: str
    params: int
    steps: int
    epochs: int
    minutes: float
    test_bpd: float
    train_bpd: float
    train_per_s: float
    sample_per_s: float
    note: str = ""


def sampling_rate(model, n: int = 64, repeats: int = 3) -> float:
    model.sample(8, 0.7)  # warm-up
    start = time.perf_counter()
    for _ in range(repeats):
        model.sample(n, 0.7)
    return n * repeats / (time.perf_counter() - start)


def run(name: str, data: ImageData, minutes: float, args: argparse.Namespace) -> Row:
    seed_everything(args.seed)
    model_name, model_config = CONFIGS[name]
    model = build_model(model_name, data_shape=data.shape, n_bins=data.n_bins, **model_config)
    config = TrainConfig(
        epochs=10_000,
        batch_size=64,
        lr=1e-3,
        warmup_steps=200,
        seed=args.seed,
        max_minutes=minutes,
        progress=args.progress,
        threads=args.threads,
    )
    trainer = Trainer(model, config)
    note = ""
    try:
        trainer.fit(data.train)
    except TrainingDiverged:  # raised before the bad update: the model in memory is the last good one
        note = f" (diverged at step {trainer.state.step})"
    state = trainer.state
    bpd = evaluate_bpd(trainer.model, data.test, seed=args.seed)
    seed_everything(args.seed)
    save_grid(
        RESULTS / f"samples_{name.replace('+', '_')}_{data.name.split('-')[0]}.png",
        trainer.model.sample(64, 0.7),
        scale=4 if data.shape[1] <= 8 else 1,
    )
    row = Row(
        name,
        data.name,
        sum(p.numel() for p in model.parameters()),
        state.step,
        state.epoch,
        state.seconds / 60,
        bpd,
        state.history[-1]["train_bpd"],
        state.examples / max(state.seconds, 1e-9),
        sampling_rate(trainer.model),
        note,
    )
    print(row, flush=True)
    return row


def table(rows: list[Row], published: bool) -> list[str]:
    head = "| model | params | steps | epochs | train min | train bits/dim (last epoch) | test bits/dim |"
    head += " published (full MNIST) |" if published else ""
    head += " train img/s | sample img/s |"
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        line = f"| {r.model} | {r.params:,} | {r.steps} | {r.epochs} | {r.minutes:.1f} | {r.train_bpd:.3f} |"
        line += f" {r.test_bpd:.3f}{r.note} |"
        line += f" {PUBLISHED_MNIST.get(r.model, '-')} |" if published else ""
        lines.append(line + f" {r.train_per_s:.0f} | {r.sample_per_s:.0f} |")
    return lines


def order_note(rows: list[Row]) -> str:
    bpd = {r.model: r.test_bpd for r in rows if r.model in PUBLISHED_MNIST}
    holds = bpd["glow"] <= bpd["realnvp"] < bpd["nice"]
    ranking = " < ".join(sorted(bpd, key=bpd.get))
    return f"Measured order (best first): {ranking}; literature order Glow <= RealNVP < NICE " + (
        "reproduced." if holds else "NOT reproduced (see notes)."
    )


def report(digits: list[Row], mnist: list[Row], args: argparse.Namespace) -> str:
    threads = args.threads or os.cpu_count()
    lines = [
        "# Image flows benchmark (`python eval/flows_bench.py`)",
        "",
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, {threads} torch "
        f"threads, torch {torch.__version__}, {'GPU' if torch.cuda.is_available() else 'no GPU'}. "
        f"Budget: {args.minutes} min of wall-clock training per model and data set (same for all), Adam "
        "lr 1e-3 with 200 warm-up steps, batch 64, gradient clipping at norm 50, seed "
        f"{args.seed}. Test bits/dim uses one uniform-dequantization sample per image and "
        "bpd = -(log p(y) - D log n_bins) / (D ln 2), with every pre-processing log-det (logit) included.",
        "",
        "Configs: " + "; ".join(f"{k}: {m} {c}" for k, (m, c) in CONFIGS.items()) + ".",
        "",
        "## Digits (scikit-learn 8x8, 17 levels -> n_bins = 17; 1,437 train / 360 test, fixed seeded split)",
        "",
        *table(digits, published=False),
        "",
        order_note(digits),
        "",
    ]
    if mnist:
        lines += [
            "## MNIST, t10k only (8,000 train / 2,000 test, fixed seeded split; n_bins = 256)",
            "",
            *table(mnist, published=True),
            "",
            order_note(mnist),
            "",
            "Protocol difference: the published numbers are test bits/dim on the full MNIST test set after "
            "training on 60,000 images for hours to days on GPUs (RealNVP and Glow with far larger ResNets "
            "and many more steps; Glow's 1.05 uses its full model). Here the models see 8,000 images for "
            f"{args.minutes} CPU minutes, so the numbers are far from converged and only the relative order "
            "is meaningful.",
            "",
        ]
    lines += [
        "Samples (temperature 0.7): "
        + ", ".join(f"`samples_{r.model.replace('+', '_')}_{r.data.split('-')[0]}.png`" for r in digits + mnist)
        + ".",
        "Throughput: training images/s averaged over the whole budget (including the data-dependent "
        "initialisation); sampling images/s for batches of 64 after one warm-up call.",
        "",
    ]
    return "\n".join(lines)


def measure(args: argparse.Namespace) -> tuple[list[Row], list[Row]]:
    digits_data = load_data("digits")
    digits = [run(name, digits_data, args.minutes, args) for name in CONFIGS]
    if not args.mnist.is_dir():
        print(f"no MNIST directory at {args.mnist}; skipping MNIST")
        return digits, []
    mnist_data = load_data(f"mnist:{args.mnist}")
    return digits, [run(name, mnist_data, args.minutes, args) for name in CONFIGS]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=3.0, help="training budget per model and data set")
    parser.add_argument("--mnist", type=Path, default=MNIST_DIR, help="directory with MNIST IDX files")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (0: all cores)")
    parser.add_argument("--progress", action="store_true", help="show tqdm bars")
    parser.add_argument("--report-only", action="store_true", help=f"rewrite the report from {RAW.name}")
    args = parser.parse_args()
    if args.report_only:
        raw = json.loads(RAW.read_text())
        args = argparse.Namespace(**raw["args"])
        digits, mnist = ([Row(**r) for r in raw[key]] for key in ("digits", "mnist"))
    else:
        digits, mnist = measure(args)
        raw = {"args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
               "digits": [asdict(r) for r in digits], "mnist": [asdict(r) for r in mnist]}
        write_atomic(RAW, lambda tmp: tmp.write_text(json.dumps(raw, indent=1)))
    text = report(digits, mnist, args)
    write_atomic(RESULTS / "flows_bench.md", lambda tmp: tmp.write_text(text))
    print(text)


if __name__ == "__main__":
    main()
