"""Token-budget batching: every sentence once, budgets kept, longest first, and vectors back in input order."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import SENTENCES
from hypothesis import given
from hypothesis import strategies as st

from sentflow import Encoder, SentflowError
from sentflow.encoding.encoder import length_batches


@given(st.lists(st.integers(1, 60), max_size=80), st.integers(1, 300))
def test_token_batches_cover_every_row_once_within_the_budget(lengths, budget):
    groups = length_batches(lengths, batch_size=7, batch_tokens=budget)
    rows = np.concatenate(groups) if groups else np.array([], dtype=int)
    assert sorted(rows.tolist()) == list(range(len(lengths)))
    assert [lengths[i] for i in rows] == sorted(lengths, reverse=True)  # longest first, so little padding
    for group in groups:
        longest = max(lengths[i] for i in group)
        assert len(group) == 1 or len(group) * longest <= budget
    # greedy: the next sentence would not have fit
    for group in groups[:-1]:
        assert (len(group) + 1) * max(lengths[i] for i in group) > budget


def test_sentence_batches_are_batch_size_rows():
    assert [len(g) for g in length_batches([3, 1, 2, 5, 4], batch_size=2)] == [2, 2, 1]


@pytest.mark.parametrize("batch_tokens", [1, 12, 40, 10_000])
def test_token_batching_returns_vectors_in_input_order(tiny_bert_dir, batch_tokens):
    texts = SENTENCES + SENTENCES[::-1] + SENTENCES[1:3]
    alone = np.stack([Encoder(str(tiny_bert_dir), cache=False).encode([t])[0] for t in SENTENCES])
    expected = alone[[SENTENCES.index(t) for t in texts]]
    encoder = Encoder(str(tiny_bert_dir), cache=False, batch_tokens=batch_tokens)
    np.testing.assert_allclose(encoder.encode(texts), expected, atol=1e-5, rtol=0)


def test_batch_tokens_must_be_positive():
    with pytest.raises(SentflowError, match="batch_tokens must be >= 1"):
        Encoder(batch_tokens=0)
