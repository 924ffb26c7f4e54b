"""Peak memory of the people's export (GET /v1/batches/{id}/export) on a large batch, CSV and XLSX.

``prepare`` analyses a few hundred synthetic rows with the fake encoder and the tiny test bundle (real stored
results: topics, touchpoints, evidence), then copies them into a batch of ``--rows`` rows; ``measure`` runs in a
fresh process that opens only the database, so its peak RSS is the export's and not the model's::

    python -m benchmarks.bench_export_memory prepare --dir /tmp/voce-exp --rows 20000
    python -m benchmarks.bench_export_memory measure --dir /tmp/voce-exp --format xlsx

Reported: the process's resident memory when the export starts and its peak while it runs (sampled every 20 ms
from /proc/self/status), and with ``--heap`` the Python heap's peak during the export (tracemalloc, which slows
the run).  Bounded memory means both stay flat as the batch grows (compare 2,000 and 20,000 rows).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path


def prepare(folder: Path, n_rows: int, seed_rows: int = 400) -> None:
    from tests.service.batch_data import batch_settings, queue, rows_file
    from tests.tiny import tiny_config, tiny_examples
    from voce.models.encoders.factory import EncoderSpec, load_encoder
    from voce.models.spec import AnalyzerSpec, load_analyzer
    from voce.service.batches.executor import LocalExecutor
    from voce.service.batches.runner import RunnerConfig
    from voce.service.batches.store import ROWS, BatchStore
    from voce.service.db import Batch
    from voce.training.train import train_heads

    folder.mkdir(parents=True, exist_ok=True)
    bundle = folder / "bundle"
    if not bundle.exists():
        enc = load_encoder(EncoderSpec(backend="fake", model="fake", cache_dir=folder))
        train_heads(tiny_config(bundle), enc, tiny_examples(), progress=lambda _m: None).save(bundle)
    settings = batch_settings(folder, bundle, discovery=False)
    analyzer = load_analyzer(AnalyzerSpec(backend="fake", encoder="fake", cache_dir=folder / "cache", bundle=bundle))
    store = BatchStore.open(settings.resolved_database_url())
    queue(store, settings, rows_file(folder, seed_rows), "seed")
    LocalExecutor(store, lambda: analyzer, RunnerConfig.from_settings(settings), name="bench").run_until_idle()
    while store.get("seed").status != "done":  # type: ignore[union-attr]
        time.sleep(0.1)
    columns = tuple(c.name for c in ROWS.columns if c.name != "batch_id")
    seed = [dict(r._mapping) for r in store.iter_rows("seed", columns=columns)]
    from sqlalchemy import update

    with store.sessions() as s, s.begin():
        s.execute(update(Batch).where(Batch.id == "seed").values(total_rows=n_rows, rows_done=n_rows))
        for start in range(seed_rows, n_rows, 1000):
            chunk = []
            for i in range(start, min(n_rows, start + 1000)):
                r = dict(seed[i % seed_rows])
                chunk.append(r | {"batch_id": "seed", "row": i, "doc_id": f"x{i}"})
            s.execute(ROWS.insert(), chunk)
    print(json.dumps({"db": settings.resolved_database_url(), "rows": n_rows}))


def _rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def measure(folder: Path, fmt: str, heap: bool = False) -> dict[str, float]:
    import threading

    from tests.service.batch_data import batch_settings
    from voce.models.taxonomy import default_taxonomy
    from voce.service.batches import exports
    from voce.service.batches.service import BatchService

    settings = batch_settings(folder, folder / "bundle", discovery=False)
    service = BatchService.from_settings(settings)
    taxonomy = default_taxonomy()
    service.facts(service.get("seed"))  # the dashboard has the facts in memory already (shared with /kpis)
    rss_start = _rss_mb()
    peak_rss = [rss_start]
    running = threading.Event()
    running.set()

    def sample() -> None:
        while running.is_set():
            peak_rss[0] = max(peak_rss[0], _rss_mb())
            time.sleep(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    if heap:
        tracemalloc.start()
    t0 = time.perf_counter()
    out = exports.people_export(service, "seed", fmt, language="it", taxonomy=taxonomy)  # type: ignore[arg-type]
    size = 0
    if out.chunks is not None:
        for chunk in out.chunks:
            size += len(chunk)
    elif out.path is not None:
        size = out.path.stat().st_size
        out.path.unlink()
    seconds = time.perf_counter() - t0
    running.clear()
    sampler.join()
    out_: dict[str, float] = {"format": fmt, "rows": service.get("seed").rows_done, "bytes": size,  # type: ignore[dict-item]
                              "seconds": round(seconds, 1), "rss_start_mb": round(rss_start, 1),
                              "rss_peak_mb": round(peak_rss[0], 1), "rss_growth_mb": round(peak_rss[0] - rss_start, 1)}
    if heap:
        out_["heap_peak_mb"] = round(tracemalloc.get_traced_memory()[1] / 2**20, 1)
        tracemalloc.stop()
    return out_


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("command", choices=["prepare", "measure", "both"])
    ap.add_argument("--dir", type=Path, required=True)
    ap.add_argument("--rows", type=int, default=20_000)
    ap.add_argument("--format", choices=["csv", "xlsx"], default="xlsx")
    ap.add_argument("--heap", action="store_true", help="also trace the Python heap (slower)")
    args = ap.parse_args()
    if args.command == "prepare":
        prepare(args.dir, args.rows)
    elif args.command == "measure":
        print(json.dumps(measure(args.dir, args.format, args.heap)))
    else:
        prepare(args.dir, args.rows)
        for fmt in ("csv", "xlsx"):  # each in a fresh process: its RSS is the export's alone
            for heap in ([], ["--heap"]):
                subprocess.run([sys.executable, "-m", "benchmarks.bench_export_memory", "measure", "--dir",
                                str(args.dir), "--format", fmt, *heap], check=True)


if __name__ == "__main__":
    main()
