"""Quick dev metrics of the training heads, once per epoch.

A proxy only: the numbers that count are the calibrated LR heads' in ``voce train``.  Plain numpy (no
scikit-learn needed where the GPU is), with sklearn's definitions.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from voce.training.finetune.targets import TaskTargets

#: the headline metrics, rounded to 4 places in the log
HEADLINE = ("sentiment_macro_f1", "topic_micro_f1", "topic_polarity_accuracy", "detractor_f1")


def macro_f1(y: npt.NDArray[np.int64], pred: npt.NDArray[np.int64]) -> float:
    """Macro-F1 over the classes present in gold or prediction (sklearn's default)."""
    classes = np.union1d(y, pred)
    f1s = []
    for c in classes:
        tp = float(((pred == c) & (y == c)).sum())
        denom = float((pred == c).sum() + (y == c).sum())
        f1s.append(2 * tp / denom if denom else 0.0)
    return float(np.mean(f1s)) if f1s else 0.0


def binary_f1(y: npt.NDArray[np.bool_], pred: npt.NDArray[np.bool_]) -> float:
    tp = float((y & pred).sum())
    denom = float(y.sum() + pred.sum())
    return 2 * tp / denom if denom else 0.0


def task_metrics(out: dict[str, np.ndarray], targets: TaskTargets, sources: Sequence[str]) -> dict[str, Any]:
    """Per-task metrics of the heads' logits ``out`` against ``targets`` (rows in the order of ``sources``)."""
    metrics: dict[str, Any] = {}
    has_s = targets.sentiment >= 0
    pred_s = out["sentiment"].argmax(axis=1)
    metrics["sentiment_macro_f1"] = macro_f1(targets.sentiment[has_s], pred_s[has_s])
    by_source: dict[str, float] = {}
    source = np.asarray(sources)
    for src in sorted(set(source[has_s].tolist())):
        sel = has_s & (source == src)
        by_source[src] = round(macro_f1(targets.sentiment[sel], pred_s[sel]), 4)
    metrics["sentiment_macro_f1_by_source"] = by_source

    m = targets.topic_mask
    metrics["topic_micro_f1"] = binary_f1(targets.topics[m] > 0.5, out["topics"][m] > 0.0) if m.any() else None
    p = targets.polarity >= 0
    pred_p = out["polarity"].argmax(axis=2)
    metrics["topic_polarity_accuracy"] = float((pred_p[p] == targets.polarity[p]).mean()) if p.any() else None
    d = targets.detractor_mask
    metrics["detractor_f1"] = (
        binary_f1(targets.detractor[d] > 0.5, out["detractor"][d] > 0.0) if d.any() else None
    )
    for key in HEADLINE:
        if metrics[key] is not None:
            metrics[key] = round(float(metrics[key]), 4)
    return metrics
