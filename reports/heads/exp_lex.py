"""Do TF-IDF word 1-2 + char 2-5-grams next to the embedding help per-topic LR heads and polarity heads?

    python reports/heads/exp_lex.py 0 0.5 1.0                       # -> exp_lex.log (50k + 100k n-grams)
    python reports/heads/exp_lex.py 1.0 --words 10000 --chars 20000 --sentiment   # -> exp_lex3.log
"""
from __future__ import annotations

import argparse
import sys

import numpy as np
from scipy import sparse
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score

sys.path.insert(0, "reports/heads")
from probe import AIRLINE, X, Y, best_thr, dev, fit, report, t_cal, t_dev, t_fit, topics, train  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("weights", type=float, nargs="*", default=[0.0, 0.5, 1.0])
ap.add_argument("--words", type=int, default=50000)
ap.add_argument("--chars", type=int, default=100000)
ap.add_argument("--sentiment", action="store_true", help="also a 4-way sentiment LR")
args = ap.parse_args()
tf_word = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True, max_features=args.words)
tf_char = TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), min_df=3, sublinear_tf=True, max_features=args.chars)
tf_word.fit([e.text for e in train])
tf_char.fit([e.text for e in train])
for wl in args.weights:
    def feats(exs, wl=wl):  # noqa: ANN001, ANN202
        if wl == 0:
            return X(exs)
        t = [e.text for e in exs]
        lex = sparse.hstack([tf_word.transform(t), tf_char.transform(t)]).tocsr() * wl
        return sparse.hstack([sparse.csr_matrix(X(exs)), lex]).tocsr()
    ff, fc, fd = feats(t_fit), feats(t_cal), feats(t_dev)
    p_cal, p_dev = np.zeros((len(t_cal), len(topics))), np.zeros((len(t_dev), len(topics)))
    for j, col in enumerate(Y(t_fit).T):
        clf = LogisticRegression(C=8.0, max_iter=3000).fit(ff, col)
        p_cal[:, j], p_dev[:, j] = clf.predict_proba(fc)[:, 1], clf.predict_proba(fd)[:, 1]
    report(f"wl={wl} C=8.0", p_cal, p_dev, lo=0.15, hi=0.85, n=29)
    corr = tot = 0  # per-topic polarity LR, accuracy on the dev (topic, polarity) pairs
    for tid in topics:
        pf = [e for e in fit if e.topics and tid in e.topics]
        pdv = [e for e in dev if e.topics and tid in e.topics]
        if len(pf) < 80 or len({e.topics[tid] for e in pf if e.topics}) < 2:
            continue
        clf = LogisticRegression(C=4.0, max_iter=3000).fit(feats(pf), [e.topics[tid] for e in pf if e.topics])
        gold = [e.topics[tid] for e in pdv if e.topics]
        corr, tot = corr + int((clf.predict(feats(pdv)) == np.array(gold)).sum()), tot + len(gold)
    print(f"  polarity acc={corr / tot:.4f} n={tot}", flush=True)
    if args.sentiment:
        s_fit = [e for e in fit if e.sentiment]
        clf = LogisticRegression(C=4.0, max_iter=3000).fit(feats(s_fit), [e.sentiment for e in s_fit])
        for src in ("sentipolc2016", AIRLINE, "ate_absita2020"):
            d = [e for e in dev if e.sentiment and e.source == src]
            pr, g = clf.predict(feats(d)), [e.sentiment for e in d]
            print(f"  sentiment {src} macroF1={f1_score(g, pr, average='macro'):.4f} acc={np.mean(pr == np.array(g)):.4f}")
