"""The fitting primitives every learned head is built from: logistic regression, temperature, threshold.

A head is a plain :class:`~voce.models.heads.LinearHead` (what the bundle stores), fitted with scikit-learn's
logistic regression on the fit rows and calibrated on the held-out calibration rows: a temperature that
minimises their negative log-likelihood and, for multi-label heads, the F1-best decision threshold.
With ``lex`` the head is hybrid: it also reads the sparse n-gram block next to the embedding.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import sparse
from sklearn.linear_model import LogisticRegression

from voce.models.heads import F32, Lexical, LinearHead


def fit_temperature(logits: F32, y: np.ndarray) -> float:
    """Temperature minimising the negative log-likelihood (grid + golden refinement)."""
    def nll(t: float) -> float:
        z = logits / t
        z = z - z.max(axis=1, keepdims=True)
        logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
        return float(-logp[np.arange(len(y)), y].mean())

    grid = np.exp(np.linspace(np.log(0.2), np.log(5.0), 41))
    best = float(grid[np.argmin([nll(float(t)) for t in grid])])
    lo, hi = best / 1.2, best * 1.2
    for _ in range(30):
        a, b = lo + (hi - lo) * 0.382, lo + (hi - lo) * 0.618
        if nll(a) < nll(b):
            hi = b
        else:
            lo = a
    return float((lo + hi) / 2)


def _design(x: F32, lex: Lexical | None) -> Any:
    """The LR design matrix: the embedding, then (for hybrid heads) the sparse n-gram block."""
    return x if lex is None else sparse.hstack([sparse.csr_matrix(x), lex], format="csr")


def _split_coef(coef: np.ndarray, dim: int, hybrid: bool) -> tuple[F32, F32 | None]:
    """Embedding weights, and the lexical ones rounded to float16 as the bundle stores them."""
    w = np.asarray(coef[:, :dim], np.float32)
    return w, (np.asarray(coef[:, dim:], np.float16).astype(np.float32) if hybrid else None)


def fit_softmax_head(
    x: F32, labels: Sequence[str], label_space: list[str], C: float, seed: int, x_cal: F32, y_cal: Sequence[str],
    lex: Lexical | None = None, lex_cal: Lexical | None = None, sample_weight: np.ndarray | None = None,
) -> LinearHead:
    """Multinomial LR over ``label_space``; classes absent from the fit rows get a -inf-like bias.

    With ``lex`` (and ``lex_cal``) the head is hybrid: it also reads those n-gram features.
    """
    idx = {lab: i for i, lab in enumerate(label_space)}
    y = np.asarray([idx[v] for v in labels])
    clf = LogisticRegression(C=C, max_iter=2000, random_state=seed)
    clf.fit(_design(x, lex), y, sample_weight=sample_weight)
    width = x.shape[1] + (lex.shape[1] if lex is not None else 0)
    coef_all = np.zeros((len(label_space), width), np.float32)
    b = np.full(len(label_space), -30.0, np.float32)
    coef = clf.coef_ if len(clf.classes_) > 2 else np.vstack([-clf.coef_[0] / 2, clf.coef_[0] / 2])
    icpt = clf.intercept_ if len(clf.classes_) > 2 else np.asarray([-clf.intercept_[0] / 2, clf.intercept_[0] / 2])
    for row, cls in enumerate(clf.classes_):
        coef_all[cls], b[cls] = coef[row], icpt[row]
    w, w_lex = _split_coef(coef_all, x.shape[1], lex is not None)
    head = LinearHead(kind="softmax", labels=list(label_space), weight=w, bias=b, lex_weight=w_lex)
    if len(y_cal) >= 20:
        y_c = np.asarray([idx[v] for v in y_cal])
        head.temperature = np.asarray([fit_temperature(head.logits(x_cal, lex_cal), y_c)], np.float32)
    return head


def fit_binary_head(
    x: F32, y: np.ndarray, C: float, seed: int, x_cal: F32, y_cal: np.ndarray, label: str,
    lex: Lexical | None = None, lex_cal: Lexical | None = None, sample_weight: np.ndarray | None = None,
) -> LinearHead:
    clf = LogisticRegression(C=C, max_iter=2000, random_state=seed, class_weight=None)
    clf.fit(_design(x, lex), y, sample_weight=sample_weight)
    w, w_lex = _split_coef(clf.coef_, x.shape[1], lex is not None)
    head = LinearHead(kind="sigmoid", labels=[label], weight=w, bias=clf.intercept_, lex_weight=w_lex)
    if len(y_cal) >= 20 and 0 < y_cal.sum() < len(y_cal):
        z = head.logits(x_cal, lex_cal)[:, 0]
        two = np.stack([np.zeros_like(z), z], axis=1)
        head.temperature = np.asarray([fit_temperature(two, y_cal.astype(int))], np.float32)
    return head


def best_threshold(p: np.ndarray, y: np.ndarray) -> float:
    """Decision threshold maximising F1 on calibration data (0.5 when too few positives)."""
    if y.sum() < 5:
        return 0.5
    grid = np.linspace(0.15, 0.85, 29)
    f1 = []
    for t in grid:
        pred = p >= t
        tp = float((pred & (y == 1)).sum())
        f1.append(2 * tp / max(float(pred.sum() + y.sum()), 1.0))
    return float(grid[int(np.argmax(f1))])
