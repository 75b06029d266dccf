"""BertFlow fit on the 17,256 STS-B cls vectors (all-MiniLM-L6-v2): the machine as shared vs with 2 extra busy
processes, 1 thread (the new default) vs all cores (the old policy).  Throughput from budgeted fits, interleaved,
median of repeats; projected fit time = steps of one epoch / steps per second.
Run: python eval/flow_threads.py CLS.npy [--repeats 2] [--minutes 0.75] [--smoke]
(--smoke: CLS.npy optional, else 512 seeded random 64-d vectors; one repeat of 1-second fits; prints only)."""

from __future__ import annotations

import argparse
import math
import statistics
import subprocess
import sys

import numpy as np

from sentflow.calibration.bertflow import BertFlow
from sentflow.runtime import available_cores


def steps_per_second(X: np.ndarray, threads: int, minutes: float) -> float:
    flow = BertFlow(progress=False, threads=threads, max_minutes=minutes)
    flow.fit(X)
    record = flow.history_[-1]
    return record["step"] / record["seconds"] if record["seconds"] else math.nan


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("cls", nargs="?", help=".npy of the cls vectors (optional with --smoke)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--minutes", type=float, default=0.75)
    parser.add_argument("--smoke", action="store_true", help="one repeat of 1-second fits (random data without CLS)")
    args = parser.parse_args()
    if args.cls is None and not args.smoke:
        parser.error("CLS.npy is required (optional only with --smoke)")
    if args.smoke:
        args.repeats, args.minutes = 1, 1 / 60
    if args.cls is None:
        rng = np.random.default_rng(0)
        X = (rng.standard_normal((512, 64)) @ rng.standard_normal((64, 64))).astype(np.float32)
    else:
        X = np.load(args.cls)
    epoch_steps = math.ceil(round(0.9 * len(X)) / 32)
    rates: dict[str, list[float]] = {}
    for _ in range(args.repeats):
        for busy_count in (0, 2):
            busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(busy_count)]
            try:
                for threads in (1, available_cores()):
                    key = f"{'loaded (+2 busy)' if busy_count else 'as shared'}, threads={threads}"
                    rates.setdefault(key, []).append(steps_per_second(X, threads, args.minutes))
                    print(key, f"{rates[key][-1]:.2f} steps/s", flush=True)
            finally:
                for p in busy:
                    p.kill()
                    p.wait()
    print("| machine | threads | steps/s (median) | projected fit s (one epoch) |\n|---|---|---|---|")
    for key, values in rates.items():
        rate = statistics.median(values)
        print(f"| {key.split(', ')[0]} | {key.split('=')[1]} | {rate:.2f} | {epoch_steps / rate:.0f} |")


if __name__ == "__main__":
    main()
