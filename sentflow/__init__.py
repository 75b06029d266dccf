"""sentflow: make sentence embeddings isotropic (BERT-whitening, BERT-flow) for similarity and search."""

from sentflow._version import __version__
from sentflow.calibration.base import Calibrator
from sentflow.calibration.bertflow import BertFlow
from sentflow.calibration.whitening import Whitening
from sentflow.encoding.encoder import Encoder
from sentflow.encoding.factory import make_encoder
from sentflow.errors import SentflowError
from sentflow.evaluation.compare import compare
from sentflow.evaluation.retrieval import RetrievalReport, evaluate_retrieval
from sentflow.evaluation.retrieval_tasks import RetrievalTask, load_beir, load_retrieval_task
from sentflow.evaluation.sts import StsPairs, cosine_scores, evaluate_sts, load_sts
from sentflow.evaluation.tuning import tune
from sentflow.pipeline import Pipeline, load
from sentflow.search.compact import CompactIndex
from sentflow.search.faiss_index import build_index
from sentflow.search.quantize import make_quantizer

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
