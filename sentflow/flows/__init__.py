"""Trainable normalizing flows (NICE, RealNVP, Glow, i-ResNet, f-VAE); the layers also work on (N, D) vectors
for BERT-flow.

Layer contract: ``forward(x) -> (z, logdet)`` with logdet of shape (N,), ``inverse(z) -> x``; the channel
dimension is dim 1.  Bits/dim convention: see `sentflow.flows.base`.

A Glow-style flow on (N, D) sentence vectors (BERT-flow) composes the same layers with an MLP factory::

    net = MLP(hidden=256, depth=2)
    def steps(d, k):
        return [layer for _ in range(k) for layer in (ActNorm(d), InvConv(d), AffineCoupling(d, net))]
    flow = FlowSequential(*steps(D, 4), Split(D, FlowSequential(*steps(D // 2, 4)), net))
    z, logdet = flow(x)            # z has x's shape; log p(x) = StandardNormal().log_prob(z) + logdet
    x_back = flow.inverse(z)
"""

from sentflow.flows.actnorm import ActNorm, DiagonalScaling
from sentflow.flows.base import Flow, FlowModel, FlowSequential
from sentflow.flows.checkpoint import Checkpoint, load_checkpoint, read_checkpoint, save_checkpoint
from sentflow.flows.coupling import AdditiveCoupling, AffineCoupling, make_mask
from sentflow.flows.data import ImageData, load_data, load_digits_data, load_mnist, read_idx
from sentflow.flows.fvae import FVAE
from sentflow.flows.invconv import InvConv
from sentflow.flows.iresnet import IResNet, LogdetEstimator, ResidualBlock, SpectralConv
from sentflow.flows.models import MODELS, NICE, Glow, RealNVP, build_model
from sentflow.flows.nets import MLP, ConvNet, NetFactory
from sentflow.flows.preprocess import Dequantize, Logit
from sentflow.flows.priors import StandardLogistic, StandardNormal
from sentflow.flows.reshape import Flatten, Split, Squeeze, Unsqueeze
from sentflow.flows.train import TrainConfig, Trainer, TrainingDiverged, evaluate_bpd, seed_everything

__all__ = [
    "MLP", "MODELS", "NICE", "FVAE", "ActNorm", "AdditiveCoupling", "AffineCoupling", "Checkpoint", "ConvNet",
    "Dequantize", "DiagonalScaling", "Flatten", "Flow", "FlowModel", "FlowSequential", "Glow", "ImageData",
    "IResNet", "InvConv", "LogdetEstimator", "Logit", "NetFactory", "RealNVP", "ResidualBlock", "Split",
    "SpectralConv", "Squeeze", "StandardLogistic", "StandardNormal",
    "TrainConfig", "Trainer", "TrainingDiverged", "Unsqueeze", "build_model", "evaluate_bpd",
    "load_checkpoint", "load_data", "load_digits_data", "load_mnist", "make_mask", "read_checkpoint",
    "read_idx", "save_checkpoint", "seed_everything",
]
