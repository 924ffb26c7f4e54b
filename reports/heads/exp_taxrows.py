"""Which rows train each topic head, and does it make topics carry across languages?

`voce train` fits each topic's head on every topic-annotated row, so an airline-only topic (customer_service) sees
every Italian hotel sentence as a negative and can learn "Italian => not this topic".  Variants:

  A    all topic-annotated rows (as shipped)
  B    only rows from datasets that annotate the topic
  A+T  A plus the taxonomy's bilingual examples (positive for their topic, negative for the others), weight W
  B+T  B plus the taxonomy's examples

Scored on: per-source dev micro-F1 (in each source's topic space, as `voce eval`); topic sets predicted for the
72 hand-written IT/EN pairs of eval/data (same set in both languages; mean Jaccard); and topics predicted outside
a dev row's source space per row (a cost B could hide from the in-space F1).

    python reports/heads/exp_taxrows.py      # -> exp_taxrows.log
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
from scipy import sparse
from sklearn.linear_model import LogisticRegression

sys.path.insert(0, "reports/heads")
from models.taxonomy import default_taxonomy  # noqa: E402
from probe import SOURCES, best_thr, enc, hybrid, hybrid_features, source_f1, t_cal, t_dev, t_fit, topics  # noqa: E402

tax = default_taxonomy()
tax_rows = [(t, e.id) for e in tax.topics.entries if e.id in topics for t in e.examples]
tax_x = hybrid_features([t for t, _ in tax_rows], enc.encode([t for t, _ in tax_rows]))
pairs = [json.loads(line) for f in ("parallel_it_en.jsonl", "touchpoints_it_en.jsonl")
         for line in Path("eval/data", f).read_text(encoding="utf-8").splitlines() if line.strip()]  # fmt: skip
par_it = hybrid_features([p["it"] for p in pairs], enc.encode([p["it"] for p in pairs]))
par_en = hybrid_features([p["en"] for p in pairs], enc.encode([p["en"] for p in pairs]))
annot = {s: {k for e in t_fit if e.source == s for k in e.topics or {}} for s in SOURCES}
ff, fc, fd = hybrid(t_fit), hybrid(t_cal), hybrid(t_dev)
src_f = np.array([e.source for e in t_fit])
src_c = np.array([e.source for e in t_cal])


def run(name: str, only_annotating: bool, tax_weight: float) -> None:
    pd, pi, pe = (np.zeros((m.shape[0], len(topics)), bool) for m in (fd, par_it, par_en))
    for j, tid in enumerate(topics):
        keep_f = np.array([tid in annot[s] for s in src_f]) if only_annotating else np.ones(len(t_fit), bool)
        keep_c = np.array([tid in annot[s] for s in src_c]) if only_annotating else np.ones(len(t_cal), bool)
        xf, yf = ff[keep_f], np.array([tid in (e.topics or {}) for e in t_fit])[keep_f].astype(int)
        w = np.ones(len(yf))
        if tax_weight > 0:
            xf = sparse.vstack([xf, tax_x]).tocsr()
            yf = np.concatenate([yf, [int(t == tid) for _, t in tax_rows]])
            w = np.concatenate([w, np.full(len(tax_rows), tax_weight)])
        clf = LogisticRegression(C=8.0, max_iter=3000).fit(xf, yf, sample_weight=w)
        yc = np.array([tid in (e.topics or {}) for e in t_cal])[keep_c].astype(int)
        th = best_thr(clf.predict_proba(fc[keep_c])[:, 1], yc)
        pd[:, j] = clf.predict_proba(fd)[:, 1] >= th
        pi[:, j] = clf.predict_proba(par_it)[:, 1] >= th
        pe[:, j] = clf.predict_proba(par_en)[:, 1] >= th
    same = float(np.mean([(a == b).all() for a, b in zip(pi, pe, strict=True)]))
    jac = float(np.mean([(a & b).sum() / max((a | b).sum(), 1) for a, b in zip(pi, pe, strict=True)]))
    outside = {s: float(np.mean([sum(pd[i, j] for j, t in enumerate(topics) if t not in annot[s])
                                 for i, e in enumerate(t_dev) if e.source == s])) for s in SOURCES}  # fmt: skip
    per_lang = f"topics/text it {pi.sum(1).mean():.2f} en {pe.sum(1).mean():.2f}"
    print(name, *source_f1(pd), f"| IT=EN sets {same:.3f} jaccard {jac:.3f} {per_lang} | outside-space/row",
          " ".join(f"{s.split('_')[0]}={v:.3f}" for s, v in outside.items()), flush=True)  # fmt: skip


run("A", False, 0)
run("B", True, 0)
for w in (1.0, 5.0):
    run(f"A+T w={w}", False, w)
    run(f"B+T w={w}", True, w)
