"""The eval scripts of the compact-search and integration tables run end to end in their --smoke mode, so a
broken script fails CI instead of the next benchmark run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

EVAL = Path(__file__).resolve().parents[1] / "eval"
SCIFACT = Path(__file__).resolve().parents[2] / "shared" / "data" / "beir" / "scifact"


@pytest.mark.parametrize(
    ("script", "args"),
    [("compact_search.py", []), ("compact_scale.py", []), ("flow_vs_whitening.py", [])],
)
def test_smoke_mode_runs(script, args):
    done = subprocess.run(
        [sys.executable, str(EVAL / script), "--smoke", *args], capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
