"""What the hostile suite shares: running the real command line in-process, its one-line-error oracle, bounded
runs, strict readers of what commands write, the tiny inputs (`Base`) and generated file names.

The oracles are the guarantees docs/file-formats.md states: a refused command exits 1 with exactly one `error:` line
and no traceback; a bad file or value is the user's problem, so its line never says "internal error" or "out of
memory"; an output target that is refused is left as it was; whatever a command writes, returns or prints as JSON is
finite; and whatever `fit` writes, `load` reads.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import resource
import signal
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from safetensors import safe_open
from safetensors.torch import load_file

try:
    from sentflow.cli.main import main as cli_main
except ImportError:  # not installed: run from the repository root
    from cli.main import main as cli_main

WORDS = "a the man woman dog cat is playing guitar ball on beach".split()
FEW = settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SOME = settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
PROGRESS = re.compile(r"^[\w -]*: *(\d+%\|.*\| *\S+/\S+|\d+it) \[[^\]]*\] *$")  # one tqdm bar, nothing after it


# --- running the command line --------------------------------------------------------------------------------------


@dataclass
class Run:
    code: int
    out: str
    err: str

    @property
    def lines(self) -> list[str]:
        """stderr's lines without progress bars (a bar redraws itself after a carriage return)."""
        segments = [part for line in self.err.split("\n") for part in line.split("\r")]
        return [part for part in segments if part.strip() and not PROGRESS.match(part)]


def sentflow_cli(*args: object) -> Run:
    """`sentflow ARGS` in this process: exit code, stdout, stderr."""
    out, err = io.StringIO(), io.StringIO()
    argv, sys.argv = sys.argv, ["sentflow", *map(str, args)]
    code = 0
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            cli_main()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    finally:
        sys.argv = argv
    return Run(code, out.getvalue(), err.getvalue())


def assert_one_error(run: Run, *, user: bool = True) -> str:
    """Exit 1, no traceback, and stderr ends with its only `error:` line; sentflow's own one-line `warning:`s may
    come first (not numpy's floating-point noise); a user's mistake is not an internal error."""
    assert "Traceback" not in run.err + run.out, run.err
    *before, line = run.lines or [""]
    assert run.code == 1 and line.startswith("error: "), (run.code, run.err)
    assert all(w.startswith("warning: ") and "encountered in" not in w for w in before), run.err
    if user:
        assert "internal error" not in line, line
        assert "out of memory" not in line and "allocate" not in line, line
    return line


def assert_ok_or_one_error(run: Run) -> bool:
    """True if the command succeeded; otherwise it must have failed as `assert_one_error` says."""
    if run.code == 0:
        return True
    assert_one_error(run)
    return False


class Overran(BaseException):
    """Raised by `bounded` when a case runs past its time (a BaseException: no `except Exception` swallows it)."""


def _address_space() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmSize:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmSize in /proc/self/status")


@contextlib.contextmanager
def bounded(seconds: float = 30.0, memory: int = 3 << 30, hang_factor: float = 10.0):
    """At most `memory` more bytes of address space and `seconds` of CPU time (the process's, all threads) for the
    block, and `hang_factor` times as much wall time (a block that waits without computing).

    CPU time, not wall time, is the bound on work: it does not grow when other processes share the cores (parallel
    test workers, a loaded CI machine), so a case that stays within it on an idle machine does so on a busy one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    resource.setrlimit(resource.RLIMIT_AS, (_address_space() + memory, hard))

    def overran(signum, frame):
        clock = "of CPU time" if signum == signal.SIGPROF else "of wall time"
        raise Overran(f"ran past {seconds if signum == signal.SIGPROF else seconds * hang_factor} s {clock}")

    previous = signal.signal(signal.SIGPROF, overran), signal.signal(signal.SIGALRM, overran)
    signal.setitimer(signal.ITIMER_PROF, seconds)
    signal.setitimer(signal.ITIMER_REAL, seconds * hang_factor)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_PROF, 0)
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGPROF, previous[0])
        signal.signal(signal.SIGALRM, previous[1])
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def load_npy_finite(path: Path, shape: tuple[int, ...] | None = None) -> np.ndarray:
    array = np.load(path, allow_pickle=False)
    assert np.isfinite(array).all(), f"{path} holds NaN/Inf"
    if shape is not None:
        assert array.shape == shape
    return array


def strict_json(text: str):
    """json.loads that refuses NaN/Infinity (which are not JSON)."""

    def refuse(token: str):
        raise ValueError(f"non-finite JSON constant {token}")

    return json.loads(text, parse_constant=refuse)


def raw_header(path: Path) -> tuple[dict[str, torch.Tensor], dict]:
    """A sentflow safetensors file's tensors and JSON header, read without sentflow's checks."""
    with safe_open(str(path), framework="pt") as fh:
        meta = json.loads(fh.metadata()["sentflow"])
    return load_file(str(path)), meta


# --- shared tiny inputs --------------------------------------------------------------------------------------------


@dataclass
class Base:
    root: Path
    x: Path  # (60, 4) float32 embeddings
    calib: Path  # a whitening fitted on x
    text: Path  # five sentences for the tiny BERT
    bert: Path  # the tiny BERT directory
    ckpt: Path  # an untrained tiny NICE for 8x8 digits

    def fresh(self) -> Path:
        """An empty directory of its own for one generated case."""
        return Path(tempfile.mkdtemp(dir=self.root))


def file_names(suffix: str) -> st.SearchStrategy[str]:
    """Valid file names: odd characters and lengths up to the 255-byte limit, never hidden."""
    alphabet = st.characters(codec="utf-8", exclude_characters="/", exclude_categories=("Cs", "Cc"))
    stem = st.text(alphabet, min_size=1, max_size=60).filter(lambda s: not s.startswith(".") and s.strip() == s)
    long = st.integers(1, 255 - len(suffix)).map(lambda n: "n" * n)
    return st.one_of(stem, long).filter(lambda s: len((s + suffix).encode()) <= 255).map(lambda s: s + suffix)
