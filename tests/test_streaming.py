"""Chunked fit / transform / encode over files: same results as in memory, resumable, and refusing bad shards."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from sentflow.cli.main import app
from typer.testing import CliRunner

import sentflow
import sentflow.files.npy as npyfiles
from sentflow.errors import SentflowError
from sentflow.streaming import encode_file, encoder_settings, fit_calibration, scan_text, transform_file
from sentflow.tasks.sources import npy_shards

runner = CliRunner()


@pytest.fixture()
def small_chunks(monkeypatch):
    """Chunks of 10 rows for 16-d float32 data, so every file is read in many pieces."""
    monkeypatch.setattr(npyfiles, "CHUNK_BYTES", 16 * 4 * 10)


@pytest.fixture()
def shards(tmp_path):
    """Three .npy shards of one correlated, offset data set (different dtypes), and the whole array."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((405, 16)) @ rng.standard_normal((16, 16)) + 50.0
    directory = tmp_path / "shards"
    directory.mkdir()
    parts = np.array_split(X, [100, 101])
    for i, part in enumerate(parts):
        np.save(directory / f"part-{i}.npy", part.astype(np.float64 if i == 1 else np.float32))
    return directory, np.concatenate([p.astype(np.float64 if i == 1 else np.float32) for i, p in enumerate(parts)])


def test_fit_on_shards_equals_fit_in_memory(shards, small_chunks):
    directory, X = shards
    expected = sentflow.Whitening(n_components=8, power=0.5).fit(X)
    for source in (str(directory), str(directory / "part-*.npy")):
        streamed = sentflow.Whitening(n_components=8)
        assert fit_calibration(streamed, source, encoder=None) == len(X)
        np.testing.assert_allclose(streamed.components_, expected.components_, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(streamed.mean_, expected.mean_, rtol=1e-12)


def test_transform_file_writes_one_npy_chunk_by_chunk(shards, small_chunks, tmp_path):
    directory, X = shards
    whitening = sentflow.Whitening(n_components=5).fit(X)
    out = tmp_path / "out.npy"
    assert transform_file(whitening, str(directory), out) == (len(X), 5)
    result = np.load(out, allow_pickle=False)
    assert result.dtype == np.float32
    np.testing.assert_allclose(result, whitening.transform(X.astype(np.float32)), rtol=1e-5, atol=1e-5)


def test_a_failure_midway_leaves_no_output(shards, small_chunks, tmp_path):
    directory, X = shards
    broken = X[:50].copy()
    broken[33, 2] = np.nan
    np.save(directory / "part-3.npy", broken.astype(np.float32))
    out = tmp_path / "out.npy"
    out.write_bytes(b"previous result")
    with pytest.raises(SentflowError, match=r"part-3.npy: NaN or Inf values \(1 rows, first at row 33\)"):
        transform_file(sentflow.Whitening().fit(X), str(directory), out)
    assert out.read_bytes() == b"previous result"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.npy", "shards"]


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d: np.save(d / "b.npy", np.zeros((3, 5), np.float32)), "b.npy: 5 columns, but"),
        (lambda d: (d / "notes.txt").write_text("x"), "notes.txt: not a .npy file in the shard directory"),
        (lambda d: np.save(d / "b.npy", np.zeros(4)), "b.npy: must be 2-D"),
        (
            lambda d: np.save(d / "b.npy", np.array([["a"]])),
            "b.npy: must hold real numbers with a valid shape; got shape (1, 1), dtype <U1",
        ),
    ],
)
def test_bad_shard_sets_are_refused_naming_the_file(tmp_path, make, message):
    np.save(tmp_path / "a.npy", np.zeros((3, 4), np.float32))
    make(tmp_path)
    with pytest.raises(SentflowError, match=None) as info:
        npy_shards(tmp_path, role="a test")
    assert message in str(info.value) and "\n" not in str(info.value)


def test_truncated_and_missing_shards(tmp_path):
    path = tmp_path / "a.npy"
    np.save(path, np.ones((100, 4), np.float32))
    path.write_bytes(path.read_bytes()[:-7])
    with pytest.raises(SentflowError, match="a.npy: truncated"):
        npy_shards(path, role="a test")
    with pytest.raises(SentflowError, match="nothing-\\*.npy: no such file or directory"):
        npy_shards(str(tmp_path / "nothing-*.npy"), role="a test")
    with pytest.raises(SentflowError, match="missing.npy: no such file"):
        npy_shards(tmp_path / "missing.npy", role="a test")


@pytest.fixture()
def lines_file(tmp_path):
    words = "a man is playing a guitar the woman is eating with the dog on the beach".split()
    rng = np.random.default_rng(3)
    lines = [" ".join(rng.choice(words, size=rng.integers(1, 12))) for _ in range(53)]
    lines[10] = ""  # an empty line is still a row
    path = tmp_path / "lines.txt"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path, lines


def test_encode_file_equals_encoding_in_memory(tiny_bert_dir, lines_file, tmp_path):
    path, lines = lines_file
    encoder = sentflow.Encoder(str(tiny_bert_dir), "last-avg", batch_size=4, cache=False)
    out = tmp_path / "emb.npy"
    assert encode_file(encoder, path, out, chunk_lines=7) == (53, 32)
    np.testing.assert_allclose(np.load(out), encoder.encode(lines), atol=2e-6)
    assert not list(tmp_path.glob(".*"))  # partial file and resume state are gone


class Interrupt(Exception):
    pass


def test_an_interrupted_encode_resumes_from_its_last_chunk(tiny_bert_dir, lines_file, tmp_path, monkeypatch):
    path, lines = lines_file
    encoder = sentflow.Encoder(str(tiny_bert_dir), "cls", batch_size=4, cache=False)
    calls = []
    real_encode = encoder.encode

    def flaky(texts):
        calls.append(len(texts))
        if len(calls) == 3:
            raise Interrupt
        return real_encode(texts)

    monkeypatch.setattr(encoder, "encode", flaky)
    out = tmp_path / "emb.npy"
    with pytest.raises(Interrupt):
        encode_file(encoder, path, out, chunk_lines=10)
    assert not out.exists()
    state = json.loads((tmp_path / ".emb.npy.partial.json").read_text())
    assert state["done"] == 20 and state["lines"] == 53
    calls.clear()
    monkeypatch.setattr(encoder, "encode", lambda texts: calls.append(len(texts)) or real_encode(texts))
    encode_file(encoder, path, out, chunk_lines=10, resume=True)
    assert calls == [10, 10, 10, 3]  # only the unfinished chunks are encoded again
    np.testing.assert_allclose(np.load(out), real_encode(lines), atol=2e-6)


def test_resume_state_from_another_input_is_refused(tiny_bert_dir, lines_file, tmp_path):
    path, _ = lines_file
    encoder = sentflow.Encoder(str(tiny_bert_dir), "cls", cache=False)
    out = tmp_path / "emb.npy"
    (tmp_path / ".emb.npy.partial").write_bytes(b"")
    state = {"input_sha256": "0" * 64, "lines": 53, "encoder": {}, "done": 10, "rows_sha256": "0" * 64}
    (tmp_path / ".emb.npy.partial.json").write_text(json.dumps(state))
    with pytest.raises(SentflowError, match="belongs to another input or encoder"):
        encode_file(encoder, path, out, resume=True)
    assert not out.exists()


@pytest.mark.parametrize(
    ("state", "message"),
    [
        ('{"done": "10"}', "field 'input_sha256': Field required"),
        ('{"input_sha256": "x", "lines": 53, "encoder": {}, "done": 1}', "field 'input_sha256': String should match"),
        ('{"input_sha256": "%s", "lines": 53, "encoder": {}, "done": -1}' % ("0" * 64), "field 'done'"),
        ('{"input_sha256": "%s", "lines": 1e3, "encoder": {}, "done": 1}' % ("0" * 64), "field 'lines'"),
        ("[" * 10_000, "Invalid JSON"),
        ("\xff\xfe", "Invalid JSON"),
    ],
)
def test_damaged_resume_states_are_one_line_errors(tiny_bert_dir, lines_file, tmp_path, state, message):
    path, _ = lines_file
    (tmp_path / ".emb.npy.partial").write_bytes(b"")
    (tmp_path / ".emb.npy.partial.json").write_text(state)
    encoder = sentflow.Encoder(str(tiny_bert_dir), "cls", cache=False)
    with pytest.raises(SentflowError, match=message) as info:
        encode_file(encoder, path, tmp_path / "emb.npy", resume=True)
    assert "resume state; restart=True starts over" in str(info.value) and "\n" not in str(info.value)


def test_a_partial_output_that_is_not_ours_is_never_written_through(tiny_bert_dir, lines_file, tmp_path):
    path, lines = lines_file
    encoder = sentflow.Encoder(str(tiny_bert_dir), "cls", cache=False)
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    (tmp_path / ".emb.npy.partial").symlink_to(victim)
    encode_file(encoder, path, tmp_path / "emb.npy")  # a fresh run replaces the link, not its target
    assert victim.read_text() == "keep me" and np.load(tmp_path / "emb.npy").shape == (len(lines), encoder.dim)
    with open(tmp_path / ".emb.npy.partial", "wb") as fh:  # wrong shape, with a matching state
        np.save(fh, np.zeros((3, 2), np.float32))
    state = {
        "input_sha256": scan_text(path)[1],
        "lines": len(lines),
        "encoder": encoder_settings(encoder),
        "done": 1,
        "rows_sha256": "0" * 64,
    }
    (tmp_path / ".emb.npy.partial.json").write_text(json.dumps(state))
    with pytest.raises(SentflowError, match="partial output does not match this run"):
        encode_file(encoder, path, tmp_path / "emb.npy", resume=True)


def test_outputs_that_would_destroy_something_are_refused(tmp_path, shards):
    directory, X = shards
    whitening = sentflow.Whitening().fit(X)
    victim = tmp_path / "victim.npy"
    victim.write_bytes(b"keep me")
    link = tmp_path / "link.npy"
    link.symlink_to(victim)
    fifo = tmp_path / "fifo.npy"
    os.mkfifo(fifo)
    readonly = tmp_path / "readonly.npy"
    readonly.write_bytes(b"keep me too")
    readonly.chmod(0o444)
    source = directory / "part-0.npy"
    for out, message in [
        (link, "is a symbolic link"),
        (fifo, "is a special file"),
        (readonly, "is read-only"),
        (source, "is also an input"),
        (tmp_path, "is a directory"),
    ]:
        with pytest.raises(SentflowError, match=message):
            transform_file(whitening, str(source), out)
    assert victim.read_bytes() == b"keep me" and readonly.read_bytes() == b"keep me too" and link.is_symlink()
    assert np.load(source).shape == (100, 16)


def test_cli_encode_resume_and_transform_shards(tiny_bert_dir, lines_file, shards, tmp_path):
    path, lines = lines_file
    out = tmp_path / "emb.npy"
    model = ["--model", str(tiny_bert_dir), "--pooling", "last-avg"]
    result = runner.invoke(app, ["encode", str(path), "--out", str(out), "--chunk-lines", "9", "--resume", *model])
    assert result.exit_code == 0, result.output
    expected = sentflow.Encoder(str(tiny_bert_dir), "last-avg", cache=False).encode(lines)
    np.testing.assert_allclose(np.load(out), expected, atol=2e-6)
    directory, X = shards
    calib, transformed = tmp_path / "w.safetensors", tmp_path / "t.npy"
    result = runner.invoke(app, ["fit", "--data", str(directory / "*.npy"), "--dim", "4", "--out", str(calib)])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["transform", str(directory), "--calib", str(calib), "--out", str(transformed)])
    assert result.exit_code == 0, result.output
    reference = sentflow.Whitening(n_components=4).fit(X).transform(X.astype(np.float32))
    np.testing.assert_allclose(np.load(transformed), reference, rtol=1e-5, atol=1e-5)
    result = runner.invoke(app, ["encode", str(tmp_path), "--out", str(tmp_path / "x.npy"), *model])
    assert result.exit_code == 1 and "is a directory, expected a text file" in result.stderr
