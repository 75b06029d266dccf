"""`sentflow.tune` on the embedded model and on GloVe: what selection on dev labels chooses, and what it scores on test.

Parts (each writes eval/results/tune_PART.md; encodings are cached, so re-running only re-fits):
  sts       STS-B: per pooling, the setting chosen on dev beside none and full whitening (test Spearman x100)
  transfer  the STS-B choice refitted without labels on STS12-16, STS-B and SICK-R: SentEval "all" and "wmean"
  scifact   BEIR SciFact, chosen on nDCG@10 of the train qrels within 384 and 128 dimensions, test nDCG@10
  glove     GloVe 6B 50-d averages (never tuned for similarity): STS-B selection and the 7 tasks
  diagnose  sentflow.evaluation.diagnostics of cls on STS-B before/after whitening: numbers and the docs' two plots
Run: python eval/tune_table.py sts transfer scifact glove diagnose [--poolings cls,last-avg,first-last-avg] [--smoke]
--smoke: parts sts (without BERT-flow) and diagnose, last-avg, on an 80-line STS-B slice with a temporary cache and
plot folder; prints the tables, writes nothing.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import RESULTS, publish, sts_slice, table, write_report  # noqa: E402
from sts_tasks import TASKS  # noqa: E402  (the 7 tasks and their folders under $SENTFLOW_DATA)

import sentflow  # noqa: E402
from sentflow.data_root import data_root  # noqa: E402
from sentflow.encoding.encoder import GloveEncoder  # noqa: E402
from sentflow.evaluation.diagnostics import diagnose, plot_cosines, plot_spectrum, task_vectors  # noqa: E402
from sentflow.evaluation.tuning import Setting, TuneReport, transfer, tune  # noqa: E402

DATA = data_root()
PROTOCOL = (
    "Every candidate is fitted without labels on the task's sentences (train+dev+test for STS-B, the corpus for "
    "SciFact), chosen on the selection labels only, then scored on test. Candidates: none; whitening with power "
    "in {0, 0.1, 0.2, 0.25, 0.3, 0.4, 0.5} x k in {d, 256, 128, 64} (k <= d); BERT-flow (sentflow defaults, seed 0)."
)


def fmt(value: float) -> str:
    return f"{value:.2f}"


def tune_rows(label: str, report: TuneReport) -> list[list[str]]:
    """The chosen setting beside none and full whitening: selection score and test score."""
    base = report.baseline()
    rows = [[label, "selected: " + report.selected.setting.label, fmt(report.selected.dev), fmt(report.selected.test)]]
    rows += [[label, name, fmt(c.dev), fmt(c.test)] for name, c in base.items()]
    return rows


def encoder_for(pooling: str, cache: str | bool = True):
    return GloveEncoder() if pooling == "glove" else sentflow.Encoder(pooling=pooling, cache=cache)


def part_sts(poolings: list[str], smoke: Path | None = None) -> None:
    """`smoke`: a folder holding an STS-B slice; then no BERT-flow candidate, a cache there, the report printed."""
    rows, wins = [], []
    for pooling in poolings:
        if smoke is None:
            report = tune(encoder_for(pooling), "sts-b")
        else:
            report = tune(encoder_for(pooling, str(smoke / "cache")), "sts-b", with_flow=False, data_dir=smoke)
        rows += tune_rows(pooling, report)
        none = report.baseline()["none"].test
        best_test = max(c.test for c in report.candidates)
        wins.append(
            f"- {pooling}: selected {fmt(report.selected.test)} vs none {fmt(none)} "
            f"(goal: >= {fmt(none - 0.2)}{', and above none' if best_test > none else ''}; "
            f"best test score of any candidate {fmt(best_test)})"
        )
    publish(
        "tune_sts",
        "sentflow.tune on STS-B: chosen on dev Spearman, reported on test (Spearman x100)",
        [PROTOCOL, table(["pooling", "setting", "dev", "test"], rows), "\n".join(wins)],
        smoke is not None,
    )


def transfer_rows(pooling: str, tasks: dict[str, str | None]) -> list[list]:
    encoder = encoder_for(pooling)
    chosen = tune(encoder, "sts-b").selected.setting
    dim = encoder.dim
    settings = {"none": Setting("none", dim), "whitening": Setting("whitening", dim, 0.5), "selected": chosen}
    rows = []
    for name, setting in settings.items():
        scores = [transfer(encoder, setting, task, DATA / folder if folder else None) for task, folder in tasks.items()]
        label = f"{name}: {setting.label}" if name == "selected" else name
        rows.append([pooling, label, scores])
    return rows


def part_transfer(poolings: list[str]) -> None:
    rows = []
    for pooling in poolings:  # the table is rewritten after each pooling, so a long run leaves what it finished
        rows += transfer_rows(pooling, TASKS)
        write_transfer(rows)


def write_transfer(rows: list[list]) -> None:
    sections = [
        "The setting chosen on STS-B dev (as in tune_sts.md), none and full whitening, each refitted without labels "
        "on every task's own sentences (all splits where a task has several). `all`: Spearman over all pairs of a "
        "task at once (STS12-16 subsets concatenated); `wmean`: SentEval's pair-weighted mean of the per-subset "
        "Spearman (the same as `all` for STS-B and SICK-R). avg: mean over the 7 tasks."
    ]
    for agg in ("all", "wmean"):
        body = []
        for pooling, label, scores in rows:
            values = [getattr(s, agg) for s in scores]
            body.append([pooling, label, *map(fmt, values), fmt(statistics.mean(values))])
        sections += [f"### {agg}", table(["pooling", "setting", *TASKS, "avg"], body)]
    write_report("tune_transfer", "STS-B choice transferred to STS12-16 and SICK-R (test Spearman x100)", sections)


def part_scifact(poolings: list[str]) -> None:
    rows = []
    for pooling in poolings:
        encoder = encoder_for(pooling)
        for budget in (384, 128):
            report = tune(encoder, DATA / "beir" / "scifact", select_on="train", max_dim=budget)
            rows += [[f"{pooling}, K={budget}", *row[1:]] for row in tune_rows(pooling, report)]
    write_report(
        "tune_scifact",
        "sentflow.tune on BEIR SciFact: chosen on train-qrels nDCG@10 (809 queries), test nDCG@10 (300 queries)",
        [
            PROTOCOL + " K is the dimension budget (`max_dim`): only settings with at most K dimensions are "
            "eligible; none and full whitening are shown whatever K is. Flat index, cosine similarity, x100.",
            table(["pooling, budget", "setting", "train nDCG@10", "test nDCG@10"], rows),
        ],
    )


def part_glove(_: list[str]) -> None:
    part_sts_rows = tune_rows("glove-6b-50d", tune(GloveEncoder(), "sts-b"))
    body = []
    for _, label, scores in transfer_rows("glove", TASKS):
        values = [s.all for s in scores]
        body.append(["glove-6b-50d", label, *map(fmt, values), fmt(statistics.mean(values))])
    write_report(
        "tune_glove",
        "GloVe 6B 50-d word-vector averages (never tuned for similarity), Spearman x100",
        [
            "Sentence vector: mean of the GloVe vectors of the known lower-cased tokens (sentflow.encoding.glove). "
            + PROTOCOL.replace("{d, 256, 128, 64}", "{50}"),
            "### STS-B: chosen on dev, test beside none and full whitening",
            table(["model", "setting", "dev", "test"], part_sts_rows),
            "### The STS-B choice on the 7 tasks (`all`)",
            table(["model", "setting", *TASKS, "avg"], body),
        ],
    )


def part_diagnose(poolings: list[str], smoke: Path | None = None) -> None:
    """cls and last-avg (`smoke`: an STS-B slice folder; then the given poolings, plots and cache there, printed)."""
    rows = []
    for pooling in ("cls", "last-avg") if smoke is None else poolings:
        cache = True if smoke is None else str(smoke / "cache")
        vectors, similar = task_vectors(sentflow.Encoder(pooling=pooling, cache=cache), "sts-b", smoke)
        diagnosis = diagnose(vectors, similar, sentflow.Whitening().fit(vectors).transform, "whitening")
        for stage, stats in (("before", diagnosis.before), ("after whitening", diagnosis.after)):
            assert stats is not None and stats.similar_cosines is not None, "diagnose ran without pairs"
            rows.append(
                [
                    pooling,
                    stage,
                    f"{stats.anisotropy:.3f}",
                    f"{stats.effective_rank:.1f}",
                    f"{100 * stats.top1_share:.1f}%",
                    f"{100 * stats.top10_share:.1f}%",
                    f"{stats.similar_cosines.mean():.3f}",
                ]
            )
        if pooling == "cls" or smoke is not None:
            title, out = f"all-MiniLM-L6-v2 {pooling}, STS-B", RESULTS if smoke is None else smoke
            plot_spectrum(diagnosis, out / f"diagnose_{pooling}_spectrum.png", title)
            plot_cosines(diagnosis, out / f"diagnose_{pooling}_cosines.png", title)
    publish(
        "tune_diagnose",
        "sentflow.evaluation.diagnostics on STS-B (17,256 sentences), before and after whitening fitted on them",
        [
            "Anisotropy: mean cosine of 10,000 seeded random pairs. Effective rank: exp(entropy) of the normalised "
            "covariance eigenvalues. Similar pairs: the 338 STS-B test pairs with gold >= 4. Plots: "
            "diagnose_cls_spectrum.png, diagnose_cls_cosines.png.",
            table(
                ["pooling", "vectors", "anisotropy", "effective rank", "top-1 var", "top-10 var", "similar cos"], rows
            ),
        ],
        smoke is not None,
    )


PARTS = {
    "sts": part_sts,
    "transfer": part_transfer,
    "scifact": part_scifact,
    "glove": part_glove,
    "diagnose": part_diagnose,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("parts", nargs="*", metavar="PART", help=", ".join(PARTS) + " (none with --smoke)")
    parser.add_argument("--poolings", default="cls,last-avg,first-last-avg")
    parser.add_argument("--smoke", action="store_true", help="sts and diagnose on an STS-B slice; writes nothing")
    args = parser.parse_args()
    if args.smoke:
        with tempfile.TemporaryDirectory() as tmp:
            folder = sts_slice(Path(tmp), 80)
            part_sts(["last-avg"], folder)
            part_diagnose(["last-avg"], folder)
        return
    if not args.parts or set(args.parts) - set(PARTS):
        parser.error(f"name one or more parts among: {', '.join(PARTS)}")
    for part in args.parts:
        PARTS[part](args.poolings.split(","))


if __name__ == "__main__":
    main()
