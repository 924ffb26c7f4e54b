"""Faults injected into a running Voce, and what must hold afterwards: nothing lost, nothing twice, nothing half-made.

* the server killed (SIGKILL) while a large multipart upload is being received: no batch, no file anywhere (data
  folder, temporary spool), and the restarted server works;
* an upload that cannot be registered (the database gone at that moment, the request cancelled): no file stays;
* the database cut away mid-batch (PostgreSQL behind a TCP proxy the test cuts and restores): the worker waits
  and says so, the batch goes on when the database is back, with exactly N rows once each, the outage written on
  it; an outage longer than the worker's wait gives the batch back and the next claim finishes it; connections
  killed again and again (``pg_terminate_backend``) change nothing.

The SIGKILL mid-batch test is ``tests/service/test_restart.py``.  RELIABILITY.md lists them all.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError

from tests.service.api.helpers import local_client, new_key, sign_in, wait_for, wait_ready
from tests.service.batch_data import batch_settings, queue, rows_file
from tests.service.live import LiveServer, TcpProxy
from voce.service.app import create_app
from voce.service.batches.errors import UploadTooLarge
from voce.service.batches.executor import LocalExecutor
from voce.service.batches.runner import BatchRunner, RunnerConfig
from voce.service.batches.service import BatchService
from voce.service.batches.store import BatchStore


def files_under(*folders: Path) -> list[Path]:
    return sorted(p for f in folders if f.exists() for p in f.rglob("*") if p.is_file())


SURVEY = {"text": "commento", "id": "id", "nps": "nps"}
EVERY_SCOPE = ("admin", "analyze", "batches:read", "batches:write")


def survey_csv(n: int) -> bytes:
    lines = ["id;commento;nps"] + [f"c{i};Ordine {i}: consegna {'lenta' if i % 2 else 'puntuale'}, staff gentile;{i % 11}"
                                   for i in range(n)]
    return ("\n".join(lines) + "\n").encode("utf-8")


# ------------------------------------------------------------------ killed mid-upload
def _open_fds(pid: int) -> list[str]:
    out = []
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            out.append(os.readlink(fd))
    return out


def _start_upload(server: LiveServer, body: bytes, first: int) -> socket.socket:
    """A multipart upload of ``body`` to ``POST /v1/batches`` sent up to byte ``first`` of the file (the rest with
    :func:`_finish_upload`)."""
    boundary = "voce-fault-boundary"
    head = (f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.csv"\r\n'
            "Content-Type: text/csv\r\n\r\n").encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    request = (
        f"POST /v1/batches HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\nAuthorization: Bearer {server.key}\r\n"
        f"Content-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: {len(head) + len(body) + len(tail)}"
        "\r\n\r\n"
    ).encode() + head
    sock = socket.create_connection(("127.0.0.1", server.port))
    sock.sendall(request)
    for at in range(0, first, 65536):
        sock.sendall(body[at : min(at + 65536, first)])
    return sock


def _spooling(server: LiveServer) -> bool:
    """Whether the server holds the multipart parser's spool file (unnamed, or under TMPDIR): it is receiving."""
    return any(str(server.spool) in fd or "(deleted)" in fd for fd in _open_fds(server.pid))


@pytest.mark.slow
def test_sigkill_mid_upload_leaves_no_half_batch(tiny_bundle_dir: Path, tmp_path: Path) -> None:
    """A 5 MB upload is being received (past the 1 MB the multipart parser keeps in memory, so it is spooled to a
    temporary file) when the server is killed: afterwards there is no batch, no upload in the data folder, no
    spooled file; the restarted server lists no batch and takes the next upload as usual."""
    server = LiveServer(tmp_path, tiny_bundle_dir).start()
    uploads, scratch = server.data_dir / "uploads", server.data_dir / "tmp"
    try:
        body = survey_csv(90_000)
        assert len(body) > 4_000_000
        sock = _start_upload(server, body, 3_000_000)  # about half of it
        # the server is receiving it: the parser's spool file is open, nothing is stored yet
        assert wait_for(lambda: _spooling(server), 30), _open_fds(server.pid)
        assert not files_under(uploads, scratch)
        server.kill()
        sock.close()
        assert not files_under(uploads, scratch, server.spool)
    finally:
        server.kill()

    server.start()  # same data folder, same database
    try:
        assert not files_under(uploads, scratch, server.spool)
        listed = httpx.get(f"{server.base}/v1/batches", headers=server.auth, timeout=30).json()
        assert listed["batches"] == []
        r = httpx.post(f"{server.base}/v1/batches", files={"file": ("small.csv", survey_csv(40))},
                       data={"mapping": json.dumps(SURVEY)}, headers=server.auth,
                       timeout=60)
        assert r.status_code == 202, r.text
        bid = r.json()["id"]
        assert wait_for(lambda: httpx.get(f"{server.base}/v1/batches/{bid}", headers=server.auth, timeout=30)
                        .json()["status"] in ("done", "failed"), 60)
        st = httpx.get(f"{server.base}/v1/batches/{bid}", headers=server.auth, timeout=30).json()
        assert (st["status"], st["rows_done"], st["rows_error"]) == ("done", 40, 0), st
    finally:
        server.stop()


@pytest.mark.slow
@pytest.mark.postgres
def test_sigkill_between_receiving_and_registering_an_upload(
    pg_proxy: tuple[TcpProxy, str], tiny_bundle_dir: Path, tmp_path: Path
) -> None:
    """The upload is received and written to the data folder, but its batch row cannot be committed (the database
    hangs: a network partition), and the server is killed then: after the restart there is no batch (the row
    never committed) and, once stale (aged two hours here), no upload file either."""
    proxy, url = pg_proxy
    server = LiveServer(tmp_path, tiny_bundle_dir, env={"VOCE_DATABASE_URL": url}).start()
    uploads = server.data_dir / "uploads"
    body = survey_csv(40_000)
    batches = httpx.get(f"{server.base}/v1/batches", headers=server.auth, timeout=30).json()["batches"]
    try:
        sock = _start_upload(server, body, 1_500_000)
        assert wait_for(lambda: _spooling(server), 30)  # past the key check: the body is being received
        proxy.hang()
        sock.sendall(body[1_500_000:] + b"\r\n--voce-fault-boundary--\r\n")
        assert wait_for(lambda: bool(files_under(uploads)), 30)  # received; registration waits on the database
        time.sleep(0.5)
        server.kill()
        sock.close()
    finally:
        server.kill()
        proxy.restore()
    orphans = files_under(uploads)
    assert orphans
    stale = time.time() - 7200
    for f in orphans:
        os.utime(f, (stale, stale))
    server.start()
    try:
        # the session's database may hold other tests' batches: the same ones as before, no new one
        assert httpx.get(f"{server.base}/v1/batches", headers=server.auth, timeout=30).json()["batches"] == batches
        assert not files_under(uploads)
    finally:
        server.stop()


def test_an_upload_that_cannot_be_registered_leaves_no_file(
    tiny_bundle_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The database fails while an upload is being registered (after it was received): the client gets an error,
    and neither a batch nor its file stays (the file holds customers' texts)."""
    settings = batch_settings(tmp_path, tiny_bundle_dir, workers=0)
    with local_client(create_app(settings), raise_server_exceptions=False) as c:
        wait_ready(c)
        sign_in(c)

        def gone(*_: Any, **__: Any) -> Any:
            raise OperationalError("INSERT INTO batches ...", {}, ConnectionResetError("connection reset by peer"))

        monkeypatch.setattr(BatchStore, "create", gone)
        r = c.post("/v1/batches", files={"file": ("survey.csv", survey_csv(12))}, data={"mapping": json.dumps(SURVEY)})
        assert r.status_code >= 500
        assert "INSERT" not in r.text and "reset by peer" not in r.text  # no internals in the answer
        monkeypatch.undo()
        assert c.get("/v1/batches").json()["batches"] == []
    assert not files_under(settings.data_dir / "uploads")


def test_an_interrupted_or_refused_receive_leaves_no_file(tiny_bundle_dir: Path, tmp_path: Path) -> None:
    """The request is cancelled (client gone, server shutting down) or the upload is too large while it is written:
    the partial file goes."""
    settings = batch_settings(tmp_path, tiny_bundle_dir, max_upload_bytes=3 << 20)
    service = BatchService.from_settings(settings, store=BatchStore.open(settings.resolved_database_url()))

    def reader(pieces: int, then: BaseException | None) -> Callable[[int], Any]:
        count = 0

        async def read(n: int) -> bytes:
            nonlocal count
            count += 1
            if count > pieces:
                if then is not None:
                    raise then
                return b""
            return b"x" * n

        return read

    for pieces, then, expected in ((2, asyncio.CancelledError(), asyncio.CancelledError),
                                   (2, OSError(28, "No space left on device"), OSError),
                                   (5, None, UploadTooLarge)):
        _, dest = service.new_upload()
        with pytest.raises(expected):
            asyncio.run(service.receive(reader(pieces, then), dest))
        assert not dest.exists()
    assert not files_under(settings.data_dir / "uploads")


# ------------------------------------------------------------------ database outages (PostgreSQL)
@pytest.fixture()
def pg_proxy(postgres_url: str) -> Iterator[tuple[TcpProxy, str]]:
    """A TCP proxy in front of the test database, and the database URL through it."""
    from sqlalchemy.engine import make_url

    url = make_url(postgres_url)
    with TcpProxy((url.host or "127.0.0.1", url.port or 5432)) as proxy:
        yield proxy, url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)


def _rows(store: BatchStore, bid: str) -> list[tuple[int, str]]:
    return [(r.row, r.doc_id) for r in store.iter_rows(bid, columns=("row", "doc_id"))]


@pytest.mark.postgres
def test_database_outage_mid_batch_waits_then_resumes(
    pg_proxy: tuple[TcpProxy, str], postgres_url: str, tiny_bundle_dir: Path, tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """PostgreSQL goes away for a few seconds while a batch runs (every connection reset, new ones refused): the
    worker logs that it waits for the database, keeps the chunk it analysed, and once the database is back the
    batch goes on to the end: exactly N rows, each once, in order, one attempt, the outage written on the batch."""
    proxy, url = pg_proxy
    n = 400
    settings = batch_settings(tmp_path, tiny_bundle_dir, database_url=url, batch_chunk_rows=8, discovery=False)
    caplog.set_level(logging.WARNING, logger="voce.jobs")
    with local_client(create_app(settings), raise_server_exceptions=False) as c:
        wait_ready(c)
        sign_in(c, new_key(c, "default", EVERY_SCOPE))  # the session's database may hold keys already
        r = c.post("/v1/batches", files={"file": ("survey.csv", survey_csv(n))},
                   data={"mapping": json.dumps(SURVEY)})
        assert r.status_code == 202, r.text
        bid = r.json()["id"]
        assert wait_for(lambda: c.get(f"/v1/batches/{bid}").json()["rows_done"] >= 40, 60)
        proxy.cut()
        assert wait_for(lambda: "the database is unreachable" in caplog.text, 30), caplog.text
        time.sleep(2)  # the outage lasts: the worker retries with back-off and says so, nothing is written
        proxy.restore()
        assert wait_for(lambda: c.get(f"/v1/batches/{bid}").json()["status"] in ("done", "failed"), 120)
        st = c.get(f"/v1/batches/{bid}").json()
        assert (st["status"], st["rows_done"], st["rows_total"], st["rows_error"], st["attempts"]) == \
            ("done", n, n, 0, 1), st
        assert "database was unreachable" in st["error"] and "nothing lost" in st["error"]
        lines = c.get(f"/v1/batches/{bid}/results").text.splitlines()
        assert [json.loads(x)["row"] for x in lines] == list(range(n))
        assert [json.loads(x)["id"] for x in lines] == [f"c{i}" for i in range(n)]
    store = BatchStore.open(postgres_url)
    assert _rows(store, bid) == [(i, f"c{i}") for i in range(n)]  # in the database itself: each row once


@pytest.mark.postgres
def test_during_an_outage_the_api_answers_503(pg_proxy: tuple[TcpProxy, str], tiny_bundle_dir: Path,
                                              tmp_path: Path) -> None:
    proxy, url = pg_proxy
    settings = batch_settings(tmp_path, tiny_bundle_dir, database_url=url, discovery=False)
    with local_client(create_app(settings), raise_server_exceptions=False) as c:
        wait_ready(c)
        sign_in(c, new_key(c, "default", EVERY_SCOPE))
        assert c.get("/v1/batches").status_code == 200
        proxy.cut()
        try:
            r = c.get("/v1/batches")
        finally:
            proxy.restore()
        assert r.status_code == 503 and r.headers.get("Retry-After"), (r.status_code, r.text)
        assert r.json()["error"]["code"] in ("NotReady", "DatabaseUnavailable", "ServiceUnavailable")


@pytest.mark.postgres
def test_an_outage_longer_than_the_wait_gives_the_batch_back(
    pg_proxy: tuple[TcpProxy, str], postgres_url: str, fake_analyzer: Any, tiny_bundle_dir: Path, tmp_path: Path
) -> None:
    """The database stays away longer than the worker waits (``db_outage_seconds``): the run ends without marking
    the batch failed (it cannot, and nothing failed); when the database is back, the next claim resumes it after
    its last stored chunk and it finishes with N rows once each."""
    proxy, url = pg_proxy
    n = 80
    settings = batch_settings(tmp_path, tiny_bundle_dir, database_url=url, worker_lease_seconds=1, discovery=False)
    store = BatchStore.open(url)
    queue(store, settings, rows_file(tmp_path, n), "longoutage")
    config = RunnerConfig(chunk_rows=8, lease_seconds=1, discovery=False, db_outage_seconds=1.5)

    def cut_after_three_chunks(done: int) -> None:
        if done == 24:
            proxy.cut()

    batch = store.claim("worker-a", 1, batch_id="longoutage")
    assert batch is not None
    result: list[str] = []
    runner = BatchRunner(store, fake_analyzer, "worker-a", config, on_chunk=cut_after_three_chunks)
    t = threading.Thread(target=lambda: result.append(runner.run(batch)))
    t.start()
    t.join(timeout=60)
    assert result == ["paused"]
    proxy.restore()
    b = store.get("longoutage")
    assert b is not None and (b.status, b.rows_done, b.error) == ("running", 24, None)
    time.sleep(1.1)  # the lease of the worker that gave up runs out
    LocalExecutor(store, lambda: fake_analyzer, config, name="after").run_until_idle()
    b = store.get("longoutage")
    assert b is not None and (b.status, b.rows_done, b.attempts) == ("done", n, 2)
    assert _rows(store, "longoutage") == [(i, f"x{i}") for i in range(n)]


@pytest.mark.postgres
def test_connections_killed_mid_batch_change_nothing(postgres_url: str, fake_analyzer: Any, tiny_bundle_dir: Path,
                                                     tmp_path: Path) -> None:
    """Every connection of the batch's database is terminated over and over (``pg_terminate_backend``: a failover,
    an administrator, a pooler restart) while a batch runs: it finishes, N rows once each, in one attempt."""
    n = 240
    settings = batch_settings(tmp_path, tiny_bundle_dir, database_url=postgres_url, discovery=False)
    store = BatchStore.open(postgres_url)
    queue(store, settings, rows_file(tmp_path, n), "terminated")
    admin = create_engine(postgres_url.rsplit("/", 1)[0] + "/postgres", isolation_level="AUTOCOMMIT")
    database = postgres_url.rsplit("/", 1)[1]
    stop = threading.Event()
    killed: list[int] = []

    def terminate() -> None:
        while not stop.is_set():
            with admin.connect() as conn:
                killed.extend(conn.execute(text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :db AND pid <> pg_backend_pid()"
                ), {"db": database}).scalars())
            time.sleep(0.03)

    config = RunnerConfig(chunk_rows=4, lease_seconds=30, discovery=False)
    batch = store.claim("worker-t", 30, batch_id="terminated")
    assert batch is not None
    killer = threading.Thread(target=terminate, daemon=True)
    killer.start()
    try:
        status = BatchRunner(store, fake_analyzer, "worker-t", config).run(batch)
    finally:
        stop.set()
        killer.join(timeout=10)
        admin.dispose()
    assert killed, "no connection was terminated"
    b = store.get("terminated")
    assert b is not None and (status, b.status, b.rows_done, b.attempts) == ("done", "done", n, 1), (status, b.error)
    assert _rows(store, "terminated") == [(i, f"x{i}") for i in range(n)]
