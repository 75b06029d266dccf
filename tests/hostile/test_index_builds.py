"""Hostile cases for `sentflow index` builds: a build works only in a private directory of its own, holds a lock on
its output, and publishes by one rename, so no file a user put beside `--out` (under any name, as a file, a symbolic
or a hard link) is opened, truncated or deleted, and two builds into one `--out` give one correct index or one
refusal, never a mixed one.

The oracle of a correct index is the same corpus built alone into another directory: the same codes, byte for byte.
"""

from __future__ import annotations

import fcntl
import functools
import os
import subprocess
import sys

import numpy as np
import pytest
from hostile_support import assert_one_error, sentflow_cli

from sentflow.errors import Interrupted, SentflowError
from sentflow.search.indexing import index_corpus
from sentflow.streaming import encode_file

# the names the helper files of earlier versions had beside `--out idx`
HELPER_NAMES = [".idx.corpus.txt", ".idx.vectors.npy", "..idx.vectors.npy.partial", "..idx.vectors.npy.partial.json"]
CHUNK = 30  # lines an index build encodes at a time, in the resume test
WORDS = "a the man woman dog cat is playing guitar ball on beach".split()


def corpus_lines(n: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(WORDS, size=int(rng.integers(2, 9)))) for _ in range(n)]


def write_corpus(path, n: int = 40, seed: int = 0):
    path.write_text("\n".join(corpus_lines(n, seed)) + "\n", encoding="utf-8")
    return path


def index_args(corpus, out, bert) -> list[str]:
    return ["index", str(corpus), "--out", str(out), "--model", str(bert), "--max-length", "32"]


def everything(directory) -> dict[str, tuple[str, bytes | str]]:
    """Every entry under `directory` (links not followed): its kind and its bytes or target."""
    found = {}
    for root, dirs, files in os.walk(directory):
        for name in [*dirs, *files]:
            path = os.path.join(root, name)
            rel = os.path.relpath(path, directory)
            if os.path.islink(path):
                found[rel] = ("link", os.readlink(path))
            elif os.path.isdir(path):
                found[rel] = ("dir", b"")
            else:
                with open(path, "rb") as fh:
                    found[rel] = ("file", fh.read())
    return found


def index_files(out) -> dict[str, bytes]:
    return {name: (out / name).read_bytes() for name in ("codes.npy", "rescore.npy", "ids.jsonl")}


@pytest.fixture(scope="module")
def reference(tmp_path_factory, tiny_bert_dir):
    """The index of each test corpus built alone: what any build of it must publish."""
    root = tmp_path_factory.mktemp("reference")
    built = {}
    for seed, n in ((0, 40), (1, 3000), (2, 3000)):
        corpus = write_corpus(root / f"c{seed}.txt", n, seed)
        run = sentflow_cli(*index_args(corpus, root / f"idx{seed}", tiny_bert_dir))
        assert run.code == 0, run.err
        built[seed] = index_files(root / f"idx{seed}")
        assert np.load(root / f"idx{seed}" / "codes.npy").any()  # not the all-zero codes of a mixed build
    return built


@pytest.mark.parametrize("name", HELPER_NAMES)
@pytest.mark.parametrize("kind", ["file", "symlink", "hardlink"])
def test_files_with_helper_names_beside_the_output_are_never_touched(tmp_path, tiny_bert_dir, reference, name, kind):
    corpus = write_corpus(tmp_path / "corpus.txt")
    victim = tmp_path / "user.txt"
    victim.write_text("the user's own file\n")
    planted = tmp_path / name
    if kind == "file":
        planted.write_text("mine\n")
    elif kind == "symlink":
        planted.symlink_to(victim)
    else:
        os.link(victim, planted)
    before = everything(tmp_path)
    run = sentflow_cli(*index_args(corpus, tmp_path / "idx", tiny_bert_dir))
    assert run.code == 0, run.err
    after = everything(tmp_path)
    assert {k: v for k, v in after.items() if k != "idx" and not k.startswith("idx/")} == before
    assert index_files(tmp_path / "idx") == reference[0]


def test_a_corpus_named_like_a_helper_file_is_read_not_replaced(tmp_path, tiny_bert_dir, reference):
    corpus = write_corpus(tmp_path / ".x.corpus.txt")
    before = corpus.read_bytes()
    run = sentflow_cli(*index_args(corpus, tmp_path / "x", tiny_bert_dir))
    assert run.code == 0, run.err
    assert corpus.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [".x.corpus.txt", "x"]
    assert index_files(tmp_path / "x") == reference[0]


def test_a_build_into_an_output_another_build_holds_is_refused_in_one_line(tmp_path, tiny_bert_dir, reference):
    corpus = write_corpus(tmp_path / "corpus.txt")
    out = tmp_path / "idx"
    assert sentflow_cli(*index_args(corpus, out, tiny_bert_dir)).code == 0
    before = everything(tmp_path)
    fd = os.open(out, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # what a running build holds
        line = assert_one_error(sentflow_cli(*index_args(corpus, out, tiny_bert_dir)))
    finally:
        os.close(fd)
    assert "another sentflow process is writing this output now" in line
    assert everything(tmp_path) == before
    assert sentflow_cli(*index_args(corpus, out, tiny_bert_dir)).code == 0  # released with its holder


@pytest.mark.parametrize("seeds", [(1, 1), (1, 2)], ids=["same-corpus", "two-corpora"])
def test_two_concurrent_builds_give_one_correct_index_or_one_refusal(tmp_path, tiny_bert_dir, reference, seeds):
    corpora = [write_corpus(tmp_path / f"c{i}-{seed}.txt", 3000, seed) for i, seed in enumerate(seeds)]
    out = tmp_path / "idx"
    command = [sys.executable, "-m", "sentflow.cli"]
    runs = [
        subprocess.Popen([*command, *index_args(corpus, out, tiny_bert_dir)], stderr=subprocess.PIPE, text=True)
        for corpus in corpora
    ]
    results = [(run.wait(timeout=600), run.stderr.read()) for run in runs]  # type: ignore[union-attr]
    for run in runs:
        run.stderr.close()  # type: ignore[union-attr]
    succeeded = [seed for seed, (code, _) in zip(seeds, results, strict=True) if code == 0]
    assert succeeded, results
    for code, err in results:
        assert "Traceback" not in err, err
        if code != 0:
            last = err.strip().splitlines()[-1]
            assert code == 1 and last.startswith("error: ") and err.count("error: ") == 1, err
            assert "another sentflow process is writing this output now" in last, err
    published = index_files(out)
    assert any(published == reference[seed] for seed in succeeded)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([*(c.name for c in corpora), "idx"])


def test_an_interrupted_build_keeps_its_rows_privately_and_resumes(tmp_path, tiny_bert_dir, monkeypatch):
    import sentflow
    import sentflow.search.indexing as indexing

    monkeypatch.setattr(indexing, "encode_file", functools.partial(encode_file, chunk_lines=CHUNK))
    corpus = write_corpus(tmp_path / "corpus.txt", CHUNK + 10)  # two chunks: the first is kept
    out = tmp_path / "idx"
    encoder = sentflow.Encoder(str(tiny_bert_dir), "last-avg", max_length=32, cache=False)
    pipeline = sentflow.Pipeline(encoder, normalize=True)  # what the command line builds
    alone = tmp_path / "alone"
    index_corpus(corpus, alone / "idx", pipeline)  # the oracle: the same build, never interrupted
    real, calls = pipeline.encode, []

    def interrupted(texts):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(texts)

    monkeypatch.setattr(pipeline, "encode", interrupted)
    with pytest.raises(Interrupted, match=f"{CHUNK} of {CHUNK + 10} sentences are kept"):
        index_corpus(corpus, out, pipeline)
    (kept,) = [p for p in tmp_path.iterdir() if p.name not in ("corpus.txt", "alone")]
    assert kept.name.startswith(".idx.sentflow-build-") and kept.stat().st_mode & 0o077 == 0  # private
    assert not out.exists()
    monkeypatch.setattr(pipeline, "encode", real)
    kept_rows = everything(kept)
    with pytest.raises(SentflowError, match=f"left {CHUNK} of {CHUNK + 10} rows; add resume=True"):
        index_corpus(corpus, out, pipeline)  # neither flag: refused, and what resume needs is kept
    assert everything(kept) == kept_rows and not out.exists()
    index_corpus(corpus, out, pipeline, resume=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["alone", "corpus.txt", "idx"]
    assert index_files(out) == index_files(alone / "idx")


def test_an_output_whose_parent_is_missing_is_created(tmp_path, tiny_bert_dir, reference):
    corpus = write_corpus(tmp_path / "corpus.txt")
    run = sentflow_cli(*index_args(corpus, tmp_path / "a" / "b" / "idx", tiny_bert_dir))
    assert run.code == 0, run.err
    assert index_files(tmp_path / "a" / "b" / "idx") == reference[0]


def test_a_failed_build_leaves_nothing_behind(tmp_path, tiny_bert_dir):
    corpus = tmp_path / "corpus.txt"
    corpus.write_bytes(b"fine\n" + b"\xff\xfe not utf-8\n")
    line = assert_one_error(sentflow_cli(*index_args(corpus, tmp_path / "idx", tiny_bert_dir)))
    assert "line 2: not UTF-8 text" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["corpus.txt"]
