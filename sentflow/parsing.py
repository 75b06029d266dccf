"""Strict parsers for numbers written as text (option specs, environment values): ASCII digits only.

Python's own `int()` and `str.isdigit()` accept far more than a user means by a number (`"²"`, `"١٢"`, `"1_000"`,
surrounding spaces), and a regular expression with `[0-9.]+` lets `1.2.3` through to a `float()` that fails. Every
number read from a spec or an environment variable goes through one of these two functions instead.
"""

from __future__ import annotations

import re

from sentflow.errors import SentflowError

_WHOLE = re.compile(r"[0-9]{1,18}")
_DECIMAL = re.compile(r"[0-9]{1,18}(\.[0-9]{1,18})?|\.[0-9]{1,18}")


def whole_number(text: str, what: str, low: int, high: int) -> int:
    """`text` as an int in [low, high]: one to 18 ASCII digits and nothing else, or a one-line error naming `what`."""
    if not isinstance(text, str) or _WHOLE.fullmatch(text) is None or not low <= int(text) <= high:
        raise SentflowError(f"{what}: {text!r:.40} is not a whole number from {low} to {high} (ASCII digits only)")
    return int(text)


def decimal_number(text: str, what: str, low: float, high: float) -> float:
    """`text` as a float in [low, high]: ASCII digits with at most one decimal point (no sign, exponent, `nan` or
    `inf`), or a one-line error naming `what`."""
    if not isinstance(text, str) or _DECIMAL.fullmatch(text) is None or not low <= float(text) <= high:
        raise SentflowError(f"{what}: {text!r:.40} is not a number from {low:g} to {high:g} (ASCII digits and '.')")
    return float(text)
