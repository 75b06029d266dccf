"""Hostile cases for specs and environment values: `--quantize` specs and `SENTFLOW_THREADS` are parsed by one strict
parser each (ASCII digits only), so any string is a valid setting or one `error:` line, never an internal error.

Generated cases; the oracles are `hostile_support`'s (see its docstring).
"""

from __future__ import annotations

import re

import pytest
from hostile_support import SOME, assert_one_error, sentflow_cli
from hypothesis import given
from hypothesis import strategies as st

from sentflow.errors import SentflowError
from sentflow.runtime import MAX_THREADS, THREADS_ENV, env_threads
from sentflow.search.quantize import make_quantizer

TRICKY = ["1.2.3", ".", "..", "²", "١٢", "1_0", "+5", "-5", "5e1", "nan", "inf", " 99", "99 ", "0x10", "99.", "", "٩٩"]
SPEC_TEXT = st.text(st.sampled_from("0123456789.:²١_ +-eanitpqbry48") | st.characters(codec="utf-8"), max_size=12)


def expected_spec(spec: str) -> str | None:
    """The spec a strict reading of `spec` gives (None: refused), written without sentflow."""
    match = re.fullmatch(r"(none|binary|int8|int4|itq|pca)(?::(.*))?", spec.strip().lower(), re.DOTALL)
    if match is None:
        return None
    kind, arg = match.groups()
    if kind in ("none", "binary"):
        return kind if arg is None else None
    if kind in ("int8", "int4"):
        if arg is None:
            return kind
        ok = re.fullmatch(r"[0-9]{1,18}(\.[0-9]{1,18})?|\.[0-9]{1,18}", arg) and 50 < float(arg) <= 100
        return (kind if float(arg) == 99.9 else f"{kind}:{float(arg):g}") if ok else None
    ok = arg is not None and re.fullmatch(r"[0-9]{1,18}", arg) and 1 <= int(arg) <= 1 << 16
    return f"{kind}:{int(arg)}" if ok else None


@given(spec=st.sampled_from(["int8", "int4", "itq", "pca", "binary", "none"]).flatmap(
    lambda kind: st.sampled_from([*TRICKY, "99.5", "100", "64"]).map(lambda arg: f"{kind}:{arg}") | SPEC_TEXT
    .map(lambda arg: f"{kind}:{arg}")) | SPEC_TEXT)
@SOME
def test_any_quantize_spec_is_read_strictly_or_refused_in_one_line(spec):
    want = expected_spec(spec)
    try:
        got = make_quantizer(spec).spec
    except SentflowError as exc:
        assert want is None, (spec, str(exc))
        assert "\n" not in str(exc)
        return
    assert got == want, spec


@pytest.mark.parametrize("spec", ["int8:1.2.3", "int8:.", "int4:²", "itq:١٢", "pca:1_0", "itq:+8"])
def test_index_refuses_a_malformed_spec_before_reading_anything(tmp_path, tiny_bert_dir, spec):
    corpus = tmp_path / "c.txt"
    corpus.write_text("the man plays guitar\n")
    run = sentflow_cli("index", corpus, "--out", tmp_path / "idx", "--model", tiny_bert_dir, "--quantize", spec)
    line = assert_one_error(run)
    assert "ASCII" in line or "unknown quantizer" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.txt"]


@pytest.mark.parametrize("spec", ["int8:1.2.3", "int8:."])
def test_eval_retrieval_refuses_a_malformed_spec(tiny_bert_dir, spec):
    run = sentflow_cli("eval", "retrieval", "sts-b", "--model", tiny_bert_dir, "--quantize", spec)
    assert "ASCII" in assert_one_error(run)


ENV_TEXT = st.text(st.sampled_from("0123456789²١ _+-.") | st.characters(exclude_categories=("Cs",)), max_size=6)


@given(raw=st.sampled_from(TRICKY) | ENV_TEXT.map(lambda text: text.replace("\0", "")))  # no NUL in an environment
@SOME
def test_sentflow_threads_is_ascii_digits_in_range_or_one_line(raw):
    value = raw.strip()
    valid = re.fullmatch(r"[0-9]{1,18}", value) is not None and 1 <= int(value) <= MAX_THREADS
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(THREADS_ENV, raw)
        if not value:
            assert env_threads() is None
        elif valid:
            assert env_threads() == int(value)
        else:
            with pytest.raises(SentflowError, match=THREADS_ENV):
                env_threads()


def test_the_command_line_refuses_a_superscript_thread_count(tmp_path, tiny_bert_dir, monkeypatch):
    monkeypatch.setenv(THREADS_ENV, "²")
    lines = tmp_path / "s.txt"
    lines.write_text("the man plays guitar\n")
    run = sentflow_cli("encode", lines, "--out", tmp_path / "o.npy", "--model", tiny_bert_dir)
    line = assert_one_error(run)
    assert THREADS_ENV in line and "ASCII digits" in line and not (tmp_path / "o.npy").exists()
