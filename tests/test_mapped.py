"""Scattered rows of a memory-mapped row file, read without mapping the file's pages into the process."""

import os
import sys

import numpy as np
import pytest

import sentflow.files.mapped as mapped
from sentflow.files.mapped import MappedRows, gather, map_rows
from sentflow.files.npy import read_header


def mapped_kib() -> int:
    """This process's resident pages of files and shared memory, KiB (Linux)."""
    with open("/proc/self/status") as status:
        fields = dict(line.split(":", 1) for line in status)
    return sum(int(fields[name].split()[0]) for name in ("RssFile", "RssShmem"))


def saved(path, data) -> MappedRows:
    np.save(path, data)
    shape, _, dtype, offset = read_header(path)
    return map_rows(path, dtype, shape, offset)


@pytest.fixture
def codes(tmp_path):
    data = np.random.default_rng(0).integers(0, 256, (200_000, 64), dtype=np.uint8)  # 12.8 MB
    return data, saved(tmp_path / "codes.npy", data)


@pytest.mark.parametrize("budget", [1 << 20, 1 << 40])
def test_gather_returns_the_rows_asked_for(codes, budget, monkeypatch):
    data, rows_file = codes
    monkeypatch.setattr(mapped, "MAPPED_BUDGET", budget)
    rows = np.sort(np.random.default_rng(1).choice(len(data), 3000, replace=False))
    found = gather(rows_file, rows)
    np.testing.assert_array_equal(found, data[rows])
    found[0] = 0  # a fresh, writable array
    view = rows_file[100:]  # a view: its rows are not the file's
    np.testing.assert_array_equal(gather(view, rows[:5]), data[100:][rows[:5]])
    np.testing.assert_array_equal(gather(data, rows[::-1]), data[rows[::-1]])  # an array in RAM, any order


def test_positional_reads_come_from_the_file_mapped_even_after_its_path_is_replaced(tmp_path, monkeypatch):
    data = np.arange(4000, dtype=np.float32).reshape(1000, 4)
    rows_file = saved(tmp_path / "rows.npy", data)
    np.save(tmp_path / "other.npy", -data)
    os.replace(tmp_path / "other.npy", tmp_path / "rows.npy")
    monkeypatch.setattr(mapped, "MAPPED_BUDGET", 0)
    np.testing.assert_array_equal(gather(rows_file, np.array([3, 999, 0])), data[[3, 999, 0]])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc/self/status is Linux's")
def test_a_large_map_is_read_without_its_pages_becoming_resident(codes, monkeypatch):
    """3,000 scattered rows touch every page of a 12.8 MB map; read above the budget, none is mapped in (read
    through the map, most of the file is: the check can fail)."""
    _, rows_file = codes
    rows = np.sort(np.random.default_rng(2).choice(len(rows_file), 3000, replace=False))
    monkeypatch.setattr(mapped, "MAPPED_BUDGET", 1 << 20)
    before = mapped_kib()
    gather(rows_file, rows)
    assert mapped_kib() - before < 1024
    monkeypatch.setattr(mapped, "MAPPED_BUDGET", 1 << 40)
    gather(rows_file, rows)
    assert mapped_kib() - before > 8 * 1024
