"""Hostile cases for resumable encoding: a resume never mixes rows of two runs, never trusts a state it cannot
prove, notices an input that changed under it, and an interruption says how to continue."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sentflow.cli.main import app
from typer.testing import CliRunner

import sentflow
from sentflow.errors import Interrupted, SentflowError
from sentflow.pipeline import Pipeline
from sentflow.streaming import encode_file

runner = CliRunner()


@pytest.fixture()
def corpus(tmp_path):
    rng = np.random.default_rng(5)
    words = "a man is playing a guitar the woman is eating with the dog on the beach".split()
    lines = [" ".join(rng.choice(words, size=rng.integers(1, 10))) for _ in range(40)]
    path = tmp_path / "corpus.txt"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path, lines


@pytest.fixture()
def encoder(tiny_bert_dir):
    return sentflow.Encoder(str(tiny_bert_dir), "last-avg", batch_size=8, cache=False)


def interrupt_at(encoder, monkeypatch, call: int, error: type[BaseException] = KeyboardInterrupt) -> None:
    """Make the encoder's `call`-th encode raise `error` (Ctrl-C by default)."""
    real, calls = encoder.encode, []

    def flaky(texts):
        calls.append(1)
        if len(calls) == call:
            raise error
        return real(texts)

    monkeypatch.setattr(encoder, "encode", flaky)


def pipeline_of(encoder, seed: int) -> Pipeline:
    rows = np.random.default_rng(seed).standard_normal((200, encoder.dim)).astype(np.float32)
    return Pipeline(encoder, sentflow.Whitening(n_components=8).fit(rows))


def test_ctrl_c_keeps_the_finished_rows_and_says_how_to_continue(encoder, corpus, tmp_path, monkeypatch):
    path, lines = corpus
    out = tmp_path / "emb.npy"
    interrupt_at(encoder, monkeypatch, 3)
    with pytest.raises(Interrupted, match="20 of 40 sentences are kept; .* resume=True to continue"):
        encode_file(encoder, path, out, chunk_lines=10)
    monkeypatch.undo()
    with pytest.raises(SentflowError, match="left 20 of 40 rows; add resume=True to continue it or restart=True"):
        encode_file(encoder, path, out, chunk_lines=10)  # not silently started over
    encode_file(encoder, path, out, chunk_lines=10, resume=True)
    np.testing.assert_allclose(np.load(out), encoder.encode(lines), atol=2e-6)


def test_a_pipeline_fitted_again_with_the_same_settings_is_not_resumed(encoder, corpus, tmp_path, monkeypatch):
    path, _ = corpus
    out = tmp_path / "emb.npy"
    first, second = pipeline_of(encoder, 0), pipeline_of(encoder, 1)
    assert first.config() == second.config()  # only the calibration's numbers differ
    interrupt_at(encoder, monkeypatch, 2, RuntimeError)
    with pytest.raises(RuntimeError):
        encode_file(first, path, out, chunk_lines=10)
    monkeypatch.undo()
    with pytest.raises(SentflowError, match="another input or encoder \\(or the pipeline was fitted again\\)"):
        encode_file(second, path, out, chunk_lines=10, resume=True)
    assert not out.exists()
    encode_file(second, path, out, chunk_lines=10, restart=True)
    np.testing.assert_allclose(np.load(out), second.encode(corpus[1]), atol=2e-5)


def test_a_forged_state_over_rows_never_written_is_refused(encoder, corpus, tmp_path, monkeypatch):
    path, _ = corpus
    out = tmp_path / "emb.npy"
    interrupt_at(encoder, monkeypatch, 2, RuntimeError)
    with pytest.raises(RuntimeError):
        encode_file(encoder, path, out, chunk_lines=10)
    state_path = tmp_path / ".emb.npy.partial.json"
    state = json.loads(state_path.read_text())
    state_path.write_text(json.dumps({**state, "done": 40}))  # claims every line, over zero-filled rows
    with pytest.raises(SentflowError, match="40 finished rows do not match the checksum"):
        encode_file(encoder, path, out, chunk_lines=10, resume=True)
    assert not out.exists()


def test_an_input_that_shrinks_while_it_is_encoded_writes_nothing(encoder, corpus, tmp_path, monkeypatch):
    path, lines = corpus
    out = tmp_path / "emb.npy"
    real, calls = encoder.encode, []

    def other_writer(texts):
        calls.append(1)
        if len(calls) == 1:
            path.write_text("\n".join(lines[:15]) + "\n", encoding="utf-8")
        return real(texts)

    monkeypatch.setattr(encoder, "encode", other_writer)
    with pytest.raises(SentflowError, match="the file changed while it was encoded \\(40 lines at the start, 15"):
        encode_file(encoder, path, out, chunk_lines=10)
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["corpus.txt"]


def test_cli_interrupt_hint_and_restart(tiny_bert_dir, corpus, tmp_path, monkeypatch):
    path, lines = corpus
    out = tmp_path / "emb.npy"
    args = ["encode", str(path), "--out", str(out), "--model", str(tiny_bert_dir), "--chunk-lines", "10"]
    real = sentflow.Encoder.encode
    calls = []

    def flaky(self, texts):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(self, texts)

    monkeypatch.setattr(sentflow.Encoder, "encode", flaky)
    result = runner.invoke(app, args)
    assert result.exit_code == 130
    assert result.output.strip().splitlines()[-1] == (
        "interrupted: 10 of 40 sentences are kept; run the same command with --resume to continue "
        "(--restart starts over)"
    )
    monkeypatch.undo()
    result = runner.invoke(app, args)
    assert result.exit_code == 1 and "add --resume to continue it or --restart to start over" in result.output
    result = runner.invoke(app, [*args, "--resume", "--restart"])
    assert result.exit_code == 1 and "give one" in result.output
    result = runner.invoke(app, [*args, "--restart"])
    assert result.exit_code == 0, result.output
    assert np.load(out).shape == (40, 32)


@pytest.mark.parametrize("flags", [["--pooling", "cls"], ["--model", "other"], ["--max-length", "12"]])
def test_encode_refuses_flags_a_pipeline_fixes(encoder, corpus, tmp_path, flags):
    path, _ = corpus
    pipeline_of(encoder, 0).save(tmp_path / "p")
    out = tmp_path / "emb.npy"
    result = runner.invoke(app, ["encode", str(path), "--out", str(out), "--pipeline", str(tmp_path / "p"), *flags])
    assert result.exit_code == 1 and not out.exists()
    assert f"{flags[0]}: the pipeline {tmp_path / 'p'} fixes these; leave them out" in result.output
