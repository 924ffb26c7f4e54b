"""``voce train --check``: what a training config will learn from its data, said before anything is fitted.

Like spaCy's ``debug data``: per label, how many rows there are and how many survive the dev split and the
calibration slice (a head learns from the *fit* rows only, so ``min_topic_examples`` is counted there), which heads
will be trained, and which will not and why (too few fit rows, a topic missing from the taxonomy, a single class).
Nothing is embedded: it reads the labels, so it runs in seconds.  ``voce train`` prints the same summary before it
fits, and saves it in its report.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from voce.data.datasets import Example
from voce.models.bundle import VoceBundle
from voce.models.taxonomy import Taxonomy, default_taxonomy
from voce.training.config import TrainConfig


def learnable_topics(counts: Counter[str], total: int, topic_ids: Sequence[str], minimum: int) -> list[str]:
    """Topics that get a learned head: at least ``minimum`` positive fit rows, and some rows without the topic.

    The one rule: :attr:`voce.training.heads.HeadContext.topic_ids` and this check both apply it.
    """
    return [t for t in topic_ids if minimum <= counts.get(t, 0) < total]


def _corpus_counts(cfg: TrainConfig, taxonomy: Taxonomy) -> tuple[Counter[str], int, int] | None:
    """Topic counts of the annotated corpus's fit rows (when the topic heads learn from it), its fit and primary rows."""
    from voce.data.realcx import load_realcx, split_realcx
    from voce.training.touchpoints import CALIBRATION

    # the same conditions as voce.training.touchpoints.corpus_rows: no touchpoint_data or other touchpoints, no corpus
    if not cfg.touchpoint_data or taxonomy.touchpoints.fingerprint() != default_taxonomy().touchpoints.fingerprint():
        return None
    try:
        corpus = load_realcx(cfg.data_dir)
    except (FileNotFoundError, ValueError, KeyError):
        return None
    train, _ = split_realcx(corpus)
    fit, _ = CALIBRATION.calibration(train)  # type: ignore[arg-type]
    same = taxonomy.topics.fingerprint() == default_taxonomy().topics.fingerprint()
    counts: Counter[str] = Counter()
    if cfg.corpus_topic_weight > 0 and same:
        counts.update(t for r in fit for t in r.topics)  # type: ignore[attr-defined]
    return counts, len(fit) if cfg.corpus_topic_weight > 0 and same else 0, len(fit)


def check_report(
    cfg: TrainConfig, train: list[Example], dev: list[Example], *, parent: VoceBundle | None = None,
    encoder_name: str | None = None,
) -> dict[str, Any]:
    """Per label: rows in all, in dev, in calibration, in fit; which heads will be trained and why not."""
    from voce.training.train import training_taxonomy

    taxonomy = training_taxonomy(cfg)
    fit, cal = cfg.split().calibration(train)
    minimum = cfg.min_topic_examples

    def count(rows: list[Example]) -> Counter[str]:
        return Counter(t for e in rows if e.topics is not None for t in e.topics)

    c_fit, c_cal, c_dev = count(fit), count(cal), count(dev)
    topic_fit_total = sum(e.topics is not None for e in fit)
    corpus = _corpus_counts(cfg, taxonomy)
    c_corpus = corpus[0] if corpus else Counter()
    counts = c_fit + c_corpus
    learned = set(learnable_topics(counts, topic_fit_total + (corpus[1] if corpus else 0), taxonomy.topics.ids, minimum))
    topics: dict[str, dict[str, Any]] = {}
    for tid in [*taxonomy.topics.ids, *sorted(set(c_fit + c_cal + c_dev) - set(taxonomy.topics.ids))]:
        row: dict[str, Any] = {
            "labelled": c_fit[tid] + c_cal[tid] + c_dev[tid], "dev": c_dev[tid], "calibration": c_cal[tid],
            "fit": c_fit[tid], "corpus_fit": c_corpus[tid], "head": tid in learned,
        }  # fmt: skip
        if tid not in taxonomy.topics.ids:
            row["reason"] = "not in the taxonomy: no head and never predicted (declare it in taxonomy:)"
        elif tid not in learned:
            have = counts[tid]
            row["reason"] = (
                "no labels: zero-shot" if row["labelled"] + c_corpus[tid] == 0 else
                f"{have} fit rows < min_topic_examples {minimum} ({row['labelled']} labelled: {row['dev']} went to "
                f"dev, {row['calibration']} to calibration, {row['fit']} fit"
                + (f"; + {c_corpus[tid]} from the annotated corpus" if c_corpus[tid] else "") + "): zero-shot"
            )  # fmt: skip
        topics[tid] = row
    polarity = {
        tid: sum(1 for e in fit if e.topics and tid in e.topics) for tid in sorted(learned)
    }
    heads: dict[str, Any] = {
        "topics_learned": sorted(learned, key=taxonomy.topics.ids.index),
        "topics_zero_shot": [t for t in taxonomy.topics.ids if t not in learned],
        "topic_polarity": [t for t, n in polarity.items() if n >= cfg.min_polarity_examples],
    }
    problems: list[str] = []
    for what, label in (("sentiment", lambda e: e.sentiment), ("detractor", lambda e: e.nps_detractor)):
        values = [label(e) for e in fit if label(e) is not None]
        if len(set(values)) < 2:
            problems.append(f"{what}: {len(values)} fit rows with {len(set(values))} class(es); a head needs two classes")
    same_encoder = parent is not None and encoder_name is not None and parent.encoder.get("name") == encoder_name
    if corpus is not None and cfg.touchpoint_data and \
            taxonomy.touchpoints.fingerprint() == default_taxonomy().touchpoints.fingerprint():
        heads["touchpoints"] = f"learned from the annotated corpus ({corpus[2]} fit texts)"
    elif parent is not None and parent.touchpoints is not None and (same_encoder or encoder_name is None) and \
            parent.touchpoints_fingerprint == taxonomy.touchpoints.fingerprint():
        heads["touchpoints"] = f"kept from the parent bundle {parent.version}"
    else:
        heads["touchpoints"] = "zero-shot (no annotated corpus, no parent heads for these touchpoints)"
    if parent is None:
        heads["zero_shot_calibration"] = "refitted on this run's topic labels (no parent)"
    elif cfg.zero_shot_calibration == "parent" and (same_encoder or encoder_name is None):
        heads["zero_shot_calibration"] = f"kept from the parent bundle {parent.version}"
    else:
        heads["zero_shot_calibration"] = "refitted on this run's topic labels"

    def label_counts(label: Any) -> dict[str, dict[str, int]]:
        return {part: dict(Counter(str(label(e)) for e in rows if label(e) is not None))
                for part, rows in (("fit", fit), ("calibration", cal), ("dev", dev))}  # fmt: skip

    return {
        "rows": {"train": len(train), "fit": len(fit), "calibration": len(cal), "dev": len(dev)},
        "sentiment": label_counts(lambda e: e.sentiment),
        "detractor": label_counts(lambda e: e.nps_detractor),
        "topics": topics,
        "heads": heads,
        "problems": problems,
        "min_topic_examples": minimum,
    }


def check_summary(report: dict[str, Any]) -> list[str]:
    """The report as the lines ``voce train`` logs and ``voce train --check`` prints."""
    r = report["rows"]
    lines = [f"data check: {r['train']} training rows ({r['fit']} fit + {r['calibration']} calibration), "
             f"{r['dev']} dev"]  # fmt: skip
    for what in ("sentiment", "detractor"):
        parts = report[what]
        if any(parts.values()):
            lines.append(f"  {what}: " + "; ".join(
                f"{part} " + ", ".join(f"{k} {v}" for k, v in sorted(c.items())) for part, c in parts.items() if c))
    labelled = {t: row for t, row in report["topics"].items() if row["labelled"]}
    if labelled:
        lines.append("  topic rows labelled / dev / calibration / fit: " + ", ".join(
            f"{t} {r['labelled']}/{r['dev']}/{r['calibration']}/{r['fit']}" for t, r in labelled.items()))
    h = report["heads"]
    lines.append(f"  topic heads ({len(h['topics_learned'])}): {', '.join(h['topics_learned']) or 'none'}")
    for tid, row in report["topics"].items():
        if row.get("reason") and row["labelled"] + row["corpus_fit"] > 0:
            lines.append(f"  no head for {tid}: {row['reason']}")
    unlabelled = [t for t, row in report["topics"].items() if not row["head"] and row["labelled"] + row["corpus_fit"] == 0]
    if unlabelled:
        lines.append(f"  zero-shot (no labels): {', '.join(unlabelled)}")
    lines.append(f"  topic polarity heads: {', '.join(h['topic_polarity']) or 'none'}")
    lines.append(f"  touchpoints: {h['touchpoints']}")
    lines.append(f"  zero-shot calibration: {h['zero_shot_calibration']}")
    lines += [f"  PROBLEM {p}" for p in report["problems"]]
    return lines


__all__ = ["check_report", "check_summary", "learnable_topics"]
