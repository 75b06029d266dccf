"""What the journeys suite (tests/journeys/) shares: every step runs in a new interpreter, as a user's separate
processes would, so no import done by an earlier step (or by pytest itself) can make a later step pass.

A Python step is a script given to `python -c`; a CLI step is `python -m sentflow.cli ...`. Both inherit the test
run's environment (its private SENTFLOW_CACHE included) and run in the journey's directory. A step that fails shows
its stderr's tail.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

STEP_TIMEOUT = 900  # a hang fails the step instead of the whole CI job; no step comes near it

# the first lines of every Python step: sentflow imported alone, and nothing of its calibration, search or encoding
# packages loaded yet (what a serving process has before it loads an artifact)
FRESH = """\
import sys
import sentflow
assert not [m for m in sys.modules if m.startswith(("sentflow.calibration", "sentflow.search", "sentflow.encoding"))]
"""


def run_python(code: str, cwd: Path) -> str:
    """Run `code` (after the FRESH prelude) in a new interpreter in `cwd`; its stdout, once it exits 0."""
    script = FRESH + textwrap.dedent(code)
    done = subprocess.run([sys.executable, "-c", script], cwd=cwd, capture_output=True, text=True, timeout=STEP_TIMEOUT)
    assert done.returncode == 0, f"step failed:\n{script}\n--- stderr ---\n{done.stderr[-3000:]}"
    return done.stdout


def run_cli(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess:
    """`sentflow ARGS...` as its own process in `cwd` (the installed command's module); asserts it exits 0."""
    command = [sys.executable, "-m", "sentflow.cli", *map(str, args)]
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=STEP_TIMEOUT)
    assert done.returncode == 0, f"{' '.join(command[2:])} failed:\n{done.stderr[-3000:]}"
    return done
