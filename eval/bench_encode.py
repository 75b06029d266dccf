"""Encoding throughput on the 2,758 STS-B test sentences: sentflow's backends vs sentence-transformers', same run.

Compared, on one grid of batch sizes x thread counts, repetitions interleaved (each round times every
implementation once per setting), medians reported:
- sentence-transformers, PyTorch backend (Transformer + mean Pooling modules, the checkpoint's own setting);
- sentence-transformers, backend="onnx" and its dynamically quantised int8 model ("avx2" config); these need
  optimum-onnx, which pins transformers < 4.58 while sentence-transformers 6 needs transformers 5, so they run in
  a worker process under `--st-onnx-python` (an interpreter whose sentence-transformers has a working ONNX backend;
  rows are skipped without one);
- sentflow Encoder with backend torch / onnx / onnx-int8 (last-avg pooling, no embedding cache).
Ratios: each row against sentence-transformers' fastest backend of the same precision class (fp32 or int8) at
the same batch size and threads. `max abs diff` compares unit-normalised vectors with sentflow torch's.
Run: python eval/bench_encode.py [--repeats 3] [--st-onnx-python /path/to/python]
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
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import table, write_report  # noqa: E402

import sentflow  # noqa: E402
from sentflow.models import DEFAULT_MODEL, resolve_model  # noqa: E402
from sentflow.runtime import using_threads  # noqa: E402

PRECISION = {"st torch": "fp32", "st onnx": "fp32", "st onnx-int8": "int8"}
PRECISION |= {"sentflow torch": "fp32", "sentflow onnx": "fp32", "sentflow onnx-int8": "int8"}


def st_torch(batch: int, threads: int):
    """sentence-transformers' PyTorch backend with only Transformer + mean Pooling modules."""
    from sentence_transformers import SentenceTransformer, models

    word = models.Transformer(resolve_model(DEFAULT_MODEL), max_seq_length=256)
    pooling = models.Pooling(word.get_word_embedding_dimension(), pooling_mode="mean")
    model = SentenceTransformer(modules=[word, pooling], device="cpu")

    def run(texts, batch):
        with using_threads(threads):
            return model.encode(texts, batch_size=batch, convert_to_numpy=True)

    return run


def sentflow_encoder(backend: str):
    def make(batch: int, threads: int):
        encoder = sentflow.Encoder(backend=backend, threads=threads, cache=False, show_progress=False)

        def run(texts, batch):
            encoder.batch_size = batch
            return encoder.encode(texts)

        return run

    return make


class StOnnxWorker:
    """sentence-transformers' ONNX backends, run in a worker process under another interpreter."""

    def __init__(self, python: str, texts: list[str], workdir: Path) -> None:
        (workdir / "texts.json").write_text(json.dumps(texts))
        self.proc = subprocess.Popen(
            [python, __file__, "--worker", str(workdir)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        self.workdir = workdir

    def factory(self, variant: str):
        def make(batch: int, threads: int):
            self._ask({"variant": variant, "threads": threads, "batch": batch, "warm": True})

            def run(texts, batch):
                seconds = self._ask({"variant": variant, "threads": threads, "batch": batch})
                return np.load(self.workdir / "out.npy"), seconds

            return run

        return make

    def _ask(self, request: dict) -> float:
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        reply = json.loads(self.proc.stdout.readline())
        return reply["seconds"]

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait()


def worker(workdir: Path) -> None:
    """Serve timing requests for sentence-transformers' ONNX backends (fp32 and int8) over stdin/stdout."""
    import onnxruntime as ort
    from sentence_transformers import SentenceTransformer, export_dynamic_quantized_onnx_model

    texts = json.loads((workdir / "texts.json").read_text())
    model_dir = workdir / "model"
    shutil.copytree(resolve_model(DEFAULT_MODEL), model_dir)
    exported = SentenceTransformer(str(model_dir), backend="onnx", device="cpu")
    exported.save_pretrained(str(model_dir))
    export_dynamic_quantized_onnx_model(exported, "avx2", str(model_dir))
    quantised = next((model_dir / "onnx").glob("model_*int8_avx2.onnx"))  # the avx2 config stores uint8 weights
    files = {"onnx": "onnx/model.onnx", "onnx-int8": f"onnx/{quantised.name}"}
    models = {}
    for line in sys.stdin:
        request = json.loads(line)
        key = (request["variant"], request["threads"])
        if key not in models:
            options = ort.SessionOptions()
            options.intra_op_num_threads = request["threads"]
            kwargs = {"file_name": files[request["variant"]], "session_options": options}
            models[key] = SentenceTransformer(str(model_dir), backend="onnx", device="cpu", model_kwargs=kwargs)
        batch = request["batch"]
        chosen = texts[:64] if request.get("warm") else texts
        start = time.perf_counter()
        out = models[key].encode(chosen, batch_size=batch, convert_to_numpy=True)
        seconds = time.perf_counter() - start
        np.save(workdir / "out.npy", out)
        print(json.dumps({"seconds": seconds}), flush=True)


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[16, 32, 64, 128])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--st-onnx-python", default=sys.executable)
    parser.add_argument("--sentences", type=int, help="use only the first N sentences (a quick check)")
    parser.add_argument("--report", default="bench_encode", help="name of the eval/results/*.md table")
    parser.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args.worker)
    texts = sentflow.load_sts("sts-b", "test").sentences[: args.sentences]
    load_before = os.getloadavg()
    makers = {"st torch": st_torch}
    workdir = Path(tempfile.mkdtemp(prefix="bench-encode-"))
    st_onnx = StOnnxWorker(args.st_onnx_python, texts, workdir)
    makers |= {"st onnx": st_onnx.factory("onnx"), "st onnx-int8": st_onnx.factory("onnx-int8")}
    makers |= {f"sentflow {b}": sentflow_encoder(b) for b in ("torch", "onnx", "onnx-int8")}
    grid = [(b, t) for t in args.threads for b in args.batch_sizes]
    runners = {(name, t): make(args.batch_sizes[0], t) for name, make in makers.items() for t in args.threads}
    times, vectors = {}, {}
    for _ in range(args.repeats):
        for batch, threads in grid:
            for name in makers:
                start = time.perf_counter()
                out = runners[name, threads](texts, batch)
                seconds = time.perf_counter() - start
                if isinstance(out, tuple):  # the worker times its own encode call
                    out, seconds = out
                times.setdefault((name, batch, threads), []).append(seconds)
                vectors.setdefault(name, unit(out))
    st_onnx.close()
    shutil.rmtree(workdir, ignore_errors=True)
    load_after = os.getloadavg()
    rate = {k: len(texts) / statistics.median(v) for k, v in times.items()}
    rows = []
    for batch, threads in grid:
        for name in makers:
            anchor = max(
                rate[n, batch, threads] for n in makers if n.startswith("st ") and PRECISION[n] == PRECISION[name]
            )
            diff = np.abs(vectors[name] - vectors["sentflow torch"]).max()
            r = rate[name, batch, threads]
            rows.append([name, PRECISION[name], batch, threads, f"{r:.0f}", f"{r / anchor:.2f}", f"{diff:.1e}"])
    best = []
    for precision in ("fp32", "int8"):
        for side in ("st ", "sentflow "):
            name, batch, threads = max(
                (k for k in rate if k[0].startswith(side) and PRECISION[k[0]] == precision), key=rate.get
            )
            best.append([precision, name, batch, threads, f"{rate[name, batch, threads]:.0f}"])
        best[-1].append(f"{float(best[-1][4]) / float(best[-2][4]):.2f}")
        best[-2].append("1.00")
    write_report(
        args.report,
        "Encoding throughput: sentflow backends vs sentence-transformers backends",
        [
            f"{len(texts)} STS-B test sentences ({'all' if args.sentences is None else 'the first'}), "
            "all-MiniLM-L6-v2 (embedded), mean pooling, no embedding cache; "
            f"median of {args.repeats} interleaved rounds (each round times every implementation at every setting "
            f"after a warm-up). Machine load average (1 min) {load_before[0]:.1f} before, {load_after[0]:.1f} after: "
            "the 2 cores were shared with other jobs, so absolute numbers are noisy; ratios come from the same rounds.",
            "## Fastest setting per implementation family and precision class\n\n"
            + table(
                ["precision", "fastest", "batch", "threads", "sentences/s", "ratio vs sentence-transformers"], best
            ),
            "## Every setting\n\nratio: against sentence-transformers' fastest backend of the same precision class at "
            "the same batch size and threads. max abs diff: unit-normalised vectors vs sentflow torch.\n\n"
            + table(["implementation", "precision", "batch", "threads", "sentences/s", "ratio", "max abs diff"], rows),
        ],
    )


if __name__ == "__main__":
    main()
