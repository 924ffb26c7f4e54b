"""Metric definitions, pure numpy/scikit-learn, written to match the official task scorers.

Published numbers are only comparable when the metric is the one the task defined,
so the task-specific functions follow the organisers' definitions (cited in each
docstring) rather than sklearn defaults.  The general-purpose ones (macro-F1,
calibration, AUC) are the usual textbook definitions, with the edge cases made
explicit: an undefined metric raises ``ValueError`` instead of quietly returning 0
or ``nan`` into a report.

Conventions: precision with no predictions and recall with no gold items count as
0 (as the official scorers do), and F1 is 0 when precision + recall is 0.  Label
keys in returned dicts are ``str(label)`` so reports serialise to JSON unchanged.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Sequence, Sized
from typing import Any

import numpy as np
import numpy.typing as npt
from sklearn.metrics import f1_score, precision_recall_fscore_support, roc_auc_score

Labels = Sequence[Hashable] | npt.NDArray[Any]

#: 4-way sentiment -> SENTIPOLC (opos, oneg) flags; mixed carries both polarities
SENTIMENT_FLAGS: dict[str, tuple[int, int]] = {
    "positive": (1, 0),
    "negative": (0, 1),
    "neutral": (0, 0),
    "mixed": (1, 1),
}


def _prf(tp: int, fp: int, fn: int) -> dict[str, float]:
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "tp": float(tp),
        "fp": float(fp),
        "fn": float(fn),
    }


def _same_length(a: Sized, b: Sized, what: str = "gold and pred") -> None:
    if len(a) != len(b):
        raise ValueError(f"{what} differ in length: {len(a)} vs {len(b)}")
    if len(a) == 0:
        raise ValueError(f"{what} are empty")


# -------------------------------------------------------------------------- SENTIPOLC


def sentiment_to_flags(label: str) -> tuple[int, int]:
    """(opos, oneg) for a 4-way label, so 4-way predictions can be scored as SENTIPOLC."""
    try:
        return SENTIMENT_FLAGS[label]
    except KeyError:
        raise ValueError(f"unknown sentiment label {label!r}") from None


def sentiments_to_flags(labels: Iterable[str]) -> tuple[npt.NDArray[np.int_], npt.NDArray[np.int_]]:
    """Vectorised :func:`sentiment_to_flags`: ``(opos array, oneg array)``."""
    pairs = [sentiment_to_flags(label) for label in labels]
    pos = np.asarray([p for p, _ in pairs], dtype=int)
    neg = np.asarray([n for _, n in pairs], dtype=int)
    return pos, neg


def _binary_class_f1(gold: npt.NDArray[np.int_], pred: npt.NDArray[np.int_], cls: int) -> float:
    tp = int(np.sum((gold == cls) & (pred == cls)))
    fp = int(np.sum((gold != cls) & (pred == cls)))
    fn = int(np.sum((gold == cls) & (pred != cls)))
    return _prf(tp, fp, fn)["f1"]


def _as_flags(values: Labels, name: str) -> npt.NDArray[np.int_]:
    arr = np.asarray(values).astype(int).ravel()
    if not np.isin(arr, (0, 1)).all():
        raise ValueError(f"{name} must contain only 0/1 flags")
    return arr


def sentipolc_polarity_f(
    gold_pos: Labels,
    gold_neg: Labels,
    pred_pos: Labels,
    pred_neg: Labels,
) -> dict[str, float]:
    """SENTIPOLC 2016 task 2 (polarity) score.

    Definition (Barbieri et al., "Overview of the EVALITA 2016 SENTIment POLarity
    Classification Task", CEUR-WS Vol-1749, Sec. 5): the ``opos`` and ``oneg``
    flags are scored as two independent binary problems.  For each, the F1 of
    class 0 and the F1 of class 1 are averaged: ``F_pos = (F_pos_0 + F_pos_1) / 2``,
    likewise ``F_neg``; the task score is ``F = (F_pos + F_neg) / 2``.  So a mixed
    tweet (1, 1) predicted positive (1, 0) is right on ``opos`` and wrong on
    ``oneg``.  Returns every component, ``"f"`` being the ranked number.
    """
    gp, gn = _as_flags(gold_pos, "gold_pos"), _as_flags(gold_neg, "gold_neg")
    pp, pn = _as_flags(pred_pos, "pred_pos"), _as_flags(pred_neg, "pred_neg")
    for a, b, what in ((gp, pp, "opos gold/pred"), (gn, pn, "oneg gold/pred"), (gp, gn, "gold flags")):
        _same_length(a, b, what)
    out = {
        "f_pos_0": _binary_class_f1(gp, pp, 0),
        "f_pos_1": _binary_class_f1(gp, pp, 1),
        "f_neg_0": _binary_class_f1(gn, pn, 0),
        "f_neg_1": _binary_class_f1(gn, pn, 1),
    }
    out["f_pos"] = (out["f_pos_0"] + out["f_pos_1"]) / 2
    out["f_neg"] = (out["f_neg_0"] + out["f_neg_1"]) / 2
    out["f"] = (out["f_pos"] + out["f_neg"]) / 2
    return out


# ----------------------------------------------------------------------------- ABSITA


def absita_aspect_detection_f1(gold_presence: npt.ArrayLike, pred_presence: npt.ArrayLike) -> dict[str, float]:
    """ABSITA 2018 Aspect Category Detection (ACD) micro precision/recall/F1.

    Definition (Basile et al., "Overview of the EVALITA 2018 Aspect-based Sentiment
    Analysis task (ABSITA)", CEUR-WS Vol-2263, and the task's evaluation page):
    with ``S`` the set of (sentence, aspect) annotations a system returns over the
    whole test set and ``G`` the gold set, ``P = |S ∩ G| / |S|``,
    ``R = |S ∩ G| / |G|``, ``F1 = 2PR / (P + R)`` (micro-averaged over all
    sentences and aspects).  Inputs: ``(n_sentences, n_aspects)`` 0/1 presence
    matrices in the same aspect order (``voce.data.datasets.absita_flag_matrix(...)[..., 0]``).
    """
    gold = np.asarray(gold_presence).astype(int)
    pred = np.asarray(pred_presence).astype(int)
    if gold.shape != pred.shape or gold.ndim != 2:
        raise ValueError(f"expected two equal (n, aspects) matrices, got {gold.shape} and {pred.shape}")
    tp = int(np.sum((gold == 1) & (pred == 1)))
    return _prf(tp, int(np.sum((gold == 0) & (pred == 1))), int(np.sum((gold == 1) & (pred == 0))))


def absita_aspect_polarity_f1(gold: npt.ArrayLike, pred: npt.ArrayLike) -> dict[str, float]:
    """ABSITA 2018 Aspect Category Polarity (ACP) micro precision/recall/F1.

    Definition (same sources as :func:`absita_aspect_detection_f1`): ACP scores
    the whole chain, i.e. sets of (sentence, aspect, polarity) pairs, with the same
    micro P/R/F1.  Our reading of the flag format: the positive and the negative
    flag of a *present* aspect are separate binary labels, so an aspect contributes
    a ``positive`` pair when its positive flag is set and a ``negative`` pair when
    its negative flag is set.  Consequences: a mixed aspect (both flags) is two
    pairs, and predicting only one of them is one TP + one FN; a present aspect
    with neither flag contributes no pair (the format has no neutral label; it
    never occurs in the training data); a flag on an aspect not marked present is
    ignored, on both sides, because without presence there is no detected aspect
    for it to qualify.  Inputs: ``(n_sentences, n_aspects, 3)`` arrays of
    (presence, positive, negative), e.g. ``voce.data.datasets.absita_flag_matrix``.
    """
    g = np.asarray(gold).astype(int)
    p = np.asarray(pred).astype(int)
    if g.shape != p.shape or g.ndim != 3 or g.shape[-1] != 3:
        raise ValueError(f"expected two equal (n, aspects, 3) arrays, got {g.shape} and {p.shape}")
    g_pairs = (g[..., 1:] == 1) & (g[..., :1] == 1)
    p_pairs = (p[..., 1:] == 1) & (p[..., :1] == 1)
    tp = int(np.sum(g_pairs & p_pairs))
    return _prf(tp, int(np.sum(~g_pairs & p_pairs)), int(np.sum(g_pairs & ~p_pairs)))


# ---------------------------------------------------------------------------- SemEval


def semeval_category_f1(
    gold_sets: Sequence[Iterable[str]],
    pred_sets: Sequence[Iterable[str]],
) -> dict[str, float]:
    """SemEval-2016 Task 5, subtask 1, slot 1 (aspect category detection) micro P/R/F1.

    Definition (Pontiki et al., "SemEval-2016 Task 5: Aspect Based Sentiment
    Analysis", SemEval 2016, Sec. 4 and the official ``A.jar`` scorer): per
    sentence, the set of distinct ``ENTITY#ATTRIBUTE`` categories (a category
    annotated twice with different targets counts once); TP/FP/FN are summed over
    all sentences, then micro P/R/F1.  Sentences without opinions are empty gold
    sets, where every predicted category is a false positive.  Published scores
    are percentages (73.03 = 0.7303 here).
    """
    _same_length(gold_sets, pred_sets, "gold_sets and pred_sets")
    tp = fp = fn = 0
    for g_iter, p_iter in zip(gold_sets, pred_sets, strict=True):
        g, p = set(g_iter), set(p_iter)
        tp += len(g & p)
        fp += len(p - g)
        fn += len(g - p)
    return _prf(tp, fp, fn)


def semeval_polarity_accuracy(gold: Sequence[str], pred: Sequence[str]) -> float:
    """SemEval-2016 Task 5, subtask 1, slot 3 (polarity, gold categories given) accuracy.

    Definition (Pontiki et al. 2016, phase B): systems receive the gold opinion
    tuples and label each with positive/negative/neutral; the score is the share
    of gold tuples labelled correctly.  Pass one entry per gold opinion, aligned
    (e.g. flattened ``Example.raw["opinions"]`` polarities vs predictions).
    """
    return accuracy(gold, pred)


# --------------------------------------------------------------------------- general


def accuracy(gold: Labels, pred: Labels) -> float:
    """Share of exact matches."""
    _same_length(gold, pred)
    return float(np.mean([g == p for g, p in zip(gold, pred, strict=True)]))


def macro_f1(gold: Labels, pred: Labels, labels: Sequence[Hashable] | None = None) -> float:
    """Unweighted mean of per-class F1, so rare classes (mixed, neutral) weigh as much as common ones.

    ``labels`` fixes the class set; a listed class that occurs in neither gold nor
    pred then scores F1 = 0 and drags the mean down, so pass it only when every
    class should be present.  With ``labels=None`` the mean runs over the classes
    that occur in gold or pred (sklearn's default).
    """
    _same_length(gold, pred)
    return float(
        f1_score(
            list(gold),
            list(pred),
            labels=None if labels is None else list(labels),
            average="macro",
            zero_division=0,
        )
    )


def per_class_report(gold: Labels, pred: Labels, labels: Sequence[Hashable]) -> dict[str, dict[str, float]]:
    """Precision/recall/F1/support per class, keyed by ``str(label)``."""
    _same_length(gold, pred)
    p, r, f, s = precision_recall_fscore_support(
        list(gold), list(pred), labels=list(labels), average=None, zero_division=0
    )
    return {
        str(label): {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": float(s[i])}
        for i, label in enumerate(labels)
    }


def confusion_matrix_dict(gold: Labels, pred: Labels, labels: Sequence[Hashable]) -> dict[str, dict[str, int]]:
    """``{gold label: {predicted label: count}}`` with every label as row and column.

    A gold or predicted value outside ``labels`` raises: silently dropping it (as
    sklearn does) would make rows not sum to the class support.
    """
    _same_length(gold, pred)
    known = {label: str(label) for label in labels}
    out = {str(g): {str(p): 0 for p in labels} for g in labels}
    for g, p in zip(gold, pred, strict=True):
        if g not in known or p not in known:
            raise ValueError(f"label outside {list(labels)!r}: gold={g!r} pred={p!r}")
        out[known[g]][known[p]] += 1
    return out


def roc_auc(labels: Labels, scores: npt.ArrayLike) -> float:
    """Binary ROC AUC (e.g. detractor probability vs the 0/1 proxy).

    AUC compares positives with negatives, so it does not exist when the gold
    labels hold one class; that raises a ``ValueError`` naming the cause rather
    than sklearn's generic warning-and-nan.
    """
    y = np.asarray(labels).astype(int).ravel()
    s = np.asarray(scores, dtype=float).ravel()
    _same_length(y, s, "labels and scores")
    classes = set(np.unique(y).tolist())
    if not classes <= {0, 1}:
        raise ValueError(f"roc_auc needs 0/1 labels, got classes {sorted(classes)}")
    if len(classes) < 2:
        raise ValueError(
            f"roc_auc is undefined: every gold label is {classes.pop()}; "
            "it needs at least one positive and one negative example"
        )
    return float(roc_auc_score(y, s))


def _top_label(probs: npt.ArrayLike, labels: Labels) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.bool_]]:
    """(confidence, correct) per row; a 1-D input is P(class 1) of a binary problem."""
    p = np.asarray(probs, dtype=float)
    y = np.asarray(labels).astype(int).ravel()
    if p.ndim == 1:
        p = np.stack([1.0 - p, p], axis=1)
    if p.ndim != 2:
        raise ValueError(f"probs must be (n,) or (n, classes), got shape {p.shape}")
    _same_length(p, y, "probs and labels")
    if not np.isfinite(p).all() or (p < 0).any() or (p > 1).any():
        raise ValueError("probs must be finite and within [0, 1]")
    if (y < 0).any() or (y >= p.shape[1]).any():
        raise ValueError(f"labels must be class indices in [0, {p.shape[1]})")
    return p.max(axis=1), p.argmax(axis=1) == y


def reliability_bins(probs: npt.ArrayLike, labels: Labels, n_bins: int = 15) -> dict[str, Any]:
    """Data for a reliability diagram: per equal-width confidence bin, count, mean confidence, accuracy.

    Bins are ``(lo, hi]`` over the top-label confidence (the first bin also takes
    0), as in Guo et al. 2017.  Empty bins report ``None`` confidence/accuracy so
    the result stays JSON-serialisable.  Also returns ``ece`` and ``n``.
    """
    if n_bins < 1:
        raise ValueError(f"n_bins must be positive, got {n_bins}")
    conf, correct = _top_label(probs, labels)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    idx = np.digitize(conf, edges[1:-1], right=True)
    counts: list[int] = []
    confidence: list[float | None] = []
    acc: list[float | None] = []
    ece = 0.0
    for b in range(n_bins):
        mask = idx == b
        n_b = int(mask.sum())
        counts.append(n_b)
        if n_b == 0:
            confidence.append(None)
            acc.append(None)
            continue
        c_b, a_b = float(conf[mask].mean()), float(correct[mask].mean())
        confidence.append(c_b)
        acc.append(a_b)
        ece += n_b / len(conf) * abs(a_b - c_b)
    return {
        "bin_lower": edges[:-1].tolist(),
        "bin_upper": edges[1:].tolist(),
        "count": counts,
        "confidence": confidence,
        "accuracy": acc,
        "ece": ece,
        "n": len(conf),
    }


def expected_calibration_error(probs: npt.ArrayLike, labels: Labels, n_bins: int = 15) -> float:
    """Top-label expected calibration error.

    Definition (Naeini et al. 2015; Guo et al., "On Calibration of Modern Neural
    Networks", ICML 2017, eq. 3): ``ECE = sum_b |B_b| / n * |acc(B_b) - conf(B_b)|``
    over ``n_bins`` equal-width bins of the predicted class's probability.
    ``probs`` is ``(n, classes)`` with ``labels`` as class indices, or ``(n,)``
    holding P(class 1) of a binary problem (one topic head, the detractor head).
    """
    return float(reliability_bins(probs, labels, n_bins)["ece"])


def confidence_ece(confidence: npt.ArrayLike, correct: npt.ArrayLike, n_bins: int = 10) -> float:
    """ECE of a decision's stated confidence against whether it was right (any number of classes).

    The same binning as :func:`reliability_bins`, for predictions whose confidence
    is given directly (an exclusive section's choice among entries it chose from).
    """
    conf = np.asarray(confidence, dtype=float).ravel()
    ok = np.asarray(correct, dtype=float).ravel()
    _same_length(conf, ok, "confidence and correct")
    if not len(conf):
        raise ValueError("no predictions")
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    idx = np.digitize(conf, edges[1:-1], right=True)
    return float(sum((idx == b).sum() / len(conf) * abs(ok[idx == b].mean() - conf[idx == b].mean())
                     for b in range(n_bins) if (idx == b).any()))  # fmt: skip


def mean_std(values: Iterable[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof=1) of e.g. per-fold scores; std 0 for one value.

    ddof=1 because folds are a sample of possible splits; reporting the population
    std would understate how much a score moves between splits.
    """
    arr = np.asarray(list(values), dtype=float)
    if arr.size == 0:
        raise ValueError("mean_std of no values")
    if not np.isfinite(arr).all():
        raise ValueError("mean_std got a non-finite value")
    std = float(arr.std(ddof=1)) if arr.size > 1 else 0.0
    return float(arr.mean()), std


__all__ = [
    "SENTIMENT_FLAGS",
    "absita_aspect_detection_f1",
    "absita_aspect_polarity_f1",
    "accuracy",
    "confusion_matrix_dict",
    "expected_calibration_error",
    "macro_f1",
    "mean_std",
    "per_class_report",
    "reliability_bins",
    "roc_auc",
    "semeval_category_f1",
    "semeval_polarity_accuracy",
    "sentiment_to_flags",
    "sentiments_to_flags",
    "sentipolc_polarity_f",
]


def _needs_topics() -> dict[str, frozenset[str]]:
    """Benchmark metric -> the taxonomy topic ids it reads (a taxonomy without them cannot be scored on it)."""
    from voce.data.datasets import ABSITA_TOPIC_MAP, AIRLINE_TOPIC_MAP, SEMEVAL_TOPIC_MAP

    absita = frozenset(ABSITA_TOPIC_MAP.values())
    return {
        "absita_aspect_detection_micro_f1": absita,
        "absita_aspect_polarity_micro_f1": absita,
        "semeval_voce_topic_micro_f1": frozenset(SEMEVAL_TOPIC_MAP.values()),
        "airline_complaint_topic_macro_f1": frozenset(t for t in AIRLINE_TOPIC_MAP.values() if t),
    }


def not_applicable(m: dict[str, Any], topic_ids: Iterable[str]) -> list[str]:
    """Set to None ("n/a") the benchmark metrics of ``m`` whose topics the taxonomy lacks; returns their names.

    A custom taxonomy without ABSITA's or SemEval's topics can never predict them, so their F1 would read 0.0: a
    fake zero in the manifest and ``/info``.  None says the metric does not apply.
    """
    have = set(topic_ids)
    out = [name for name, needs in _needs_topics().items() if name in m and not needs <= have]
    for name in out:
        m[name] = None
    return out
