"""Batch pipeline benchmark: a whole upload through the store, worker and topic discovery, with the real model.

Side by side in one run, on the same rows and the same loaded model:
  * ``direct``   — ``Analyzer.analyze`` in chunks, results thrown away (the floor);
  * ``pipeline`` — the batch job: read the file, analyse, store rows + embeddings, commit per chunk;
then the full file through the pipeline including topic discovery, recording wall time per phase,
rows/s, peak memory (RSS) and the KPI query time.

    python -m benchmarks.bench_batch --file var/survey_20k.csv --out reports/batch_bench.json
"""
from __future__ import annotations

import argparse
import csv
import json
import resource
import shutil
import tempfile
import time
import uuid
from pathlib import Path

from voce.models.spec import AnalyzerSpec, load_analyzer
from voce.service.analytics import batch_kpis
from voce.service.batches.rows import load_facts
from voce.service.batches.runner import BatchRunner, RunnerConfig
from voce.service.batches.service import register_upload
from voce.service.batches.store import BatchStore
from voce.service.db import open_database
from voce.service.uploads import ColumnMapping, guess_mapping, open_table, prepare_row, preview_rows


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _head(src: Path, n: int, dest: Path) -> Path:
    with src.open(encoding="utf-8-sig", newline="") as fh, dest.open("w", encoding="utf-8", newline="") as out:
        r = csv.reader(fh, delimiter=";")
        w = csv.writer(out, delimiter=";")
        for i, row in enumerate(r):
            if i > n:
                break
            w.writerow(row)
    return dest


def _run(store: BatchStore, analyzer: object, data_dir: Path, src: Path, mapping: ColumnMapping, cfg: RunnerConfig,
         progress: bool) -> tuple[str, dict[str, float]]:
    bid = uuid.uuid4().hex
    dest = data_dir / "uploads" / bid
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dest)
    register_upload(store, dest, filename=src.name, mapping=mapping, batch_id=bid)
    batch = store.claim("bench", cfg.lease_seconds, batch_id=bid)
    assert batch is not None
    marks: dict[str, float] = {}
    t0 = time.perf_counter()
    last = [t0]

    def tick(done: int) -> None:
        now = time.perf_counter()
        if progress and now - last[0] > 30:
            b = store.get(bid)
            print(f"  {done}/{b.total_rows if b else '?'} rows, {done / (now - t0):.1f} rows/s", flush=True)
            last[0] = now
        marks["analysed"] = now

    status = BatchRunner(store, analyzer, "bench", cfg, on_chunk=tick).run(batch)  # type: ignore[arg-type]
    marks["end"] = time.perf_counter()
    assert status == "done", status
    return bid, {"analyse_s": marks["analysed"] - t0, "discover_s": marks["end"] - marks["analysed"],
                 "total_s": marks["end"] - t0}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--file", type=Path, required=True)
    ap.add_argument("--out", type=Path, default=Path("reports/batch_bench.json"))
    ap.add_argument("--side-by-side-rows", type=int, default=400)
    ap.add_argument("--cache-dir", type=Path, default=Path(".cache/voce"))
    ap.add_argument("--chunk-rows", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3, help="side-by-side repetitions (the best of each is kept)")
    ap.add_argument("--side-by-side-only", action="store_true", help="skip the full-file run; update only that part")
    args = ap.parse_args()

    analyzer = load_analyzer(AnalyzerSpec(cache_dir=args.cache_dir))
    analyzer.warm_up()
    table = open_table(args.file, "csv")
    mapping = guess_mapping(table.columns, preview_rows(table, 20))
    assert mapping is not None
    work = Path(tempfile.mkdtemp(prefix="voce-bench-"))
    store = BatchStore(open_database(f"sqlite:///{work / 'voce.db'}"))
    cfg = RunnerConfig(chunk_rows=args.chunk_rows, discovery=False)

    # 1. side by side on the same rows
    n = args.side_by_side_rows
    small = _head(args.file, n, work / "small.csv")
    docs = []
    for i, rec in enumerate(open_table(small, "csv").records()):
        p = prepare_row(i, rec, mapping)
        if not hasattr(p.doc, "error"):
            docs.append(p.doc)
    direct_runs, piped_runs = [], []
    for _ in range(args.repeats):  # interleaved, best of each: background load hits both alike
        t0 = time.perf_counter()
        for s in range(0, len(docs), args.chunk_rows):
            analyzer.analyze(docs[s : s + args.chunk_rows])
        direct_runs.append(time.perf_counter() - t0)
        piped_runs.append(_run(store, analyzer, work, small, mapping, cfg, progress=False)[1]["total_s"])
    direct, piped = min(direct_runs), min(piped_runs)
    side = {"rows": n, "repeats": args.repeats, "direct_s": round(direct, 2), "pipeline_s": round(piped, 2),
            "pipeline_over_direct": round(piped / direct, 3)}
    print(json.dumps(side))
    if args.side_by_side_only:
        previous = json.loads(args.out.read_text("utf-8")) if args.out.exists() else {}
        args.out.write_text(json.dumps(previous | {"side_by_side": side}, indent=2) + "\n", encoding="utf-8")
        return

    # 2. the whole file, with topic discovery
    total_rows = table.count()
    print(f"full run: {total_rows} rows", flush=True)
    bid, full = _run(store, analyzer, work, args.file, mapping, RunnerConfig(chunk_rows=args.chunk_rows), progress=True)
    b = store.get(bid)
    t0 = time.perf_counter()
    facts = load_facts(store, bid)
    report = batch_kpis(facts)
    kpi_s = time.perf_counter() - t0
    disc = b.discovery or {} if b else {}
    result = {
        "file": str(args.file), "rows": total_rows, "rows_error": b.rows_error if b else None,
        "side_by_side": side,
        "full": {k: round(v, 1) for k, v in full.items()} | {"rows_per_s": round(total_rows / full["analyse_s"], 2)},
        "kpis_s": round(kpi_s, 2), "nps": report.nps.model_dump() if report.nps else None,
        "discovery": {k: disc.get(k) for k in ("n_docs", "outlier_share_before", "outlier_share", "bilingual_share",
                                                 "seconds")} | {"topics": len(disc.get("topics", []))},
        "discovery_error": b.discovery_error if b else None,
        "peak_rss_mb": round(_rss_mb(), 1),
        "cpu_count": __import__("os").cpu_count(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(result, indent=2))
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
