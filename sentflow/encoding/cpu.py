"""What the CPU offers sentflow's backends, and the switch that makes any x86-64 CPU act as an AVX2-only one.

`SENTFLOW_CPU=avx2` makes every capability check of sentflow answer as on a CPU without AVX-512, bf16, VNNI or AMX
(an AMD Zen 3, an older Intel): `openvino-bf16` is refused, `backend="auto"` picks the AVX2 choice, the tests that
need those instructions skip. It changes only sentflow's own checks; torch reads its own variable before it loads, so
the full mode is the two together (`AVX2_ENV`):

    SENTFLOW_CPU=avx2 ATEN_CPU_CAPABILITY=avx2 python -m pytest ...

`ONEDNN_MAX_CPU_ISA=AVX2` is left out on purpose: OpenVINO's CPU plugin reads it too, yet still picks its kernels by
its own detection of the CPU, and on an AVX-512 CPU its int8 layers then fail to build ("could not create a
primitive descriptor"), an error no real AVX2 CPU gives.

Unset (or `native`), the checks read the CPU: its flags from /proc/cpuinfo on Linux, OpenVINO's own list where
OpenVINO is asked. Nothing here runs at import.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

from sentflow.errors import SentflowError

CPU_ENV = "SENTFLOW_CPU"
MODES = ("native", "avx2")
AVX2_ENV = {CPU_ENV: "avx2", "ATEN_CPU_CAPABILITY": "avx2"}  # the whole no-bf16 mode
BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})
BEYOND_AVX2 = ("avx512", "amx", "avx_vnni")  # flag prefixes the avx2 mode hides
HIDDEN_BY_AVX2 = frozenset({"BF16", "FP16"})  # OpenVINO OPTIMIZATION_CAPABILITIES an AVX2 CPU does not list


def cpu_mode() -> str:
    """$SENTFLOW_CPU: `native` (unset or blank) or `avx2`; any other value is refused with one line."""
    raw = os.environ.get(CPU_ENV, "").strip().lower() or "native"
    if raw not in MODES:
        raise SentflowError(f"{CPU_ENV}={raw!r} is not a CPU mode: use one of {', '.join(MODES)} (or leave it unset)")
    return raw


@lru_cache(maxsize=1)
def _native_flags() -> frozenset[str]:
    """The CPU's feature flags from /proc/cpuinfo (empty where there is none: not Linux, or not x86)."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return frozenset()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags":
            return frozenset(value.split())
    return frozenset()


def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags as sentflow sees them: under SENTFLOW_CPU=avx2, none beyond AVX2."""
    flags = _native_flags()
    if cpu_mode() == "avx2":
        return frozenset(f for f in flags if not f.startswith(BEYOND_AVX2))
    return flags


def has_bf16() -> bool:
    """Whether the CPU computes in bfloat16 (AVX512_BF16 or AMX)."""
    return bool(cpu_flags() & BF16_FLAGS)


def openvino_capabilities(reported: list[str]) -> list[str]:
    """OpenVINO's OPTIMIZATION_CAPABILITIES for the CPU, less what the avx2 mode hides."""
    if cpu_mode() == "avx2":
        return [c for c in reported if c not in HIDDEN_BY_AVX2]
    return list(reported)
