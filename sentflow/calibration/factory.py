"""The calibrator a method name stands for: one list of names for every command and report."""

from __future__ import annotations

from sentflow.calibration.base import Calibrator
from sentflow.errors import SentflowError

METHODS = ("none", "whitening", "flow")


def make_calibrator(method: str, dim: int | None = None, power: float = 0.5, **flow_options) -> Calibrator | None:
    """The calibrator a method name stands for (None for `none`)."""
    if method == "none":
        return None
    if method == "whitening":
        from sentflow.calibration.whitening import Whitening

        return Whitening(n_components=dim, power=power)
    if method == "flow":
        from sentflow.calibration.bertflow import BertFlow

        return BertFlow(**flow_options)
    raise SentflowError(f"unknown method {method!r}; choose from {', '.join(METHODS)}")
