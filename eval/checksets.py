"""What the hand-made check sets share (`eval.consistency`, `eval.touchpoints`).

Each is a JSONL file packaged under ``eval/data``, run through an analyzer
built from the service settings (optionally on another bundle), and written as a
JSON report.
"""
from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

from voce.models.analyzer import Analyzer
from voce.models.types import DocumentInput, DocumentResult


def read_jsonl(name: str, path: Path | None = None) -> list[dict[str, Any]]:
    """Rows of ``path``, or of the packaged ``eval/data/<name>`` when no path is given."""
    text = path.read_text("utf-8") if path else resources.files("voce.eval").joinpath(f"data/{name}").read_text("utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def analyze_all(analyzer: Analyzer, docs: list[DocumentInput], batch: int = 25) -> dict[str, DocumentResult]:
    """Results keyed by document id; a document the analyzer refuses is a broken check set, so it raises."""
    out: dict[str, DocumentResult] = {}
    for start in range(0, len(docs), batch):
        results, errors = analyzer.analyze(docs[start : start + batch])
        if errors:
            raise RuntimeError(f"analysis failed: {errors}")
        out |= {r.id: r for r in results}
    return out


def write_report(out: Path, report: dict[str, Any], *, quiet: tuple[str, ...] = ()) -> None:
    """Write the JSON report and print it, less the (long) fields named in ``quiet``."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", "utf-8")
    print(json.dumps({k: v for k, v in report.items() if k not in quiet}, indent=2, ensure_ascii=False))
