"""How anisotropic are the vectors, before and after a calibration: numbers and plots a person can look at.

- anisotropy: mean cosine of random pairs of distinct rows (seeded); near 0 for isotropic vectors;
- effective rank: exp of the entropy of the normalised covariance eigenvalues (Roy & Vetterli, 2007), between 1
  (one direction holds everything) and the dimension (every direction equal);
- share of variance in the top 1 and top 10 directions, and the whole eigen-spectrum (largest first);
- cosine distributions of random pairs and of gold-similar pairs (gold >= SIMILAR_GOLD on an STS test split).

Statistics are float64. Plots are drawn with matplotlib's Agg canvas (no pyplot, no global backend change) and
written atomically.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sentflow.calibration.stats import MomentAccumulator, as_matrix
from sentflow.errors import SentflowError
from sentflow.evaluation.sts import cosine_scores
from sentflow.files.io import write_atomic
from sentflow.files.schemas import MAX_PAIRS
from sentflow.protocols import TextEncoder

SIMILAR_GOLD = 4.0  # STS-B and SICK-R: 4 of 5 is "mostly equivalent"
N_PAIRS = 10_000
BINS = np.linspace(-1.0, 1.0, 41)


@dataclass(frozen=True)
class EmbeddingStats:
    """Anisotropy, spectrum and cosine distributions of one set of vectors."""

    n: int
    dim: int
    anisotropy: float
    effective_rank: float
    top1_share: float
    top10_share: float
    eigenvalues: np.ndarray
    random_cosines: np.ndarray
    similar_cosines: np.ndarray | None = None

    def to_dict(self) -> dict:
        data = {k: getattr(self, k) for k in ("n", "dim", "anisotropy", "effective_rank", "top1_share", "top10_share")}
        data["eigenvalues"] = self.eigenvalues.tolist()
        data["random_pairs"] = histogram(self.random_cosines)
        if self.similar_cosines is not None:
            data["similar_pairs"] = histogram(self.similar_cosines)
        return data


@dataclass(frozen=True)
class Diagnosis:
    """The same statistics before and (when a calibration is given) after calibrating."""

    before: EmbeddingStats
    after: EmbeddingStats | None = None
    calibration: str | None = None

    def to_dict(self) -> dict:
        return {
            "calibration": self.calibration,
            "before": self.before.to_dict(),
            "after": self.after.to_dict() if self.after is not None else None,
        }


def histogram(cosines: np.ndarray) -> dict:
    """Counts of cosines in 40 equal bins over [-1, 1], with their mean and the number of pairs."""
    counts, _ = np.histogram(np.clip(cosines, -1.0, 1.0), bins=BINS)
    return {"n": int(len(cosines)), "mean": float(np.mean(cosines)), "edges": BINS.tolist(), "counts": counts.tolist()}


def random_pairs(n: int, n_pairs: int = N_PAIRS, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Indices (i, j) of `n_pairs` random pairs of distinct rows, uniform over ordered pairs, reproducible."""
    if n < 2:
        raise SentflowError(f"need at least 2 vectors to pair, got {n}")
    if not 1 <= n_pairs <= MAX_PAIRS:
        raise SentflowError(f"n_pairs={n_pairs} must be between 1 and {MAX_PAIRS}")
    rng = np.random.default_rng(seed)
    first = rng.integers(0, n, n_pairs)
    return first, (first + rng.integers(1, n, n_pairs)) % n


def spectrum(vectors: np.ndarray) -> np.ndarray:
    """Eigenvalues of the float64 covariance, largest first (rounding negatives clipped to 0)."""
    moments = MomentAccumulator(vectors.shape[1])
    moments.update(vectors)
    return np.clip(np.linalg.eigvalsh(moments.covariance())[::-1], 0.0, None)


def effective_rank(eigenvalues: np.ndarray) -> float:
    """exp(entropy) of the eigenvalues normalised to sum 1."""
    total = eigenvalues.sum()
    if total <= 0:
        raise SentflowError("every vector is the same (zero covariance): the effective rank is undefined")
    p = eigenvalues[eigenvalues > 0] / total
    return float(np.exp(-(p * np.log(p)).sum()))


def embedding_stats(
    vectors, similar: tuple[np.ndarray, np.ndarray] | None = None, n_pairs: int = N_PAIRS, seed: int = 0
) -> EmbeddingStats:
    """Anisotropy, spectrum and cosine distributions of `vectors`; `similar` = (first, second) vectors of
    gold-similar pairs, row by row."""
    vectors = as_matrix(vectors, "vectors")
    values = spectrum(vectors)
    rank = effective_rank(values)
    i, j = random_pairs(len(vectors), n_pairs, seed)
    cosines = cosine_scores(vectors[i], vectors[j])
    similar_cosines = cosine_scores(*similar) if similar is not None and len(similar[0]) else None
    result = EmbeddingStats(
        n=len(vectors),
        dim=vectors.shape[1],
        anisotropy=float(cosines.mean()),
        effective_rank=rank,
        top1_share=float(values[:1].sum() / values.sum()),
        top10_share=float(values[:10].sum() / values.sum()),
        eigenvalues=values,
        random_cosines=cosines,
        similar_cosines=similar_cosines,
    )
    if not all(np.isfinite(v) for v in (result.anisotropy, rank, result.top1_share, result.top10_share)):
        raise SentflowError("the diagnostics are not finite: check the vectors for extreme values")
    return result


def diagnose(
    vectors,
    similar: tuple[np.ndarray, np.ndarray] | None = None,
    transform: Callable[[np.ndarray], np.ndarray] | None = None,
    calibration: str | None = None,
    n_pairs: int = N_PAIRS,
    seed: int = 0,
) -> Diagnosis:
    """Statistics of `vectors` and, when `transform` (a calibration's or pipeline's transform) is given, of the
    calibrated vectors, with the same random pairs; `calibration` names it in reports and plots."""
    before = embedding_stats(vectors, similar, n_pairs, seed)
    if transform is None:
        return Diagnosis(before)
    after_similar = (transform(similar[0]), transform(similar[1])) if similar is not None else None
    after = embedding_stats(transform(np.asarray(vectors)), after_similar, n_pairs, seed)
    return Diagnosis(before, after, calibration or "calibrated")


def task_vectors(encoder: TextEncoder, task: str, data_dir: str | os.PathLike | None = None):
    """(vectors of every sentence of an STS task, (first, second) vectors of its test pairs with gold >= 4)."""
    from sentflow.tasks.sts_task import encode_sts_task, load_sts_task

    encoded = encode_sts_task(encoder, load_sts_task(task, "all", data_dir))
    first, second = encoded.pair_vectors("test")
    keep = np.flatnonzero(encoded.task.pairs("test").scores >= SIMILAR_GOLD)
    return encoded.fit_rows, (first[keep], second[keep])


def _figure(width: float = 9.0, height: float = 3.6):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=110)
    FigureCanvasAgg(figure)
    return figure


def _save(figure, path: Path) -> Path:
    figure.tight_layout()
    write_atomic(path, lambda tmp: figure.savefig(tmp, format="png"))
    return path


def _stages(diagnosis: Diagnosis) -> list[tuple[str, EmbeddingStats]]:
    stages = [("before", diagnosis.before)]
    if diagnosis.after is not None:
        stages.append((f"after: {diagnosis.calibration}", diagnosis.after))
    return stages


def plot_spectrum(diagnosis: Diagnosis, path: str | os.PathLike, title: str = "") -> Path:
    """Share of variance per direction (log scale), before and after, in one panel."""
    figure = _figure(6.0, 3.8)
    ax = figure.add_subplot()
    for label, stats in _stages(diagnosis):
        share = stats.eigenvalues / stats.eigenvalues.sum()
        ax.semilogy(
            np.arange(1, len(share) + 1),
            np.maximum(share, 1e-8),
            label=f"{label} (eff. rank {stats.effective_rank:.0f})",
        )
    ax.set_xlabel("direction (largest variance first)")
    ax.set_ylabel("share of variance (floored at 1e-8)")
    ax.set_title(title or "eigen-spectrum of the covariance")
    ax.legend(fontsize=8)
    return _save(figure, Path(path))


def plot_cosines(diagnosis: Diagnosis, path: str | os.PathLike, title: str = "") -> Path:
    """Cosine histograms of random and gold-similar pairs: one panel before, one after."""
    stages = _stages(diagnosis)
    figure = _figure(4.5 * len(stages), 3.6)
    for k, (label, stats) in enumerate(stages, start=1):
        ax = figure.add_subplot(1, len(stages), k)
        ax.hist(
            stats.random_cosines,
            bins=BINS,
            density=True,
            alpha=0.6,
            label=f"random pairs (mean {stats.anisotropy:.2f})",
        )
        if stats.similar_cosines is not None:
            mean = float(np.mean(stats.similar_cosines))
            ax.hist(
                stats.similar_cosines, bins=BINS, density=True, alpha=0.6, label=f"gold-similar pairs (mean {mean:.2f})"
            )
        ax.set_xlabel("cosine")
        ax.set_title(f"{title} {label}".strip(), fontsize=9)
        ax.legend(fontsize=7)
    return _save(figure, Path(path))


def save_plots(diagnosis: Diagnosis, directory: str | os.PathLike, title: str = "") -> list[Path]:
    """spectrum.png and cosines.png in `directory` (created if needed)."""
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise SentflowError(f"{directory}: exists and is not a directory; give a directory for the plots")
    return [
        plot_spectrum(diagnosis, directory / "spectrum.png", title),
        plot_cosines(diagnosis, directory / "cosines.png", title),
    ]
