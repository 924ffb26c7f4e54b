"""What each training row teaches: the label targets per task, and which rows are trained on.

Every task's labels become arrays with a mask for "unknown", so one batch can mix rows of every dataset and
each task's loss reads only the rows that label it (:func:`voce.training.finetune.heads.task_losses`).
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import torch

from voce.data.datasets import SENTIMENTS, Example, load_all
from voce.training.finetune.config import FinetuneConfig


def load_split(data_dir: Path | None, cfg: FinetuneConfig) -> tuple[list[Example], list[Example]]:
    """``(train, dev)`` of every dataset, split by ``cfg.split()`` exactly as ``voce train`` splits them.

    ``train`` leaves out the calibration slice unless ``calibration_fraction`` is 0.
    """
    spec = cfg.split()
    train, dev = spec.split(e for rows in load_all(data_dir).values() for e in rows)
    if cfg.holds_out_calibration:
        train, _calibration = spec.calibration(train)
    return train, dev


def cap_per_source(examples: Sequence[Example], cap: int | None) -> list[Example]:
    """The first ``cap`` rows of each dataset, in input order (``None`` = all)."""
    if cap is None:
        return list(examples)
    taken: dict[str, int] = {}
    out = []
    for e in examples:
        if taken.get(e.source, 0) < cap:
            taken[e.source] = taken.get(e.source, 0) + 1
            out.append(e)
    return out


@dataclass(frozen=True)
class TaskTargets:
    """Every label of every row as arrays; -1 / ``False`` masks mark "unknown"."""

    #: (n,) index into SENTIMENTS, -1 = no sentiment
    sentiment: npt.NDArray[np.int64]
    #: (n, T) 1 = topic present
    topics: npt.NDArray[np.float32]
    #: (n, T) the row's dataset annotates this topic (and the row is topic-annotated)
    topic_mask: npt.NDArray[np.bool_]
    #: (n, T) polarity index of a present topic, -1 = none
    polarity: npt.NDArray[np.int64]
    #: (n,) 1 detractor / 0 not
    detractor: npt.NDArray[np.float32]
    #: (n,) the row has a detractor label
    detractor_mask: npt.NDArray[np.bool_]

    def take(self, rows: npt.NDArray[np.int64]) -> dict[str, torch.Tensor]:
        return {
            "sentiment": torch.from_numpy(self.sentiment[rows]),
            "topics": torch.from_numpy(self.topics[rows]),
            "topic_mask": torch.from_numpy(self.topic_mask[rows]),
            "polarity": torch.from_numpy(self.polarity[rows]),
            "detractor": torch.from_numpy(self.detractor[rows]),
            "detractor_mask": torch.from_numpy(self.detractor_mask[rows]),
        }


def topic_ids_for(train: Sequence[Example], min_positives: int) -> list[str]:
    """Sorted topic ids with enough positive training rows to learn from."""
    counts = Counter(t for e in train for t in e.topics or {})
    return sorted(t for t, n in counts.items() if n >= min_positives)


def build_targets(
    examples: Sequence[Example], topic_ids: Sequence[str], annotated: dict[str, frozenset[str]]
) -> TaskTargets:
    """Arrays of labels; a topic-annotated row is a negative only for topics its dataset annotates."""
    n, t = len(examples), len(topic_ids)
    col = {tid: j for j, tid in enumerate(topic_ids)}
    sent_idx = {s: i for i, s in enumerate(SENTIMENTS)}
    sentiment = np.full(n, -1, np.int64)
    topics = np.zeros((n, t), np.float32)
    topic_mask = np.zeros((n, t), np.bool_)
    polarity = np.full((n, t), -1, np.int64)
    detractor = np.zeros(n, np.float32)
    detractor_mask = np.zeros(n, np.bool_)
    for i, e in enumerate(examples):
        if e.sentiment is not None:
            sentiment[i] = sent_idx[e.sentiment]
        if e.topics is not None:
            for tid in annotated.get(e.source, frozenset()):
                if tid in col:
                    topic_mask[i, col[tid]] = True
            for tid, pol in e.topics.items():
                if tid in col:
                    topics[i, col[tid]] = 1.0
                    topic_mask[i, col[tid]] = True
                    polarity[i, col[tid]] = sent_idx[pol]
        if e.nps_detractor is not None:
            detractor[i] = float(e.nps_detractor)
            detractor_mask[i] = True
    return TaskTargets(sentiment, topics, topic_mask, polarity, detractor, detractor_mask)


def has_label(targets: TaskTargets) -> npt.NDArray[np.bool_]:
    """Rows that teach something (e.g. SemEval out-of-scope sentences teach nothing)."""
    mask: npt.NDArray[np.bool_] = (targets.sentiment >= 0) | targets.topic_mask.any(axis=1) | targets.detractor_mask
    return mask

