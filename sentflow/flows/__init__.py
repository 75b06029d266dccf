"""Normalizing flows in two tiers.

**Layers** (imported by BERT-flow and the image models alike; no training, data or checkpoints): `base` (the
layer contract, `FlowSequential`, `LogdetEstimator`), `actnorm`, `invconv`, `coupling`, `reshape`,
`preprocess`, `nets`, `priors`.  **Training**: `train`, the one loop every flow is fitted with.  **Image
models** on top: `models` (NICE, RealNVP, Glow and the registry), `iresnet`, `fvae`, `data`, `checkpoint`,
`grid`.  Names are loaded from their module on first use, so importing a layer (or `sentflow`) does not load
the image models.

Layer contract: ``forward(x, context=None, estimator=None) -> (z, logdet)`` with logdet of shape (N,),
``inverse(z, context=None) -> x``; the channel dimension is dim 1.  Bits/dim convention: see
`sentflow.flows.base`.

A Glow-style flow on (N, D) sentence vectors (BERT-flow) composes the same layers with an MLP factory::

    net = MLP(hidden=256, depth=2)
    def steps(d, k):
        return [layer for _ in range(k) for layer in (ActNorm(d), InvConv(d), AffineCoupling(d, net))]
    flow = FlowSequential(*steps(D, 4), Split(D, FlowSequential(*steps(D // 2, 4)), net))
    z, logdet = flow(x)            # z has x's shape; log p(x) = StandardNormal().log_prob(z) + logdet
    x_back = flow.inverse(z)
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

MODEL_NAMES = ("nice", "realnvp", "glow", "iresnet", "fvae")  # the keys of `models.MODELS`, known without torch
CHECKPOINT_NAME = "checkpoint.safetensors"  # what a training run writes in its directory

_MODULES = {
    "actnorm": ["ActNorm", "DiagonalScaling"],
    "base": ["Flow", "FlowModel", "FlowSequential", "LogdetEstimator", "log_density"],
    "checkpoint": ["Checkpoint", "load_checkpoint", "read_checkpoint", "save_checkpoint"],
    "coupling": ["AdditiveCoupling", "AffineCoupling", "make_mask"],
    "data": ["ImageData", "load_data", "load_digits_data", "load_mnist", "read_idx"],
    "fvae": ["FVAE"],
    "invconv": ["InvConv"],
    "iresnet": ["IResNet", "ResidualBlock", "SpectralConv"],
    "models": ["MODELS", "NICE", "Glow", "RealNVP", "build_model"],
    "nets": ["MLP", "ConvNet", "NetFactory"],
    "preprocess": ["Dequantize", "Logit"],
    "priors": ["StandardLogistic", "StandardNormal"],
    "recipe": ["TrainedFlow", "train_image_flow"],
    "reshape": ["Flatten", "Split", "Squeeze", "Unsqueeze"],
    "train": ["TrainConfig", "Trainer", "TrainingDiverged", "evaluate_bpd", "seed_everything"],
}
_WHERE = {name: module for module, names in _MODULES.items() for name in names}
__all__ = sorted([*_WHERE, "CHECKPOINT_NAME", "MODEL_NAMES"])


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f"{__name__}.{_WHERE[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
