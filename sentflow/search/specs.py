"""The grammar of compact-code specs (`binary`, `int8:99.9`, `itq:128`, `rabitq:128`, ...), read without numpy or
torch so that the command line can refuse a bad `--quantize` before any heavy import."""

from __future__ import annotations

import re

from sentflow.errors import SentflowError
from sentflow.files.schemas import MAX_DIM
from sentflow.parsing import decimal_number, whole_number

SPECS = "none, int8[:P], int4[:P], binary, itq:BITS, pca:BITS, rabitq or rabitq:BITS"
_SPEC = re.compile(r"^(none|binary|int8|int4|itq|pca|rabitq)(?::(.*))?$", re.DOTALL)  # the number: `sentflow.parsing`


def parse_spec(spec: object) -> tuple[str, float | None]:
    """(kind, its number or None) of a spec, or a one-line error naming what is wrong with it."""
    if not isinstance(spec, str):
        raise SentflowError(f"a quantizer spec is a string ({SPECS}), got {type(spec).__name__}")
    match = _SPEC.match(spec.strip().lower())
    if match is None:
        raise SentflowError(f"unknown quantizer {spec!r}; use {SPECS}")
    kind, arg = match.groups()
    if arg is None:
        if kind in ("itq", "pca"):
            raise SentflowError(f"{kind} needs a whole number of bits, e.g. {kind}:128, got {spec!r}")
        return kind, None
    if kind in ("none", "binary"):
        raise SentflowError(f"{kind} takes no parameter, got {spec!r}")
    if kind in ("int8", "int4"):
        return kind, decimal_number(arg, f"{kind}:P (a percentile)", 0, 100)
    return kind, whole_number(arg, f"{kind}:BITS", 1, MAX_DIM)
