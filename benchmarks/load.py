"""Load and soak: many clients at once against a real ``voce serve`` (fake encoder, small admission limits), its
memory sampled all along; the figures behind RELIABILITY.md's load rows.

Each client posts ``/v1/analyze`` (five documents) again and again without waiting, so the service is saturated
for the whole run: what it must do is serve what its slots allow, answer the rest 429 with ``Retry-After`` at
once, never a 5xx or a dropped connection, keep answering ``/health``, and hold its memory flat.  A second phase
has well-behaved clients that sleep for ``Retry-After`` before trying again.

    python -m benchmarks.load --clients 64 --seconds 60 --out reports/reliability/load.json

The fake encoder makes this a test of the HTTP and admission machinery, not of the model (the real model's
throughput is in ``benchmarks/bench_analyze.py``).  The figures depend on the machine and what else runs on it;
the report records both.
"""
from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import platform
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from tests.service.live import ANALYZE_DOCUMENTS as DOCUMENTS
from tests.service.live import LiveServer, rss_mb


def _tiny_bundle(folder: Path) -> Path:
    from tests.tiny import tiny_config, tiny_examples
    from voce.models.encoders.factory import EncoderSpec, load_encoder
    from voce.training.train import train_heads

    enc = load_encoder(EncoderSpec(backend="fake", model="fake", cache_dir=folder))
    train_heads(tiny_config(folder / "bundle"), enc, tiny_examples(), progress=lambda _m: None).save(folder / "bundle")
    return folder / "bundle"


def _percentiles(values: list[float]) -> dict[str, float] | None:
    if not values:
        return None
    values = sorted(values)

    def at(q: float) -> float:
        return round(values[min(len(values) - 1, int(q * len(values)))] * 1000, 1)

    return {"p50_ms": at(0.50), "p95_ms": at(0.95), "p99_ms": at(0.99), "max_ms": round(values[-1] * 1000, 1)}


class Sampler:
    """The server's RSS every ``every`` seconds, in a thread."""

    def __init__(self, pid: int, every: float = 0.5) -> None:
        self.pid, self.every = pid, every
        self.samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._t0 = time.perf_counter()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append((round(time.perf_counter() - self._t0, 1), round(rss_mb(self.pid), 1)))
            self._stop.wait(self.every)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


async def _phase(base: str, auth: dict[str, str], clients: int, seconds: float, polite: bool) -> dict[str, Any]:
    statuses: collections.Counter[str] = collections.Counter()
    latency: dict[str, list[float]] = collections.defaultdict(list)
    problems: list[str] = []
    health: list[float] = []
    health_status: collections.Counter[int] = collections.Counter()
    deadline = time.perf_counter() + seconds

    async def client() -> None:
        async with httpx.AsyncClient(base_url=base, headers=auth, timeout=120) as http:
            while time.perf_counter() < deadline:
                t0 = time.perf_counter()
                try:
                    r = await http.post("/v1/analyze", json={"documents": DOCUMENTS})
                except httpx.TransportError as exc:
                    statuses["transport_error"] += 1
                    problems.append(repr(exc)[:200])
                    continue
                took = time.perf_counter() - t0
                statuses[str(r.status_code)] += 1
                latency[str(r.status_code)].append(took)
                if r.status_code == 429:
                    retry = r.headers.get("Retry-After", "")
                    if not retry.isdigit():
                        statuses["429_without_retry_after"] += 1
                    if polite:
                        await asyncio.sleep(int(retry or 1))
                elif r.status_code != 200:
                    problems.append(f"{r.status_code} {r.text[:200]}")

    async def liveness() -> None:
        async with httpx.AsyncClient(base_url=base, timeout=120) as http:
            while time.perf_counter() < deadline:
                t0 = time.perf_counter()
                r = await http.get("/health")
                health.append(time.perf_counter() - t0)
                health_status[r.status_code] += 1
                await asyncio.sleep(0.25)

    t0 = time.perf_counter()
    await asyncio.gather(liveness(), *(client() for _ in range(clients)))
    elapsed = time.perf_counter() - t0
    return {
        "clients": clients, "seconds": round(elapsed, 1), "clients_wait_for_retry_after": polite,
        "statuses": dict(statuses), "served_per_s": round(statuses["200"] / elapsed, 1),
        "answered_per_s": round(sum(v for k, v in statuses.items() if k.isdigit()) / elapsed, 1),
        "server_errors": sum(v for k, v in statuses.items() if k.isdigit() and int(k) >= 500),
        "latency": {k: _percentiles(v) for k, v in latency.items()},
        "health": {"statuses": dict(health_status), "latency": _percentiles(health)},
        "problems": problems[:10],
    }


def _rss_summary(samples: list[tuple[float, float]], after_warmup: float) -> dict[str, Any]:
    values = [mb for t, mb in samples]
    steady = [mb for t, mb in samples if t >= after_warmup] or values
    half = len(steady) // 2
    return {
        "start_mb": values[0], "peak_mb": max(values), "end_mb": values[-1],
        # flat = the second half of the steady run is not above the first half
        "steady_first_half_mean_mb": round(statistics.mean(steady[:half] or steady), 1),
        "steady_second_half_mean_mb": round(statistics.mean(steady[half:]), 1),
        "samples": samples[:: max(1, len(samples) // 40)],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", type=int, default=64)
    ap.add_argument("--seconds", type=float, default=60.0, help="length of the saturated phase")
    ap.add_argument("--polite-seconds", type=float, default=20.0, help="length of the Retry-After-honouring phase")
    ap.add_argument("--max-concurrency", type=int, default=2)
    ap.add_argument("--max-waiting", type=int, default=16)
    ap.add_argument("--out", type=Path, default=Path("reports/reliability/load.json"))
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="voce-load-"))
    env = {"VOCE_MAX_CONCURRENCY": str(args.max_concurrency), "VOCE_MAX_WAITING": str(args.max_waiting),
           "VOCE_WORKERS": "0", "VOCE_LOG_LEVEL": "warning"}
    server = LiveServer(work, _tiny_bundle(work), env=env)
    report: dict[str, Any] = {
        "what": "POST /v1/analyze (5 documents, ~1 kB each) from many clients at once against voce serve, fake encoder",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "settings": {"max_concurrency": args.max_concurrency, "max_waiting": args.max_waiting},
    }
    with server:
        rss_ready = rss_mb(server.pid)
        with Sampler(server.pid) as sampler:
            report["saturated"] = asyncio.run(_phase(server.base, server.auth, args.clients, args.seconds, polite=False))
            report["polite"] = asyncio.run(_phase(server.base, server.auth, args.clients, args.polite_seconds,
                                                  polite=True))
        report["rss"] = {"ready_mb": round(rss_ready, 1), **_rss_summary(sampler.samples, after_warmup=5.0)}
        after = httpx.post(f"{server.base}/v1/analyze", json={"documents": DOCUMENTS[:1]}, headers=server.auth,
                           timeout=60)
        report["after_the_load"] = {"status": after.status_code}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n", "utf-8")
    summary = {k: report[k] for k in ("saturated", "polite", "after_the_load")}
    summary["rss"] = {k: v for k, v in report["rss"].items() if k != "samples"}
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
