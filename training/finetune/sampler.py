"""Which rows make a batch: a tempered, seeded mixture of the datasets, padded into tensors."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import torch


def pad_batch(sequences: Sequence[Sequence[int]], pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded ``(input_ids, attention_mask)``."""
    width = max(len(s) for s in sequences)
    ids = np.full((len(sequences), width), pad, np.int64)
    mask = np.zeros((len(sequences), width), np.int64)
    for row, seq in enumerate(sequences):
        ids[row, : len(seq)] = seq
        mask[row, : len(seq)] = 1
    return torch.from_numpy(ids), torch.from_numpy(mask)


class MixtureSampler:
    """Deterministic temperature-sampled mixture of datasets.

    Each row's dataset is drawn with P ∝ n ** alpha; within a dataset rows come
    from a seeded permutation, reshuffled when exhausted, so every row is seen
    before any repeats.
    """

    def __init__(self, sources: Sequence[str], alpha: float, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.names = sorted(set(sources))
        src = np.asarray(sources)
        self.rows = {name: np.flatnonzero(src == name) for name in self.names}
        sizes = np.asarray([len(self.rows[n]) for n in self.names], np.float64)
        weights = sizes**alpha
        self.probabilities = weights / weights.sum()
        self._order = {name: self.rng.permutation(self.rows[name]) for name in self.names}
        self._cursor = dict.fromkeys(self.names, 0)

    def _next(self, name: str) -> int:
        if self._cursor[name] >= len(self._order[name]):
            self._order[name] = self.rng.permutation(self.rows[name])
            self._cursor[name] = 0
        row = int(self._order[name][self._cursor[name]])
        self._cursor[name] += 1
        return row

    def batch(self, size: int) -> npt.NDArray[np.int64]:
        picks = self.rng.choice(len(self.names), size=size, p=self.probabilities)
        return np.asarray([self._next(self.names[k]) for k in picks], np.int64)

