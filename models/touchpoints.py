"""Touchpoints: what a comment is about, linked from its own words.

Two facts that a CX team needs apart: the *channel* is where the feedback was
collected (the request's ``channel``, an upload's channel column), the
*touchpoint* is what the customer talks about ("Un ascensore era fuori servizio"
sent through the app is about the store, not the app).  So touchpoints come from
the text, and the channel may only raise a touchpoint the text already supports,
or settle a close call; it never creates one out of nothing.

Three ways a section is scored:

* the touchpoint section the bundle was trained for (:attr:`VoceBundle.touchpoints_fingerprint`):
  learned heads read the fine-tuned embedding, a calibrated presence probability per
  touchpoint (multi-label, thresholds from a calibration slice) and a primary-touchpoint
  softmax over the learned touchpoints plus ``none``; entries without enough labels stay
  zero-shot;
* any other multi-label section: zero-shot similarity (:mod:`voce.models.zeroshot`);
* an exclusive section (``mode: single``, e.g. journey stages): :class:`ExclusiveChooser`
  always returns the best entry with a calibrated confidence.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from voce.models.bundle import VoceBundle
from voce.models.caches import LRUCache
from voce.models.encoders.base import Encoder
from voce.models.heads import F32, Lexical, LinearHead, zero_shot_features
from voce.models.segment import Span
from voce.models.taxonomy import TaxonomySection
from voce.models.types import Evidence, TouchpointResult
from voce.models.zeroshot import ZeroShotScorer, centre

NONE = "none"
#: examples per entry at which the few-shot head's log-probability counts half as much as the zero-shot score's
FEWSHOT_HALF_WEIGHT_AT = 8


def add_log_odds(p: F32, delta: float) -> F32:
    """Bayesian prior update: add ``delta`` to the log-odds of each probability."""
    q = np.clip(np.asarray(p, np.float64), 1e-7, 1 - 1e-7)
    z = np.log(q / (1 - q)) + delta
    out: F32 = (1.0 / (1.0 + np.exp(-z))).astype(np.float32)
    return out


def softmax(z: F32) -> F32:
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    out: F32 = (e / e.sum(axis=-1, keepdims=True)).astype(np.float32)
    return out


@dataclass
class SectionScores:
    """One touchpoint section scored for every encoded unit of a batch (rows = units)."""

    section: TaxonomySection
    presence: F32  # (units, entries): P(unit is about entry)
    thresholds: F32  # (entries,)
    learned: list[bool]
    primary: F32 | None = None  # (units, len(primary_labels)): learned section only
    primary_labels: tuple[str, ...] = ()


@dataclass(frozen=True)
class DocUnits:
    """Where one document's units sit in the batch's unit matrix."""

    windows: list[int]
    weights: F32  # window weights, summing to 1
    sentences: list[int]
    spans: list[Span]


class TouchpointLinker:
    """Touchpoint decisions for the documents of a batch, from unit-level scores."""

    def __init__(
        self, bundle: VoceBundle, zero_shot: ZeroShotScorer, *, channel_prior_logit: float = 1.5,
        support_floor: float = 0.5, max_evidence: int = 3,
    ) -> None:  # fmt: skip
        self.bundle = bundle
        self.zero_shot = zero_shot
        self.channel_prior_logit = channel_prior_logit
        # the channel may raise a touchpoint whose text-only presence reaches this share of its threshold
        self.support_floor = support_floor
        self.max_evidence = max_evidence

    def is_learned(self, section: TaxonomySection) -> bool:
        b = self.bundle
        return b.touchpoints is not None and section.mode == "multi" and section.fingerprint() == b.touchpoints_fingerprint

    def unit_scores(self, emb: F32, lex: Lexical | None, centred: F32, section: TaxonomySection) -> SectionScores:
        """Presence (learned where a head exists, zero-shot otherwise) and, for the learned section, the primary."""
        zero_shot = self.zero_shot.probability(centred, section)
        presence = zero_shot.copy()
        thresholds = np.full(len(section.ids), 0.5, np.float32)
        learned = [False] * len(section.ids)
        if not self.is_learned(section):
            return SectionScores(section, presence, thresholds, learned)
        head, primary = self.bundle.touchpoints, self.bundle.touchpoint_primary
        assert head is not None and primary is not None
        probs = head.predict_proba(emb, _lex_for(head, lex))
        for j, tid in enumerate(section.ids):
            if tid in head.labels:
                k = head.labels.index(tid)
                presence[:, j] = probs[:, k]
                thresholds[j] = head.thresholds[k] if head.thresholds is not None else 0.5
                learned[j] = True
        # a confident zero-shot match (>= 0.5) also lists a learned touchpoint: the heads saw few texts about rare
        # touchpoints (a leaflet, a crushed box), and on real texts zero-shot rarely fires, so the corpus's figures do
        # not move (dev top-1 0.776 either way) while the hand-written check's recall goes 0.53/0.69 -> 0.78/0.84
        learned_cols = np.asarray(learned)[None, :]
        presence = np.where(learned_cols & (zero_shot >= 0.5), np.maximum(presence, zero_shot), presence)
        prim = primary.predict_proba(emb, _lex_for(primary, lex))
        return SectionScores(section, presence, thresholds, learned, prim, tuple(primary.labels))

    def link(self, s: SectionScores, doc: DocUnits, channel: str | None) -> list[TouchpointResult]:
        """The document's touchpoints, primary first (empty when the text is about none)."""
        ids = s.section.ids
        w = doc.weights[:, None]
        all_units = doc.windows + doc.sentences
        # learned heads were trained on whole texts: the document reads its windows; zero-shot reads every unit
        doc_p = np.where(
            np.asarray(s.learned), (s.presence[doc.windows] * w).sum(axis=0), s.presence[all_units].max(axis=0)
        ).astype(np.float32)
        text_p = doc_p.copy()
        q = (s.primary[doc.windows] * w).sum(axis=0) if s.primary is not None else None
        text_primary = self._primary(s, text_p, q)
        if channel in ids:
            j = ids.index(channel)
            if text_p[j] >= self.support_floor * s.thresholds[j]:  # the text supports it: the channel may raise it
                doc_p[j] = add_log_odds(doc_p[j : j + 1], self.channel_prior_logit)[0]
                if q is not None and channel in s.primary_labels:
                    k = s.primary_labels.index(channel)
                    q = q.copy()
                    q[k] *= float(np.exp(self.channel_prior_logit))
                    q /= q.sum()
        primary = self._primary(s, doc_p, q)
        listed = {ids[j] for j in range(len(ids)) if doc_p[j] >= s.thresholds[j]}
        text_listed = {ids[j] for j in range(len(ids)) if text_p[j] >= s.thresholds[j]}
        if primary is None:
            return []
        listed.add(primary)
        order = [primary] + sorted(listed - {primary}, key=lambda t: -doc_p[ids.index(t)])
        out = []
        for tid in order:
            j = ids.index(tid)
            score = float(doc_p[j])
            if tid == primary and q is not None and tid in s.primary_labels:
                score = max(score, float(q[s.primary_labels.index(tid)]))
            changed = tid == channel and ((tid not in text_listed and tid != text_primary) or
                                          (tid == primary and text_primary != primary))
            out.append(TouchpointResult(
                id=tid, score=round(min(score, 1.0), 6), evidence=self._evidence(s, j, doc),
                primary=tid == primary, source="learned" if s.learned[j] else "zero_shot", from_channel=changed,
            ))  # fmt: skip
        return out

    def _primary(self, s: SectionScores, doc_p: F32, q: F32 | None) -> str | None:
        """The primary touchpoint: the softmax's choice for the learned section, else the highest listed entry."""
        ids = s.section.ids
        zero_shot_hits = [j for j in range(len(ids)) if not s.learned[j] and doc_p[j] >= s.thresholds[j]]
        if q is None:
            listed = [j for j in range(len(ids)) if doc_p[j] >= s.thresholds[j]]
            return ids[max(listed, key=lambda j: doc_p[j])] if listed else None
        best = s.primary_labels[int(np.argmax(q))]
        best_p = float(q.max())
        # an entry without a learned head (too few labels) wins only when its zero-shot score beats the choice
        if zero_shot_hits:
            j = max(zero_shot_hits, key=lambda k: doc_p[k])
            if doc_p[j] > best_p:
                return ids[j]
        return None if best == NONE else best

    def _evidence(self, s: SectionScores, j: int, doc: DocUnits) -> list[Evidence]:
        scores = s.presence[doc.sentences, j]
        picked = pick_evidence(scores, doc.spans, float(s.thresholds[j]), self.max_evidence)
        return [Evidence(offset=doc.spans[k].offset, length=doc.spans[k].length) for k in picked]


def pick_evidence(scores: F32, spans: list[Span], threshold: float, most: int) -> list[int]:
    """Sentences at or above ``threshold`` (at most ``most``; else the best one), in text order."""
    order = np.argsort(-scores, kind="stable")
    picked = [int(k) for k in order if scores[k] >= threshold][:most]
    if not picked and len(order):
        picked = [int(order[0])]
    return sorted(picked, key=lambda k: spans[k].offset)


def _lex_for(head: LinearHead, lex: Lexical | None) -> Lexical | None:
    return lex if head.lexical_dim else None


class ExclusiveChooser:
    """Exclusive sections (``mode: single``): always the best entry, with a calibrated confidence.

    Scores combine the base encoder's similarity to each entry's texts with the learned concept profile (see
    :class:`~voce.models.heads.ExclusiveCalibration`).  When entries carry ``examples``, a small softmax head is
    fitted on them (plus every entry's names and descriptions as rows of their own entry) and its log-probability
    added: more examples, sharper choices.  Prototypes, profiles and few-shot heads are cached per section
    fingerprint, so a taxonomy is prepared once.
    """

    def __init__(self, bundle: VoceBundle, encoder: Encoder, base_encoder: Callable[[], Encoder]) -> None:
        self.bundle = bundle
        self.encoder = encoder
        self.base_encoder = base_encoder
        self._base_protos: LRUCache[str, list[F32]] = LRUCache(16)
        self._profiles: LRUCache[str, F32] = LRUCache(16)
        self._fewshot: LRUCache[str, tuple[F32, F32] | None] = LRUCache(16)

    @property
    def available(self) -> bool:
        return self.bundle.exclusive is not None and self.bundle.touchpoints is not None

    def concepts(self, emb: F32, lex: Lexical | None) -> F32:
        """Each row's learned touchpoint-presence and topic probabilities, in the calibration's concept layout."""
        b = self.bundle
        assert b.touchpoints is not None and b.exclusive is not None
        parts = {f"touchpoint:{t}": c for t, c in zip(b.touchpoints.labels, b.touchpoints.predict_proba(
            emb, _lex_for(b.touchpoints, lex)).T, strict=True)}  # fmt: skip
        parts |= {f"topic:{t}": c for t, c in zip(b.topics.labels, b.topics.predict_proba(
            emb, _lex_for(b.topics, lex)).T, strict=True)}  # fmt: skip
        n = emb.shape[0]
        return np.stack([parts.get(name, np.zeros(n, np.float32)) for name in b.exclusive.concepts], axis=1)

    def probabilities(self, texts: list[str], concepts: F32, section: TaxonomySection) -> F32:
        """``(len(texts), entries)`` confidences, rows summing to 1."""
        cal = self.bundle.exclusive
        assert cal is not None
        x = centre(self.base_encoder().encode(texts), cal.center)
        sims, _ = zero_shot_features(x, self._prototypes(section))
        logits = cal.logits(sims, concepts @ self._profile(section).T)
        head = self._fewshot_head(section)
        if head is not None:
            w, b = head
            # trust the examples as they grow: a head fitted on 4 per entry is noisy, one on 64 is not
            n = float(np.median([len(e.examples) for e in section.entries]))
            logits = logits + (n / (n + FEWSHOT_HALF_WEIGHT_AT)) * np.log(softmax(x @ w.T + b) + 1e-6)
        return softmax(logits)

    def _prototypes(self, section: TaxonomySection) -> list[F32]:
        key = section.fingerprint()
        cached = self._base_protos.get(key)
        if cached is None:
            cal = self.bundle.exclusive
            assert cal is not None
            enc = self.base_encoder()
            cached = [centre(enc.encode(e.prototype_texts()), cal.center) for e in section.entries]
            self._base_protos.put(key, cached)
        return cached

    def _profile(self, section: TaxonomySection) -> F32:
        """Each entry's concept profile: the learned heads' mean reading of its names, descriptions and examples."""
        key = section.fingerprint()
        cached = self._profiles.get(key)
        if cached is None:
            rows = []
            for e in section.entries:
                texts = [t for t in list(e.names.values()) + list(e.descriptions.values()) if t.strip()]
                rows.append(self.concepts(self.encoder.encode(texts), self.bundle.lexical_features(texts)).mean(axis=0))
            cached = np.stack(rows).astype(np.float32)
            self._profiles.put(key, cached)
        return cached

    def _fewshot_head(self, section: TaxonomySection) -> tuple[F32, F32] | None:
        """A softmax head on the entries' examples (in the base encoder's centred space), or None without examples."""
        key = section.fingerprint()
        cached = self._fewshot.get(key)
        if cached is None:
            cached = _NO_HEAD
            if any(e.examples for e in section.entries) and len(section.entries) > 1:
                protos = self._prototypes(section)  # names, descriptions and examples of each entry
                x = np.vstack(protos)
                y = np.concatenate([np.full(len(p), i) for i, p in enumerate(protos)])
                cached = fit_softmax_rows(x, y, len(section.entries))
            self._fewshot.put(key, cached)
        return None if cached is _NO_HEAD else cached


_NO_HEAD: tuple[F32, F32] = (np.zeros((0, 0), np.float32), np.zeros(0, np.float32))


def fit_softmax_rows(x: F32, y: np.ndarray, n_classes: int, C: float = 1.0) -> tuple[F32, F32]:
    """A multinomial logistic regression on a few rows per class: ``(weight, bias)`` over all ``n_classes``."""
    from sklearn.linear_model import LogisticRegression

    clf = LogisticRegression(C=C, max_iter=2000).fit(x, y)
    w = np.zeros((n_classes, x.shape[1]), np.float32)
    b = np.full(n_classes, -30.0, np.float32)
    if len(clf.classes_) == 2:
        coef = np.vstack([-clf.coef_[0] / 2, clf.coef_[0] / 2])
        icpt = np.asarray([-clf.intercept_[0] / 2, clf.intercept_[0] / 2])
    else:
        coef, icpt = clf.coef_, clf.intercept_
    for row, cls in enumerate(clf.classes_):
        w[int(cls)], b[int(cls)] = coef[row], icpt[row]
    return w, b
