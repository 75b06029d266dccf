"""Generated hostile inputs (issue 12): outputs, NaN, file contents, tracebacks and the one-line rule.

Every case runs the real command line in-process (`sentflow.cli.main.main`, which also turns option-parsing errors
into one line) or the Python API, on tiny inputs. The oracles are the guarantees docs/file-formats.md states: a refused
command exits 1 with exactly one `error:` line and no traceback; a bad file or value is the user's problem, so its
line never says "internal error" or "out of memory"; an output target that is refused is left as it was; whatever a
command writes, returns or prints as JSON is finite; and whatever `fit` writes, `load` reads. Cases that could
allocate run under `bounded()`: an address-space limit and an alarm turn a runaway allocation or loop into a test
failure instead of a machine out of memory.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import math
import os
import re
import resource
import shutil
import signal
import stat
import struct
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from forge import forge_tensors
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from safetensors import safe_open
from safetensors.torch import load_file

import sentflow
from sentflow.errors import SentflowError
from sentflow.flows.checkpoint import read_checkpoint

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
def bounded(seconds: float = 30.0, memory: int = 3 << 30):
    """At most `memory` more bytes of address space and `seconds` of wall time for the block."""
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    resource.setrlimit(resource.RLIMIT_AS, (_address_space() + memory, hard))

    def overran(signum, frame):
        raise Overran(f"ran past {seconds} s")

    previous = signal.signal(signal.SIGALRM, overran)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
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


@pytest.fixture(scope="module")
def base(tmp_path_factory, tiny_bert_dir) -> Base:
    from sentflow.flows import build_model
    from sentflow.flows.checkpoint import save_checkpoint

    root = tmp_path_factory.mktemp("hostile")
    x = root / "x.npy"
    np.save(x, np.random.default_rng(0).standard_normal((60, 4)).astype(np.float32))
    calib = root / "c.safetensors"
    sentflow.Whitening().fit(np.load(x)).save(calib)
    text = root / "in.txt"
    text.write_text("a man is playing the guitar .\nthe dog\na cat on the beach\nmen\na woman with a ball\n")
    ckpt = root / "nice.safetensors"
    save_checkpoint(ckpt, build_model("nice", data_shape=(1, 8, 8), n_bins=17, hidden=8, depth=1, couplings=2))
    return Base(root, x, calib, text, tiny_bert_dir, ckpt)


def file_names(suffix: str) -> st.SearchStrategy[str]:
    """Valid file names: odd characters and lengths up to the 255-byte limit, never hidden."""
    alphabet = st.characters(codec="utf-8", exclude_characters="/", exclude_categories=("Cs", "Cc"))
    stem = st.text(alphabet, min_size=1, max_size=60).filter(lambda s: not s.startswith(".") and s.strip() == s)
    long = st.integers(1, 255 - len(suffix)).map(lambda n: "n" * n)
    return st.one_of(stem, long).filter(lambda s: len((s + suffix).encode()) <= 255).map(lambda s: s + suffix)


# --- 1. outputs never destroy what they replace --------------------------------------------------------------------

# command -> (output suffix, the command's inputs that --out may name)
OUTPUT_COMMANDS = {
    "encode": (".npy", ("text",)),
    "fit": (".safetensors", ("x",)),
    "fit-pipeline": ("", ("text",)),
    "transform": (".npy", ("x", "calib")),
    "flows-sample": (".png", ("ckpt",)),
}
KINDS = ("symlink", "dangling-symlink", "fifo", "read-only", "directory", "input", "hardlink-to-input")


def output_args(base: Base, command: str, out: Path) -> list[object]:
    if command == "encode":
        return ["encode", base.text, "--out", out, "--model", base.bert]
    if command == "fit":
        return ["fit", "--data", base.x, "--out", out]
    if command == "fit-pipeline":  # a pipeline names its encoder, so it is fitted on text that encoder reads
        return ["fit", "--data", base.text, "--model", base.bert, "--dim", 2, "--out", out]
    if command == "transform":
        return ["transform", base.x, "--calib", base.calib, "--out", out]
    return ["flows", "sample", base.ckpt, "--n", "2", "--out", out]


def snapshot(path: Path) -> tuple:
    """What a path is and holds, without following links."""
    info = os.lstat(path)
    if stat.S_ISLNK(info.st_mode):
        return ("link", os.readlink(path))
    if stat.S_ISDIR(info.st_mode):
        return ("dir", stat.S_IMODE(info.st_mode), sorted((p.name, p.read_bytes()) for p in path.iterdir()))
    if stat.S_ISREG(info.st_mode):
        return ("file", stat.S_IMODE(info.st_mode), info.st_ino, path.read_bytes())
    return ("special", stat.S_IFMT(info.st_mode))


def make_target(kind: str, where: Path, name: str, victim: Path) -> Path:
    """An output path of `kind` in `where`; `victim` is an existing file the command must not touch."""
    target = where / name
    if kind == "symlink":
        target.symlink_to(victim)
    elif kind == "dangling-symlink":
        target.symlink_to(where / "nowhere")
    elif kind == "fifo":
        os.mkfifo(target)
    elif kind == "read-only":
        target.write_bytes(b"precious")
        target.chmod(0o444)
    elif kind == "directory":
        target.mkdir()
        (target / "notes.txt").write_text("precious")
    elif kind == "hardlink-to-input":
        os.link(victim, target)
    return target


@pytest.mark.parametrize(("command", "kind"), [(command, kind) for command in OUTPUT_COMMANDS for kind in KINDS])
@given(data=st.data())
@settings(max_examples=2, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_an_output_never_replaces_a_link_special_file_read_only_file_directory_or_input(base, command, kind, data):
    suffix, inputs = OUTPUT_COMMANDS[command]
    where = base.fresh()
    role = data.draw(st.sampled_from(inputs), label="input")
    original = getattr(base, role)
    victim = where / f"victim{original.suffix}"
    shutil.copy(original, victim)
    if kind == "input":
        target = victim
    else:
        target = make_target(kind, where, data.draw(file_names(suffix), label="name"), victim)
    args = [victim if a == original else a for a in output_args(base, command, target)]
    before, victim_before, names = snapshot(target), snapshot(victim), sorted(os.listdir(where))

    line = assert_one_error(sentflow_cli(*args))

    assert snapshot(target) == before and snapshot(victim) == victim_before
    assert sorted(os.listdir(where)) == names, "a temporary file was left behind"
    assert str(target) in line, line  # names the target, not a temporary file


@pytest.mark.parametrize("command", OUTPUT_COMMANDS)
@given(data=st.data())
@settings(max_examples=3, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_a_new_output_with_any_valid_name_is_written(base, command, data):
    suffix, _ = OUTPUT_COMMANDS[command]
    where = base.fresh()
    target = where / data.draw(file_names(suffix), label="name")
    run = sentflow_cli(*output_args(base, command, target))
    assert run.code == 0, run.err
    assert target.is_dir() if command == "fit-pipeline" else target.is_file()
    assert os.listdir(where) == [target.name], "a temporary file was left behind"
    if command == "fit":
        assert sentflow.load(target).n_features_in_ == 4


@pytest.mark.parametrize("command", OUTPUT_COMMANDS)
@given(strays=st.lists(st.sampled_from(["file", "directory", "partial", "state"]), min_size=1, max_size=4))
@settings(max_examples=3, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_temporary_files_left_by_a_killed_run_do_not_change_the_next_run(base, command, strays):
    suffix, _ = OUTPUT_COMMANDS[command]
    clean, dirty = base.fresh(), base.fresh()
    name = f"out{suffix}"
    for i, stray in enumerate(strays):  # what a run killed mid-write leaves beside its output
        path = dirty / {
            "file": f".{name}.{i}x{suffix}",
            "directory": f".{name}.{i}x",
            "partial": f".{name}.partial",
        }.get(stray, f".{name}.partial.json")
        if stray == "directory":
            path.mkdir()
            (path / "calibration.safetensors").write_bytes(b"half")
        else:
            path.write_bytes(b"\x93NUMPY half written")
    assert sentflow_cli(*output_args(base, command, clean / name)).code == 0
    run = sentflow_cli(*output_args(base, command, dirty / name))
    assert run.code == 0, run.err
    assert_same_output(dirty / name, clean / name)


def assert_same_output(path: Path, reference: Path) -> None:
    """Same content: files compared by what they hold (safetensors headers may order their keys differently)."""
    if reference.is_dir():
        assert sorted(os.listdir(path)) == sorted(os.listdir(reference))
        for name in os.listdir(reference):
            assert_same_output(path / name, reference / name)
    elif reference.suffix == ".safetensors":
        (tensors, meta), (expected, expected_meta) = raw_header(path), raw_header(reference)
        assert meta == expected_meta and tensors.keys() == expected.keys()
        assert all(torch.equal(tensors[k], expected[k]) for k in expected)
    else:
        assert path.read_bytes() == reference.read_bytes()


# --- 2. nothing non-finite is written, returned or reported --------------------------------------------------------


@st.composite
def hostile_matrices(draw) -> np.ndarray:
    """(n, d) arrays that break naive statistics: NaN/Inf, huge or tiny values, constant or rank-deficient rows,
    no rows or no columns."""
    n, d = draw(st.integers(0, 24)), draw(st.integers(0, 5))
    kind = draw(st.sampled_from(["any", "constant", "rank-deficient", "scaled", "empty-rows", "no-columns"]))
    if kind == "empty-rows":
        return np.zeros((0, max(d, 1)))
    if kind == "no-columns":
        return np.zeros((max(n, 1), 0))
    if kind == "any":
        values = st.floats(allow_nan=True, allow_infinity=True, width=64)
        return draw(hnp.arrays(np.float64, (n, d), elements=values))
    if kind == "constant":
        value = draw(st.floats(allow_nan=False, allow_infinity=False))
        return np.full((n, d), value)
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    if kind == "rank-deficient":
        rank = draw(st.integers(0, max(d - 1, 0)))
        return rng.standard_normal((n, rank)) @ rng.standard_normal((rank, d))
    scale = 10.0 ** draw(st.integers(-320, 308))
    return rng.standard_normal((n, d)) * scale


@given(X=hostile_matrices(), data=st.data())
@SOME
def test_whitening_of_hostile_arrays_is_finite_or_one_line_error(X, data):
    dim = data.draw(st.none() | st.integers(-1, 6), label="n_components")
    power = data.draw(st.floats(allow_nan=True, allow_infinity=True), label="power")
    eps = data.draw(st.sampled_from([1e-9, 0.0, math.nan, math.inf, -1.0]) | st.floats(0, 1), label="eps")
    try:
        whitening = sentflow.Whitening(n_components=dim, power=power, eps=eps).fit(X)
        Z = whitening.transform(X)
    except SentflowError as exc:
        assert "\n" not in str(exc)
        return
    assert math.isfinite(eps) and eps >= 0 and 0 <= power <= 1, "a non-finite or negative eps/power was accepted"
    assert np.isfinite(Z).all() and np.isfinite(whitening.components_).all() and np.isfinite(whitening.mean_).all()


@given(X=hostile_matrices())
@SOME
def test_fit_transform_and_diagnose_on_hostile_arrays(base, X):
    where = base.fresh()
    np.save(where / "x.npy", X)
    fitted = sentflow_cli("fit", "--data", where / "x.npy", "--out", where / "c.safetensors")
    if assert_ok_or_one_error(fitted):
        tensors, _ = raw_header(where / "c.safetensors")
        assert all(torch.isfinite(t).all() for t in tensors.values())
        again = sentflow_cli("transform", where / "x.npy", "--calib", where / "c.safetensors", "--out", where / "z.npy")
        if assert_ok_or_one_error(again):
            load_npy_finite(where / "z.npy", (X.shape[0], X.shape[1]))
    if X.shape[1] == 4:  # the base calibration's width
        run = sentflow_cli("transform", where / "x.npy", "--calib", base.calib, "--out", where / "t.npy")
        if assert_ok_or_one_error(run):
            load_npy_finite(where / "t.npy", X.shape)
    report = sentflow_cli("diagnose", where / "x.npy", "--json", "--n-pairs", "50")
    if assert_ok_or_one_error(report):
        assert_finite_json(strict_json(report.out))


def assert_finite_json(value) -> None:
    if isinstance(value, float):
        assert math.isfinite(value)
    elif isinstance(value, dict):
        for item in value.values():
            assert_finite_json(item)
    elif isinstance(value, list):
        for item in value:
            assert_finite_json(item)


@given(X=hostile_matrices())
@settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_bert_flow_of_hostile_arrays_is_finite_or_one_line_error(X):
    flow = sentflow.BertFlow(levels=1, depth=1, hidden=4, epochs=1, batch_size=8, progress=False)
    try:
        Z = flow.fit(X).transform(X)
    except SentflowError as exc:
        assert "\n" not in str(exc)
        return
    assert np.isfinite(Z).all()


BAD_SCORES = ["nan", "inf", "-inf", "1e999", "9" * 400, "abc", "", "0x10", "2,5"]


@st.composite
def sts_files(draw) -> tuple[dict[str, str], bool]:
    """(STS-B csv splits with few pairs, whether a score is not a finite number): repeated or identical sentences,
    constant, extreme or unreadable scores."""
    sentence = st.lists(st.sampled_from(WORDS), min_size=1, max_size=5).map(" ".join)
    score = st.floats(0, 5).map(lambda v: f"{v:.3f}")
    if draw(st.integers(0, 2)) == 0:  # extreme or unreadable scores in some files
        score = score | st.floats(-1e300, 1e300).map(repr) | st.sampled_from(BAD_SCORES)
    constant = draw(st.booleans())
    files, bad = {}, False
    for split in ("train", "dev", "test"):
        pairs = draw(st.lists(st.tuples(sentence, sentence, score), min_size=1, max_size=12))
        rows = [f"g\tf\t2012\t{i:04d}\t{'2.5' if constant else s}\t{a}\t{b}" for i, (a, b, s) in enumerate(pairs)]
        bad = bad or (not constant and any(s in BAD_SCORES for _, _, s in pairs))
        files[f"sts-{split}.csv"] = "\n".join(rows) + "\n"
    return files, bad


@given(sts=sts_files(), methods=st.sampled_from(["none", "none,whitening", "whitening"]))
@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_eval_and_tune_json_are_always_valid_json_or_one_line_error(base, sts, methods):
    files, bad = sts
    where = base.fresh()
    for name, text in files.items():
        (where / name).write_text(text)
    common = ["--model", base.bert, "--data-dir", where, "--json"]
    for args in (["eval", "sts-b", "--methods", methods, *common], ["tune", "sts-b", "--no-flow", *common]):
        run = sentflow_cli(*args)
        if assert_ok_or_one_error(run):
            assert not bad, f"{args[0]} read a score that is not a finite number"
            report = strict_json(run.out)
            assert_finite_json(report)


# --- 3. file contents are validated before use ---------------------------------------------------------------------

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**80), 2**80),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=12),
)
json_values = st.recursive(
    json_scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
)
# JSON text that json.dumps never writes: not JSON at all, or beyond any bound
RAW_TOKENS = [
    "NaN",
    "Infinity",
    "-Infinity",
    "1e999",
    "9" * 5000,
    "[" * 3000 + "]" * 3000,
    '{"a":' * 3000 + "1" + "}" * 3000,
]
SLOT = "\x00slot\x00"


def kind_of(value) -> str:
    """The JSON type of a value; ints and floats are both numbers."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    return type(value).__name__


def key_paths(meta: dict) -> list[tuple[str, ...]]:
    """Top-level keys and the keys of nested objects, as paths."""
    paths = []
    for key, value in meta.items():
        paths.append((key,))
        if isinstance(value, dict):
            paths += [(key, inner) for inner in value]
    return paths


@st.composite
def mutated_headers(draw, meta: dict, keep_strings: tuple[str, ...] = ()) -> tuple[str, bool]:
    """(JSON text, must be refused): `meta` with one key replaced, deleted or added, or a raw token put in.

    A replacement by another JSON type than the original's (null aside) and any raw token must be refused.
    Keys in `keep_strings` are never given a string (a model name would make the loader look on the hub).
    """
    meta = copy.deepcopy(meta)
    path = draw(st.sampled_from(key_paths(meta)), label="key")
    parent = meta
    for key in path[:-1]:
        parent = parent[key]
    old = parent[path[-1]]
    action = draw(st.sampled_from(["replace", "delete", "add", "raw"]), label="action")
    if action == "delete":
        del parent[path[-1]]
        return json.dumps(meta), False
    if action == "add":
        parent[draw(st.text(min_size=1, max_size=8).filter(lambda k: k not in parent), label="new key")] = draw(
            json_values
        )
        return json.dumps(meta), False
    if action == "raw":
        parent[path[-1]] = SLOT
        token = draw(st.sampled_from(RAW_TOKENS), label="token")
        return json.dumps(meta).replace(json.dumps(SLOT), token), True
    values = json_values.filter(lambda v: not isinstance(v, str)) if path[-1] in keep_strings else json_values
    new = draw(values, label="value")
    parent[path[-1]] = new
    return json.dumps(meta), None not in (old, new) and kind_of(new) != kind_of(old)


@given(data=st.data())
@SOME
def test_calibration_headers_are_validated(base, data):
    tensors, meta = raw_header(base.calib)
    text, must_fail = data.draw(mutated_headers(meta))
    where = base.fresh()
    forged = forge_tensors(where / "c.safetensors", tensors, text)
    try:
        loaded = sentflow.load(forged)
    except SentflowError as exc:
        assert "\n" not in str(exc)
        loaded = None
    assert not (must_fail and loaded is not None), f"loaded a calibration whose header is {text[:300]}"
    run = sentflow_cli("transform", base.x, "--calib", forged, "--out", where / "z.npy")
    if assert_ok_or_one_error(run):
        load_npy_finite(where / "z.npy")


@given(depth=st.integers(1, 20_000), brackets=st.sampled_from(["[]", "{}"]))
@FEW
def test_deeply_nested_headers_are_refused(base, depth, brackets):
    tensors, _ = raw_header(base.calib)
    opening, closing = brackets
    text = (opening if opening == "[" else '{"a":') * depth + ("0" if opening == "{" else "") + closing * depth
    forged = forge_tensors(base.fresh() / "c.safetensors", tensors, text)
    with pytest.raises(SentflowError):
        sentflow.load(forged)


@st.composite
def poisoned_tensors(draw, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The same tensors with one element of one floating tensor made NaN, +Inf or -Inf."""
    tensors = {k: v.clone() for k, v in tensors.items()}
    name = draw(st.sampled_from(sorted(k for k, v in tensors.items() if v.is_floating_point() and v.numel())))
    flat = tensors[name].view(-1)
    flat[draw(st.integers(0, flat.numel() - 1))] = draw(st.sampled_from([math.nan, math.inf, -math.inf]))
    return tensors


@given(data=st.data())
@FEW
def test_non_finite_weights_are_refused_even_with_a_valid_checksum(base, data):
    where = base.fresh()
    for path, args in (
        (base.calib, ["transform", base.x, "--calib", "{}", "--out", where / "z.npy"]),
        (base.ckpt, ["flows", "eval", "{}"]),
    ):
        tensors, meta = raw_header(path)
        forged = forge_tensors(where / path.name, data.draw(poisoned_tensors(tensors)), meta)
        assert_one_error(sentflow_cli(*[forged if a == "{}" else a for a in args]))
        assert not (where / "z.npy").exists()


@pytest.fixture(scope="module")
def pipeline_dir(base) -> Path:
    from sentflow.pipeline import Pipeline

    directory = base.root / "pipeline"
    encoder = sentflow.Encoder(str(base.bert), "last-avg", cache=False)
    Pipeline(encoder, sentflow.Whitening().fit(np.random.default_rng(1).standard_normal((80, 32)))).save(directory)
    return directory


@given(data=st.data())
@FEW
def test_pipeline_configs_are_validated(base, pipeline_dir, data):
    config = json.loads((pipeline_dir / "pipeline.json").read_text())
    text, must_fail = data.draw(mutated_headers(config, keep_strings=("model",)))
    where = base.fresh()
    shutil.copytree(pipeline_dir, where / "p")
    (where / "p" / "pipeline.json").write_text(text)
    np.save(where / "x.npy", np.random.default_rng(2).standard_normal((5, 32)).astype(np.float32))
    run = sentflow_cli("transform", where / "x.npy", "--calib", where / "p", "--out", where / "z.npy")
    if assert_ok_or_one_error(run):
        assert not must_fail, f"a pipeline with config {text[:300]} was used"
        load_npy_finite(where / "z.npy", (5, 32))


@given(data=st.data())
@SOME
def test_flow_checkpoint_configs_are_validated_before_anything_is_built(base, data):
    tensors, meta = raw_header(base.ckpt)
    text, must_fail = data.draw(mutated_headers(meta))
    forged = forge_tensors(base.fresh() / "ckpt.safetensors", tensors, text)
    with bounded():
        run = sentflow_cli("flows", "eval", forged)
    if assert_ok_or_one_error(run):
        assert not must_fail, f"evaluated a checkpoint whose header is {text[:300]}"
        assert math.isfinite(float(re.search(r"test bits/dim: (\S+)", run.out).group(1)))


@given(
    key=st.sampled_from(["hidden", "depth", "couplings"]),
    value=st.integers(2**10, 2**16) | st.sampled_from([2**16, 2**20, 2**31, 2**63 - 1]),
)
@FEW
def test_a_checkpoint_asking_for_a_huge_model_is_refused_without_allocating_it(base, key, value):
    tensors, meta = raw_header(base.ckpt)
    meta["config"] = {**meta["config"], key: value}
    forged = forge_tensors(base.fresh() / "ckpt.safetensors", tensors, meta)
    with bounded(memory=1 << 30):
        assert_one_error(sentflow_cli("flows", "eval", forged))


TINY_NICE = '{"hidden": 4, "depth": 1, "couplings": 2}'


@pytest.fixture(scope="module")
def trained_run(base) -> Path:
    """A run directory of `flows train` after one epoch: its checkpoint holds the training counters."""
    run = sentflow_cli("flows", "train", "nice", "--out", base.root / "run", "--epochs", "1", "--config", TINY_NICE)
    assert run.code == 0, run.err
    return base.root / "run"


@given(data=st.data())
@FEW
def test_training_counters_are_validated_on_resume(base, trained_run, data):
    checkpoint = trained_run / "checkpoint.safetensors"
    tensors, meta = raw_header(checkpoint)
    text, must_fail = data.draw(mutated_headers(meta))
    where = base.fresh()
    forge_tensors(where / checkpoint.name, tensors, text)
    args = ["flows", "train", "nice", "--out", where, "--resume", "--epochs", "2", "--config", TINY_NICE]
    with bounded():
        run = sentflow_cli(*args, "--minutes", "0.005")
    if assert_ok_or_one_error(run):
        assert not must_fail, f"resumed from a checkpoint whose header is {text[:300]}"
        read_checkpoint(where / checkpoint.name)


class Interrupted(Exception):
    pass


@pytest.fixture(scope="module")
def interrupted_run(base) -> tuple[Path, int, Path]:
    """An encode of base.text into `o.npy` stopped after 2 of 5 rows: (its directory, rows done, a .npy of what
    the full run writes)."""
    from sentflow.streaming import encode_file

    encoder = sentflow.Encoder(str(base.bert), "last-avg", cache=False)

    class Stopping:
        calls = 0

        def __getattr__(self, name):
            return getattr(encoder, name)

        def encode(self, texts):
            Stopping.calls += 1
            if Stopping.calls > 2:
                raise Interrupted
            return encoder.encode(texts)

    directory = base.root / "interrupted"
    directory.mkdir()
    with pytest.raises(Interrupted):
        encode_file(Stopping(), base.text, directory / "o.npy", chunk_lines=1)
    hidden = sorted(p.name for p in directory.iterdir())
    assert hidden == [".o.npy.partial", ".o.npy.partial.json"], hidden
    reference = base.root / "encoded.npy"
    np.save(reference, encoder.encode(base.text.read_text().splitlines()))
    return directory, 2, reference


@given(data=st.data())
@FEW
def test_resume_states_are_validated(base, interrupted_run, data):
    source, done, reference = interrupted_run
    state = json.loads((source / ".o.npy.partial.json").read_text())
    assert state["done"] == done
    text, must_fail = data.draw(mutated_headers(state))
    where = base.fresh()
    shutil.copytree(source, where, dirs_exist_ok=True)
    (where / ".o.npy.partial.json").write_text(text)
    run = sentflow_cli("encode", base.text, "--out", where / "o.npy", "--model", base.bert, "--resume")
    if assert_ok_or_one_error(run):
        assert not must_fail, f"resumed from the state {text[:300]}"
        expected = np.load(reference)
        result = load_npy_finite(where / "o.npy", expected.shape)
        resumed_from = json.loads(text).get("done")
        if not (isinstance(resumed_from, int) and resumed_from > done):  # rows it says are done but are not
            np.testing.assert_allclose(result, expected, rtol=1e-5, atol=1e-6)


NPY_DTYPES = ["<f4", "<f8", ">f8", "<f2", "<i4", "|u1", "|b1", "<c8", "<c16", "|O", "<U4", "<M8[s]", "|V8"]
dims = st.one_of(st.integers(-3, 12), st.integers(-(2**64), 2**64), st.sampled_from([2**31, 2**32, 2**62, 2**63 - 1]))


@st.composite
def npy_files(draw) -> tuple[bytes, str, tuple]:
    """.npy bytes with any header values (descr, order, shape, extra keys) and a payload of any length; half of them
    start from a valid (n, 4) array."""
    valid = draw(st.booleans())
    descr = draw(st.sampled_from(NPY_DTYPES[:6] if valid else NPY_DTYPES))
    shape = (draw(st.integers(1, 12)), 4) if valid else tuple(draw(st.lists(dims, max_size=3)))
    header = {"descr": descr, "fortran_order": draw(st.booleans()), "shape": shape}
    if draw(st.integers(0, 9)) == 0:
        header["extra"] = 1
    size = math.prod(shape) * np.dtype(descr).itemsize if all(0 <= d < 256 for d in shape) else 0
    if valid:
        values = np.random.default_rng(draw(st.integers(0, 2**32 - 1))).standard_normal(shape) * 10
        return npy_header(header) + values.astype(descr).tobytes(), descr, shape
    length = draw(st.sampled_from([size, max(size - 1, 0), size + 1]) | st.integers(0, 512))
    payload = draw(st.binary(min_size=min(length, 512), max_size=min(length, 512))) if length <= 512 else bytes(length)
    return npy_header(header) + payload, descr, shape


def npy_header(header: dict) -> bytes:
    """The .npy v1.0 preamble for any header dict (no checks: numpy's writer would refuse the hostile ones)."""
    text = repr(header).encode()
    text += b" " * ((64 - (10 + len(text) + 1) % 64) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text)) + text


@given(npy=npy_files())
@SOME
def test_npy_headers_are_checked_before_reading(base, npy):
    raw, descr, shape = npy
    where = base.fresh()
    (where / "x.npy").write_bytes(raw)
    refused = np.dtype(descr).kind in "cOUSMV" or any(d < 0 for d in shape)  # not real numbers, or no size
    with bounded(memory=1 << 30):
        runs = [
            sentflow_cli("transform", where / "x.npy", "--calib", base.calib, "--out", where / "z.npy"),
            sentflow_cli("fit", "--data", where / "x.npy", "--out", where / "c.safetensors"),
            sentflow_cli("diagnose", where / "x.npy", "--json", "--n-pairs", "10"),
        ]
    for run in runs:
        if assert_ok_or_one_error(run):
            assert not refused, f"read a .npy with descr {descr!r} and shape {shape}"
    if (where / "z.npy").exists():
        load_npy_finite(where / "z.npy")


IDX_CODES = [0x08, 0x09, 0x0B, 0x0C, 0x0D, 0x0E, 0x00, 0x07, 0xFF]
IDX_SIZES = {0x08: 1, 0x09: 1, 0x0B: 2, 0x0C: 4, 0x0D: 4, 0x0E: 8}


@st.composite
def idx_files(draw) -> tuple[bytes, int, tuple[int, ...]]:
    """IDX bytes: any type code, up to 8 dimensions of any u32 size (some overflowing int64 together), a payload of
    any length."""
    code = draw(st.sampled_from(IDX_CODES))
    exponents = st.lists(st.integers(8, 31), min_size=3, max_size=8).filter(lambda e: sum(e) >= 64)
    overflowing = exponents.map(lambda e: [2**k for k in e])  # a product that wraps to exactly 0 in int64
    shape = tuple(draw(overflowing | st.lists(st.integers(0, 30) | st.integers(0, 2**32 - 1), max_size=8)))
    size = math.prod(shape) * IDX_SIZES.get(code, 1) if math.prod(shape) < 1 << 16 else 0
    length = draw(st.sampled_from([size, max(size - 1, 0), size + 3]) | st.integers(0, 256))
    header = struct.pack(">BBBB", 0, 0, code, len(shape)) + struct.pack(f">{len(shape)}I", *shape)
    return header + bytes(length), code, shape


@given(idx=idx_files(), gz=st.booleans())
@SOME
def test_idx_headers_are_checked_before_reading(base, idx, gz):
    import gzip

    from sentflow.flows import read_idx

    raw, code, shape = idx
    path = base.fresh() / ("images.gz" if gz else "images")
    path.write_bytes(gzip.compress(raw) if gz else raw)
    with bounded(memory=1 << 30):
        try:
            array = read_idx(path)
        except SentflowError as exc:
            assert "\n" not in str(exc)
            return
    assert code in IDX_SIZES and shape and array.shape == shape
    assert len(raw) == 4 + 4 * len(shape) + array.size * IDX_SIZES[code]


@given(idx=idx_files(), labels=st.integers(0, 40))
@FEW
def test_mnist_directories_with_hostile_idx_files(base, idx, labels):
    where = base.fresh()
    (where / "t10k-images-idx3-ubyte").write_bytes(idx[0])
    (where / "t10k-labels-idx1-ubyte").write_bytes(struct.pack(">BBBBI", 0, 0, 0x08, 1, labels) + bytes(labels))
    with bounded(memory=1 << 30):
        run = sentflow_cli("flows", "eval", base.ckpt, "--data", f"mnist:{where}")
    assert_one_error(run)  # the checkpoint is for 8x8 digits: no MNIST-like directory fits it


# --- 4. no input produces a traceback ------------------------------------------------------------------------------


@st.composite
def damaged(draw, original: bytes) -> bytes:
    """Random bytes, a truncation, or a few flipped bits of a valid file."""
    how = draw(st.sampled_from(["random", "truncated", "flipped"]))
    if how == "random":
        return draw(st.binary(max_size=300))
    if how == "truncated":
        return original[: draw(st.integers(0, len(original) - 1))]
    data = bytearray(original)
    for _ in range(draw(st.integers(1, 3))):
        data[draw(st.integers(0, len(data) - 1))] ^= 1 << draw(st.integers(0, 7))
    return bytes(data)


DAMAGED_INPUTS = {  # role -> (the file, the command with {} for the damaged copy)
    "embeddings": ("x", ["transform", "{}", "--calib", "<calib>", "--out", "<out>.npy"]),
    "calibration": ("calib", ["transform", "<x>", "--calib", "{}", "--out", "<out>.npy"]),
    "fit data": ("x", ["fit", "--data", "{}", "--out", "<out>.safetensors"]),
    "diagnose": ("x", ["diagnose", "{}", "--json"]),
    "checkpoint": ("ckpt", ["flows", "eval", "{}"]),
    "sample": ("ckpt", ["flows", "sample", "{}", "--n", "2", "--out", "<out>.png"]),
}


def _fill(arg: str, values: dict[str, Path]) -> str:
    for key, value in values.items():
        arg = arg.replace(key, str(value))
    return arg


@pytest.mark.parametrize("role", DAMAGED_INPUTS)
@given(data=st.data())
@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_damaged_files_never_produce_a_traceback(base, role, data):
    attr, template = DAMAGED_INPUTS[role]
    original = getattr(base, attr)
    where = base.fresh()
    copy_path = where / f"in{original.suffix}"
    copy_path.write_bytes(data.draw(damaged(original.read_bytes())))
    fill = {"{}": copy_path, "<calib>": base.calib, "<x>": base.x, "<out>": where / "out"}
    args = [_fill(a, fill) for a in template]
    with bounded():
        run = sentflow_cli(*args)
    if assert_ok_or_one_error(run) and (where / "out.npy").exists():
        load_npy_finite(where / "out.npy")


def test_a_real_process_prints_one_line_for_a_damaged_calibration(base):
    damaged_file = base.fresh() / "c.safetensors"
    damaged_file.write_bytes(base.calib.read_bytes()[:-7])
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "sentflow.cli",
            "transform",
            str(base.x),
            "--calib",
            str(damaged_file),
            "--out",
            "z.npy",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=damaged_file.parent,
    )
    assert_one_error(Run(done.returncode, done.stdout, done.stderr))


# --- 5. the one-line rule for option values ------------------------------------------------------------------------

option_values = st.one_of(
    st.sampled_from(["abc", "0", "-1", "nan", "inf", "-inf", "1e3", "2.5", "", " ", "0x10", "1_000", "--", "1e-400"]),
    st.integers(-(2**70), 2**70).map(str),
    st.integers(-3, 70).map(lambda k: str(2**k)),
    st.floats().map(repr),
)


def options_case(base: Base, where: Path, option: str, value: str) -> list[object]:
    """A cheap command taking `option`, with `value` for it."""
    x, out = base.x, where / "out"
    if option in ("--dim", "--power"):
        return ["fit", "--data", x, "--out", f"{out}.safetensors", option, value]
    if option in ("--levels", "--depth", "--hidden", "--epochs", "--lr", "--seed"):
        return ["fit", "--method", "flow", "--data", x, "--out", f"{out}.safetensors", option, value]
    if option in ("--threads", "--batch-size", "--max-length"):
        return ["fit", "--data", x, "--out", out, "--model", base.bert, option, value]  # a pipeline records them
    if option == "--chunk-lines":
        return ["encode", base.text, "--out", f"{out}.npy", "--model", base.bert, option, value]
    if option == "--n-pairs":
        return ["diagnose", x, "--json", option, value]
    if option.startswith("flows-train"):
        flag = option.removeprefix("flows-train")
        budget = ["--minutes", "0.005"] if flag != "--minutes" else []
        tiny = '{"hidden": 4, "depth": 1, "couplings": 2}'
        return ["flows", "train", "nice", "--out", out, "--config", tiny, *budget, flag, value]
    return ["flows", "sample", base.ckpt, "--out", f"{out}.png", option, value]


OPTIONS = [
    "--dim",
    "--power",
    "--levels",
    "--depth",
    "--hidden",
    "--epochs",
    "--lr",
    "--seed",
    "--threads",
    "--batch-size",
    "--max-length",
    "--chunk-lines",
    "--n-pairs",
    "--n",
    "--temperature",
    "--scale",
    "flows-train--epochs",
    "flows-train--batch-size",
    "flows-train--lr",
    "flows-train--minutes",
]


@pytest.mark.parametrize("option", OPTIONS)
@given(value=option_values)
@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_option_values_are_one_line_errors_or_work(base, option, value):
    where = base.fresh()
    args = options_case(base, where, option, value)
    with bounded(seconds=30):
        run = sentflow_cli(*args)
    if run.code != 0:
        line = assert_one_error(run, user=False)
        assert "internal error" not in line, line  # a value too large for memory may say "out of memory"
        return
    for path in where.iterdir():  # whatever a command writes, sentflow reads back
        if path.suffix == ".npy":
            load_npy_finite(path)
        elif path.suffix == ".safetensors" or (path / "pipeline.json").is_file():
            sentflow.load(path)
        elif (path / "checkpoint.safetensors").is_file():
            read_checkpoint(path / "checkpoint.safetensors")


@pytest.fixture(scope="module")
def tiny_encoder(base):
    return sentflow.Encoder(str(base.bert), "last-avg", cache=False)


@given(text=st.text(max_size=40))
@FEW
def test_one_string_is_never_encoded_as_its_characters(tiny_encoder, text):
    try:
        vectors = tiny_encoder.encode(text)
    except SentflowError as exc:
        assert "\n" not in str(exc)
        return
    assert vectors.shape == (1, tiny_encoder.dim) and np.isfinite(vectors).all()


@given(value=st.sampled_from(["abc", "0", "-5", "nan", "2.5"]))
@settings(max_examples=2, deadline=None)
def test_a_real_process_prints_one_line_for_a_bad_option(base, value):
    done = subprocess.run(
        [sys.executable, "-m", "sentflow.cli", "fit", "--data", str(base.x), "--out", "o.safetensors", "--dim", value],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=base.fresh(),
    )
    assert_one_error(Run(done.returncode, done.stdout, done.stderr))
