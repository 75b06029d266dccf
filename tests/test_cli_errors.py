"""The one-line rule everywhere: option parsing errors and internal errors exit 1 with one `error:` line."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from sentflow.cli.main import app
from typer.testing import CliRunner

import sentflow.streaming


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["eval", "sts-b", "--dim", "abc"], "Invalid value for '--dim'"),
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
