"""A linear calibration as a faiss `LinearTransform`, so that an index applies it to what is added and searched."""

from __future__ import annotations

import numpy as np

from sentflow.errors import SentflowError
from sentflow.extras import require
from sentflow.protocols import LinearMap


def linear_transform(calibration):
    """A fitted linear calibration as a faiss `LinearTransform` (y = A x + b, A = Wᵀ, b as `linear_map` gives)."""
    if not isinstance(calibration, LinearMap):
        raise SentflowError(
            f"the {calibration.method} calibration is not a linear map, so faiss cannot apply it inside the index: "
            "index calibration.transform(vectors) with build_index(None, ...) and transform the queries the same way"
        )
    return affine_transform(*calibration.linear_map())


def affine_transform(weight: np.ndarray, bias: np.ndarray):
    """y = x W + b (W of shape (d_in, d_out)) as a trained faiss `LinearTransform` (A = Wᵀ)."""
    faiss = require("faiss", "faiss")
    linear = faiss.LinearTransform(weight.shape[0], weight.shape[1], True)
    faiss.copy_array_to_vector(np.ascontiguousarray(weight.T, dtype=np.float32).ravel(), linear.A)
    faiss.copy_array_to_vector(np.ascontiguousarray(bias, dtype=np.float32), linear.b)
    linear.is_trained = True
    return linear
