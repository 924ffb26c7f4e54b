"""The learned heads of a bundle, one fitter each, in a registry keyed like the bundle's fields.

Every fitter is a small function of one :class:`HeadContext` (the training texts embedded once, their n-gram
features, the fit and calibration rows, the config and the taxonomy) and returns what the bundle stores under
its key.  :func:`voce.training.train.train_heads` loops over :data:`HEAD_FITTERS` and hands the results to
:class:`~voce.models.bundle.VoceBundle` by name.  A new learned head type is therefore one fitter here, one entry
in :data:`HEAD_FITTERS` and one field of the bundle; a fitter that trains on its own labelled corpus embeds it
through :meth:`HeadContext.embed` and :meth:`HeadContext.lexical_features`, so it lives in the same vector and
n-gram space as the rest.  (A head that may read n-grams is also named in ``config.LexicalHead``.)
"""
from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import TypeAlias

import numpy as np
from scipy import sparse

from voce.data.datasets import Example, annotated_topics
from voce.models.encoders.base import Encoder
from voce.models.heads import F32, ExclusiveCalibration, Lexical, LinearHead
from voce.models.labels import SENTIMENT_LABELS
from voce.models.lexical import LexicalFeaturizer
from voce.models.taxonomy import Taxonomy
from voce.training.config import TrainConfig
from voce.training.fit import best_threshold, fit_binary_head, fit_softmax_head

log = logging.getLogger(__name__)
Progress = Callable[[str], None]
#: what a fitter returns: one head, or one head per key (topic polarity: per topic)
FittedHead: TypeAlias = LinearHead | dict[str, LinearHead] | ExclusiveCalibration | None
HeadFitter = Callable[["HeadContext"], FittedHead]

_HINT = "add such labels to extra_data or set include_public_data: true"


@dataclass
class HeadContext:
    """What every head fitter reads; built once per training run by :meth:`build`.

    ``fit`` teaches the heads, ``calibration`` (held out of ``fit`` by the config's split) sets their
    temperatures and thresholds.  Every distinct training text is embedded once (``vectors``, row order
    ``rows``), and its n-gram features computed once when a head reads them.
    """

    cfg: TrainConfig
    taxonomy: Taxonomy
    encoder: Encoder
    fit: list[Example]
    calibration: list[Example]
    vectors: F32
    rows: dict[str, int]
    # n-gram featurizer fitted on the training texts (None: no head reads n-grams) and its features per text
    lexical: LexicalFeaturizer | None
    lexical_rows: Lexical | None
    progress: Progress
    # the encoder without the fine-tuned adapter (exclusive sections read it); defaults to ``encoder``
    base_encoder: Callable[[], Encoder] | None = None
    # what the fitters before this one returned, by bundle field (a later head may read an earlier one)
    fitted: dict[str, object] = field(default_factory=dict)
    # data a fitter loads once and another reuses (the annotated corpus)
    memo: dict[str, object] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.base_encoder is None:
            encoder = self.encoder
            self.base_encoder = lambda: encoder

    @classmethod
    def build(
        cls, cfg: TrainConfig, taxonomy: Taxonomy, encoder: Encoder, train: list[Example], progress: Progress = log.info,
        base_encoder: Callable[[], Encoder] | None = None,
    ) -> HeadContext:
        """Split ``train`` into fit and calibration rows, embed every text once, fit the n-gram featurizer."""
        fit, cal = cfg.split().calibration(train)
        progress(f"embedding {len(train)} training texts with {encoder.name}")
        texts = sorted({e.text for e in train})
        vectors = encoder.encode(texts)
        lexical, lexical_rows = None, None
        if cfg.lexical_heads:
            lexical = LexicalFeaturizer.fit(texts, cfg.lexical_spec())
            if lexical.dim:
                progress(f"lexical n-grams for {', '.join(cfg.lexical_heads)}: {lexical.dim} features")
                lexical_rows = lexical.transform(texts)
            else:
                progress(f"no n-gram occurs in {cfg.lexical_min_df} training texts: every head stays embedding-only")
                lexical = None
        rows = {t: i for i, t in enumerate(texts)}
        return cls(cfg, taxonomy, encoder, fit, cal, vectors, rows, lexical, lexical_rows, progress, base_encoder)

    def X(self, examples: Sequence[Example]) -> F32:
        """The rows' embeddings (``(0, dim)`` for no rows)."""
        if not examples:
            return np.zeros((0, self.encoder.dim), np.float32)
        return self.vectors[[self.rows[e.text] for e in examples]]

    def lex(self, examples: Sequence[Example], head: str) -> Lexical | None:
        """The rows' n-gram features when ``head`` is one of ``cfg.lexical_heads``, else None."""
        if self.lexical_rows is None or head not in self.cfg.lexical_heads:
            return None
        return self.lexical_rows[[self.rows[e.text] for e in examples]]

    def embed(self, texts: list[str]) -> F32:
        """Embeddings of texts outside the training rows (taxonomy examples, another labelled corpus)."""
        return self.encoder.encode(texts)

    def lexical_features(self, texts: list[str], head: str) -> Lexical | None:
        """N-gram features of texts outside the training rows, when ``head`` reads them."""
        if self.lexical is None or head not in self.cfg.lexical_heads:
            return None
        return self.lexical.transform(texts)

    def labelled(self, label: Callable[[Example], object]) -> tuple[list[Example], list[Example]]:
        """The ``(fit, calibration)`` rows whose ``label`` is known (not None)."""
        return [e for e in self.fit if label(e) is not None], [e for e in self.calibration if label(e) is not None]

    @cached_property
    def center(self) -> F32:
        """Mean training embedding: serving removes it before zero-shot similarity."""
        return self.vectors.mean(axis=0).astype(np.float32)

    @cached_property
    def topic_rows(self) -> tuple[list[Example], list[Example]]:
        """The topic-labelled ``(fit, calibration)`` rows."""
        return self.labelled(lambda e: e.topics)

    @cached_property
    def topic_ids(self) -> list[str]:
        """Taxonomy topics with enough labelled rows for a learned head (and some rows without the topic)."""
        t_fit = self.topic_rows[0]
        counts = topic_counts(t_fit)
        total = len(t_fit)
        corpus = corpus_topics(self, with_lexical=False)
        if corpus is not None:
            counts.update(t for topics in corpus.fit_topics for t in topics)
            total += len(corpus.fit_topics)
        from voce.training.check import learnable_topics

        return learnable_topics(counts, total, self.taxonomy.topics.ids, self.cfg.min_topic_examples)


def topic_counts(rows: Sequence[Example]) -> Counter[str]:
    """Labelled rows per topic id."""
    return Counter(k for e in rows for k in e.topics or {})


def need_labels(what: str, rows: Sequence[Example], values: Sequence[object]) -> None:
    """Fail with a clear message instead of scikit-learn's when a head cannot be fitted."""
    if not rows:
        raise ValueError(f"no training rows with a {what} label; {_HINT}")
    if len(set(values)) < 2:
        raise ValueError(f"every training row has the same {what} label ({values[0]!r}); a head needs two classes; {_HINT}")


# ----------------------------------------------------------------------------- sentiment


def fit_sentiment(ctx: HeadContext) -> LinearHead:
    """Document/sentence sentiment, 4-way softmax."""
    s_fit, s_cal = ctx.labelled(lambda e: e.sentiment)
    ctx.progress(f"sentiment head on {len(s_fit)} texts")
    need_labels("sentiment", s_fit, [e.sentiment for e in s_fit])
    return fit_softmax_head(
        ctx.X(s_fit), [e.sentiment for e in s_fit if e.sentiment], SENTIMENT_LABELS, ctx.cfg.C_sentiment, ctx.cfg.seed,
        ctx.X(s_cal), [e.sentiment for e in s_cal if e.sentiment], ctx.lex(s_fit, "sentiment"), ctx.lex(s_cal, "sentiment"),
    )


# -------------------------------------------------------------------------------- topics


@dataclass(frozen=True)
class TaxonomyRows:
    """The taxonomy's topic examples as training rows: embeddings, n-grams (hybrid heads) and topic ids."""

    x: F32
    lex: Lexical | None
    topic: np.ndarray


def taxonomy_rows(ctx: HeadContext, with_lexical: bool) -> TaxonomyRows | None:
    """Example sentences of the topics that get heads, or None when unused (weight 0 or no examples)."""
    if ctx.cfg.taxonomy_example_weight <= 0:
        return None
    topic_ids = ctx.topic_ids
    rows = [(text, e.id) for e in ctx.taxonomy.topics.entries if e.id in topic_ids for text in e.examples if text.strip()]
    if not rows:
        return None
    texts = [t for t, _ in rows]
    lex = ctx.lexical_features(texts, "topics") if with_lexical else None
    return TaxonomyRows(ctx.embed(texts), lex, np.asarray([tid for _, tid in rows]))


def learns_topic(rows: list[Example], tid: str, annotated: dict[str, frozenset[str]], cfg: TrainConfig) -> np.ndarray:
    """Which topic-labelled rows the head of ``tid`` learns from (``cfg.topic_negatives``)."""
    keep = np.asarray([tid in annotated.get(e.source, frozenset()) for e in rows], bool)
    labels = {tid in (e.topics or {}) for e, k in zip(rows, keep, strict=True) if k}
    if cfg.topic_negatives == "all" or len(labels) < 2:  # the annotating rows alone have no negatives
        return np.ones(len(rows), bool)
    return keep


@dataclass(frozen=True)
class _TopicData:
    """The topic-labelled rows' embeddings and n-grams, computed once for every topic's head."""

    xf: F32
    xc: F32
    lf: Lexical | None
    lc: Lexical | None
    annotated: dict[str, frozenset[str]]
    tax: TaxonomyRows | None
    corpus: CorpusTopics | None = None


def _fit_topic(ctx: HeadContext, tid: str, d: _TopicData) -> tuple[LinearHead, float]:
    """One topic's binary head (its own rows, plus the taxonomy examples) and its F1-best threshold."""
    t_fit, t_cal = ctx.topic_rows
    keep_f = learns_topic(t_fit, tid, d.annotated, ctx.cfg)
    keep_c = learns_topic(t_cal, tid, d.annotated, ctx.cfg)
    yf = np.asarray([tid in (e.topics or {}) for e in t_fit], int)[keep_f]
    yc = np.asarray([tid in (e.topics or {}) for e in t_cal], int)[keep_c]
    x_t, l_t, weight = d.xf[keep_f], (d.lf[keep_f] if d.lf is not None else None), None
    if d.tax is not None:
        x_t = np.vstack([x_t, d.tax.x])
        l_t = sparse.vstack([l_t, d.tax.lex], format="csr") if l_t is not None else None
        yf = np.concatenate([yf, (d.tax.topic == tid).astype(int)])
        weight = np.concatenate([np.ones(int(keep_f.sum())), np.full(len(d.tax.topic), ctx.cfg.taxonomy_example_weight)])
    x_c, l_c = d.xc[keep_c], (d.lc[keep_c] if d.lc is not None else None)
    if d.corpus is not None:  # the annotated real texts: every topic annotated, so negatives count for all
        c = d.corpus
        weight = np.concatenate([weight if weight is not None else np.ones(len(yf)),
                                 np.full(len(c.fit_topics), ctx.cfg.corpus_topic_weight)])  # fmt: skip
        x_t, yf = np.vstack([x_t, c.x_fit]), np.concatenate([yf, [tid in t for t in c.fit_topics]]).astype(int)
        l_t = sparse.vstack([l_t, c.lex_fit], format="csr") if l_t is not None else None
        x_c, yc = np.vstack([x_c, c.x_cal]), np.concatenate([yc, [tid in t for t in c.cal_topics]]).astype(int)
        l_c = sparse.vstack([l_c, c.lex_cal], format="csr") if l_c is not None else None
    head = fit_binary_head(x_t, yf, ctx.cfg.C_topics, ctx.cfg.seed, x_c, yc, tid, l_t, l_c, weight)
    return head, best_threshold(head.predict_proba(x_c, l_c)[:, 0], yc)


def fit_topics(ctx: HeadContext) -> LinearHead:
    """Multi-label topics: one calibrated binary LR per learned topic, stacked into one sigmoid head."""
    t_fit, t_cal = ctx.topic_rows
    topic_ids = ctx.topic_ids
    ctx.progress(f"topic heads for {len(topic_ids)} topics on {len(t_fit)} texts: {', '.join(topic_ids)}")
    fit_counts = topic_counts(t_fit)
    short = [t for t in ctx.taxonomy.topics.ids if t not in topic_ids and fit_counts.get(t, 0)]
    if short:  # never dropped silently: the topic stays zero-shot, and the log says why
        ctx.progress(f"no learned head (fewer than min_topic_examples {ctx.cfg.min_topic_examples} fit rows), zero-shot: "
                     + ", ".join(f"{t} ({fit_counts[t]})" for t in short))
    undeclared = sorted(set(fit_counts) - set(ctx.taxonomy.topics.ids))
    if undeclared:
        ctx.progress(
            f"no head for labelled topics missing from taxonomy {ctx.taxonomy.version!r}: {', '.join(undeclared)}"
            " (declare them in a taxonomy YAML and set taxonomy: in the train config)"
        )
    lf = ctx.lex(t_fit, "topics")
    tax = taxonomy_rows(ctx, with_lexical=lf is not None)
    if tax is not None:
        ctx.progress(f"topic heads also learn from {len(tax.topic)} taxonomy example sentences "
                     f"(weight {ctx.cfg.taxonomy_example_weight:g})")  # fmt: skip
    corpus = corpus_topics(ctx, with_lexical=lf is not None)
    data = _TopicData(
        ctx.X(t_fit), ctx.X(t_cal), lf, ctx.lex(t_cal, "topics"), annotated_topics([*t_fit, *t_cal]), tax, corpus
    )
    fitted = [_fit_topic(ctx, tid, data) for tid in topic_ids]
    heads = [h for h, _ in fitted]
    ws_lex = [h.lex_weight[0] for h in heads if h.lex_weight is not None]
    return LinearHead(
        kind="sigmoid", labels=topic_ids,
        weight=np.stack([h.weight[0] for h in heads]) if heads else np.zeros((0, ctx.encoder.dim), np.float32),
        bias=np.asarray([h.bias[0] for h in heads], np.float32),
        temperature=np.asarray([h.temperature[0] for h in heads], np.float32),
        thresholds=np.asarray([t for _, t in fitted], np.float32),
        lex_weight=(np.stack(ws_lex) if ws_lex else np.zeros((0, lf.shape[1]), np.float32)) if lf is not None else None,
    )  # fmt: skip


# ------------------------------------------------------------------------ topic polarity


def fit_topic_polarity(ctx: HeadContext) -> dict[str, LinearHead]:
    """Aspect sentiment: a 4-way softmax per learned topic with enough polarity-labelled rows."""
    polarity: dict[str, LinearHead] = {}
    for tid in ctx.topic_ids:
        pf = [e for e in ctx.fit if e.topics and tid in e.topics]
        pc = [e for e in ctx.calibration if e.topics and tid in e.topics]
        classes = {e.topics[tid] for e in pf if e.topics}
        if len(pf) < ctx.cfg.min_polarity_examples or len(classes) < 2:
            continue
        polarity[tid] = fit_softmax_head(
            ctx.X(pf), [e.topics[tid] for e in pf if e.topics], SENTIMENT_LABELS, ctx.cfg.C_sentiment, ctx.cfg.seed,
            ctx.X(pc), [e.topics[tid] for e in pc if e.topics], ctx.lex(pf, "topic_polarity"),
            ctx.lex(pc, "topic_polarity"),
        )  # fmt: skip
    ctx.progress(f"topic polarity heads: {', '.join(sorted(polarity))}")
    return polarity


# ----------------------------------------------------------------------------- detractor


def fit_detractor(ctx: HeadContext) -> LinearHead:
    """P(NPS detractor), a binary LR on the rows with an nps/detractor/stars label."""
    d_fit, d_cal = ctx.labelled(lambda e: e.nps_detractor)
    ctx.progress(f"detractor head on {len(d_fit)} texts")
    need_labels("detractor (nps/detractor/stars)", d_fit, [e.nps_detractor for e in d_fit])
    return fit_binary_head(
        ctx.X(d_fit), np.asarray([e.nps_detractor for e in d_fit]), ctx.cfg.C_detractor, ctx.cfg.seed,
        ctx.X(d_cal), np.asarray([e.nps_detractor for e in d_cal]), "detractor", ctx.lex(d_fit, "detractor"),
        ctx.lex(d_cal, "detractor"),
    )  # fmt: skip


from voce.training.touchpoints import (  # noqa: E402
    CorpusTopics,
    corpus_topics,
    fit_exclusive,
    fit_touchpoint_primary,
    fit_touchpoints,
)

#: bundle field -> its fitter, in fitting order (the order of the progress lines)
HEAD_FITTERS: dict[str, HeadFitter] = {
    "sentiment": fit_sentiment,
    "topics": fit_topics,
    "topic_polarity": fit_topic_polarity,
    "detractor": fit_detractor,
    "touchpoints": fit_touchpoints,
    "touchpoint_primary": fit_touchpoint_primary,
    "exclusive": fit_exclusive,
}


def each_head(fitted: dict[str, FittedHead]) -> list[LinearHead]:
    """Every fitted linear head, the per-key ones flattened (calibrations and absent heads left out)."""
    return [h for v in fitted.values() for h in (v.values() if isinstance(v, dict) else [v]) if isinstance(h, LinearHead)]
