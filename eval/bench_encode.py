"""sentflow.Encoder vs sentence_transformers' encode on the 2,758 STS-B test sentences, same run.

Same model (the embedded all-MiniLM-L6-v2), mean pooling, no normalisation, no cache. Reports the
max abs difference of the embeddings and the throughput ratio sentflow / sentence-transformers.
Run: python eval/bench_encode.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import numpy as np
import torch

sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parent))
from report import table, write_report  # noqa: E402

import sentflow  # noqa: E402
from sentflow.models import DEFAULT_MODEL, resolve_model  # noqa: E402


def sentence_transformer(batch_size: int):
    """The same checkpoint as a SentenceTransformer with only Transformer + mean Pooling modules."""
    from sentence_transformers import SentenceTransformer, models

    word = models.Transformer(resolve_model(DEFAULT_MODEL), max_seq_length=256)
    pooling = models.Pooling(word.get_word_embedding_dimension(), pooling_mode="mean")
    model = SentenceTransformer(modules=[word, pooling], device="cpu")
    return lambda texts: model.encode(texts, batch_size=batch_size, convert_to_numpy=True)


def timed(fn, texts, repeats: int) -> tuple[np.ndarray, list[float]]:
    fn(texts[:64])  # warm-up
    times, out = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn(texts)
        times.append(time.perf_counter() - start)
    return out, times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(__import__("os").cpu_count() or 1)
    test = sentflow.load_sts("sts-b", "test")
    texts = test.sentences
    rows, base = [], None
    for label, batch, make in [
        ("sentence-transformers encode", 32, sentence_transformer),
        ("sentence-transformers encode", 64, sentence_transformer),
        ("sentflow Encoder", 32, None),
        ("sentflow Encoder", 64, None),
    ]:
        if make is None:
            encoder = sentflow.Encoder(
                DEFAULT_MODEL, pooling="last-avg", batch_size=batch, cache=False, show_progress=False
            )
            fn = encoder.encode
        else:
            fn = make(batch)
        emb, times = timed(fn, texts, args.repeats)
        base = emb if base is None else base
        rate = len(texts) / statistics.median(times)
        rows.append([label, batch, f"{rate:.0f}", f"{np.abs(emb - base).max():.2e}"])
    reference = float(rows[0][2])
    for row in rows:
        row.insert(3, f"{float(row[2]) / reference:.2f}")
    write_report(
        "bench_encode",
        "Encoding throughput: sentflow vs sentence-transformers",
        [
            f"{len(texts)} STS-B test sentences (both sides of the 1,379 pairs), all-MiniLM-L6-v2, mean pooling, "
            f"median of {args.repeats} runs after a warm-up, no embedding cache. Ratio: against the first row.",
            table(["implementation", "batch size", "sentences/s", "ratio", "max abs diff vs first row"], rows),
        ],
    )


if __name__ == "__main__":
    main()
