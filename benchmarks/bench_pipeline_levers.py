"""The analyzer with and without this release's pipeline levers, side by side in one run on the same real texts.

    python -m benchmarks.bench_pipeline_levers --n 400 --rounds 3 --out reports/perf/pipeline_levers.json

Contenders (one process, same model, taking turns round by round; repeated-text cache off everywhere):

* ``raw_encoder``: the ONNX encoder alone, ``encode(texts)`` in requests of 25 (no heads);
* ``in_context``: ``Analyzer.analyze`` as shipped, 25 documents per call (sentence vectors pooled from the
  comment's own pass);
* ``separate``: the same with ``sentence_vectors="separate"`` (every sentence of a multi-sentence comment encoded
  again on its own: the pipeline before this release).
"""
from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import time
from collections.abc import Callable
from pathlib import Path

from voce.data.unlabelled import load_unlabelled
from voce.models.analyzer import AnalyzerConfig
from voce.models.segment import split_sentences
from voce.models.spec import load_analyzer
from voce.models.types import DocumentInput
from voce.service.settings import Settings

SOURCES = ("it_amazon_gdmr", "en_ba_airline_reviews", "it_pa_tweets_uniba", "en_brand_complaint_tweets")


def _texts(n: int, seed: int) -> list[str]:
    per = n // len(SOURCES)
    out: list[str] = []
    for name in SOURCES:
        rows = [u.text for u in load_unlabelled(name) if u.text.strip() and len(u.text) <= 1500]
        random.Random(seed).shuffle(rows)
        out += rows[:per]
    random.Random(seed).shuffle(out)
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.bench_pipeline_levers", description=__doc__)
    ap.add_argument("--n", type=int, default=400)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seed", type=int, default=3)
    ap.add_argument("--out", type=Path, default=Path("reports/perf/pipeline_levers.json"))
    args = ap.parse_args(argv)
    shipped = load_analyzer(Settings(repeat_cache=0).analyzer_spec())
    shipped.warm_up()
    separate = shipped.with_config(AnalyzerConfig(sentence_vectors="separate", repeat_cache=0))
    texts = _texts(args.n, args.seed)
    docs = [DocumentInput(id=str(i), text=t) for i, t in enumerate(texts)]

    def calls(run: Callable[[int], object]) -> float:
        t0 = time.perf_counter()
        for start in range(0, len(docs), 25):
            run(start)
        return time.perf_counter() - t0

    contenders: dict[str, Callable[[int], object]] = {
        "raw_encoder": lambda s: shipped.encoder.encode(texts[s : s + 25]),
        "in_context": lambda s: shipped.analyze(docs[s : s + 25]),
        "separate": lambda s: separate.analyze(docs[s : s + 25]),
    }
    seconds: dict[str, list[float]] = {k: [] for k in contenders}
    for r in range(args.rounds):
        order = list(contenders)[r % 3 :] + list(contenders)[: r % 3]
        for name in order:
            seconds[name].append(calls(contenders[name]))
    rate = {k: round(len(docs) / statistics.median(v), 2) for k, v in seconds.items()}
    report = {
        "command": f"python -m benchmarks.bench_pipeline_levers --n {args.n} --rounds {args.rounds} --seed {args.seed}",
        "cpus": os.cpu_count(),
        "texts": len(docs),
        "mean_chars": round(statistics.fmean(len(t) for t in texts), 1),
        "multi_sentence_share": round(sum(len(split_sentences(t)) > 1 for t in texts) / len(texts), 3),
        "docs_per_s_median": rate,
        "seconds_per_round": seconds,
        "ratios": {
            "in_context/separate": round(rate["in_context"] / rate["separate"], 3),
            "in_context/raw_encoder": round(rate["in_context"] / rate["raw_encoder"], 3),
            "separate/raw_encoder": round(rate["separate"] / rate["raw_encoder"], 3),
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(json.dumps({"docs_per_s_median": rate, "ratios": report["ratios"]}, indent=2))


if __name__ == "__main__":
    main()
