"""Learned touchpoints and the exclusive-section calibration, from the annotated real-text corpus.

The corpus (:mod:`voce.data.realcx`) labels ~3,500 real texts with every touchpoint they are about and the
primary one.  Its train split (the same group hash as the public datasets) teaches:

* ``touchpoints``: a calibrated sigmoid per touchpoint with enough labelled texts (presence, multi-label), with
  F1-best thresholds from a calibration slice;
* ``touchpoint_primary``: a softmax over those touchpoints plus ``none``, the decision "what is this text
  mainly about, if anything";
* ``exclusive``: the coefficients that let an exclusive custom section (journey stages) combine base-encoder
  similarity with the learned concept profile, fitted on one journey taxonomy's labelled stages.

Touchpoint heads read the embedding only: n-grams learned on a few thousand texts did not carry over to sources
left out of training (leave-one-source-out accuracy 0.716 with them, 0.718 without; ``reports/touchpoints/``).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize

from voce.data.realcx import CXText, journey_path, load_realcx, split_realcx
from voce.data.splits import SplitSpec, group_hash
from voce.models.heads import F32, ExclusiveCalibration, LinearHead, zero_shot_features
from voce.models.taxonomy import default_taxonomy, load_taxonomy
from voce.models.zeroshot import centre
from voce.training.fit import best_threshold, fit_binary_head, fit_softmax_head

NONE = "none"
#: the calibration slice of the corpus's train split (same rule as the public data's: seed + 1)
CALIBRATION = SplitSpec(seed=13, dev_fraction=0.2, calibration_fraction=0.15)


@dataclass(frozen=True)
class CorpusRows:
    """The corpus's train split as fit and calibration rows, embedded once."""

    fit: list[CXText]
    calibration: list[CXText]
    x_fit: F32
    x_cal: F32


def corpus_rows(ctx) -> CorpusRows | None:  # type: ignore[no-untyped-def]
    """The annotated corpus for touchpoint heads, or None (with the reason logged) when it cannot be used."""
    if "realcx" in ctx.memo:
        return ctx.memo["realcx"]  # type: ignore[no-any-return]
    rows: CorpusRows | None = None
    if not ctx.cfg.touchpoint_data:
        ctx.progress("touchpoint heads: off (touchpoint_data: false); touchpoints stay zero-shot")
    elif ctx.taxonomy.touchpoints.fingerprint() != default_taxonomy().touchpoints.fingerprint():
        ctx.progress("touchpoint heads: the taxonomy's touchpoints are not the default ones the corpus is labelled "
                     "with; they stay zero-shot")  # fmt: skip
    else:
        try:
            corpus = load_realcx(ctx.cfg.data_dir)
        except (FileNotFoundError, ValueError) as exc:
            ctx.progress(f"touchpoint heads: the annotated corpus's texts are not available ({exc}); zero-shot")
        else:
            train, _ = split_realcx(corpus)
            fit, cal = CALIBRATION.calibration(train)  # type: ignore[arg-type]
            ctx.progress(f"touchpoint heads on the annotated real-text corpus: {len(fit)} fit + {len(cal)} calibration")
            rows = CorpusRows(fit, cal, ctx.embed([r.text for r in fit]), ctx.embed([r.text for r in cal]))  # type: ignore[arg-type]
    ctx.memo["realcx"] = rows
    return rows


@dataclass(frozen=True)
class CorpusTopics:
    """The corpus's train split as extra rows of the topic heads (all topics annotated on every text)."""

    x_fit: F32
    lex_fit: object | None
    fit_topics: list[frozenset[str]]
    x_cal: F32
    lex_cal: object | None
    cal_topics: list[frozenset[str]]


def corpus_topics(ctx, with_lexical: bool) -> CorpusTopics | None:  # type: ignore[no-untyped-def]
    """The annotated corpus as topic rows (None when unused: weight 0, or the corpus is not available).

    Only for the default topics the corpus is labelled with; a custom taxonomy's topic heads learn without it.
    """
    key = f"realcx_topics:{with_lexical}"
    if key in ctx.memo:
        return ctx.memo[key]  # type: ignore[no-any-return]
    out = None
    same = ctx.taxonomy.topics.fingerprint() == default_taxonomy().topics.fingerprint()
    data = corpus_rows(ctx) if ctx.cfg.corpus_topic_weight > 0 and same else None
    if data is not None:
        lex = (lambda rows: ctx.lexical_features([r.text for r in rows], "topics")) if with_lexical else (lambda rows: None)
        out = CorpusTopics(data.x_fit, lex(data.fit), [frozenset(r.topics) for r in data.fit],
                           data.x_cal, lex(data.calibration), [frozenset(r.topics) for r in data.calibration])  # fmt: skip
        ctx.progress(f"topic heads also learn from {len(data.fit)} annotated real texts "
                     f"(weight {ctx.cfg.corpus_topic_weight:g})")  # fmt: skip
    ctx.memo[key] = out
    return out


def _touchpoint_ids(ctx) -> list[str]:  # type: ignore[no-untyped-def]
    return list(ctx.taxonomy.touchpoints.ids)


def fit_touchpoints(ctx) -> LinearHead | None:  # type: ignore[no-untyped-def]
    """Presence per touchpoint: one calibrated binary LR each, stacked into one sigmoid head."""
    data = corpus_rows(ctx)
    if data is None:
        return None
    labels, heads, thresholds = [], [], []
    for tid in _touchpoint_ids(ctx):
        yf = np.asarray([tid in r.touchpoints for r in data.fit], int)
        yc = np.asarray([tid in r.touchpoints for r in data.calibration], int)
        if yf.sum() < ctx.cfg.min_touchpoint_examples:
            continue
        head = fit_binary_head(data.x_fit, yf, ctx.cfg.C_touchpoints, ctx.cfg.seed, data.x_cal, yc, tid)
        labels.append(tid)
        heads.append(head)
        thresholds.append(best_threshold(head.predict_proba(data.x_cal)[:, 0], yc))
    skipped = [t for t in _touchpoint_ids(ctx) if t not in labels]
    ctx.progress(f"touchpoint presence heads: {', '.join(labels)}" + (
        f"; too few labelled texts, zero-shot: {', '.join(skipped)}" if skipped else ""))  # fmt: skip
    return LinearHead(
        kind="sigmoid", labels=labels, weight=np.stack([h.weight[0] for h in heads]),
        bias=np.asarray([h.bias[0] for h in heads], np.float32),
        temperature=np.asarray([h.temperature[0] for h in heads], np.float32),
        thresholds=np.asarray(thresholds, np.float32),
    )  # fmt: skip


def fit_touchpoint_primary(ctx) -> LinearHead | None:  # type: ignore[no-untyped-def]
    """The primary touchpoint: a softmax over the touchpoints with enough primary examples, plus ``none``."""
    data = corpus_rows(ctx)
    if data is None:
        return None
    counts: dict[str, int] = {}
    for r in data.fit:
        counts[r.primary] = counts.get(r.primary, 0) + 1
    space = [t for t in _touchpoint_ids(ctx) if counts.get(t, 0) >= ctx.cfg.min_touchpoint_examples] + [NONE]
    keep_f = [k for k, r in enumerate(data.fit) if r.primary in space]
    keep_c = [k for k, r in enumerate(data.calibration) if r.primary in space]
    labels = [data.fit[k].primary for k in keep_f]
    weight = class_balance_weights(labels, ctx.cfg.touchpoint_class_balance)
    ctx.progress(f"primary touchpoint head over {len(space) - 1} touchpoints + none, {len(keep_f)} texts "
                 f"(class balance {ctx.cfg.touchpoint_class_balance:g})")  # fmt: skip
    return fit_softmax_head(
        data.x_fit[keep_f], labels, space, ctx.cfg.C_touchpoints * 2, ctx.cfg.seed,
        data.x_cal[keep_c], [data.calibration[k].primary for k in keep_c], sample_weight=weight,
    )  # fmt: skip


def class_balance_weights(labels: list[str], power: float) -> np.ndarray:
    """Sample weights ``(n / (k * count(class))) ** power``: 0 = none, 0.5 = square root, 1 = fully balanced.

    The corpus is half product/service; a team's feedback may be mostly delivery and billing.  With ``power``
    0.5 the primary head keeps its accuracy on the corpus's own mix (dev top-1 0.769 -> 0.77 in the probe) and
    gains where specific touchpoints are more common (0.603 -> 0.679 when the dev classes are reweighted to
    the issue's held-out mix); ``reports/touchpoints/README.md`` has the probe.
    """
    counts: dict[str, int] = {}
    for lab in labels:
        counts[lab] = counts.get(lab, 0) + 1
    n, k = len(labels), len(counts)
    return np.asarray([(n / (k * counts[lab])) ** power for lab in labels], np.float64)


def fit_exclusive(ctx) -> ExclusiveCalibration | None:  # type: ignore[no-untyped-def]
    """Coefficients of exclusive custom sections, fitted on one journey taxonomy's labelled stages.

    The stage texts' concept vectors come from touchpoint heads cross-fitted on the other folds of the corpus,
    so a text's own touchpoint labels never flatter its concept vector; the topic part reads the fitted topic
    head, which never saw the corpus.
    """
    data, journey = corpus_rows(ctx), ctx.cfg.exclusive_fit_journey
    presence, topics = ctx.fitted.get("touchpoints"), ctx.fitted.get("topics")
    if data is None or journey is None or presence is None or topics is None:
        return None
    section = load_taxonomy(journey_path(journey)).touchpoints
    rows = [*data.fit, *data.calibration]
    x = np.vstack([data.x_fit, data.x_cal])
    staged = [k for k, r in enumerate(rows) if r.journey == journey and r.stage in section.ids]
    base = ctx.base_encoder()
    xb = base.encode([r.text for r in rows])
    center = xb.mean(axis=0).astype(np.float32)
    protos = [centre(base.encode(e.prototype_texts()), center) for e in section.entries]
    sims, _ = zero_shot_features(centre(xb[staged], center), protos)
    concept_names = [f"touchpoint:{t}" for t in presence.labels] + [f"topic:{t}" for t in topics.labels]
    texts = [rows[k].text for k in staged]
    topic_p = topics.predict_proba(x[staged], ctx.lexical_features(texts, "topics") if topics.lexical_dim else None)
    concepts = np.hstack([_cross_fitted_presence(ctx, rows, x, staged, presence.labels), topic_p])
    profile = _profiles(ctx, section, presence, topics)
    gold = np.asarray([section.ids.index(rows[k].stage) for k in staged])
    w_sim, w_concept = _conditional_logit(sims, concepts @ profile.T, gold)
    acc = float(np.mean((w_sim * sims + w_concept * (concepts @ profile.T)).argmax(axis=1) == gold))
    ctx.progress(f"exclusive sections: fitted on {len(staged)} '{journey}' stages: w_sim {w_sim:.2f}, "
                 f"w_concept {w_concept:.2f} (accuracy there {acc:.3f}; the other journeys are held apart)")  # fmt: skip
    return ExclusiveCalibration(w_sim=w_sim, w_concept=w_concept, temperature=1.0, uncertain_below=0.5,
                                center=center, concepts=concept_names)  # fmt: skip


def _cross_fitted_presence(ctx, rows: list[CXText], x: F32, targets: list[int], labels: list[str]) -> F32:  # type: ignore[no-untyped-def]
    """Touchpoint presence of ``targets`` from heads fitted on the other 5 group folds (out-of-fold)."""
    from sklearn.linear_model import LogisticRegression

    fold = np.asarray([int(group_hash(ctx.cfg.seed + 7, r.source, r.group) * 5) for r in rows])
    out = np.zeros((len(targets), len(labels)), np.float32)
    tgt = np.asarray(targets)
    for f in range(5):
        train = np.where(fold != f)[0]
        here = np.where(fold[tgt] == f)[0]
        if not len(here):
            continue
        for j, tid in enumerate(labels):
            y = np.asarray([tid in rows[k].touchpoints for k in train], int)
            if 0 < y.sum() < len(y):
                clf = LogisticRegression(C=ctx.cfg.C_touchpoints, max_iter=2000, random_state=ctx.cfg.seed)
                out[here, j] = clf.fit(x[train], y).predict_proba(x[tgt[here]])[:, 1]
    return out


def _profiles(ctx, section, presence: LinearHead, topics: LinearHead) -> F32:  # type: ignore[no-untyped-def]
    """Each entry's concept profile: the heads' mean reading of its names and descriptions (as serving does)."""
    out = []
    for e in section.entries:
        texts = [t for t in list(e.names.values()) + list(e.descriptions.values()) if t.strip()]
        emb = ctx.embed(texts)
        lex = ctx.lexical_features(texts, "topics") if topics.lexical_dim else None
        out.append(np.hstack([presence.predict_proba(emb), topics.predict_proba(emb, lex)]).mean(axis=0))
    return np.stack(out).astype(np.float32)


def _conditional_logit(sims: F32, concept: F32, gold: np.ndarray) -> tuple[float, float]:
    """``(w_sim, w_concept)`` maximising the likelihood of the gold entry under a softmax over the entries."""

    def nll(w: np.ndarray) -> float:
        z = w[0] * sims + w[1] * concept
        z = z - z.max(axis=1, keepdims=True)
        logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
        return float(-logp[np.arange(len(gold)), gold].mean() + 1e-4 * float(w @ w))

    res = minimize(nll, np.asarray([20.0, 1.0]), method="L-BFGS-B")
    return float(res.x[0]), float(res.x[1])
