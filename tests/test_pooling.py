"""Pooling specs: `layers:` parsing and its one-line errors, aliases equal to their layer sets, cache keys."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sentflow import Encoder, SentflowError
from sentflow.encoding.pooling import masked_mean, parse_pooling, pool

SENTENCES = ["a man is playing the guitar .", "the dog", "a girl is brushing her hair on the beach ."]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("layers:", "pooling 'layers:' lists no layer"),
        ("layers:1,x", "pooling 'layers:1,x': 'x' is not a hidden-state index"),
        ("layers:1.5", "pooling 'layers:1.5': '1.5' is not a hidden-state index"),
        ("layers:1,,2", "pooling 'layers:1,,2': '' is not a hidden-state index"),
        ("mean", "unknown pooling 'mean'"),
    ],
)
def test_bad_specs_are_one_line_errors(spec, message):
    with pytest.raises(SentflowError, match=message) as err:
        parse_pooling(spec)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("layers:1,4", r"pooling 'layers:1,4': hidden-state index 4 is out of range .* 4 hidden states \(use -4..3\)"),
        ("layers:-5", "pooling 'layers:-5': hidden-state index -5 is out of range"),
        ("layers:3,-1", "pooling 'layers:3,-1': a hidden state is listed twice"),
    ],
)
def test_layers_outside_the_model_are_one_line_errors(tiny_bert_dir, spec, message):
    with pytest.raises(SentflowError, match=message):
        Encoder(str(tiny_bert_dir), pooling=spec, cache=False).encode(SENTENCES)


def test_aliases_are_their_layer_sets():
    assert parse_pooling("first-last-avg").key == parse_pooling("layers:1,-1").key
    assert parse_pooling("last-avg").hidden_states(7) == (6,)
    assert parse_pooling("last2avg").hidden_states(7) == (5, 6)
    assert parse_pooling("layers:-1, 0,2").hidden_states(7) == (0, 2, 6)


def test_layers_one_minus_one_equals_first_last_avg_exactly(tiny_bert_dir):
    alias = Encoder(str(tiny_bert_dir), pooling="first-last-avg", cache=False).encode(SENTENCES)
    for spec in ("layers:1,-1", "layers:-1,1", "layers:1,3"):
        np.testing.assert_array_equal(Encoder(str(tiny_bert_dir), pooling=spec, cache=False).encode(SENTENCES), alias)


def test_pool_averages_over_tokens_then_layers():
    gen = torch.Generator().manual_seed(0)
    hidden = {i: torch.randn(2, 5, 4, generator=gen) for i in range(4)}
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    got = pool(parse_pooling("layers:0,-2"), hidden, mask, n_hidden=4)
    expected = torch.stack([hidden[0][0, :3].mean(0), hidden[0][1].mean(0)]) / 2
    expected += torch.stack([hidden[2][0, :3].mean(0), hidden[2][1].mean(0)]) / 2
    torch.testing.assert_close(got, expected)
    torch.testing.assert_close(masked_mean(hidden[1], mask)[0], hidden[1][0, :3].mean(0))


def test_cache_key_includes_the_layer_set(tiny_bert_dir, tmp_path):
    first_last = Encoder(str(tiny_bert_dir), pooling="first-last-avg", cache=tmp_path).encode(SENTENCES)
    Encoder(str(tiny_bert_dir), pooling="layers:1,-1", cache=tmp_path).encode(SENTENCES)
    assert len(list(tmp_path.glob("*.npy"))) == 1  # the alias and its spelling share the vectors
    other = Encoder(str(tiny_bert_dir), pooling="layers:0,-1", cache=tmp_path).encode(SENTENCES)
    assert len(list(tmp_path.glob("*.npy"))) == 2
    assert not np.allclose(other, first_last)
