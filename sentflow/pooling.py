"""Sentence vectors from a transformer's hidden states.

HF `hidden_states` has L+1 entries: index 0 is the embedding layer, index i the output of
transformer layer i. Token averages use the attention mask (padding never counts).

- `cls`: the first token of the last layer.
- `pooler`: the model's pooler output (BERT: tanh(W h_cls + b) on the last layer).
- `last-avg`: masked mean of the last layer, hidden_states[-1].
- `first-last-avg`: mean of hidden_states[1] and hidden_states[-1], the first and the last
  *transformer* layers (not the embedding layer), as in the BERT-whitening code (its
  Transformer-0-FeedForward-Norm output) and the BERT-flow code. BERT-flow's paper calls this
  setting "last2avg": its code averages all_encoder_layers[0] and [-1] (the whitening paper points
  this out in a footnote), so the papers' "last2avg" numbers are sentflow's `first-last-avg`.
- `last2avg`: what the name says, the mean of the last two transformer layers,
  hidden_states[-2] and hidden_states[-1].
"""

from __future__ import annotations

import torch

from sentflow.errors import SentflowError

POOLINGS = ("cls", "pooler", "last-avg", "first-last-avg", "last2avg")
_LAYERS = {"last-avg": (-1,), "first-last-avg": (1, -1), "last2avg": (-2, -1)}


def needs_hidden_states(pooling: str) -> bool:
    """Whether a pooling reads intermediate layers (so the model must return them)."""
    return pooling in ("first-last-avg", "last2avg")


def masked_mean(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over tokens where mask is 1: (B, T, H), (B, T) -> (B, H)."""
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * weights).sum(1) / weights.sum(1).clamp_min(1.0)


def pool(outputs, mask: torch.Tensor, pooling: str) -> torch.Tensor:
    """Apply `pooling` to a HF model output (with hidden_states when `needs_hidden_states`)."""
    if pooling == "cls":
        return outputs.last_hidden_state[:, 0]
    if pooling == "pooler":
        pooled = getattr(outputs, "pooler_output", None)
        if pooled is None:
            raise SentflowError("pooling 'pooler': this model has no pooler layer; use cls or last-avg")
        return pooled
    if pooling == "last-avg":
        return masked_mean(outputs.last_hidden_state, mask)
    if pooling in _LAYERS:
        layers = [outputs.hidden_states[i] for i in _LAYERS[pooling]]
        return masked_mean(torch.stack(layers).mean(0), mask)
    raise SentflowError(f"unknown pooling {pooling!r}; choose one of {', '.join(POOLINGS)}")
