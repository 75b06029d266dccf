"""BERT-flow vs BERT-whitening on STS-B with the embedded model: Spearman x100 and fit cost, same run.

For each pooling: no calibration, whitening (full and k=256), and BERT-flow over several seeds
(mean and standard deviation). Everything is fitted without labels on the 17,256 STS-B sentences.
Run: python eval/flow_vs_whitening.py [--seeds 3] [--poolings cls,last-avg,first-last-avg] [--threads N]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import table, write_report  # noqa: E402

import sentflow  # noqa: E402
from sentflow.calibration.bertflow import BertFlow  # noqa: E402
from sentflow.calibration.whitening import SingularCovarianceWarning  # noqa: E402
from sentflow.evaluation.compare import compare  # noqa: E402
from sentflow.flows.train import DEFAULT_THREADS  # noqa: E402
from sentflow.runtime import resolve_threads  # noqa: E402
from sentflow.tasks.sts import SPLITS, packaged_stsb_dir  # noqa: E402
from sentflow.tasks.sts_task import encode_sts_task, load_sts_task  # noqa: E402

warnings.simplefilter("ignore", SingularCovarianceWarning)  # cls/last-avg null directions: see docs/concepts.md

POOLINGS = ("cls", "last-avg", "first-last-avg")


def spread(values: list[float]) -> str:
    return f"{statistics.mean(values):.2f} ± {statistics.stdev(values) if len(values) > 1 else 0.0:.2f}"


def warm_fit_seconds(encoder: sentflow.Encoder, data_dir: str | None, repeats: int = 7) -> float:
    """Median time of a full whitening fit on the rows `compare` fits on (cached encodings), after a warm-up fit."""
    fit_rows = encode_sts_task(encoder, load_sts_task("sts-b", "all", data_dir)).fit_rows
    sentflow.Whitening().fit(fit_rows)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        sentflow.Whitening().fit(fit_rows)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def pooling_rows(pooling: str, seeds: int, threads: int | None, data_dir: str | None = None) -> list[list[str]]:
    encoder = sentflow.Encoder(pooling=pooling)
    base = compare(encoder, methods=["none", "whitening"], data_dir=data_dir).results
    k256 = compare(encoder, methods=["whitening"], dim=256, data_dir=data_dir).results[0]
    options = [{"seed": s, "progress": False, "threads": threads} for s in range(seeds)]
    flows = [compare(encoder, methods=["flow"], flow_options=o, data_dir=data_dir).results[0] for o in options]
    white_s = warm_fit_seconds(encoder, data_dir)
    flow_s = [f.fit_seconds for f in flows]
    rows = [[pooling, r.method, str(r.dim), f"{r.spearman:.2f}", f"{r.fit_seconds:.2f}", ""] for r in base]
    rows.append([pooling, "whitening", "256", f"{k256.spearman:.2f}", f"{k256.fit_seconds:.2f}", ""])
    rows.append(
        [
            pooling,
            f"flow ({seeds} seeds)",
            str(flows[0].dim),
            spread([f.spearman for f in flows]),
            spread(flow_s),
            f"{statistics.mean(flow_s) / max(white_s, 1e-9):.0f}",
        ]
    )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument(
        "--poolings", default=",".join(POOLINGS), help="comma-separated subset of " + ",".join(POOLINGS)
    )
    parser.add_argument("--threads", type=int, default=None, help="flow fit threads (default: BertFlow's)")
    parser.add_argument("--smoke", action="store_true", help="one seed on a 300-pair STS-B slice; writes nothing")
    args = parser.parse_args()
    if args.smoke:
        with tempfile.TemporaryDirectory() as folder:
            for split in SPLITS:
                lines = (packaged_stsb_dir() / f"sts-{split}.csv").read_text(encoding="utf-8").splitlines()[:300]
                Path(folder, f"sts-{split}.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
            print(table(["pooling", "method", "dim", "Spearman", "s", "ratio"], pooling_rows("last-avg", 1, 1, folder)))
        return
    rows = [row for pooling in args.poolings.split(",") for row in pooling_rows(pooling, args.seeds, args.threads)]
    flow_threads = resolve_threads(args.threads, DEFAULT_THREADS)
    defaults = BertFlow().get_params()
    config = ", ".join(
        f"{k}={defaults[k]}" for k in ("levels", "depth", "hidden", "epochs", "lr", "batch_size", "noise", "patience")
    )
    write_report(
        "flow_vs_whitening",
        "BERT-flow vs BERT-whitening, STS-B test, all-MiniLM-L6-v2 (embedded)",
        [
            "Spearman x100 of cosine scores on the 1,379 test pairs; every calibration fitted without labels on the "
            f"17,256 train+dev+test sentences. Flow: sentflow.BertFlow defaults ({config}), mean ± std over "
            f"{args.seeds} seeds, fitted with {flow_threads} torch thread(s). Fit seconds exclude encoding "
            "(cached). Ratio = mean flow fit time / median of 7 "
            "warm full-whitening fits on the same rows, both measured in this run.",
            table(["pooling", "method", "dim", "Spearman x100", "fit seconds", "flow / whitening time"], rows),
        ],
    )


if __name__ == "__main__":
    main()
