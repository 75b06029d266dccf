"""The encoder a model name stands for (`Encoder`, which picks its backend, GloVe's included, from the name)."""

from __future__ import annotations

from typing import Any

from sentflow.encoding.models import DEFAULT_MODEL, DEFAULT_POOLING
from sentflow.protocols import ModelEncoder


def make_encoder(model: str = DEFAULT_MODEL, pooling: str = DEFAULT_POOLING, **options: Any) -> ModelEncoder:
    """`Encoder(model, pooling, **options)`: for `glove-6b-50d` its backend averages GloVe word vectors.

    Args:
        model: `all-MiniLM-L6-v2` (embedded), `glove-6b-50d`, a local HuggingFace directory or a hub id.
        pooling: How token vectors become a sentence vector (see `Encoder`).
        **options: The other `Encoder` options (batch_size, max_length, backend, cache, ...).
    """
    from sentflow.encoding.encoder import Encoder

    return Encoder(model, pooling, **options)
