"""``voce eval``'s public-dev and real-text topic figures with and without the bundle's decision rules, side by side.

``python -m voce.eval.decisions_eval [decisions.json]`` encodes each dev text once and builds two results from the
same head outputs: the shipped bundle as it is and the same bundle with ``decisions`` (from the file, default
``reports/quality/decisions.json``, written by ``python -m voce.training.calibrate_decisions``).  Everything else
(encoder, heads, taxonomy) is shared, so any difference is the decision rules'.  Writes
``reports/quality/dev_metrics_decisions.json``: the metrics and bootstrap spreads of ``voce eval`` for both, plus
the real-text corpus's primary-topic accuracy outside hotels and restaurants.
"""
from __future__ import annotations

import json
import os
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from voce.data.datasets import load_all, load_ate_absita
from voce.data.realcx import load_realcx, split_realcx
from voce.data.splits import SplitSpec
from voce.eval.evaluate import SEMEVAL, _dev_metrics, _semeval_opinion_predictions, bootstrap_spread
from voce.eval.quality_dump import load_analyzer
from voce.eval.realcx import IN_DOMAIN_SOURCES, primary_topic_metrics
from voce.models.analyzer import Analyzer
from voce.models.types import DocumentError, DocumentInput, DocumentResult

OUT = Path("reports/quality/dev_metrics_decisions.json")


def paired_results(
    before: Analyzer, after: Analyzer, rows: list[tuple[str, str, str]], batch: int = 32
) -> tuple[dict[str, DocumentResult], dict[str, DocumentResult]]:
    """Results of both analyzers from one encoding of ``rows`` (uid, text, language)."""
    out_b: dict[str, DocumentResult] = {}
    out_a: dict[str, DocumentResult] = {}
    tax = before.taxonomy
    for start in range(0, len(rows), batch):
        docs = [DocumentInput(id=u, text=t, language=lang) for u, t, lang in rows[start : start + batch]]
        prepared = [p for p in (before._prepare(d) for d in docs) if not isinstance(p, DocumentError)]
        if not prepared:
            continue
        scored = before._score_units(prepared, tax)
        for row, p in enumerate(prepared):
            out_b[p.doc.id] = before._document(row, p, scored, tax)[0]
            out_a[p.doc.id] = after._document(row, p, scored, tax)[0]
        if (start // batch) % 40 == 0:
            print(f"  {min(start + batch, len(rows))}/{len(rows)}", flush=True)
    return out_b, out_a


def main() -> None:
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("reports/quality/decisions.json")
    decisions = json.loads(path.read_text("utf-8"))
    cache_dir = Path(os.environ.get("VOCE_CACHE_DIR", ".cache/voce"))
    before = load_analyzer(cache_dir)
    before.bundle = replace(before.bundle, decisions={})
    before = Analyzer(before.encoder, before.bundle, before.language_detector)
    after = Analyzer(before.encoder, replace(before.bundle, decisions=decisions), before.language_detector)
    spec = SplitSpec.from_manifest(before.bundle.manifest_extra.get("split"))
    _, dev = spec.split([e for rows in load_all().values() for e in rows])
    dev = [e for e in dev if e.text.strip()]
    extra = [e for e in load_ate_absita("dev") if e.text.strip()]
    res_b, res_a = paired_results(before, after, [(e.uid, e.text, e.language) for e in dev + extra])
    by_src: dict[str, list[Any]] = {}
    for e in dev:
        by_src.setdefault(e.source, []).append(e)
    semeval_pol = _semeval_opinion_predictions(before.bundle, before.encoder, by_src.get(SEMEVAL, []))
    report: dict[str, Any] = {"decisions_file": str(path)}
    _, cx_dev = split_realcx(load_realcx())
    outside = [r for r in cx_dev if r.source not in IN_DOMAIN_SOURCES]
    cx_b, cx_a = paired_results(before, after, [(r.uid, r.text, r.language) for r in outside])
    for name, res, cx in (("before", res_b, cx_b), ("after", res_a, cx_a)):
        m, _ = _dev_metrics(by_src, extra, res, semeval_pol)
        spread = bootstrap_spread(by_src, extra, res, semeval_pol)
        m["realcx_primary_topic_accuracy_non_hotel"] = primary_topic_metrics(outside, cx)
        report[name] = {"metrics": m, "spread": spread}
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(report, indent=2) + "\n", "utf-8")
    for key, value in report["before"]["metrics"].items():
        print(key, value, "->", report["after"]["metrics"].get(key))
    before.encoder.save()  # type: ignore[attr-defined]


if __name__ == "__main__":
    main()
