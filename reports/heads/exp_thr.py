"""Proxy: hybrid LR topic heads (20k+50k n-grams) vs their average with an MLP on the embedding."""
from __future__ import annotations
from pathlib import Path
import numpy as np
from scipy import sparse
from sklearn.linear_model import LogisticRegression
from sklearn.neural_network import MLPClassifier
from training.data import load_all, ABSITA, SEMEVAL, AIRLINE
from training.splits import split_examples
from models.bundle import VoceBundle
from models.lexical import LexicalFeaturizer, LexicalSpec
from eval.evaluate import _bundle_encoder

bundle = VoceBundle.load(Path("models/bundles/default"))
enc = _bundle_encoder(bundle, Path(".cache/voce"), None)
rows = [e for r in load_all("/work/shared/data").values() for e in r]
train, dev = split_examples(rows, 0.2, 13)
fit, cal = split_examples(train, 0.15, 14)
texts = sorted({e.text for e in rows})
V = enc.encode(texts); idx = {t: i for i, t in enumerate(texts)}
lexf = LexicalFeaturizer.fit(sorted({e.text for e in train}), LexicalSpec(20000, 50000, 3))
def X(exs): return V[[idx[e.text] for e in exs]]
def F(exs): return sparse.hstack([sparse.csr_matrix(X(exs)), lexf.transform([e.text for e in exs])]).tocsr()
t_fit = [e for e in fit if e.topics is not None]; t_cal = [e for e in cal if e.topics is not None]
t_dev = [e for e in dev if e.topics is not None]
topics = [t for t in sorted({k for e in t_fit for k in e.topics}) if sum(t in e.topics for e in t_fit) >= 40]
Y = lambda exs: np.array([[t in e.topics for t in topics] for e in exs], int)
def best_thr(p, y):
    grid = np.linspace(0.05, 0.9, 35); f = [2*((p>=t)&(y==1)).sum()/max((p>=t).sum()+y.sum(),1) for t in grid]
    return grid[int(np.argmax(f))]
def report(name, pc, pd):
    yc = Y(t_cal); th = [best_thr(pc[:, j], yc[:, j]) for j in range(len(topics))]
    pred = pd >= np.array(th)[None, :]
    out = []
    for src in (ABSITA, SEMEVAL, AIRLINE):
        ii = [i for i, e in enumerate(t_dev) if e.source == src]
        space = sorted({k for i in ii for k in t_dev[i].topics})
        tp = fp = fn = 0
        for i in ii:
            g = set(t_dev[i].topics); p = {t for j, t in enumerate(topics) if t in space and pred[i, j]}
            tp += len(g & p); fp += len(p - g); fn += len(g - p)
        out.append(f"{src} F1={2*tp/max(2*tp+fp+fn,1):.4f}")
    print(name, *out, flush=True)
ff, fc, fd = F(t_fit), F(t_cal), F(t_dev); yf = Y(t_fit)
lr_c = np.zeros((len(t_cal), len(topics))); lr_d = np.zeros((len(t_dev), len(topics)))
for j in range(len(topics)):
    clf = LogisticRegression(C=8.0, max_iter=3000).fit(ff, yf[:, j])
    lr_c[:, j] = clf.predict_proba(fc)[:, 1]; lr_d[:, j] = clf.predict_proba(fd)[:, 1]
report("hybrid LR", lr_c, lr_d)

def report_lang(name, pc, pd):
    yc = Y(t_cal)
    lang_c = np.array([e.language for e in t_cal]); lang_d = np.array([e.language for e in t_dev])
    th_all = np.array([best_thr(pc[:, j], yc[:, j]) for j in range(len(topics))])
    pred = pd >= th_all[None, :]
    for lg in ("it", "en"):
        mc = lang_c == lg
        th = np.array([best_thr(pc[mc, j], yc[mc, j]) if yc[mc, j].sum() >= 5 else th_all[j] for j in range(len(topics))])
        md = lang_d == lg
        pred[md] = pd[md] >= th[None, :]
    out = []
    for src in (ABSITA, SEMEVAL, AIRLINE):
        ii = [i for i, e in enumerate(t_dev) if e.source == src]
        space = sorted({k for i in ii for k in t_dev[i].topics})
        tp = fp = fn = 0
        for i in ii:
            g = set(t_dev[i].topics); p = {t for j, t in enumerate(topics) if t in space and pred[i, j]}
            tp += len(g & p); fp += len(p - g); fn += len(g - p)
        out.append(f"{src} F1={2*tp/max(2*tp+fp+fn,1):.4f}")
    print(name, *out, flush=True)
report_lang("hybrid LR, per-language thresholds", lr_c, lr_d)
