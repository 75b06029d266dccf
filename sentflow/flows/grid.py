"""Sample grids as PNG files (written atomically)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from matplotlib.image import imsave

from sentflow.io import write_atomic


def image_grid(images: torch.Tensor, pad: int = 1) -> np.ndarray:
    """(N, 1, H, W) in [0, 1] -> one 2-D array with the images tiled in a near-square grid."""
    n, _, h, w = images.shape
    cols = math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    grid = np.ones((rows * (h + pad) + pad, cols * (w + pad) + pad), dtype=np.float32)
    for i, img in enumerate(images[:, 0].clamp(0, 1).cpu().numpy()):
        r, c = divmod(i, cols)
        grid[pad + r * (h + pad) : pad + r * (h + pad) + h, pad + c * (w + pad) : pad + c * (w + pad) + w] = img
    return grid


def save_grid(path: str | Path, images: torch.Tensor, scale: int = 1) -> None:
    """Write `images` as a grayscale PNG grid, each pixel repeated `scale` times per side."""
    grid = np.kron(image_grid(images), np.ones((scale, scale), dtype=np.float32))
    write_atomic(path, lambda tmp: imsave(tmp, grid, cmap="gray", vmin=0.0, vmax=1.0, format="png"))
