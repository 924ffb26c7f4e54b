"""Memory and time of topic discovery on a large batch: fitting on every comment vs on a seeded sample with the rest
assigned afterwards (``VOCE_DISCOVERY_SAMPLE``; service/batches/runner.py ``_assign_rest``).

Each configuration runs in a fresh child process; peak RSS is the child's ``ru_maxrss`` minus its RSS before the
run.  Vectors: the fake (feature-hashing) encoder over real comments drawn from ``../shared/data`` - enough for
memory and time, not a judgement of theme quality (that is ``benchmarks/bench_discovery.py``, real encoder).

    python -m benchmarks.bench_discovery_memory [--sizes 10000 40000] [--sample 10000]
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import resource
import time
from pathlib import Path
from typing import Any

import numpy as np
import psutil

ROOT = Path(__file__).resolve().parents[1]


def _child(n: int, sample: int, seed: int, queue: Any) -> None:
    from voce.eval.bench import draw, load_pool
    from voce.models.discovery import discover_topics, fit_topic_assigner
    from voce.models.encoders.fake import FakeEncoder

    texts = [t.text for t in draw(load_pool(), n, seed)]
    langs = [t.language for t in draw(load_pool(), n, seed)]
    emb = FakeEncoder().encode(texts).astype(np.float16)  # stored as float16, as in batch_rows
    base = psutil.Process().memory_info().rss
    t0 = time.perf_counter()
    if sample and n > sample:
        rng = np.random.default_rng(seed)
        chosen = np.sort(rng.choice(n, size=sample, replace=False))
        vecs = emb[chosen].astype(np.float32)
        result = discover_topics([texts[i] for i in chosen], vecs, [langs[i] for i in chosen], seed=seed)
        assigner = fit_topic_assigner(vecs, [langs[i] for i in chosen], result.assignments)
        rest = np.setdiff1d(np.arange(n), chosen)
        assigned = 0
        for start in range(0, rest.size, 5_000):  # a page at a time, as the runner reads them
            page = rest[start:start + 5_000]
            assigned += int((assigner.assign(emb[page].astype(np.float32), [langs[i] for i in page]) >= 0).sum())
        topics, outliers = len(result.topics), 1 - (assigned + sum(a >= 0 for a in result.assignments)) / n
    else:
        result = discover_topics(texts, emb.astype(np.float32), langs, seed=seed)
        topics, outliers = len(result.topics), result.outlier_share
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    queue.put({"comments": n, "fit_on": min(n, sample) if sample else n, "seconds": round(seconds, 1),
               "peak_extra_mb": round((peak - base) / 2**20, 1), "topics": topics,
               "outlier_share": None if outliers is None else round(float(outliers), 3)})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 40_000])
    ap.add_argument("--sample", type=int, default=10_000)
    ap.add_argument("--seed", type=int, default=13)
    ap.add_argument("--out", type=Path, default=ROOT / "reports" / "bench" / "discovery_memory.json")
    args = ap.parse_args()
    ctx = mp.get_context("spawn")
    runs = []
    for n in args.sizes:
        for sample in (0, args.sample):
            if sample and n <= sample:
                continue
            q = ctx.Queue()
            p = ctx.Process(target=_child, args=(n, sample, args.seed, q))
            p.start()
            res = q.get()
            p.join()
            res["mode"] = "sample + assign" if sample else "fit on all"
            print(json.dumps(res))
            runs.append(res)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"when": time.strftime("%Y-%m-%d %H:%M"), "runs": runs}, indent=2) + "\n")


if __name__ == "__main__":
    main()
