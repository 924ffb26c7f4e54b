"""Quick proxy: do lexical n-gram features on top of the shipped embeddings help the topic/polarity heads?"""
from __future__ import annotations
import sys, time
from pathlib import Path
import numpy as np
from scipy import sparse
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from training.data import load_all, ABSITA, SEMEVAL, AIRLINE
from training.splits import split_examples
from models.bundle import VoceBundle
from models.encoders.cache import CachedEncoder
from eval.evaluate import _bundle_encoder

bundle = VoceBundle.load(Path("models/bundles/default"))
enc = _bundle_encoder(bundle, Path(".cache/voce"), None)
rows = [e for r in load_all("/work/shared/data").values() for e in r]
train, dev = split_examples(rows, 0.2, 13)
fit, cal = split_examples(train, 0.15, 14)
t0 = time.time()
texts = sorted({e.text for e in rows})
V = enc.encode(texts); idx = {t: i for i, t in enumerate(texts)}
enc.save(); print("embedded", len(texts), time.time() - t0, flush=True)
def X(exs): return V[[idx[e.text] for e in exs]]
tf_word = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True, max_features=int(sys.argv[2]))
tf_char = TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), min_df=3, sublinear_tf=True, max_features=int(sys.argv[3]))
tr_texts = [e.text for e in train]
tf_word.fit(tr_texts); tf_char.fit(tr_texts)
def L(exs, w):
    t = [e.text for e in exs]
    return sparse.hstack([tf_word.transform(t), tf_char.transform(t)]).tocsr() * w
t_fit = [e for e in fit if e.topics is not None]; t_cal = [e for e in cal if e.topics is not None]
t_dev = [e for e in dev if e.topics is not None]
topics = sorted({k for e in t_fit for k in e.topics})
def best_thr(p, y):
    grid = np.linspace(0.15, 0.85, 29); f = [2*((p>=t)&(y==1)).sum()/max((p>=t).sum()+y.sum(),1) for t in grid]
    return grid[int(np.argmax(f))]
for wl in [float(sys.argv[1])]:
  for C in (8.0,):
    def feats(exs):
        x = X(exs)
        return x if wl == 0 else sparse.hstack([sparse.csr_matrix(x), L(exs, wl)]).tocsr()
    Ff, Fc, Fd = feats(t_fit), feats(t_cal), feats(t_dev)
    pred = {}
    for tid in topics:
        yf = np.array([tid in e.topics for e in t_fit], int); yc = np.array([tid in e.topics for e in t_cal], int)
        if yf.sum() < 40: continue
        clf = LogisticRegression(C=C, max_iter=3000).fit(Ff, yf)
        th = best_thr(clf.predict_proba(Fc)[:, 1], yc)
        pred[tid] = clf.predict_proba(Fd)[:, 1] >= th
    # per-source micro F1 over that source's topics
    out = []
    for src in (ABSITA, SEMEVAL, AIRLINE):
        ii = [i for i, e in enumerate(t_dev) if e.source == src]
        space = sorted({k for i in ii for k in t_dev[i].topics})
        tp = fp = fn = 0
        for i in ii:
            g = set(t_dev[i].topics); p = {t for t in space if t in pred and pred[t][i]}
            tp += len(g & p); fp += len(p - g); fn += len(g - p)
        out.append(f"{src} F1={2*tp/max(2*tp+fp+fn,1):.4f}")
    # polarity: per-topic 3-way LR on the sentence, accuracy on dev gold (topic, polarity) pairs
    corr = tot = 0
    for tid in topics:
        pf = [e for e in fit if e.topics and tid in e.topics]; pdv = [e for e in dev if e.topics and tid in e.topics]
        if len(pf) < 80 or len({e.topics[tid] for e in pf}) < 2: continue
        clf = LogisticRegression(C=4.0, max_iter=3000).fit(feats(pf), [e.topics[tid] for e in pf])
        pr = clf.predict(feats(pdv)); g = [e.topics[tid] for e in pdv]
        corr += sum(a == b for a, b in zip(pr, g)); tot += len(g)
    print(f"wl={wl} C={C}", *out, f"polarity acc={corr/tot:.4f} n={tot}", flush=True)

    # sentiment 4-way: SENTIPOLC polarity-F proxy (macro over pos/neg flags is in eval; here macro-F1 4-way) + airline 3-way
    from sklearn.metrics import f1_score
    s_fit = [e for e in fit if e.sentiment]; 
    clf = LogisticRegression(C=4.0, max_iter=3000).fit(feats(s_fit), [e.sentiment for e in s_fit])
    for src in ("sentipolc2016", AIRLINE, "ate_absita2020"):
        d = [e for e in dev if e.sentiment and e.source == src]
        if not d: continue
        pr = clf.predict(feats(d)); g = [e.sentiment for e in d]
        print(f"  sentiment {src} macroF1={f1_score(g, pr, average='macro'):.4f} acc={np.mean([a==b for a,b in zip(pr,g)]):.4f}", flush=True)
