"""Nothing non-finite is written, returned or reported, whatever the arrays and STS files.

Generated cases; the oracles are `hostile_support`'s (see its docstring).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from hostile_support import (
    SOME,
    WORDS,
    assert_ok_or_one_error,
    load_npy_finite,
    raw_header,
    sentflow_cli,
    strict_json,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import sentflow
from sentflow.errors import SentflowError

# --- 2. nothing non-finite is written, returned or reported --------------------------------------------------------


@st.composite
def hostile_matrices(draw) -> np.ndarray:
    """(n, d) arrays that break naive statistics: NaN/Inf, huge or tiny values, constant or rank-deficient rows,
    no rows or no columns."""
    n, d = draw(st.integers(0, 24)), draw(st.integers(0, 5))
    kind = draw(st.sampled_from(["any", "constant", "rank-deficient", "scaled", "empty-rows", "no-columns"]))
    if kind == "empty-rows":
        return np.zeros((0, max(d, 1)))
    if kind == "no-columns":
        return np.zeros((max(n, 1), 0))
    if kind == "any":
        values = st.floats(allow_nan=True, allow_infinity=True, width=64)
        return draw(hnp.arrays(np.float64, (n, d), elements=values))
    if kind == "constant":
        value = draw(st.floats(allow_nan=False, allow_infinity=False))
        return np.full((n, d), value)
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    if kind == "rank-deficient":
        rank = draw(st.integers(0, max(d - 1, 0)))
        return rng.standard_normal((n, rank)) @ rng.standard_normal((rank, d))
    scale = 10.0 ** draw(st.integers(-320, 308))
    return rng.standard_normal((n, d)) * scale


@given(X=hostile_matrices(), data=st.data())
@SOME
def test_whitening_of_hostile_arrays_is_finite_or_one_line_error(X, data):
    dim = data.draw(st.none() | st.integers(-1, 6), label="n_components")
    power = data.draw(st.floats(allow_nan=True, allow_infinity=True), label="power")
    eps = data.draw(st.sampled_from([1e-9, 0.0, math.nan, math.inf, -1.0]) | st.floats(0, 1), label="eps")
    try:
        whitening = sentflow.Whitening(n_components=dim, power=power, eps=eps).fit(X)
        Z = whitening.transform(X)
    except SentflowError as exc:
        assert "\n" not in str(exc)
        return
    assert math.isfinite(eps) and eps >= 0 and 0 <= power <= 1, "a non-finite or negative eps/power was accepted"
    assert np.isfinite(Z).all() and np.isfinite(whitening.components_).all() and np.isfinite(whitening.mean_).all()


@given(X=hostile_matrices())
@SOME
def test_fit_transform_and_diagnose_on_hostile_arrays(base, X):
    where = base.fresh()
    np.save(where / "x.npy", X)
    fitted = sentflow_cli("fit", "--data", where / "x.npy", "--out", where / "c.safetensors")
    if assert_ok_or_one_error(fitted):
        tensors, _ = raw_header(where / "c.safetensors")
        assert all(torch.isfinite(t).all() for t in tensors.values())
        again = sentflow_cli("transform", where / "x.npy", "--calib", where / "c.safetensors", "--out", where / "z.npy")
        if assert_ok_or_one_error(again):
            load_npy_finite(where / "z.npy", (X.shape[0], X.shape[1]))
    if X.shape[1] == 4:  # the base calibration's width
        run = sentflow_cli("transform", where / "x.npy", "--calib", base.calib, "--out", where / "t.npy")
        if assert_ok_or_one_error(run):
            load_npy_finite(where / "t.npy", X.shape)
    report = sentflow_cli("diagnose", where / "x.npy", "--json", "--n-pairs", "50")
    if assert_ok_or_one_error(report):
        assert_finite_json(strict_json(report.out))


def assert_finite_json(value) -> None:
    if isinstance(value, float):
        assert math.isfinite(value)
    elif isinstance(value, dict):
        for item in value.values():
            assert_finite_json(item)
    elif isinstance(value, list):
        for item in value:
            assert_finite_json(item)


@given(X=hostile_matrices())
@settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_bert_flow_of_hostile_arrays_is_finite_or_one_line_error(X):
    flow = sentflow.BertFlow(levels=1, depth=1, hidden=4, epochs=1, batch_size=8, progress=False)
    try:
        Z = flow.fit(X).transform(X)
    except SentflowError as exc:
        assert "\n" not in str(exc)
        return
    assert np.isfinite(Z).all()


BAD_SCORES = ["nan", "inf", "-inf", "1e999", "9" * 400, "abc", "", "0x10", "2,5"]


@st.composite
def sts_files(draw) -> tuple[dict[str, str], bool]:
    """(STS-B csv splits with few pairs, whether a score is not a finite number): repeated or identical sentences,
    constant, extreme or unreadable scores."""
    sentence = st.lists(st.sampled_from(WORDS), min_size=1, max_size=5).map(" ".join)
    score = st.floats(0, 5).map(lambda v: f"{v:.3f}")
    if draw(st.integers(0, 2)) == 0:  # extreme or unreadable scores in some files
        score = score | st.floats(-1e300, 1e300).map(repr) | st.sampled_from(BAD_SCORES)
    constant = draw(st.booleans())
    files, bad = {}, False
    for split in ("train", "dev", "test"):
        pairs = draw(st.lists(st.tuples(sentence, sentence, score), min_size=1, max_size=12))
        rows = [f"g\tf\t2012\t{i:04d}\t{'2.5' if constant else s}\t{a}\t{b}" for i, (a, b, s) in enumerate(pairs)]
        bad = bad or (not constant and any(s in BAD_SCORES for _, _, s in pairs))
        files[f"sts-{split}.csv"] = "\n".join(rows) + "\n"
    return files, bad


@given(sts=sts_files(), methods=st.sampled_from(["none", "none,whitening", "whitening"]))
@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_eval_and_tune_json_are_always_valid_json_or_one_line_error(base, sts, methods):
    files, bad = sts
    where = base.fresh()
    for name, text in files.items():
        (where / name).write_text(text)
    common = ["--model", base.bert, "--data-dir", where, "--json"]
    for args in (["eval", "sts-b", "--methods", methods, *common], ["tune", "sts-b", "--no-flow", *common]):
        run = sentflow_cli(*args)
        if assert_ok_or_one_error(run):
            assert not bad, f"{args[0]} read a score that is not a finite number"
            report = strict_json(run.out)
            assert_finite_json(report)
