"""Optional dependencies: import one, or fail with one line naming the extra that installs it."""

from __future__ import annotations

import importlib
from types import ModuleType

from sentflow.errors import SentflowError

_PACKAGES = {
    "faiss": "faiss-cpu",
    "sentence_transformers": "sentence-transformers",
    "dask": "dask[array]",
    "distributed": "distributed",
    "onnxruntime": "onnxruntime",
    "onnx": "onnx",
    "mteb": "mteb",
    "chromadb": "chromadb",
    "langchain_core": "langchain-core",
}


def require(module: str, extra: str) -> ModuleType:
    """Import `module`, or raise a SentflowError telling how to install the `extra` that provides it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        package = _PACKAGES.get(module.split(".")[0], module)
        raise SentflowError(
            f"{package} is not installed; install it with: python3 -m pip install 'sentflow[{extra}]'"
        ) from None
