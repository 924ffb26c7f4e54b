"""End-to-end analysis throughput of the shipped pipeline on real dev texts (one process, this machine's cores).

    python -m eval.bench_analyze --n 400 --out reports/bench_analyze.json
"""
from __future__ import annotations

import argparse
import json
import os
import random
import time
from pathlib import Path

from models.factory import load_analyzer
from models.types import DocumentInput
from service.settings import Settings
from training.data import load_all


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m eval.bench_analyze", description=__doc__)
    ap.add_argument("--n", type=int, default=400)
    ap.add_argument("--batch", type=int, default=25)
    ap.add_argument("--out", type=Path, default=Path("reports/bench_analyze.json"))
    args = ap.parse_args(argv)
    s = Settings()
    t0 = time.perf_counter()
    analyzer = load_analyzer(backend=s.encoder_backend, model=s.encoder, cache_dir=s.cache_dir)
    analyzer.warm_up()
    load_s = time.perf_counter() - t0
    texts = [e.text for rows in load_all().values() for e in rows]
    random.Random(13).shuffle(texts)
    docs = [DocumentInput(id=str(i), text=t) for i, t in enumerate(texts[: args.n])]
    t1 = time.perf_counter()
    for start in range(0, len(docs), args.batch):
        analyzer.analyze(docs[start : start + args.batch])
    batch_s = time.perf_counter() - t1
    t2 = time.perf_counter()
    for d in docs[:50]:
        analyzer.analyze([d])
    single_s = (time.perf_counter() - t2) / 50
    report = {
        "command": f"python -m eval.bench_analyze --n {args.n} --out {args.out}",
        "cpus": os.cpu_count(), "encoder": analyzer.encoder.name, "bundle": analyzer.bundle.version,
        "docs": len(docs), "mean_chars": round(sum(len(d.text or "") for d in docs) / len(docs), 1),
        "load_and_warmup_s": round(load_s, 2),
        "batched_docs_per_s": round(len(docs) / batch_s, 2), "batch_size": args.batch,
        "single_doc_latency_ms": round(single_s * 1000, 1),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n", "utf-8")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
