"""Score a bundle on the dev split, through the same Analyzer the service runs.

Metrics follow the official definitions in :mod:`eval.metrics`.  Where Voce's
label space is coarser than a benchmark's (SemEval's 12 ENTITY#ATTRIBUTE
categories fold into 7 Voce topics), the report says so in the metric's name.

A team's own labelled file (:mod:`voce.data.custom`) is scored with
:func:`score_labelled`: per-class sentiment, a confusion matrix, per-topic
P/R/F1 for the topics the file labels, and detractor ranking.  ``voce eval
--data FILE`` runs it on every row of the file; ``voce train`` runs it on the
dev rows of each ``extra_data`` file.
"""
from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from voce.data.custom import CustomData, is_custom_source, load_custom_file
from voce.data.datasets import (
    ABSITA,
    ABSITA_ASPECTS,
    ABSITA_TOPIC_MAP,
    AIRLINE,
    AIRLINE_TOPIC_MAP,
    ATE_ABSITA,
    SEMEVAL,
    SEMEVAL_TOPIC_MAP,
    SENTIPOLC,
    Example,
    absita_flag_matrix,
    load_all,
    load_ate_absita,
)
from voce.data.realcx import CXText, load_realcx
from voce.data.splits import SplitSpec
from voce.eval import metrics as M
from voce.models.analyzer import Analyzer
from voce.models.bundle import VoceBundle, default_bundle_path
from voce.models.encoders.base import Encoder, Precision
from voce.models.labels import SENTIMENT_LABELS, THREE_WAY_LABELS, three_way_label
from voce.models.language import default_detector
from voce.models.taxonomy import Taxonomy, load_taxonomy
from voce.models.types import DocumentInput, DocumentResult

if TYPE_CHECKING:
    from rich.console import RenderableType

    from voce.models.encoders.cache import CachedEncoder

log = logging.getLogger(__name__)
Progress = Callable[[str], None]
THREE = THREE_WAY_LABELS


def analyze_examples(
    analyzer: Analyzer, examples: list[Example], *, batch: int = 64, progress: Progress | None = None
) -> dict[str, DocumentResult]:
    """Run the analyzer over examples (language given, as an integrator would) keyed by uid."""
    out: dict[str, DocumentResult] = {}
    t0 = time.time()
    for i in range(0, len(examples), batch):
        chunk = examples[i : i + batch]
        docs = [DocumentInput(id=e.uid, text=e.text, language=e.language) for e in chunk]
        results, errors = analyzer.analyze(docs)
        for r in results:
            out[r.id] = r
        for err in errors:
            log.warning("dev example %s not analysed: %s", err.id, err.error)
        if progress and (i // batch) % 20 == 0:
            progress(f"  analysed {min(i + batch, len(examples))}/{len(examples)} ({time.time() - t0:.0f}s)")
    return out


def _topic_label(r: DocumentResult, topic: str) -> str | None:
    return next((t.sentiment.label for t in r.topics if t.id == topic), None)


def _three_way(r: DocumentResult) -> str:
    s = r.sentiment.scores
    return THREE[int(np.argmax([s.positive, s.neutral, s.negative]))]


def evaluate_bundle(
    bundle: VoceBundle,
    encoder: Encoder,
    dev: list[Example],
    *,
    ate_dev: list[Example] | None = None,
    taxonomy: Taxonomy | None = None,
    progress: Progress | None = None,
    realcx: list[CXText] | None = None,
    base_encoder: Callable[[], Encoder] | None = None,
) -> dict[str, Any]:
    """Every dev metric for ``bundle``; returns ``{"metrics": {...}, "details": {...}}``.

    Each custom source (``custom:<file>``) among ``dev`` gets its own
    :func:`score_labelled` section, under its source name in both dicts.  With ``realcx`` (the annotated
    real-text corpus) the touchpoint, primary-topic and journey-taxonomy figures of :mod:`voce.eval.realcx`
    join them; ``base_encoder`` is the encoder without the adapter, which exclusive sections read.
    """
    analyzer = Analyzer(encoder, bundle, default_detector(), taxonomy=taxonomy, base_encoder=base_encoder)
    dev = [e for e in dev if e.text.strip()]
    extra = [e for e in (ate_dev or []) if e.text.strip()]
    res = analyze_examples(analyzer, dev + extra, progress=progress)
    by_src: dict[str, list[Example]] = {}
    for e in dev:
        if e.uid in res:
            by_src.setdefault(e.source, []).append(e)
    semeval_pol = _semeval_opinion_predictions(bundle, encoder, by_src.get(SEMEVAL, []))
    m, details = _dev_metrics(by_src, extra, res, semeval_pol)
    spread = bootstrap_spread(by_src, extra, res, semeval_pol)

    # the team's own data, one section per file
    for source in sorted(s for s in by_src if is_custom_source(s)):
        section = score_labelled(by_src[source], res, topic_space=analyzer.taxonomy.topics.ids)
        m[source] = section["metrics"]
        details[source] = section["details"]
    m["dev_examples"] = len(res)
    for name in M.not_applicable(m, analyzer.taxonomy.topics.ids):
        spread.pop(name, None)
    if realcx:
        _realcx_sections(analyzer, realcx, m, details, progress)
    return {"metrics": m, "spread": spread, "details": details}


def _realcx_sections(
    analyzer: Analyzer, rows: list[CXText], m: dict[str, Any], details: dict[str, Any], progress: Progress | None
) -> None:
    """The real-text corpus's figures, when the analyzer's touchpoints are the ones the corpus is labelled with."""
    from voce.eval.realcx import evaluate_corpus, evaluate_journeys
    from voce.models.taxonomy import default_taxonomy

    if analyzer.taxonomy.touchpoints.fingerprint() != default_taxonomy().touchpoints.fingerprint():
        details["realcx"] = {"skipped": "the taxonomy's touchpoints are not the ones the corpus is labelled with"}
        return
    metrics, corpus = evaluate_corpus(analyzer, rows, progress=progress)
    journeys = evaluate_journeys(analyzer, rows, shots=(0,), progress=progress)
    for name, part in journeys.items():
        z = part["zero_shot"]
        if z.get("texts"):
            metrics[f"journey_{name}_accuracy"] = z["accuracy"]
            metrics[f"journey_{name}_majority"] = z["baseline_majority"]["accuracy"]
    m.update(metrics)
    details["realcx"] = {**corpus, "journeys": journeys}


def _semeval_opinion_predictions(
    bundle: VoceBundle, encoder: Encoder, se: list[Example]
) -> dict[str, list[tuple[str, str]]]:
    """(gold, predicted) polarity per SemEval opinion, keyed by sentence: the gold category picks the topic's head."""
    opinions = [(e, op) for e in se for op in e.raw.get("opinions", [])]
    out: dict[str, list[tuple[str, str]]] = {}
    if not opinions:
        return out
    texts = [e.text for e, _ in opinions]
    emb = encoder.encode(texts)
    lex = bundle.lexical_features(texts)
    for k, (e, op) in enumerate(opinions):
        topic = SEMEVAL_TOPIC_MAP[op["category"]]
        head = bundle.topic_polarity.get(topic, bundle.sentiment)
        p4 = head.predict_proba(emb[k : k + 1], lex[k : k + 1] if lex is not None else None)[0]
        out.setdefault(e.uid, []).append((op["polarity"], three_way_label(p4)))
    return out


def _dev_metrics(
    by_src: dict[str, list[Example]],
    extra: list[Example],
    res: dict[str, DocumentResult],
    semeval_pol: dict[str, list[tuple[str, str]]],
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The public-benchmark metrics over analysed examples grouped by source (pure: the bootstrap reruns it)."""
    m: dict[str, Any] = {}
    details: dict[str, Any] = {}
    _sentiment_metrics(by_src, res, m, details)
    _aspect_metrics(by_src, res, semeval_pol, m, details)
    _detractor_metrics(by_src, extra, res, m, details)
    return m, details


def _sentiment_metrics(
    by_src: dict[str, list[Example]], res: dict[str, DocumentResult], m: dict[str, Any], details: dict[str, Any]
) -> None:
    """SENTIPOLC polarity F, airline 3-way macro-F1, calibration and 4-way macro-F1 over every labelled row."""
    dev = [e for rows in by_src.values() for e in rows]
    sp = [e for e in by_src.get(SENTIPOLC, []) if e.sentiment]
    if sp:
        gp, gn = M.sentiments_to_flags([e.sentiment for e in sp if e.sentiment])
        pp, pn = M.sentiments_to_flags([res[e.uid].sentiment.label for e in sp])
        m["sentipolc_polarity_f"] = round(M.sentipolc_polarity_f(gp, gn, pp, pn)["f"], 4)
    air = [e for e in by_src.get(AIRLINE, []) if e.sentiment]
    if air:
        gold = [e.sentiment for e in air]
        pred = [_three_way(res[e.uid]) for e in air]
        m["airline_sentiment_macro_f1"] = round(M.macro_f1(gold, pred, THREE), 4)
        details["airline_sentiment_confusion"] = M.confusion_matrix_dict(gold, pred, THREE)
    three = [e for e in dev if e.uid in res and e.sentiment in THREE]
    if three:
        probs = np.asarray([[getattr(res[e.uid].sentiment.scores, k) for k in THREE] for e in three])
        y = np.asarray([THREE.index(e.sentiment) for e in three if e.sentiment])
        m["sentiment_ece"] = round(M.expected_calibration_error(probs, y), 4)
        details["sentiment_reliability"] = M.reliability_bins(probs, y)
    all_s = [e for e in dev if e.uid in res and e.sentiment]
    if all_s:
        labels = list(SENTIMENT_LABELS)
        gold = [e.sentiment for e in all_s]
        pred = [res[e.uid].sentiment.label for e in all_s]
        m["sentiment_4way_macro_f1_all"] = round(M.macro_f1(gold, pred, labels), 4)
        details["sentiment_per_class"] = M.per_class_report(gold, pred, labels)


def _aspect_metrics(
    by_src: dict[str, list[Example]], res: dict[str, DocumentResult], semeval_pol: dict[str, list[tuple[str, str]]],
    m: dict[str, Any], details: dict[str, Any],
) -> None:
    """ABSITA aspects, SemEval categories (12 fold into 7 Voce topics) and polarity, airline complaint topics."""
    ab = by_src.get(ABSITA, [])
    if ab:
        gold_m = np.asarray(absita_flag_matrix(ab))
        pred_m = np.zeros_like(gold_m)
        for i, e in enumerate(ab):
            for j, a in enumerate(ABSITA_ASPECTS):
                lab = _topic_label(res[e.uid], ABSITA_TOPIC_MAP[a])
                if lab is not None:
                    pos, neg = M.sentiment_to_flags(lab)
                    pred_m[i, j] = (1, pos, neg)
        m["absita_aspect_detection_micro_f1"] = round(M.absita_aspect_detection_f1(gold_m[..., 0], pred_m[..., 0])["f1"], 4)
        m["absita_aspect_polarity_micro_f1"] = round(M.absita_aspect_polarity_f1(gold_m, pred_m)["f1"], 4)
    se = by_src.get(SEMEVAL, [])
    if se:
        space = set(SEMEVAL_TOPIC_MAP.values())
        gold_sets = [{SEMEVAL_TOPIC_MAP[c] for c in e.raw.get("categories", [])} for e in se]
        pred_sets = [{t.id for t in res[e.uid].topics} & space for e in se]
        m["semeval_voce_topic_micro_f1"] = round(M.semeval_category_f1(gold_sets, pred_sets)["f1"], 4)
        pairs = [p for e in se for p in semeval_pol.get(e.uid, [])]
        if pairs:
            m["semeval_polarity_accuracy_gold_categories"] = round(
                M.semeval_polarity_accuracy([g for g, _ in pairs], [p for _, p in pairs]), 4)
    complaints = [e for e in by_src.get(AIRLINE, []) if e.topics]
    if complaints:
        reasons = sorted({t for t in AIRLINE_TOPIC_MAP.values() if t})
        gold_reason = [next(iter(e.topics or {})) for e in complaints]
        pred_reason = []
        for e in complaints:
            found = [t for t in res[e.uid].topics if t.id in reasons]
            pred_reason.append(found[0].id if found else "none")
        m["airline_complaint_topic_macro_f1"] = round(M.macro_f1(gold_reason, pred_reason, reasons), 4)
        details["airline_complaint_topic_per_class"] = M.per_class_report(gold_reason, pred_reason, reasons)


def _detractor_metrics(
    by_src: dict[str, list[Example]], extra: list[Example], res: dict[str, DocumentResult], m: dict[str, Any],
    details: dict[str, Any],
) -> None:
    """Detractor calibration over every proxy-labelled row, and ranking (ROC-AUC) per source."""
    dev = [e for rows in by_src.values() for e in rows]
    det_rows = [e for e in dev + extra if e.uid in res and e.nps_detractor is not None]
    if det_rows:
        p_det = np.asarray([res[e.uid].detractor.probability for e in det_rows])
        y_det = np.asarray([e.nps_detractor for e in det_rows])
        m["detractor_ece"] = round(M.expected_calibration_error(p_det, y_det), 4)
        details["detractor_reliability"] = M.reliability_bins(p_det, y_det)
    for name, rows in (
        ("detractor_auc_ate_absita_dev_split", by_src.get(ATE_ABSITA, [])),
        ("detractor_auc_airline", by_src.get(AIRLINE, [])),
        ("detractor_auc_ate_absita_official_dev", [e for e in extra if e.uid in res]),
    ):
        rows = [e for e in rows if e.nps_detractor is not None]
        if rows and len({e.nps_detractor for e in rows}) == 2:
            m[name] = round(
                M.roc_auc([e.nps_detractor for e in rows], [res[e.uid].detractor.probability for e in rows]), 4
            )


def bootstrap_spread(
    by_src: dict[str, list[Example]],
    extra: list[Example],
    res: dict[str, DocumentResult],
    semeval_pol: dict[str, list[tuple[str, str]]],
    *,
    rounds: int = 200,
    seed: int = 13,
) -> dict[str, dict[str, float]]:
    """Mean, standard deviation and 95% percentile interval of every dev metric over bootstrap resamples.

    Each source's dev examples (and the official ATE dev set) are resampled with replacement, so the spread
    says how much a metric would move on another sample of the same size: a gap to a target smaller than
    the spread is noise, not progress.
    """
    rng = np.random.default_rng(seed)
    runs: dict[str, list[float]] = {}
    public = {k: v for k, v in by_src.items() if not is_custom_source(k)}
    for _ in range(rounds):
        sample = {k: [v[i] for i in rng.integers(0, len(v), len(v))] for k, v in public.items() if v}
        sample_extra = [extra[i] for i in rng.integers(0, len(extra), len(extra))] if extra else []
        m, _ = _dev_metrics(sample, sample_extra, res, semeval_pol)
        for k, v in m.items():
            if isinstance(v, int | float):
                runs.setdefault(k, []).append(float(v))
    out = {}
    for k, vals in runs.items():
        a = np.asarray(vals)
        out[k] = {
            "mean": round(float(a.mean()), 4), "std": round(float(a.std(ddof=1)), 4),
            "ci_low": round(float(np.percentile(a, 2.5)), 4), "ci_high": round(float(np.percentile(a, 97.5)), 4),
        }
    return out


def _prf(tp: int, fp: int, fn: int) -> dict[str, float]:
    """Precision/recall/F1 with the conventions of :mod:`eval.metrics` (nothing to divide -> 0)."""
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1}


def score_labelled(
    examples: list[Example], res: dict[str, DocumentResult], *, topic_space: list[str]
) -> dict[str, Any]:
    """Metrics of analyzer results against a team's own labels; every part only when the file labels it.

    * sentiment (4-way): accuracy, macro-F1 over the classes present in the gold
      labels (a class the file never uses would score 0 and drag the mean), a
      per-class report and a confusion matrix over all four labels, and the
      top-label ECE of the 3-way scores on rows labelled positive/neutral/negative;
    * topics, on topic-annotated rows (``topics`` not ``None``), for the topics the
      file labels: per-topic and micro P/R/F1 (predicted topics outside that set are
      not counted), and the polarity accuracy of correctly found topics.  Labelled
      topics missing from ``topic_space`` (the analyzer's taxonomy) can never be
      predicted; they are listed in ``details["topics_not_in_taxonomy"]``;
    * detractor: ROC-AUC (when both classes occur), ECE and the detractor rate.
    """
    rows = [e for e in examples if e.uid in res]
    m: dict[str, Any] = {"examples": len(rows)}
    details: dict[str, Any] = {}

    s_rows = [e for e in rows if e.sentiment]
    if s_rows:
        gold = [e.sentiment for e in s_rows]
        pred = [res[e.uid].sentiment.label for e in s_rows]
        present = [lab for lab in SENTIMENT_LABELS if lab in set(gold)]
        m["sentiment_examples"] = len(s_rows)
        m["sentiment_accuracy"] = round(M.accuracy(gold, pred), 4)
        m["sentiment_macro_f1"] = round(M.macro_f1(gold, pred, present), 4)
        details["sentiment_macro_f1_labels"] = present
        details["sentiment_per_class"] = M.per_class_report(gold, pred, SENTIMENT_LABELS)
        details["sentiment_confusion"] = M.confusion_matrix_dict(gold, pred, SENTIMENT_LABELS)
        three = [e for e in s_rows if e.sentiment in THREE]
        if three:
            probs = np.asarray([[getattr(res[e.uid].sentiment.scores, k) for k in THREE] for e in three])
            y = np.asarray([THREE.index(e.sentiment) for e in three if e.sentiment])
            m["sentiment_ece"] = round(M.expected_calibration_error(probs, y), 4)
            details["sentiment_reliability"] = M.reliability_bins(probs, y)

    t_rows = [e for e in rows if e.topics is not None]
    labelled = sorted({t for e in t_rows for t in e.topics or {}})
    if labelled:
        per_topic: dict[str, dict[str, float]] = {}
        tp_all = fp_all = fn_all = 0
        pol_gold: list[str] = []
        pol_pred: list[str] = []
        for tid in labelled:
            tp = fp = fn = 0
            for e in t_rows:
                found = next((t for t in res[e.uid].topics if t.id == tid), None)
                is_gold = tid in (e.topics or {})
                tp += bool(found and is_gold)
                fp += bool(found and not is_gold)
                fn += bool(is_gold and not found)
                if found and is_gold and e.topics:
                    pol_gold.append(e.topics[tid])
                    pol_pred.append(found.sentiment.label)
            prf = _prf(tp, fp, fn)
            per_topic[tid] = {k: prf[k] for k in ("precision", "recall", "f1")} | {"support": float(tp + fn)}
            tp_all, fp_all, fn_all = tp_all + tp, fp_all + fp, fn_all + fn
        micro = _prf(tp_all, fp_all, fn_all)
        m["topic_examples"] = len(t_rows)
        m["topic_micro_precision"] = round(micro["precision"], 4)
        m["topic_micro_recall"] = round(micro["recall"], 4)
        m["topic_micro_f1"] = round(micro["f1"], 4)
        m["topic_macro_f1"] = round(float(np.mean([v["f1"] for v in per_topic.values()])), 4)
        if pol_gold:
            m["topic_polarity_accuracy"] = round(M.accuracy(pol_gold, pol_pred), 4)
        details["topic_per_class"] = per_topic
        details["topics_not_in_taxonomy"] = [t for t in labelled if t not in topic_space]

    d_rows = [e for e in rows if e.nps_detractor is not None]
    if d_rows:
        p_det = np.asarray([res[e.uid].detractor.probability for e in d_rows])
        y_det = np.asarray([e.nps_detractor for e in d_rows])
        m["detractor_examples"] = len(d_rows)
        m["detractor_rate"] = round(float(y_det.mean()), 4)
        if len(set(y_det.tolist())) == 2:
            m["detractor_auc"] = round(M.roc_auc(y_det, p_det), 4)
        m["detractor_ece"] = round(M.expected_calibration_error(p_det, y_det), 4)
        details["detractor_reliability"] = M.reliability_bins(p_det, y_det)
    return {"metrics": m, "details": details}


#: the thresholds of the threshold table (``voce eval --data F --thresholds``)
THRESHOLD_GRID = tuple(round(0.05 * k, 2) for k in range(1, 20))


def topic_probabilities(
    bundle: VoceBundle, encoder: Encoder, examples: list[Example], taxonomy: Taxonomy | None = None,
    base_encoder: Callable[[], Encoder] | None = None,
) -> tuple[list[str], dict[str, DocumentResult]]:
    """Every topic's document score for every row (not only those past a threshold): the analyzer on a copy of the
    bundle whose chosen thresholds are all 0, so each topic is reported with its score."""
    from dataclasses import replace

    ids = (taxonomy or bundle.taxonomy()).topics.ids
    everything = replace(bundle, decisions={**bundle.decisions, "topic_thresholds": dict.fromkeys(ids, 0.0)})
    analyzer = Analyzer(encoder, everything, default_detector(), taxonomy=taxonomy, base_encoder=base_encoder)
    return ids, analyze_examples(analyzer, examples)


def threshold_table(examples: list[Example], scores: dict[str, dict[str, float]]) -> dict[str, Any]:
    """Per labelled topic: precision, recall and F1 at each threshold of :data:`THRESHOLD_GRID`, and the F1-best one.

    ``scores`` is uid -> topic -> document score; rows without topic labels are left out.
    """
    rows = [e for e in examples if e.topics is not None and e.uid in scores]
    labelled = sorted({t for e in rows for t in e.topics or {}})
    out: dict[str, Any] = {}
    for tid in labelled:
        y = np.asarray([tid in (e.topics or {}) for e in rows])
        p = np.asarray([scores[e.uid].get(tid, 0.0) for e in rows])
        table = []
        for t in THRESHOLD_GRID:
            prf = _prf(int((y & (p >= t)).sum()), int((~y & (p >= t)).sum()), int((y & (p < t)).sum()))
            table.append({"threshold": t, **{k: round(v, 4) for k, v in prf.items()}, "predicted": int((p >= t).sum())})
        best = max(table, key=lambda r: (r["f1"], -abs(r["threshold"] - 0.5)))
        out[tid] = {"support": int(y.sum()), "rows": len(rows), "best_f1_threshold": best["threshold"],
                    "best_f1": best["f1"], "table": table}  # fmt: skip
    return out


def intervals(examples: list[Example], res: dict[str, DocumentResult], topic_space: list[str],
              rounds: int = 1000) -> dict[str, dict[str, Any]]:  # fmt: skip
    """95% bootstrap intervals of the file's headline metrics (rows resampled with replacement)."""
    from voce.eval.compare import _labelled_tasks

    out = {}
    for task in _labelled_tasks("data", examples, res, res, set(topic_space), set(topic_space)):
        full = np.arange(task.n)
        value = task.a(full)
        if value is None:
            continue
        rng = np.random.default_rng(13)
        vals = [v for v in (task.a(rng.integers(0, task.n, task.n)) for _ in range(rounds)) if v is not None]
        out[task.name] = {"value": round(value, 4), "ci_low": round(float(np.percentile(vals, 2.5)), 4),
                          "ci_high": round(float(np.percentile(vals, 97.5)), 4), "n": task.n}  # fmt: skip
    return out


def evaluate_labelled(
    bundle: VoceBundle,
    encoder: Encoder,
    data: CustomData,
    *,
    taxonomy: Taxonomy | None = None,
    progress: Progress | None = None,
    probabilities: bool = False,
) -> dict[str, Any]:
    """Score ``bundle`` on every usable row of a team's labelled file (no split), with 95% bootstrap intervals.

    With ``probabilities`` the report also holds every row's scores (``rows``) and the per-topic threshold table.
    """
    analyzer = Analyzer(encoder, bundle, default_detector(), taxonomy=taxonomy)
    res = analyze_examples(analyzer, data.examples, progress=progress)
    report = score_labelled(data.examples, res, topic_space=analyzer.taxonomy.topics.ids)
    report["intervals"] = intervals(data.examples, res, analyzer.taxonomy.topics.ids)
    if probabilities:
        ids, every = topic_probabilities(bundle, encoder, data.examples, taxonomy)
        scores = {uid: {t.id: t.score for t in r.topics} for uid, r in every.items()}
        report["thresholds"] = threshold_table(data.examples, scores)
        report["rows"] = [
            {"id": e.uid, "line": e.raw.get("line"), "sentiment": res[e.uid].sentiment.label,
             "sentiment_scores": res[e.uid].sentiment.scores.model_dump(),
             "topics": {tid: round(scores[e.uid].get(tid, 0.0), 6) for tid in ids},
             "reported_topics": [t.id for t in res[e.uid].topics],
             "detractor": round(res[e.uid].detractor.probability, 6),
             "gold": {"sentiment": e.sentiment, "topics": e.topics, "detractor": e.nps_detractor}}
            for e in data.examples if e.uid in res and e.uid in every
        ]  # fmt: skip
    report["data"] = {
        "file": str(data.path),
        "source": data.source,
        "sha256": data.sha256,
        "encoding": data.encoding,
        "delimiter": data.delimiter,
        "rows": len(data.examples),
        "labels": data.label_counts(),
        "skipped_rows": [{"line": e.line, "reason": e.reason} for e in data.errors],
        "not_analysed": [e.raw.get("line") for e in data.examples if e.uid not in res],
        "ignored_columns": data.ignored_columns,
    }
    report["taxonomy_version"] = analyzer.taxonomy.version
    return report


def _bundle_encoder(
    bundle: VoceBundle, cache_dir: Path, progress: Progress | None, adapter: bool = True, precision: Precision = "fp32",
    student: bool = False,
) -> CachedEncoder:
    """The encoder a bundle was trained with (or its base, without the adapter), behind the on-disk embedding cache
    (keyed by the encoder's name, which names an int8 ``precision``)."""
    from voce.models.encoders.cache import CachedEncoder
    from voce.models.encoders.factory import load_encoder

    spec = bundle.encoder_spec(cache_dir=cache_dir, precision=precision, student=student and adapter)
    if not adapter:
        spec = spec.model_copy(update={"adapter": None})
    return CachedEncoder(load_encoder(spec, progress=progress), cache_dir)


def realcx_corpus(data_dir: Path | None, progress: Progress | None = None) -> list[CXText] | None:
    """The annotated real-text corpus, or None (said once) when its texts are not in the data folder."""
    try:
        return load_realcx(data_dir)
    except (FileNotFoundError, ValueError, KeyError) as exc:
        if progress:
            progress(f"real-text corpus not scored: {exc}")
        return None


def run_eval(
    bundle_path: Path | None,
    *,
    data_dir: Path | None,
    cache_dir: Path,
    out: Path | None,
    data: Path | None = None,
    taxonomy: Path | None = None,
    progress: Progress | None = None,
    predictions: Path | None = None,
    save_thresholds: Path | None = None,
    thresholds: dict[str, float] | None = None,
    precision: Precision = "fp32",
    student: bool = False,
) -> dict[str, Any]:
    """``voce eval``: load the bundle and its encoder (at ``precision``; ``student``: its distilled student), then
    score it.

    With ``data``: ``predictions`` writes every row's scores as JSONL, and ``save_thresholds`` writes a copy of the
    bundle whose topics report at their F1-best threshold on the file (or at ``thresholds``, topic -> value).

    With ``data``, on every row of that labelled file (:func:`evaluate_labelled`);
    otherwise on the dev split of the public data, rebuilt from the manifest.
    ``taxonomy`` replaces the bundle's (custom or default) taxonomy.
    """
    bundle = VoceBundle.load(bundle_path or default_bundle_path())
    encoder = _bundle_encoder(bundle, cache_dir, progress, precision=precision, student=student)
    base = (_bundle_encoder(bundle, cache_dir, progress, adapter=False, precision=precision)
            if bundle.adapter is not None else encoder)
    tax = load_taxonomy(taxonomy, base=bundle.taxonomy()) if taxonomy else None
    if data is not None:
        labelled = load_custom_file(data)
        if progress:
            progress(f"{data}: {labelled.summary()}")
        report = evaluate_labelled(bundle, encoder, labelled, taxonomy=tax, progress=progress, probabilities=True)
        rows = report.pop("rows")
        if predictions is not None:
            predictions.parent.mkdir(parents=True, exist_ok=True)
            predictions.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), "utf-8")
            if progress:
                progress(f"per-row probabilities written to {predictions}")
        if save_thresholds is not None:
            report["saved_thresholds"] = save_topic_thresholds(
                bundle, save_thresholds, report["thresholds"], thresholds or {}, labelled, progress)
    else:
        examples = [e for rows in load_all(data_dir).values() for e in rows]
        _, dev = SplitSpec.from_manifest(bundle.manifest_extra.get("split")).split(examples)
        report = evaluate_bundle(
            bundle, encoder, dev, ate_dev=load_ate_absita("dev", data_dir), taxonomy=tax, progress=progress,
            realcx=realcx_corpus(data_dir, progress), base_encoder=lambda: base,
        )
    encoder.save()
    if base is not encoder:
        base.save()
    report["bundle"] = {"version": bundle.version, "path": str(bundle_path or default_bundle_path())}
    report["encoder"] = {"name": encoder.name, "precision": precision, "student": student}
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", "utf-8")
        from voce.eval.plots import reliability_svg

        for key, title in (("sentiment_reliability", "Sentiment"), ("detractor_reliability", "Detractor")):
            if key in report["details"]:
                reliability_svg(report["details"][key], title, out.with_name(f"{out.stem}_{key}.svg"))
        if progress:
            progress(f"report written to {out}")
    return report


def save_topic_thresholds(
    bundle: VoceBundle, dest: Path, table: dict[str, Any], chosen: dict[str, float], data: CustomData,
    progress: Progress | None = None,
) -> dict[str, float]:
    """Write a copy of ``bundle`` to ``dest`` whose topics report at the F1-best thresholds of ``table`` (``chosen``
    overrides them, and may name topics the table lacks); the choice and its file are recorded in the manifest."""
    from dataclasses import replace

    known = set(bundle.taxonomy().topics.ids)
    unknown = sorted(set(chosen) - known)
    if unknown:
        raise ValueError(f"no such topic in the bundle's taxonomy: {', '.join(unknown)}")
    bad = sorted(k for k, v in chosen.items() if not 0.0 < v < 1.0)
    if bad:
        raise ValueError(f"a threshold must be between 0 and 1 (exclusive): {', '.join(bad)}")
    picked = {tid: float(r["best_f1_threshold"]) for tid, r in table.items() if tid in known and r["support"] > 0}
    picked |= {k: float(v) for k, v in chosen.items()}
    copy = replace(
        bundle, decisions={**bundle.decisions, "topic_thresholds": {**bundle.decisions.get("topic_thresholds", {}),
                                                                    **picked}},
        manifest_extra={**bundle.manifest_extra, "topic_thresholds_from": {"file": data.path.name, "sha256": data.sha256,
                                                                           "chosen": sorted(chosen)}},
    )  # fmt: skip
    copy.save(dest)
    if progress:
        progress(f"bundle with {len(picked)} chosen topic thresholds written to {dest}")
    return picked


def labelled_report_renderables(
    report: dict[str, Any], *, max_skipped: int = 10, thresholds: bool = False
) -> list[RenderableType]:
    """Terminal tables for an :func:`evaluate_labelled` report (rich is a ``serve`` extra, so imported here)."""
    from rich.table import Table
    from rich.text import Text

    m, d, info = report["metrics"], report["details"], report.get("data", {})
    out: list[RenderableType] = []
    bundle = report.get("bundle", {}).get("version", "?")
    out.append(
        Text(
            f"bundle {bundle} on {info.get('file', '?')}: {m.get('examples', 0)} rows analysed, "
            f"{len(info.get('skipped_rows', []))} skipped, {len(info.get('not_analysed', []))} not analysed"
        )
    )

    def num(v: float | None) -> str:
        return "-" if v is None else f"{v:.3f}"

    if "sentiment_per_class" in d:
        t = Table(title="Sentiment", title_justify="left")
        for col in ("label", "precision", "recall", "F1", "support"):
            t.add_column(col, justify="left" if col == "label" else "right")
        for label, r in d["sentiment_per_class"].items():
            t.add_row(label, num(r["precision"]), num(r["recall"]), num(r["f1"]), str(int(r["support"])))
        t.add_section()
        t.add_row("macro-F1", "", "", num(m.get("sentiment_macro_f1")), str(m.get("sentiment_examples", "")))
        t.add_row("accuracy", "", "", num(m.get("sentiment_accuracy")), "")
        t.add_row("ECE (3-way)", "", "", num(m.get("sentiment_ece")), "")
        out.append(t)
        cm = d["sentiment_confusion"]
        c = Table(title="Sentiment confusion (rows: gold, columns: predicted)", title_justify="left")
        c.add_column("gold \\ pred")
        for label in cm:
            c.add_column(label, justify="right")
        for gold, row in cm.items():
            c.add_row(gold, *(str(v) for v in row.values()))
        out.append(c)
    if "topic_per_class" in d:
        t = Table(title="Topics", title_justify="left")
        for col in ("topic", "precision", "recall", "F1", "support"):
            t.add_column(col, justify="left" if col == "topic" else "right")
        missing = set(d.get("topics_not_in_taxonomy", []))
        for tid, r in d["topic_per_class"].items():
            name = f"{tid} (not in taxonomy)" if tid in missing else tid
            t.add_row(name, num(r["precision"]), num(r["recall"]), num(r["f1"]), str(int(r["support"])))
        t.add_section()
        t.add_row(
            "micro", num(m.get("topic_micro_precision")), num(m.get("topic_micro_recall")), num(m.get("topic_micro_f1")),
            str(int(sum(r["support"] for r in d["topic_per_class"].values()))),
        )
        t.add_row("macro-F1", "", "", num(m.get("topic_macro_f1")), "")
        t.add_row("polarity accuracy (found topics)", "", "", num(m.get("topic_polarity_accuracy")), "")
        out.append(t)
    if report.get("intervals"):
        t = Table(title="95% bootstrap intervals (rows resampled)", title_justify="left")
        for col in ("metric", "value", "interval", "rows"):
            t.add_column(col, justify="left" if col == "metric" else "right")
        for name, r in report["intervals"].items():
            t.add_row(name, num(r["value"]), f"[{r['ci_low']:.3f}, {r['ci_high']:.3f}]", str(r["n"]))
        out.append(t)
    if thresholds and report.get("thresholds"):
        for tid, r in report["thresholds"].items():
            t = Table(title=f"Topic {tid}: {r['support']} of {r['rows']} rows; F1-best threshold "
                            f"{r['best_f1_threshold']:.2f} (F1 {r['best_f1']:.3f})", title_justify="left")  # fmt: skip
            for col in ("threshold", "precision", "recall", "F1", "predicted"):
                t.add_column(col, justify="right")
            for row in r["table"]:
                t.add_row(f"{row['threshold']:.2f}", num(row["precision"]), num(row["recall"]), num(row["f1"]),
                          str(row["predicted"]))  # fmt: skip
            out.append(t)
    if "detractor_examples" in m:
        t = Table(title="Detractor", title_justify="left")
        t.add_column("metric")
        t.add_column("value", justify="right")
        t.add_row("ROC-AUC", num(m.get("detractor_auc")) if "detractor_auc" in m else "- (one class only)")
        t.add_row("ECE", num(m.get("detractor_ece")))
        t.add_row("detractor rate", num(m.get("detractor_rate")))
        t.add_row("rows", str(m["detractor_examples"]))
        out.append(t)
    skipped = info.get("skipped_rows", [])
    if skipped:
        lines = [f"  line {e['line']}: {e['reason']}" for e in skipped[:max_skipped]]
        if len(skipped) > max_skipped:
            lines.append(f"  ... {len(skipped) - max_skipped} more in the JSON report")
        out.append(Text("skipped rows:\n" + "\n".join(lines)))
    return out
