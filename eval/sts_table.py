"""STS-B test Spearman x100 of the embedded model: poolings x whitening settings (unsupervised, fit on all).

Encodings are cached, so re-running only re-fits. Run: python eval/sts_table.py
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import table, write_report  # noqa: E402

import sentflow  # noqa: E402
from sentflow.evaluation import compare  # noqa: E402

POOLINGS = ("cls", "last-avg", "first-last-avg")
SETTINGS = [  # (label, method, dim, power)
    ("none", "none", None, 0.5),
    ("whitening", "whitening", None, 0.5),
    ("whitening k=256", "whitening", 256, 0.5),
    ("whitening k=128", "whitening", 128, 0.5),
    ("whitening k=64", "whitening", 64, 0.5),
    ("soft whitening power=0.25", "whitening", None, 0.25),
]


def main() -> None:
    rows = []
    for label, method, dim, power in SETTINGS:
        row = [label, str(dim or 384)]
        for pooling in POOLINGS:
            encoder = sentflow.Encoder(pooling=pooling)
            result = compare(encoder, methods=[method], dim=dim, power=power)["results"][0]
            row.append(f"{result['spearman']:.2f}")
        rows.append(row)
    write_report(
        "sts_table",
        "STS-B test, all-MiniLM-L6-v2 (embedded), Spearman x100",
        [
            "Whitening is fitted without labels on the 17,256 sentences of STS-B train+dev+test "
            "(`--fit-on all`, the papers' unsupervised protocol); scores are cosine similarities of the test pairs.",
            table(["method", "dim", *POOLINGS], rows),
        ],
    )


if __name__ == "__main__":
    main()
