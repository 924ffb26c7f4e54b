"""Zero-shot touchpoints on a hand-written IT/EN check set.

Touchpoints have no labelled training data: they are scored zero-shot against
the taxonomy's text, so a fine-tune that sharpens the labelled topics can quietly
blunt them (it happened: ``reports/finetune/README.md``).  This is the guard.
``eval/data/touchpoints_it_en.jsonl`` holds 32 parallel pairs, two per default
touchpoint, written for this check and not taken from the taxonomy's examples.
No channel is given, so only the text counts.  Never tune on it.

Per language it reports recall (the gold touchpoint is among those reported),
top-1 accuracy (it is the highest-scoring one), the share of texts with no
touchpoint, and the mean number of other touchpoints reported::

    voce check touchpoints --out reports/touchpoints.json [--bundle B]
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from voce.eval.checksets import analyze_all, read_jsonl
from voce.models.analyzer import Analyzer
from voce.models.types import DocumentInput

LANGUAGES = ("it", "en")


def load_checks(path: Path | None = None) -> list[dict[str, str]]:
    return read_jsonl("touchpoints_it_en.jsonl", path)


def run_touchpoints(analyzer: Analyzer, checks: list[dict[str, str]]) -> dict[str, Any]:
    docs = [DocumentInput(id=f"{lang}-{i}", text=c[lang], language=lang) for i, c in enumerate(checks) for lang in LANGUAGES]
    found = {doc_id: [t.id for t in r.touchpoints] for doc_id, r in analyze_all(analyzer, docs).items()}
    n = len(checks)
    report: dict[str, Any] = {"pairs": n}
    for lang in LANGUAGES:
        got = [(c["touchpoint"], found[f"{lang}-{i}"]) for i, c in enumerate(checks)]
        report[lang] = {
            "recall": round(sum(g in tps for g, tps in got) / n, 4),
            "top1_accuracy": round(sum(bool(tps) and tps[0] == g for g, tps in got) / n, 4),
            "none_reported": round(sum(not tps for _, tps in got) / n, 4),
            "other_touchpoints_per_text": round(sum(len([t for t in tps if t != g]) for g, tps in got) / n, 4),
        }
    # agreement over the pairs where at least one language reports a touchpoint: two empty answers are not
    # agreement, and with nothing reported at all it is undefined (None, "n/a"), not 1.0
    said = [i for i in range(n) if found[f"it-{i}"] or found[f"en-{i}"]]
    report["top1_agreement_it_en"] = (
        round(sum(found[f"it-{i}"][:1] == found[f"en-{i}"][:1] for i in said) / len(said), 4) if said else None
    )
    report["pairs_with_a_touchpoint"] = len(said)
    report["misses"] = [
        {"touchpoint": c["touchpoint"], "language": lang, "text": c[lang], "reported": found[f"{lang}-{i}"]}
        for i, c in enumerate(checks)
        for lang in LANGUAGES
        if c["touchpoint"] not in found[f"{lang}-{i}"]
    ]
    return report
