"""Whitening across the STS tasks (STS12-16, STS-B, SICK-R) with the embedded model, Spearman x100.

Each calibration is fitted without labels on its own task's sentences (the "target" protocol).
Needs the SentEval STS and SICK folders: python eval/sts_tasks.py [--data-dir ../shared/data]
`--poolings` may name `glove`: GloVe 6B 50-d word-vector averages (sentflow.encoding.glove), an embedding never
tuned for similarity, scored with none, whitening and BERT-flow (it has 50 dimensions, so no k=256 row).
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import table, write_report  # noqa: E402

import sentflow  # noqa: E402
from sentflow.encoding.glove import GloveEncoder  # noqa: E402
from sentflow.evaluation.compare import compare  # noqa: E402

TASKS = {
    "sts12": "sts12-16",
    "sts13": "sts12-16",
    "sts14": "sts12-16",
    "sts15": "sts12-16",
    "sts16": "sts12-16",
    "sts-b": None,
    "sick-r": "sick",
}
SETTINGS = [("none", "none", None), ("whitening", "whitening", None), ("whitening k=256", "whitening", 256)]
GLOVE_SETTINGS = [("none", "none", None), ("whitening", "whitening", None), ("BERT-flow", "flow", None)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data-dir", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    parser.add_argument("--poolings", default="cls,last-avg,glove")
    args = parser.parse_args()
    rows = []
    for pooling in args.poolings.split(","):
        glove = pooling == "glove"
        encoder = GloveEncoder() if glove else sentflow.Encoder(pooling=pooling)
        for label, method, dim in GLOVE_SETTINGS if glove else SETTINGS:
            scores = []
            for task, folder in TASKS.items():
                data_dir = str(args.data_dir / folder) if folder else None
                scores.append(compare(encoder, task, [method], dim=dim, data_dir=data_dir).results[0].spearman)
            name = "glove-6b-50d (avg)" if glove else pooling
            rows.append([name, label, *(f"{s:.2f}" for s in scores), f"{statistics.mean(scores):.2f}"])
    write_report(
        "sts_tasks",
        "STS12-16, STS-B, SICK-R test, all-MiniLM-L6-v2 (embedded) and GloVe averages, Spearman x100",
        [
            "Calibration fitted without labels on each task's own sentences (all splits where a task has several). "
            "STS12-16: all subsets of a year concatenated (SentEval layout, STS13 without SMT, unscored pairs "
            "skipped).",
            table(["pooling", "method", *TASKS, "avg"], rows),
        ],
    )


if __name__ == "__main__":
    main()
