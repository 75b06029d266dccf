"""MomentAccumulator.merge: any split of the rows, merged in any tree, equals one pass (and numpy) within 1e-9."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sentflow.calibration.stats import MomentAccumulator
from sentflow.errors import SentflowError


def accumulate(X: np.ndarray, first: int | None = None) -> MomentAccumulator:
    """One pass over X; its shift is the mean of the `first` rows fed in a first update (all rows by default)."""
    acc = MomentAccumulator(X.shape[1])
    acc.update(X[:first])
    acc.update(X[len(X[:first]) :])
    return acc


def assert_close(actual: np.ndarray, expected: np.ndarray, rtol: float = 1e-9) -> None:
    """Equal within rtol of the largest entry of `expected` (entries span many magnitudes)."""
    scale = max(1.0, float(np.abs(expected).max()))
    assert np.abs(actual - expected).max() <= rtol * scale


def shards_with_offsets(rng: np.random.Generator, n: int, d: int, cuts: list[int], offset: float) -> list[np.ndarray]:
    """Unit-ish Gaussian rows, split at `cuts`, each shard moved by its own random mean of size `offset`."""
    X = rng.standard_normal((n, d)) * rng.uniform(0.1, 3.0, d)
    shards = np.split(X, sorted(cuts))
    return [shard + offset * rng.standard_normal(d) for shard in shards]


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(2, 80),
    d=st.integers(1, 6),
    n_cuts=st.integers(0, 7),
    offset=st.sampled_from([0.0, 1.0, 1e3, 1e5]),
    data=st.data(),
)
def test_any_split_merged_in_any_tree_equals_one_pass(seed, n, d, n_cuts, offset, data):
    rng = np.random.default_rng(seed)
    cuts = data.draw(st.lists(st.integers(0, n), min_size=n_cuts, max_size=n_cuts))
    shards = shards_with_offsets(rng, n, d, cuts, offset)
    # empty shards included; shifts from a random prefix, so no shift is its shard's mean
    parts = [accumulate(shard, data.draw(st.integers(1, max(1, len(shard))))) for shard in shards]
    while len(parts) > 1:  # a random binary tree, random operand order
        i, j = data.draw(st.lists(st.integers(0, len(parts) - 1), min_size=2, max_size=2, unique=True))
        merged = parts[i].merge(parts[j])
        parts = [p for k, p in enumerate(parts) if k not in (i, j)] + [merged]
    X = np.concatenate(shards)
    merged, single = parts[0], accumulate(X)
    assert merged.count == single.count == n
    assert_close(merged.mean(), single.mean())
    assert_close(merged.covariance(), single.covariance())
    assert_close(merged.covariance(), np.atleast_2d(np.cov(X, rowvar=False)))


def test_merge_hand_computed_and_leaves_inputs_unchanged():
    a, b = accumulate(np.array([[0.0], [2.0]])), accumulate(np.array([[10.0]]))
    before = pickle.dumps((a.__dict__, b.__dict__))
    merged = a.merge(b)
    assert pickle.dumps((a.__dict__, b.__dict__)) == before
    assert merged.count == 3
    np.testing.assert_allclose(merged.mean(), [4.0], rtol=0, atol=1e-12)
    # (0-4)^2 + (2-4)^2 + (10-4)^2 = 56, over n-1 = 2
    np.testing.assert_allclose(merged.covariance(), [[28.0]], rtol=0, atol=1e-12)


def test_merged_accumulator_keeps_streaming():
    rng = np.random.default_rng(1)
    X = rng.standard_normal((300, 4)) + 50.0
    merged = accumulate(X[:100]).merge(accumulate(X[100:200]))
    merged.update(X[200:])
    assert_close(merged.covariance(), np.cov(X, rowvar=False))
    assert_close(merged.mean(), X.mean(axis=0))


def test_merge_with_empty_is_a_copy_and_both_empty_stays_empty():
    X = np.arange(12.0).reshape(6, 2)
    full = accumulate(X)
    for merged in (full.merge(MomentAccumulator(2)), MomentAccumulator(2).merge(full)):
        assert merged is not full and merged.count == 6
        assert_close(merged.covariance(), full.covariance())
    empty = MomentAccumulator(2).merge(MomentAccumulator(2))
    assert empty.count == 0 and empty.shift is None


def test_merge_rejects_different_widths():
    with pytest.raises(SentflowError, match="3 and 2 features"):
        MomentAccumulator(3).merge(MomentAccumulator(2))


def test_pickles_as_plain_arrays():
    acc = accumulate(np.random.default_rng(0).standard_normal((20, 3)))
    assert {type(v) for v in vars(acc).values()} <= {int, np.ndarray}
    copy = pickle.loads(pickle.dumps(acc, protocol=5))
    assert_close(copy.covariance(), acc.covariance())
