"""Chroma: a sentflow pipeline as a collection's embedding function, so the collection stores calibrated (and,
with a cut calibration, shorter) vectors and embeds its queries the same way.

Use the cosine space (`configuration={"hnsw": {"space": "cosine"}}`, the function's default) or, for an
L2-normalised pipeline, "ip". A function made from a saved pipeline directory records that directory in the
collection's configuration, so `client.get_collection(name)` rebuilds it without being passed it again.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from sentflow.errors import SentflowError
from sentflow.extras import require
from sentflow.pipeline import Pipeline, load_pipeline

require("chromadb", "chroma")

from chromadb.api.types import Documents, EmbeddingFunction, Embeddings, Space  # noqa: E402  (after the extra check)
from chromadb.utils.embedding_functions import register_embedding_function  # noqa: E402

NAME = "sentflow"


@register_embedding_function
class ChromaEmbeddingFunction(EmbeddingFunction[Documents]):
    """Chroma's embedding-function protocol over a sentflow pipeline (encoder, calibration, normalisation).

    Args:
        pipeline: a `sentflow.Pipeline`, or the directory of a saved one (then the collection's configuration
            records it and Chroma can rebuild this function from it).
    """

    def __init__(self, pipeline: Pipeline | str | os.PathLike) -> None:
        if isinstance(pipeline, Pipeline):
            self.pipeline, self.directory = pipeline, None
        elif isinstance(pipeline, (str, os.PathLike)):
            self.directory = Path(pipeline).resolve()
            self.pipeline = load_pipeline(self.directory)
        else:
            raise SentflowError(f"expected a sentflow Pipeline or its directory, got {type(pipeline).__name__}")

    def __call__(self, input: Documents) -> Embeddings:
        """The pipeline's float32 vector of each document, as Chroma's list of 1-d arrays."""
        if isinstance(input, str):  # list() would split it into characters
            raise SentflowError("Chroma passes a list of documents, got one string: wrap it in a list")
        return list(np.asarray(self.pipeline.encode(list(input)), dtype=np.float32))

    @staticmethod
    def name() -> str:
        """The name Chroma records in a collection's configuration."""
        return NAME

    def default_space(self) -> Space:
        """Cosine: how sentflow compares its vectors."""
        return "cosine"

    def supported_spaces(self) -> list[Space]:
        """Every space Chroma offers; "ip" equals cosine only for an L2-normalised pipeline."""
        return ["cosine", "ip", "l2"]

    def get_config(self) -> dict[str, Any]:
        """{"pipeline": the saved pipeline directory, or None for a pipeline only in memory}."""
        return {"pipeline": str(self.directory) if self.directory is not None else None}

    @staticmethod
    def build_from_config(config: dict[str, Any]) -> ChromaEmbeddingFunction:
        """The function again from its recorded configuration (needs a saved pipeline directory)."""
        directory = config.get("pipeline")
        if not isinstance(directory, str):
            raise SentflowError(
                "this collection's sentflow pipeline was not saved to a directory: pass "
                "embedding_function=ChromaEmbeddingFunction(pipeline) when getting the collection"
            )
        return ChromaEmbeddingFunction(directory)
