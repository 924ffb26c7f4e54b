"""A batch's personal data over its life, on SQLite and PostgreSQL: nothing personal stored or shown to topic
discovery, the upload 0600 and deleted once the batch is done (kept while it can still resume), everything erased
on delete, old batches purged."""
from __future__ import annotations

import csv
import datetime as dt
import io
import json
import stat
from pathlib import Path
from typing import Any

import openpyxl
import pytest
from sqlalchemy import update

from tests.service.batch_data import batch_settings, csv_bytes
from voce.service.batches import retention
from voce.service.batches.executor import LocalExecutor
from voce.service.batches.runner import BatchRunner, RunnerConfig
from voce.service.batches.service import BatchService, parse_mapping
from voce.service.batches.store import BatchStore
from voce.service.db import Batch, utcnow
from voce.service.settings import Settings

PERSONAL = ["Mario Rossi", "mario.rossi@example.com", "333 123 4567", "RSSMRA85T10A562S", "Giulia Neri",
            "giulia.neri@example.it", "4111 1111 1111 1111", "Luca"]
ROWS = [
    {"id": "p1", "commento": "Mi chiamo Mario Rossi, il pacco è arrivato rotto. Richiamatemi al 333 123 4567.",
     "Email": "mario.rossi@example.com", "nps": "2", "regione": "nord"},
    {"id": "p2", "commento": "Personale scortese. Codice fiscale RSSMRA85T10A562S chiesto tre volte.",
     "Email": "giulia.neri@example.it", "nps": "1", "regione": "sud"},
    {"id": "p3", "commento": "Ottimo servizio, grazie a Luca del negozio!", "Email": "", "nps": "10", "regione": "nord"},
    {"id": "p4", "commento": "Addebito doppio sulla carta 4111 1111 1111 1111, nessuna risposta.",
     "Email": "giulia.neri@example.it", "nps": "0", "regione": "sud"},
    {"id": "p5", "commento": "Consegna puntuale e prezzo giusto.", "Email": "Giulia Neri <giulia.neri@example.it>",
     "nps": "9", "regione": "nord"},
]
MAPPING = parse_mapping(json.dumps({"text": "commento", "id": "id", "nps": "nps", "segments": ["regione"]}))


def _settings(request: pytest.FixtureRequest, backend: str, tmp: Path, bundle: Path, **kw: Any) -> Settings:
    url = request.getfixturevalue("postgres_url") if backend == "postgres" else None
    return batch_settings(tmp, bundle, **({"database_url": url, "discovery": False, "worker_lease_seconds": 1} | kw))


def _submit(service: BatchService, tmp: Path, rows: list[dict[str, str]] = ROWS, **kw: Any) -> str:
    src = tmp / "clienti.csv"
    src.write_bytes(csv_bytes(rows))
    return service.submit_file(src, mapping=MAPPING, **kw).id


def _stored_text(store: BatchStore, bid: str) -> str:
    """Everything stored of a batch, as one string (rows, the batch row's discovery)."""
    cols = ("row", "doc_id", "text", "original", "result", "warnings", "segments")
    rows = [{c: getattr(r, c) for c in cols} for r in store.iter_rows(bid, columns=cols)]
    b = store.get(bid)
    assert b is not None
    return json.dumps({"rows": rows, "discovery": b.discovery, "error": b.error}, ensure_ascii=False, default=str)


def _exports(service: BatchService, bid: str, folder: Path) -> dict[str, str]:
    out = {}
    for fmt in ("jsonl", "csv"):
        out[fmt] = b"".join(service.export(bid, fmt).chunks or ()).decode("utf-8-sig")  # type: ignore[arg-type]
    xlsx = service.export(bid, "xlsx", folder=folder).path
    assert xlsx is not None and stat.S_IMODE(xlsx.stat().st_mode) == 0o600
    out["xlsx"] = json.dumps([[c.value for c in row] for row in openpyxl.load_workbook(xlsx).worksheets[0].rows], default=str)
    xlsx.unlink()
    return out


BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_batch_stores_no_personal_data_and_drops_its_upload_when_done(
    backend: str, request: pytest.FixtureRequest, fake_analyzer: Any, tiny_bundle_dir: Path, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = _settings(request, backend, tmp_path, tiny_bundle_dir, discovery=True)
    service = BatchService.from_settings(settings, labels=lambda: {})
    bid = _submit(service, tmp_path)
    upload = Path(service.get(bid).file_path)
    assert stat.S_IMODE(upload.stat().st_mode) == 0o600 and stat.S_IMODE(upload.parent.stat().st_mode) == 0o700

    seen: list[str] = []  # what topic discovery is shown: the stored (redacted) texts
    import voce.models.discovery as discovery

    real = discovery.discover_topics
    monkeypatch.setattr(discovery, "discover_topics", lambda texts, *a, **k: seen.extend(texts) or real(texts, *a, **k))
    LocalExecutor(service.store, lambda: fake_analyzer, RunnerConfig.from_settings(settings)).run_until_idle()

    b = service.get(bid)
    assert (b.status, b.rows_done, b.pii_mode) == ("done", len(ROWS), "redact")
    assert not upload.exists() and b.file_deleted_at is not None  # deleted once done, and when is recorded
    assert seen and not any(p in t for t in seen for p in PERSONAL)
    everything = _stored_text(service.store, bid)
    exports = _exports(service, bid, tmp_path / "exports")
    for text in [everything, *exports.values()]:
        for value in PERSONAL:
            assert value not in text, value
    assert "<EMAIL>" in everything and "<PHONE>" in everything and "<NAME>" in everything
    header = next(csv.reader(io.StringIO(exports["csv"])))
    assert header[:5] == ["id", "commento", "Email", "nps", "regione"]  # the file's own order, though the file is gone
    page = service.rows_page(bid, q="mario.rossi@example.com")
    assert page.total == 0  # a search for the personal data finds nothing: it is not there


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_batch_that_resumes_after_a_crash_still_has_its_file(
    backend: str, request: pytest.FixtureRequest, fake_analyzer: Any, tiny_bundle_dir: Path, tmp_path: Path
) -> None:
    settings = _settings(request, backend, tmp_path, tiny_bundle_dir)
    service = BatchService.from_settings(settings, labels=lambda: {})
    bid = _submit(service, tmp_path, ROWS * 4)

    class Crash(BaseException):
        pass

    def die(done: int) -> None:
        if done >= 8:
            raise Crash

    config = RunnerConfig.from_settings(settings)
    batch = service.store.claim("worker-a", 1, batch_id=bid)
    assert batch is not None
    with pytest.raises(Crash):
        BatchRunner(service.store, fake_analyzer, "worker-a", config, on_chunk=die).run(batch)
    b = service.get(bid)
    assert b.status == "running" and Path(b.file_path).exists() and b.file_deleted_at is None
    import time

    time.sleep(1.1)  # the dead worker's lease runs out
    LocalExecutor(service.store, lambda: fake_analyzer, config).run_until_idle()
    b = service.get(bid)
    assert (b.status, b.rows_done, b.attempts) == ("done", len(ROWS) * 4, 2)
    assert not Path(b.file_path).exists() and b.file_deleted_at is not None
    assert [r.row for r in service.store.iter_rows(bid, columns=("row",))] == list(range(len(ROWS) * 4))


def test_per_upload_modes_and_keeping_uploads(fake_analyzer: Any, tiny_bundle_dir: Path, tmp_path: Path) -> None:
    settings = batch_settings(tmp_path, tiny_bundle_dir, discovery=False, pii_mode="mask", keep_uploads=True)
    service = BatchService.from_settings(settings, labels=lambda: {})
    masked, kept, redacted = (_submit(service, tmp_path, pii_mode=m) for m in (None, "keep", "redact"))
    LocalExecutor(service.store, lambda: fake_analyzer, RunnerConfig.from_settings(settings)).run_until_idle()
    assert [service.get(b).pii_mode for b in (masked, kept, redacted)] == ["mask", "keep", "redact"]
    assert "m****.*****@e******.com" in _stored_text(service.store, masked)
    assert all(p in _stored_text(service.store, kept) for p in PERSONAL)
    assert "<EMAIL>" in _stored_text(service.store, redacted)
    for bid in (masked, kept, redacted):  # VOCE_KEEP_UPLOADS=true
        b = service.get(bid)
        assert Path(b.file_path).exists() and b.file_deleted_at is None


def _db_bytes(settings: Settings) -> bytes:
    path = settings.data_dir / "voce.db"
    return b"".join(p.read_bytes() for p in (path, path.with_name("voce.db-wal")) if p.exists())


@pytest.mark.parametrize("backend", BACKENDS)
def test_delete_erases_rows_embeddings_files_and_exports(
    backend: str, request: pytest.FixtureRequest, fake_analyzer: Any, tiny_bundle_dir: Path, tmp_path: Path
) -> None:
    settings = _settings(request, backend, tmp_path, tiny_bundle_dir, keep_uploads=True)
    service = BatchService.from_settings(settings, labels=lambda: {})
    marker = "Zanzibarquattordici"  # stored verbatim (keep), so erasure can be checked in the database file itself
    rows = [dict(r, commento=f"{r['commento']} {marker}") for r in ROWS]
    bid = _submit(service, tmp_path, rows, pii_mode="keep")
    other = _submit(service, tmp_path, pii_mode="keep")
    LocalExecutor(service.store, lambda: fake_analyzer, RunnerConfig.from_settings(settings)).run_until_idle()
    upload = Path(service.get(bid).file_path)
    leftover = settings.data_dir / "exports" / f"{bid}-deadbeef.xlsx"  # an export a crash left behind
    leftover.parent.mkdir(parents=True, exist_ok=True)
    leftover.write_bytes(b"x")
    assert upload.exists() and marker in _stored_text(service.store, bid)
    if backend == "sqlite":
        assert marker.encode() in _db_bytes(settings)

    service.delete(bid)
    assert not service.exists(bid) and not upload.exists() and not leftover.exists()
    assert list(service.store.iter_rows(bid, columns=("row", "embedding"))) == []
    if backend == "sqlite":  # secure_delete + checkpoint: the text is gone from the file, not just unlinked
        assert marker.encode() not in _db_bytes(settings)
    assert service.get(other).status == "done" and len(list(service.store.iter_rows(other))) == len(ROWS)


@pytest.mark.parametrize("backend", BACKENDS)
def test_retention_purges_finished_batches_older_than_the_setting(
    backend: str, request: pytest.FixtureRequest, fake_analyzer: Any, tiny_bundle_dir: Path, tmp_path: Path
) -> None:
    settings = _settings(request, backend, tmp_path, tiny_bundle_dir, retention_days=30, keep_uploads=True)
    service = BatchService.from_settings(settings, labels=lambda: {})
    old, recent = _submit(service, tmp_path), _submit(service, tmp_path)
    LocalExecutor(service.store, lambda: fake_analyzer, RunnerConfig.from_settings(settings)).run_until_idle()
    old_queued = _submit(service, tmp_path)  # old but still queued: a worker's, not purged under it
    with service.store.sessions() as s, s.begin():
        s.execute(update(Batch).where(Batch.id.in_([old, old_queued])).values(created_at=utcnow() - dt.timedelta(days=31)))
    old_file = Path(service.get(old).file_path)

    task = retention.RetentionTask(service.store, settings.data_dir, settings.retention_days, keep_uploads=True)
    assert task.run_once() == [old]
    assert not service.exists(old) and not old_file.exists()
    assert service.exists(recent) and service.exists(old_queued)
    assert list(service.store.iter_rows(old)) == []
    with service.store.sessions() as s, s.begin():  # the recent one expires in its turn; the queued one is a worker's
        s.execute(update(Batch).where(Batch.id == recent).values(created_at=utcnow() - dt.timedelta(days=30, hours=1)))
    assert retention.purge_expired(service.store, settings.data_dir, 30) == [recent]
    assert service.exists(old_queued)


def test_an_interrupted_upload_deletion_is_finished_at_start(
    fake_analyzer: Any, tiny_bundle_dir: Path, tmp_path: Path
) -> None:
    """A worker that stopped between finishing a batch and deleting its file: the next start deletes it."""
    settings = batch_settings(tmp_path, tiny_bundle_dir, discovery=False, keep_uploads=True)
    service = BatchService.from_settings(settings, labels=lambda: {})
    bid = _submit(service, tmp_path)
    LocalExecutor(service.store, lambda: fake_analyzer, RunnerConfig.from_settings(settings)).run_until_idle()
    upload = Path(service.get(bid).file_path)
    assert upload.exists()
    task = retention.RetentionTask(service.store, settings.data_dir, None, keep_uploads=False)
    task.start()  # at start: the sweep
    task.stop()
    assert not upload.exists() and service.get(bid).file_deleted_at is not None


def test_files_no_batch_owns_are_removed_once_stale(tiny_bundle_dir: Path, tmp_path: Path) -> None:
    """An upload whose batch row never committed (a server killed in between) and a preview's scratch file left by a
    crash go at the next start once stale; a queued batch's upload and fresh files (an upload being received) stay."""
    import os
    import time

    settings = batch_settings(tmp_path, tiny_bundle_dir, discovery=False)
    service = BatchService.from_settings(settings, labels=lambda: {})
    queued = Path(service.get(_submit(service, tmp_path)).file_path)
    uploads, scratch = settings.data_dir / "uploads", settings.data_dir / "tmp"
    scratch.mkdir(parents=True, exist_ok=True)
    orphan, orphan_rows = uploads / "0123456789abcdef0123456789abcdef.csv", uploads / "fedcba9876543210.xlsx.rows"
    receiving, left = uploads / "aaaabbbbccccdddd.csv", scratch / "preview-1234"
    for p in (orphan, orphan_rows, receiving, left):
        p.write_bytes(b"id;commento\n1;mario.rossi@example.com\n")
    stale = time.time() - 2 * retention.ORPHAN_AFTER_SECONDS
    for p in (orphan, orphan_rows, left, queued):
        os.utime(p, (stale, stale))
    task = retention.RetentionTask(service.store, settings.data_dir, None, keep_uploads=True)
    task.start()  # at start: the sweep, whatever the upload and retention settings
    task.stop()
    assert not orphan.exists() and not orphan_rows.exists() and not left.exists()
    assert queued.exists() and receiving.exists()
