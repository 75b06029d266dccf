"""The calibrator a method name stands for: one list of names for every command and report."""

from __future__ import annotations

from sentflow.calibration.base import Calibrator
from sentflow.errors import SentflowError

METHODS = ("none", "whitening", "pca", "flow")
POWERS = {"whitening": 0.5, "pca": 0.0}  # pca: centring and rotation only, the dimension-cut baseline


def make_calibrator(method: str, dim: int | None = None, power: float | None = None, **flow_options) -> Calibrator:
    """The unfitted calibrator a method name stands for (`none`, no calibration, has none: callers skip it).

    Args:
        method: `whitening` (BERT-whitening), `pca` (centring and rotation only) or `flow` (BERT-flow).
        dim: Dimensions kept by whitening or pca (None: all); a flow keeps every dimension.
        power: Whitening power, overriding the method's own (0.5 for whitening, 0 for pca).
        **flow_options: BertFlow parameters.
    """
    if method in POWERS:
        from sentflow.calibration.whitening import Whitening

        return Whitening(n_components=dim, power=POWERS[method] if power is None else power)
    if method == "flow":
        from sentflow.calibration.bertflow import BertFlow

        return BertFlow(**flow_options)
    if method == "none":
        raise SentflowError("method 'none' is no calibration: there is nothing to fit")
    raise SentflowError(f"unknown method {method!r}; choose from {', '.join(METHODS)}")
