"""The one-line rule everywhere: option parsing errors and internal errors exit 1 with one `error:` line."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from sentflow.cli.main import app
from typer.testing import CliRunner

import sentflow
import sentflow.streaming


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["eval", "sts-b", "--dim", "abc"], "Invalid value for '--dim'"),
        (["eval", "sts-b", "--dim", "0"], "Invalid value for '--dim'"),
        (["fit", "--max-length", str(2**70)], "Invalid value for '--max-length'"),
        (["fit", "--bogus"], "No such option: --bogus"),
        (["transform"], "Missing argument"),
        (["flows", "sample", "x.safetensors", "--n", "0"], "Invalid value for '--n'"),
    ],
)
def test_usage_errors_are_one_line_and_exit_1(args, message):
    done = subprocess.run([sys.executable, "-m", "sentflow.cli", *args], capture_output=True, text=True, timeout=300)
    assert done.returncode == 1, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], done.stderr


def test_internal_errors_say_so_in_one_line(tmp_path, monkeypatch):
    np.save(tmp_path / "x.npy", np.random.default_rng(0).standard_normal((50, 4)))
    monkeypatch.setenv("SENTFLOW_DEBUG", "")  # restored after the test, whatever --debug sets

    def broken(*args, **kwargs):
        raise TypeError("something inside sentflow is wrong")

    monkeypatch.setattr(sentflow.streaming, "_fit_chunks", broken)
    args = ["fit", "--data", str(tmp_path / "x.npy"), "--out", str(tmp_path / "c.safetensors")]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "internal error (TypeError: something inside sentflow is wrong)" in lines[0]
    assert "Traceback" not in result.output and not (tmp_path / "c.safetensors").exists()
    debug = CliRunner().invoke(app, ["--debug", *args])
    assert isinstance(debug.exception, TypeError)  # --debug lets the traceback through


def test_inputs_of_every_kind_are_never_outputs(tmp_path, tiny_bert_dir):
    """The calibration or pipeline a command reads is never its output."""
    runner = CliRunner()
    X = np.random.default_rng(0).standard_normal((80, 32))
    np.save(tmp_path / "x.npy", X)
    calib, pipe = tmp_path / "c.safetensors", tmp_path / "pipe"
    whitening = sentflow.Whitening(n_components=8).fit(X)
    whitening.save(calib)
    sentflow.Pipeline(sentflow.Encoder(str(tiny_bert_dir), "cls"), whitening).save(pipe)
    (tmp_path / "in.txt").write_text("one sentence\n")
    args = ["encode", str(tmp_path / "in.txt"), "--pipeline", str(pipe), "--out", str(pipe / "calibration.safetensors")]
    result = runner.invoke(app, args)
    assert result.exit_code == 1 and "an input of this command" in result.output, result.output
    shards = tmp_path / "shards"
    shards.mkdir()
    np.save(shards / "a.npy", X)
    for out in (shards / "w.safetensors", shards / "pipe", tmp_path):  # inside the data, or holding it
        result = runner.invoke(app, ["fit", "--data", str(shards), "--out", str(out)])
        assert result.exit_code == 1 and "an input of this command" in result.output, result.output
    assert sorted(p.name for p in shards.iterdir()) == ["a.npy"]
    for target, source in ((calib, calib), (pipe / "calibration.safetensors", pipe), (pipe / "pipeline.json", pipe)):
        before = target.read_bytes()
        result = runner.invoke(
            app, ["transform", str(tmp_path / "x.npy"), "--calib", str(source), "--out", str(target)]
        )
        assert result.exit_code == 1 and "an input of this command" in result.output, result.output
        assert target.read_bytes() == before


def test_flow_samples_never_replace_their_checkpoint_and_stay_bounded(tmp_path):
    runner = CliRunner()
    run = tmp_path / "run"
    config = '{"hidden": 8, "depth": 1, "couplings": 2}'
    args = ["flows", "train", "nice", "--out", str(run), "--epochs", "1", "--minutes", "0.05", "--config", config]
    assert runner.invoke(app, args).exit_code == 0
    ckpt = run / "checkpoint.safetensors"
    before = ckpt.read_bytes()
    cases = [
        (["--out", str(ckpt)], "is also an input of this command"),
        (["--n", "100000000"], "would have 129602880016 pixels"),
        (["--temperature", "inf"], "Invalid value for '--temperature'"),
        (["--seed", str(2**64)], "Invalid value for '--seed'"),
    ]
    for extra, message in cases:
        result = runner.invoke(app, ["flows", "sample", str(ckpt), *extra])
        assert result.exit_code != 0 and message in result.output, result.output
    assert ckpt.read_bytes() == before and not (tmp_path / "grid.png").exists()


def test_a_damaged_local_model_is_one_line(tmp_path, tiny_bert_dir):
    import shutil

    model = tmp_path / "model"
    shutil.copytree(tiny_bert_dir, model)
    weights = model / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])
    (tmp_path / "s.txt").write_text("one sentence\nanother one\n")
    args = ["encode", str(tmp_path / "s.txt"), "--model", str(model), "--out", str(tmp_path / "e.npy")]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1 and result.output.startswith("error: cannot load model"), result.output
    assert len(result.output.strip().splitlines()) == 1 and not (tmp_path / "e.npy").exists()


def test_text_from_files_cannot_move_the_cursor_in_an_error_line():
    from sentflow.cli.common import printable

    assert printable("key \r=1 \x1b[2J \u202eevil é 한") == "key \\r=1 \\x1b[2J \\u202eevil é 한"


def test_an_array_given_to_encode_and_a_linked_run_directory_are_named(tmp_path):
    runner = CliRunner()
    np.save(tmp_path / "x.npy", np.zeros((3, 4), np.float32))
    result = runner.invoke(app, ["encode", str(tmp_path / "x.npy"), "--out", str(tmp_path / "e.npy")])
    assert result.exit_code == 1
    assert "is .npy embeddings, but encoding (one sentence per line) takes a text file" in result.output
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    result = runner.invoke(app, ["flows", "train", "nice", "--out", str(tmp_path / "link"), "--epochs", "1"])
    assert result.exit_code == 1 and "is a symbolic link" in result.output and not any((tmp_path / "real").iterdir())
