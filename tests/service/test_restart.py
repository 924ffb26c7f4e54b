"""A real `voce serve` process killed with SIGKILL mid-batch, then restarted: the batch finishes,
every row stored exactly once, identical to what an uninterrupted run produces."""
from __future__ import annotations

import csv
import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _serve(env: dict[str, str], port: int, log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "voce.service.cli", "serve", "--port", str(port)],
        env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT, cwd=Path(__file__).parents[2],
    )


def _ready(base: str, proc: subprocess.Popen[bytes], timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        assert proc.poll() is None, "the service exited"
        try:
            if httpx.get(f"{base}/ready", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise AssertionError("service not ready")


def _status(base: str, bid: str, auth: dict[str, str]) -> dict[str, Any]:
    return httpx.get(f"{base}/v1/batches/{bid}", headers=auth, timeout=10).json()


def test_sigkill_mid_batch_then_restart(tiny_bundle_dir: Path, tmp_path: Path) -> None:
    n = 3000
    buf = io.StringIO()
    w = csv.writer(buf, delimiter=";")
    w.writerow(["id", "commento", "nps"])
    for i in range(n):
        w.writerow([f"c{i}", f"Ordine {i}: la consegna è stata {'lenta' if i % 2 else 'puntuale'} e lo staff gentile", i % 11])
    data = buf.getvalue().encode("utf-8")
    env = os.environ | {
        "VOCE_ENCODER_BACKEND": "fake", "VOCE_ENCODER": "fake", "VOCE_BUNDLE": str(tiny_bundle_dir),
        "VOCE_CACHE_DIR": str(tmp_path / "cache"), "VOCE_DATA_DIR": str(tmp_path / "data"),
        "VOCE_BATCH_CHUNK_ROWS": "16", "VOCE_WORKER_LEASE_SECONDS": "2", "VOCE_DISCOVERY": "false",
    }
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    log = tmp_path / "serve.log"
    proc = _serve(env, port, log)
    try:
        _ready(base, proc)
        # the first start created an admin key (printed once, kept 0600 in the data folder); the restart keeps it
        auth = {"Authorization": "Bearer " + (tmp_path / "data" / "initial-admin-key").read_text().strip()}
        r = httpx.post(f"{base}/v1/batches", files={"file": ("big.csv", data)},
                       data={"mapping": json.dumps({"text": "commento", "id": "id", "nps": "nps"})}, headers=auth,
                       timeout=60)
        assert r.status_code == 202, r.text
        bid = r.json()["id"]
        deadline = time.time() + 120
        while time.time() < deadline and _status(base, bid, auth)["rows_done"] < 300:
            time.sleep(0.05)
        before = _status(base, bid, auth)
        assert 0 < before["rows_done"] < n, before
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()

    proc = _serve(env, port, log)
    try:
        _ready(base, proc)
        deadline = time.time() + 300
        st = _status(base, bid, auth)
        while time.time() < deadline and st["status"] not in ("done", "failed"):
            time.sleep(0.2)
            st = _status(base, bid, auth)
        assert st["status"] == "done", (st, log.read_text()[-2000:])
        assert st["rows_done"] == n and st["attempts"] == 2 and st["rows_error"] == 0
        lines = httpx.get(f"{base}/v1/batches/{bid}/results", headers=auth, timeout=60).text.splitlines()
        rows = [json.loads(x) for x in lines]
        assert [x["row"] for x in rows] == list(range(n))  # nothing lost, nothing twice
        assert [x["id"] for x in rows] == [f"c{i}" for i in range(n)]
        k = httpx.get(f"{base}/v1/batches/{bid}/kpis", headers=auth, timeout=60).json()
        assert k["count"] == n and k["nps"]["responses"] == n
    finally:
        proc.terminate()
        proc.wait(timeout=30)
