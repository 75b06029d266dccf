"""Benchmark NICE, RealNVP and Glow on digits and on MNIST (t10k split) under one CPU time budget per model.

Run: python eval/flows_bench.py [--minutes 3] [--mnist DIR] [--smoke]
Writes eval/results/flows_bench.md and eval/results/samples_{model}_{data}.png.
--smoke: digits only, 1 second per model, samples to a temporary folder; prints the report, writes nothing.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from sentflow.data_root import data_path
from sentflow.files.io import write_atomic
from sentflow.flows import TrainConfig, build_model, load_data, seed_everything, train_image_flow
from sentflow.flows.data import ImageData
from sentflow.flows.grid import save_grid
from sentflow.flows.train import DEFAULT_THREADS
from sentflow.runtime import resolve_threads

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "eval" / "results"
RAW = RESULTS / "flows_bench.json"
MNIST_DIR = data_path("mnist")
PUBLISHED_MNIST = {"nice": "4.36", "realnvp": "1.06", "glow": "1.05"}
# label -> (model, config). NICE as in the paper (4 couplings, 5 x 1000 MLPs, logistic prior);
CONFIGS: dict[str, tuple[str, dict[str, Any]]] = {
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
    trained = train_image_flow(model, data, config, keep_last_good=True)
    state, bpd = trained.state, trained.test_bpd
    note = f" (diverged at step {state.step})" if trained.diverged else ""
    seed_everything(args.seed)
    save_grid(
        args.samples / f"samples_{name.replace('+', '_')}_{data.name.split('-')[0]}.png",
        trained.model.sample(64, 0.7),
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
        sampling_rate(trained.model),
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
    ranking = " < ".join(sorted(bpd, key=lambda model: bpd[model]))
    return f"Measured order (best first): {ranking}; literature order Glow <= RealNVP < NICE " + (
        "reproduced." if holds else "NOT reproduced (see notes)."
    )


def _by_model(rows: list[Row]) -> dict[str, Row]:
    return {r.model: r for r in rows}


def notes(digits: list[Row], mnist: list[Row], args: argparse.Namespace) -> list[str]:
    """Reading of the numbers, written from the measured values (so a re-run cannot contradict it)."""
    out = []
    for label, rows, n_bins in (("digits", digits, 17), ("MNIST", mnist, 256)):
        r = _by_model(rows)
        if not r:
            continue
        uniform = math.log2(n_bins)
        nice = r["nice"]
        out.append(
            f"- {label}, NICE: {nice.test_bpd:.2f} bits/dim after {nice.steps} steps "
            f"({'above' if nice.test_bpd > uniform else 'below'} the {uniform:.2f} of a uniform distribution "
            f"over {n_bins} levels). It is the slowest per step ({nice.params / 1e6:.1f} M MLP parameters) and "
            "its couplings are volume preserving: only the diagonal scaling changes the volume. That scaling "
            "starts at prior std / data std; from 1, Adam's ~lr-per-step moves left NICE worse than uniform for "
            "the whole budget (4.85 bits/dim on digits, 8.69 on MNIST in the previous run)."
            + (" NICE last is the literature's order." if nice.test_bpd > max(x.test_bpd for x in rows) - 1e-9 else "")
        )
        glow, realnvp, logit = r["glow"], r["realnvp"], r.get("glow+logit")
        line = (
            f"- {label}, Glow vs RealNVP: {glow.test_bpd:.3f} vs {realnvp.test_bpd:.3f} "
            f"(train {glow.train_bpd:.3f} vs {realnvp.train_bpd:.3f}). "
        )
        if glow.test_bpd <= realnvp.test_bpd:
            line += "Glow matches or beats RealNVP, as in the literature."
        else:
            glow_gap, realnvp_gap = glow.test_bpd - glow.train_bpd, realnvp.test_bpd - realnvp.train_bpd
            if glow.train_bpd <= realnvp.train_bpd and glow_gap > max(realnvp_gap, 0.0) + 0.1:
                line += (
                    "Glow fits the training images as well or better but generalises worse (train-to-test "
                    f"gap {glow_gap:.2f} vs {realnvp_gap:.2f}"
                    f" after {glow.epochs} vs {realnvp.epochs} epochs): it overfits this small set. "
                )
            line += (
                "Glow is behind on test. Differences beyond the architecture: RealNVP works on logit "
                "pre-processed data and its first couplings act at full resolution, while this Glow "
                "(like the paper) models x in [0, 1) directly and squeezes first."
            )
            if logit is not None:
                gap = glow.test_bpd - realnvp.test_bpd
                closed = (glow.test_bpd - logit.test_bpd) / gap if gap > 0 else 0.0
                line += f" The glow+logit ablation (same budget) reaches {logit.test_bpd:.3f}: " + (
                    "with the same logit pre-processing Glow beats RealNVP, the literature's order."
                    if closed > 1
                    else f"logit pre-processing closes {100 * closed:.0f}% of the gap."
                    if closed > 0
                    else "logit pre-processing does not explain the gap."
                )
            line += (
                f" Both are far from converged after {args.minutes} minutes; the published "
                "Glow advantage comes from much larger models trained for much longer."
            )
        out.append(line)
    out.append(
        f"- Threads: run with --threads {resolve_threads(args.threads, DEFAULT_THREADS)}. The 2 cores of this "
        "machine were shared with other jobs while this was developed, and 2-thread OpenMP steps then stalled for "
        "seconds (single steps of 4 s instead of 0.03 s); one thread gives steady, comparable timings, and is the "
        "trainer's default."
    )
    return out


def report(digits: list[Row], mnist: list[Row], args: argparse.Namespace) -> str:
    threads = resolve_threads(args.threads, DEFAULT_THREADS)
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
            "Protocol difference: the published figures (NICE: 1980.5 nats from the NICE paper, converted "
            "with the same bits/dim convention; RealNVP and Glow on MNIST as tabulated by FFJORD, Grathwohl "
            "et al. 2018) are test bits/dim on the standard 10,000-image test set after training on all "
            "60,000 training images for many GPU hours, with far wider networks (RealNVP ResNets with batch "
            "norm, Glow with hundreds of channels and tens of steps per level). Here the models see 8,000 "
            f"t10k images for {args.minutes} CPU minutes (a few epochs) and are tested on the other 2,000, "
            "so they are far from converged: compare the order, not the values.",
            "",
        ]
    lines += ["## Notes", "", *notes(digits, mnist, args), ""]
    lines += [
        "Samples (temperature 0.7): "
        + ", ".join(f"`samples_{r.model.replace('+', '_')}_{r.data.split('-')[0]}.png`" for r in digits + mnist)
        + ".",
        "Throughput: training images/s averaged over the whole budget (including the data-dependent "
        "initialisation); sampling images/s for batches of 64 after one warm-up call.",
        "",
    ]
    return "\n".join(lines)


def measure(args: argparse.Namespace, names: list[str]) -> tuple[list[Row], list[Row]]:
    digits_data = load_data("digits")
    digits = [run(name, digits_data, args.minutes, args) for name in names]
    if args.smoke:
        return digits, []
    if not args.mnist.is_dir():
        print(f"no MNIST directory at {args.mnist}; skipping MNIST")
        return digits, []
    mnist_data = load_data(f"mnist:{args.mnist}")
    return digits, [run(name, mnist_data, args.minutes, args) for name in names]


def merged(old: list[dict], new: list[Row]) -> list[Row]:
    """The previous run's rows with the re-measured models replaced, in CONFIGS order."""
    rows = {r["model"]: Row(**r) for r in old} | {r.model: r for r in new}
    return [rows[name] for name in CONFIGS if name in rows]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=3.0, help="training budget per model and data set")
    parser.add_argument("--mnist", type=Path, default=MNIST_DIR, help="directory with MNIST IDX files")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: the library's)")
    parser.add_argument("--progress", action="store_true", help="show tqdm bars")
    parser.add_argument("--models", default="", help=f"comma-separated subset of {', '.join(CONFIGS)} to re-run")
    parser.add_argument("--report-only", action="store_true", help=f"rewrite the report from {RAW.name}")
    parser.add_argument("--smoke", action="store_true", help="digits only, 1 s per model; prints, writes nothing")
    args = parser.parse_args()
    args.samples = RESULTS
    if args.smoke:
        with tempfile.TemporaryDirectory() as tmp:
            args.minutes, args.samples = 1 / 60, Path(tmp)
            digits, _ = measure(args, list(CONFIGS))
            print(report(digits, [], args))
        return
    if args.report_only:
        raw = json.loads(RAW.read_text())
        args = argparse.Namespace(**raw["args"])
        digits, mnist = ([Row(**r) for r in raw[key]] for key in ("digits", "mnist"))
    else:
        names = args.models.split(",") if args.models else list(CONFIGS)
        digits, mnist = measure(args, names)
        if args.models:  # re-measure some models, keep the others from the last full run (same args)
            previous = json.loads(RAW.read_text())
            digits, mnist = merged(previous["digits"], digits), merged(previous["mnist"], mnist)
        raw = {
            "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
            "digits": [asdict(r) for r in digits],
            "mnist": [asdict(r) for r in mnist],
        }
        write_atomic(RAW, lambda tmp: tmp.write_text(json.dumps(raw, indent=1)))
    text = report(digits, mnist, args)
    write_atomic(RESULTS / "flows_bench.md", lambda tmp: tmp.write_text(text))
    print(text)


if __name__ == "__main__":
    main()
