"""Whitening across the STS tasks (STS12-16, STS-B, SICK-R) with the embedded model, Spearman x100.

Each calibration is fitted without labels on its own task's sentences (the "target" protocol).
Needs the SentEval STS and SICK folders: python eval/sts_tasks.py [--data-dir DIR (default $SENTFLOW_DATA)] [--smoke]
(--smoke: last-avg only, on a 80-line slice of the packaged STS-B, seconds; writes nothing).
`--poolings` may name `glove`: GloVe 6B 50-d word-vector averages (sentflow.encoding.glove), an embedding never
tuned for similarity, scored with none, whitening and BERT-flow (it has 50 dimensions, so no k=256 row).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import publish, sts_slice, table  # noqa: E402

import sentflow  # noqa: E402
from sentflow.data_root import data_root  # noqa: E402
from sentflow.encoding.encoder import GloveEncoder  # noqa: E402
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


def table_rows(tasks: dict[str, str | None], poolings: list[str], cache: str | bool = True) -> list[list[str]]:
    """One row per pooling and setting: each task's test Spearman x100 (data folder None = packaged), and the mean.

    `cache`: the encoders' embedding cache (True: the default folder; --smoke passes a temporary one)."""
    rows = []
    for pooling in poolings:
        glove = pooling == "glove"
        encoder = GloveEncoder() if glove else sentflow.Encoder(pooling=pooling, cache=cache, show_progress=False)
        for label, method, dim in GLOVE_SETTINGS if glove else SETTINGS:
            scores = [
                compare(encoder, task, [method], dim=dim, data_dir=data_dir).results[0].spearman
                for task, data_dir in tasks.items()
            ]
            name = "glove-6b-50d (avg)" if glove else pooling
            rows.append([name, label, *(f"{s:.2f}" for s in scores), f"{statistics.mean(scores):.2f}"])
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data-dir", type=Path, default=data_root(), help="default: $SENTFLOW_DATA")
    parser.add_argument("--poolings", default="cls,last-avg,glove")
    parser.add_argument("--smoke", action="store_true", help="last-avg on a 80-line STS-B slice; writes nothing")
    args = parser.parse_args()
    tasks: dict[str, str | None]
    with tempfile.TemporaryDirectory() as tmp:
        if args.smoke:
            tasks = {"sts-b": str(sts_slice(Path(tmp), 80))}
            poolings = ["last-avg"]
        else:
            tasks = {task: str(args.data_dir / folder) if folder else None for task, folder in TASKS.items()}
            poolings = args.poolings.split(",")
        rows = table_rows(tasks, poolings, cache=str(Path(tmp, "cache")) if args.smoke else True)
    publish(
        "sts_tasks",
        "STS12-16, STS-B, SICK-R test, all-MiniLM-L6-v2 (embedded) and GloVe averages, Spearman x100",
        [
            "Calibration fitted without labels on each task's own sentences (all splits where a task has several). "
            "STS12-16: all subsets of a year concatenated (SentEval layout, STS13 without SMT, unscored pairs "
            "skipped).",
            table(["pooling", "method", *tasks, "avg"], rows),
        ],
        args.smoke,
    )


if __name__ == "__main__":
    main()
