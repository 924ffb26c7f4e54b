"""A bounded load test: many clients at once against a real ``voce serve`` (fake encoder) with one analysis slot
and one waiting place, so most requests find the service busy.

What must hold (statuses and headers only; the timings and memory of a longer run are ``benchmarks/load.py``'s,
recorded in RELIABILITY.md): every answer is a 200 or a 429, never a 5xx or a dropped connection; every 429 is
the error envelope with a ``Retry-After``; liveness answers while the service is saturated; and once the clients
stop, the next request is served.
"""
from __future__ import annotations

import asyncio
import collections
from pathlib import Path

import httpx
import pytest

from tests.service.live import ANALYZE_DOCUMENTS as DOCUMENTS
from tests.service.live import LiveServer

pytestmark = pytest.mark.slow

CLIENTS = 24
REQUESTS_PER_CLIENT = 12



async def _client(base: str, auth: dict[str, str], seen: collections.Counter[object], bad: list[str]) -> None:
    async with httpx.AsyncClient(base_url=base, headers=auth, timeout=60) as http:
        for _ in range(REQUESTS_PER_CLIENT):
            try:
                r = await http.post("/v1/analyze", json={"documents": DOCUMENTS})
            except httpx.TransportError as exc:  # refused, reset, timed out: the service collapsed
                seen["transport error"] += 1
                bad.append(f"transport: {exc!r}")
                continue
            seen[r.status_code] += 1
            if r.status_code == 429:
                retry = r.headers.get("Retry-After", "")
                body = r.json()
                if not (retry.isdigit() and int(retry) > 0) or body.get("error", {}).get("code") != "TooManyRequests":
                    bad.append(f"429 without Retry-After or envelope: {retry!r} {body}")
            elif r.status_code != 200:
                bad.append(f"{r.status_code}: {r.text[:200]}")
            elif len(r.json()["documents"]) + len(r.json()["errors"]) != len(DOCUMENTS):
                bad.append(f"a 200 that does not answer every document: {r.text[:200]}")


async def _liveness(base: str, stop: asyncio.Event, statuses: list[int]) -> None:
    async with httpx.AsyncClient(base_url=base, timeout=60) as http:
        while not stop.is_set():
            statuses.append((await http.get("/health")).status_code)
            await asyncio.sleep(0.1)


async def _load(base: str, auth: dict[str, str]) -> tuple[collections.Counter[object], list[str], list[int]]:
    seen: collections.Counter[object] = collections.Counter()
    bad: list[str] = []
    health: list[int] = []
    stop = asyncio.Event()
    live = asyncio.create_task(_liveness(base, stop, health))
    await asyncio.gather(*(_client(base, auth, seen, bad) for _ in range(CLIENTS)))
    stop.set()
    await live
    return seen, bad, health


def test_overload_is_answered_with_429_and_retry_after(tiny_bundle_dir: Path, tmp_path: Path) -> None:
    env = {"VOCE_MAX_CONCURRENCY": "1", "VOCE_MAX_WAITING": "1", "VOCE_WORKERS": "0"}
    with LiveServer(tmp_path, tiny_bundle_dir, env=env) as server:
        seen, bad, health = asyncio.run(_load(server.base, server.auth))
        assert not bad, (bad[:5], seen)
        assert sum(n for k, n in seen.items() if k in (200, 429)) == CLIENTS * REQUESTS_PER_CLIENT, seen
        assert seen[200] > 0 and seen[429] > 0, seen  # served and shed, both
        assert health and set(health) == {200}, collections.Counter(health)
        # the service is not left overloaded: once the clients stop, a request is served
        r = httpx.post(f"{server.base}/v1/analyze", json={"documents": DOCUMENTS[:1]}, headers=server.auth, timeout=60)
        assert r.status_code == 200, r.text
        # and the metrics saw the 429s under the route's template
        metrics = httpx.get(f"{server.base}/metrics", headers=server.auth, timeout=30).text
        assert 'status="429"' in metrics and "/v1/analyze" in metrics
