"""Encoder: every pooling against a hand computation on a tiny random BertModel, order, cache."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import SENTENCES
from transformers import AutoModel, AutoTokenizer

from sentflow import Encoder, SentflowError
from sentflow.encoding.models import DEFAULT_MODEL, resolve_model


def hand_pooled(model_dir, sentence: str, pooling: str) -> np.ndarray:
    """One sentence at a time (no padding), pooled by the definition in sentflow.encoding.pooling's docstring."""
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModel.from_pretrained(model_dir).eval()
    with torch.no_grad():
        out = model(**tokenizer(sentence, return_tensors="pt"), output_hidden_states=True)
    hs = [h[0] for h in out.hidden_states]  # (T, H) per layer; hs[0] is the embedding layer
    value = {
        "cls": hs[-1][0],
        "pooler": out.pooler_output[0],
        "last-avg": hs[-1].mean(0),
        "first-last-avg": (hs[1].mean(0) + hs[-1].mean(0)) / 2,
        "last2avg": (hs[-2].mean(0) + hs[-1].mean(0)) / 2,
        "layers:0,2,3": (hs[0].mean(0) + hs[2].mean(0) + hs[3].mean(0)) / 3,
    }[pooling]
    return value.numpy()


@pytest.mark.parametrize("pooling", ["cls", "pooler", "last-avg", "first-last-avg", "last2avg", "layers:0,2,3"])
def test_pooling_matches_hand_computation(tiny_bert_dir, pooling):
    encoder = Encoder(str(tiny_bert_dir), pooling=pooling, batch_size=2, cache=False)
    got = encoder.encode(SENTENCES)
    assert got.dtype == np.float32 and got.shape == (len(SENTENCES), 32)
    expected = np.stack([hand_pooled(tiny_bert_dir, s, pooling) for s in SENTENCES])
    np.testing.assert_allclose(got, expected, atol=2e-5)


def test_batch_size_and_order_do_not_change_vectors(tiny_bert_dir):
    one = Encoder(str(tiny_bert_dir), batch_size=1, cache=False).encode(SENTENCES)
    many = Encoder(str(tiny_bert_dir), batch_size=64, cache=False).encode(SENTENCES[::-1])
    np.testing.assert_allclose(one, many[::-1], atol=2e-5)


def test_cache_returns_same_vectors_without_running_the_model(tiny_bert_dir, tmp_path, monkeypatch):
    encoder = Encoder(str(tiny_bert_dir), pooling="cls", cache=tmp_path)
    first = encoder.encode(SENTENCES)
    assert len(list(tmp_path.glob("*.npy"))) == 1

    def refuse(*args):
        raise AssertionError("the model ran although the embeddings were cached")

    fresh = Encoder(str(tiny_bert_dir), pooling="cls", cache=tmp_path)
    monkeypatch.setattr(fresh, "_encode", refuse)
    np.testing.assert_array_equal(fresh.encode(SENTENCES), first)
    other_pooling = Encoder(str(tiny_bert_dir), pooling="last-avg", cache=tmp_path)
    assert not np.allclose(other_pooling.encode(SENTENCES), first)
    assert len(list(tmp_path.glob("*.npy"))) == 2


def test_threads_apply_to_the_forward_passes_only(tiny_bert_dir):
    encoder = Encoder(str(tiny_bert_dir), batch_size=2, cache=False, threads=1)
    assert encoder.dim == 32 and not encoder._backend.loaded  # the width is read from the config alone
    encoder.encode(SENTENCES[:1])  # loads the model
    seen, forward = [], encoder._backend._forward

    def spy(batch):
        seen.append(torch.get_num_threads())
        return forward(batch)

    encoder._backend._forward = spy
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        encoder.encode(SENTENCES)
        assert seen == [1, 1, 1] and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_long_inputs_are_truncated_to_the_model_positions(tiny_bert_dir):
    long_text = " ".join(["the man"] * 200)  # 400 words, the tiny model has 128 positions
    got = Encoder(str(tiny_bert_dir), max_length=100_000, cache=False).encode([long_text])
    assert got.shape == (1, 32) and np.isfinite(got).all()


def test_bad_arguments():
    with pytest.raises(SentflowError, match="unknown pooling 'mean'"):
        Encoder(pooling="mean")
    with pytest.raises(SentflowError, match="cannot load model"):
        Encoder("/nonexistent/model/dir-" + "x" * 3, cache=False).encode(["a"])


def test_default_model_resolves_to_the_packaged_directory():
    path = resolve_model(DEFAULT_MODEL)
    assert path.endswith("model")
    assert (__import__("pathlib").Path(path) / "config.json").is_file()


@pytest.mark.slow
def test_embedded_model_gives_meaningful_vectors():
    encoder = Encoder(cache=False)
    a, b, c = encoder.encode(["A man is playing a guitar.", "A person plays the guitar.", "The stock market fell."])
    cos = lambda u, v: float(u @ v / np.linalg.norm(u) / np.linalg.norm(v))  # noqa: E731
    assert encoder.dim == 384
    assert cos(a, b) > cos(a, c) + 0.3


def test_a_single_string_is_refused_not_split_into_characters(tiny_bert_dir):
    with pytest.raises(SentflowError, match="got one string; wrap it in a list"):
        Encoder(str(tiny_bert_dir), cache=False).encode("hello")


def test_damaged_cache_entries_are_re_encoded_and_an_unwritable_cache_only_warns(tiny_bert_dir, tmp_path):
    encoder = Encoder(str(tiny_bert_dir), cache=tmp_path / "cache")
    expected = encoder.encode(SENTENCES)
    (entry,) = (tmp_path / "cache").glob("*.npy")
    for damaged in (np.full_like(expected, np.nan), expected[:, :5], expected.astype(np.float64)):
        np.save(entry, damaged)
        with pytest.warns(UserWarning, match="damaged embedding cache entry; encoding again"):
            got = Encoder(str(tiny_bert_dir), cache=tmp_path / "cache").encode(SENTENCES)
        np.testing.assert_array_equal(got, expected)
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the cache directory should be")
    with pytest.warns(UserWarning, match="embedding cache not written"):
        got = Encoder(str(tiny_bert_dir), cache=blocked).encode(SENTENCES)
    np.testing.assert_array_equal(got, expected)
