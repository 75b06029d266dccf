"""Corpus vectors cached by content: one embedding-cache entry per block of 512 consecutive texts, so a corpus
encoded whole (`eval retrieval`, `tune`) and in chunks (`index`, `encode`) shares its entries, and a command run
after `index` on the same corpus encodes only what is new."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import WORDS

from sentflow import Encoder
from sentflow.encoding.cache import CACHE_BLOCK
from sentflow.streaming import CHUNK_LINES, encode_file


@pytest.fixture(scope="module")
def texts():
    rng = np.random.default_rng(0)
    return [" ".join(rng.choice(WORDS, size=rng.integers(3, 12))) + f" {i}" for i in range(2 * CACHE_BLOCK + 100)]


def counting(encoder: Encoder, monkeypatch) -> list[int]:
    """The number of texts each real forward pass of `encoder` was given."""
    calls: list[int] = []
    real = encoder._encode

    def spy(todo):
        calls.append(len(todo))
        return real(todo)

    monkeypatch.setattr(encoder, "_encode", spy)
    return calls


def test_chunks_and_whole_corpus_share_entries(tiny_bert_dir, texts, tmp_path, monkeypatch):
    assert CHUNK_LINES % CACHE_BLOCK == 0
    exact = Encoder(str(tiny_bert_dir), cache=False).encode(texts)
    encoder = Encoder(str(tiny_bert_dir), cache=tmp_path / "cache")
    calls = counting(encoder, monkeypatch)
    (tmp_path / "corpus.txt").write_text("\n".join(texts) + "\n", encoding="utf-8")
    encode_file(encoder, tmp_path / "corpus.txt", tmp_path / "chunked.npy")
    assert sum(calls) == len(texts)
    np.testing.assert_array_equal(np.load(tmp_path / "chunked.npy"), exact)
    assert len(list((tmp_path / "cache").glob("*.npy"))) == 3  # ceil(1124 / 512) blocks
    calls.clear()
    np.testing.assert_array_equal(encoder.encode(texts), exact)  # the whole corpus, one call: all cached
    assert calls == []


def test_only_changed_blocks_are_encoded_again(tiny_bert_dir, texts, tmp_path, monkeypatch):
    encoder = Encoder(str(tiny_bert_dir), cache=tmp_path / "cache")
    encoder.encode(texts)
    calls = counting(encoder, monkeypatch)
    changed = [*texts[:CACHE_BLOCK], "a new first line of the second block", *texts[CACHE_BLOCK + 1 :]]
    again = encoder.encode(changed)
    assert calls == [CACHE_BLOCK]
    np.testing.assert_array_equal(again, Encoder(str(tiny_bert_dir), cache=False).encode(changed))


def test_eval_retrieval_after_index_encodes_only_the_queries(tiny_bert_dir, texts, tmp_path):
    beir = tmp_path / "beir"
    (beir / "qrels").mkdir(parents=True)
    docs = [{"_id": f"d{i}", "title": "", "text": t} for i, t in enumerate(texts)]
    (beir / "corpus.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs), encoding="utf-8")
    queries = [{"_id": f"q{i}", "text": texts[i * 37]} for i in range(20)]
    (beir / "queries.jsonl").write_text("".join(json.dumps(q) + "\n" for q in queries), encoding="utf-8")
    (beir / "qrels" / "test.tsv").write_text("".join(f"q{i}\td{i * 37}\t1\n" for i in range(20)), encoding="utf-8")
    cache = tmp_path / "cache"
    env = {**os.environ, "SENTFLOW_CACHE": str(cache)}

    def sentflow(*args) -> None:
        done = subprocess.run([sys.executable, "-m", "sentflow.cli", *map(str, args)], env=env, capture_output=True,
                              text=True, timeout=600)  # fmt: skip
        assert done.returncode == 0, done.stderr[-2000:]

    def entries() -> set[str]:
        return {p.name for p in (cache / "embeddings").glob("*.npy")}

    sentflow("index", beir, "--model", tiny_bert_dir, "--out", tmp_path / "index")
    after_index = entries()
    assert len(after_index) == 3
    sentflow("eval", "retrieval", beir, "--model", tiny_bert_dir, "--methods", "none", "--approx-index", "")
    assert len(entries() - after_index) == 1  # the 20 queries; the corpus came from the index's entries
