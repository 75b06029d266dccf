"""Row files memory-mapped with their file kept open, so scattered rows can be read without mapping their pages.

A read fault on a mapped file maps the whole page-cache folio around it (up to 2 MiB on recent Linux), so a few
thousand scattered rows of a 4 GB file put gigabytes of it in the resident set: about 1 MiB per row, measured on
Linux 6.18 and ext4. Above MAPPED_BUDGET, `gather` therefore reads each row with a positional read (`os.pread`) of
the file the map was made from, which copies it from the page cache (1.6 µs a row, against 0.3 through a map
already resident).
"""

from __future__ import annotations

import os
from typing import BinaryIO

import numpy as np

MAPPED_BUDGET = 1 << 30  # a map up to this size is read through the map (its pages may all become resident)


class MappedRows(np.memmap):
    """A read-only memory map of a C-ordered array in a file, holding the file open (`file`; None in a view, whose
    rows are not the file's)."""

    file: BinaryIO | None

    def __array_finalize__(self, obj) -> None:
        super().__array_finalize__(obj)
        self.file = None


def map_rows(path: str | os.PathLike, dtype, shape: tuple[int, ...], offset: int) -> MappedRows:
    """Map `shape` items of `dtype` from byte `offset` of `path`, read-only; the open file is the one mapped, even if
    the path is replaced later."""
    file = open(path, "rb", buffering=0)  # noqa: SIM115 (held by the map, closed with it)
    rows = MappedRows(file, dtype=dtype, mode="r", offset=offset, shape=shape)
    rows.file = file
    return rows


def gather(array: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """array[rows] as a fresh array. Rows of a `MappedRows` larger than MAPPED_BUDGET are read with positional
    reads (where the platform has them), so none of its pages join the resident set."""
    file = getattr(array, "file", None)
    if file is None or array.nbytes <= MAPPED_BUDGET or not hasattr(os, "pread"):
        return array[rows]
    assert isinstance(array, MappedRows)
    width = array.itemsize * int(np.prod(array.shape[1:]))
    offsets = (array.offset + np.asarray(rows, np.int64) * width).tolist()
    data = bytearray().join([os.pread(file.fileno(), width, offset) for offset in offsets])
    if len(data) != width * len(offsets):
        raise OSError(f"{array.filename}: shorter than the array mapped from it")
    return np.frombuffer(data, array.dtype).reshape(len(offsets), *array.shape[1:])
