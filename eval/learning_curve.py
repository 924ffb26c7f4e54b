"""How many corrections a team needs: a simulation of the learning loop on a labelled set.

A team meets its comments in no particular order and corrects them one by one.  The simulation does the same with
a labelled set: a fixed share is held out for testing; the rest is revealed in rounds of corrections (10, 20, 40,
...), after each round a model is retrained on what has been revealed so far, and it is scored on the held-out texts.
Round 0 is what the service answers before any correction (the taxonomy's names and descriptions, zero-shot).
The whole run is repeated with other random orders and splits, and the curve is their mean with the spread.

The retraining step is passed in (``fit``): ``eval`` scores and never trains (ARCHITECTURE: eval does not import
training), so the runner (``benchmarks/learning_curve.py``) hands it the training layer's head fitter.  The
report says two numbers a team can plan with: after how many corrections the retrained model beats the
zero-shot answers, and after how many it is within ``plateau_points`` of what every available correction gives.
"""
from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

#: (vectors of the revealed texts, their labels, every label) -> a predictor of labels for vectors
Fit = Callable[[np.ndarray, list[str], list[str]], Callable[[np.ndarray], list[str]]]


@dataclass(frozen=True)
class CurveConfig:
    # corrections revealed before each retraining (capped at the pool; the whole pool is always the last point)
    rounds: tuple[int, ...] = (10, 20, 40, 80, 160, 320)
    # random orders and held-out splits the curve averages over
    repeats: int = 5
    # share of the labelled texts held out for testing (never revealed)
    test_fraction: float = 0.3
    seed: int = 13
    # "within this many accuracy points of every correction" is where the curve has flattened
    plateau_points: float = 2.0


def _macro_f1(gold: Sequence[str], pred: Sequence[str]) -> float:
    labels = sorted(set(gold))
    f1s = []
    for lab in labels:
        tp = sum(1 for g, p in zip(gold, pred, strict=True) if g == lab and p == lab)
        fp = sum(1 for g, p in zip(gold, pred, strict=True) if g != lab and p == lab)
        fn = sum(1 for g, p in zip(gold, pred, strict=True) if g == lab and p != lab)
        f1s.append(0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn))
    return float(np.mean(f1s)) if f1s else 0.0


def _score(gold: Sequence[str], pred: Sequence[str]) -> tuple[float, float]:
    acc = float(np.mean([g == p for g, p in zip(gold, pred, strict=True)])) if gold else 0.0
    return acc, _macro_f1(gold, pred)


def simulate(
    vectors: np.ndarray, labels: Sequence[str], fit: Fit, zero_shot: Sequence[str] | None = None,
    config: CurveConfig | None = None,
) -> dict[str, Any]:
    """The learning curve of ``fit`` on ``vectors``/``labels`` (one row per text), against the zero-shot answers
    ``zero_shot`` (row-aligned) and the most frequent label of the revealed pool."""
    cfg = config or CurveConfig()
    labels = list(labels)
    n = len(labels)
    if n < 10:
        raise ValueError(f"{n} labelled texts: too few for a learning curve")
    space = sorted(set(labels))
    n_test = max(1, round(cfg.test_fraction * n))
    pool_size = n - n_test
    points = sorted({k for k in cfg.rounds if k < pool_size} | {pool_size})
    runs: dict[int, list[tuple[float, float]]] = {k: [] for k in points}
    zero: list[tuple[float, float]] = []
    majority: list[tuple[float, float]] = []
    for rep in range(cfg.repeats):
        order = np.random.default_rng(cfg.seed + rep).permutation(n)
        test, pool = order[:n_test], order[n_test:]
        gold = [labels[i] for i in test]
        if zero_shot is not None:
            zero.append(_score(gold, [zero_shot[i] for i in test]))
        pool_labels = [labels[i] for i in pool]
        most = max(sorted(set(pool_labels)), key=pool_labels.count)
        majority.append(_score(gold, [most] * len(gold)))
        for k in points:
            revealed = pool[:k]
            seen = [labels[i] for i in revealed]
            if len(set(seen)) < 2:  # one class so far: the only answer there is to give
                pred = [seen[0]] * len(gold)
            else:
                predict = fit(vectors[revealed], seen, space)
                pred = predict(vectors[test])
            runs[k].append(_score(gold, pred))

    def summary(scores: list[tuple[float, float]]) -> dict[str, float]:
        acc = np.asarray([s[0] for s in scores])
        f1 = np.asarray([s[1] for s in scores])
        return {"accuracy": round(float(acc.mean()), 4), "accuracy_sd": round(float(acc.std()), 4),
                "accuracy_min": round(float(acc.min()), 4), "accuracy_max": round(float(acc.max()), 4),
                "macro_f1": round(float(f1.mean()), 4)}

    curve = [{"corrections": k, **summary(runs[k])} for k in points]
    out: dict[str, Any] = {
        "texts": n, "held_out": n_test, "pool": pool_size, "labels": {lab: labels.count(lab) for lab in space},
        "config": asdict(cfg), "curve": curve, "majority": summary(majority),
        "zero_shot": summary(zero) if zero else None,
    }
    out["corrections_needed"] = corrections_needed(out, cfg.plateau_points)
    return out


def corrections_needed(result: dict[str, Any], plateau_points: float) -> dict[str, int | None]:
    """The fewest corrections after which the mean retrained accuracy beats the zero-shot answers (and the majority
    answer), and after which it is within ``plateau_points`` of what every correction in the pool gives."""
    curve = result["curve"]
    best = curve[-1]["accuracy"]

    def first(pred: Callable[[dict[str, Any]], bool]) -> int | None:
        return next((p["corrections"] for p in curve if pred(p)), None)

    zero = result["zero_shot"]["accuracy"] if result.get("zero_shot") else None
    return {
        "beats_zero_shot": first(lambda p: p["accuracy"] > zero) if zero is not None else None,
        "beats_majority": first(lambda p: p["accuracy"] > result["majority"]["accuracy"]),
        "plateau": first(lambda p: p["accuracy"] >= best - plateau_points / 100),
    }


# ------------------------------------------------------------------ the plot (SVG: no plotting library needed)
_COLOURS = ("#3b7dd8", "#d8643b", "#2a9d5c", "#8e44ad", "#b08900")


def curve_svg(results: dict[str, dict[str, Any]], path: Path, title: str, width: int = 640, height: int = 400) -> Path:
    """Accuracy against corrections (log scale), one line per set with its min-max band and its zero-shot level
    dashed."""
    left, right, top, bottom = 56, 200, 34, 46
    xs = [p["corrections"] for r in results.values() for p in r["curve"]]
    lo, hi = np.log2(max(1, min(xs))), np.log2(max(xs))
    span = max(hi - lo, 1.0)

    def px(k: float) -> float:
        return left + (np.log2(max(k, 1)) - lo) / span * (width - left - right)

    def py(v: float) -> float:
        return top + (1 - v) * (height - top - bottom)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" '
        'font-size="11">', '<rect width="100%" height="100%" fill="white"/>',
        f'<text x="{(width - right + left) / 2}" y="18" text-anchor="middle" font-size="13">{title}</text>',
        f'<line x1="{left}" y1="{py(0)}" x2="{width - right}" y2="{py(0)}" stroke="black"/>',
        f'<line x1="{left}" y1="{py(0)}" x2="{left}" y2="{py(1)}" stroke="black"/>',
        f'<text x="{(width - right + left) / 2}" y="{height - 10}" text-anchor="middle">corrections (log scale)</text>',
        f'<text x="14" y="{(height - bottom + top) / 2}" text-anchor="middle" '
        f'transform="rotate(-90 14 {(height - bottom + top) / 2})">accuracy on held-out texts</text>',
    ]
    for v in (0.0, 0.2, 0.4, 0.6, 0.8, 1.0):
        parts.append(f'<line x1="{left}" y1="{py(v):.1f}" x2="{width - right}" y2="{py(v):.1f}" stroke="#eee"/>')
        parts.append(f'<text x="{left - 6}" y="{py(v) + 4:.1f}" text-anchor="end">{v:.1f}</text>')
    for k in sorted(set(xs)):
        parts.append(f'<text x="{px(k):.1f}" y="{py(0) + 14:.1f}" text-anchor="middle">{k}</text>')
    for i, (name, r) in enumerate(results.items()):
        c = _COLOURS[i % len(_COLOURS)]
        pts = r["curve"]
        band = [(px(p["corrections"]), py(p["accuracy_max"])) for p in pts]
        band += [(px(p["corrections"]), py(p["accuracy_min"])) for p in reversed(pts)]
        parts.append(f'<polygon points="{" ".join(f"{x:.1f},{y:.1f}" for x, y in band)}" fill="{c}" '
                     'fill-opacity="0.12" stroke="none"/>')
        line = " ".join(f"{px(p['corrections']):.1f},{py(p['accuracy']):.1f}" for p in pts)
        parts.append(f'<polyline points="{line}" fill="none" stroke="{c}" stroke-width="2"/>')
        for p in pts:
            parts.append(f'<circle cx="{px(p["corrections"]):.1f}" cy="{py(p["accuracy"]):.1f}" r="3" fill="{c}">'
                         f'<title>{name}: {p["corrections"]} corrections, accuracy {p["accuracy"]:.3f} '
                         f'(sd {p["accuracy_sd"]:.3f})</title></circle>')
        if r.get("zero_shot"):
            z = py(r["zero_shot"]["accuracy"])
            parts.append(f'<line x1="{left}" y1="{z:.1f}" x2="{width - right}" y2="{z:.1f}" stroke="{c}" '
                         'stroke-dasharray="5 4"/>')
        ly = top + 16 + 34 * i
        parts.append(f'<line x1="{width - right + 10}" y1="{ly}" x2="{width - right + 30}" y2="{ly}" stroke="{c}" '
                     'stroke-width="2"/>')
        parts.append(f'<text x="{width - right + 34}" y="{ly + 4}">{name} (n={r["texts"]})</text>')
        parts.append(f'<line x1="{width - right + 10}" y1="{ly + 14}" x2="{width - right + 30}" y2="{ly + 14}" '
                     f'stroke="{c}" stroke-dasharray="5 4"/>')
        parts.append(f'<text x="{width - right + 34}" y="{ly + 18}">zero-shot</text>')
    parts.append("</svg>")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(parts) + "\n", "utf-8")
    return path


def write_report(results: dict[str, dict[str, Any]], folder: Path, name: str, meta: dict[str, Any]) -> Path:
    """``<folder>/<name>.json`` with every curve and how it was made."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.json"
    path.write_text(json.dumps({**meta, "results": results}, indent=2, ensure_ascii=False) + "\n", "utf-8")
    return path
