"""Italian↔English consistency and robustness probes on a hand-built parallel set.

The same comment written in Italian and in English should get the same label;
``eval/data/parallel_it_en.jsonl`` holds 40 hand-translated pairs (negation,
sarcasm, mixed, neutral, short answers) with the label a person would give.

    voce check consistency --out reports/consistency.json [--bundle B]
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from voce.eval.checksets import analyze_all, read_jsonl
from voce.models.analyzer import Analyzer
from voce.models.types import DocumentInput

SHORT_ANSWERS = ["ok", "nulla", "niente da dire", "10", "👍", "😡😡😡", "bene", "no", "perfetto", "meh"]
MISSPELLED = [
    ("servizo pesimo, nn torno piu", "negative"),
    ("personale gentilisimo e disponibbile", "positive"),
    ("the delivry was realy late", "negative"),
    ("grate service, thx", "positive"),
]


def load_pairs(path: Path | None = None) -> list[dict[str, str]]:
    return read_jsonl("parallel_it_en.jsonl", path)


def run_consistency(analyzer: Analyzer, pairs: list[dict[str, str]]) -> dict[str, Any]:
    docs = []
    for i, p in enumerate(pairs):
        docs.append(DocumentInput(id=f"it-{i}", text=p["it"], language="it"))
        docs.append(DocumentInput(id=f"en-{i}", text=p["en"], language="en"))
    docs += [DocumentInput(id=f"short-{i}", text=t) for i, t in enumerate(SHORT_ANSWERS)]
    docs += [DocumentInput(id=f"typo-{i}", text=t) for i, (t, _) in enumerate(MISSPELLED)]
    res = analyze_all(analyzer, docs)
    rows: list[dict[str, Any]] = []
    for i, p in enumerate(pairs):
        it, en = res[f"it-{i}"], res[f"en-{i}"]
        rows.append({
            "it": p["it"], "en": p["en"], "expected": p["label"],
            "it_label": it.sentiment.label, "en_label": en.sentiment.label,
            "it_topics": [t.id for t in it.topics], "en_topics": [t.id for t in en.topics],
            "it_touchpoints": [t.id for t in it.touchpoints], "en_touchpoints": [t.id for t in en.touchpoints],
        })
    n = len(rows)
    agree = sum(r["it_label"] == r["en_label"] for r in rows) / n
    polarity = {"positive": 1, "negative": -1}
    same_direction = sum(
        polarity.get(r["it_label"], 0) * polarity.get(r["en_label"], 0) >= 0 for r in rows
    ) / n
    topic_agree = sum(set(r["it_topics"]) == set(r["en_topics"]) for r in rows) / n
    touch_agree = sum(set(r["it_touchpoints"]) == set(r["en_touchpoints"]) for r in rows) / n
    acc_it = sum(r["it_label"] == r["expected"] for r in rows) / n
    acc_en = sum(r["en_label"] == r["expected"] for r in rows) / n
    short = {t: {"label": res[f"short-{i}"].sentiment.label, "language": res[f"short-{i}"].language,
                 "warnings": res[f"short-{i}"].warnings} for i, t in enumerate(SHORT_ANSWERS)}
    typos = {t: {"expected": e, "label": res[f"typo-{i}"].sentiment.label} for i, (t, e) in enumerate(MISSPELLED)}
    return {
        "pairs": n,
        "label_agreement_it_en": round(agree, 4),
        "no_polarity_flip_it_en": round(same_direction, 4),
        "topic_set_agreement_it_en": round(topic_agree, 4),
        "touchpoint_set_agreement_it_en": round(touch_agree, 4),
        "accuracy_vs_human_it": round(acc_it, 4),
        "accuracy_vs_human_en": round(acc_en, 4),
        "short_answers": short,
        "misspellings": typos,
        "disagreements": [r for r in rows if r["it_label"] != r["en_label"]],
    }
