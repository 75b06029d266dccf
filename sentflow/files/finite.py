"""The one rule that no NaN or Inf is read, written or returned: rows are checked where arrays enter or leave."""

from __future__ import annotations

import numpy as np

from sentflow.errors import SentflowError


def check_finite(X: np.ndarray, where: str, first_row: int = 0) -> None:
    """Refuse rows with NaN/Inf: `where` starts the message, rows are counted from `first_row`."""
    finite = np.isfinite(X)
    bad = ~finite.all(axis=tuple(range(1, X.ndim))) if X.ndim > 1 else ~finite
    if bad.any():
        first = first_row + int(np.flatnonzero(bad)[0])
        raise SentflowError(f"{where} NaN or Inf values ({int(bad.sum())} rows, first at row {first})")
