"""ONNX and OpenVINO backends vs torch on STS-B: vector differences and test Spearman x100, with/without whitening.

The STS-B test sentences are encoded by torch fp32 and by each other backend (onnx fp32/int8, openvino
fp32/bf16/int8; bf16 only where the CPU has bf16 instructions) for cls and last-avg: max abs difference of the
vectors and of the unit-normalised vectors vs torch. Every STS-B sentence is then encoded and whitening is fitted
without labels on all of them (the papers' unsupervised protocol). Accuracy bar (issues 13 and 19): a backend
keeps the accuracy when its test Spearman is within 0.3 of torch fp32's for both poolings, plain and whitened; the
list is saved in onnx_accuracy.json, which eval/bench_encode.py reads to choose the rows its goals compare.
Run: python eval/onnx_accuracy.py
     python eval/onnx_accuracy.py --smoke  (130 lines per split, enough to whiten; prints only)
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import RESULTS, table, write_report, write_text  # noqa: E402

import sentflow  # noqa: E402
from sentflow.evaluation.compare import compare  # noqa: E402
from sentflow.tasks.sts import packaged_stsb_dir  # noqa: E402

POOLINGS = ("cls", "last-avg")
BACKENDS = ("onnx", "onnx-int8", "openvino", "openvino-bf16", "openvino-int8")  # each against torch fp32
BAR = 0.3  # Spearman points


def has_bf16() -> bool:
    """Whether OpenVINO's CPU plugin reports bf16 support on this machine."""
    from sentflow.encoding import openvino as openvino_backend

    try:
        openvino_backend.check_precision("bf16")
    except sentflow.SentflowError:
        return False
    return True


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def smoke_dir(lines: int = 130) -> str:
    """A folder with the first `lines` lines of each STS-B split (what --smoke scores)."""
    directory = Path(tempfile.mkdtemp(prefix="onnx-accuracy-smoke-"))
    for split in ("train", "dev", "test"):
        text = (packaged_stsb_dir() / f"sts-{split}.csv").read_text(encoding="utf-8").splitlines()[:lines]
        (directory / f"sts-{split}.csv").write_text("\n".join(text) + "\n", encoding="utf-8")
    return str(directory)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="130 lines per STS-B split, no embedding cache; prints")
    parser.add_argument("--backends", nargs="+", default=list(BACKENDS), help="backends to score against torch")
    args = parser.parse_args()
    data_dir = smoke_dir() if args.smoke else None
    backends = [b for b in args.backends if b != "openvino-bf16" or has_bf16()]
    test = sentflow.load_sts("sts-b", "test", data_dir).sentences
    rows: list[list[str]] = []
    gaps: dict[str, list[float]] = {b: [] for b in backends}
    unit_diffs = {b: 0.0 for b in backends}
    for pooling in POOLINGS:
        torch_encoder = sentflow.Encoder(pooling=pooling, cache=not args.smoke, show_progress=False)
        reference = torch_encoder.encode(test)
        base = [r.spearman for r in compare(torch_encoder, methods=("none", "whitening"), data_dir=data_dir).results]
        rows.append([pooling, "torch", "-", "-", *(f"{s:.2f}" for s in base), "+0.00", "+0.00"])
        for backend in backends:
            encoder = sentflow.Encoder(pooling=pooling, cache=not args.smoke, show_progress=False, backend=backend)
            vectors = encoder.encode(test)
            diff = float(np.abs(vectors - reference).max())
            unit_diff = float(np.abs(unit(vectors) - unit(reference)).max())
            unit_diffs[backend] = max(unit_diffs[backend], unit_diff)
            scores = [r.spearman for r in compare(encoder, methods=("none", "whitening"), data_dir=data_dir).results]
            gap = [s - b for s, b in zip(scores, base, strict=True)]
            gaps[backend] += gap
            rows.append([pooling, backend, f"{diff:.1e}", f"{unit_diff:.1e}", *(f"{s:.2f}" for s in scores)])
            rows[-1] += [f"{g:+.2f}" for g in gap]
    keeping = [b for b in backends if all(abs(g) <= BAR for g in gaps[b])]
    summary = [
        [b, f"{max(abs(g) for g in gaps[b]):.2f}", f"{unit_diffs[b]:.1e}", "yes" if b in keeping else "no"]
        for b in backends
    ]
    sections = [
        "all-MiniLM-L6-v2 (embedded). Max abs difference over the "
        f"{len(test):,} STS-B test sentences{' (smoke: 130 lines per split)' if args.smoke else ''}, raw and "
        "unit-normalised; Spearman of the test pairs, whitening fitted without labels on all STS-B sentences "
        f"(`fit_on='all'`). Accuracy bar (issue 19): within {BAR} Spearman points of torch fp32 for cls and "
        "last-avg, plain and whitened. openvino-bf16 runs only where OpenVINO reports bf16 support.",
        "## Accuracy-keeping backends\n\n"
        + table(["backend", "largest Spearman gap vs torch", "unit-vector max abs diff", "keeps accuracy"], summary),
        "## Every pooling\n\n"
        + table(
            [
                "pooling",
                "backend",
                "max abs diff vs torch",
                "unit-vector max abs diff",
                "Spearman none",
                "Spearman whitening",
                "vs torch fp32 (none)",
                "vs torch fp32 (whitening)",
            ],
            rows,
        ),
    ]
    if args.smoke:
        print("\n\n".join(sections))
        return
    write_report(
        "onnx_accuracy", "ONNX and OpenVINO backends: agreement with torch and STS-B test Spearman x100", sections
    )
    result = {"accuracy_keeping": ["torch", *keeping], "bar": BAR, "rows": rows, "summary": summary}
    write_text(RESULTS / "onnx_accuracy.json", json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
