"""Precision and recall of the detector on :data:`examples.EXAMPLES` (``python -m tests.service.privacy.measure``).

A finding is right when it overlaps an annotated span; an annotated span is found when a finding overlaps it
(with the right kind for the per-kind figures).  Redaction cares about the characters covered, so the overlap
rule is the one that matters; the kind only names the placeholder.
"""
from __future__ import annotations

import json
from collections import Counter
from typing import Any

from tests.service.privacy.examples import EXAMPLES, Example
from voce.service.privacy.detect import Finding, PiiDetector


def gold_spans(example: Example) -> list[tuple[int, int, str]]:
    text, items = example
    out, pos = [], 0
    for sub, kind in items:
        start = text.index(sub, pos)
        out.append((start, start + len(sub), kind))
        pos = start + len(sub)
    return out


def _overlaps(a: tuple[int, int], b: tuple[int, int]) -> bool:
    return a[0] < b[1] and b[0] < a[1]


def measure(detector: PiiDetector, examples: list[Example] = EXAMPLES) -> dict[str, Any]:
    """Overall and per-kind precision/recall, and the misses and false alarms by text."""
    tp_found = fp = tp_gold = fn = 0
    kind_tp: Counter[str] = Counter()
    kind_gold: Counter[str] = Counter()
    kind_pred: Counter[str] = Counter()
    misses, false_alarms = [], []
    for ex in examples:
        gold = gold_spans(ex)
        found: list[Finding] = detector.find(ex[0])
        for f in found:
            kind_pred[f.kind] += 1
            if any(_overlaps((f.start, f.end), (g[0], g[1])) for g in gold):
                tp_found += 1
            else:
                fp += 1
                false_alarms.append((ex[0][f.start:f.end], f.kind))
        for g in gold:
            kind_gold[g[2]] += 1
            hit = [f for f in found if _overlaps((f.start, f.end), (g[0], g[1]))]
            if hit:
                tp_gold += 1
            else:
                fn += 1
                misses.append((ex[0][g[0]:g[1]], g[2]))
            if any(f.kind == g[2] for f in hit):
                kind_tp[g[2]] += 1
    per_kind = {
        k: {"annotated": kind_gold[k], "found": kind_pred[k], "recall": round(kind_tp[k] / kind_gold[k], 3),
            "precision": round(kind_tp[k] / kind_pred[k], 3) if kind_pred[k] else None}
        for k in sorted(kind_gold)
    }
    return {
        "texts": len(examples), "annotated": tp_gold + fn, "findings": tp_found + fp,
        "precision": round(tp_found / max(tp_found + fp, 1), 3), "recall": round(tp_gold / max(tp_gold + fn, 1), 3),
        "per_kind": per_kind, "misses": misses, "false_alarms": false_alarms,
    }


if __name__ == "__main__":
    print(json.dumps(measure(PiiDetector()), indent=2, ensure_ascii=False))
