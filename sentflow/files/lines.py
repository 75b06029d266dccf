"""Line-oriented files (text corpora, queries and sentences; ids and snippets as JSON Lines), read with bounded
memory and written so that every reader splits them the same way.

Text files are split on "\\n" only, never on the other characters `str.splitlines` takes for line breaks (U+0085,
U+2028, U+2029, ...), and a line is read up to a maximum length, so one huge line (or a sparse file of zeros) is an
error naming it, not a process that grows until it is killed. FIFOs, devices and sockets are refused before
anything is read from them. JSON Lines files escape those characters too, so any tool reads back the same lines.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

from sentflow.errors import SentflowError

MAX_LINE_BYTES = 1 << 20  # a line of a text file (a sentence, document or query) read into memory at once
MAX_JSON_LINE_BYTES = 1 << 22  # a line of a JSON Lines file (a BEIR record, an id or snippet)
_SEPARATORS = str.maketrans({"\x85": "\\u0085", "\u2028": "\\u2028", "\u2029": "\\u2029"})  # str.splitlines' breaks


def open_regular(path: str | os.PathLike) -> BinaryIO:
    """Open an existing regular file for reading in binary; a directory, FIFO, device or socket is refused before
    anything is read from it (opening without blocking, so a FIFO with no writer cannot hang the caller)."""
    p = Path(path)
    try:
        fd = os.open(p, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise SentflowError(f"{p}: no such file") from None
    except OSError as exc:
        raise SentflowError(f"{p}: cannot be read ({exc.strerror})") from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        kind = "a directory" if stat.S_ISDIR(mode) else "a special file (FIFO, device or socket)"
        raise SentflowError(f"{p}: is {kind}, not a regular file; sentflow reads inputs from regular files")
    os.set_blocking(fd, True)
    return os.fdopen(fd, "rb")


def iter_lines(path: str | os.PathLike, max_bytes: int = MAX_LINE_BYTES, start: int = 0) -> Iterator[tuple[int, str]]:
    """(line number from 1, text) of each line of a UTF-8 file from line index `start` on, split on "\\n" only
    (a trailing "\\r" dropped; U+2028 and the other characters `str.splitlines` splits on stay inside a line).

    Memory holds one line: a line longer than `max_bytes` is an error naming it, found after reading at most
    `max_bytes` of it."""
    with open_regular(path) as fh:
        number = 0
        while raw := fh.readline(max_bytes + 1):
            number += 1
            if len(raw) > max_bytes and raw[-1:] != b"\n":
                raise SentflowError(
                    f"{path}, line {number}: longer than {max_bytes:,} bytes (the most sentflow reads as one line); "
                    "is it a text file with one item a line?"
                )
            if number <= start:
                continue
            try:
                yield number, raw.rstrip(b"\n").removesuffix(b"\r").decode("utf-8")
            except UnicodeDecodeError as exc:
                raise SentflowError(f"{path}, line {number}: not UTF-8 text ({exc.reason})") from None


def json_line(value: str) -> str:
    """One string as a JSON Lines line (no newline): UTF-8 kept, every character that any reader takes for a
    line break escaped (JSON escapes control characters; U+0085, U+2028 and U+2029 are escaped here too)."""
    text = json.dumps(str(value), ensure_ascii=False)
    return text.translate(_SEPARATORS)


def write_json_lines(path: str | os.PathLike, values: Iterable[str]) -> None:
    """Write each string as one JSON Lines line (see `json_line`); read back exactly by `read_json_lines`."""
    with open(path, "x", encoding="utf-8", newline="\n") as fh:
        for value in values:
            fh.write(json_line(value) + "\n")


def read_json_lines(path: str | os.PathLike, rows: int) -> list[str]:
    """The `rows` strings of a file written by `write_json_lines`; another count or a line that is not one JSON
    string is a one-line error naming the file and line."""
    values = []
    for number, line in iter_lines(path, MAX_JSON_LINE_BYTES):
        try:
            value = json.loads(line)
        except json.JSONDecodeError:
            value = None
        if not isinstance(value, str):
            raise SentflowError(f"{path}, line {number}: not a JSON string")
        if number > rows:
            raise SentflowError(f"{path}: more than {rows} lines, the index has {rows} documents")
        values.append(value)
    if len(values) != rows:
        raise SentflowError(f"{path}: {len(values)} lines, the index has {rows} documents")
    return values

