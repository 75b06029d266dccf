"""Compact search: sentflow's quantized codes beside sentence-transformers' and faiss's codes on the same vectors.

For BEIR SciFact (test qrels) and STS-B duplicate retrieval, all-MiniLM-L6-v2 with last-avg and cls pooling, no
calibration: nDCG@10 (from a search for 10 results, the user's k), recall@100 (from a search for 100), bytes per
document in RAM and on disk, and queries/s at k = 10 (measured in the same run) of none, int8, int4, binary,
itq:128, itq:256, rabitq and rabitq:BITS with the default stage-1 budget, and of the baselines (faiss's RaBitQ
among them, refined with the same budget). On SciFact last-avg, nDCG@10 against the stage-1 budget (`candidates`),
which is how the default was chosen. Also the STS-B test Spearman of the int8 / int4 codes, asymmetric (the first
sentence as a float query, the second as a decoded code), against float. Goals (SciFact last-avg, k = 10):
issue 29: <= 56 B/doc in RAM >= 64.45 and >= faiss RaBitQ + SQ8 refine in the same run, <= 24 B/doc >= 64.0;
issue 18: int8 >= 64.4 and int8/int4 STS-B within 0.3 of float.

Run: python eval/compact_search.py [--poolings last-avg,cls] [--smoke]   (--smoke: a tiny slice, seconds, writes
nothing)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import RESULTS, cpu_name, table, write_report  # noqa: E402

import sentflow  # noqa: E402
from sentflow.data_root import data_path  # noqa: E402
from sentflow.evaluation.quant_baselines import BASELINES  # noqa: E402
from sentflow.evaluation.sts import evaluate_sts  # noqa: E402
from sentflow.files.io import write_atomic  # noqa: E402
from sentflow.search.quantize import ScalarQuantizer, make_quantizer  # noqa: E402
from sentflow.tasks.sts_task import encode_sts_task, load_sts_task  # noqa: E402

SCIFACT = data_path("beir", "scifact")
SPECS = ("none", "int8", "int4", "binary", "itq:128", "itq:256", "rabitq", "rabitq:128")
POOLINGS = ("last-avg", "cls")
GOALS = (  # SciFact last-avg nDCG@10 at k = 10: (spec, most RAM bytes per document, least nDCG@10)
    ("rabitq", 56, 64.45),
    ("rabitq:128", 24, 64.0),
    ("int8", 384, 64.4),
)
RIVAL = "faiss-rabitq-sq8"  # the issue-29 goal at <= 56 B/doc must also match it in the same run
SWEEP_SPECS = ("binary", "itq:128", "rabitq", "rabitq:128")
SWEEP = (10, 20, 40, 60, 100, 200, 400)  # stage-1 budgets for 10 results


def retrieval_rows(encoder, task, specs, rescore: int, baselines=BASELINES, candidates=None, repeats=3) -> list[dict]:
    """The compact rows (sentflow's and the baselines') of one task and pooling, as `eval retrieval --json`."""
    report = sentflow.evaluate_retrieval(
        encoder,
        task,
        ["none"],
        approx_index=None,
        quantize=specs,
        rescore=rescore,
        baselines=baselines,
        repeats=repeats,
        candidates=candidates,
    )
    return [row.to_dict() for row in report.compact]


def sweep_rows(encoder, task, rescore: int, budgets=SWEEP) -> list[dict]:
    """nDCG@10 of the two-stage codes (and faiss's refined RaBitQ) at each stage-1 budget, one timing each."""
    rows = []
    for budget in budgets:
        rows += retrieval_rows(encoder, task, SWEEP_SPECS, rescore, (RIVAL,), budget, repeats=1)
    return rows


def sweep_table(rows: list[dict]) -> str:
    """One row per code, one column per budget."""
    budgets = sorted({r["candidates"] for r in rows})
    names = list(dict.fromkeys(r["baseline"] or r["quantize"] for r in rows))
    cells = {(r["baseline"] or r["quantize"], r["candidates"]): f"{r['ndcg@10']:.2f}" for r in rows}
    body = [[name, *(cells.get((name, b), "") for b in budgets)] for name in names]
    return table(["codes", *(f"{b} cand." for b in budgets)], body)


def sts_rows(encoder, data_dir: str | None) -> list[list[str]]:
    """STS-B test Spearman of float vectors and of int8 / int4 codes (asymmetric), codes fitted on every split."""
    encoded = encode_sts_task(encoder, load_sts_task("sts-b", "all", data_dir))
    first, second = encoded.pair_vectors("test")
    gold = encoded.task.pairs("test").scores
    base = evaluate_sts(first, second, gold)["spearman"]
    rows = [[encoder.pooling, "float", f"{base:.2f}", ""]]
    for spec in ("int8", "int4"):
        codes = make_quantizer(spec).fit(encoded.fit_rows)
        assert isinstance(codes, ScalarQuantizer)
        score = evaluate_sts(first, codes.decode(codes.encode(second)), gold)["spearman"]
        rows.append([encoder.pooling, spec, f"{score:.2f}", f"{score - base:+.2f}"])
    return rows


def markdown_rows(rows: list[dict]) -> list[list[str]]:
    """A table row per code: name, bytes, quality, speed."""
    out = []
    for r in rows:
        name = r["baseline"] or f"sentflow {r['quantize']}"
        cells = [name, f"{r['ram_bytes_per_doc']:g}", f"{r['disk_bytes_per_doc']:g}", f"{r['ndcg@10']:.2f}"]
        budget = "" if r["candidates"] is None else str(r["candidates"])
        out.append([*cells, f"{r['recall@100']:.2f}", budget, f"{r['qps']:,.0f}"])
    return out


def goal_lines(rows: list[dict]) -> list[str]:
    """Met / missed for each goal, from the SciFact last-avg rows."""
    ours = {r["quantize"]: r for r in rows if r["baseline"] is None}
    rival = next((r["ndcg@10"] for r in rows if r["baseline"] == RIVAL), None)
    lines = []
    for spec, most_bytes, goal in GOALS:
        if spec not in ours:
            continue
        row = ours[spec]
        met = row["ndcg@10"] >= goal and row["ram_bytes_per_doc"] <= most_bytes
        text = (
            f"- {spec} ({row['ram_bytes_per_doc']:g} B/doc in RAM, goal <= {most_bytes}): nDCG@10 {row['ndcg@10']:.2f}"
        )
        text += f" against a goal of {goal}"
        if spec == GOALS[0][0] and rival is not None:
            met = met and row["ndcg@10"] >= rival
            text += f" and {RIVAL}'s {rival:.2f}"
        lines.append(f"{text} ({'met' if met else 'MISSED'})")
    return lines


def measure(tasks: dict[str, str], specs, rescore: int, data_dir: str | None, model: str, poolings) -> dict:
    results: dict = {"cpu": cpu_name(), "retrieval": {}, "sweep": [], "sts": []}
    for pooling in poolings:
        encoder = sentflow.Encoder(model, pooling, show_progress=False)
        for name, task in tasks.items():
            results["retrieval"][f"{name} {pooling}"] = retrieval_rows(encoder, task, specs, rescore)
            if (name, pooling) == ("scifact", "last-avg"):
                results["sweep"] = sweep_rows(encoder, task, rescore)
        if "sts-b" in tasks:
            results["sts"] += sts_rows(encoder, data_dir)
    return results


def write(results: dict) -> None:
    header = ["codes", "RAM B/doc", "disk B/doc", "nDCG@10", "R@100", "candidates", "q/s"]
    sections = [
        f"`python eval/compact_search.py` on {results['cpu']}. No calibration; vectors L2-normalised; codes fitted on "
        "the corpus (no labels). nDCG@10 scores a search for 10 results (k = 10, what `sentflow search` returns by "
        "default), recall@100 a search for 100. Two-stage codes (binary, itq, rabitq) rank every code in RAM by "
        "their inner-product estimate, keep `candidates` (the default stage-1 budget at k = 10, "
        "`stage1_candidates`) and rescore them with int8 codes read from a memory-mapped file (the disk column); "
        "int8/int4 scan every code, float query against decoded code. Baselines run on the same vectors in the "
        "same run; the refining ones (st-ubinary-rescore, faiss-rabitq-sq8, whose SQ8 codes are held in RAM) "
        "rescore the same number of candidates. q/s is for 10 results a query on 2 cores of a shared machine.",
        "## Goals (SciFact, last-avg, k = 10)\n\n" + "\n".join(goal_lines(results["retrieval"]["scifact last-avg"])),
    ]
    for name, rows in results["retrieval"].items():
        sections.append(f"## {name}\n\n" + table(header, markdown_rows(rows)))
        if name == "scifact last-avg" and results["sweep"]:
            title = "### nDCG@10 at k = 10 against the stage-1 budget (SciFact, last-avg)"
            sections.append(f"{title}\n\n" + sweep_table(results["sweep"]))
    sts_header = ["pooling", "codes", "STS-B Spearman", "vs float"]
    title = "## STS-B test Spearman, asymmetric codes (first sentence float, second a decoded code)"
    if results["sts"]:
        sections.append(f"{title}\n\n" + table(sts_header, results["sts"]))
    write_report("compact_search", "Compact search: quantized codes against float and the baselines", sections)
    text = json.dumps(results, indent=1, allow_nan=False)
    write_atomic(RESULTS / "compact_search.json", lambda tmp: tmp.write_text(text, encoding="utf-8"))


def smoke() -> None:
    """A tiny STS-B slice and the tiny sentence budget: checks the script end to end, writes nothing."""
    with tempfile.TemporaryDirectory() as folder:
        from sentflow.tasks.sts import SPLITS, packaged_stsb_dir

        for split in SPLITS:
            lines = (packaged_stsb_dir() / f"sts-{split}.csv").read_text(encoding="utf-8").splitlines()[:150]
            (Path(folder) / f"sts-{split}.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
        encoder = sentflow.Encoder(show_progress=False)
        task = sentflow.load_retrieval_task("sts-b", "test", folder)
        smoke_specs, smoke_baselines = ("int8", "binary", "itq:32", "rabitq", "rabitq:32"), ("st-ubinary-rescore",)
        rows = retrieval_rows(encoder, task, smoke_specs, 4, (*smoke_baselines, RIVAL, "faiss-rabitq2"))
        print(table(["codes", "RAM B/doc", "disk B/doc", "nDCG@10", "R@100", "candidates", "q/s"], markdown_rows(rows)))
        print(sweep_table(sweep_rows(encoder, task, 4, (20, 40))))
        print(table(["pooling", "codes", "STS-B Spearman", "vs float"], sts_rows(encoder, folder)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="a tiny slice in seconds; writes nothing")
    parser.add_argument("--scifact", default=str(SCIFACT), help="the BEIR SciFact folder")
    parser.add_argument("--model", default="all-MiniLM-L6-v2")
    parser.add_argument("--rescore", type=int, default=4)
    parser.add_argument("--poolings", default=",".join(POOLINGS), help="comma-separated poolings to measure")
    parser.add_argument("--tasks", default="scifact,sts-b", help="comma-separated: scifact, sts-b (and its Spearman)")
    args = parser.parse_args()
    if args.smoke:
        smoke()
        return
    if not Path(args.scifact, "corpus.jsonl").is_file():
        parser.error(f"{args.scifact}: no BEIR SciFact folder (pass --scifact)")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    poolings = [p for p in args.poolings.split(",") if p]
    wanted = args.tasks.split(",")
    tasks = {name: task for name, task in {"scifact": args.scifact, "sts-b": "sts-b"}.items() if name in wanted}
    if "last-avg" not in poolings or "scifact" not in tasks:
        parser.error("--poolings must include last-avg and --tasks scifact (the goals are measured on them)")
    write(measure(tasks, SPECS, args.rescore, None, args.model, poolings))


if __name__ == "__main__":
    main()
