"""The shipped hybrid LR topic heads (20k + 50k n-grams), averaged with an MLP on the embedding, and with topic
thresholds tuned per language instead of per topic.

    python reports/heads/exp_ens.py      # -> exp_ens.log
"""
from __future__ import annotations

import sys

import numpy as np
from scipy import sparse
from sklearn.linear_model import LogisticRegression

sys.path.insert(0, "reports/heads")
from exp_mlp import mlp_probs  # noqa: E402
from models.lexical import LexicalFeaturizer, LexicalSpec  # noqa: E402
from probe import X, Y, best_thr, report, source_f1, t_cal, t_dev, t_fit, topics, train  # noqa: E402

lexf = LexicalFeaturizer.fit(sorted({e.text for e in train}), LexicalSpec(20000, 50000, 3))


def F(exs):  # noqa: ANN001, ANN201
    return sparse.hstack([sparse.csr_matrix(X(exs)), lexf.transform([e.text for e in exs])]).tocsr()


ff, fc, fd = F(t_fit), F(t_cal), F(t_dev)
lr_c, lr_d = np.zeros((len(t_cal), len(topics))), np.zeros((len(t_dev), len(topics)))
for j, col in enumerate(Y(t_fit).T):
    clf = LogisticRegression(C=8.0, max_iter=3000).fit(ff, col)
    lr_c[:, j], lr_d[:, j] = clf.predict_proba(fc)[:, 1], clf.predict_proba(fd)[:, 1]
report("hybrid LR", lr_c, lr_d)

# per-language thresholds: tuned on each language's calibration rows (all languages' rows when < 5 positives)
yc = Y(t_cal)
lang_c, lang_d = np.array([e.language for e in t_cal]), np.array([e.language for e in t_dev])
th_all = np.array([best_thr(lr_c[:, j], yc[:, j]) for j in range(len(topics))])
pred = lr_d >= th_all[None, :]
for lg in ("it", "en"):
    mc = lang_c == lg
    th = np.array([best_thr(lr_c[mc, j], yc[mc, j]) if yc[mc, j].sum() >= 5 else th_all[j] for j in range(len(topics))])
    pred[lang_d == lg] = lr_d[lang_d == lg] >= th[None, :]
print("hybrid LR, per-language thresholds", *source_f1(pred), flush=True)

ms = []
for seed in (0, 1, 2):
    ms.append(mlp_probs(512, 1e-3, seed))
    report(f"avg(hybrid, mlp s{seed})", (lr_c + ms[-1][0]) / 2, (lr_d + ms[-1][1]) / 2)
report("avg(hybrid, mlp x3)", (lr_c + np.mean([a for a, _ in ms], 0)) / 2, (lr_d + np.mean([b for _, b in ms], 0)) / 2)
