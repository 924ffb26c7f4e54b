"""Sentiment label spaces and the 4→3 fold: the one definition every layer reads.

The heads predict four classes (``mixed`` is its own class, as in SENTIPOLC); the
API reports Azure-style positive/neutral/negative scores that sum to 1.  A mixed
text is evidence for both poles, so its probability is split evenly between them.
"""
from __future__ import annotations

from typing import Literal

import numpy as np
import numpy.typing as npt

SentimentLabel = Literal["positive", "neutral", "negative", "mixed"]
ThreeWayLabel = Literal["positive", "neutral", "negative"]

#: the 4-way heads' label order (a bundle whose sentiment head differs is refused)
SENTIMENT_LABELS: list[SentimentLabel] = ["positive", "neutral", "negative", "mixed"]
#: the reported 3-way label order
THREE_WAY_LABELS: list[ThreeWayLabel] = ["positive", "neutral", "negative"]

POS, NEU, NEG, MIX = range(4)


def fold_three_way(p4: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """``(..., 4)`` probabilities → ``(..., 3)`` positive/neutral/negative, renormalised to sum to 1."""
    p = np.asarray(p4, np.float64)
    out = np.stack([p[..., POS] + p[..., MIX] / 2, p[..., NEU], p[..., NEG] + p[..., MIX] / 2], axis=-1)
    total: npt.NDArray[np.float64] = out.sum(axis=-1, keepdims=True)
    folded: npt.NDArray[np.float64] = out / total
    return folded


def three_way_label(p4: npt.ArrayLike) -> ThreeWayLabel:
    """The 3-way label of one 4-way probability vector (ties go to the earlier label)."""
    return THREE_WAY_LABELS[int(np.argmax(fold_three_way(p4)))]
