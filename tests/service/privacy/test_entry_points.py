"""Personal data through every entry point: the upload form field, the CLI (submit --pii-mode, batch purge, the
worker's log set-up) and a real `voce serve` whose log holds neither personal data nor query strings."""
from __future__ import annotations

import datetime as dt
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update
from typer.testing import CliRunner

from tests.service.api.helpers import initial_admin_key, local_client, sign_in, wait_ready
from tests.service.batch_data import batch_settings
from voce.service.app import create_app
from voce.service.batches.store import BatchStore
from voce.service.cli import app
from voce.service.db import Batch, utcnow

runner = CliRunner()
CSV = (b"id;commento;Email;nps\n"
       b"a1;Mi chiamo Mario Rossi, richiamatemi al 333 123 4567;mario.rossi@example.com;3\n"
       b"a2;Consegna puntuale, grazie;;9\n")


@pytest.fixture(scope="module")
def client(tiny_bundle_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    tmp = tmp_path_factory.mktemp("privacy-api")
    with local_client(create_app(batch_settings(tmp, tiny_bundle_dir, discovery=False)), raise_server_exceptions=False) as c:
        wait_ready(c)
        sign_in(c)
        yield c


def _done(client: TestClient, bid: str) -> dict:
    deadline = time.time() + 60
    while time.time() < deadline:
        st = client.get(f"/v1/batches/{bid}").json()
        if st["status"] in ("done", "failed"):
            return st
        time.sleep(0.05)
    raise AssertionError(st)


@pytest.mark.parametrize(("mode", "shown"), [(None, "<EMAIL>"), ("mask", "m****.*****@e******.com"),
                                             ("keep", "mario.rossi@example.com")])
def test_the_upload_chooses_its_mode(client: TestClient, mode: str | None, shown: str) -> None:
    data = {"mapping": json.dumps({"text": "commento", "id": "id", "nps": "nps"})} | ({"pii_mode": mode} if mode else {})
    r = client.post("/v1/batches", files={"file": ("clienti.csv", CSV)}, data=data)
    assert r.status_code == 202, r.text
    bid = r.json()["id"]
    assert _done(client, bid)["status"] == "done"
    store: BatchStore = client.app.state.store  # type: ignore[attr-defined]
    b = store.get(bid)
    assert b is not None and b.pii_mode == (mode or "redact")
    assert not Path(b.file_path).exists() and b.file_deleted_at is not None
    row = client.get(f"/v1/batches/{bid}/rows").json()["rows"][0]
    assert row["columns"]["Email"] == shown
    assert ("Mario Rossi" in row["text"]) == (mode == "keep")
    assert shown in client.get(f"/v1/batches/{bid}/results").text


def test_an_unknown_mode_is_refused_and_nothing_is_kept(client: TestClient) -> None:
    uploads = client.app.state.settings.data_dir / "uploads"  # type: ignore[attr-defined]
    before = set(uploads.iterdir()) if uploads.exists() else set()
    r = client.post("/v1/batches", files={"file": ("clienti.csv", CSV)}, data={"pii_mode": "hide"})
    assert r.status_code == 422 and "pii_mode" in r.text
    assert (set(uploads.iterdir()) if uploads.exists() else set()) == before


def test_cli_submit_with_a_mode_and_purge(env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VOCE_DATA_DIR", str(env / "data"))
    monkeypatch.setenv("VOCE_DISCOVERY", "false")
    src = env / "clienti.csv"
    src.write_bytes(CSV)
    r = runner.invoke(app, ["batch", "submit", str(src), "--wait", "--pii-mode", "mask",
                            "--mapping", '{"text": "commento", "id": "id"}'])
    assert r.exit_code == 0, r.output
    bid = r.stdout.strip().splitlines()[0]
    out = env / "out.jsonl"
    assert runner.invoke(app, ["batch", "export", bid, "-o", str(out)]).exit_code == 0
    assert "m****.*****@e******.com" in out.read_text("utf-8") and "mario.rossi@" not in out.read_text("utf-8")
    assert runner.invoke(app, ["batch", "submit", str(src), "--pii-mode", "hide"]).exit_code == 2

    assert runner.invoke(app, ["batch", "purge"]).exit_code == 2  # no --older-than and no VOCE_RETENTION_DAYS
    store = BatchStore.open(f"sqlite:///{(env / 'data' / 'voce.db').resolve()}")
    with store.sessions() as s, s.begin():
        s.execute(update(Batch).where(Batch.id == bid).values(created_at=utcnow() - dt.timedelta(days=10)))
    r = runner.invoke(app, ["batch", "purge", "--older-than", "7", "--dry-run"])
    assert r.exit_code == 0 and bid in r.stdout and store.get(bid) is not None
    monkeypatch.setenv("VOCE_RETENTION_DAYS", "7")
    r = runner.invoke(app, ["batch", "purge"])
    assert r.exit_code == 0 and bid in r.stdout and store.get(bid) is None
    assert list(store.iter_rows(bid)) == []


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
def test_a_served_log_holds_no_personal_data_and_no_query_string(tiny_bundle_dir: Path, tmp_path: Path) -> None:
    """`voce serve` as an operator runs it: a search term in a query string and personal data in an upload never
    reach its log (stdout and stderr together)."""
    env = os.environ | {
        "VOCE_ENCODER_BACKEND": "fake", "VOCE_ENCODER": "fake", "VOCE_BUNDLE": str(tiny_bundle_dir),
        "VOCE_CACHE_DIR": str(tmp_path / "cache"), "VOCE_DATA_DIR": str(tmp_path / "data"), "VOCE_DISCOVERY": "false",
        "VOCE_LOG_LEVEL": "debug",
    }
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    log = tmp_path / "serve.log"
    proc = subprocess.Popen([sys.executable, "-m", "voce.service.cli", "serve", "--port", str(port)], env=env,
                            stdout=log.open("wb"), stderr=subprocess.STDOUT, cwd=Path(__file__).parents[3])
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            assert proc.poll() is None, log.read_text()
            try:
                if httpx.get(f"{base}/ready", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        else:
            raise AssertionError(f"never ready: {log.read_text()[-2000:]}")
        auth = {"Authorization": f"Bearer {initial_admin_key(tmp_path / 'data')}"}
        r = httpx.post(f"{base}/v1/batches", files={"file": ("clienti.csv", CSV)}, headers=auth,
                       data={"mapping": json.dumps({"text": "commento", "id": "id"})}, timeout=30)
        assert r.status_code == 202, r.text
        bid = r.json()["id"]
        while httpx.get(f"{base}/v1/batches/{bid}", headers=auth).json()["status"] not in ("done", "failed"):
            time.sleep(0.1)
        q = httpx.get(f"{base}/v1/batches/{bid}/rows", params={"q": "mario.rossi@example.com"}, headers=auth)
        assert q.status_code == 200 and q.json()["total"] == 0
        httpx.get(f"{base}/v1/batches/nope/rows?q=Mario+Rossi+333+123+4567", headers=auth)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    text = log.read_text("utf-8")
    assert f"/v1/batches/{bid}/rows HTTP/1.1" in text  # the access line is there ...
    for secret in ("mario.rossi", "Mario", "333 123", "q=", "4567"):
        assert secret not in text, secret  # ... without its query string, and nothing personal anywhere
