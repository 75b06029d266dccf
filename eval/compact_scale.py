"""Compact search at scale: RAM per vector, build time and peak RSS, queries/s and top-10 recall, 10k to 10M vectors.

Vectors are drawn from a Gaussian with the mean and covariance of the BEIR SciFact corpus' all-MiniLM-L6-v2 (last-avg)
vectors, then L2-normalised, so the codes see the correlations real sentence vectors have. Each (size, method) is
built by a worker process that streams the vectors from a .npy file and saves the index; a fresh process then opens
it as a search would, and its resident growth (from /proc) is what the index holds. Methods: exact float search (faiss
IndexFlatIP, the baseline), binary and itq:128 (two-stage: bit codes in RAM, int8 rescoring codes memory-mapped from
disk, rescore 4) and int8 (full scan). Candidate recall is the share of the exact float top-10 found in a method's
final top-10. Goals (issue 18): RAM = code bytes x n + a constant; two-stage >= 2x the q/s of exact float search at
1M in the same run; candidate recall at 1M within 1 point of its value at 10k.

Inverted-file rows (issue 29): `SPEC@LISTS` is `CompactIndex.build(..., quantize=SPEC, lists=LISTS)`, searched at
each (probes, candidates) of IVF_SETTINGS; `faiss-ivfLISTS-rabitq` is faiss's IndexIVFRaBitQ (query bits 8) with
SQ8 refinement held in RAM (k_factor 20), at nprobe 16 and 64; `faiss-hnsw32` is faiss's HNSW over the float
vectors (efSearch 64). Vectors are generated in chunks (each from its own seed), so 10M needs no vector file; the
exact top-10 is a chunked float search, and above 2M vectors (whose floats would not fit in RAM) its search time is
float Flat's q/s. Indexes of more than 4,096 lists are also searched at 512 and 1,024 probes. Goals (issue 29) at
1M: an IVF setting with recall and q/s >= faiss IVF4096-RaBitQ nprobe 64 + SQ8 x 20, and one with recall >= 90% at
>= 3x float Flat q/s, RAM <= 64 B/vector plus centroids; at 10M: build peak RSS <= 4 GB, search RSS <= 1 GB.

Run: python eval/compact_scale.py [--sizes 10000,100000,1000000] [--methods ...] [--smoke]
     python eval/compact_scale.py --rows 10000000 --methods float-flat,rabitq@16384   (10M, codes spilled to disk)
     ... --workdir DIR   (keeps the indexes: a rerun with the same DIR serves them again without building)
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import RESULTS, table, write_report  # noqa: E402

from sentflow.data_root import data_path  # noqa: E402
from sentflow.extras import require  # noqa: E402
from sentflow.files.io import write_atomic  # noqa: E402

SCIFACT = data_path("beir", "scifact")
METHODS = (
    "float-flat", "binary", "binary/20", "itq:128", "itq:128/20", "int8",  # spec[/rescore], default 4
    "rabitq@4096", "faiss-ivf4096-rabitq", "faiss-hnsw32",
)
IVF_SETTINGS = ((16, 200), (32, 200), (48, 200), (56, 200), (64, 200), (64, 400), (128, 400), (192, 400), (256, 600))
WIDE_SETTINGS = ((512, 800), (1024, 1000))  # more than 4,096 lists: their cells are smaller, so more of them
FAISS_NPROBES = (16, 64)
REFINE_FACTOR = 20
N_QUERIES = 1000
ROUNDS = 3  # timed search passes a setting's q/s is the best of
ONE_QUERY = "one query a call"  # rows searched one query per call (the others: all queries in one call)
K = 10
CHUNK = 65_536
FLAT_IN_RAM = 2_000_000  # above this, float Flat's q/s is timed on the chunked exact search (15 GB at 10M)
HEADER = ["method", "vectors", "RAM B/vector (measured)", "code B/vector", "build s", "build peak RSS GiB",
          "search peak RSS GiB", "of which file pages GiB", "q/s", "q/s vs float", "top-10 recall %"]


def resident_bytes() -> int:
    """This process' resident set size, from /proc/self/statm."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE")


def gaussian_like_scifact(n: int, seed: int, stats_path: str | Path):
    """n unit vectors from N(mean, cov) of the SciFact corpus vectors, made CHUNK rows at a time (chunk i from the
    seed (seed, i), so every process makes the same rows and none holds them all)."""
    stats = np.load(stats_path)
    mean, cov = stats[0], stats[1:]
    factor = np.linalg.cholesky(cov + 1e-9 * np.trace(cov) / len(cov) * np.eye(len(cov)))
    for number, start in enumerate(range(0, n, CHUNK)):
        rng = np.random.default_rng([seed, number])
        rows = mean + rng.standard_normal((min(CHUNK, n - start), len(mean))) @ factor.T
        yield (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


def peak_rss() -> int:
    """This process' peak resident set size in bytes: VmHWM of /proc/self/status, which starts afresh with the
    process' own memory (getrusage's ru_maxrss keeps the parent's peak across fork and exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def reset_peak_rss() -> None:
    """Start VmHWM afresh from the current resident set (Linux: 5 written to /proc/self/clear_refs), so each
    setting's peak is its own."""
    Path("/proc/self/clear_refs").write_text("5")


def file_pages() -> int:
    """Bytes of this process' resident set that are file pages (RssFile + RssShmem): the memory-mapped codes a
    search read, which the kernel drops under memory pressure and reads again when needed."""
    fields = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines() if ":" in line)
    return sum(int(fields[key].split()[0]) * 1024 for key in ("RssFile", "RssShmem") if key in fields)


def scifact_stats() -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance (float64) of the L2-normalised SciFact corpus vectors (all-MiniLM-L6-v2, last-avg)."""
    import sentflow
    from sentflow.calibration.stats import MomentAccumulator

    task = sentflow.load_retrieval_task(SCIFACT, "test")
    vectors = sentflow.Encoder(show_progress=False).encode(task.corpus_texts).astype(np.float64)
    moments = MomentAccumulator(vectors.shape[1])
    moments.update(vectors / np.linalg.norm(vectors, axis=1, keepdims=True))
    return moments.mean(), moments.covariance()


def worker(method: str, stats_path: str, n: int, queries_path: str, truth_path: str, workdir: str) -> list[dict]:
    """Build one index over n vectors and save it (unless a kept workdir has it), then measure it as served by a
    fresh process."""
    built = Path(workdir) / f"{_folder(method)}.build.json"
    if not built.is_file():
        fit_rows = np.concatenate(list(gaussian_like_scifact(min(n, 200_000), 0, stats_path)))  # what a build fits on
        start = time.perf_counter()
        build(method, gaussian_like_scifact(n, 0, stats_path), fit_rows, workdir)
        cost = {"build_seconds": time.perf_counter() - start, "build_peak_rss": peak_rss()}
        del fit_rows
        write_atomic(built, lambda tmp: tmp.write_text(json.dumps(cost), "utf-8"))
    cost = json.loads(built.read_text("utf-8"))
    return [{**row, "n": n, **cost} for row in served(method, queries_path, truth_path, workdir)]


def served(method: str, queries_path: str, truth_path: str, workdir: str) -> list[dict]:
    """Resident memory, q/s and recall of a saved compact index opened in a fresh process, as `sentflow search`
    opens it (the rescoring codes memory-mapped, read from disk when searched)."""
    args = [sys.executable, __file__, "--serve", method, queries_path, truth_path, workdir]
    done = subprocess.run(args, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def serve(method: str, queries_path: str, truth_path: str, workdir: str) -> list[dict]:
    """The --serve worker: open, measure the resident growth, then search at each of the method's settings (the
    peak RSS of each setting measured on its own)."""
    from sentflow.search.compact import CompactIndex

    faiss = require("faiss", "faiss") if method.startswith(("float", "faiss")) else None  # sentflow's never loads it
    queries, truth = np.load(queries_path), np.load(truth_path)
    before = resident_bytes()  # code and libraries are imported first: they are not the index
    path = Path(workdir) / _folder(method)
    index = faiss.read_index(str(path)) if faiss is not None else CompactIndex.load(path)
    held = resident_bytes() - before
    rows = []
    for name, search in _settings(method, index):
        reset_peak_rss()
        search(queries)  # a whole pass first: the codes' pages are touched (and paged in) before the clock runs
        seconds = float("inf")
        for _ in range(ROUNDS):  # the best of a few passes: a shared 2-core machine's noise only ever slows one
            start = time.perf_counter()
            found = search(queries)
            seconds = min(seconds, time.perf_counter() - start)
        recall = float(np.mean([len(set(r) & set(t)) / K for r, t in zip(found, truth, strict=True)]))
        row = {"method": name, "ram_bytes": held, "qps": len(queries) / seconds, "recall": 100 * recall}
        rows.append({**row, "search_peak_rss": peak_rss(), "search_file_rss": file_pages()})
    return rows


def _settings(method: str, index):
    """(row name, search(queries) -> rows) for each setting a method is measured at."""
    if "@" in method:
        settings = [
            (f"{method} probes {p} cand {c}", lambda q, p=p, c=c: index.search(q, K, probes=p, candidates=c)[1])
            for p, c in IVF_SETTINGS + (WIDE_SETTINGS if index.lists.lists > 4096 else ())
        ]
        alone = _one_at_a_time(lambda q: index.search(q, K, probes=64, candidates=200)[1])
        return [*settings, (f"{method} probes 64 cand 200, {ONE_QUERY}", alone)]
    faiss = require("faiss", "faiss")
    if method.startswith("faiss-ivf"):

        def ivf(queries, nprobe):
            base = faiss.IVFRaBitQSearchParameters()
            base.nprobe, base.qb = nprobe, 8
            params = faiss.IndexRefineSearchParameters()
            params.k_factor, params.base_index_params = REFINE_FACTOR, base
            return index.search(queries, K, params=params)[1]

        probed = [(f"{method} nprobe {p} + SQ8 x {REFINE_FACTOR}", lambda q, p=p: ivf(q, p)) for p in FAISS_NPROBES]
        single = _one_at_a_time(lambda q: ivf(q, 64))
        return [*probed, (f"{method} nprobe 64 + SQ8 x {REFINE_FACTOR}, {ONE_QUERY}", single)]
    if method.startswith("faiss-hnsw"):
        hnsw: Any = faiss.downcast_index(index)
        hnsw.hnsw.efSearch = 64
    return [(method, lambda q: index.search(q, K)[1])]


def _one_at_a_time(search):
    """search(queries) made one call per query, as a service answering single requests makes it."""
    return lambda queries: np.concatenate([search(queries[i : i + 1]) for i in range(len(queries))])


def _folder(method: str) -> str:
    return method.replace(":", "-").replace("/", "-r")


def build(method: str, chunks, fit_rows: np.ndarray, workdir: str):
    """The index a method names, built from row chunks and saved for `serve` to open."""
    if method.startswith(("float", "faiss")):
        import faiss

        index = _faiss_index(method, fit_rows)
        for chunk in chunks:
            index.add(np.ascontiguousarray(chunk, np.float32))
        faiss.write_index(index, str(Path(workdir) / _folder(method)))
        return index
    from sentflow.search.compact import CompactIndex

    spec, _, lists = method.partition("@")
    spec, _, depth = spec.partition("/")
    with tempfile.TemporaryDirectory(dir=workdir) as spill:  # the int8 codes wait on disk, not in RAM
        built = CompactIndex.build_chunks(
            chunks, fit_rows, spec, rescore=int(depth or 4), lists=int(lists) if lists else None, spill=spill
        )
        return built.save(Path(workdir) / _folder(method))


def _faiss_index(method: str, fit_rows: np.ndarray):
    """A trained, empty faiss baseline: Flat, IVF-RaBitQ + SQ8 refinement (k-means as sentflow's: 10 rounds on 64
    rows a list), or HNSW over floats."""
    import faiss

    dim = fit_rows.shape[1]
    if method == "float-flat":
        return faiss.IndexFlatIP(dim)
    if method.startswith("faiss-hnsw"):
        return faiss.IndexHNSWFlat(dim, int(method.removeprefix("faiss-hnsw")), faiss.METRIC_INNER_PRODUCT)
    lists = int(method.removeprefix("faiss-ivf").partition("-")[0])
    index = faiss.index_factory(dim, f"IVF{lists},RaBitQ,Refine(SQ8)", faiss.METRIC_INNER_PRODUCT)
    refine: Any = faiss.downcast_index(index)
    ivf: Any = faiss.downcast_index(refine.base_index)
    ivf.cp.niter, ivf.cp.max_points_per_centroid, ivf.qb = 10, 64, 8
    index.train(fit_rows)
    return index


def exact_top_k(stats_path: Path, n: int, queries: np.ndarray) -> tuple[np.ndarray, float]:
    """(the exact float top-K rows of n vectors for each query, the seconds the searches took): a faiss
    IndexFlatIP search per chunk, merged."""
    import faiss

    searching = 0.0
    best_scores = np.full((len(queries), 0), -np.inf, np.float32)
    best_rows = np.zeros((len(queries), 0), np.int64)
    start = 0
    for chunk in gaussian_like_scifact(n, 0, stats_path):
        flat = faiss.IndexFlatIP(chunk.shape[1])
        flat.add(chunk)
        start_search = time.perf_counter()
        scores, rows = flat.search(queries, K)
        searching += time.perf_counter() - start_search
        best_scores = np.concatenate([best_scores, scores], 1)
        best_rows = np.concatenate([best_rows, rows + start], 1)
        keep = np.argsort(-best_scores, axis=1, kind="stable")[:, :K]
        best_scores, best_rows = np.take_along_axis(best_scores, keep, 1), np.take_along_axis(best_rows, keep, 1)
        start += len(chunk)
    return best_rows, searching


def run_worker(method: str, stats: Path, n: int, queries: Path, truth: Path, workdir: Path) -> list[dict]:
    args = [sys.executable, __file__, "--worker", method, str(stats), str(n), str(queries), str(truth), str(workdir)]
    done = subprocess.run(args, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def measure(sizes: list[int], methods, stats, workdir: Path) -> list[dict]:
    stats_path, queries_path = workdir / "stats.npy", workdir / "queries.npy"
    np.save(stats_path, np.vstack([stats[0][None], stats[1]]), allow_pickle=False)
    np.save(queries_path, np.concatenate(list(gaussian_like_scifact(N_QUERIES, 1, stats_path))))
    queries = np.load(queries_path)
    rows = []
    for n in sizes:
        sized = workdir / f"n{n}"  # this size's exact top-10s and indexes
        sized.mkdir(exist_ok=True)
        truth, timed = sized / "truth.npy", sized / "truth.seconds"
        if not timed.is_file():  # a kept workdir has it already
            exact, seconds = exact_top_k(stats_path, n, queries)
            np.save(truth, exact, allow_pickle=False)
            timed.write_text(repr(seconds), "utf-8")
        seconds = float(timed.read_text("utf-8"))
        for method in methods:
            if method == "float-flat" and n > FLAT_IN_RAM:  # its floats do not fit: the exact search's own time
                rows.append({"method": method, "n": n, "qps": len(queries) / seconds, "recall": 100.0, "chunked": True})
                continue
            rows.extend(run_worker(method, stats_path, n, queries_path, truth, sized))
            print(json.dumps(rows[-1]), flush=True)
    return rows


def code_bytes(method: str, dim: int = 384) -> float:
    """Bytes per vector of the codes a method holds in RAM (an IVF's row numbers included; refinement codes too)."""
    spec = method.split(" ")[0].split("/")[0]
    fixed = {"float-flat": 4 * dim, "binary": dim / 8, "itq:128": 16, "int8": dim}
    if spec in fixed:
        return fixed[spec]
    if spec.startswith("rabitq"):
        bits = int(spec.split("@")[0].partition(":")[2] or dim)
        return bits / 8 + 8 + (4 if "@" in spec else 0)  # sign bits, two float32 factors, an IVF slot's int32 row
    if spec.startswith("faiss-ivf"):
        return dim / 8 + 8 + 8 + dim  # faiss RaBitQ: bits, two float32 factors, the id; SQ8 refinement codes
    return 4 * dim + 2 * 32 * 4  # HNSW: floats and level-0 links


def rows_table(rows: list[dict]) -> str:
    """The markdown table of measured rows; q/s is compared with float Flat of the same run and size."""
    flat = {r["n"]: r["qps"] for r in rows if r["method"] == "float-flat"}
    body = [
        [r["method"] + (" (chunked exact search)" if r.get("chunked") else ""), f"{r['n']:,}",
         f"{r['ram_bytes'] / r['n']:.1f}" if "ram_bytes" in r else "-", f"{code_bytes(r['method']):g}",
         f"{r['build_seconds']:.1f}" if "build_seconds" in r else "-", _gib(r.get("build_peak_rss")),
         _gib(r.get("search_peak_rss")), _gib(r.get("search_file_rss")), f"{r['qps']:,.0f}",
         f"{r['qps'] / flat[r['n']]:.2f}" if r["n"] in flat and ONE_QUERY not in r["method"] else "-",
         f"{r['recall']:.1f}"]
        for r in rows
    ]
    return table(HEADER, body)


def _gib(value: int | None) -> str:
    return f"{value / 2**30:.2f}" if value else "-"


def write(rows: list[dict]) -> None:
    """The report: this run's rows, then the rows of the previous report that this run did not measure."""
    previous = json.loads((RESULTS / "compact_scale.json").read_text("utf-8"))
    measured = {(r["method"], r["n"]) for r in rows}
    earlier = [r for r in previous if (r["method"], r["n"]) not in measured]
    load = os.getloadavg()
    sections = [
        "`python eval/compact_scale.py`: Gaussian vectors with SciFact's mean and covariance, "
        f"{N_QUERIES:,} queries, k = {K}; two-stage rows keep rescore x k candidates (rescore 4, or 20 where the "
        "method says /20) and rescore them with int8 codes memory-mapped from disk. Each index is built in one "
        "worker process and saved; RAM is the resident growth of a fresh process opening it (faiss `read_index` "
        "for Flat, `CompactIndex.load` as `sentflow search` does: the memory-mapped codes are read from disk as "
        f"searched), measured before the first search. q/s is the best of {ROUNDS} timed passes after a warm-up "
        f"pass; every query goes in one call, except in rows that say {ONE_QUERY} (no float ratio: Flat ran "
        "batched). `SPEC@LISTS` rows are inverted files (`lists=LISTS`) searched at the probes and candidates named; "
        "faiss IVF rows refine SQ8 x 20 in RAM. Build peak RSS is the building process' VmHWM (its generator "
        "included), search peak RSS the serving process' VmHWM during that setting's passes alone (reset before "
        "each setting; the index, the libraries and any memory-mapped pages a search touched included: sentflow "
        "reads the rows of rescoring files over 1 GiB with positional reads, so none of their pages are mapped in); "
        "the next column says how much of the resident set were file pages, the libraries' code included, after "
        f"the setting's searches. Above {FLAT_IN_RAM:,} vectors, float Flat's q/s is the time of the chunked exact "
        "search (faiss IndexFlatIP over 65,536-row chunks, generation and merging excluded). Load "
        f"average at the end: {load[0]:.2f}.",
        rows_table(rows),
    ]
    if earlier:
        sections += [
            "Rows of the previous report that this run did not measure (another day's load: compare them only "
            "with each other):",
            rows_table(earlier),
        ]
    write_report("compact_scale", "Compact search at scale (10k to 10M vectors)", sections)
    kept = rows + [{**r, "earlier": True} for r in earlier]
    write_atomic(RESULTS / "compact_scale.json", lambda tmp: tmp.write_text(json.dumps(kept, indent=1), "utf-8"))


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
    parser.add_argument("--rows", type=int, help="one size (e.g. 10000000), instead of --sizes")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--smoke", action="store_true", help="2,000 vectors, seconds; writes nothing")
    parser.add_argument(
        "--workdir", help="keep the exact top-10s and the built indexes here (a folder per size), and serve them "
        "again on a rerun instead of rebuilding"
    )
    args = parser.parse_args()
    sizes = [2000] if args.smoke else [args.rows] if args.rows else [int(s) for s in args.sizes.split(",")]
    methods = args.methods.split(",")
    if args.smoke:
        rng = np.random.default_rng(0)
        mixing = rng.normal(size=(32, 32))
        stats = (rng.normal(size=32) * 0.1, mixing @ mixing.T / 32)
    else:
        stats = scifact_stats()
    smoke = ("float-flat", "binary/8", "int8", "rabitq@16", "faiss-ivf16-rabitq", "faiss-hnsw32")
    if args.workdir:
        Path(args.workdir).mkdir(parents=True, exist_ok=True)
    kept = contextlib.nullcontext(args.workdir) if args.workdir else None
    with kept or tempfile.TemporaryDirectory(dir=os.environ.get("SENTFLOW_SCALE_TMP")) as folder:
        rows = measure(sizes, smoke if args.smoke else methods, stats, Path(folder))
    if not args.smoke:
        write(rows)


if __name__ == "__main__":
    main()
