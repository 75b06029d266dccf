"""Retrieval with all-MiniLM-L6-v2 (last-avg and cls): none / whitening / pca at 384, 256, 128, 64 dims, scored on
STS-B duplicates and BEIR SciFact, with index bytes and queries/s of an exact (Flat) and an HNSW32 index measured in
the same run. Checks the evaluator against MTEB's published SciFact nDCG@10 for the model (64.51).

Encodings are cached, so re-runs only re-fit and re-index. Run: python eval/retrieval_table.py [--tasks ...] [--smoke]
--smoke: last-avg, 32 dims (the SciFact slice has fewer documents than 384), one timing repeat, on a 100-line
STS-B slice and a slice of SciFact (skipped when absent), temporary cache; prints the tables, writes nothing.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import RESULTS, beir_slice, publish, sts_slice, table, write_text  # noqa: E402

import sentflow  # noqa: E402
from sentflow.data_root import data_path  # noqa: E402
from sentflow.evaluation.retrieval import METRICS, evaluate_retrieval  # noqa: E402
from sentflow.tasks.retrieval import RetrievalTask  # noqa: E402

SCIFACT = data_path("beir", "scifact")
TASKS = {"sts-b": "sts-b", "scifact": str(SCIFACT)}
TITLES = {
    "sts-b": "STS-B duplicate retrieval (test pairs with gold >= 4.0; corpus = every distinct STS-B sentence)",
    "scifact": "BEIR SciFact (test qrels; documents embedded as title + text)",
}
MTEB_SCIFACT_NDCG10 = 64.51  # MTEB leaderboard, sentence-transformers/all-MiniLM-L6-v2, SciFact test nDCG@10
POOLINGS = ("last-avg", "cls")
DIMS = (384, 256, 128, 64)


def rows_of(report: dict) -> list[list[str]]:
    """Markdown rows: quality, then the exact and HNSW index costs, relative to the `none` row."""
    base = report["results"][0]
    rows = []
    for r in report["results"]:
        rows.append(
            [
                r["method"],
                r["dim"],
                *(f"{r[m]:.2f}" for m in METRICS),
                f"{r['ndcg@10'] - base['ndcg@10']:+.2f}",
                f"{r['index_bytes'] / 2**20:.1f}",
                f"{r['index_bytes'] / base['index_bytes']:.2f}",
                f"{r['qps']:.0f}",
                f"{r['approx_ndcg@10']:.2f}",
                f"{r['approx_recall@100']:.2f}",
                f"{r['approx_index_bytes'] / 2**20:.1f}",
                f"{r['approx_build_seconds']:.1f}",
                f"{r['approx_qps']:.0f}",
            ]
        )
    return rows


HEADER = [
    "method",
    "dim",
    *METRICS,
    "Δ nDCG@10",
    "Flat MiB",
    "Flat size ratio",
    "Flat q/s",
    "HNSW nDCG@10",
    "HNSW R@100",
    "HNSW MiB",
    "HNSW build s",
    "HNSW q/s",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    parser.add_argument("--poolings", nargs="+", default=list(POOLINGS))
    parser.add_argument("--smoke", action="store_true", help="slices of the data, 32 dims, last-avg; writes nothing")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        if args.smoke:
            stsb = sts_slice(Path(tmp), 100)
            tasks: dict[str, str | RetrievalTask] = {"sts-b": sentflow.load_retrieval_task("sts-b", "test", stsb)}
            if (SCIFACT / "corpus.jsonl").is_file():
                tasks["scifact"] = sentflow.load_beir(beir_slice(SCIFACT, Path(tmp)))
            run(tasks, ["last-avg"], (32,), 1, str(Path(tmp, "cache")))
        else:
            run({name: TASKS[name] for name in args.tasks}, args.poolings, DIMS, 5, True)


def run(
    tasks: dict[str, str | RetrievalTask], poolings: list[str], dims: tuple[int, ...], repeats: int, cache: str | bool
) -> None:
    """Each task's tables (a task name, folder or loaded task); a temporary `cache` means --smoke: print only."""
    smoke = cache is not True
    for name, task in tasks.items():
        sections, reports = [], []
        for pooling in poolings:
            encoder = sentflow.Encoder(pooling=pooling, max_length=256, cache=cache, show_progress=not smoke)
            report = evaluate_retrieval(
                encoder, task, dims=dims, index="Flat", approx_index="HNSW32", repeats=repeats
            )
            data = report.to_dict()
            reports.append(data)
            head = f"### {pooling} ({data['n_queries']} queries, {data['n_corpus']} documents)"
            sections += [head, table(HEADER, rows_of(data))]
            if name == "scifact" and pooling == "last-avg":
                ours = data["results"][0]["ndcg@10"]
                verdict = "within" if abs(ours - MTEB_SCIFACT_NDCG10) <= 0.3 else "NOT within"
                sections.append(
                    f"MTEB check: `none`, last-avg (the model's own mean pooling), max_length 256: nDCG@10 = "
                    f"{ours:.2f} vs MTEB's published {MTEB_SCIFACT_NDCG10} ({ours - MTEB_SCIFACT_NDCG10:+.2f}, "
                    f"{verdict} 0.3)."
                )
        intro = (
            "Cosine similarity for every method (L2 normalisation after the calibration); calibrations fitted on the "
            "corpus vectors only. `pca` = centring + rotation (power 0), `whitening` = BERT-whitening (power 0.5), "
            "both cut to `dim`. Metrics x100 by pytrec_eval on the top 100 per query. Flat = exact inner-product "
            "search; HNSW32 = faiss defaults (efSearch 16). Index sizes are faiss.serialize_index lengths and "
            "include the 384 x dim transform. q/s: median of 5 timed batch searches of all queries, on a shared, "
            "busy machine: read ratios within a table, not absolute values."
        )
        slug = name.replace("-", "")
        publish(f"retrieval_{slug}", TITLES[name], [intro, *sections], smoke)
        if not smoke:
            write_text(RESULTS / f"retrieval_{slug}.json", json.dumps(reports, indent=1) + "\n")


if __name__ == "__main__":
    main()
