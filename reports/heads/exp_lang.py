"""Variant: sentiment head fitted with the IT-EN mean-difference direction projected out (folded into W)."""
from __future__ import annotations
import sys
from pathlib import Path
import numpy as np
from models.bundle import VoceBundle
from eval.evaluate import _bundle_encoder
from training.config import TrainConfig
from training.data import load_all
from training.splits import split_examples
from training.train import fit_softmax_head, _split_calibration
from models.bundle import SENTIMENT_LABELS
import yaml

k = int(sys.argv[1])
cfg = TrainConfig(**yaml.safe_load(open("training/configs/default.yaml")))
b = VoceBundle.load("models/bundles/default")
enc = _bundle_encoder(b, Path(".cache/voce"), None)
rows = [e for r in load_all("/work/shared/data").values() for e in r]
train, dev = split_examples(rows, cfg.dev_fraction, cfg.seed)
fit, cal = _split_calibration(train, cfg)
texts = sorted({e.text for e in train}); V = enc.encode(texts); idx = {t: i for i, t in enumerate(texts)}
X = lambda exs: V[[idx[e.text] for e in exs]]
lang = np.array([e.language == "it" for e in train if e.text in idx])
Xt = X(train)
# language subspace: top-k LDA-like directions = mean difference (k=1), plus class-conditional mean differences
dirs = []
for s in ([None] if k == 1 else [None, "positive", "neutral", "negative"]):
    sel = [e.sentiment == s if s else True for e in train]
    sel = np.array(sel)
    d = Xt[sel & lang].mean(0) - Xt[sel & ~lang].mean(0); dirs.append(d)
U, _, _ = np.linalg.svd(np.stack(dirs).T, full_matrices=False)
U = U[:, :k]
P = np.eye(V.shape[1], dtype=np.float32) - U @ U.T
s_fit = [e for e in fit if e.sentiment]; s_cal = [e for e in cal if e.sentiment]
h = fit_softmax_head(X(s_fit) @ P, [e.sentiment for e in s_fit], SENTIMENT_LABELS, cfg.C_sentiment, cfg.seed,
                     X(s_cal) @ P, [e.sentiment for e in s_cal])
h.weight = (h.weight @ P).astype(np.float32)
b.sentiment = h
b.version = f"lexproj{k}"
b.adapter = Path("models/bundles/default/encoder_adapter.safetensors")
b.save(f"var/bundle_lexproj{k}")
print("saved")
