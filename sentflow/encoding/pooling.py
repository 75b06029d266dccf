"""Sentence vectors from a transformer's hidden states.

HF `hidden_states` has L+1 entries: index 0 is the embedding layer, index i the output of
transformer layer i. Token averages use the attention mask (padding never counts).

- `cls`: the first token of the last layer.
- `pooler`: the model's pooler output (BERT: tanh(W h_cls + b) on the last layer).
- `layers:I,J,...`: the masked token mean of each listed hidden state, then the mean over those
  layers. Indices may be negative (from the top: -1 is the last layer); `layers:0,-1` averages the
  embedding layer and the last layer. Each layer counts once, whatever the order it is listed in.
- `last-avg` = `layers:-1`, the masked mean of the last layer.
- `first-last-avg` = `layers:1,-1`: the first and the last *transformer* layers (not the embedding
  layer), as in the BERT-whitening code (its Transformer-0-FeedForward-Norm output) and the
  BERT-flow code. BERT-flow's paper calls this setting "last2avg": its code averages
  all_encoder_layers[0] and [-1] (the whitening paper points this out in a footnote), so the
  papers' "last2avg" numbers are sentflow's `first-last-avg`.
- `last2avg` = `layers:-2,-1`: what the name says, the mean of the last two transformer layers.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

import torch

from sentflow.errors import SentflowError

ALIASES = {"last-avg": (-1,), "first-last-avg": (1, -1), "last2avg": (-2, -1)}
_INDEX = re.compile(r"-?[0-9]{1,4}")  # ASCII digits only (int() also reads "1_0" and other scripts' digits)
POOLINGS = ("cls", "pooler", *ALIASES, "layers:I,J,...")


@dataclass(frozen=True)
class Pooling:
    """A parsed pooling: `kind` is cls, pooler or layers; `layers` the hidden-state indices as written."""

    name: str
    kind: str
    layers: tuple[int, ...] = ()

    @property
    def key(self) -> str:
        """What identifies the vectors (aliases and their `layers:` spelling share it)."""
        return f"{self.kind}:{','.join(map(str, self.layers))}"

    def hidden_states(self, n_hidden: int) -> tuple[int, ...]:
        """The sorted non-negative hidden-state indices this pooling reads, for a model with `n_hidden` of them."""
        if self.kind == "pooler":
            return ()
        if self.kind == "cls":
            return (n_hidden - 1,)
        resolved = []
        for index in self.layers:
            if not -n_hidden <= index < n_hidden:
                raise SentflowError(
                    f"pooling {self.name!r}: hidden-state index {index} is out of range for this model's "
                    f"{n_hidden} hidden states (use {-n_hidden}..{n_hidden - 1})"
                )
            resolved.append(index % n_hidden)
        if len(set(resolved)) != len(resolved):
            raise SentflowError(f"pooling {self.name!r}: a hidden state is listed twice; list each layer once")
        return tuple(sorted(resolved))


def parse_pooling(spec: str) -> Pooling:
    """Parse a pooling name or a `layers:I,J,...` spec; a mistake raises a one-line SentflowError."""
    if spec in ("cls", "pooler"):
        return Pooling(spec, spec)
    if spec in ALIASES:
        return Pooling(spec, "layers", ALIASES[spec])
    if not isinstance(spec, str) or not spec.startswith("layers:"):
        raise SentflowError(f"unknown pooling {spec!r}; choose one of {', '.join(POOLINGS)}")
    items = [item.strip() for item in spec[len("layers:") :].split(",")]
    if items == [""]:
        raise SentflowError(f"pooling {spec!r} lists no layer; give hidden-state indices, e.g. layers:1,-1")
    bad = [item for item in items if not _INDEX.fullmatch(item)]
    if bad:
        raise SentflowError(f"pooling {spec!r}: {bad[0]!r} is not a hidden-state index (a whole number, e.g. 1 or -1)")
    return Pooling(spec, "layers", tuple(int(item) for item in items))


def masked_mean(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over tokens where mask is 1: (B, T, H), (B, T) -> (B, H)."""
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * weights).sum(1) / weights.sum(1).clamp_min(1.0)


def pool(
    pooling: Pooling,
    hidden: Mapping[int, torch.Tensor],
    mask: torch.Tensor,
    n_hidden: int,
    pooler: torch.Tensor | None = None,
) -> torch.Tensor:
    """Apply `pooling` to the hidden states it reads (keyed by non-negative index) and the pooler output."""
    if pooling.kind == "pooler":
        if pooler is None:
            raise SentflowError("pooling 'pooler': this model has no pooler layer; use cls or last-avg")
        return pooler
    if pooling.kind == "cls":
        return hidden[n_hidden - 1][:, 0]
    means = [masked_mean(hidden[i], mask) for i in pooling.hidden_states(n_hidden)]
    return torch.stack(means).mean(0)
