"""A deterministic, model-free encoder for fast tests.

Why not random vectors: API and pipeline tests train tiny heads and check
that similar feedback lands together, so the fake must keep *some* meaning.
It hashes lowercase word unigrams, word bigrams and character trigrams into a
signed random projection (feature hashing), so texts that share words or
spelling get similar vectors — with no model files, in microseconds, and
identically on every machine (blake2b, never Python's salted ``hash()``).
"""
from __future__ import annotations

import hashlib
import re
from functools import lru_cache

import numpy as np

from voce.models.encoders.base import Embeddings, approximate_token_counts

_WORD = re.compile(r"\w+", re.UNICODE)
#: (index, sign) pairs per feature: more spreads each feature, fewer collisions matter
_PROJECTIONS = 4
#: character trigrams are many per word; down-weight them so words still dominate
_TRIGRAM_WEIGHT = 0.5


class FakeEncoder:
    """Feature-hashing encoder with the :class:`~models.encoders.base.Encoder` contract."""

    def __init__(self, dim: int = 384, seed: int = 0) -> None:
        if dim < 8:
            raise ValueError("dim must be >= 8")
        self.dim = dim
        self.seed = seed
        self.name = f"fake/hash-v1-d{dim}-s{seed}"
        self._key = seed.to_bytes(8, "little", signed=True)
        self._slots = lru_cache(maxsize=200_000)(self._hash_feature)

    def _hash_feature(self, feature: str) -> tuple[tuple[int, ...], tuple[float, ...]]:
        digest = hashlib.blake2b(feature.encode("utf-8"), digest_size=4 * _PROJECTIONS, key=self._key).digest()
        values = np.frombuffer(digest, dtype="<u4")
        index = tuple(int(v >> 1) % self.dim for v in values)
        sign = tuple(1.0 if v & 1 else -1.0 for v in values)
        return index, sign

    @staticmethod
    def features(text: str) -> list[tuple[str, float]]:
        """Weighted features of ``text``: words, word bigrams, character trigrams."""
        lowered = text.lower()
        words = _WORD.findall(lowered)
        feats = [(f"w:{w}", 1.0) for w in words]
        feats += [(f"b:{a} {b}", 1.0) for a, b in zip(words, words[1:], strict=False)]
        padded = f" {' '.join(words)} "
        feats += [(f"c:{padded[i : i + 3]}", _TRIGRAM_WEIGHT) for i in range(len(padded) - 2)]
        return feats

    def _vector(self, text: str) -> np.ndarray:
        index: list[int] = []
        value: list[float] = []
        for feature, weight in self.features(text) or [("empty", 1.0)]:
            slots, signs = self._slots(feature)
            index.extend(slots)
            value.extend(weight * s for s in signs)
        vec = np.bincount(index, weights=value, minlength=self.dim)
        norm = float(np.linalg.norm(vec))
        if norm == 0.0:  # every feature cancelled out: fall back to a fixed unit vector
            vec[self._slots("empty")[0][0]] = 1.0
            norm = 1.0
        return vec / norm

    def token_counts(self, texts: list[str]) -> list[int]:
        """No tokenizer here: the estimate of :func:`~models.encoders.base.approximate_token_counts`."""
        return approximate_token_counts(texts)

    def encode(self, texts: list[str], batch_size: int = 32) -> Embeddings:
        """Embed ``texts`` (``batch_size`` is accepted for the contract and ignored)."""
        del batch_size
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            out[row] = self._vector(text)
        return out
