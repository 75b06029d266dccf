"""sentflow: make sentence embeddings isotropic (BERT-whitening, BERT-flow) for similarity and search."""

from sentflow._version import __version__
from sentflow.bertflow import BertFlow
from sentflow.calibration import Calibrator
from sentflow.encoder import Encoder
from sentflow.errors import SentflowError
from sentflow.evaluation import compare
from sentflow.index import build_index
from sentflow.pipeline import Pipeline, load
from sentflow.retrieval import RetrievalReport, evaluate_retrieval
from sentflow.retrieval_data import RetrievalTask, load_beir, load_retrieval_task
from sentflow.sts import StsPairs, cosine_scores, evaluate_sts, load_sts
from sentflow.tuning import tune
from sentflow.whitening import Whitening

__all__ = [
    "BertFlow",
    "Calibrator",
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
    "tune",
]
