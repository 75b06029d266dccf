"""Encoding throughput on the 2,758 STS-B test sentences: sentflow's backends vs sentence-transformers', same run.

Compared, on one grid of batch sizes x thread counts, repetitions interleaved (each round times every
implementation once per setting), medians reported:
- sentence-transformers, PyTorch backend (Transformer + mean Pooling modules, the checkpoint's own setting);
- sentence-transformers, backend="onnx" and its dynamically quantised int8 model ("avx2" config); these need
  optimum-onnx, which pins transformers < 4.58 while sentence-transformers 6 needs transformers 5, so they run in
  a worker process under `--st-onnx-python` (an interpreter whose sentence-transformers has a working ONNX backend);
- sentence-transformers, backend="openvino" (optimum-intel + openvino), in a worker under `--st-openvino-python`
  (rows left out without that flag): once with INFERENCE_PRECISION_HINT=f32 (fp32) and once with OpenVINO's
  default, which is bf16 on a CPU with bf16 instructions (its own precision class);
- sentflow Encoder with backend torch / onnx / onnx-int8 (last-avg pooling, no embedding cache).
Ratios: each row against sentence-transformers' fastest backend of the same precision class (fp32 or int8) at
the same batch size and threads. `max abs diff` compares unit-normalised vectors with sentflow torch's.
Run: python eval/bench_encode.py [--repeats 3] [--st-onnx-python PY] [--st-openvino-python PY]
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
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import table, write_report  # noqa: E402

import sentflow  # noqa: E402
from sentflow.encoding.models import DEFAULT_MODEL, resolve_model  # noqa: E402
from sentflow.files.io import write_atomic  # noqa: E402
from sentflow.runtime import using_threads  # noqa: E402

PRECISION = {"st torch": "fp32", "st onnx": "fp32", "st onnx-int8": "int8"}
PRECISION |= {"st openvino": "fp32", "st openvino-bf16": "bf16"}
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


class StWorker:
    """sentence-transformers' ONNX / OpenVINO backends, run in a worker process under another interpreter."""

    def __init__(self, python: str, texts: list[str], workdir: Path) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
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


def st_model(model_dir: Path, variant: str, threads: int):
    """A sentence-transformers model of `variant` (onnx, onnx-int8, openvino, openvino-bf16) on `threads` threads."""
    from sentence_transformers import SentenceTransformer

    if variant.startswith("openvino"):
        config = {"INFERENCE_NUM_THREADS": threads}
        if variant == "openvino":  # OpenVINO's default on a CPU with bf16 instructions is bf16
            config["INFERENCE_PRECISION_HINT"] = "f32"
        kwargs = {"ov_config": config}
        return SentenceTransformer(str(model_dir), backend="openvino", device="cpu", model_kwargs=kwargs)
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    name = "model.onnx" if variant == "onnx" else next((model_dir / "onnx").glob("model_*int8_avx2.onnx")).name
    kwargs = {"file_name": f"onnx/{name}", "session_options": options}
    return SentenceTransformer(str(model_dir), backend="onnx", device="cpu", model_kwargs=kwargs)


def st_export(model_dir: Path, variant: str) -> None:
    """Export the checkpoint in `model_dir` for `variant` once, next to it, as sentence-transformers does."""
    from sentence_transformers import SentenceTransformer

    backend = "openvino" if variant.startswith("openvino") else "onnx"
    if not (model_dir / backend).is_dir():
        SentenceTransformer(str(model_dir), backend=backend, device="cpu").save_pretrained(str(model_dir))
    if variant == "onnx-int8" and not any((model_dir / "onnx").glob("model_*int8_avx2.onnx")):
        from sentence_transformers import export_dynamic_quantized_onnx_model

        exported = SentenceTransformer(str(model_dir), backend="onnx", device="cpu")
        export_dynamic_quantized_onnx_model(exported, "avx2", str(model_dir))  # stores uint8 weights (quint8)


def worker(workdir: Path) -> None:
    """Serve timing requests for sentence-transformers' ONNX / OpenVINO backends over stdin/stdout."""
    texts = json.loads((workdir / "texts.json").read_text())
    model_dir = workdir / "model"
    if not model_dir.is_dir():
        shutil.copytree(resolve_model(DEFAULT_MODEL), model_dir)
    models = {}
    for line in sys.stdin:
        request = json.loads(line)
        key = (request["variant"], request["threads"])
        if key not in models:
            st_export(model_dir, request["variant"])
            models[key] = st_model(model_dir, *key)
        batch = request["batch"]
        chosen = texts[:64] if request.get("warm") else texts
        start = time.perf_counter()
        out = models[key].encode(chosen, batch_size=batch, convert_to_numpy=True)
        seconds = time.perf_counter() - start
        np.save(workdir / "out.npy", out)
        print(json.dumps({"seconds": seconds}), flush=True)


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def measure(args: argparse.Namespace, texts: list[str]) -> dict:
    """Time every implementation at every setting (interleaved rounds): rates, vector differences, load."""
    load_before = os.getloadavg()[0]
    workdir = Path(tempfile.mkdtemp(prefix="bench-encode-"))
    workers = [StWorker(args.st_onnx_python, texts, workdir / "onnx")]
    makers = {"st torch": st_torch}
    makers |= {f"st {v}": workers[0].factory(v) for v in ("onnx", "onnx-int8")}
    if args.st_openvino_python:
        workers.append(StWorker(args.st_openvino_python, texts, workdir / "openvino"))
        makers |= {f"st {v}": workers[-1].factory(v) for v in ("openvino", "openvino-bf16")}
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
    for w in workers:
        w.close()
    shutil.rmtree(workdir, ignore_errors=True)
    rates = [[*key, len(texts) / statistics.median(t)] for key, t in times.items()]
    diffs = {name: float(np.abs(v - vectors["sentflow torch"]).max()) for name, v in vectors.items()}
    return {"rates": rates, "diffs": diffs, "load": [load_before, os.getloadavg()[0]], "threads": args.threads}


def report(parts: list[dict], sentences: int, subset: bool, repeats: int, name: str) -> None:
    """Write the markdown table from one or more measured parts (e.g. one per thread count)."""
    rate = {(n, b, t): r for part in parts for n, b, t, r in part["rates"]}
    diffs = parts[0]["diffs"]
    names = list(dict.fromkeys(k[0] for k in rate))
    settings = sorted({(b, t) for _, b, t in rate}, key=lambda bt: (bt[1], bt[0]))
    rows = []
    for batch, threads in settings:
        for n in names:
            anchor = max(rate[m, batch, threads] for m in names if m.startswith("st ") and PRECISION[m] == PRECISION[n])
            r = rate[n, batch, threads]
            rows.append([n, PRECISION[n], batch, threads, f"{r:.0f}", f"{r / anchor:.2f}", f"{diffs[n]:.1e}"])
    best = []
    for precision in ("fp32", "int8"):
        for side in ("st ", "sentflow "):
            n, batch, threads = max(
                (k for k in rate if k[0].startswith(side) and PRECISION[k[0]] == precision), key=rate.get
            )
            best.append([precision, n, batch, threads, f"{rate[n, batch, threads]:.0f}"])
        best[-1].append(f"{float(best[-1][4]) / float(best[-2][4]):.2f}")
        best[-2].append("1.00")
    loads = "; ".join(
        f"threads {','.join(map(str, p['threads']))}: {p['load'][0]:.1f} before, {p['load'][1]:.1f} after"
        for p in parts
    )
    write_report(
        name,
        "Encoding throughput: sentflow backends vs sentence-transformers backends",
        [
            f"{sentences} STS-B test sentences ({'the first' if subset else 'all'}), "
            "all-MiniLM-L6-v2 (embedded), mean pooling, no embedding cache; "
            f"median of {repeats} interleaved rounds (each round times every implementation at every setting "
            f"after a warm-up). Machine load average (1 min) {loads}: the 2 cores were shared with other jobs "
            "(timed runs held a lock the others' test suites also take), so absolute numbers are noisy; ratios come "
            "from the same rounds.",
            "## Fastest setting per implementation family and precision class\n\n"
            + table(
                ["precision", "fastest", "batch", "threads", "sentences/s", "ratio vs sentence-transformers"], best
            ),
            "## Every setting\n\nratio: against sentence-transformers' fastest backend of the same precision class at "
            "the same batch size and threads. max abs diff: unit-normalised vectors vs sentflow torch.\n\n"
            + table(["implementation", "precision", "batch", "threads", "sentences/s", "ratio", "max abs diff"], rows),
        ],
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[16, 32, 64, 128])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--st-onnx-python", default=sys.executable)
    parser.add_argument("--st-openvino-python", help="an interpreter with sentence-transformers + optimum-intel")
    parser.add_argument("--sentences", type=int, help="use only the first N sentences (a quick check)")
    parser.add_argument("--report", default="bench_encode", help="name of the eval/results/*.md table")
    parser.add_argument("--partial", type=Path, help="save the measurements to this JSON instead of the table")
    parser.add_argument("--merge", type=Path, nargs="+", help="write the table from these --partial files")
    parser.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args.worker)
    sentences = len(sentflow.load_sts("sts-b", "test").sentences[: args.sentences])
    if args.merge:
        parts = [json.loads(path.read_text()) for path in args.merge]
    else:
        parts = [measure(args, sentflow.load_sts("sts-b", "test").sentences[: args.sentences])]
    if args.partial:
        return write_atomic(args.partial, lambda tmp: tmp.write_text(json.dumps(parts[0])))
    report(parts, sentences, args.sentences is not None, args.repeats, args.report)


if __name__ == "__main__":
    main()
