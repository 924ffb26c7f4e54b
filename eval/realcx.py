"""Touchpoints, primary topics and custom journey taxonomies, scored on real annotated texts.

The dev split of the annotated corpus (:mod:`voce.data.realcx`) is the headline touchpoint figure: real texts of
the kinds users send, labelled by a written guideline, never trained on.  Each text goes through the analyzer as
an integrator would send it (language given, no channel: only the text counts).

* Touchpoints: top-1 accuracy (the first touchpoint reported, or "none" when none is, equals the annotated
  primary), hit (the first reported is among the annotated touchpoints), the share of texts with nothing
  reported and how often that "none" is right, per-touchpoint precision/recall/F1 of the reported set; against
  the constant answers "none" and "the most frequent primary"; per language, with bootstrap intervals.
* Primary topic: the highest-scoring topic against the annotated primary topic, on texts outside the hotel and
  restaurant domains the topic heads were trained on.
* Journeys: each held-apart journey taxonomy given as an exclusive custom section (names and descriptions only),
  accuracy of the chosen stage against the most frequent stage, calibration of the confidence, and the few-shot
  curve (k real examples per stage from the train split pasted into the taxonomy).
"""
from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from voce.data.realcx import JOURNEYS, NONE, TOUCHPOINTS, CXText, journey_path, split_realcx
from voce.eval import metrics as M
from voce.models.analyzer import Analyzer
from voce.models.taxonomy import Taxonomy, TaxonomyEntry, TaxonomySection, load_taxonomy
from voce.models.types import DocumentInput, DocumentResult

Progress = Callable[[str], None]
#: domains the public topic data already covers (hotel and restaurant sentences)
IN_DOMAIN_SOURCES = frozenset({"absita2018", "semeval2016_restaurants_en"})
#: the journey the exclusive calibration is fitted on (TrainConfig.exclusive_fit_journey); not held apart
HELD_IN_JOURNEY = "airline"


def analyze_rows(
    analyzer: Analyzer, rows: Sequence[CXText], taxonomy: Taxonomy | None = None, batch: int = 32,
    progress: Progress | None = None,
) -> dict[str, DocumentResult]:
    """Results keyed by uid (language given, no channel); a text the analyzer refuses is a broken corpus: it raises."""
    out: dict[str, DocumentResult] = {}
    for start in range(0, len(rows), batch):
        chunk = rows[start : start + batch]
        docs = [DocumentInput(id=r.uid, text=r.text, language=r.language) for r in chunk]
        results, errors = analyzer.analyze(docs, taxonomy=taxonomy)
        if errors:
            raise RuntimeError(f"texts of the annotated corpus were refused: {errors[:3]}")
        out |= {r.id: r for r in results}
        if progress and (start // batch) % 10 == 0:
            progress(f"  analysed {min(start + batch, len(rows))}/{len(rows)}")
    return out


def _interval(values: Callable[[list[int]], float], n: int, seed: int = 13, rounds: int = 200) -> list[float]:
    """2.5th–97.5th percentile of a statistic over bootstrap resamples of the ``n`` rows."""
    rng = random.Random(seed)
    stats = sorted(values([rng.randrange(n) for _ in range(n)]) for _ in range(rounds))
    return [round(stats[int(0.025 * rounds)], 4), round(stats[int(0.975 * rounds) - 1], 4)]


def touchpoint_metrics(rows: Sequence[CXText], res: dict[str, DocumentResult], majority: str) -> dict[str, Any]:
    """Top-1, hit, "none" behaviour, per-touchpoint F1 and the constant baselines, for one set of rows."""
    pred = [[t.id for t in res[r.uid].touchpoints] for r in rows]
    top1 = [p[0] if p else NONE for p in pred]
    gold_sets = [set(r.touchpoints) or {NONE} for r in rows]
    correct = [int(t == r.primary) for t, r in zip(top1, rows, strict=True)]
    hits = [int(t in g) for t, g in zip(top1, gold_sets, strict=True)]
    none_pred = [k for k, t in enumerate(top1) if t == NONE]
    n = len(rows)
    out: dict[str, Any] = {
        "texts": n,
        "top1_accuracy": round(float(np.mean(correct)), 4),
        "top1_interval": _interval(lambda ix: float(np.mean([correct[i] for i in ix])), n),
        "hit_primary_or_secondary": round(float(np.mean(hits)), 4),
        "hit_interval": _interval(lambda ix: float(np.mean([hits[i] for i in ix])), n),
        "none_rate": round(len(none_pred) / n, 4),
        "none_precision": round(float(np.mean([rows[k].primary == NONE for k in none_pred])), 4) if none_pred else None,
        "none_recall": round(float(np.mean([top1[k] == NONE for k, r in enumerate(rows) if r.primary == NONE])), 4)
        if any(r.primary == NONE for r in rows) else None,
        "annotated_none_rate": round(float(np.mean([r.primary == NONE for r in rows])), 4),
        "baseline_always_none": round(float(np.mean([r.primary == NONE for r in rows])), 4),
        "baseline_majority": {
            "answer": majority, "top1_accuracy": round(float(np.mean([r.primary == majority for r in rows])), 4)
        },
    }  # fmt: skip
    by_class: dict[str, list[int]] = {}
    for ok, r in zip(correct, rows, strict=True):
        by_class.setdefault(r.primary, []).append(ok)
    common = {c: float(np.mean(v)) for c, v in by_class.items() if len(v) >= 5}
    # every primary class (with 5+ texts) weighs the same: a figure that does not lean on this corpus's mix
    out["top1_class_balanced"] = round(float(np.mean(list(common.values()))), 4) if common else None
    out["top1_per_primary"] = {c: {"texts": len(by_class[c]), "accuracy": round(v, 4)} for c, v in sorted(common.items())}
    per: dict[str, dict[str, float]] = {}
    for tp in TOUCHPOINTS:
        tp_, fp, fn = 0, 0, 0
        for p, r in zip(pred, rows, strict=True):
            inp, ing = tp in p, tp in r.touchpoints
            tp_ += inp and ing
            fp += inp and not ing
            fn += ing and not inp
        if tp_ + fn:
            prec = tp_ / (tp_ + fp) if tp_ + fp else 0.0
            rec = tp_ / (tp_ + fn)
            per[tp] = {"support": tp_ + fn, "precision": round(prec, 4), "recall": round(rec, 4),
                       "f1": round(2 * prec * rec / (prec + rec), 4) if prec + rec else 0.0}  # fmt: skip
    out["per_touchpoint"] = per
    out["macro_f1"] = round(float(np.mean([v["f1"] for v in per.values()])), 4) if per else 0.0
    return out


def primary_topic_metrics(rows: Sequence[CXText], res: dict[str, DocumentResult]) -> dict[str, Any]:
    """The highest-scoring topic (or none) against the annotated primary topic."""
    top = [res[r.uid].topics[0].id if res[r.uid].topics else NONE for r in rows]
    correct = [int(t == r.primary_topic) for t, r in zip(top, rows, strict=True)]
    in_set = [int(t in (set(r.topics) or {NONE})) for t, r in zip(top, rows, strict=True)]
    n = len(rows)
    counts: dict[str, int] = {}
    for r in rows:
        counts[r.primary_topic] = counts.get(r.primary_topic, 0) + 1
    majority = max(counts, key=lambda k: counts[k]) if counts else NONE
    return {
        "texts": n,
        "primary_topic_accuracy": round(float(np.mean(correct)), 4) if n else None,
        "interval": _interval(lambda ix: float(np.mean([correct[i] for i in ix])), n) if n else None,
        "top_topic_among_annotated": round(float(np.mean(in_set)), 4) if n else None,
        "baseline_majority": {"answer": majority, "accuracy": round(counts.get(majority, 0) / n, 4) if n else None},
    }


def evaluate_corpus(
    analyzer: Analyzer, rows: Sequence[CXText], *, progress: Progress | None = None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(metrics, details)`` of touchpoints and primary topics on the corpus's dev split."""
    train, dev = split_realcx(rows)
    counts: dict[str, int] = {}
    for r in train:
        counts[r.primary] = counts.get(r.primary, 0) + 1
    majority = max((k for k in counts if k != NONE), key=lambda k: counts[k])
    if progress:
        progress(f"real-text corpus: {len(dev)} dev texts")
    res = analyze_rows(analyzer, dev, progress=progress)
    tp = {"all": touchpoint_metrics(dev, res, majority)}
    for lang in ("it", "en"):
        tp[lang] = touchpoint_metrics([r for r in dev if r.language == lang], res, majority)
    tp["random_sample_only"] = touchpoint_metrics([r for r in dev if r.stratum == "random"], res, majority)
    outside = [r for r in dev if r.source not in IN_DOMAIN_SOURCES]
    topics = {"outside_hotel_restaurant": primary_topic_metrics(outside, res)}
    for lang in ("it", "en"):
        topics[f"outside_hotel_restaurant_{lang}"] = primary_topic_metrics([r for r in outside if r.language == lang], res)
    metrics = {
        "realcx_touchpoint_top1": tp["all"]["top1_accuracy"],
        "realcx_touchpoint_top1_it": tp["it"]["top1_accuracy"],
        "realcx_touchpoint_top1_en": tp["en"]["top1_accuracy"],
        "realcx_touchpoint_hit": tp["all"]["hit_primary_or_secondary"],
        "realcx_touchpoint_hit_it": tp["it"]["hit_primary_or_secondary"],
        "realcx_touchpoint_hit_en": tp["en"]["hit_primary_or_secondary"],
        "realcx_touchpoint_none_precision": tp["all"]["none_precision"],
        "realcx_touchpoint_top1_class_balanced": tp["all"]["top1_class_balanced"],
        "realcx_touchpoint_macro_f1": tp["all"]["macro_f1"],
        "realcx_primary_topic_accuracy_non_hotel": topics["outside_hotel_restaurant"]["primary_topic_accuracy"],
    }
    return metrics, {"touchpoints": tp, "primary_topic": topics, "dev_texts": len(dev)}


def _with_examples(section: TaxonomySection, examples: dict[str, list[str]]) -> Taxonomy:
    entries = [TaxonomyEntry(**{**e.model_dump(), "examples": examples.get(e.id, [])}) for e in section.entries]
    return Taxonomy(version=f"fewshot-{sum(map(len, examples.values()))}", topics=_default_topics(),
                    touchpoints=TaxonomySection(entries=entries, mode=section.mode))  # fmt: skip


def _default_topics() -> TaxonomySection:
    from voce.models.taxonomy import default_taxonomy

    return default_taxonomy().topics


def journey_metrics(analyzer: Analyzer, rows: Sequence[CXText], name: str, taxonomy: Taxonomy) -> dict[str, Any]:
    """Stage accuracy of one journey taxonomy on ``rows`` (those with a stage), confidence calibration."""
    staged = [r for r in rows if r.journey == name and r.stage not in ("", NONE)]
    if not staged:
        return {"texts": 0}
    res = analyze_rows(analyzer, staged, taxonomy=taxonomy)
    chosen = [res[r.uid].touchpoints[0] for r in staged]
    correct = [int(c.id == r.stage) for c, r in zip(chosen, staged, strict=True)]
    conf = [c.score for c in chosen]
    certain = [k for k, c in enumerate(chosen) if not c.uncertain]
    counts: dict[str, int] = {}
    for r in staged:
        counts[r.stage] = counts.get(r.stage, 0) + 1
    majority = max(counts, key=lambda k: counts[k])
    n = len(staged)
    return {
        "texts": n,
        "accuracy": round(float(np.mean(correct)), 4),
        "interval": _interval(lambda ix: float(np.mean([correct[i] for i in ix])), n),
        "baseline_majority": {"answer": majority, "accuracy": round(counts[majority] / n, 4)},
        "points_above_majority": round(100 * (float(np.mean(correct)) - counts[majority] / n), 1),
        "answered": 1.0,
        "confidence_ece": round(M.confidence_ece(conf, correct), 4),
        "uncertain_rate": round(1 - len(certain) / n, 4),
        "accuracy_when_certain": round(float(np.mean([correct[k] for k in certain])), 4) if certain else None,
    }


def evaluate_journeys(
    analyzer: Analyzer, rows: Sequence[CXText], *, shots: Sequence[int] = (0, 4, 16, 64), repeats: int = 3,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Each journey as an exclusive custom section on the dev split, zero-shot and with k examples per stage."""
    train, dev = split_realcx(rows)
    out: dict[str, Any] = {}
    for name in JOURNEYS:
        section = load_taxonomy(journey_path(name)).touchpoints
        part: dict[str, Any] = {"held_apart": name != HELD_IN_JOURNEY}
        part["zero_shot"] = journey_metrics(analyzer, dev, name, _with_examples(section, {}))
        curve = {}
        for k in shots:
            if k == 0:
                curve["0"] = part["zero_shot"].get("accuracy")
                continue
            accs = []
            for rep in range(repeats):
                rng = random.Random(1000 * k + rep)
                examples = {}
                for stage in section.ids:
                    pool = [r.text for r in train if r.journey == name and r.stage == stage and len(r.text) <= 600]
                    examples[stage] = rng.sample(pool, min(k, len(pool)))
                accs.append(journey_metrics(analyzer, dev, name, _with_examples(section, examples))["accuracy"])
            curve[str(k)] = round(float(np.mean(accs)), 4)
        part["few_shot_accuracy"] = curve
        out[name] = part
        if progress:
            progress(f"journey {name}: zero-shot {part['zero_shot'].get('accuracy')} "
                     f"(majority {part['zero_shot'].get('baseline_majority')}), curve {curve}")  # fmt: skip
    return out
