"""Safe file I/O: atomic writes, pickle-free arrays, and safetensors files with a JSON header."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import shutil
import socket
import stat
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from sentflow.errors import SentflowError, first_line
from sentflow.files.schemas import S, parse_json

_META_KEY = "sentflow"
_SUM_KEY = "sentflow_sha256"


def current_umask() -> int:
    """The process umask, read from /proc (setting it is the only portable way to read it: avoided)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    return 0o022


def check_output(path: str | os.PathLike, inputs: Sequence[str | os.PathLike] = ()) -> Path:
    """Refuse an output path that would destroy something: a link, a special file, a read-only file, an input."""
    target = Path(path)
    if target.is_symlink():
        raise SentflowError(f"{target}: is a symbolic link; sentflow does not write through links, give the real path")
    if target.exists():
        mode = target.stat().st_mode
        if not stat.S_ISREG(mode):
            kind = "a directory" if stat.S_ISDIR(mode) else "a special file (device, FIFO or socket)"
            raise SentflowError(f"{target}: is {kind}; refusing to replace it, give a file path")
        if not mode & 0o222:
            raise SentflowError(f"{target}: is read-only; refusing to replace it")
    check_inputs(target, inputs)
    return target


def check_inputs(target: Path, inputs: Sequence[str | os.PathLike]) -> None:
    """Refuse an output (file or directory) that is an input, lies inside an input directory, or holds an input."""
    where = target.resolve()
    for source in map(Path, inputs):
        if not source.exists():
            continue
        if where.is_relative_to(source.resolve()) and source.is_dir():
            raise SentflowError(f"{target}: is inside {source}, an input of this command; write elsewhere")
        if source.resolve().is_relative_to(where) and target.is_dir():
            raise SentflowError(f"{target}: holds {source}, an input of this command; write elsewhere")
        if target.exists() and os.path.samefile(target, source):
            raise SentflowError(f"{target}: is also an input of this command; write to another file")


OWN_FILES = ".sentflow-files.json"  # in a directory output: the files sentflow wrote there
MAX_OWN_LIST = 1 << 20


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to `path`; rename it onto `path` only if the block succeeds."""
    target = check_output(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_orphans(target)
    fd, tmp = tempfile.mkstemp(prefix=temp_prefix(target), suffix=target.suffix[:16], dir=target.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~current_umask())  # mkstemp makes 0600 files; give what open() would
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())  # the data is on disk before the name points at it
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def check_output_directory(path: str | os.PathLike, marker: str, inputs: Sequence[str | os.PathLike] = ()) -> Path:
    """Refuse a directory output that would destroy something: a link, a file, a directory sentflow did not write
    (one without `marker`), or one that also holds anything its list of sentflow's own files (`OWN_FILES`) does not
    name; and one that is, holds or lies inside one of `inputs`."""
    target = Path(path)
    if target.is_symlink() or (target.exists() and not target.is_dir()):
        raise SentflowError(f"{target}: exists and is not a directory; choose a new output directory")
    if not target.resolve().name or Path.cwd().resolve().is_relative_to(target.resolve()):
        raise SentflowError(f"{target}: is the current directory or holds it; give the output directory a new name")
    check_inputs(target, inputs)
    if target.is_dir() and any(target.iterdir()):
        if not (target / marker).is_file():
            raise SentflowError(f"{target}: a non-empty directory without {marker}; refusing to replace it")
        if not (target / OWN_FILES).is_file():
            raise SentflowError(
                f"{target}: has no {OWN_FILES} (an older sentflow's output), so its files cannot be told from "
                "yours; delete it or choose a new output directory"
            )
        foreign = foreign_entries(target)
        if foreign:
            more = f" and {len(foreign) - 1} more" if len(foreign) > 1 else ""
            raise SentflowError(
                f"{target}: holds {foreign[0]}{more}, which sentflow did not write there; move it out or choose a "
                "new output directory (the whole directory is replaced)"
            )
    return target


def foreign_entries(directory: Path) -> list[str]:
    """Paths under an earlier sentflow output directory (links not followed) that its `OWN_FILES` does not list
    (all of them when the list is damaged)."""
    own = _own_files(directory)
    return [entry for entry in _entries(directory) if entry not in own and entry != OWN_FILES]


def _entries(directory: Path) -> list[str]:
    """Every file, link and folder under `directory` as a relative path, sorted: folders end with '/', links
    with ' (a link)', which no list of sentflow's files holds (it never writes links)."""
    found = []
    for root, dirs, files in os.walk(directory):
        base = Path(root).relative_to(directory)
        for name in [*dirs, *files]:
            kind = " (a link)" if (Path(root) / name).is_symlink() else "/" if name in dirs else ""
            found.append(f"{(base / name).as_posix()}{kind}")
    return sorted(found)


def _own_files(directory: Path) -> set[str]:
    try:
        with open(directory / OWN_FILES, "rb") as fh:
            listed = json.loads(fh.read(MAX_OWN_LIST))
    except (OSError, ValueError):
        return set()
    ok = isinstance(listed, list) and all(isinstance(name, str) for name in listed)
    return set(listed) if ok else set()


@contextmanager
def atomic_directory(
    path: str | os.PathLike, marker: str, inputs: Sequence[str | os.PathLike] = ()
) -> Iterator[Path]:
    """Yield a staging directory next to `path`; swap it in for `path` only if the block succeeds.

    `path` may be new, an empty directory, or an earlier output of the same kind that holds nothing else (it
    has `marker` and lists its files in `OWN_FILES`, written here); anything else is refused, so neither a typo
    nor a re-run ever deletes what a user put there.
    """
    target = check_output_directory(path, marker, inputs)
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_orphans(target)
    staging = Path(tempfile.mkdtemp(prefix=temp_prefix(target), dir=target.parent))
    try:
        yield staging
        (staging / OWN_FILES).write_text(json.dumps(_entries(staging)) + "\n", encoding="utf-8")
        staging.chmod(0o777 & ~current_umask())
        _swap_in(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _swap_in(staging: Path, target: Path) -> None:
    """Rename `staging` onto `target`, keeping the old directory until the new one is in place."""
    old = None
    if target.exists():
        old = Path(tempfile.mkdtemp(prefix=f"{temp_prefix(target)}old.", dir=target.parent))
        os.replace(target, old / "previous")
    try:
        os.replace(staging, target)
    except OSError:
        if old is not None:
            os.replace(old / "previous", target)
        raise
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


_HOST = hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]  # pids only mean something on one host


def temp_prefix(target: Path, pid: int | None = None) -> str:
    """Hidden temporary names beside `target` say who wrote them: `.NAME.sentflow-tmp-HOST-PID.`."""
    return f".{target.name[:64]}.sentflow-tmp-{_HOST}-{os.getpid() if pid is None else pid}."


def remove_orphans(target: Path) -> None:
    """Delete temporary files and staging directories beside `target` left by runs that were killed.

    Only names sentflow makes (`temp_prefix`) on this host, whose process no longer exists, are touched. A
    directory holding the previous output of an interrupted swap is kept when `target` is missing (it is then the
    only copy).
    """
    ours = re.compile(re.escape(f".{target.name[:64]}.sentflow-tmp-{_HOST}-") + r"(\d{1,9})\.")
    for path in target.parent.iterdir():
        match = ours.match(path.name)
        if match is None or path.is_symlink() or process_exists(int(match[1])):
            continue
        if not path.is_dir():
            path.unlink(missing_ok=True)
        elif not path.name.startswith(f"{match[0]}old.") or target.exists():
            shutil.rmtree(path, ignore_errors=True)


def process_exists(pid: int) -> bool:
    """Whether a process with this id is running (signal 0 probes without sending anything)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def write_atomic(path: str | os.PathLike, write: Callable[[Path], object]) -> None:
    """Call `write(tmp_path)` and move the result onto `path` in one step."""
    with atomic_path(path) as tmp:
        write(tmp)


def save_npy(path: str | os.PathLike, array: np.ndarray) -> None:
    """Save an array as .npy atomically (never pickled)."""

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            np.save(fh, np.ascontiguousarray(array), allow_pickle=False)

    write_atomic(path, write)


def save_tensors(path: str | os.PathLike, tensors: dict[str, torch.Tensor], meta: dict) -> None:
    """Write tensors with safetensors, `meta` as JSON and a content checksum in the file's header, atomically."""
    data = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    bad = non_finite_tensor(data)
    if bad:
        raise SentflowError(f"{path}: refusing to write NaN/Inf values (tensor {bad!r})")
    header = {_META_KEY: json.dumps(meta, sort_keys=True), _SUM_KEY: tensors_digest(data)}
    write_atomic(path, lambda tmp: save_file(data, str(tmp), metadata=header))


def load_tensors(path: str | os.PathLike, schema: type[S]) -> tuple[dict[str, torch.Tensor], S]:
    """Read a file written by `save_tensors`: (tensors, meta validated by `schema`). No pickle; checksum and
    finiteness are checked."""
    p = Path(path)
    if not p.is_file():
        raise SentflowError(f"{p}: no such file")
    try:
        tensors = load_file(str(p))
        with safe_open(str(p), framework="pt") as fh:
            header = fh.metadata() or {}
    except (SafetensorError, OSError) as exc:
        raise SentflowError(f"{p}: not a readable safetensors file ({first_line(exc)})") from None
    if _META_KEY not in header:
        raise SentflowError(f"{p}: safetensors file without sentflow metadata; was it written by sentflow?")
    if _SUM_KEY not in header:
        raise SentflowError(f"{p}: no content checksum in its header (another tool or an older sentflow wrote it)")
    if header[_SUM_KEY] != tensors_digest(tensors):
        raise SentflowError(f"{p}: checksum mismatch: the file is damaged")
    bad = non_finite_tensor(tensors)
    if bad:
        raise SentflowError(f"{p}: tensor {bad!r} holds NaN/Inf values; the file is damaged")
    return tensors, parse_json(schema, header[_META_KEY], f"{p}: sentflow metadata")


def restore_module(build: Callable[[], torch.nn.Module], state: dict[str, torch.Tensor], where: object):
    """`build()` loaded with `state`, checked first against a build on the meta device, so that a header
    describing a huge or different model is refused before any memory is allocated."""
    with torch.device("meta"):
        check_state(build(), state, where)
    module = build()
    module.load_state_dict(state, strict=True)
    return module


def check_state(module: torch.nn.Module, state: dict[str, torch.Tensor], where: object) -> None:
    """`state` has exactly the tensor names, shapes and dtypes of `module.state_dict()`; else one line naming the
    first that differs."""
    expected = {k: (list(v.shape), v.dtype) for k, v in module.state_dict().items()}
    found = {k: (list(v.shape), v.dtype) for k, v in state.items()}
    if found != expected:
        name = min(k for k in expected.keys() | found.keys() if expected.get(k) != found.get(k))
        have = " ".join(map(str, found[name])) if name in found else "missing"
        need = " ".join(map(str, expected[name])) if name in expected else "no such tensor"
        raise SentflowError(f"{where}: tensor {name!r} is {have}, the model described by the header needs {need}")


def non_finite_tensor(tensors: dict[str, torch.Tensor]) -> str | None:
    """The name of the first floating tensor holding NaN/Inf, if any."""
    return next((k for k, v in tensors.items() if v.is_floating_point() and not torch.isfinite(v).all()), None)


def tensors_digest(tensors: dict[str, torch.Tensor]) -> str:
    """sha256 over every tensor's name, dtype, shape and bytes, in name order."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        tensor = tensors[name].detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


def file_hash(path: str | os.PathLike, offset: int = 0, size: int | None = None) -> hashlib._Hash:
    """The sha256 of a file's bytes (`size` of them from `offset`; all by default), read in blocks; the hash object,
    so a caller may go on updating it."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        left = os.fstat(fh.fileno()).st_size - offset if size is None else size
        fh.seek(offset)
        while left > 0 and (block := fh.read(min(left, 1 << 22))):
            digest.update(block)
            left -= len(block)
    return digest


# --- exclusive output directories ------------------------------------------------------------------------------------


@contextmanager
def locked_directory(target: Path) -> Iterator[Path]:
    """Hold an exclusive lock on the output directory `target` for the block, so that a second writer of the same
    output is refused in one line while the first runs.

    A missing `target` (and its parents) is created empty to carry the lock, and removed again if the block fails
    while it is still empty. The lock is an advisory `flock` on the directory itself: it needs no file of a
    predictable name beside the user's, and dies with its process."""
    import fcntl

    created = not target.exists()
    target.mkdir(parents=True, exist_ok=True)
    fd = os.open(target, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0))
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            created = False
            raise SentflowError(
                f"{target}: another sentflow process is writing this output now; wait until it ends or choose "
                "another output directory"
            ) from None
        except OSError as exc:  # a file system without locks: builds stay private and atomic, only unserialised
            if exc.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOTSUP):
                raise SentflowError(f"{target}: cannot be locked ({exc.strerror})") from None
        if not os.path.samestat(os.fstat(fd), os.stat(target, follow_symlinks=False)):
            created = False
            raise SentflowError(f"{target}: was replaced by another sentflow process as this one started; run again")
        yield target
    except BaseException:
        if created:
            with contextlib.suppress(OSError):
                target.rmdir()  # only while still empty
        raise
    finally:
        os.close(fd)

