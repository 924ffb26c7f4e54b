"""Compare the language detectors on real Italian and English feedback.

The service mostly needs "Italian or English?", and most damage comes from very
short answers, so besides overall accuracy this reports accuracy on texts of at
most five words and on every text cut to its first three words.  A small
hand-written set of French/German/Spanish/Portuguese/Dutch answers checks that the
it/en preference does not swallow other languages.  Each detector runs in a fresh
process so that its memory figure is its own.

    python -m benchmarks.bench_language --out reports/language_detection.json
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import random
import resource
import sys
import time
from pathlib import Path

from voce.data.datasets import load_all, resolve_data_dir
from voce.models.language import LangidDetector, LinguaDetector, clean_for_detection

DETECTORS = ("lingua", "lingua-low", "langid")

#: hand-written short answers in other languages (not from any data set)
OTHER_LANGUAGES: list[tuple[str, str]] = [
    ("fr", "Le service était très lent"), ("fr", "Merci beaucoup pour votre aide"),
    ("fr", "Je suis très déçu de la livraison"), ("fr", "Personnel sympathique et chambre propre"),
    ("fr", "Rien à signaler"), ("fr", "Le remboursement n'est jamais arrivé"),
    ("de", "Sehr freundliches Personal"), ("de", "Die Lieferung kam viel zu spät"),
    ("de", "Ich bin sehr zufrieden"), ("de", "Das Zimmer war schmutzig und laut"),
    ("de", "Vielen Dank für die schnelle Hilfe"), ("de", "Leider keine Antwort bekommen"),
    ("es", "El servicio fue excelente"), ("es", "Muy contento con la compra"),
    ("es", "La habitación estaba sucia"), ("es", "Nadie me ha respondido todavía"),
    ("es", "Gracias por la ayuda"), ("es", "El pedido llegó roto"),
    ("pt", "O atendimento foi péssimo"), ("pt", "Muito obrigado pela ajuda"),
    ("pt", "A entrega demorou muito"), ("pt", "Não recebi o reembolso"),
    ("nl", "De service was uitstekend"), ("nl", "Bedankt voor de snelle hulp"),
    ("nl", "Het pakket is nooit aangekomen"), ("nl", "Heel vriendelijk personeel"),
    # one- to three-word answers, where the it/en preference bites
    ("fr", "Très bien"), ("fr", "Merci beaucoup"), ("fr", "Rien à dire"), ("fr", "Tout va bien"),
    ("de", "Sehr gut"), ("de", "Alles gut"), ("de", "Danke schön"), ("de", "Nichts zu sagen"),
    ("es", "Muy bien"), ("es", "Todo perfecto"), ("es", "Muchas gracias"), ("es", "Nada que decir"),
    ("pt", "Muito bom"), ("pt", "Tudo certo"), ("pt", "Obrigado"), ("nl", "Heel goed"),
    ("pl", "Bardzo dobrze"), ("pl", "Dziękuję bardzo"), ("ro", "Foarte bine"), ("tr", "Çok iyi"),
    ("sv", "Tack så mycket"), ("fi", "Kiitos paljon"), ("cs", "Děkuji moc"), ("hu", "Nagyon jó"),
    ("ru", "Спасибо большое"), ("el", "Ευχαριστώ πολύ"),
]


def load_samples(data_dir: Path | None, per_language: int, seed: int) -> list[tuple[str, str]]:
    """``(gold, text)`` pairs: ``per_language`` distinct non-empty texts per language."""
    rng = random.Random(seed)
    pools: dict[str, set[str]] = {"it": set(), "en": set()}
    for examples in load_all(data_dir).values():
        for e in examples:
            if e.language in pools and e.text.strip():
                pools[e.language].add(e.text.strip())
    samples: list[tuple[str, str]] = []
    for lang, texts in pools.items():
        pool = sorted(texts)
        samples += [(lang, t) for t in rng.sample(pool, min(per_language, len(pool)))]
    return samples


def _rss_mb() -> float:
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _make(name: str) -> LinguaDetector | LangidDetector:
    if name == "langid":
        return LangidDetector()
    return LinguaDetector(low_accuracy=name == "lingua-low")


def _score(detector: LinguaDetector | LangidDetector, pairs: list[tuple[str, str]]) -> dict[str, float]:
    """Accuracy with the product rules, raw top-1 accuracy, how far ``reliable`` can be trusted."""
    correct = raw = unreliable = reliable_correct = 0
    for gold, text in pairs:
        guess = detector.detect(text)
        correct += guess.code == gold
        unreliable += not guess.reliable
        reliable_correct += guess.reliable and guess.code == gold
        cleaned = clean_for_detection(text)
        raw += bool(cleaned) and detector.rank(cleaned)[0][0] == gold
    n = max(len(pairs), 1)
    return {"n": len(pairs), "accuracy": round(correct / n, 4),
            "raw_top1_accuracy": round(raw / n, 4), "unreliable_rate": round(unreliable / n, 4),
            "accuracy_when_reliable": round(reliable_correct / max(len(pairs) - unreliable, 1), 4)}


def bench_one(name: str, samples: list[tuple[str, str]]) -> dict[str, object]:
    """Load one detector in this (fresh) process and measure it."""
    rss_before = _rss_mb()
    detector = _make(name)
    t0 = time.perf_counter()
    detector.load()
    detector.detect("warm up")
    load_s = time.perf_counter() - t0
    rss_loaded = _rss_mb()

    t0 = time.perf_counter()
    for _, text in samples:
        detector.detect(text)
    elapsed = time.perf_counter() - t0

    short = [(g, t) for g, t in samples if len(t.split()) <= 5]
    first3 = [(g, " ".join(t.split()[:3])) for g, t in samples]
    subsets = {"overall": samples, "short_le5_words": short, "first_3_words": first3,
               "other_languages_handwritten": OTHER_LANGUAGES}
    result: dict[str, object] = {key: _score(detector, pairs) for key, pairs in subsets.items()}
    result |= {
        "per_language_overall": {lang: _score(detector, [p for p in samples if p[0] == lang])["accuracy"]
                                 for lang in ("it", "en")},
        "throughput_texts_per_s": round(len(samples) / elapsed, 1),
        "load_s": round(load_s, 2),
        "rss_after_load_mb": round(rss_loaded, 1),
        "rss_delta_load_mb": round(rss_loaded - rss_before, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }
    return result


def run(data_dir: Path | None = None, per_language: int = 1500, seed: int = 13,
        detectors: tuple[str, ...] = DETECTORS) -> dict[str, object]:
    samples = load_samples(data_dir, per_language, seed)
    report: dict[str, object] = {
        "command": "python -m benchmarks.bench_language " + " ".join(sys.argv[1:]),
        "data_dir": str(resolve_data_dir(data_dir)), "per_language": per_language, "seed": seed,
        "n_texts": len(samples), "cpu_count": os.cpu_count(), "detectors": {},
    }
    ctx = multiprocessing.get_context("spawn")  # a clean process per detector for honest memory
    for name in detectors:
        print(f"benchmarking {name} ...", file=sys.stderr, flush=True)
        with ctx.Pool(1) as pool:
            report["detectors"][name] = pool.apply(bench_one, (name, samples))  # type: ignore[index]
    return report


def _table(report: dict[str, object]) -> str:
    rows = ["detector    overall  <=5w    first3  other   texts/s  RSS MB"]
    for name, r in report["detectors"].items():  # type: ignore[attr-defined]
        rows.append(f"{name:<11} {r['overall']['accuracy']:.3f}    {r['short_le5_words']['accuracy']:.3f}   "
                    f"{r['first_3_words']['accuracy']:.3f}   {r['other_languages_handwritten']['accuracy']:.3f}   "
                    f"{r['throughput_texts_per_s']:>7.0f}  {r['rss_delta_load_mb']:.0f}")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("reports/language_detection.json"))
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="default: $VOCE_TRAIN_DATA_DIR, else ../shared/data")
    parser.add_argument("--per-language", type=int, default=1500)
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--detectors", nargs="+", choices=DETECTORS, default=list(DETECTORS))
    args = parser.parse_args(argv)
    report = run(args.data_dir, args.per_language, args.seed, tuple(args.detectors))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(_table(report))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
