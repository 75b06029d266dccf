"""The real `sentflow` command: usage errors are one `error:` line, help text keeps its brackets."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from sentflow.cli.common import flag_namer


def run(*args: str) -> subprocess.CompletedProcess[str]:
    """Run `python -m sentflow.cli ARGS` at 80 columns, as a user's terminal would."""
    env = {**os.environ, "COLUMNS": "80"}
    return subprocess.run(
        [sys.executable, "-m", "sentflow.cli", *args], capture_output=True, text=True, env=env, timeout=120
    )


def test_a_misspelt_option_is_one_error_line_naming_the_right_one() -> None:
    done = run("eval", "retrieval", "x", "--dim", "3")
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == ["error: No such option: --dim (Possible options: --dims)"]


def test_no_arguments_prints_help_and_exits_0() -> None:
    done = run()
    assert done.returncode == 0
    assert "Usage:" in done.stdout and "Commands" in done.stdout


def test_backend_help_shows_the_onnx_extra_in_brackets() -> None:
    done = run("eval", "sts", "--help")
    assert done.returncode == 0
    assert "sentflow[onnx]" in done.stdout.replace("│", "").replace("\n", "").replace(" ", "")


@pytest.mark.parametrize(
    ("command", "param", "flag"),
    [
        ("tune", "select_on", "--select-on"),
        ("tune", "pairs_file", "--pairs"),  # the parameter's own declaration, not its name
        ("tune", "task", "TASK"),
        ("tune", "n_components", None),  # not a parameter of tune: the Python name stays
        ("fit", "dim", "--dim"),
    ],
)
def test_the_flag_of_a_parameter_comes_from_the_commands_signature(command: str, param: str, flag: str | None) -> None:
    from sentflow.cli import guidance, main

    func = {"tune": guidance.tune, "fit": main.fit}[command]
    assert flag_namer(func)(param) == flag
