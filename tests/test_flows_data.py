"""IDX / MNIST reader and the digits loader."""

from __future__ import annotations

import gzip
import math
import struct
from pathlib import Path

import numpy as np
import pytest

from sentflow.data_root import data_path
from sentflow.errors import SentflowError
from sentflow.flows import load_data, load_digits_data, load_mnist, read_idx

MNIST = data_path("mnist")
needs_mnist = pytest.mark.skipif(
    not (MNIST / "t10k-images-idx3-ubyte.gz").is_file(), reason=f"MNIST t10k IDX files not found in {MNIST}"
)


def idx_bytes(array: np.ndarray) -> bytes:
    """Independent IDX writer (unsigned bytes): magic 0x00000803-style header, big-endian dims."""
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_mnist(directory: Path, n: int, size: int = 28, prefix: str = "t10k") -> np.ndarray:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (n, size, size), dtype=np.uint8)
    (directory / f"{prefix}-images-idx3-ubyte.gz").write_bytes(gzip.compress(idx_bytes(images)))
    (directory / f"{prefix}-labels-idx1-ubyte").write_bytes(idx_bytes(rng.integers(0, 10, n).astype(np.uint8)))
    return images


@needs_mnist
def test_reads_the_real_t10k_files() -> None:
    images = read_idx(MNIST / "t10k-images-idx3-ubyte.gz")
    labels = read_idx(MNIST / "t10k-labels-idx1-ubyte.gz")
    assert images.shape == (10000, 28, 28) and images.dtype == np.uint8
    assert labels.shape == (10000,) and set(np.unique(labels)) == set(range(10))
    assert images.max() == 255 and 0.1 < (images > 0).mean() < 0.3  # digits are mostly background


@needs_mnist
def test_offline_mnist_uses_a_fixed_8000_2000_split_of_t10k() -> None:
    data = load_mnist(MNIST)
    assert data.train.shape == (8000, 1, 28, 28) and data.test.shape == (2000, 1, 28, 28)
    assert data.n_bins == 256 and float(data.train.max()) == 255 / 256
    again = load_data(f"mnist:{MNIST}")
    assert np.array_equal(again.test_labels.numpy(), data.test_labels.numpy())


def test_round_trips_plain_and_gzipped_files(tmp_path) -> None:
    array = np.arange(2 * 3 * 5, dtype=np.uint8).reshape(2, 3, 5)
    (tmp_path / "a.idx").write_bytes(idx_bytes(array))
    (tmp_path / "a.idx.gz").write_bytes(gzip.compress(idx_bytes(array)))
    assert np.array_equal(read_idx(tmp_path / "a.idx"), array)
    assert np.array_equal(read_idx(tmp_path / "a.idx.gz"), array)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda b: b[:-7], "truncated IDX data"),
        (lambda b: b + b"xx", "trailing bytes"),
        (lambda b: b[:6], "truncated IDX header"),
        (lambda b: b"\x01\x02" + b[2:], "bad IDX magic"),
        (lambda b: b"", "bad IDX magic"),
    ],
)
def test_corrupted_files_raise_errors_naming_the_file(tmp_path, mutate, message: str) -> None:
    path = tmp_path / "broken-idx3-ubyte"
    path.write_bytes(mutate(idx_bytes(np.zeros((4, 5, 5), np.uint8))))
    with pytest.raises(SentflowError, match=message) as info:
        read_idx(path)
    assert "broken-idx3-ubyte" in str(info.value)


def test_idx_dims_are_bounded_with_exact_integers_before_reading(tmp_path) -> None:
    path = tmp_path / "huge-idx3-ubyte"
    dims = (2**32 - 1, 2**32 - 1, 2**32 - 1)  # product ~7.9e28: overflows int64, wraps in numpy
    path.write_bytes(struct.pack(">BBBB", 0, 0, 0x08, 3) + struct.pack(">3I", *dims))
    with pytest.raises(SentflowError, match=f"announce {math.prod(dims)} bytes"):
        read_idx(path)


@pytest.mark.parametrize(
    ("images", "message"),
    [
        (np.zeros((0, 28, 28), np.uint8), r"announce 0 bytes: not an image set \(empty, or too large\)"),
        (np.zeros((5, 28, 28), np.uint8), "at least 10 unsigned bytes .0-255., got 5 of uint8"),
        (np.full((12, 28, 28), np.nan, ">f4"), "got 12 of >f4"),
    ],
)
def test_mnist_images_must_be_bytes_and_enough(tmp_path, images, message) -> None:
    header = struct.pack(">BBBB", 0, 0, 0x08 if images.dtype == np.uint8 else 0x0D, 3)
    (tmp_path / "t10k-images-idx3-ubyte").write_bytes(header + struct.pack(">3I", *images.shape) + images.tobytes())
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(idx_bytes(np.zeros(len(images), np.uint8)))
    with pytest.raises(SentflowError, match=message):
        load_mnist(tmp_path)


def test_corrupted_gzip_and_missing_files(tmp_path) -> None:
    (tmp_path / "x.gz").write_bytes(gzip.compress(idx_bytes(np.zeros((3, 2), np.uint8)))[:-10])
    with pytest.raises(SentflowError, match="x.gz"):
        read_idx(tmp_path / "x.gz")
    with pytest.raises(SentflowError, match="no such file"):
        read_idx(tmp_path / "absent")
    with pytest.raises(SentflowError, match="not found"):
        load_mnist(tmp_path / "nodir")
    with pytest.raises(SentflowError, match="t10k"):
        load_mnist(tmp_path)


def test_uses_the_standard_split_when_all_four_files_are_there(tmp_path) -> None:
    train = write_mnist(tmp_path, 30, prefix="train")
    test = write_mnist(tmp_path, 12)
    data = load_mnist(tmp_path)
    assert data.name == "mnist" and len(data.train) == 30 and len(data.test) == 12
    assert np.array_equal((data.train[:, 0] * 256).round().numpy().astype(np.uint8), train)
    assert np.array_equal((data.test[:, 0] * 256).round().numpy().astype(np.uint8), test)


def test_t10k_only_split_is_80_20_disjoint_and_fixed(tmp_path) -> None:
    images = write_mnist(tmp_path, 50)
    data = load_mnist(tmp_path)
    assert data.name == "mnist-t10k" and len(data.train) == 40 and len(data.test) == 10
    seen = np.concatenate([data.train.numpy(), data.test.numpy()])[:, 0] * 256
    assert sorted(map(bytes, seen.round().astype(np.uint8))) == sorted(map(bytes, images))


def test_mismatched_label_count_is_reported(tmp_path) -> None:
    write_mnist(tmp_path, 10)
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(idx_bytes(np.zeros(9, np.uint8)))
    with pytest.raises(SentflowError, match="do not match"):
        load_mnist(tmp_path)


def test_digits_have_17_levels_and_a_fixed_split() -> None:
    data = load_digits_data()
    assert data.shape == (1, 8, 8) and data.n_bins == 17
    assert len(data.train) + len(data.test) == 1797
    levels = data.train * 17
    assert torch_equal_round(levels) and float(levels.max()) == 16
    assert np.array_equal(load_data("digits").test.numpy(), data.test.numpy())
    with pytest.raises(SentflowError, match="unknown data"):
        load_data("cifar")


def torch_equal_round(t) -> bool:
    return bool((t - t.round()).abs().max() < 1e-4)
