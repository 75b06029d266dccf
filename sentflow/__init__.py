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
    from sentflow.evaluation.compare import compare
    from sentflow.evaluation.retrieval import RetrievalReport, evaluate_retrieval
    from sentflow.evaluation.retrieval_tasks import RetrievalTask, load_beir, load_retrieval_task
    from sentflow.evaluation.sts import StsPairs, cosine_scores, evaluate_sts, load_sts
    from sentflow.evaluation.tuning import tune
    from sentflow.pipeline import Pipeline, load
    from sentflow.search.compact import CompactIndex
    from sentflow.search.faiss_index import build_index
    from sentflow.search.quantize import make_quantizer

_LAZY = {  # public name -> the module that defines it
    "BertFlow": "sentflow.calibration.bertflow",
    "Calibrator": "sentflow.calibration.base",
    "CompactIndex": "sentflow.search.compact",
    "Encoder": "sentflow.encoding.encoder",
    "Pipeline": "sentflow.pipeline",
    "RetrievalReport": "sentflow.evaluation.retrieval",
    "RetrievalTask": "sentflow.evaluation.retrieval_tasks",
    "StsPairs": "sentflow.evaluation.sts",
    "Whitening": "sentflow.calibration.whitening",
    "build_index": "sentflow.search.faiss_index",
    "compare": "sentflow.evaluation.compare",
    "cosine_scores": "sentflow.evaluation.sts",
    "evaluate_retrieval": "sentflow.evaluation.retrieval",
    "evaluate_sts": "sentflow.evaluation.sts",
    "load": "sentflow.pipeline",
    "load_beir": "sentflow.evaluation.retrieval_tasks",
    "load_retrieval_task": "sentflow.evaluation.retrieval_tasks",
    "load_sts": "sentflow.evaluation.sts",
    "make_encoder": "sentflow.encoding.factory",
    "make_quantizer": "sentflow.search.quantize",
    "tune": "sentflow.evaluation.tuning",
}

__all__ = [
    "BertFlow",
    "Calibrator",
    "CompactIndex",
    "Encoder",
    "Pipeline",
    "RetrievalReport",
    "RetrievalTask",
    "SentflowError",
    "StsPairs",
    "Whitening",
    "__version__",
    "build_index",
    "compare",
    "cosine_scores",
    "evaluate_retrieval",
    "evaluate_sts",
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
