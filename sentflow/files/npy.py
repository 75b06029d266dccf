""".npy arrays read and written in row chunks, so memory never holds more than one chunk.

Chunks are read with plain file reads at known offsets rather than through a memory map: mapped pages count in
the resident set, so a memory-mapped pass over a 3 GB file would show 3 GB of RSS.
"""

from __future__ import annotations

import math
import os
import tokenize
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from sentflow.errors import SentflowError
from sentflow.files.finite import check_finite
from sentflow.files.io import atomic_path, first_line

CHUNK_BYTES = 64 << 20  # rows per chunk are chosen so that a float32 chunk is about this large
_MAX_HEADER_BYTES = 1 << 16


@dataclass(frozen=True)
class NpyShard:
    """A 2-D numeric .npy file: where its data start, its shape and dtype."""

    path: Path
    rows: int
    cols: int
    dtype: np.dtype
    offset: int

    def read(self, start: int, stop: int) -> np.ndarray:
        """Rows [start, stop) as a fresh array (one read, no memory map)."""
        count = (stop - start) * self.cols
        with open(self.path, "rb") as fh:
            fh.seek(self.offset + start * self.cols * self.dtype.itemsize)
            data = np.fromfile(fh, dtype=self.dtype, count=count)
        if data.size != count:
            raise SentflowError(f"{self.path}: truncated while reading rows {start}..{stop}")
        return data.reshape(stop - start, self.cols)


def open_shard(path: str | os.PathLike) -> NpyShard:
    """Read and check a .npy header: 2-D, real numbers, C order, and a file long enough for the data it announces."""
    p = Path(path)
    shape, fortran, dtype, offset = read_header(p)
    if len(shape) != 2 or fortran:
        raise SentflowError(f"{p}: must be 2-D (n_samples, n_features) in C order; got shape {shape}")
    if shape[1] == 0:
        raise SentflowError(f"{p}: has no features (shape {shape})")
    return NpyShard(p, shape[0], shape[1], dtype, offset)


def read_header(p: Path) -> tuple[tuple[int, ...], bool, np.dtype, int]:
    """(shape, fortran_order, dtype, data offset) of a .npy file holding real numbers, checked against its size
    before anything is allocated."""
    if not p.is_file():
        raise SentflowError(f"{p}: no such file")
    try:
        with open(p, "rb") as fh:
            version = np.lib.format.read_magic(fh)
            shape, fortran, dtype = _read_header(fh, version)
            offset = fh.tell()
    except (ValueError, EOFError, OSError, SyntaxError, tokenize.TokenError) as exc:  # numpy parses with ast
        raise SentflowError(f"{p}: not a readable .npy array ({first_line(exc)})") from None
    if dtype.hasobject or dtype.kind not in "iuf" or any(int(v) < 0 for v in shape):
        raise SentflowError(f"{p}: must hold real numbers with a valid shape; got shape {shape}, dtype {dtype}")
    expected = offset + math.prod(int(v) for v in shape) * dtype.itemsize
    if p.stat().st_size < expected:
        raise SentflowError(f"{p}: truncated: {p.stat().st_size} bytes, the header announces {expected}")
    return tuple(int(v) for v in shape), fortran, dtype, offset


def _read_header(fh: BinaryIO, version: tuple[int, int]) -> tuple[tuple[int, ...], bool, np.dtype]:
    if version == (1, 0):
        return np.lib.format.read_array_header_1_0(fh, max_header_size=_MAX_HEADER_BYTES)
    if version == (2, 0):
        return np.lib.format.read_array_header_2_0(fh, max_header_size=_MAX_HEADER_BYTES)
    raise ValueError(f"unsupported .npy format version {version}")


def load_npy(path: str | os.PathLike) -> np.ndarray:
    """A whole .npy array of real numbers, its header checked against the file first; never unpickles."""
    p = Path(path)
    read_header(p)
    try:
        return np.load(p, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise SentflowError(f"{p}: not a readable .npy array ({first_line(exc)})") from None


class NpyShards:
    """Several .npy files of the same width read as one (n, d) array, in chunks."""

    def __init__(self, paths: Sequence[str | os.PathLike]) -> None:
        if not paths:
            raise SentflowError("no .npy files to read")
        self.shards = [open_shard(p) for p in paths]
        first = self.shards[0]
        for shard in self.shards[1:]:
            if shard.cols != first.cols:
                raise SentflowError(f"{shard.path}: {shard.cols} columns, but {first.path} has {first.cols}")
        self.cols = first.cols
        self.rows = sum(s.rows for s in self.shards)

    @property
    def paths(self) -> list[Path]:
        return [s.path for s in self.shards]

    def chunk_rows(self) -> int:
        return max(1, CHUNK_BYTES // (4 * max(self.cols, 1)))

    def chunks(self, rows: int | None = None) -> Iterator[tuple[NpyShard, int, np.ndarray]]:
        """(shard, first row within the shard, rows) chunks, each finite-checked, in file order."""
        rows = rows or self.chunk_rows()
        for shard in self.shards:
            for start in range(0, shard.rows, rows):
                chunk = shard.read(start, min(start + rows, shard.rows))
                check_finite(chunk, f"{shard.path}:", start)
                yield shard, start, chunk

    def read_all(self) -> np.ndarray:
        """Every row in memory (for fits that need all rows at once, such as BERT-flow)."""
        chunks = [chunk for _, _, chunk in self.chunks()]
        if not chunks:
            raise SentflowError(f"{self.paths[0]}: no rows (shape (0, {self.cols})); nothing to read")
        return np.concatenate(chunks)


def write_header(fh: BinaryIO, rows: int, cols: int, dtype: np.dtype) -> int:
    """Write a .npy header for a C-order (rows, cols) array; return where the data start."""
    header = {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False, "shape": (rows, cols)}
    np.lib.format.write_array_header_2_0(fh, header)
    return fh.tell()


class ChunkWriter:
    """Appends row chunks to an open .npy file whose header announced `rows` x `cols`."""

    def __init__(self, fh: BinaryIO, path: Path, rows: int, cols: int, dtype: np.dtype) -> None:
        self.fh, self.path, self.rows, self.cols, self.dtype = fh, path, rows, cols, dtype
        self.written = 0

    def write(self, chunk: np.ndarray) -> None:
        if chunk.ndim != 2 or chunk.shape[1] != self.cols or self.written + len(chunk) > self.rows:
            raise SentflowError(f"{self.path}: a chunk of shape {chunk.shape} does not fit ({self.rows}, {self.cols})")
        with np.errstate(over="ignore"):
            data = np.ascontiguousarray(chunk, dtype=self.dtype)
        check_finite(data, f"{self.path}: refusing to write", self.written)  # also values beyond float32's range
        self.fh.write(data.tobytes())
        self.written += len(chunk)


@contextmanager
def npy_writer(path: str | os.PathLike, rows: int, cols: int, dtype=np.float32) -> Iterator[ChunkWriter]:
    """Write a (rows, cols) .npy chunk by chunk into a temporary file that replaces `path` once complete."""
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        write_header(fh, rows, cols, np.dtype(dtype))
        writer = ChunkWriter(fh, Path(path), rows, cols, np.dtype(dtype))
        yield writer
        if writer.written != rows:
            raise SentflowError(f"{path}: wrote {writer.written} of {rows} rows")
