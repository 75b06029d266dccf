"""Start-up time of the command line: `sentflow --help` and `sentflow eval --help` against what the eager imports
cost (the library's encoder, calibrations and flows, as every call loaded them before), measured in the same run.

Each command runs in a fresh interpreter, the commands interleaved, `--repeats` rounds; the table gives medians
and ratios to the eager import. Goal (issue 22): `sentflow --help` under 1 s.

Run: python eval/bench_startup.py [--repeats 7] [--smoke]   (--smoke: one round, writes nothing)
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import table, write_report  # noqa: E402

PYTHON = sys.executable
EAGER = (
    "import sentflow.encoding.encoder, sentflow.calibration.whitening, sentflow.calibration.bertflow, "
    "sentflow.evaluation.sts, sentflow.flows.models"
)
COMMANDS = {  # label -> argv
    "python -c pass (interpreter alone)": [PYTHON, "-c", "pass"],
    "eager imports (before: every call)": [PYTHON, "-c", EAGER],
    "sentflow --help": [PYTHON, "-m", "sentflow.cli", "--help"],
    "sentflow eval --help": [PYTHON, "-m", "sentflow.cli", "eval", "--help"],
    "sentflow flows train --help": [PYTHON, "-m", "sentflow.cli", "flows", "train", "--help"],
}
BASELINE = "eager imports (before: every call)"


def seconds(argv: list[str]) -> float:
    """Wall time of one run of `argv` in a fresh process (output discarded; a failure stops the benchmark)."""
    start = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, env={**os.environ, "COLUMNS": "80"})
    return time.perf_counter() - start


def measure(repeats: int, warm_up: bool = True) -> dict[str, float]:
    """Median seconds of each command over `repeats` interleaved rounds (after one warm-up round, unless not
    `warm_up`: the smoke run checks that every command runs, not its time)."""
    times: dict[str, list[float]] = {label: [] for label in COMMANDS}
    for round_ in range(repeats + warm_up):
        for label, argv in COMMANDS.items():
            elapsed = seconds(argv)
            if round_ or not warm_up:  # a warm-up round only warms the file cache
                times[label].append(elapsed)
    return {label: statistics.median(values) for label, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--smoke", action="store_true", help="one round; writes nothing")
    args = parser.parse_args()
    medians = measure(1, warm_up=False) if args.smoke else measure(args.repeats)
    load = os.getloadavg()[0]
    rows = [[label, f"{s:.2f}", f"{s / medians[BASELINE]:.2f}"] for label, s in medians.items()]
    body = table(["command", "median s", "ratio to eager imports"], rows)
    verdict = "met" if medians["sentflow --help"] < 1.0 else "missed"
    notes = (
        f"Command: `python eval/bench_startup.py --repeats {args.repeats}`; load average {load:.1f} at the end "
        f"(a shared 2-core machine: read the ratios). Goal `sentflow --help` < 1 s: **{verdict}**. The public "
        "names of `sentflow` are imported on first use (PEP 562) and each command imports torch, transformers "
        "and scikit-learn only when it runs."
    )
    if args.smoke:
        print(body)
        return
    write_report("bench_startup", "Command-line start-up: lazy imports against the eager ones", [notes, body])


if __name__ == "__main__":
    main()
