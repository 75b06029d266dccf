"""MTEB's own evaluator on a sentflow pipeline, offline: SciFact-style BEIR retrieval (nDCG@10) and STS-B (cosine
Spearman) through `mteb.evaluate`, against `sentflow eval retrieval` / `sentflow eval sts-b` in the same run, with
no calibration and with whitening (fitted on the corpus for retrieval, on every STS-B sentence for STS, as the
sentflow commands do). With no calibration the figures are also checked against MTEB's published ones for
all-MiniLM-L6-v2.

Run: python eval/mteb_check.py BEIR_DIR [--json] [--smoke]   (--smoke: a slice of the data, whitening cut
to 32 dims, nothing written)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing is downloaded: tasks and model are local
sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import RESULTS, table, write_report  # noqa: E402

import sentflow  # noqa: E402
from sentflow.files.io import write_atomic  # noqa: E402
from sentflow.integrations import mteb as sentflow_mteb  # noqa: E402
from sentflow.tasks.sts import SPLITS, packaged_stsb_dir  # noqa: E402
from sentflow.tasks.sts_task import encode_sts_task, load_sts_task  # noqa: E402

PUBLISHED = {"ndcg@10": 64.51, "stsb_spearman": 82.03}  # MTEB leaderboard, sentence-transformers/all-MiniLM-L6-v2
TOLERANCE = 0.01
METHODS = ("none", "whitening")
SMOKE_DIM = 32  # the smoke slice has fewer documents than the model has dimensions: whiten a 32-d cut


def whitening_on(encoder, texts: list[str], dim: int | None) -> sentflow.Pipeline:
    """A whitening pipeline (cut to `dim`) fitted on the vectors of `texts`, compared by cosine (L2-normalised)."""
    whitening = sentflow.Whitening(n_components=dim, power=0.5).fit(encoder.encode(texts))
    return sentflow.Pipeline(encoder, whitening, normalize=True)


def retrieval_figures(encoder, beir_dir: Path, dim: int | None) -> dict[str, dict[str, float]]:
    """nDCG@10 per method: `sentflow eval retrieval` (faiss Flat) and mteb.evaluate on the same folder."""
    report = sentflow.evaluate_retrieval(encoder, beir_dir, METHODS, dims=(dim,), approx_index=None, repeats=1)
    task = sentflow.load_beir(beir_dir)
    pipelines = {
        "none": sentflow.Pipeline(encoder, normalize=True),
        "whitening": whitening_on(encoder, task.corpus_texts, dim),
    }
    figures = {}
    for row, method in zip(report.results, METHODS, strict=True):
        mteb_scores = sentflow_mteb.evaluate(pipelines[method], [sentflow_mteb.beir_task(beir_dir)])
        figures[method] = {"mteb_ndcg@10": mteb_scores[task.name], "sentflow_ndcg@10": row.main.metrics["ndcg@10"]}
    return figures


def sts_figures(encoder, stsb_dir: Path | None, dim: int | None) -> dict[str, dict[str, float]]:
    """STS-B test Spearman per method: `sentflow eval sts-b` (fitted on every split's sentences) and mteb."""
    report = sentflow.compare(encoder, "sts-b", METHODS, dim=dim, data_dir=str(stsb_dir) if stsb_dir else None)
    fit_rows = encode_sts_task(encoder, load_sts_task("sts-b", "all", stsb_dir)).fit_rows  # as `sentflow eval`
    whitening = sentflow.Whitening(n_components=dim, power=0.5).fit(fit_rows)
    pipelines = {"none": sentflow.Pipeline(encoder), "whitening": sentflow.Pipeline(encoder, whitening)}
    figures = {}
    for row, method in zip(report.results, METHODS, strict=True):
        mteb_scores = sentflow_mteb.evaluate(pipelines[method], [sentflow_mteb.stsb_task("test", stsb_dir)])
        figures[method] = {"mteb_stsb_spearman": mteb_scores["STSBenchmark"], "sentflow_stsb_spearman": row.spearman}
    return figures


def smoke_data(
    beir_dir: Path, out: Path, n_qrels: int = 8, n_extra_docs: int = 40, n_pairs: int = 60
) -> tuple[Path, Path]:
    """A small BEIR folder (the first qrels lines, their queries and documents plus the first other documents)
    and the first STS-B pairs of each split, written under `out`: (beir folder, STS-B folder)."""
    qrels_lines = (beir_dir / "qrels" / "test.tsv").read_text(encoding="utf-8").splitlines()[: n_qrels + 1]
    judged = [line.split("\t") for line in qrels_lines[1:]]
    docs = {d for _, d, _ in judged}
    keep_docs = _keep_jsonl(beir_dir / "corpus.jsonl", lambda i, doc: doc in docs or i < n_extra_docs)
    keep_queries = _keep_jsonl(beir_dir / "queries.jsonl", lambda i, query: query in {q for q, _, _ in judged})
    small = out / beir_dir.name
    (small / "qrels").mkdir(parents=True)
    (small / "corpus.jsonl").write_text(keep_docs, encoding="utf-8")
    (small / "queries.jsonl").write_text(keep_queries, encoding="utf-8")
    (small / "qrels" / "test.tsv").write_text("\n".join(qrels_lines) + "\n", encoding="utf-8")
    stsb = out / "stsb"
    stsb.mkdir()
    for split in SPLITS:
        lines = (packaged_stsb_dir() / f"sts-{split}.csv").read_text(encoding="utf-8").splitlines()[:n_pairs]
        (stsb / f"sts-{split}.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return small, stsb


def _keep_jsonl(path: Path, keep) -> str:
    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return "".join(line + "\n" for i, line in enumerate(lines) if keep(i, json.loads(line)["_id"]))


def measure(beir_dir: Path, stsb_dir: Path | None, model: str, dim: int | None = None) -> dict:
    """Both figures of both methods (whitening cut to `dim`), and whether mteb and sentflow agree to TOLERANCE."""
    encoder = sentflow.Encoder(model, show_progress=False)
    retrieval, sts = retrieval_figures(encoder, beir_dir, dim), sts_figures(encoder, stsb_dir, dim)
    result = {m: {**retrieval[m], **sts[m]} for m in METHODS}
    for figures in result.values():
        figures["agree"] = all(
            abs(figures[f"mteb_{k}"] - figures[f"sentflow_{k}"]) <= TOLERANCE for k in ("ndcg@10", "stsb_spearman")
        )
    return result


def write_results(result: dict, beir_dir: Path) -> None:
    """eval/results/mteb_check.md and .json."""
    rows = []
    for method in METHODS:
        f = result[method]
        rows.append([method, *(f"{f[k]:.3f}" for k in ("mteb_ndcg@10", "sentflow_ndcg@10")),
                     *(f"{f[k]:.3f}" for k in ("mteb_stsb_spearman", "sentflow_stsb_spearman")), f["agree"]])
    header = ["method", "mteb nDCG@10", "sentflow nDCG@10", "mteb STS-B Spearman", "sentflow STS-B Spearman",
              f"agree to {TOLERANCE}"]
    none = result["none"]
    intro = (
        f"all-MiniLM-L6-v2 (last-avg, max_length 256) on BEIR {beir_dir.name} (test qrels) and STS-B test, through "
        "`mteb.evaluate` with `sentflow.integrations.mteb` (MtebModel, beir_task, stsb_task; no download, no "
        "result cache) and through sentflow's own evaluators (`sentflow eval retrieval` with a Flat index, "
        "`sentflow eval sts-b`). Whitening: BERT-whitening (power 0.5, all 384 dims) fitted on the corpus for "
        "retrieval and on every STS-B sentence (train, dev, test) for STS; cosine similarity throughout."
    )
    published = (
        f"MTEB's published figures for the model: SciFact nDCG@10 {PUBLISHED['ndcg@10']}, STSBenchmark Spearman "
        f"{PUBLISHED['stsb_spearman']}; measured through mteb with no calibration: {none['mteb_ndcg@10']:.2f} and "
        f"{none['mteb_stsb_spearman']:.2f}."
    )
    write_report("mteb_check", "MTEB's evaluator vs sentflow's, offline", [intro, table(header, rows), published])
    text = json.dumps(result, indent=1) + "\n"
    write_atomic(RESULTS / "mteb_check.json", lambda tmp: tmp.write_text(text, encoding="utf-8"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("beir_dir", type=Path, help="A BEIR folder (corpus.jsonl, queries.jsonl, qrels/test.tsv).")
    parser.add_argument("--json", action="store_true", help="Print the figures as JSON on stdout only.")
    parser.add_argument("--smoke", action="store_true", help="A slice of the data; nothing is written.")
    parser.add_argument("--model", default="all-MiniLM-L6-v2")
    args = parser.parse_args()
    if args.smoke:
        with tempfile.TemporaryDirectory() as tmp:
            result = measure(*smoke_data(args.beir_dir, Path(tmp)), args.model, SMOKE_DIM)
    else:
        result = measure(args.beir_dir, None, args.model)
        result["published"] = PUBLISHED
        if not args.json:
            write_results(result, args.beir_dir)
    if args.json:
        print(json.dumps(result, allow_nan=False))


if __name__ == "__main__":
    main()
