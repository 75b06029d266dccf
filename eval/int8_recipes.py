"""Which int8 recipe for onnx-int8: STS-B test Spearman x100 against onnx fp32 and encoding speed, same run.

Each recipe (`Encoder(backend="onnx-int8", int8_recipe=...)`) is scored like eval/onnx_accuracy.py (cls and
last-avg, without and with whitening fitted on all STS-B sentences), then every recipe and onnx fp32 encode the
2,758 STS-B test sentences (last-avg, batch 64, 2 threads) in interleaved rounds; speed is the median, as a ratio
to fp32 measured in the same rounds. The accuracy goal (issue 13) is every gap within 0.3.
Run: python eval/int8_recipes.py [--repeats 3] [--smoke]
(--smoke: the default recipe, last-avg, an 80-line STS-B slice, 64 sentences timed once; prints, writes nothing).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import publish, sts_slice, table  # noqa: E402

import sentflow  # noqa: E402
from sentflow.encoding.onnx import INT8_RECIPE  # noqa: E402
from sentflow.evaluation.compare import compare  # noqa: E402

RECIPES = {
    "every operator, per-tensor (the first recipe)": INT8_RECIPE
    | {"operators": None, "per_channel": False, "fp32_last_ffn_inputs": 0},
    "every operator, per-channel": INT8_RECIPE | {"operators": None, "fp32_last_ffn_inputs": 0},
    "MatMul only, per-channel": INT8_RECIPE | {"fp32_last_ffn_inputs": 0},
    "MatMul only, per-channel, last FFN input fp32": INT8_RECIPE | {"fp32_last_ffn_inputs": 1},
    "MatMul only, per-channel, last 2 FFN inputs fp32 (default)": INT8_RECIPE,
}
POOLINGS = ("cls", "last-avg")


def spearman(
    backend: str, pooling: str, recipe: dict | None = None, data_dir: str | None = None, cache: str | bool = True
) -> list[float]:
    """Test Spearman x100 without and with whitening (`data_dir` None: the packaged STS-B)."""
    encoder = sentflow.Encoder(pooling=pooling, backend=backend, int8_recipe=recipe, show_progress=False, cache=cache)
    return [r.spearman for r in compare(encoder, methods=("none", "whitening"), data_dir=data_dir).results]


def speeds(texts: list[str], repeats: int, recipes: dict[str, dict]) -> dict[str, float]:
    """Median sentences/s of onnx fp32 and each recipe, interleaved rounds after a warm-up."""
    encoders = {"fp32": sentflow.Encoder(backend="onnx", threads=2, cache=False, show_progress=False)}
    for name, recipe in recipes.items():
        encoders[name] = sentflow.Encoder(
            backend="onnx-int8", threads=2, cache=False, show_progress=False, int8_recipe=recipe
        )
    times: dict[str, list[float]] = {name: [] for name in encoders}
    for encoder in encoders.values():
        encoder.encode(texts[:64])
    for _ in range(repeats):
        for name, encoder in encoders.items():
            start = time.perf_counter()
            encoder.encode(texts)
            times[name].append(time.perf_counter() - start)
    return {name: len(texts) / statistics.median(t) for name, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--smoke", action="store_true", help="default recipe, last-avg, STS-B slice; writes nothing")
    args = parser.parse_args()
    poolings: tuple[str, ...] = POOLINGS
    recipes, texts = RECIPES, sentflow.load_sts("sts-b", "test").sentences
    with tempfile.TemporaryDirectory() as tmp:
        data_dir: str | None = None
        cache: str | bool = True
        if args.smoke:
            data_dir, cache = str(sts_slice(Path(tmp), 80)), str(Path(tmp, "cache"))
            default = next(name for name in RECIPES if name.endswith("(default)"))
            recipes, poolings, texts, args.repeats = {default: RECIPES[default]}, ("last-avg",), texts[:64], 1
        fp32 = {p: spearman("onnx", p, None, data_dir, cache) for p in poolings}
        gaps = {}
        for name, recipe in recipes.items():
            gaps[name] = [
                s - f
                for p in poolings
                for s, f in zip(spearman("onnx-int8", p, recipe, data_dir, cache), fp32[p], strict=True)
            ]
    rate = speeds(texts, args.repeats, recipes)
    rows = [[name, *(f"{g:+.2f}" for g in gaps[name]), f"{rate[name] / rate['fp32']:.2f}"] for name in recipes]
    header = [c for p in poolings for c in (p, f"{p} whitened")]
    publish(
        "int8_recipes",
        "onnx-int8 recipes: STS-B test Spearman x100 vs onnx fp32, and speed vs fp32",
        [
            "all-MiniLM-L6-v2 (embedded), dynamic quantisation with onnxruntime after its transformer optimiser "
            "(fused attention, embeddings, GELU, layer norms). Gaps: int8 minus fp32 Spearman on the STS-B test "
            "pairs, whitening fitted without labels on all STS-B sentences; goal within 0.3. fp32 Spearman: "
            + ", ".join(f"{p} {fp32[p][0]:.2f} / whitened {fp32[p][1]:.2f}" for p in poolings)
            + f". Speed: {len(texts):,} STS-B test sentences, last-avg, batch 64, 2 threads, median of {args.repeats} "
            f"interleaved rounds; fp32 ran at {rate['fp32']:.0f} sentences/s.",
            table(["recipe", *header, "speed vs fp32"], rows),
        ],
        args.smoke,
    )


if __name__ == "__main__":
    main()
