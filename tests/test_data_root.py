"""SENTFLOW_DATA: the one setting that says where downloaded data sets are, for the tests and the eval scripts."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from sentflow import SentflowError
from sentflow.data_root import CLONE_DEFAULT, data_path, data_root

ROOT = Path(__file__).resolve().parents[1]


def test_unset_it_is_shared_data_beside_the_clone(monkeypatch):
    monkeypatch.delenv("SENTFLOW_DATA", raising=False)
    assert data_root() == CLONE_DEFAULT == ROOT.parent / "shared" / "data"


def test_set_it_is_where_paths_are_looked_up(monkeypatch, tmp_path):
    monkeypatch.setenv("SENTFLOW_DATA", str(tmp_path))
    assert data_path("beir", "scifact") == tmp_path / "beir" / "scifact"


def test_a_path_that_is_no_directory_is_an_error_not_a_silent_skip(monkeypatch, tmp_path):
    monkeypatch.setenv("SENTFLOW_DATA", str(tmp_path / "typo"))
    with pytest.raises(SentflowError, match=r"^SENTFLOW_DATA='.*typo' is not a directory"):
        data_root()


def test_the_tests_look_for_their_data_where_it_points(tmp_path):
    """A test run with SENTFLOW_DATA at an empty folder skips the SICK test, naming that folder."""
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rs", "tests/test_sts.py", "-k", "sick_without_header"],
        cwd=ROOT,
        env={**os.environ, "SENTFLOW_DATA": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert "1 skipped" in done.stdout, done.stdout[-2000:]
    assert str(tmp_path / "sick") in done.stdout
