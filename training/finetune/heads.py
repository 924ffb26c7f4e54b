"""The training-only task heads and their masked losses.

They exist to shape the encoder and are dropped after the run: ``voce train`` then fits the calibrated LR heads
the bundle ships on the tuned embeddings, so the bundle format does not change.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from voce.data.datasets import SENTIMENTS


class TaskHeads(nn.Module):
    """Training-only heads over the scaled, L2-normalised mean-pooled embedding.

    Normalising first makes the heads see what serving's LR heads will see (unit
    vectors); the learnable scale keeps their logits from being squashed.
    """

    def __init__(self, dim: int, n_topics: int, logit_scale: float) -> None:
        super().__init__()
        self.log_scale = nn.Parameter(torch.tensor(math.log(logit_scale)))
        self.sentiment = nn.Linear(dim, len(SENTIMENTS))
        self.topics = nn.Linear(dim, n_topics)
        # one 4-way polarity block per topic: (T, 4, D) weights, (T, 4) biases
        self.polarity_weight = nn.Parameter(torch.randn(n_topics, len(SENTIMENTS), dim) * 0.02)
        self.polarity_bias = nn.Parameter(torch.zeros(n_topics, len(SENTIMENTS)))
        self.detractor = nn.Linear(dim, 1)

    def forward(self, pooled: torch.Tensor) -> dict[str, torch.Tensor]:
        z = F.normalize(pooled.float(), dim=-1) * self.log_scale.exp()
        return {
            "sentiment": self.sentiment(z),
            "topics": self.topics(z),
            "polarity": torch.einsum("bd,tkd->btk", z, self.polarity_weight) + self.polarity_bias,
            "detractor": self.detractor(z).squeeze(-1),
        }



def task_losses(out: dict[str, torch.Tensor], tgt: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Masked per-task losses; a task without labels in the batch contributes an exact zero."""
    zero = out["sentiment"].sum() * 0.0
    losses: dict[str, torch.Tensor] = {}
    s = tgt["sentiment"]
    losses["sentiment"] = F.cross_entropy(out["sentiment"], s, ignore_index=-1) if (s >= 0).any() else zero
    m = tgt["topic_mask"]
    if m.any():
        bce = F.binary_cross_entropy_with_logits(out["topics"], tgt["topics"], reduction="none")
        losses["topics"] = bce[m].mean()
    else:
        losses["topics"] = zero
    p = tgt["polarity"]
    losses["polarity"] = (
        F.cross_entropy(out["polarity"].reshape(-1, len(SENTIMENTS)), p.reshape(-1), ignore_index=-1)
        if (p >= 0).any()
        else zero
    )
    d = tgt["detractor_mask"]
    losses["detractor"] = (
        F.binary_cross_entropy_with_logits(out["detractor"][d], tgt["detractor"][d]) if d.any() else zero
    )
    return losses

