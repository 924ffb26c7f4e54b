"""Proxy: aspect polarity from the clause that best matches the topic vs from the whole sentence."""
from __future__ import annotations
import re
from pathlib import Path
import numpy as np
from models.bundle import VoceBundle
from eval.evaluate import _bundle_encoder
from training.data import load_all, SEMEVAL, ABSITA, SEMEVAL_TOPIC_MAP
from training.splits import split_examples

import sys
sys.path.insert(0, "reports/heads")
from exp_clause_split import clauses  # noqa: E402

b = VoceBundle.load("models/bundles/default")
enc = _bundle_encoder(b, Path(".cache/voce"), None)
rows = [e for r in load_all("/work/shared/data").values() for e in r]
train, dev = split_examples(rows, 0.2, 13)
THREE = ["positive", "neutral", "negative"]
def pol3(p4): return THREE[int(np.argmax([p4[0] + p4[3] / 2, p4[1], p4[2] + p4[3] / 2]))]
def predict(text, topic, mode):
    units = [text] if mode == "sentence" else clauses(text)
    if mode == "both" and len(units) > 1:
        units = units + [text]
    emb = enc.encode(units); lex = b.lexical_features(units)
    head = b.topic_polarity.get(topic, b.sentiment)
    if len(units) > 1 and topic in b.topics.labels:
        j = b.topics.labels.index(topic)
        k = int(np.argmax(b.topics.predict_proba(emb, lex)[:, j]))
    else:
        k = 0
    lx = lex[k:k+1] if lex is not None else None
    return head.predict_proba(emb[k:k+1], lx)[0]
se = [e for e in dev if e.source == SEMEVAL]
ops = [(e, op) for e in se for op in e.raw.get("opinions", [])]
ab = [(e, t, p) for e in dev if e.source == ABSITA and e.topics for t, p in e.topics.items()]
multi = sum(len(clauses(e.text)) > 1 for e, _ in ops)
print("semeval opinions", len(ops), "in multi-clause sentences", multi)
for mode in ("sentence", "clause", "both"):
    acc = np.mean([pol3(predict(e.text, SEMEVAL_TOPIC_MAP[op["category"]], mode)) == op["polarity"] for e, op in ops])
    lab = ["positive", "neutral", "negative", "mixed"]
    acc_ab = np.mean([lab[int(np.argmax(predict(e.text, t, mode)))] == p for e, t, p in ab])
    print(mode, f"semeval polarity acc={acc:.4f}  absita gold-aspect polarity acc={acc_ab:.4f} (n={len(ab)})", flush=True)
