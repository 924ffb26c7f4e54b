"""Shared set-up of the head experiments in this folder (scratch code kept as a record, not maintained).

The split is `voce train`'s (dev 20% seed 13; calibration slice 15% seed 14); embeddings come from the shipped
bundle's encoder through the on-disk cache (`.cache/voce`); F1 is the per-source topic micro-F1 over the topics
that source annotates.  Run the scripts from the repository root.
"""
from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from eval.evaluate import _bundle_encoder
from models.bundle import VoceBundle
from training.data import ABSITA, AIRLINE, SEMEVAL, Example, load_all
from training.splits import split_examples

SOURCES = (ABSITA, SEMEVAL, AIRLINE)
bundle = VoceBundle.load(Path("models/bundles/default"))
enc = _bundle_encoder(bundle, Path(".cache/voce"), None)
rows = [e for r in load_all("/work/shared/data").values() for e in r]
train, dev = split_examples(rows, 0.2, 13)
fit, cal = split_examples(train, 0.15, 14)
_texts = sorted({e.text for e in rows})
_V = enc.encode(_texts)
enc.save()
_idx = {t: i for i, t in enumerate(_texts)}
t_fit = [e for e in fit if e.topics is not None]
t_cal = [e for e in cal if e.topics is not None]
t_dev = [e for e in dev if e.topics is not None]
#: topics with a learned head (≥ 40 training rows), as in `voce train`
topics = [t for t in sorted({k for e in t_fit for k in e.topics or {}}) if sum(t in (e.topics or {}) for e in t_fit) >= 40]


def X(exs: list[Example]) -> np.ndarray:
    return _V[[_idx[e.text] for e in exs]]


def Y(exs: list[Example]) -> np.ndarray:
    return np.array([[t in (e.topics or {}) for t in topics] for e in exs], int)


def best_thr(p: np.ndarray, y: np.ndarray, lo: float = 0.05, hi: float = 0.9, n: int = 35) -> float:
    grid = np.linspace(lo, hi, n)
    f = [2 * ((p >= t) & (y == 1)).sum() / max((p >= t).sum() + y.sum(), 1) for t in grid]
    return float(grid[int(np.argmax(f))])


def source_f1(pred: np.ndarray) -> list[str]:
    """``pred``: (len(t_dev), len(topics)) booleans -> "source F1=..." per source."""
    out = []
    for src in SOURCES:
        ii = [i for i, e in enumerate(t_dev) if e.source == src]
        space = sorted({k for i in ii for k in t_dev[i].topics or {}})
        tp = fp = fn = 0
        for i in ii:
            g = set(t_dev[i].topics or {})
            p = {t for j, t in enumerate(topics) if t in space and pred[i, j]}
            tp, fp, fn = tp + len(g & p), fp + len(p - g), fn + len(g - p)
        out.append(f"{src} F1={2 * tp / max(2 * tp + fp + fn, 1):.4f}")
    return out


def report(name: str, p_cal: np.ndarray, p_dev: np.ndarray, **grid: float) -> None:
    """Thresholds per topic from the calibration slice, then per-source F1 on dev."""
    yc = Y(t_cal)
    th = np.array([best_thr(p_cal[:, j], yc[:, j], **grid) for j in range(len(topics))])  # type: ignore[arg-type]
    print(name, *source_f1(p_dev >= th[None, :]), flush=True)


def hybrid_features(texts: list[str], emb: np.ndarray):  # noqa: ANN201
    """The shipped hybrid design: the embedding, then TF-IDF word 1-2 + char 2-5-grams (20k + 50k, fitted on train)."""
    from scipy import sparse

    return sparse.hstack([sparse.csr_matrix(emb), _lexical().transform(texts)]).tocsr()


def hybrid(exs: list[Example]):  # noqa: ANN201
    return hybrid_features([e.text for e in exs], X(exs))


def hybrid_lr() -> tuple[np.ndarray, np.ndarray]:
    """Per-topic LR (C=8) on the hybrid features of the fit rows: probabilities on the calibration slice and dev."""
    from sklearn.linear_model import LogisticRegression

    ff, fc, fd = hybrid(t_fit), hybrid(t_cal), hybrid(t_dev)
    p_c, p_d = np.zeros((len(t_cal), len(topics))), np.zeros((len(t_dev), len(topics)))
    for j, col in enumerate(Y(t_fit).T):
        clf = LogisticRegression(C=8.0, max_iter=3000).fit(ff, col)
        p_c[:, j], p_d[:, j] = clf.predict_proba(fc)[:, 1], clf.predict_proba(fd)[:, 1]
    return p_c, p_d


@functools.cache
def _lexical():  # noqa: ANN202
    from models.lexical import LexicalFeaturizer, LexicalSpec

    return LexicalFeaturizer.fit(sorted({e.text for e in train}), LexicalSpec(20000, 50000, 3))
