"""sentflow: make sentence embeddings isotropic (BERT-whitening, BERT-flow) for similarity and search."""

from sentflow._version import __version__
from sentflow.bertflow import BertFlow
from sentflow.calibration import Calibrator
from sentflow.encoder import Encoder
from sentflow.errors import SentflowError
from sentflow.evaluation import compare
from sentflow.pipeline import Pipeline, load
from sentflow.sts import StsPairs, cosine_scores, evaluate_sts, load_sts
from sentflow.whitening import Whitening

__all__ = [
    "BertFlow",
    "Calibrator",
    "Encoder",
    "Pipeline",
    "SentflowError",
    "StsPairs",
    "Whitening",
    "__version__",
    "compare",
    "cosine_scores",
    "evaluate_sts",
    "load",
    "load_sts",
]
