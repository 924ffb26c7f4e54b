"""The shipped hybrid LR topic heads (20k + 50k n-grams), averaged with an MLP on the embedding, and with topic
thresholds tuned per language instead of per topic.

    python reports/heads/exp_ens.py      # -> exp_ens.log
"""
from __future__ import annotations

import sys

import numpy as np

sys.path.insert(0, "reports/heads")
from exp_mlp import mlp_probs  # noqa: E402
from probe import Y, best_thr, hybrid_lr, report, source_f1, t_cal, t_dev, topics  # noqa: E402

lr_c, lr_d = hybrid_lr()
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
