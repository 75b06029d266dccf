"""Encoding throughput on the 2,758 STS-B test sentences: sentflow's backends vs sentence-transformers', same run.

Compared, on one grid of batch sizes x thread counts, repetitions interleaved (each round times every
implementation once per setting; the machine's 1-minute load average is recorded per round), medians reported:
- sentence-transformers, PyTorch backend (Transformer + mean Pooling modules, the checkpoint's own setting);
- sentence-transformers, backend="onnx" and its dynamically quantised int8 model ("avx2" config), and
  backend="openvino" with INFERENCE_PRECISION_HINT=f32 (fp32) and with OpenVINO's default, which is bf16 on a CPU
  with bf16 instructions; these need optimum-onnx / optimum-intel, which pin older transformers than sentflow's,
  so they run in eval/st_worker.py under `--st-python` (a side virtualenv; their rows are left out without it);
- sentflow Encoder with backend torch / onnx / onnx-int8 / openvino / openvino-bf16 / openvino-int8 (last-avg
  pooling, no embedding cache), and two A/B rows for the choices issue 19 asked to keep only if measured:
  `openvino-bf16 1-stream` (one OpenVINO stream over all threads instead of one per thread) and
  `openvino-bf16 tokens` (Encoder(batch_tokens=16 x batch): batches by padded-token budget).
Ratios: each row against sentence-transformers' fastest backend of the same precision class (fp32, bf16, int8)
at the same batch size and threads, and against its fastest of any precision; the goals of issue 19 are checked
on the fastest settings. `max abs diff` compares unit-normalised vectors with sentflow torch's.
Run: python eval/bench_encode.py [--repeats 3] [--sentences N] [--st-python /work/venv-st-ov/bin/python]
     python eval/bench_encode.py --smoke   (64 sentences, one setting, sentflow rows only: seconds; prints only)
On a shared machine a run can be split: `--threads 1 --partial t1.json`, `--threads 2 --partial t2.json`, then
`--merge t1.json t2.json` writes the table from both.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import RESULTS, table, write_report, write_text  # noqa: E402

import sentflow  # noqa: E402
from sentflow.encoding import openvino as openvino_backend  # noqa: E402
from sentflow.encoding.cpu import has_bf16  # noqa: E402
from sentflow.encoding.models import DEFAULT_MODEL, resolve_model  # noqa: E402
from sentflow.files.io import write_atomic  # noqa: E402
from sentflow.runtime import using_threads  # noqa: E402

ST_VARIANTS = {"onnx": "fp32", "onnx-int8": "int8", "openvino": "fp32", "openvino-bf16": "bf16"}
SENTFLOW = {"torch": "fp32", "onnx": "fp32", "onnx-int8": "int8"}
SENTFLOW |= {"openvino": "fp32", "openvino-bf16": "bf16", "openvino-int8": "int8"}
AB_ROWS = {"openvino-bf16 1-stream": "bf16", "openvino-bf16 tokens": "bf16"}
PRECISION = {"st torch": "fp32"} | {f"st {v}": p for v, p in ST_VARIANTS.items()}
PRECISION |= {f"sentflow {b}": p for b, p in (SENTFLOW | AB_ROWS).items()}
# exact: within 1e-4 of torch fp32 (max abs, unit vectors); accuracy-keeping: eval/results/onnx_accuracy.md
EXACT = 1e-4
TOKENS_PER_ROW = 16  # the tokens row's budget per sentence of `batch` (STS-B test averages 14 tokens)

Runner = Callable[[list[str], int], Any]


def st_torch(batch: int, threads: int) -> Runner:
    """sentence-transformers' PyTorch backend with only Transformer + mean Pooling modules."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Pooling, Transformer

    word = Transformer(resolve_model(DEFAULT_MODEL), max_seq_length=256)
    pooling = Pooling(word.get_word_embedding_dimension(), pooling_mode="mean")
    model = SentenceTransformer(modules=[word, pooling], device="cpu")

    def run(texts: list[str], batch: int) -> np.ndarray:
        with using_threads(threads):
            return model.encode(texts, batch_size=batch, convert_to_numpy=True)

    return run


def sentflow_encoder(row: str) -> Callable[[int, int], Runner]:
    """A sentflow Encoder for a row name: a backend, or an A/B variant of openvino-bf16."""
    backend = row.split()[0]

    def make(batch: int, threads: int) -> Runner:
        encoder = sentflow.Encoder(backend=backend, threads=threads, cache=False, show_progress=False)
        streams = openvino_backend.STREAMS_PER_THREAD
        if row.endswith("1-stream"):
            openvino_backend.STREAMS_PER_THREAD = 0  # read when the compiled model is made, on the warm-up
        try:
            encoder.encode(["a warm-up sentence", "another"])  # export / conversion / compilation happen here
        finally:
            openvino_backend.STREAMS_PER_THREAD = streams

        def run(texts: list[str], batch: int) -> np.ndarray:
            encoder.batch_size = batch
            encoder.batch_tokens = TOKENS_PER_ROW * batch if row.endswith("tokens") else None
            return encoder.encode(texts)

        return run

    return make


class StWorker:
    """sentence-transformers' ONNX / OpenVINO backends, run by eval/st_worker.py under another interpreter."""

    def __init__(self, python: str, texts: list[str], workdir: Path) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / "texts.json").write_text(json.dumps(texts))
        (workdir / "source.txt").write_text(resolve_model(DEFAULT_MODEL))
        worker = Path(__file__).resolve().parent / "st_worker.py"
        self.proc = subprocess.Popen(
            [python, str(worker), str(workdir)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        self.workdir = workdir

    def factory(self, variant: str) -> Callable[[int, int], Runner]:
        def make(batch: int, threads: int) -> Runner:
            self._ask({"variant": variant, "threads": threads, "batch": batch, "warm": True})

            def run(texts: list[str], batch: int) -> tuple[np.ndarray, float]:
                seconds = self._ask({"variant": variant, "threads": threads, "batch": batch})
                return np.load(self.workdir / "out.npy"), seconds

            return run

        return make

    def _ask(self, request: dict) -> float:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise SystemExit(f"the sentence-transformers worker died on {request} (see its error above)")
        return float(json.loads(line)["seconds"])

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait()


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def measure(args: argparse.Namespace, texts: list[str]) -> dict:
    """Time every implementation at every setting (interleaved rounds): rates, vector differences, load."""
    workdir = Path(tempfile.mkdtemp(prefix="bench-encode-"))
    makers: dict[str, Callable[[int, int], Runner]] = {"st torch": st_torch} if not args.smoke else {}
    workers = []
    if args.st_python:
        workers.append(StWorker(args.st_python, texts, workdir / "st"))
        makers |= {f"st {v}": workers[0].factory(v) for v in ST_VARIANTS}
    rows = [*SENTFLOW, *AB_ROWS] if not args.only else list(dict.fromkeys(["torch", *args.only]))  # torch: reference
    if not has_bf16():  # openvino-bf16 is refused there (and SENTFLOW_CPU=avx2 acts as such a CPU)
        print("no bf16 instructions on this CPU (or SENTFLOW_CPU=avx2): leaving out the bf16 rows", file=sys.stderr)
        rows = [r for r in rows if PRECISION[f"sentflow {r}"] != "bf16"]
    makers |= {f"sentflow {r}": sentflow_encoder(r) for r in rows}
    grid = [(b, t) for t in args.threads for b in args.batch_sizes]
    runners = {(name, t): make(args.batch_sizes[0], t) for name, make in makers.items() for t in args.threads}
    times: dict[tuple[str, int, int], list[float]] = {}
    vectors: dict[str, np.ndarray] = {}
    loads = []
    for _ in range(args.repeats):
        loads.append(os.getloadavg()[0])
        for batch, threads in grid:
            for name in makers:
                start = time.perf_counter()
                out = runners[name, threads](texts, batch)
                seconds = time.perf_counter() - start
                if isinstance(out, tuple):  # the worker times its own encode call
                    out, seconds = out
                times.setdefault((name, batch, threads), []).append(seconds)
                vectors.setdefault(name, unit(out))
    loads.append(os.getloadavg()[0])
    for w in workers:
        w.close()
    shutil.rmtree(workdir, ignore_errors=True)
    rates = [[*key, len(texts) / statistics.median(t)] for key, t in times.items()]
    reference = vectors["sentflow torch"]
    diffs = {name: float(np.abs(v - reference).max()) for name, v in vectors.items()}
    return {"rates": rates, "diffs": diffs, "load": loads, "threads": args.threads}


def fastest(rate: dict[tuple[str, int, int], float], names: list[str]) -> tuple[str, int, int]:
    """The (implementation, batch, threads) with the highest rate among `names`."""
    return max((k for k in rate if k[0] in names), key=lambda k: rate[k])


def goals(rate: dict, diffs: dict[str, float], keeping: set[str]) -> list[list[object]]:
    """Issue 19's goals on the fastest settings: sentflow's best accuracy-keeping and exact rows vs ST's best."""
    names = list(dict.fromkeys(k[0] for k in rate))
    st = [n for n in names if n.startswith("st ")]
    if not st:
        return []
    ours = [n for n in names if n.startswith("sentflow ")]
    rows: list[list[object]] = []
    checks = [
        ("fastest accuracy-keeping vs ST's fastest (any precision)", [n for n in ours if n in keeping], st),
        (
            "fastest exact fp32 (within 1e-4) vs ST's fastest fp32",
            [n for n in ours if diffs[n] <= EXACT],
            [n for n in st if PRECISION[n] == "fp32"],
        ),
    ]
    for what, mine, theirs in checks:
        if not mine:
            continue
        a, b = fastest(rate, mine), fastest(rate, theirs)
        ratio = rate[a] / rate[b]
        rows.append([what, f"{a[0]} (b{a[1]}, t{a[2]}) {rate[a]:.0f}", f"{b[0]} (b{b[1]}, t{b[2]}) {rate[b]:.0f}"])
        rows[-1] += [f"{ratio:.2f}", "met" if ratio >= 1.3 else "missed"]
    return rows


def report(parts: list[dict], sentences: int, subset: bool, repeats: int, name: str | None, note: str = "") -> None:
    """Write the markdown table (and the measurements as JSON) from one or more measured parts."""
    rate = {(n, b, t): r for part in parts for n, b, t, r in part["rates"]}
    diffs = parts[0]["diffs"]
    names = list(dict.fromkeys(k[0] for k in rate))
    st = [n for n in names if n.startswith("st ")]
    settings = sorted({(b, t) for _, b, t in rate}, key=lambda bt: (bt[1], bt[0]))
    rows = []
    for batch, threads in settings:
        for n in names:
            r = rate[n, batch, threads]
            same = [rate[m, batch, threads] for m in st if PRECISION[m] == PRECISION[n]]
            best = [rate[m, batch, threads] for m in st]
            cells = [f"{r / max(same):.2f}" if same else "-", f"{r / max(best):.2f}" if best else "-"]
            rows.append([n, PRECISION[n], batch, threads, f"{r:.0f}", *cells, f"{diffs[n]:.1e}"])
    best_rows = []
    for precision in ("fp32", "bf16", "int8"):
        for side in ("st ", "sentflow "):
            family = [n for n in names if n.startswith(side) and PRECISION[n] == precision]
            if family:
                n, batch, threads = fastest(rate, family)
                best_rows.append([precision, n, batch, threads, f"{rate[n, batch, threads]:.0f}"])
    keeping = {n for n in names if n.startswith("sentflow ") and n.split()[1] in accuracy_keeping()}
    loads = "; ".join(
        f"threads {','.join(map(str, p['threads']))}: " + ", ".join(f"{x:.1f}" for x in p["load"]) for p in parts
    )
    goal_rows = goals(rate, diffs, keeping)
    sections = [
        f"{sentences} STS-B test sentences ({'the first' if subset else 'all'}), "
        "all-MiniLM-L6-v2 (embedded), mean pooling, no embedding cache; "
        f"median of {repeats} interleaved rounds (each round times every implementation at every setting "
        f"after a warm-up). **Machine load** (1-minute load average at the start of each round, then at the end) "
        f"{loads}: a load above the timed run's own threads means other jobs shared the 2 cores, making absolute "
        "numbers noisy and low; ratios come from the same rounds, where every implementation saw the same load."
        + (f" {note}" if note else ""),
        "## Goals (issue 19)\n\naccuracy-keeping: STS-B Spearman within 0.3 of torch fp32 for cls and last-avg, "
        "plain and whitened (eval/results/onnx_accuracy.md); exact: unit vectors within 1e-4 of torch. Goal: ratio "
        ">= 1.3.\n\n"
        + (
            table(["goal", "sentflow", "sentence-transformers", "ratio", ""], goal_rows)
            if goal_rows
            else "(no sentence-transformers rows in this run)"
        ),
        "## Fastest setting per implementation family and precision class\n\n"
        + table(["precision", "fastest", "batch", "threads", "sentences/s"], best_rows),
        "## Every setting\n\nvs same precision: against sentence-transformers' fastest backend of the same "
        "precision class at the same batch size and threads; vs ST fastest: against its fastest of any precision "
        "there. max abs diff: unit-normalised vectors vs sentflow torch. A/B rows: `1-stream` is openvino-bf16 "
        "with one OpenVINO stream over all threads (the default is one stream per thread, batches overlapped); "
        f"`tokens` is openvino-bf16 with batches of at most {TOKENS_PER_ROW} x batch padded tokens.\n\n"
        + table(
            [
                "implementation",
                "precision",
                "batch",
                "threads",
                "sentences/s",
                "vs same precision",
                "vs ST fastest",
                "max abs diff",
            ],
            rows,
        ),
    ]
    if name is None:
        print("\n\n".join(sections))
        return
    write_report(name, "Encoding throughput: sentflow backends vs sentence-transformers backends", sections)
    write_text(RESULTS / f"{name}.json", json.dumps({"sentences": sentences, "repeats": repeats, "parts": parts}))


def accuracy_keeping() -> set[str]:
    """Backends whose STS-B Spearman stayed within 0.3 of torch fp32 in eval/results/onnx_accuracy.md."""
    path = RESULTS / "onnx_accuracy.json"
    if not path.is_file():
        return {"torch", "onnx", "openvino"}
    return set(json.loads(path.read_text())["accuracy_keeping"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[16, 32, 64, 128])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--st-python", help="an interpreter with sentence-transformers[onnx,openvino]")
    parser.add_argument("--only", nargs="+", help="only these sentflow rows (e.g. openvino openvino-bf16)")
    parser.add_argument("--sentences", type=int, help="use only the first N sentences (a quick check)")
    parser.add_argument("--report", default="bench_encode", help="name of the eval/results/*.md table")
    parser.add_argument("--partial", type=Path, help="save the measurements to this JSON instead of the table")
    parser.add_argument("--merge", type=Path, nargs="+", help="write the table from these --partial files")
    parser.add_argument("--note", default="", help="a sentence added to the table's description")
    parser.add_argument("--smoke", action="store_true", help="64 sentences, batch 16, 1 thread, 1 round; prints")
    args = parser.parse_args()
    if args.smoke:
        args.sentences, args.batch_sizes, args.threads, args.repeats = 64, [16], [1], 1
    texts = sentflow.load_sts("sts-b", "test").sentences[: args.sentences]
    parts = [json.loads(path.read_text()) for path in args.merge] if args.merge else [measure(args, texts)]
    if args.partial:
        return write_atomic(args.partial, lambda tmp: tmp.write_text(json.dumps(parts[0])))
    name = None if args.smoke else args.report
    report(parts, len(texts), args.sentences is not None, args.repeats, name, args.note)


if __name__ == "__main__":
    main()
