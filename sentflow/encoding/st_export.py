"""Export a pipeline as a standard sentence-transformers model directory (Transformer, Pooling, Dense, Normalize).

The directory is written by sentence-transformers itself, so `SentenceTransformer(path)` loads it in a process that
never imports sentflow. The whitening becomes one Dense layer: y = x W + b with b = -mean W.
"""

from __future__ import annotations

from pathlib import Path

import torch

from sentflow.encoding.models import resolve_model
from sentflow.errors import SentflowError
from sentflow.extras import require
from sentflow.files.io import atomic_directory
from sentflow.protocols import Calibration, LinearMap, ModelEncoder

_ST_POOLING = {
    "cls": "cls",
    "last-avg": "mean",
    "layers:-1": "mean",
}  # what sentence-transformers' Pooling computes on the last layer


def st_pooling_mode(pooling: str) -> str:
    """sentence-transformers' pooling mode for a sentflow pooling, or a one-line reason why there is none."""
    mode = _ST_POOLING.get(pooling.replace(" ", ""))
    if mode is None:
        raise SentflowError(
            f"pooling {pooling!r} cannot be exported: sentence-transformers' Pooling reads only the last layer "
            "(cls or mean); use pooling 'cls' or 'last-avg'"
        )
    return mode


def dense_parameters(calibration: Calibration | None) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(weight (k, d), bias (k,)) of the linear map, or None without calibration; refuses non-linear maps."""
    if calibration is None:
        return None
    if not isinstance(calibration, LinearMap):
        raise SentflowError(
            f"a {calibration.method} calibration is not linear, so no Dense layer can hold it; export a whitening "
            "pipeline, or serve Pipeline.encode"
        )
    weight, bias = calibration.linear_map()
    return torch.tensor(weight.T, dtype=torch.float32), torch.tensor(bias, dtype=torch.float32)


def export_sentence_transformer(
    encoder: ModelEncoder, calibration: Calibration | None, normalize: bool, directory: Path
) -> Path:
    """Build the SentenceTransformer equivalent to encoder -> calibration -> (normalize) and save it to `directory`
    (atomically: staged, then renamed)."""
    require("sentence_transformers", "st")
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer import modules

    mode = st_pooling_mode(encoder.pooling)
    dense = dense_parameters(calibration)
    source = resolve_model(encoder.model_name)
    transformer = modules.Transformer(source, max_seq_length=encoder.max_length)
    dim = transformer.get_embedding_dimension()
    stack = [transformer, modules.Pooling(dim, pooling_mode=mode)]
    if dense is not None:
        weight, bias = dense
        stack.append(
            modules.Dense(dim, len(bias), activation_function=torch.nn.Identity(), init_weight=weight, init_bias=bias)
        )
    if normalize:
        stack.append(modules.Normalize())
    model = SentenceTransformer(modules=stack, device="cpu")
    local_model = [Path(source)] if Path(source).is_dir() else []  # never exported into, over or around
    with atomic_directory(directory, marker="modules.json", inputs=local_model) as staging:
        model.save(str(staging))
    return directory
