"""Where the downloaded data sets are (STS12-16, SICK, BEIR folders, MNIST): one setting, `SENTFLOW_DATA`.

The tests, the eval scripts and the docs' examples all read it here. Unset, it is `../shared/data` beside a clone
of this repository (the benchmark machine's layout); a folder that is not there makes the tests that need it skip,
saying which path they looked for. Set, it must be a directory: a typo is an error, not a silent skip.
"""

from __future__ import annotations

import os
from pathlib import Path

from sentflow.errors import SentflowError

DATA_ENV = "SENTFLOW_DATA"
CLONE_DEFAULT = Path(__file__).resolve().parents[2] / "shared" / "data"  # <clone>/../shared/data


def data_root() -> Path:
    """$SENTFLOW_DATA (which must be a directory), else `../shared/data` beside the repository (present or not)."""
    raw = os.environ.get(DATA_ENV, "").strip()
    if not raw:
        return CLONE_DEFAULT
    root = Path(raw).expanduser()
    if not root.is_dir():
        raise SentflowError(f"{DATA_ENV}={raw!r} is not a directory: point it at the folder holding the data sets")
    return root


def data_path(*parts: str) -> Path:
    """A path under the data root, e.g. `data_path("beir", "scifact")`."""
    return data_root().joinpath(*parts)
