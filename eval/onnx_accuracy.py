"""ONNX backends vs torch on STS-B: max abs difference of the vectors and test Spearman x100, with/without whitening.

The 2,758 STS-B test sentences are encoded by torch and by each ONNX backend (fp32, int8) for cls and last-avg
(max abs difference vs torch); the ONNX backends then encode every STS-B sentence and whitening is fitted without
labels on all of them (the papers' unsupervised protocol).
Run: python eval/onnx_accuracy.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import table, write_report  # noqa: E402

import sentflow  # noqa: E402
from sentflow.evaluation.compare import compare  # noqa: E402

POOLINGS = ("cls", "last-avg")
BACKENDS = ("torch", "onnx", "onnx-int8")  # torch first: the reference


def main() -> None:
    test = sentflow.load_sts("sts-b", "test").sentences
    rows = []
    for pooling in POOLINGS:
        reference = sentflow.Encoder(pooling=pooling).encode(test)
        scores = {}
        for backend in BACKENDS[1:]:
            encoder = sentflow.Encoder(pooling=pooling, backend=backend)
            diff = np.abs(encoder.encode(test) - reference).max()
            results = compare(encoder, methods=("none", "whitening")).results
            scores[backend] = [r.spearman for r in results]
            gap = [s - f for s, f in zip(scores[backend], scores["onnx"], strict=True)]
            rows.append([pooling, backend, f"{diff:.1e}", *(f"{s:.2f}" for s in scores[backend])])
            rows[-1] += [f"{g:+.2f}" for g in gap]
    write_report(
        "onnx_accuracy",
        "ONNX backends: agreement with torch and STS-B test Spearman x100",
        [
            "all-MiniLM-L6-v2 (embedded). Max abs difference over the 2,758 STS-B test sentences; Spearman of the "
            "test pairs, whitening fitted without labels on all STS-B sentences (`fit_on='all'`). Goal (issue 13): "
            "onnx within 1e-4 of torch (max abs), onnx-int8 Spearman within 0.3 of onnx fp32.",
            table(
                [
                    "pooling",
                    "backend",
                    "max abs diff vs torch",
                    "Spearman none",
                    "Spearman whitening",
                    "vs onnx fp32 (none)",
                    "vs onnx fp32 (whitening)",
                ],
                rows,
            ),
        ],
    )


if __name__ == "__main__":
    main()
