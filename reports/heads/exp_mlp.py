"""Proxy: MLP multi-label topic head vs per-topic LR, on the shipped embeddings (cached)."""
from __future__ import annotations
import sys, time
from pathlib import Path
import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.neural_network import MLPClassifier
from training.data import load_all, ABSITA, SEMEVAL, AIRLINE
from training.splits import split_examples
from models.bundle import VoceBundle
from eval.evaluate import _bundle_encoder

bundle = VoceBundle.load(Path("models/bundles/default"))
enc = _bundle_encoder(bundle, Path(".cache/voce"), None)
rows = [e for r in load_all("/work/shared/data").values() for e in r]
train, dev = split_examples(rows, 0.2, 13)
fit, cal = split_examples(train, 0.15, 14)
texts = sorted({e.text for e in rows})
V = enc.encode(texts); idx = {t: i for i, t in enumerate(texts)}
def X(exs): return V[[idx[e.text] for e in exs]]
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
xf, xc, xd = X(t_fit), X(t_cal), X(t_dev); yf = Y(t_fit)
for h, a in [(512, 1e-3), (512, 1e-2), (1024, 1e-2)]:
    t0 = time.time()
    ps = []
    for seed in (0, 1, 2):
        m = MLPClassifier(hidden_layer_sizes=(h,), alpha=a, early_stopping=True, random_state=seed, max_iter=200,
                          validation_fraction=0.1, n_iter_no_change=8).fit(xf * 5, yf)
        ps.append((m.predict_proba(xc * 5), m.predict_proba(xd * 5)))
        report(f"mlp h={h} a={a} seed={seed}", *ps[-1])
    report(f"mlp h={h} a={a} ens3", np.mean([p[0] for p in ps], 0), np.mean([p[1] for p in ps], 0))
    print("  time", time.time() - t0, flush=True)
