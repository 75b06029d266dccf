"""Image data sets as float tensors x = k / n_bins in [0, 1), shape (N, 1, H, W).

* ``digits``: scikit-learn's embedded 8x8 digits, 17 intensity levels 0..16, so n_bins = 17; a fixed
  seeded split of 1,437 train / 360 test images (80/20).
* ``mnist:DIR``: IDX files (optionally .gz).  With all four standard files in DIR the usual 60,000 / 10,000
  split is used; with only the t10k files (as in the offline copy), a fixed seeded split of t10k into
  8,000 train / 2,000 test.  n_bins = 256.
"""

from __future__ import annotations

import gzip
import math
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from sentflow.errors import SentflowError
from sentflow.files.io import first_line

_IDX_DTYPES: dict[int, type | np.dtype] = {
    0x08: np.uint8,
    0x09: np.int8,
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
SPLIT_SEED = 0
_MAX_IDX_BYTES = 1 << 27  # 128 MiB of pixels (0.5 GiB as float32); MNIST's largest file is 47 MB
_MIN_IMAGES = 10  # a split must leave images to train on and to test


@dataclass(frozen=True)
class ImageData:
    """Train / test images scaled to k / n_bins, with their labels."""

    name: str
    train: torch.Tensor
    test: torch.Tensor
    train_labels: torch.Tensor
    test_labels: torch.Tensor
    n_bins: int

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.train.shape[1:])


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (.gz allowed): magic number, dims and payload length checked, the size bounded before
    anything is read (Python integers: a dims product cannot overflow)."""
    p = Path(path)
    if not p.is_file():
        raise SentflowError(f"{p}: no such file")
    try:
        with gzip.open(p, "rb") if p.suffix == ".gz" else open(p, "rb") as fh:
            magic = fh.read(4)
            if len(magic) < 4 or magic[:2] != b"\0\0" or magic[2] not in _IDX_DTYPES or not 0 < magic[3] <= 8:
                raise SentflowError(f"{p}: bad IDX magic number {magic.hex() or '(empty file)'}")
            dtype, ndim = np.dtype(_IDX_DTYPES[magic[2]]), magic[3]
            header = fh.read(4 * ndim)
            if len(header) < 4 * ndim:
                raise SentflowError(f"{p}: truncated IDX header ({4 + len(header)} bytes, expected {4 + 4 * ndim})")
            dims = struct.unpack(f">{ndim}I", header)
            size = math.prod(dims) * dtype.itemsize
            if size > _MAX_IDX_BYTES or 0 in dims:
                raise SentflowError(
                    f"{p}: IDX dims {list(dims)} announce {size} bytes: not an image set (empty, or too large)"
                )
            if p.suffix != ".gz":  # a plain file's payload length is known before it is read
                _check_payload(p, p.stat().st_size - 4 - 4 * ndim, size, dims)
            payload, trailing = fh.read(size), fh.read(1)
    except (OSError, EOFError, zlib.error) as exc:
        raise SentflowError(f"{p}: not a readable IDX file ({first_line(exc)})") from None
    _check_payload(p, len(payload) + len(trailing), size, dims)
    return np.frombuffer(payload, dtype).reshape(dims)


def _check_payload(path: Path, found: int, size: int, dims: tuple[int, ...]) -> None:
    if found != size:
        what = "truncated" if found < size else "trailing bytes in"
        raise SentflowError(f"{path}: {what} IDX data for dims {list(dims)} ({size} bytes expected)")


def _find(directory: Path, stem: str) -> Path | None:
    for name in (stem, f"{stem}.gz"):
        if (directory / name).is_file():
            return directory / name
    return None


def _require(directory: Path, stem: str) -> Path:
    found = _find(directory, stem)
    if found is None:
        raise SentflowError(f"{directory}: no {stem} (or {stem}.gz) in the MNIST folder")
    return found


def _load_pair(directory: Path, prefix: str) -> tuple[np.ndarray, np.ndarray]:
    images = read_idx(_require(directory, f"{prefix}-images-idx3-ubyte"))
    labels = read_idx(_require(directory, f"{prefix}-labels-idx1-ubyte"))
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise SentflowError(f"{directory}: {prefix} images {images.shape} and labels {labels.shape} do not match")
    if images.dtype != np.uint8 or len(images) < _MIN_IMAGES:
        raise SentflowError(
            f"{directory}: {prefix} images must be at least {_MIN_IMAGES} unsigned bytes (0-255), "
            f"got {len(images)} of {images.dtype}"
        )
    return images, labels


def _seeded_split(n: int, n_train: int) -> tuple[np.ndarray, np.ndarray]:
    order = np.random.default_rng(SPLIT_SEED).permutation(n)
    return order[:n_train], order[n_train:]


def _as_data(
    name: str, images: tuple[np.ndarray, np.ndarray], labels: tuple[np.ndarray, np.ndarray], n_bins: int
) -> ImageData:
    def scale(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(a.astype(np.float32)[:, None] / n_bins)

    return ImageData(
        name,
        scale(images[0]),
        scale(images[1]),
        torch.from_numpy(labels[0].astype(np.int64)),
        torch.from_numpy(labels[1].astype(np.int64)),
        n_bins,
    )


def load_mnist(directory: str | Path) -> ImageData:
    """MNIST from IDX files in `directory` (see the module docstring for the split)."""
    d = Path(directory)
    if not d.is_dir():
        raise SentflowError(f"{d}: MNIST directory not found")
    if _find(d, "t10k-images-idx3-ubyte") is None or _find(d, "t10k-labels-idx1-ubyte") is None:
        raise SentflowError(f"{d}: needs t10k-images-idx3-ubyte[.gz] and t10k-labels-idx1-ubyte[.gz]")
    test_x, test_y = _load_pair(d, "t10k")
    if _find(d, "train-images-idx3-ubyte") and _find(d, "train-labels-idx1-ubyte"):
        train_x, train_y = _load_pair(d, "train")
        return _as_data("mnist", (train_x, test_x), (train_y, test_y), 256)
    train, test = _seeded_split(len(test_x), int(0.8 * len(test_x)))
    return _as_data("mnist-t10k", (test_x[train], test_x[test]), (test_y[train], test_y[test]), 256)


def load_digits_data() -> ImageData:
    """scikit-learn's 8x8 digits (17 levels, n_bins = 17), fixed seeded 80/20 split."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = bunch.images.astype(np.int64)
    train, test = _seeded_split(len(images), int(0.8 * len(images)))
    return _as_data("digits", (images[train], images[test]), (bunch.target[train], bunch.target[test]), 17)


def load_data(spec: str) -> ImageData:
    """`digits` or `mnist:DIR`."""
    if spec == "digits":
        return load_digits_data()
    if spec.startswith("mnist:"):
        return load_mnist(spec.split(":", 1)[1])
    raise SentflowError(f"unknown data {spec!r}; use 'digits' or 'mnist:DIR'")
