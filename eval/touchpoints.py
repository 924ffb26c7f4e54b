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

    python -m eval.touchpoints --out reports/touchpoints.json [--bundle B]
"""
from __future__ import annotations

import argparse
import json
from importlib import resources
from pathlib import Path
from typing import Any

from models.analyzer import Analyzer
from models.types import DocumentInput

LANGUAGES = ("it", "en")


def load_checks(path: Path | None = None) -> list[dict[str, str]]:
    data = resources.files("eval").joinpath("data/touchpoints_it_en.jsonl")
    text = path.read_text("utf-8") if path else data.read_text("utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def run_touchpoints(analyzer: Analyzer, checks: list[dict[str, str]]) -> dict[str, Any]:
    docs = [DocumentInput(id=f"{lang}-{i}", text=c[lang], language=lang) for i, c in enumerate(checks) for lang in LANGUAGES]
    found: dict[str, list[str]] = {}
    for start in range(0, len(docs), 25):
        out, errors = analyzer.analyze(docs[start : start + 25])
        if errors:
            raise RuntimeError(f"analysis failed: {errors}")
        found |= {r.id: [t.id for t in r.touchpoints] for r in out}
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
    report["top1_agreement_it_en"] = round(
        sum(found[f"it-{i}"][:1] == found[f"en-{i}"][:1] for i in range(n)) / n, 4
    )
    report["misses"] = [
        {"touchpoint": c["touchpoint"], "language": lang, "text": c[lang], "reported": found[f"{lang}-{i}"]}
        for i, c in enumerate(checks)
        for lang in LANGUAGES
        if c["touchpoint"] not in found[f"{lang}-{i}"]
    ]
    return report


def main(argv: list[str] | None = None) -> None:
    from models.factory import load_analyzer
    from service.settings import Settings

    ap = argparse.ArgumentParser(prog="python -m eval.touchpoints", description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=Path("reports/touchpoints.json"))
    ap.add_argument("--bundle", type=Path, default=None)
    args = ap.parse_args(argv)
    s = Settings()
    analyzer = load_analyzer(backend=s.encoder_backend, model=s.encoder, cache_dir=s.cache_dir, bundle=args.bundle)
    report = run_touchpoints(analyzer, load_checks())
    report["bundle"] = analyzer.bundle.version
    report["command"] = "python -m eval.touchpoints --out " + str(args.out) + (f" --bundle {args.bundle}" if args.bundle else "")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", "utf-8")
    print(json.dumps({k: v for k, v in report.items() if k != "misses"}, indent=2))


if __name__ == "__main__":
    main()
