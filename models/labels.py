"""Sentiment label spaces and the 4→3 fold: the one definition every layer reads.

The heads predict four classes (``mixed`` is its own class, as in SENTIPOLC); the
API reports Azure-style positive/neutral/negative scores that sum to 1.  A mixed
text is evidence for both poles, so its probability is split evenly between them.
"""
from __future__ import annotations

from dataclasses import dataclass
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


@dataclass(frozen=True)
class MixedRule:
    """When a document is called ``mixed`` (its 3-way scores do not depend on this rule).

    Two paths lead to ``mixed``: the document's own 4-way probabilities, whose mixed class gets ``bias`` added to
    its log-odds before the argmax (a prior correction: a head trained on sentences where any positive and any
    negative aspect made the sentence mixed over-calls it on whole reviews); and the sentences, when one sentence
    is clearly positive and another clearly negative (folded probability at least ``sentence_threshold``) and the
    weaker pole still has at least ``minor_share`` of the whole document's folded probability (a five-star review
    with one minor caveat stays positive).  The defaults reproduce the behaviour before calibration; a bundle
    stores the values fitted on real reviews (``training/calibrate_decisions.py``).
    """

    bias: float = 0.0
    sentence_threshold: float | None = 0.6
    minor_share: float = 0.0

    def label(self, doc_p4: npt.ArrayLike, sentence_p4: list[npt.ArrayLike] | None = None) -> SentimentLabel:
        p = np.clip(np.asarray(doc_p4, np.float64), 1e-9, 1.0)
        z = np.log(p)
        z[MIX] += self.bias
        label = SENTIMENT_LABELS[int(np.argmax(z))]
        if label in ("mixed", "neutral") or self.sentence_threshold is None or not sentence_p4 or len(sentence_p4) < 2:
            return label
        thr = self.sentence_threshold
        three = [fold_three_way(x) for x in sentence_p4]
        if any(t[0] >= thr for t in three) and any(t[2] >= thr for t in three):
            doc3 = fold_three_way(p)
            if min(doc3[0], doc3[2]) >= self.minor_share:
                return "mixed"
        return label

    def config(self) -> dict[str, float | None]:
        return {"bias": self.bias, "sentence_threshold": self.sentence_threshold, "minor_share": self.minor_share}

    @classmethod
    def from_config(cls, config: dict[str, float | None] | None) -> MixedRule:
        """The rule a bundle stored (None or {}: the defaults)."""
        config = config or {}
        thr = config.get("sentence_threshold", 0.6)
        return cls(
            bias=float(config.get("bias") or 0.0),
            sentence_threshold=None if thr is None else float(thr),
            minor_share=float(config.get("minor_share") or 0.0),
        )
