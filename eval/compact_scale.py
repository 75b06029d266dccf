"""Compact search at scale: RAM per vector, build time, queries/s and candidate recall from 10k to 1M vectors.

Vectors are drawn from a Gaussian with the mean and covariance of the BEIR SciFact corpus' all-MiniLM-L6-v2 (last-avg)
vectors, then L2-normalised, so the codes see the correlations real sentence vectors have. Each (size, method) is
built by a worker process that streams the vectors from a .npy file and saves the index; a fresh process then opens
it as a search would, and its resident growth (from /proc) is what the index holds. Methods: exact float search (faiss
IndexFlatIP, the baseline), binary and itq:128 (two-stage: bit codes in RAM, int8 rescoring codes memory-mapped from
disk, rescore 4) and int8 (full scan). Candidate recall is the share of the exact float top-10 found in a method's
final top-10. Goals (issue 18): RAM = code bytes x n + a constant; two-stage >= 2x the q/s of exact float search at
1M in the same run; candidate recall at 1M within 1 point of its value at 10k.

Run: python eval/compact_scale.py [--sizes 10000,100000,1000000] [--smoke]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import RESULTS, table, write_report  # noqa: E402

from sentflow.data_root import data_path  # noqa: E402
from sentflow.files.io import write_atomic  # noqa: E402

SCIFACT = data_path("beir", "scifact")
METHODS = ("float-flat", "binary", "binary/20", "itq:128", "itq:128/20", "int8")  # spec[/rescore], default 4
N_QUERIES = 1000
K = 10
CHUNK = 65_536


def resident_bytes() -> int:
    """This process' resident set size, from /proc/self/statm."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE")


def gaussian_like_scifact(n: int, seed: int, path: Path, stats: tuple[np.ndarray, np.ndarray]) -> None:
    """n unit vectors from N(mean, cov) of the SciFact corpus vectors, written to a .npy in chunks."""
    mean, cov = stats
    factor = np.linalg.cholesky(cov + 1e-9 * np.trace(cov) / len(cov) * np.eye(len(cov)))
    rng = np.random.default_rng(seed)
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(n, len(mean)))
    for start in range(0, n, CHUNK):
        rows = mean + rng.standard_normal((min(CHUNK, n - start), len(mean))) @ factor.T
        out[start : start + len(rows)] = rows / np.linalg.norm(rows, axis=1, keepdims=True)
    out.flush()


def scifact_stats() -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance (float64) of the L2-normalised SciFact corpus vectors (all-MiniLM-L6-v2, last-avg)."""
    import sentflow
    from sentflow.calibration.stats import MomentAccumulator

    task = sentflow.load_retrieval_task(SCIFACT, "test")
    vectors = sentflow.Encoder(show_progress=False).encode(task.corpus_texts).astype(np.float64)
    moments = MomentAccumulator(vectors.shape[1])
    moments.update(vectors / np.linalg.norm(vectors, axis=1, keepdims=True))
    return moments.mean(), moments.covariance()


def worker(method: str, vectors_path: str, n: int, queries_path: str, truth_path: str, workdir: str) -> dict:
    """Build one index over the first n vectors and save it, then measure it as served by a fresh process."""
    vectors = np.load(vectors_path, mmap_mode="r")
    chunks = (np.asarray(vectors[s : min(s + CHUNK, n)]) for s in range(0, n, CHUNK))
    fit_rows = np.array(vectors[: min(n, 200_000)])  # what a streamed build fits its codes on
    start = time.perf_counter()
    build(method, chunks, fit_rows, workdir)
    build_seconds = time.perf_counter() - start
    return {**served(method, queries_path, truth_path, workdir), "n": n, "build_seconds": build_seconds}


def served(method: str, queries_path: str, truth_path: str, workdir: str) -> dict:
    """Resident memory, q/s and recall of a saved compact index opened in a fresh process, as `sentflow search`
    opens it (the rescoring codes memory-mapped, read from disk when searched)."""
    args = [sys.executable, __file__, "--serve", method, queries_path, truth_path, workdir]
    done = subprocess.run(args, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def serve(method: str, queries_path: str, truth_path: str, workdir: str) -> dict:
    """The --serve worker: open, measure the resident growth, then search."""
    import faiss  # imported before measuring: code and libraries are not the index

    from sentflow.search.compact import CompactIndex

    queries = np.load(queries_path)
    before = resident_bytes()
    path = Path(workdir) / _folder(method)
    index = faiss.read_index(str(path)) if method == "float-flat" else CompactIndex.load(path)
    held = resident_bytes() - before
    index.search(queries[:10], K)  # warm-up
    start = time.perf_counter()
    _, rows = index.search(queries, K)
    seconds = time.perf_counter() - start
    truth = np.load(truth_path)
    recall = float(np.mean([len(set(r) & set(t)) / K for r, t in zip(rows, truth, strict=True)]))
    return {"method": method, "ram_bytes": held, "qps": len(queries) / seconds, "recall": 100 * recall}


def _folder(method: str) -> str:
    return method.replace(":", "-").replace("/", "-r")


def build(method: str, chunks, fit_rows: np.ndarray, workdir: str):
    """The index a method names, built from row chunks; compact ones are saved for `serve` to open."""
    if method == "float-flat":
        import faiss

        flat = faiss.IndexFlatIP(fit_rows.shape[1])
        for chunk in chunks:
            flat.add(np.ascontiguousarray(chunk, np.float32))
        faiss.write_index(flat, str(Path(workdir) / _folder(method)))
        return flat
    from sentflow.search.compact import CompactIndex

    spec, _, depth = method.partition("/")
    built = CompactIndex.build_chunks(chunks, fit_rows, spec, rescore=int(depth or 4))
    return built.save(Path(workdir) / _folder(method))


def exact_top_k(vectors_path: Path, n: int, queries: np.ndarray) -> np.ndarray:
    """The exact float top-K rows of the first n vectors for each query (faiss IndexFlatIP, chunked)."""
    import faiss

    vectors = np.load(vectors_path, mmap_mode="r")
    flat = faiss.IndexFlatIP(vectors.shape[1])
    for start in range(0, n, CHUNK):
        flat.add(np.ascontiguousarray(vectors[start : min(start + CHUNK, n)]))
    return flat.search(queries, K)[1]


def run_worker(method: str, vectors: Path, n: int, queries: Path, truth: Path, workdir: Path) -> dict:
    args = [sys.executable, __file__, "--worker", method, str(vectors), str(n), str(queries), str(truth), str(workdir)]
    done = subprocess.run(args, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def measure(sizes: list[int], methods, stats, workdir: Path) -> list[dict]:
    vectors, queries_path = workdir / "vectors.npy", workdir / "queries.npy"
    gaussian_like_scifact(max(sizes), 0, vectors, stats)
    gaussian_like_scifact(N_QUERIES, 1, queries_path, stats)
    queries = np.load(queries_path)
    rows = []
    for n in sizes:
        truth = workdir / f"truth-{n}.npy"
        np.save(truth, exact_top_k(vectors, n, queries), allow_pickle=False)
        for method in methods:
            rows.append(run_worker(method, vectors, n, queries_path, truth, workdir))
            print(json.dumps(rows[-1]), flush=True)
    return rows


CODE_BYTES = {"float-flat": 1536, "binary": 48, "binary/20": 48, "itq:128": 16, "itq:128/20": 16, "int8": 384}


def write(rows: list[dict]) -> None:
    flat = {r["n"]: r["qps"] for r in rows if r["method"] == "float-flat"}
    body = [
        [r["method"], f"{r['n']:,}", f"{r['ram_bytes'] / r['n']:.1f}", CODE_BYTES[r["method"]],
         f"{r['build_seconds']:.1f}", f"{r['qps']:,.0f}", f"{r['qps'] / flat[r['n']]:.2f}", f"{r['recall']:.1f}"]
        for r in rows
    ]
    header = ["method", "vectors", "RAM B/vector (measured)", "code B/vector", "build s", "q/s", "q/s vs float",
              "top-10 recall %"]
    load = os.getloadavg()
    sections = [
        "`python eval/compact_scale.py`: Gaussian vectors with SciFact's mean and covariance, "
        f"{N_QUERIES:,} queries, k = {K}; two-stage rows keep rescore x k candidates (rescore 4, or 20 where the "
        "method says /20) and rescore them with int8 codes memory-mapped from disk. Each index is built in one "
        "worker process and saved; RAM is the resident growth of a fresh process opening it (faiss `read_index` "
        "for Flat, `CompactIndex.load` as `sentflow search` does: the memory-mapped codes are read from disk as "
        f"searched), measured before the first search. Load average at the end: {load[0]:.2f}.",
        table(header, body),
    ]
    write_report("compact_scale", "Compact search at scale (10k to 1M vectors)", sections)
    write_atomic(RESULTS / "compact_scale.json", lambda tmp: tmp.write_text(json.dumps(rows, indent=1), "utf-8"))


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--serve":
        print(json.dumps(serve(*sys.argv[2:6])))
        return
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        method, vectors, n, queries, truth, workdir = sys.argv[2:8]
        print(json.dumps(worker(method, vectors, int(n), queries, truth, workdir)))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--smoke", action="store_true", help="2,000 vectors, seconds; writes nothing")
    args = parser.parse_args()
    sizes = [2000] if args.smoke else [int(s) for s in args.sizes.split(",")]
    if args.smoke:
        rng = np.random.default_rng(0)
        mixing = rng.normal(size=(32, 32))
        stats = (rng.normal(size=32) * 0.1, mixing @ mixing.T / 32)
    else:
        stats = scifact_stats()
    with tempfile.TemporaryDirectory(dir=os.environ.get("SENTFLOW_SCALE_TMP")) as folder:
        rows = measure(sizes, METHODS if not args.smoke else ("float-flat", "binary/8", "int8"), stats, Path(folder))
    if not args.smoke:
        write(rows)


if __name__ == "__main__":
    main()
