"""STS-B test Spearman x100 of the embedded model: poolings x whitening settings (unsupervised, fit on all).

Also the best two-layer `layers:I,J` pooling, chosen on STS-B dev without calibration among the 21 pairs of
the model's 7 hidden states (embedding layer 0 and transformer layers 1-6), then scored on test like the rest.
Encodings are cached, so re-running only re-fits. Run: python eval/sts_table.py [--backend onnx] [--smoke]
(--smoke: an 80-line STS-B slice, two candidate pairs, two settings, temporary cache; prints, writes nothing).
"""

from __future__ import annotations

import argparse
import itertools
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import publish, sts_slice, table  # noqa: E402

import sentflow  # noqa: E402
from sentflow.evaluation.compare import compare  # noqa: E402
from sentflow.evaluation.sts import evaluate_sts  # noqa: E402

POOLINGS = ("cls", "last-avg", "first-last-avg")
SETTINGS = [  # (label, method, dim, power)
    ("none", "none", None, 0.5),
    ("whitening", "whitening", None, 0.5),
    ("whitening k=256", "whitening", 256, 0.5),
    ("whitening k=128", "whitening", 128, 0.5),
    ("whitening k=64", "whitening", 64, 0.5),
    ("soft whitening power=0.25", "whitening", None, 0.25),
]
N_HIDDEN = 7  # all-MiniLM-L6-v2: the embedding layer and 6 transformer layers


def best_pair(
    backend: str,
    pairs: list[tuple[int, int]] | None = None,
    data_dir: str | None = None,
    cache: str | bool = True,
) -> tuple[str, list[list[str]]]:
    """The `layers:I,J` pooling with the best STS-B dev Spearman (no calibration), and every pair's dev score.

    `pairs` default to all 21 pairs of hidden states; `data_dir` None is the packaged STS-B."""
    dev = sentflow.load_sts("sts-b", "dev", data_dir)
    n = len(dev)
    scored = []
    for i, j in pairs or list(itertools.combinations(range(N_HIDDEN), 2)):
        encoder = sentflow.Encoder(pooling=f"layers:{i},{j}", backend=backend, cache=cache, show_progress=False)
        vectors = encoder.encode(dev.sentences)
        scored.append((evaluate_sts(vectors[:n], vectors[n:], dev.scores)["spearman"], f"layers:{i},{j}"))
    scored.sort(reverse=True)
    return scored[0][1], [[name, f"{score:.2f}"] for score, name in scored]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--backend", default="torch", help="torch | onnx (fp32 ONNX equals torch within 1e-5)")
    parser.add_argument("--smoke", action="store_true", help="an 80-line STS-B slice, a few settings; writes nothing")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        if args.smoke:
            data_dir: str | None = str(sts_slice(Path(tmp), 80))
            cache: str | bool = str(Path(tmp, "cache"))
            pair, dev_rows = best_pair(args.backend, [(0, 6), (1, 6)], data_dir, cache)
            poolings: tuple[str, ...] = ("last-avg", pair)
            settings = SETTINGS[:2]
        else:
            data_dir, cache = None, True
            pair, dev_rows = best_pair(args.backend)
            poolings, settings = (*POOLINGS, pair), SETTINGS
        rows = []
        for label, method, dim, power in settings:
            row = [label, str(dim or 384)]
            for pooling in poolings:
                encoder = sentflow.Encoder(pooling=pooling, backend=args.backend, cache=cache, show_progress=False)
                result = compare(encoder, methods=[method], dim=dim, power=power, data_dir=data_dir).results[0]
                row.append(f"{result.spearman:.2f}")
            rows.append(row)
    publish(
        "sts_table",
        "STS-B test, all-MiniLM-L6-v2 (embedded), Spearman x100",
        [
            "Whitening is fitted without labels on the 17,256 sentences of STS-B train+dev+test "
            "(`--fit-on all`, the papers' unsupervised protocol); scores are cosine similarities of the test pairs. "
            f"Encoder backend: {args.backend}. The last column is the best pair of hidden states, chosen on STS-B "
            "dev Spearman without calibration (no test data, no whitening in the choice).",
            table(["method", "dim", *poolings], rows),
            "## Two-layer poolings on STS-B dev (no calibration), best first\n\n"
            "Hidden state 0 is the embedding layer, 1-6 the transformer layers (`layers:1,6` = `first-last-avg`).\n\n"
            + table(["pooling", "dev Spearman x100"], dev_rows),
        ],
        args.smoke,
    )


if __name__ == "__main__":
    main()
