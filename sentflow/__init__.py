"""sentflow: make sentence embeddings isotropic (BERT-whitening, BERT-flow) for similarity and search.

The public names are imported on first use (PEP 562), so `import sentflow` and the command line's start-up do not
pay for torch, transformers and scikit-learn until something needs them.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from sentflow._version import __version__
from sentflow.errors import SentflowError

if TYPE_CHECKING:
    from sentflow.calibration.base import Calibrator
    from sentflow.calibration.bertflow import BertFlow
    from sentflow.calibration.whitening import Whitening
    from sentflow.encoding.encoder import Encoder
    from sentflow.encoding.factory import make_encoder
    from sentflow.evaluation.compare import StsReport, compare
    from sentflow.evaluation.retrieval import RetrievalReport, evaluate_retrieval
    from sentflow.evaluation.sts import cosine_scores, evaluate_sts
    from sentflow.evaluation.tuning import TuneReport, tune
    from sentflow.fitting import FitReport, fit
    from sentflow.pipeline import Pipeline, load
    from sentflow.search.compact import CompactIndex
    from sentflow.search.faiss_index import build_index
    from sentflow.search.quantize import make_quantizer
    from sentflow.tasks.retrieval import RetrievalTask, load_beir, load_retrieval_task
    from sentflow.tasks.sts import StsPairs, load_sts

_LAZY = {  # public name -> the module that defines it
    "BertFlow": "sentflow.calibration.bertflow",
    "Calibrator": "sentflow.calibration.base",
    "CompactIndex": "sentflow.search.compact",
    "Encoder": "sentflow.encoding.encoder",
    "FitReport": "sentflow.fitting",
    "Pipeline": "sentflow.pipeline",
    "RetrievalReport": "sentflow.evaluation.retrieval",
    "RetrievalTask": "sentflow.tasks.retrieval",
    "StsPairs": "sentflow.tasks.sts",
    "StsReport": "sentflow.evaluation.compare",
    "TuneReport": "sentflow.evaluation.tuning",
    "Whitening": "sentflow.calibration.whitening",
    "build_index": "sentflow.search.faiss_index",
    "compare": "sentflow.evaluation.compare",
    "cosine_scores": "sentflow.evaluation.sts",
    "evaluate_retrieval": "sentflow.evaluation.retrieval",
    "evaluate_sts": "sentflow.evaluation.sts",
    "fit": "sentflow.fitting",
    "load": "sentflow.pipeline",
    "load_beir": "sentflow.tasks.retrieval",
    "load_retrieval_task": "sentflow.tasks.retrieval",
    "load_sts": "sentflow.tasks.sts",
    "make_encoder": "sentflow.encoding.factory",
    "make_quantizer": "sentflow.search.quantize",
    "tune": "sentflow.evaluation.tuning",
}

__all__ = [
    "BertFlow",
    "Calibrator",
    "CompactIndex",
    "Encoder",
    "FitReport",
    "Pipeline",
    "RetrievalReport",
    "RetrievalTask",
    "SentflowError",
    "StsPairs",
    "StsReport",
    "TuneReport",
    "Whitening",
    "__version__",
    "build_index",
    "compare",
    "cosine_scores",
    "evaluate_retrieval",
    "evaluate_sts",
    "fit",
    "load",
    "load_beir",
    "load_retrieval_task",
    "load_sts",
    "make_encoder",
    "make_quantizer",
    "tune",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(import_module(_LAZY[name]), name)
        globals()[name] = value  # later look-ups skip this function
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
