"""Zero-shot scoring against a taxonomy section: the one contract that serving and training share.

A text and an entry are compared as *centred* e5 embeddings (the training mean
removed, then re-normalised: raw e5 cosines crowd into a narrow band).  An entry
is represented by the embeddings of its names, descriptions and examples
(its prototypes); a text's features are its best cosine to each entry and that
cosine's margin over the mean across entries.  :class:`~voce.models.heads.ZeroShotCalibration`
maps the two features to a probability; training fits it through
:meth:`ZeroShotScorer.features`, so it is fitted on exactly what serving computes.
"""
from __future__ import annotations

import numpy as np

from voce.models.caches import LRUCache
from voce.models.encoders.base import Encoder
from voce.models.heads import F32, ZeroShotCalibration, zero_shot_features
from voce.models.taxonomy import TaxonomySection


def centre(emb: F32, center: F32) -> F32:
    """Remove the training mean and re-normalise each row."""
    c = emb - center[None, :]
    out: F32 = (c / np.maximum(np.linalg.norm(c, axis=1, keepdims=True), 1e-6)).astype(np.float32)
    return out


class ZeroShotScorer:
    """Taxonomy similarity for one encoder and one centring vector, prototypes cached per section."""

    def __init__(
        self, encoder: Encoder, center: F32, calibration: ZeroShotCalibration | None = None, cache_size: int = 16
    ) -> None:
        self.encoder = encoder
        self.center = np.asarray(center, np.float32)
        self.calibration = calibration or ZeroShotCalibration()
        self._prototypes: LRUCache[str, list[F32]] = LRUCache(cache_size)

    def centre(self, emb: F32) -> F32:
        return centre(emb, self.center)

    def prototypes(self, section: TaxonomySection) -> list[F32]:
        """Centred embeddings of each entry's prototype texts (encoded once per section and encoder)."""
        key = f"{self.encoder.name}:{section.fingerprint()}"
        cached = self._prototypes.get(key)
        if cached is not None:
            return cached
        texts: list[str] = []
        owners: list[int] = []
        for i, e in enumerate(section.entries):
            for t in e.prototype_texts():
                texts.append(t)
                owners.append(i)
        emb = self.centre(self.encoder.encode(texts))
        own = np.asarray(owners)
        protos = [emb[own == i] for i in range(len(section.entries))]
        self._prototypes.put(key, protos)
        return protos

    def features(self, centred: F32, section: TaxonomySection) -> tuple[F32, F32]:
        """(best cosine, margin over the mean) per text and entry, each ``(n, n_entries)``."""
        return zero_shot_features(centred, self.prototypes(section))

    def probability(self, centred: F32, section: TaxonomySection) -> F32:
        """Calibrated P(text is about entry), ``(n, n_entries)``."""
        sims, margin = self.features(centred, section)
        return self.calibration.probability(sims, margin)
