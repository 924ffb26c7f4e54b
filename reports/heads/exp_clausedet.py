"""Aspect detection read from clauses as well as the whole sentence: the shipped topic head scores the sentence and
each clause (split at commas, "but"/"ma"/...), and a topic's probability is the sentence's, the max over clauses, the
max of both, or their mean.  Thresholds per topic from the calibration slice.

    python reports/heads/exp_clausedet.py      # -> exp_clausedet.log
"""
from __future__ import annotations

import sys

import numpy as np

sys.path.insert(0, "reports/heads")
from exp_clause_split import clauses  # noqa: E402
from probe import bundle, enc, report, t_cal, t_dev, topics  # noqa: E402

head = bundle.topics
cols = [head.labels.index(t) for t in topics]


def probs(texts: list[str]) -> np.ndarray:
    return head.predict_proba(enc.encode(texts), bundle.lexical_features(texts))[:, cols]


def views(exs):  # noqa: ANN001, ANN201
    sent = probs([e.text for e in exs])
    parts = [clauses(e.text) for e in exs]
    flat = [c for p in parts for c in p]
    pc = probs(flat)
    cmax = np.zeros_like(sent)
    k = 0
    for i, p in enumerate(parts):
        cmax[i] = pc[k : k + len(p)].max(0)
        k += len(p)
    return sent, cmax


(sc, cc), (sd, cd) = views(t_cal), views(t_dev)
print("multi-clause dev rows", sum(len(clauses(e.text)) > 1 for e in t_dev), "of", len(t_dev), flush=True)
report("sentence", sc, sd)
report("clause max", cc, cd)
report("max(sentence, clause max)", np.maximum(sc, cc), np.maximum(sd, cd))
report("mean(sentence, clause max)", (sc + cc) / 2, (sd + cd) / 2)
report("noisy-or(sentence, clause max)", 1 - (1 - sc) * (1 - cc), 1 - (1 - sd) * (1 - cd))
