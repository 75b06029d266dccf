"""LangChain: a sentflow pipeline (or encoder) as a `langchain_core.embeddings.Embeddings`, for any LangChain
vector store or retriever."""

from __future__ import annotations

import numpy as np

from sentflow.errors import SentflowError
from sentflow.extras import require
from sentflow.protocols import TextEncoder, conforms

require("langchain_core", "langchain")

from langchain_core.embeddings import Embeddings  # noqa: E402  (after the extra check)


class LangchainEmbeddings(Embeddings):
    """LangChain's `Embeddings` interface over a sentflow Pipeline (encoder, calibration, normalisation) or Encoder.

    Documents and queries are embedded the same way (sentflow pipelines are symmetric).

    Args:
        pipeline: anything with `encode(list[str]) -> (n, dim) array`: a `sentflow.Pipeline` or `sentflow.Encoder`.
    """

    def __init__(self, pipeline) -> None:
        if not conforms(pipeline, TextEncoder):
            raise SentflowError(f"expected a sentflow Pipeline or Encoder, got {type(pipeline).__name__}")
        self.pipeline = pipeline

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        """One vector (a list of floats) per text, in order."""
        texts = list(texts)
        if not texts:
            return []
        return np.asarray(self.pipeline.encode(texts), dtype=np.float64).tolist()

    def embed_query(self, text: str) -> list[float]:
        """The vector of one query text."""
        if not isinstance(text, str):
            raise SentflowError(f"embed_query expects one string, got {type(text).__name__}")
        return self.embed_documents([text])[0]
