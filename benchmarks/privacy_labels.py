"""Personal-data detection and what redaction does to the analysis, measured (MODEL_CARD.md, README "Personal data").

    python -m benchmarks.privacy_labels --out reports/privacy/redaction.json

1. The detector on the hand-annotated examples of ``tests/service/privacy/examples.py`` (invented texts with
   checksum-valid values; a fixture, not real customer data): precision and recall overall and per kind, on the
   set the name cues were tuned on and on the held-out set.
2. The detector on real public dev texts (``voce.data.datasets.load_all``, reviews and tweets, no annotation of
   personal data): how often it finds something, of which kind, a sample of what it found (to read by eye), and
   its time per text on this machine.
3. The analysis of the annotated texts that hold personal data, by the shipped bundle over the real e5 encoder,
   on the original against the redacted, the masked and two versions where the personal data is swapped for
   other invented values (the model's sensitivity to *any* change of those words): sentiment kept, topic set kept.
   Stored labels always come from the original text; this is what re-analysing a stored text would give.
"""
from __future__ import annotations

import argparse
import json
import random
import time
from collections import Counter
from pathlib import Path
from typing import Any

from tests.service.privacy.examples import EXAMPLES, HELD_OUT
from tests.service.privacy.measure import measure
from voce.models.types import DocumentInput
from voce.service.privacy import Redactor
from voce.service.privacy.detect import PiiDetector, default_detector
from voce.service.privacy.redact import mask

#: other invented values of each kind (checksum-valid where a checksum exists), for the swap baselines
SWAPS = {
    "EMAIL": ["anna.bianchi@esempio.it", "paolo.verdi@mail.com"], "PHONE": ["340 555 1234", "+39 02 1234 5678"],
    "NAME": ["Luca Ferri", "Sara"], "IBAN": ["IT40 S054 2811 1010 0000 0123 456", "DE89 3704 0044 0532 0130 00"],
    "CARD": ["5105 1051 0510 5100", "4012 8888 8888 1881"],
    "CODICE_FISCALE": ["BNCGLI90A41F205H", "RSSMRA85T10A562S"], "PARTITA_IVA": ["12345678903", "01114601006"],
    "ID_DOCUMENT": ["CA12345BB", "AY7654321"],
}


def _replace(detector: PiiDetector, text: str, how: Any) -> str:
    parts, pos = [], 0
    for f in detector.find(text):
        parts += [text[pos : f.start], how(f.kind, text[f.start : f.end])]
        pos = f.end
    return "".join(parts + [text[pos:]])


def label_agreement(analyzer: Any, detector: PiiDetector, texts: list[str]) -> dict[str, Any]:
    def labels(ts: list[str]) -> list[tuple[str, tuple[str, ...]]]:
        results, _ = analyzer.analyze([DocumentInput(id=str(i), text=t) for i, t in enumerate(ts)])
        return [(r.sentiment.label, tuple(sorted(t.id for t in r.topics))) for r in results]

    base = labels(texts)
    variants = {
        "redact": lambda k, s: f"<{k}>", "mask": mask,
        "swap_a": lambda k, s: SWAPS[k][0], "swap_b": lambda k, s: SWAPS[k][1],
    }
    out: dict[str, Any] = {"texts": len(texts)}
    for name, how in variants.items():
        got = labels([_replace(detector, t, how) for t in texts])
        out[name] = {
            "sentiment_kept": round(sum(a[0] == b[0] for a, b in zip(base, got, strict=True)) / len(texts), 3),
            "topic_set_kept": round(sum(a[1] == b[1] for a, b in zip(base, got, strict=True)) / len(texts), 3),
        }
    return out


def real_texts(detector: PiiDetector, n: int, seed: int = 13) -> dict[str, Any]:
    from voce.data.datasets import load_all

    texts = [e.text for rows in load_all().values() for e in rows]
    random.Random(seed).shuffle(texts)
    texts = texts[:n]
    t0 = time.perf_counter()
    found = [(t, detector.find(t)) for t in texts]
    elapsed = time.perf_counter() - t0
    kinds = Counter(f.kind for _, fs in found for f in fs)
    sample = [[t[max(f.start - 30, 0) : f.end + 30], t[f.start : f.end], f.kind] for t, fs in found for f in fs][:40]
    return {
        "texts": len(texts), "ms_per_text": round(1000 * elapsed / max(len(texts), 1), 2),
        "texts_with_a_finding": sum(1 for _, fs in found if fs), "findings_by_kind": dict(kinds.most_common()),
        "sample": sample,
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.privacy_labels", description=__doc__)
    ap.add_argument("--out", type=Path, default=Path("reports/privacy/redaction.json"))
    ap.add_argument("--real-texts", type=int, default=2000, help="public dev texts to scan (0: skip)")
    ap.add_argument("--no-model", action="store_true", help="skip the real-model label agreement")
    args = ap.parse_args(argv)
    detector = default_detector()
    report: dict[str, Any] = {
        "command": "python -m benchmarks.privacy_labels" + (f" --out {args.out}" if args.out else ""),
        "detector": {"tuning": measure(detector, EXAMPLES), "held_out": measure(detector, HELD_OUT)},
    }
    if args.real_texts:
        report["real_texts"] = real_texts(detector, args.real_texts)
    if not args.no_model:
        from voce.models.spec import load_analyzer
        from voce.service.settings import Settings

        analyzer = load_analyzer(Settings().analyzer_spec())
        with_pii = [t for t, gold in EXAMPLES + HELD_OUT if gold]
        report["labels"] = {"bundle": analyzer.bundle.version, **label_agreement(analyzer, detector, with_pii)}
    row = {"id": "p1", "commento": EXAMPLES[0][0], "Email": "mario.rossi@example.com", "nps": 3, "regione": "nord"}
    redactor = Redactor("redact")
    t0 = time.perf_counter()
    for _ in range(200):
        redactor._cache = type(redactor._cache)(4096)  # a cold cache: every cell searched
        redactor.record(row)
    report["ms_per_uploaded_row_5_columns"] = round(1000 * (time.perf_counter() - t0) / 200, 2)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", "utf-8")
    print(json.dumps({k: v for k, v in report.items() if k != "detector"} | {
        "detector": {k: {m: v[m] for m in ("precision", "recall", "annotated", "findings")}
                     for k, v in report["detector"].items()}}, indent=2, ensure_ascii=False)[:6000])


if __name__ == "__main__":
    main()
