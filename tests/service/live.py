"""A real ``voce serve`` process on loopback, and a TCP proxy to cut a database away: what the fault and load tests
(and ``benchmarks/load.py``) run against.

Nothing here asserts timings: the tests check statuses, headers and what is stored; figures go to the benchmark.
"""
from __future__ import annotations

import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import TracebackType

import httpx

ROOT = Path(__file__).resolve().parents[2]


#: five documents of a few sentences each: enough work per ``/v1/analyze`` request that the analysis slot is busy
#: when the next request arrives (load test and benchmark)
ANALYZE_DOCUMENTS = [
    {"id": f"d{i}", "text": ("Il corriere è arrivato in ritardo di due giorni e il servizio clienti non ha mai "
                             "risposto alle mie email. " * 6 + f"Ordine numero {i}.")}
    for i in range(5)
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_mb(pid: int) -> float:
    """Resident memory of a process (Linux ``/proc``), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


class LiveServer:
    """``voce serve`` over the fake encoder and a given bundle, everything under ``folder``; ``env`` adds or
    overrides ``VOCE_*`` settings.  Started by :meth:`start` (waits for ``/ready``), stopped by :meth:`stop`
    (SIGTERM) or killed by :meth:`kill` (SIGKILL: no shutdown code runs).  Restartable on the same port."""

    def __init__(self, folder: Path, bundle: Path, env: dict[str, str] | None = None) -> None:
        self.folder = folder
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = folder / "serve.log"
        self.data_dir = folder / "data"
        self.spool = folder / "spool"  # TMPDIR: where the multipart parser spools uploads past 1 MB
        self.spool.mkdir(parents=True, exist_ok=True)
        self.env = os.environ | {
            "VOCE_ENCODER_BACKEND": "fake", "VOCE_ENCODER": "fake", "VOCE_BUNDLE": str(bundle),
            "VOCE_CACHE_DIR": str(folder / "cache"), "VOCE_DATA_DIR": str(self.data_dir), "VOCE_DISCOVERY": "false",
            "TMPDIR": str(self.spool),
        } | (env or {})
        self.proc: subprocess.Popen[bytes] | None = None
        self._key: str | None = None

    def start(self, timeout: float = 120) -> LiveServer:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "voce.service.cli", "serve", "--port", str(self.port)],
            env=self.env, stdout=self.log.open("ab"), stderr=subprocess.STDOUT, cwd=ROOT,
        )
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"voce serve exited ({self.proc.returncode}):\n{self.tail()}")
            try:
                if httpx.get(f"{self.base}/ready", timeout=2).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"voce serve never became ready:\n{self.tail()}")

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def key(self) -> str:
        """A key of tenant 'default' with every scope: the first admin key the first start printed and kept in the
        data folder, or (a database that already held keys, so none was printed) one made as `voce keys create`
        would."""
        if self._key is None:
            first = self.data_dir / "initial-admin-key"
            if first.exists():
                self._key = first.read_text("ascii").strip()
            else:
                from voce.service.auth.keys import KeyStore
                from voce.service.settings import Settings

                url = Settings(data_dir=self.data_dir, database_url=self.env.get("VOCE_DATABASE_URL")).resolved_database_url()
                store = KeyStore.open(url)
                self._key = store.create("default", ["admin", "analyze", "batches:read", "batches:write"]).secret
        return self._key

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}

    def tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()

    def __enter__(self) -> LiveServer:
        return self.start() if self.proc is None else self

    def __exit__(self, *_: object) -> None:
        self.stop()


class TcpProxy:
    """A loopback TCP proxy in front of ``target`` (the database), which a test can cut and restore.

    * :meth:`cut`: every open connection is reset and new ones are refused (the server went down);
    * :meth:`hang`: connections are accepted but nothing is forwarded either way (a network partition: the
      client waits);
    * :meth:`restore`: back to forwarding, on the same port.
    """

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = free_port()
        self.mode = "up"
        self._lock = threading.Lock()
        self._conns: list[socket.socket] = []
        self._listener: socket.socket | None = None
        self._stop = threading.Event()
        self.connections = 0  # accepted so far (a test can check the client came back)

    # -- control
    def start(self) -> TcpProxy:
        self._listen()
        threading.Thread(target=self._accept_loop, daemon=True, name="tcp-proxy").start()
        return self

    def cut(self) -> None:
        with self._lock:
            self.mode = "down"
            if self._listener is not None:
                self._listener.close()
                self._listener = None
            for c in self._conns:
                self._reset(c)
            self._conns.clear()

    def hang(self) -> None:
        with self._lock:
            self.mode = "hang"
            for c in self._conns:
                self._reset(c)
            self._conns.clear()
        if self._listener is None:
            self._listen()

    def restore(self) -> None:
        with self._lock:
            self.mode = "up"
        if self._listener is None:
            self._listen()

    def close(self) -> None:
        self._stop.set()
        self.cut()

    def __enter__(self) -> TcpProxy:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    # -- plumbing
    def _listen(self) -> None:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self.port))
        sock.listen(64)
        sock.settimeout(0.1)
        with self._lock:
            self._listener = sock

    @staticmethod
    def _reset(sock: socket.socket) -> None:
        try:  # SO_LINGER 0: close sends RST, as a crashed server's kernel would
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            sock.close()
        except OSError:
            pass

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            listener = self._listener
            if listener is None:
                time.sleep(0.05)
                continue
            try:
                client, _ = listener.accept()
            except (TimeoutError, OSError):
                continue
            with self._lock:
                mode = self.mode
                self.connections += 1
                self._conns.append(client)
            if mode == "up":
                threading.Thread(target=self._pipe, args=(client,), daemon=True).start()
            # "hang": the connection stays open and silent until restore/cut resets it

    def _pipe(self, client: socket.socket) -> None:
        try:
            upstream = socket.create_connection(self.target, timeout=5)
        except OSError:
            self._reset(client)
            return
        with self._lock:
            self._conns.append(upstream)
        pair = {client: upstream, upstream: client}
        try:
            while not self._stop.is_set():
                readable, _, _ = select.select(list(pair), [], [], 0.2)
                for src in readable:
                    data = src.recv(65536)
                    if not data:
                        raise OSError("closed")
                    if self.mode != "up":
                        raise OSError("cut")
                    pair[src].sendall(data)
        except (OSError, ValueError):
            pass
        finally:
            for s in (client, upstream):
                self._reset(s)
