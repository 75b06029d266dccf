"""Every eval script runs end to end in its --smoke mode (tiny data, seconds) and leaves eval/results untouched, so a
broken script fails CI instead of the next benchmark run. The list is a glob: a new script without --smoke fails."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest

from sentflow.data_root import data_path

ROOT = Path(__file__).resolve().parents[1]
EVAL = ROOT / "eval"
RESULTS = EVAL / "results"
SCIFACT = data_path("beir", "scifact")
# not scripts: report.py is the scripts' helper module; st_worker.py is the side-interpreter worker that
# bench_encode.py drives over stdin (it imports neither sentflow nor torch), exercised through bench_encode.py
NOT_SCRIPTS = {"report.py", "st_worker.py"}
# positional arguments a script needs even with --smoke: (arguments, data folder that must exist)
ARGS: dict[str, tuple[list[str], Path]] = {
    "mteb_check.py": ([str(SCIFACT)], SCIFACT),
}


def scripts() -> list:
    params = []
    for path in sorted(EVAL.glob("*.py")):
        if path.name in NOT_SCRIPTS:
            continue
        params.append(pytest.param(path.name, id=path.stem))
    return params


def snapshot(folder: Path) -> dict[str, str]:
    """Relative path -> sha256 of every file under `folder`."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.mark.parametrize("script", scripts())
def test_smoke_mode_runs(script: str) -> None:
    args, data = ARGS.get(script, ([], EVAL))
    if not data.is_dir():
        pytest.skip(f"{script} --smoke needs {data}, which is missing on this machine")
    before = snapshot(RESULTS)
    done = subprocess.run(
        [sys.executable, str(EVAL / script), "--smoke", *args],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Traceback" not in done.stderr, done.stderr[-2000:]
    assert snapshot(RESULTS) == before, f"{script} --smoke changed eval/results"
