"""One-hidden-layer MLP multi-label topic head on the embedding (3 seeds and their average).

    python reports/heads/exp_mlp.py      # -> exp_mlp.log
"""
from __future__ import annotations

import sys
import time

import numpy as np
from sklearn.neural_network import MLPClassifier

sys.path.insert(0, "reports/heads")
from probe import X, Y, report, t_cal, t_dev, t_fit  # noqa: E402


def mlp_probs(hidden: int, alpha: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    m = MLPClassifier(hidden_layer_sizes=(hidden,), alpha=alpha, early_stopping=True, random_state=seed, max_iter=200,
                      validation_fraction=0.1, n_iter_no_change=8).fit(X(t_fit) * 5, Y(t_fit))
    return m.predict_proba(X(t_cal) * 5), m.predict_proba(X(t_dev) * 5)


if __name__ == "__main__":
    for h, a in [(512, 1e-3), (512, 1e-2), (1024, 1e-2)]:
        t0 = time.time()
        ps = []
        for seed in (0, 1, 2):
            ps.append(mlp_probs(h, a, seed))
            report(f"mlp h={h} a={a} seed={seed}", *ps[-1])
        report(f"mlp h={h} a={a} ens3", np.mean([p[0] for p in ps], 0), np.mean([p[1] for p in ps], 0))
        print("  time", time.time() - t0, flush=True)
