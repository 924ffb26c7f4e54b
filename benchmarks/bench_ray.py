"""Batches on Ray against the local executor, on the same upload in one run (issue 16's benchmark).

Two parts, each contender taking its turn on the same CSV of real comments (``eval.bench``'s pool from
``../shared/data``), after a warm-up batch that loads its model(s):

* **overhead** (fake encoder, default 20,000 rows): what Ray adds per row when the model costs nothing -
  local executor vs Ray with 1 and 2 actors;
* **real model** (ONNX e5 + shipped bundle, default 1,000 rows): local executor (one process, all cores) vs one
  actor with all cores vs one actor per core - the per-actor rate the README's projection is built from.

Wall time is from claiming the batch to the last stored row (topic discovery off: it runs on the driver the
same way for every executor).  Writes ``reports/bench/ray.json`` and ``ray.md``.  Run it alone on the machine.

    python -m benchmarks.bench_ray [--rows-fake 20000] [--rows-real 1000] [--skip-real]
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

from voce.eval.bench import batch_csv, draw, load_pool, text_stats
from voce.service.batches.executor import LocalExecutor, build_executor
from voce.service.batches.runner import RunnerConfig
from voce.service.batches.service import BatchService
from voce.service.batches.store import BatchStore
from voce.service.settings import Settings
from voce.service.uploads import ColumnMapping

ROOT = Path(__file__).resolve().parents[1]
MAPPING = ColumnMapping(text="text", id="id")


def _settings(work: Path, base: dict[str, Any], **kw: Any) -> Settings:
    return Settings(**(base | {"data_dir": work, "discovery": False, "batch_chunk_rows": 64} | kw))


def _rss_mb(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            total += psutil.Process(pid).memory_info().rss
    return round(total / 2**20, 1)


def run_contender(name: str, settings: Settings, analyzer: Any, csv_path: Path, warm_path: Path, rows: int) -> dict[str, Any]:
    store = BatchStore.open(settings.resolved_database_url())
    service = BatchService.from_settings(settings, store=store, labels=lambda: {})
    if name == "local":
        ex = LocalExecutor(store, lambda: analyzer, RunnerConfig.from_settings(settings), name="bench")
    else:
        ex = build_executor(settings, store, lambda: analyzer, threads=1, name="bench")
    try:
        service.submit_file(warm_path, mapping=MAPPING)
        ex.run_until_idle()  # loads the actors' models
        bid = service.submit_file(csv_path, mapping=MAPPING).id
        t0 = time.perf_counter()
        ex.run_until_idle()
        seconds = time.perf_counter() - t0
        b = store.get(bid)
        assert b is not None and b.status == "done" and b.rows_done == rows, (b.status if b else None, b and b.error)
        pool = getattr(getattr(ex, "chunks", None), "_pool", None)
        actor_pids = [d["pid"] for d in pool.describe()] if pool is not None else []
        return {
            "contender": name, "rows": rows, "seconds": round(seconds, 2), "rows_per_s": round(rows / seconds, 1),
            "actors": len(actor_pids), "driver_rss_mb": _rss_mb([os.getpid()]), "actors_rss_mb": _rss_mb(actor_pids),
            "errors": b.rows_error,
        }
    finally:
        ex.stop()


def part(label: str, base: dict[str, Any], analyzer: Any, rows: list[Any], contenders: list[tuple[str, dict[str, Any]]],
         work: Path, say: Callable[[str], None]) -> list[dict[str, Any]]:
    csv_path, warm_path = work / f"{label}.csv", work / f"{label}-warm.csv"
    csv_path.write_bytes(batch_csv(rows))
    warm_path.write_bytes(batch_csv(rows[:16]))
    out = []
    for name, kw in contenders:
        import ray

        if ray.is_initialized():
            ray.shutdown()  # each Ray contender starts from a fresh local Ray (no actors left over)
        say(f"{label}: {name} ...")
        res = run_contender(name if name == "local" else "ray", _settings(work / f"{label}-{name}", base, **kw),
                            analyzer, csv_path, warm_path, len(rows))
        res["contender"] = name
        say(f"{label}: {name}: {res['rows_per_s']} rows/s")
        out.append(res)
    local = next(r for r in out if r["contender"] == "local")["rows_per_s"]
    for r in out:
        r["vs_local"] = round(r["rows_per_s"] / local, 3)
    return out


def markdown(report: dict[str, Any]) -> str:
    lines = [f"# Batches on Ray vs the local executor ({report['when']})", "",
             f"{report['machine']}; texts: {report['texts']}", ""]
    for label, rows in report["parts"].items():
        lines += [f"## {label}", "", "| contender | rows | rows/s | × local | actors | driver RSS MB | actors RSS MB |",
                  "|---|---|---|---|---|---|---|"]
        lines += [f"| {r['contender']} | {r['rows']} | {r['rows_per_s']} | {r['vs_local']} | {r['actors']} | "
                  f"{r['driver_rss_mb']} | {r['actors_rss_mb']} |" for r in rows]
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows-fake", type=int, default=20_000)
    ap.add_argument("--rows-real", type=int, default=1_000)
    ap.add_argument("--skip-real", action="store_true")
    ap.add_argument("--out", type=Path, default=ROOT / "reports" / "bench")
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    say = print
    pool = load_pool()
    cpus = os.cpu_count() or 1
    report: dict[str, Any] = {
        "when": time.strftime("%Y-%m-%d %H:%M"), "machine": f"{cpus} CPUs, {platform.processor() or platform.machine()}",
        "parts": {},
    }
    with tempfile.TemporaryDirectory(prefix="voce-bench-ray-") as tmp:
        work = Path(tmp)
        from tests.tiny import tiny_config, tiny_examples  # the fake-encoder bundle the tests use
        from voce.models.encoders.factory import EncoderSpec, load_encoder
        from voce.models.spec import load_analyzer
        from voce.training.train import train_heads

        bundle = work / "tiny-bundle"
        enc = load_encoder(EncoderSpec(backend="fake", model="fake", cache_dir=work))
        train_heads(tiny_config(bundle), enc, tiny_examples(), progress=lambda _m: None).save(bundle)
        fake = {"encoder_backend": "fake", "encoder": "fake", "bundle": bundle, "cache_dir": work / "cache"}
        rows = draw(pool, args.rows_fake, args.seed)
        report["texts"] = text_stats(rows)
        fake_analyzer = load_analyzer(Settings(**fake).analyzer_spec())
        report["parts"]["overhead (fake encoder)"] = part(
            "fake", fake, fake_analyzer, rows,
            [("local", {}), ("ray 1 actor", {"executor": "ray", "ray_actors": 1, "ray_cpus_per_actor": 1}),
             ("ray 2 actors", {"executor": "ray", "ray_actors": 2, "ray_cpus_per_actor": 1})], work, say,
        )
        if not args.skip_real:
            real: dict[str, Any] = {}
            real_analyzer = load_analyzer(Settings(**real).analyzer_spec())
            report["parts"]["real model (ONNX e5 + shipped bundle)"] = part(
                "real", real, real_analyzer, draw(pool, args.rows_real, args.seed + 1),
                [("local", {}),
                 (f"ray 1 actor x {cpus} CPUs", {"executor": "ray", "ray_actors": 1, "ray_cpus_per_actor": cpus}),
                 (f"ray {cpus} actors x 1 CPU", {"executor": "ray", "ray_actors": cpus, "ray_cpus_per_actor": 1})],
                work, say,
            )
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "ray.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out / "ray.md").write_text(markdown(report) + "\n")
    say(markdown(report))


if __name__ == "__main__":
    main()
