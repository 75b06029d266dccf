"""LanceDB as sentflow's scale-out store: SciFact nDCG@10 searched through a LanceDB table against sentflow's own
search, in the same run.

The corpus and queries are encoded once (all-MiniLM-L6-v2, last-avg, L2-normalised: what `sentflow index` builds
by default). Rows: sentflow's exact float search (faiss Flat), sentflow's `CompactIndex` (rabitq, default stage-1
budget) and the same with inverted lists, then `sentflow.integrations.lancedb`: the vectors (and the rabitq codes)
written to an embedded LanceDB directory, searched without an index (LanceDB's exact scan), with its IVF_FLAT
index, and with its IVF_RQ index (RaBitQ codes) with and without a refine factor. k = 10 everywhere; q/s is one
query at a time for LanceDB (its Python API searches one vector a call) and a batch for sentflow.

Run: python eval/lancedb_check.py [BEIR_DIR] [--smoke]   (default BEIR_DIR: ../shared/data/beir/scifact;
--smoke: a slice of it, prints, writes nothing)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))
import numpy as np  # noqa: E402
from report import RESULTS, beir_slice, publish, table  # noqa: E402

import sentflow  # noqa: E402
from sentflow.data_root import data_path  # noqa: E402
from sentflow.evaluation.retrieval import retrieval_metrics  # noqa: E402
from sentflow.files.io import write_atomic  # noqa: E402
from sentflow.integrations.lancedb import build_index, search_table, write_table  # noqa: E402
from sentflow.search.compact import CompactIndex  # noqa: E402
from sentflow.search.faiss_index import search_exact  # noqa: E402

SCIFACT = data_path("beir", "scifact")
K = 10
PARTITIONS = 64  # SciFact's 5,183 documents: about 80 a list
PROBES = 16


def ndcg(task, ids: list[list[str]], scores: np.ndarray) -> float:
    """nDCG@10 of a run given as document ids and scores per query."""
    run = {
        q: dict(zip(row, map(float, s), strict=False)) for q, row, s in zip(task.query_ids, ids, scores, strict=True)
    }
    return retrieval_metrics(task.qrels, run)["ndcg@10"]


def timed(search):
    start = time.perf_counter()
    result = search()
    return result, time.perf_counter() - start


def measure(task, corpus: np.ndarray, queries: np.ndarray, folder: Path) -> list[dict]:
    """One row per way of searching: method, nDCG@10, q/s."""
    rows = []

    def add(method: str, search, names=None) -> None:
        (scores, found), seconds = timed(search)
        ids = [[task.corpus_ids[i] for i in row if i >= 0] for row in found] if names is None else found
        rows.append({"method": method, "ndcg@10": ndcg(task, ids, scores), "qps": len(queries) / seconds})
        print(json.dumps(rows[-1]), flush=True)

    add("sentflow exact float (faiss Flat)", lambda: search_exact(queries, corpus, K))
    compact = CompactIndex.build(corpus, "rabitq")
    add("sentflow rabitq (default candidates)", lambda: compact.search(queries, K))
    lists = CompactIndex.build(corpus, "rabitq", lists=PARTITIONS)
    add(f"sentflow rabitq, {PARTITIONS} lists, {PROBES} probes", lambda: lists.search(queries, K, probes=PROBES))
    table_ = write_table(folder / "lancedb", "scifact", corpus, task.corpus_ids, codes=compact)
    add("LanceDB, no index (exact scan)", lambda: search_table(table_, queries, K), names=True)
    build_index(table_, "IVF_FLAT", partitions=PARTITIONS)
    add(f"LanceDB IVF_FLAT {PARTITIONS}, nprobes {PROBES}", lambda: search_table(table_, queries, K, PROBES), True)
    build_index(table_, "IVF_RQ", partitions=PARTITIONS)
    add(f"LanceDB IVF_RQ {PARTITIONS}, nprobes {PROBES}", lambda: search_table(table_, queries, K, PROBES), True)
    add(
        f"LanceDB IVF_RQ {PARTITIONS}, nprobes {PROBES}, refine 10",
        lambda: search_table(table_, queries, K, PROBES, refine=10),
        True,
    )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("beir_dir", type=Path, nargs="?", default=SCIFACT)
    parser.add_argument("--smoke", action="store_true", help="a slice of the corpus; prints, writes nothing")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = beir_slice(args.beir_dir, Path(tmp, "beir"), n_qrels=40, n_extra_docs=200) if args.smoke else None
        task = sentflow.load_beir(folder or args.beir_dir)
        encoder = sentflow.Encoder(show_progress=False, cache=str(Path(tmp, "cache")) if args.smoke else True)
        pipeline = sentflow.Pipeline(encoder, None, normalize=True)
        corpus, queries = pipeline.encode(task.corpus_texts), pipeline.encode(task.query_texts)
        rows = measure(task, corpus, queries, Path(tmp))
    body = [[r["method"], f"{r['ndcg@10']:.2f}", f"{r['qps']:,.0f}"] for r in rows]
    intro = (
        f"`python eval/lancedb_check.py`: {task.name}, {len(task.corpus_ids):,} documents, {len(queries):,} queries, "
        "all-MiniLM-L6-v2 (last-avg, L2-normalised), k = 10. sentflow searches the queries as one batch; LanceDB's "
        "Python API one query a call (embedded directory, dot distance), so its q/s is not comparable with "
        "sentflow's, its nDCG@10 is."
    )
    publish(
        "lancedb_check",
        "SciFact through LanceDB against sentflow's own search",
        [intro, table(["method", "nDCG@10", "q/s"], body)],
        args.smoke,
    )
    if not args.smoke:
        write_atomic(RESULTS / "lancedb_check.json", lambda t: t.write_text(json.dumps(rows, indent=1), "utf-8"))


if __name__ == "__main__":
    main()
