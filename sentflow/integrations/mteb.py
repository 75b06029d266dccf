"""MTEB: any sentflow pipeline or encoder as an mteb model, and offline mteb tasks built from local data.

`MtebModel(pipeline)` follows mteb's encoder protocol (`encode` over mteb's data loader, `similarity`,
`mteb_model_meta`); `beir_task(folder)` is a retrieval task read from a BEIR folder and `stsb_task()` is
STSBenchmark from the STS-B copy shipped with sentflow, so `evaluate(model, tasks)` runs mteb's own evaluator
without downloading anything.
"""

from __future__ import annotations

import copy
import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sentflow._version import __version__
from sentflow.errors import SentflowError
from sentflow.extras import require
from sentflow.protocols import TextEncoder, conforms
from sentflow.tasks.retrieval import load_beir
from sentflow.tasks.sts import load_sts

mteb = require("mteb", "mteb")
datasets = require("datasets", "mteb")

from mteb.abstasks.retrieval import AbsTaskRetrieval  # noqa: E402  (after the one-line error for a missing extra)
from mteb.abstasks.sts import AbsTaskSTS  # noqa: E402
from mteb.abstasks.task_metadata import TaskMetadata  # noqa: E402
from mteb.models.abs_encoder import AbsEncoder  # noqa: E402
from mteb.models.model_meta import ModelMeta, ScoringFunction  # noqa: E402

SIMILARITIES = ("cosine", "dot")
_TASK_FIELDS: dict[str, Any] = {
    "category": "t2t",
    "modalities": ["text"],
    "eval_langs": ["eng-Latn"],
    "dialect": [],
    "sample_creation": "found",
}


class MtebModel(AbsEncoder):
    """A sentflow `Pipeline` or `Encoder` behind mteb's encoder protocol.

    Args:
        model: anything with `encode(list[str]) -> (n, dim) array` and `dim`: a Pipeline (encoder, calibration,
            normalisation) or a bare Encoder.
        name: the model name in mteb's results, "organisation/model" (default: "sentflow/" + the encoder's model
            name + the calibration method and dimension).
        similarity: "cosine" (sentflow's comparison) or "dot".
    """

    def __init__(self, model, name: str | None = None, similarity: str = "cosine") -> None:
        if similarity not in SIMILARITIES:
            raise SentflowError(f"unknown similarity {similarity!r}; choose one of {', '.join(SIMILARITIES)}")
        if not conforms(model, TextEncoder):
            raise SentflowError(f"MtebModel expects a sentflow Pipeline or Encoder, got {type(model).__name__}")
        self.model = model
        self.mteb_model_meta = model_meta(model, name or default_name(model), similarity)

    def encode(self, inputs, *, task_metadata=None, hf_split=None, hf_subset=None, prompt_type=None, **kwargs):
        """(n, dim) float32 vectors of every text in `inputs` (mteb's DataLoader of batches, or a list of
        strings), encoded in one call so sentflow sorts them by length and caches them; prompts are not used."""
        return np.asarray(self.model.encode(texts_of(inputs)), dtype=np.float32)


def texts_of(inputs) -> list[str]:
    """The texts of mteb's batches ({"text": [...]}, in order) or of a plain sequence of strings."""
    if isinstance(inputs, str):
        raise SentflowError("encode expects a list of strings or mteb's DataLoader, got one string")
    if isinstance(inputs, Sequence) and all(isinstance(text, str) for text in inputs):
        return list(inputs)
    texts: list[str] = []
    for batch in inputs:
        if not isinstance(batch, dict) or "text" not in batch:
            raise SentflowError("MtebModel encodes text only: each mteb batch needs a 'text' field")
        texts.extend(batch["text"])
    return texts


def default_name(model) -> str:
    """"sentflow/MODEL[-METHOD-DIM]": the encoder's model name, and the calibration when there is one."""
    encoder = getattr(model, "encoder", model)
    name = Path(str(encoder.model_name)).name
    calibration = getattr(model, "calibration", None)
    if calibration is not None:
        name += f"-{calibration.method}-{model.dim}"
    return f"sentflow/{name}"


def model_meta(model, name: str, similarity: str = "cosine") -> ModelMeta:
    """mteb's description of a sentflow model: name, embedding size, similarity, maximum tokens."""
    if "/" not in name:
        raise SentflowError(f"mteb model names are 'organisation/model', got {name!r}")
    encoder = getattr(model, "encoder", model)
    backend = str(getattr(encoder, "backend", "torch"))
    return ModelMeta(
        loader=None,
        name=name,
        revision=__version__,
        release_date=None,
        languages=None,
        n_parameters=None,
        memory_usage_mb=None,
        max_tokens=float(getattr(encoder, "max_length", 0)) or None,
        embed_dim=int(model.dim),
        license=None,
        open_weights=None,
        public_training_code=None,
        public_training_data=None,
        framework=["PyTorch" if backend == "torch" else "ONNX"],
        similarity_fn_name=ScoringFunction(similarity),
        use_instructions=False,
        training_datasets=None,
        adapted_from=str(encoder.model_name),
    )


class _LocalData:
    """Mixed into an mteb task class: the data is given when the task is made, never downloaded."""

    metadata: TaskMetadata  # set by the mteb task class it is mixed into

    def __init__(self, data) -> None:
        super().__init__()
        self._local_data = data

    def load_data(self, num_proc: int | None = None, **kwargs) -> None:
        """Nothing to download: a fresh copy of the data read when the task was made."""
        self.dataset = {"default": {self.metadata.eval_splits[0]: copy.copy(self._local_data)}}
        self.data_loaded = True


def _local_task(base: type, metadata: TaskMetadata, data):
    """An instance of a new subclass of `base` (mteb reads a task's metadata from its class) holding `data`."""
    name = "".join(part.capitalize() for part in re.split(r"[^0-9A-Za-z]+", metadata.name)) or "Local"
    cls = type(f"{name}{base.__name__.removeprefix('AbsTask')}", (_LocalData, base), {"metadata": metadata})
    return cls(data)


def beir_task(folder: str | os.PathLike, split: str = "test", name: str | None = None) -> AbsTaskRetrieval:
    """An mteb retrieval task (main score nDCG@10) from a local BEIR folder, read with `sentflow.load_beir`.

    Documents are title + " " + text as in BEIR and MTEB; nothing is downloaded.

    Args:
        folder: The BEIR folder (`corpus.jsonl`, `queries.jsonl`, `qrels/SPLIT.tsv`).
        split: The qrels file, and the split mteb evaluates.
        name: The task's name in mteb's results (None: the folder's name).

    Returns:
        The task, ready for `evaluate` or `mteb.evaluate`.
    """
    task = load_beir(folder, split)
    corpus = datasets.Dataset.from_dict(
        {"id": task.corpus_ids, "text": task.corpus_texts, "title": [""] * len(task.corpus_ids)}
    )
    queries = datasets.Dataset.from_dict({"id": task.query_ids, "text": task.query_texts})
    metadata = _metadata(
        name or task.name, split, "Retrieval", "ndcg_at_10", f"BEIR folder {Path(folder).resolve()}"
    )
    data = {"corpus": corpus, "queries": queries, "relevant_docs": task.qrels, "top_ranked": None}
    return _local_task(AbsTaskRetrieval, metadata, data)


def stsb_task(split: str = "test", data_dir: str | os.PathLike | None = None) -> AbsTaskSTS:
    """mteb's STSBenchmark (main score cosine Spearman) from `sentflow.load_sts("sts-b", split)`.

    Args:
        split: `train`, `dev` or `test`.
        data_dir: A folder holding other STS-B files (None: the copy shipped with sentflow).

    Returns:
        The task, ready for `evaluate` or `mteb.evaluate`; nothing is downloaded.
    """
    pairs = load_sts("sts-b", split, data_dir)
    data = datasets.Dataset.from_dict(
        {"sentence1": pairs.sentences1, "sentence2": pairs.sentences2, "score": pairs.scores.tolist()}
    )
    source = f"STS-B files in {Path(data_dir).resolve()}" if data_dir else "STS-B shipped with sentflow"
    metadata = _metadata("STSBenchmark", split, "STS", "cosine_spearman", source)
    return _local_task(AbsTaskSTS, metadata, data)


def _metadata(name: str, split: str, kind: Any, main_score: str, source: str) -> TaskMetadata:
    return TaskMetadata(
        name=name,
        description=f"{name} read from local files ({source}); nothing is downloaded.",
        dataset={"path": f"local/{name}", "revision": "local"},
        type=kind,
        eval_splits=[split],
        main_score=main_score,
        **_TASK_FIELDS,
    )


def evaluate(model, tasks: Iterable[AbsTaskRetrieval | AbsTaskSTS], **options) -> dict[str, float]:
    """Run `mteb.evaluate` (no result cache unless `cache=` is given, no progress bar unless asked).

    Args:
        model: An `MtebModel`, or a `Pipeline` or `Encoder` to wrap in one.
        tasks: mteb tasks, e.g. from `beir_task` and `stsb_task`.
        **options: Other `mteb.evaluate` options.

    Returns:
        Each task's main score x100 on its split, by task name.
    """
    model = model if isinstance(model, MtebModel) else MtebModel(model)
    options = {"cache": None, "show_progress_bar": False, **options}
    result = mteb.evaluate(model, list(tasks), **options)
    return {task.task_name: 100.0 * float(task.get_score()) for task in result.task_results}
