"""Score a bundle on the dev split, through the same Analyzer the service runs.

Metrics follow the official definitions in :mod:`eval.metrics`.  Where Voce's
label space is coarser than a benchmark's (SemEval's 12 ENTITY#ATTRIBUTE
categories fold into 7 Voce topics), the report says so in the metric's name.
"""
from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from eval import metrics as M
from models.analyzer import Analyzer
from models.bundle import VoceBundle, default_bundle_path
from models.encoders.base import Encoder
from models.language import default_detector
from models.types import DocumentInput, DocumentResult
from training.data import (
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
from training.splits import split_examples

log = logging.getLogger(__name__)
Progress = Callable[[str], None]
THREE = ["positive", "neutral", "negative"]


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
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Every dev metric for ``bundle``; returns ``{"metrics": {...}, "details": {...}}``."""
    analyzer = Analyzer(encoder, bundle, default_detector())
    dev = [e for e in dev if e.text.strip()]
    extra = [e for e in (ate_dev or []) if e.text.strip()]
    res = analyze_examples(analyzer, dev + extra, progress=progress)
    by_src: dict[str, list[Example]] = {}
    for e in dev:
        if e.uid in res:
            by_src.setdefault(e.source, []).append(e)
    m: dict[str, Any] = {}
    details: dict[str, Any] = {}

    # sentiment
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
        labels = ["positive", "neutral", "negative", "mixed"]
        gold = [e.sentiment for e in all_s]
        pred = [res[e.uid].sentiment.label for e in all_s]
        m["sentiment_4way_macro_f1_all"] = round(M.macro_f1(gold, pred, labels), 4)
        details["sentiment_per_class"] = M.per_class_report(gold, pred, labels)

    # ABSITA aspects
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

    # SemEval restaurants (Voce topics: 12 categories fold into 7)
    se = by_src.get(SEMEVAL, [])
    if se:
        space = set(SEMEVAL_TOPIC_MAP.values())
        gold_sets = [{SEMEVAL_TOPIC_MAP[c] for c in e.raw.get("categories", [])} for e in se]
        pred_sets = [{t.id for t in res[e.uid].topics} & space for e in se]
        m["semeval_voce_topic_micro_f1"] = round(M.semeval_category_f1(gold_sets, pred_sets)["f1"], 4)
        gold_pol, pred_pol = [], []
        opinions = [(e, op) for e in se for op in e.raw.get("opinions", [])]
        if opinions:
            emb = encoder.encode([e.text for e, _ in opinions])
            for k, (_, op) in enumerate(opinions):
                topic = SEMEVAL_TOPIC_MAP[op["category"]]
                head = bundle.topic_polarity.get(topic, bundle.sentiment)
                p4 = head.predict_proba(emb[k : k + 1])[0]
                p3 = [p4[0] + p4[3] / 2, p4[1], p4[2] + p4[3] / 2]
                gold_pol.append(op["polarity"])
                pred_pol.append(THREE[int(np.argmax(p3))])
            m["semeval_polarity_accuracy_gold_categories"] = round(M.semeval_polarity_accuracy(gold_pol, pred_pol), 4)

    # airline complaint topic (negative tweets with a mapped reason)
    neg = [e for e in by_src.get(AIRLINE, []) if e.topics]
    if neg:
        space = sorted({t for t in AIRLINE_TOPIC_MAP.values() if t})
        gold, pred = [], []
        for e in neg:
            gold.append(next(iter(e.topics or {})))
            found = [t for t in res[e.uid].topics if t.id in space]
            pred.append(found[0].id if found else "none")
        m["airline_complaint_topic_macro_f1"] = round(M.macro_f1(gold, pred, space), 4)
        details["airline_complaint_topic_per_class"] = M.per_class_report(gold, pred, space)

    # detractor ranking
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
    m["dev_examples"] = len(res)
    return {"metrics": m, "details": details}


def run_eval(
    bundle_path: Path | None,
    *,
    data_dir: Path | None,
    cache_dir: Path,
    out: Path | None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """``voce eval``: load the bundle and its encoder, rebuild the dev split from its manifest, score."""
    from models.encoders.cache import CachedEncoder
    from models.encoders.factory import EncoderSpec, load_encoder

    bundle = VoceBundle.load(bundle_path or default_bundle_path())
    split = bundle.manifest_extra.get("split", {})
    enc_cfg = bundle.encoder
    encoder = CachedEncoder(
        load_encoder(
            EncoderSpec(
                backend=enc_cfg.get("backend", "onnx"),
                model=enc_cfg.get("model", "e5-small"),
                cache_dir=cache_dir,
                adapter=bundle.adapter,
            ),
            progress=progress,
        ),
        cache_dir,
    )
    examples = [e for rows in load_all(data_dir).values() for e in rows]
    _, dev = split_examples(examples, dev_fraction=split.get("dev_fraction", 0.2), seed=split.get("seed", 13))
    report = evaluate_bundle(bundle, encoder, dev, ate_dev=load_ate_absita("dev", data_dir), progress=progress)
    encoder.save()
    report["bundle"] = {"version": bundle.version, "path": str(bundle_path or default_bundle_path())}
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", "utf-8")
        from eval.plots import reliability_svg

        for key, title in (("sentiment_reliability", "Sentiment"), ("detractor_reliability", "Detractor")):
            if key in report["details"]:
                reliability_svg(report["details"][key], title, out.with_name(f"{out.stem}_{key}.svg"))
        if progress:
            progress(f"report written to {out}")
    return report
