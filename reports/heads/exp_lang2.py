"""Sentiment head invariant to a language shift estimated from the taxonomy's parallel IT/EN names+descriptions."""
from __future__ import annotations
import sys
from pathlib import Path
import numpy as np, yaml
from models.bundle import VoceBundle, SENTIMENT_LABELS
from eval.evaluate import _bundle_encoder
from training.config import TrainConfig
from training.data import load_all
from training.splits import split_examples
from training.train import fit_softmax_head, _split_calibration

mode = sys.argv[1]  # proj | aug
cfg = TrainConfig(**yaml.safe_load(open("training/configs/default.yaml")))
b = VoceBundle.load("models/bundles/default")
enc = _bundle_encoder(b, Path(".cache/voce"), None)
tax = yaml.safe_load(open("models/resources/taxonomy_default.yaml"))
it_t, en_t = [], []
for sec in ("topics", "touchpoints"):
    for e in tax[sec]:
        for k in ("names", "descriptions"):
            if "it" in e.get(k, {}) and "en" in e.get(k, {}):
                it_t.append(e[k]["it"]); en_t.append(e[k]["en"])
D = enc.encode(it_t) - enc.encode(en_t)
U, S, _ = np.linalg.svd(D.T, full_matrices=False)
k = int(sys.argv[2]) if len(sys.argv) > 2 else 1
t = D.mean(0)
rows = [e for r in load_all("/work/shared/data").values() for e in r]
train, dev = split_examples(rows, cfg.dev_fraction, cfg.seed)
fit, cal = _split_calibration(train, cfg)
texts = sorted({e.text for e in train}); V = enc.encode(texts); idx = {x: i for i, x in enumerate(texts)}
X = lambda exs: V[[idx[e.text] for e in exs]]
s_fit = [e for e in fit if e.sentiment]; s_cal = [e for e in cal if e.sentiment]
if mode == "proj":
    Q = U[:, :k] if k > 0 else (t / np.linalg.norm(t))[:, None]
    P = np.eye(V.shape[1], dtype=np.float32) - Q @ Q.T
    h = fit_softmax_head(X(s_fit) @ P, [e.sentiment for e in s_fit], SENTIMENT_LABELS, cfg.C_sentiment, cfg.seed,
                         X(s_cal) @ P, [e.sentiment for e in s_cal])
    h.weight = (h.weight @ P).astype(np.float32)
else:  # aug: every row also appears shifted into the other language
    sign = np.array([-1.0 if e.language == "it" else 1.0 for e in s_fit], np.float32)[:, None]
    xa = np.vstack([X(s_fit), X(s_fit) + sign * t[None, :]])
    ya = [e.sentiment for e in s_fit] * 2
    h = fit_softmax_head(xa, ya, SENTIMENT_LABELS, cfg.C_sentiment, cfg.seed, X(s_cal), [e.sentiment for e in s_cal])
b.sentiment = h
b.version = f"lang-{mode}{k}"
b.adapter = Path("models/bundles/default/encoder_adapter.safetensors")
b.save(f"var/bundle_{mode}{k}")
print("norm t", np.linalg.norm(t), "singular", S[:5])
