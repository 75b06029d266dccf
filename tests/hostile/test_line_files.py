"""Hostile cases for line-oriented files (corpora, queries, ids, snippets) and what search prints: every Unicode line
separator round-trips, a line is read with bounded memory (an over-long one is an error naming it), FIFOs and other
special files are refused before anything blocks on them, and control characters never reach the terminal raw.

Generated cases; the oracles are `hostile_support`'s (see its docstring).
"""

from __future__ import annotations

import json
import os
import re
import unicodedata

import pytest
from hostile_support import FEW, SOME, assert_one_error, bounded, sentflow_cli, strict_json
from hypothesis import given
from hypothesis import strategies as st

from sentflow.errors import SentflowError
from sentflow.files.lines import MAX_LINE_BYTES, iter_lines, read_json_lines, write_json_lines

SEPARATORS = "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"  # everything str.splitlines breaks on
HIDDEN = ("Cc", "Cf", "Zl", "Zp")
TERMINAL = ["\x1b[2J", "\x1b]0;pwned\x07", "\x1b[31mred", "\u202eevil", "a\u2028b", "[bold]x[/]", "[/oops]"]


def texts_with_separators() -> st.SearchStrategy[str]:
    """Any text, with line separators and control characters made likely."""
    return st.text(st.sampled_from(SEPARATORS) | st.characters(codec="utf-8", exclude_categories=("Cs",)))


@given(values=st.lists(texts_with_separators(), max_size=12))
@SOME
def test_json_lines_round_trip_every_separator(tmp_path_factory, values):
    path = tmp_path_factory.mktemp("lines") / "ids.jsonl"
    write_json_lines(path, values)
    assert read_json_lines(path, len(values)) == values
    text = path.read_text(encoding="utf-8")
    assert len(text.splitlines()) == len(values)  # no raw separator for any other reader to split on
    assert [json.loads(line) for line in text.splitlines()] == values


@given(lines=st.lists(st.text(st.sampled_from("ab \r\x85\u2028\u2029\x0b") | st.characters(codec="utf-8",
       exclude_characters="\n", exclude_categories=("Cs",))), min_size=1, max_size=10))
@SOME
def test_text_lines_split_on_newline_only(tmp_path_factory, lines):
    path = tmp_path_factory.mktemp("text") / "t.txt"
    path.write_bytes("\n".join(lines).encode("utf-8") + b"\n")
    expected = [line.removesuffix("\r") for line in lines]
    assert [text for _, text in iter_lines(path)] == expected


@pytest.fixture(scope="module")
def hostile_index(tmp_path_factory, tiny_bert_dir):
    """An index of documents whose ids and texts hold line separators and terminal escapes."""
    root = tmp_path_factory.mktemp("hostile-index")
    records = [{"_id": f"id{i}{s}x", "title": "", "text": f"{s}the man plays guitar {i} {s}"}
               for i, s in enumerate([*SEPARATORS[2:], *TERMINAL])]
    corpus = root / "corpus.jsonl"
    corpus.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    run = sentflow_cli("index", corpus, "--out", root / "idx", "--model", tiny_bert_dir, "--max-length", "32")
    assert run.code == 0, run.err
    return root / "idx", records


def test_ids_and_snippets_with_separators_survive_an_index(hostile_index):
    out, records = hostile_index
    run = sentflow_cli("search", out, "the man", "--k", str(len(records)), "--json")
    assert run.code == 0, run.err
    (row,) = strict_json(run.out)  # one row per query
    hits = row["hits"]
    assert sorted(h["id"] for h in hits) == sorted(r["_id"] for r in records)
    by_id = {r["_id"]: " ".join(r["text"].split()) for r in records}
    assert all(h["snippet"] == by_id[h["id"]] for h in hits)  # JSON output stays exact


def unescape(shown: str) -> str:
    return re.sub(r"\\x([0-9a-f]{2})|\\u([0-9a-f]{4})|\\U([0-9a-f]{8})",
                  lambda m: chr(int(next(g for g in m.groups() if g), 16)), shown)


def test_search_tables_escape_control_characters(hostile_index):
    out, records = hostile_index
    run = sentflow_cli("search", out, "the man \x1b[2J\x1b]0;title\x07", "--k", str(len(records)))
    assert run.code == 0, run.err
    printed = run.out + run.err
    assert not [c for c in printed if c != "\n" and unicodedata.category(c) in HIDDEN], repr(printed)
    assert "\\x1b[2J" in printed and "\\x1b]0;title\\x07" in printed  # the query, shown escaped in the title


@given(text=st.text(st.characters(codec="utf-8", exclude_characters="\\", exclude_categories=("Cs",))))
@SOME
def test_printable_escapes_exactly_the_hidden_characters(text):
    from sentflow.cli.tables import printable

    shown = printable(text).plain
    assert not [c for c in shown if unicodedata.category(c) in HIDDEN]
    assert unescape(shown) == text


@pytest.mark.parametrize("where", ["corpus", "queries"])
@pytest.mark.parametrize("kind", ["50 MB line", "2 GB sparse"])
def test_an_over_long_line_is_one_error_with_bounded_memory(tmp_path, tiny_bert_dir, hostile_index, where, kind):
    big = tmp_path / "big.txt"
    if kind == "50 MB line":
        big.write_bytes(b"word " * (10 << 20))
    else:
        with open(big, "wb") as fh:
            fh.truncate(2 << 30)  # a sparse file: one line of 2 GB of zero bytes
    if where == "corpus":
        args = ["index", big, "--out", tmp_path / "idx", "--model", tiny_bert_dir, "--max-length", "32"]
    else:
        args = ["search", hostile_index[0], "--queries", big]
    with bounded(seconds=300, memory=1 << 30):
        line = assert_one_error(sentflow_cli(*args))
    assert f"{big}, line 1: longer than {MAX_LINE_BYTES:,} bytes" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.txt"]


@pytest.mark.parametrize("where", ["corpus", "corpus.jsonl", "queries", "encode"])
def test_a_fifo_is_refused_before_anything_blocks_on_it(tmp_path, tiny_bert_dir, hostile_index, where):
    fifo = tmp_path / ("corpus.jsonl" if where == "corpus.jsonl" else "fifo.txt")
    os.mkfifo(fifo)
    model = ["--model", tiny_bert_dir, "--max-length", "32"]
    args = {
        "corpus": ["index", fifo, "--out", tmp_path / "idx", *model],
        "corpus.jsonl": ["index", fifo, "--out", tmp_path / "idx", *model],
        "queries": ["search", hostile_index[0], "--queries", fifo],
        "encode": ["encode", fifo, "--out", tmp_path / "o.npy", *model],
    }[where]
    with bounded(seconds=120):
        line = assert_one_error(sentflow_cli(*args))
    assert str(fifo) in line and ("FIFO" in line or "special file" in line)
    assert sorted(p.name for p in tmp_path.iterdir()) == [fifo.name]


@given(data=st.data())
@FEW
def test_lines_longer_than_the_limit_are_refused_by_number(tmp_path_factory, data):
    limit = data.draw(st.integers(1, 64), label="limit")
    lines = data.draw(st.lists(st.binary(max_size=80).filter(lambda b: b"\n" not in b), min_size=1, max_size=6))
    path = tmp_path_factory.mktemp("limit") / "t.txt"
    path.write_bytes(b"".join(line + b"\n" for line in lines))
    expected = None  # the first line that must fail, and why
    for number, line in enumerate(lines, start=1):
        if len(line) > limit:
            expected = f"line {number}: longer than {limit:,} bytes"
        elif not _is_utf8(line):
            expected = f"line {number}: not UTF-8 text"
        if expected:
            break
    if expected is None:
        assert [number for number, _ in iter_lines(path, limit)] == list(range(1, len(lines) + 1))
    else:
        with pytest.raises(SentflowError, match=re.escape(expected)):
            list(iter_lines(path, limit))


def _is_utf8(raw: bytes) -> bool:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def test_a_beir_record_longer_than_a_text_line_is_indexed_as_the_model_reads_it(tmp_path, tiny_bert_dir):
    import numpy as np

    long_text = "the man plays guitar " * 60_000  # 1.2 MB: more than a text line, less than a JSON Lines record
    records = [{"_id": "long", "text": long_text}, {"_id": "short", "text": "a dog on the beach"}]
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    cut = tmp_path / "cut.txt"  # the same documents, as lines the model reads no further than 32 tokens into
    cut.write_text("the man plays guitar " * 20 + "\na dog on the beach\n", encoding="utf-8")
    model = ["--model", tiny_bert_dir, "--max-length", "32"]
    for name, source in (("full", corpus), ("cut", cut)):
        run = sentflow_cli("index", source, "--out", tmp_path / name, *model)
        assert run.code == 0, run.err
    np.testing.assert_array_equal(np.load(tmp_path / "full" / "rescore.npy"), np.load(tmp_path / "cut" / "rescore.npy"))
    assert read_json_lines(tmp_path / "full" / "ids.jsonl", 2) == ["long", "short"]
