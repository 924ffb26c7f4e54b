"""End-to-end analysis throughput of the shipped pipeline on real dev texts (one process, this machine's cores).

    python -m benchmarks.bench_analyze --n 400 --out reports/bench_analyze.json
    python -m benchmarks.bench_analyze --n 400 --baseline-bundle OLD_BUNDLE   # adds a side-by-side ratio, same run

With ``--baseline-bundle`` the same documents also go through that bundle, the two
analyzers taking turns batch by batch so that machine noise hits both alike.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import time
from pathlib import Path

from voce.data.datasets import load_all
from voce.models.spec import load_analyzer
from voce.models.types import DocumentInput
from voce.service.settings import Settings


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.bench_analyze", description=__doc__)
    ap.add_argument("--n", type=int, default=400)
    ap.add_argument("--batch", type=int, default=25)
    ap.add_argument("--out", type=Path, default=Path("reports/bench_analyze.json"))
    ap.add_argument("--baseline-bundle", type=Path, default=None, help="a second bundle timed on the same documents")
    args = ap.parse_args(argv)
    s = Settings()
    t0 = time.perf_counter()
    analyzer = load_analyzer(s.analyzer_spec())
    analyzer.warm_up()
    load_s = time.perf_counter() - t0
    baseline = None
    if args.baseline_bundle is not None:
        baseline = load_analyzer(s.analyzer_spec(bundle=args.baseline_bundle))
        baseline.warm_up()
    texts = [e.text for rows in load_all().values() for e in rows]
    random.Random(13).shuffle(texts)
    docs = [DocumentInput(id=str(i), text=t) for i, t in enumerate(texts[: args.n])]
    n_batches = -(-len(docs) // args.batch)
    main_s, base_s = [0.0] * n_batches, [0.0] * n_batches
    for k, start in enumerate(range(0, len(docs), args.batch)):
        chunk = docs[start : start + args.batch]
        order = [(analyzer, main_s), (baseline, base_s)] if k % 2 == 0 else [(baseline, base_s), (analyzer, main_s)]
        for a, acc in order:
            if a is not None:
                t = time.perf_counter()
                a.analyze(chunk)
                acc[k] += time.perf_counter() - t
    batch_s = sum(main_s)
    t2 = time.perf_counter()
    for d in docs[:50]:
        analyzer.analyze([d])
    single_s = (time.perf_counter() - t2) / 50
    report = {
        "command": f"python -m benchmarks.bench_analyze --n {args.n} --out {args.out}"
        + (f" --baseline-bundle {args.baseline_bundle}" if baseline else ""),
        "cpus": os.cpu_count(), "encoder": analyzer.encoder.name, "bundle": analyzer.bundle.version,
        "docs": len(docs), "mean_chars": round(sum(len(d.text or "") for d in docs) / len(docs), 1),
        "load_and_warmup_s": round(load_s, 2),
        "batched_docs_per_s": round(len(docs) / batch_s, 2), "batch_size": args.batch,
        "single_doc_latency_ms": round(single_s * 1000, 1),
    }
    if baseline is not None:
        report["baseline"] = {
            "bundle": baseline.bundle.version,
            "batched_docs_per_s": round(len(docs) / sum(base_s), 2),
            "time_ratio_vs_baseline": round(batch_s / sum(base_s), 3),
        }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n", "utf-8")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
