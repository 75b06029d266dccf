"""Sample grids as PNG files (written atomically)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from matplotlib.image import imsave

from sentflow.errors import SentflowError
from sentflow.files.io import write_atomic

MAX_GRID_PIXELS = 1 << 26  # an 8192 x 8192 PNG


def grid_layout(n: int, h: int, w: int, pad: int = 1) -> tuple[int, int, tuple[int, int]]:
    """(rows, cols, (height, width) of the grid) for n images of h x w tiled near-square."""
    cols = math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    return rows, cols, (rows * (h + pad) + pad, cols * (w + pad) + pad)


def check_grid(n: int, image_shape: tuple[int, ...], scale: int) -> None:
    """Refuse a grid too large to write, before any sample is drawn."""
    _, _, (height, width) = grid_layout(n, image_shape[-2], image_shape[-1])
    pixels = height * width * scale * scale
    if pixels > MAX_GRID_PIXELS:
        raise SentflowError(
            f"a grid of {n} samples at scale {scale} would have {pixels} pixels (at most {MAX_GRID_PIXELS}); "
            "ask for fewer samples or a smaller scale"
        )


def image_grid(images: torch.Tensor, pad: int = 1) -> np.ndarray:
    """(N, 1, H, W) in [0, 1] -> one 2-D array with the images tiled in a near-square grid."""
    n, _, h, w = images.shape
    rows, cols, size = grid_layout(n, h, w, pad)
    grid = np.ones(size, dtype=np.float32)
    for i, img in enumerate(images[:, 0].clamp(0, 1).cpu().numpy()):
        r, c = divmod(i, cols)
        grid[pad + r * (h + pad) : pad + r * (h + pad) + h, pad + c * (w + pad) : pad + c * (w + pad) + w] = img
    return grid


def save_grid(path: str | Path, images: torch.Tensor, scale: int = 1) -> None:
    """Write `images` as a grayscale PNG grid, each pixel repeated `scale` times per side."""
    check_grid(len(images), tuple(images.shape), scale)
    if not torch.isfinite(images).all():
        raise SentflowError("the samples hold NaN/Inf values: the model diverged or the temperature is too high")
    grid = np.kron(image_grid(images), np.ones((scale, scale), dtype=np.float32))
    write_atomic(path, lambda tmp: imsave(tmp, grid, cmap="gray", vmin=0.0, vmax=1.0, format="png"))
