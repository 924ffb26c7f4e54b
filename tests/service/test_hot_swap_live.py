"""The learning loop's last step end to end, on real processes: ``voce serve`` (no in-process workers) and one
``voce worker`` beside it, clients calling ``/v1/analyze`` without pause, and a data scientist running
``voce models register --promote`` and then ``voce models rollback`` from the shell.

What must hold: not one request fails; every response comes whole from one version (its documents are exactly what
that version answers alone); the service answers with the promoted version a moment later and with the old one again
after the rollback; a batch uploaded after the promotion is analysed by the worker process with the promoted
version.  Statuses and contents only: nothing here is timed.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.service.batch_data import MAPPING, ROWS, csv_bytes
from tests.service.live import ROOT, LiveServer
from tests.service.models_data import train_second_bundle
from voce.models.spec import AnalyzerSpec, load_analyzer
from voce.models.types import DocumentInput

pytestmark = pytest.mark.slow

DOCS = [
    {"id": "a", "text": "Il personale è stato gentilissimo e disponibile."},
    {"id": "b", "text": "Way overpriced, not worth the money."},
    {"id": "c", "text": "Il volo è stato cancellato senza preavviso, pessimo servizio."},
]
CLIENTS = 4


def _alone(bundle: Path, cache: Path) -> list[dict[str, Any]]:
    analyzer = load_analyzer(AnalyzerSpec(backend="fake", encoder="fake", cache_dir=cache, bundle=bundle))
    results, _ = analyzer.analyze([DocumentInput.model_validate(d) for d in DOCS])
    return [r.model_dump(mode="json") for r in results]


def _voce(server: LiveServer, *args: str) -> subprocess.CompletedProcess[str]:
    out = subprocess.run([sys.executable, "-m", "voce.service.cli", *args], env=server.env, cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return out


def test_promote_and_rollback_from_the_shell_under_load(tiny_bundle_dir: Path, tmp_path: Path) -> None:
    v2 = train_second_bundle(tmp_path / "v2" / "bundle")
    expected = {"tiny-test": _alone(tiny_bundle_dir, tmp_path / "c1"), "tiny-v2": _alone(v2, tmp_path / "c2")}
    assert expected["tiny-test"] != expected["tiny-v2"]
    server = LiveServer(tmp_path, tiny_bundle_dir, env={"VOCE_WORKERS": "0", "VOCE_REGISTRY_POLL_SECONDS": "0.2"})
    with server:
        worker = subprocess.Popen([sys.executable, "-m", "voce.service.cli", "worker"], env=server.env, cwd=ROOT,
                                  stdout=(tmp_path / "worker.log").open("ab"), stderr=subprocess.STDOUT)
        seen: list[str] = []
        failures: list[str] = []
        stop = threading.Event()

        def hammer() -> None:
            with httpx.Client(base_url=server.base, headers=server.auth, timeout=60) as http:
                while not stop.is_set():
                    try:
                        r = http.post("/v1/analyze", json={"documents": DOCS})
                    except httpx.TransportError as exc:
                        failures.append(f"transport: {exc!r}")
                        continue
                    if r.status_code != 200:
                        failures.append(f"{r.status_code}: {r.text[:200]}")
                        continue
                    body = r.json()
                    if body["documents"] != expected.get(body["model_version"]) or body["errors"]:
                        failures.append(f"not wholly from {body['model_version']}: {r.text[:300]}")
                    seen.append(body["model_version"])

        def wait_for(version: str, more: int) -> int:
            """Until ``more`` responses in a row came from ``version``; the index of the first of them."""
            deadline = time.time() + 120
            while time.time() < deadline:
                tail = seen[-more:]
                if len(tail) == more and set(tail) == {version}:
                    return len(seen) - more
                time.sleep(0.05)
            raise AssertionError(f"{version} never answered {more} times in a row: {Counter(seen)}\n{server.tail()}")

        threads = [threading.Thread(target=hammer) for _ in range(CLIENTS)]
        try:
            for t in threads:
                t.start()
            deadline = time.time() + 120  # the worker has loaded the first version and is polling
            while "polling" not in (tmp_path / "worker.log").read_text(errors="replace"):
                assert time.time() < deadline and worker.poll() is None, (tmp_path / "worker.log").read_text()
                time.sleep(0.1)
            wait_for("tiny-test", 20)
            promoted = _voce(server, "models", "register", str(v2), "--promote", "--by", "ana", "--note", "v2")
            assert promoted.stdout.strip() == "tiny-v2"
            wait_for("tiny-v2", 20)
            # a batch uploaded now is analysed by the worker process with the promoted version
            up = httpx.post(f"{server.base}/v1/batches", headers=server.auth, files={"file": ("s.csv", csv_bytes(ROWS))},
                            data={"mapping": json.dumps(MAPPING)}, timeout=60)
            assert up.status_code == 202, up.text
            bid = up.json()["id"]
            deadline = time.time() + 120
            while (b := httpx.get(f"{server.base}/v1/batches/{bid}", headers=server.auth).json())["status"] != "done":
                assert time.time() < deadline and b["status"] in ("queued", "running"), b
                time.sleep(0.2)
            assert b["model_version"] == "tiny-v2"
            _voce(server, "models", "rollback", "--by", "bob")
            wait_for("tiny-test", 20)
            deadline = time.time() + 60  # the worker follows the rollback too
            while "tiny-v2 -> tiny-test" not in (tmp_path / "worker.log").read_text(errors="replace"):
                assert time.time() < deadline, (tmp_path / "worker.log").read_text()
                time.sleep(0.1)
        finally:
            stop.set()
            for t in threads:
                t.join(60)
            worker.terminate()
            worker.wait(30)
        assert not failures, failures[:3]
        counts = Counter(seen)
        first_v2 = seen.index("tiny-v2")
        last_v2 = len(seen) - 1 - seen[::-1].index("tiny-v2")
        # the switch is clean: before the first v2 answer only the old version, after the last only the old again
        assert set(seen[:first_v2]) == {"tiny-test"} and set(seen[last_v2 + 1:]) == {"tiny-test"}
        print(f"\n{len(seen)} requests ({CLIENTS} clients) through a promotion and a rollback: {dict(counts)}, "
              f"0 failed; worker pid {worker.pid} analysed the batch with tiny-v2")
        log = (tmp_path / "worker.log").read_text(errors="replace")
        assert "model tiny-test (registry" in log and "tiny-test -> tiny-v2" in log, log[-2000:]  # followed
        assert "tiny-v2 -> tiny-test" in log, log[-2000:]  # and the rollback too
    assert os.path.isdir(server.data_dir / "registry" / "bundles" / "tiny-v2")
