"""Voce makes no outbound network attempt: not at start-up, not while the real model loads, not for an analysis,
not for a batch (redaction, topic discovery included), not from a library's background thread.

A self-hosted product for personal data must not even look a name up: onnxruntime's telemetry resolved
mobile.events.data.microsoft.com from inside the service (DNS only; it still worked without a network).  The
service runs here as an operator starts it (``python -m voce.service.cli serve``), inside the trap of
:mod:`tests.service.net_trap` (a libc shim for native code and an audit hook for Python), with none of the
"offline" variables an operator might forget (``HF_HUB_OFFLINE``, ``TRANSFORMERS_OFFLINE``,
``ORT_DISABLE_TELEMETRY``) in its environment.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.service import net_trap

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="LD_PRELOAD trap: Linux only")

#: what an operator may not have set; the service must be offline without them
OFFLINE_VARIABLES = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE", "HF_HUB_DISABLE_TELEMETRY",
                     "ORT_DISABLE_TELEMETRY", "DO_NOT_TRACK")
#: onnxruntime's telemetry first resolved its collector about 9 s after the import, then every few seconds: a
#: service that has lived this long since start-up has had every chance to do so
QUIET_SECONDS = 30
TELEMETRY_HOST = "mobile.events.data.microsoft.com"


def _bare_env(trap: dict[str, str], **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in OFFLINE_VARIABLES}
    return env | trap | extra


def test_the_trap_records_and_refuses_python_attempts(tmp_path: Path) -> None:
    trap = net_trap.build(tmp_path / "trap")
    code = (
        "import socket\n"
        "for host in ('example.com', 'localhost'):\n"
        "    try: socket.getaddrinfo(host, 80)\n"
        "    except OSError: print('refused', host)\n"
        "s = socket.socket()\n"
        "try: s.connect(('192.0.2.1', 80))\n"
        "except OSError as e: print('refused connect', e.errno)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], env=_bare_env(trap), capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "refused example.com" in r.stdout and "refused connect" in r.stdout and "localhost" not in r.stdout
    out = net_trap.outbound(trap)
    assert any("getaddrinfo example.com" in line for line in out), out
    assert any("connect inet 192.0.2.1:80" in line for line in out), out
    assert any("python socket.connect '192.0.2.1'" in line for line in out), out
    assert not any("localhost" in line for line in out)


def test_the_trap_sees_native_lookups_no_python_hook_sees(tmp_path: Path) -> None:
    """onnxruntime's telemetry looked its collector up from a C++ thread, which no Python hook sees; the libc shim
    does.  Shown here deterministically with libc's getaddrinfo and connect called straight through ctypes (whether
    a bare ``import onnxruntime`` phones home varies by machine: seen here, not in every CI run).  The service test
    below runs with ``ORT_DISABLE_TELEMETRY`` unset, so it fails if Voce's own import of onnxruntime ever lets the
    telemetry lookup through on a machine where it happens."""
    trap = net_trap.build(tmp_path / "native")
    code = (
        "import ctypes, socket, struct\n"
        "libc = ctypes.CDLL(None)\n"
        "res = ctypes.c_void_p()\n"
        f"print('rc', libc.getaddrinfo(b{TELEMETRY_HOST!r}, b'443', None, ctypes.byref(res)))\n"
        "fd = libc.socket(socket.AF_INET, socket.SOCK_STREAM, 0)\n"
        "addr = struct.pack('<HH4s8x', socket.AF_INET, socket.htons(443), socket.inet_aton('192.0.2.7'))\n"
        "print('connect', libc.connect(fd, addr, len(addr)))\n"
    )
    r = subprocess.run([sys.executable, "-c", code], env=_bare_env(trap), capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "rc 0" not in r.stdout and "connect -1" in r.stdout, r.stdout  # refused, not resolved nor connected
    out = net_trap.outbound(trap)
    assert any(f"getaddrinfo {TELEMETRY_HOST}" in line for line in out), net_trap.attempts(trap)
    assert any("connect inet 192.0.2.7:443" in line for line in out), net_trap.attempts(trap)
    assert not any(line.startswith("python") for line in out)  # native calls: no Python hook saw them


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _batch_csv() -> bytes:
    """Comments with personal data (e-mails, web addresses, phones: the redaction path, whose domain check must use
    the bundled public-suffix list) and enough themes for topic discovery to run."""
    themes = [
        "la consegna è arrivata in ritardo di una settimana", "il corriere ha lasciato il pacco sotto la pioggia",
        "il personale del negozio è stato gentilissimo", "l'app si blocca ogni volta che provo a pagare",
        "the call center kept me on hold for forty minutes", "great value for money, I will buy again",
    ]
    lines = ["id;commento;email"]
    for i in range(48):
        text = (f"{themes[i % len(themes)]}; scrivetemi a cliente{i}@example.com o visitate www.negozio{i}.it, "
                f"tel 333 12{i:02d} 456")
        lines.append(f"c{i};{text};mario.rossi{i}@example.org")
    return ("\n".join(lines) + "\n").encode("utf-8")


@pytest.mark.real_model
@pytest.mark.slow
def test_the_service_makes_no_outbound_attempt(tmp_path: Path, voce_cache_dir: Path, e5_checkpoint: Path) -> None:
    trap = net_trap.build(tmp_path / "trap")
    # the defaults: real ONNX encoder, shipped bundle, SQLite, one worker, discovery on
    env = {k: v for k, v in _bare_env(trap).items() if not k.startswith("VOCE_")} | {
        "VOCE_CACHE_DIR": str(voce_cache_dir), "VOCE_DATA_DIR": str(tmp_path / "data"),
        "VOCE_NET_TRAP": trap["VOCE_NET_TRAP"],
    }
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    log = tmp_path / "serve.log"
    started = time.time()
    proc = subprocess.Popen(
        [sys.executable, "-m", "voce.service.cli", "serve", "--port", str(port)],
        env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT, cwd=Path(__file__).parents[2],
    )
    try:
        deadline = time.time() + 900  # a cold cache exports the ONNX graph first
        while True:
            assert proc.poll() is None, log.read_text("utf-8", "replace")[-3000:]
            try:
                if httpx.get(f"{base}/ready", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.time() < deadline, "never ready: " + log.read_text("utf-8", "replace")[-3000:]
            time.sleep(0.5)
        auth = {"Authorization": "Bearer " + (tmp_path / "data" / "initial-admin-key").read_text().strip()}

        r = httpx.post(f"{base}/v1/analyze", headers=auth, timeout=120, json={"documents": [
            {"id": "1", "text": "Il pacco è arrivato in ritardo, scrivete a mario.rossi@example.com"},
            {"id": "2", "kind": "chat", "text": "Cliente: l'app non funziona\nOperatore: verifico subito"},
        ]})
        assert r.status_code == 200, r.text
        assert r.json()["documents"][0]["sentiment"]["label"] == "negative"

        r = httpx.post(f"{base}/v1/batches", headers=auth, timeout=120, files={"file": ("feedback.csv", _batch_csv())},
                       data={"mapping": json.dumps({"text": "commento", "id": "id"})})
        assert r.status_code == 202, r.text
        bid = r.json()["id"]
        deadline = time.time() + 600
        while (status := httpx.get(f"{base}/v1/batches/{bid}", headers=auth, timeout=30).json())["status"] not in (
            "done", "failed"
        ):
            assert time.time() < deadline, status
            time.sleep(0.5)
        assert status["status"] == "done" and status["rows_done"] == 48, status
        rows = httpx.get(f"{base}/v1/batches/{bid}/rows", headers=auth, params={"limit": 5}, timeout=30).json()["rows"]
        assert rows and "@example.com" not in json.dumps(rows)  # redacted (the e-mail recognizer ran)
        httpx.get(f"{base}/v1/batches/{bid}/topics", headers=auth, timeout=60)
        httpx.get(f"{base}/docs", timeout=30)
        # background threads (onnxruntime's telemetry) get the time they took before the fix
        while time.time() - started < QUIET_SECONDS:
            assert proc.poll() is None
            time.sleep(1)
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    assert net_trap.loaded(trap, proc.pid) == {"native", "python"}, net_trap.attempts(trap)[:5]
    assert net_trap.outbound(trap) == [], "\n".join(net_trap.outbound(trap))
