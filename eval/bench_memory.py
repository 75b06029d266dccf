"""Peak resident memory of `sentflow fit`, `transform` and `encode` against the size of their input.

Each command runs in its own process; its peak RSS comes from the kernel (wait4's ru_maxrss). The baseline in the
same run is `numpy.load` of the same .npy, i.e. what any command that holds the whole input must pay.

Run: python eval/bench_memory.py [--gb 0.3 1 3] [--lines 2000 8000 32000] [--smoke]
(--smoke: 0.005 GB and 64 lines, under a temporary folder; prints, writes nothing).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import publish, table  # noqa: E402

import sentflow  # noqa: E402
from sentflow.files.npy import npy_writer  # noqa: E402

WORK = Path(__file__).resolve().parent / ".work" / "memory"
DIM = 384


# A small launcher process: a child's peak RSS starts at its parent's RSS at fork time (Linux keeps the
# high-water mark across exec), so the measured command must not be forked from this large process.
LAUNCHER = """
import os, subprocess, sys
child = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL)
_, status, usage = os.wait4(child.pid, 0)
print(usage.ru_maxrss)
sys.exit(os.waitstatus_to_exitcode(status))
"""


def peak_rss(command: list[str]) -> tuple[float, float]:
    """(peak RSS in MiB, seconds) of a command run to completion; fails loudly if it fails."""
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", LAUNCHER, *command], capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed: {done.stderr[-500:]}")
    return int(done.stdout.split()[-1]) / 1024, seconds


def make_embeddings(path: Path, gigabytes: float, seed: int = 0) -> int:
    """A correlated float32 (n, 384) .npy of about `gigabytes`, written chunk by chunk."""
    rows = int(gigabytes * 1e9 / (4 * DIM))
    if path.is_file() and np.load(path, mmap_mode="r").shape == (rows, DIM):
        return rows
    rng = np.random.default_rng(seed)
    mixing = rng.standard_normal((DIM, DIM)).astype(np.float32) / np.sqrt(DIM)
    with npy_writer(path, rows, DIM) as writer:
        for start in range(0, rows, 100_000):
            n = min(100_000, rows - start)
            writer.write(rng.standard_normal((n, DIM), dtype=np.float32) @ mixing + 1.0)
    return rows


def make_lines(path: Path, count: int) -> None:
    sentences = sentflow.load_sts("sts-b", "train").sentences
    path.write_text("\n".join(sentences[i % len(sentences)] for i in range(count)) + "\n", encoding="utf-8")


def sentflow_cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "sentflow.cli", *args]


def npy_rows(sizes: list[float], work: Path = WORK) -> list[list[str]]:
    rows = []
    for gigabytes in sizes:
        data, calib, out = work / f"x-{gigabytes:g}gb.npy", work / "w.safetensors", work / "out.npy"
        n = make_embeddings(data, gigabytes)
        load_mib, _ = peak_rss([sys.executable, "-c", f"import numpy; numpy.load({str(data)!r})"])
        fit_mib, fit_s = peak_rss(sentflow_cli("fit", "--data", str(data), "--out", str(calib)))
        tr_mib, tr_s = peak_rss(sentflow_cli("transform", str(data), "--calib", str(calib), "--out", str(out)))
        out.unlink()
        size = data.stat().st_size / 2**30
        rows.append(
            [f"{n:,} x {DIM}", f"{size:.2f}", f"{load_mib:,.0f}", f"{fit_mib:,.0f}", f"{fit_s:.1f}",
             f"{tr_mib:,.0f}", f"{tr_s:.1f}", f"{fit_mib / load_mib:.2f} / {tr_mib / load_mib:.2f}"]
        )  # fmt: skip
    return rows


def encode_rows(counts: list[int], work: Path = WORK) -> list[list[str]]:
    rows = []
    for count in counts:
        text, out = work / f"lines-{count}.txt", work / "emb.npy"
        make_lines(text, count)
        mib, seconds = peak_rss(sentflow_cli("encode", str(text), "--out", str(out), "--chunk-lines", "2048"))
        out.unlink()
        rows.append([f"{count:,}", f"{text.stat().st_size / 2**20:.1f}", f"{mib:,.0f}", f"{count / seconds:.0f}"])
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gb", type=float, nargs="+", default=[0.3, 1.0, 3.0])
    parser.add_argument("--lines", type=int, nargs="+", default=[2000, 8000, 32000])
    parser.add_argument("--smoke", action="store_true", help="0.005 GB and 64 lines in a temp folder; writes nothing")
    args = parser.parse_args()
    if args.smoke:
        args.gb, args.lines = [0.005], [64]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp) if args.smoke else WORK
        work.mkdir(parents=True, exist_ok=True)
        npy = npy_rows(args.gb, work)
        text = encode_rows(args.lines, work)
    publish(
        "bench_memory",
        "Peak resident memory vs input size (fit, transform, encode)",
        [
            "`sentflow fit --method whitening --data X.npy` and `sentflow transform X.npy --calib W --out Y.npy` on "
            "float32 (n, 384) inputs; baseline: `numpy.load(X.npy)` in its own process, the least a command holding "
            "the whole input pays. Peak RSS in MiB from the kernel (ru_maxrss); seconds are wall time on a shared "
            "machine (informative only).",
            table(
                [
                    "input",
                    "GiB",
                    "np.load RSS",
                    "fit RSS",
                    "fit s",
                    "transform RSS",
                    "transform s",
                    "fit / transform vs np.load",
                ],
                npy,
            ),  # fmt: skip
            "`sentflow encode LINES.txt --out E.npy --chunk-lines 2048` with the embedded all-MiniLM-L6-v2 "
            "(STS-B train sentences repeated):",
            table(["lines", "input MiB", "encode RSS MiB", "sentences/s"], text),
        ],
        args.smoke,
    )


if __name__ == "__main__":
    main()
