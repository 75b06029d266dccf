"""The STS metric: Spearman and Pearson x100 of cosine scores against gold."""

from __future__ import annotations

import numpy as np
from scipy import stats

from sentflow.errors import SentflowError


def cosine_scores(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine similarity, computed in float64.

    Args:
        a: (n, d) vectors.
        b: (n, d) vectors, compared row by row with `a`.

    Returns:
        The (n,) cosines of `a[i]` and `b[i]`; a zero vector has cosine 0 with anything.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return (a * b).sum(axis=1) / np.maximum(norms, 1e-300)


def evaluate_sts(emb1: np.ndarray, emb2: np.ndarray, gold: np.ndarray) -> dict[str, float]:
    """Spearman and Pearson correlation x100 between cosine(emb1, emb2) and the gold scores.

    Args:
        emb1: (n, d) vectors of the first sentences.
        emb2: (n, d) vectors of the second sentences.
        gold: (n,) gold similarity scores.

    Returns:
        The Spearman and Pearson correlations x100, under the keys `spearman` and `pearson`.

    Raises:
        SentflowError: The lengths differ, or every cosine (or every gold score) is equal.
    """
    if len(emb1) != len(emb2) or len(emb1) != len(gold):
        raise SentflowError(f"lengths differ: {len(emb1)} / {len(emb2)} embeddings, {len(gold)} scores")
    cos = cosine_scores(emb1, emb2)
    if np.ptp(cos) == 0 or np.ptp(gold) == 0:
        which = "cosine scores" if np.ptp(cos) == 0 else "gold scores"
        raise SentflowError(f"the correlation is undefined: all {which} are equal (degenerate embeddings or data)")
    return {
        "spearman": 100.0 * float(stats.spearmanr(cos, gold).statistic),
        "pearson": 100.0 * float(stats.pearsonr(cos, gold).statistic),
    }
