"""Persistence for batches: SQLAlchemy 2 tables, engine factory and Alembic upgrade.

The embedded default is one SQLite file (WAL, so the API reads while a worker
writes); production is PostgreSQL.  The schema is owned by the Alembic
migrations in ``service/migrations``; :func:`open_database` upgrades to head at
start-up, so a new release migrates an existing database in place.

One row of ``batch_rows`` holds everything a row produced: the original
columns, the analysis (or the per-row error), the document embedding (float16,
for topic discovery) and the few facts KPIs aggregate (score answers, labels,
topics), denormalised so KPI queries never parse result JSON.
"""
from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

from sqlalchemy import (
    JSON,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    create_engine,
    event,
    text,
)
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, sessionmaker

MIGRATIONS = Path(__file__).with_name("migrations")


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


class Base(DeclarativeBase):
    pass


class Batch(Base):
    """An uploaded file and the state of its analysis job."""

    __tablename__ = "batches"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    # who created it (access control comes later; recorded from the start)
    tenant: Mapped[str] = mapped_column(String(128), default="default")
    api_key_hash: Mapped[str | None] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(256))
    file_format: Mapped[str] = mapped_column(String(8))  # csv | xlsx | jsonl
    file_path: Mapped[str] = mapped_column(Text)
    file_bytes: Mapped[int] = mapped_column(Integer)
    mapping: Mapped[dict] = mapped_column(JSON)
    # queued -> running (phase: reading | analysing | discovering) -> done | failed
    status: Mapped[str] = mapped_column(String(16), default="queued", index=True)
    phase: Mapped[str | None] = mapped_column(String(16))
    total_rows: Mapped[int | None] = mapped_column(Integer)
    rows_done: Mapped[int] = mapped_column(Integer, default=0)
    rows_error: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    started_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    finished_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    # the current worker's lease; a stale heartbeat lets another worker resume the job
    worker_id: Mapped[str | None] = mapped_column(String(64))
    heartbeat_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    # progress rate of the current run (for the ETA): when it started and at which row
    run_started_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    run_rows_start: Mapped[int] = mapped_column(Integer, default=0)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text)
    model_version: Mapped[str | None] = mapped_column(String(128))
    taxonomy_version: Mapped[str | None] = mapped_column(String(128))
    # who analysed it: local (this process / voce worker) or ray (a Ray cluster's actors); None before 0006
    executor: Mapped[str | None] = mapped_column(String(16))
    # when cancelling was asked (POST /v1/batches/{id}/cancel): a running batch's worker stops at its next chunk
    cancel_requested_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    discovery: Mapped[dict | None] = mapped_column(JSON)
    discovery_error: Mapped[str | None] = mapped_column(Text)
    # redact | mask | keep: how personal data in this batch's texts was stored (None: before 0002)
    pii_mode: Mapped[str | None] = mapped_column(String(8))
    # when the uploaded file was deleted (or redacted) after parsing
    file_deleted_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    # the upload's columns in file order, so exports keep it once the file is deleted (None: before 0003)
    columns: Mapped[list | None] = mapped_column(JSON)
    # a CSV upload's delimiter, encoding and BOM, so its exports come back the same way (None: not CSV, before 0007)
    upload_dialect: Mapped[dict | None] = mapped_column(JSON)

    __table_args__ = (Index("ix_batches_tenant_created", "tenant", "created_at"),)


class ApiKey(Base):
    """An API key: only a hash of it is stored, with its tenant and scopes (analyze, batches:read, batches:write, admin)."""

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    tenant: Mapped[str] = mapped_column(String(128), index=True)
    name: Mapped[str] = mapped_column(String(128))
    prefix: Mapped[str] = mapped_column(String(16), index=True)
    key_hash: Mapped[str] = mapped_column(String(256))
    scopes: Mapped[list] = mapped_column(JSON)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    last_used_at: Mapped[dt.datetime | None] = mapped_column(DateTime)


class BatchRow(Base):
    """One input row: original columns, result or error, embedding and KPI facts.

    Written and read only through :mod:`voce.service.batches.rows` (a new column is added there and in a migration).
    """

    __tablename__ = "batch_rows"

    batch_id: Mapped[str] = mapped_column(String(32), ForeignKey("batches.id", ondelete="CASCADE"), primary_key=True)
    row: Mapped[int] = mapped_column(Integer, primary_key=True)
    doc_id: Mapped[str] = mapped_column(String(128))
    ok: Mapped[bool] = mapped_column(default=True)
    text: Mapped[str | None] = mapped_column(Text)  # the analysed text (what evidence offsets refer to)
    original: Mapped[dict] = mapped_column(JSON)
    result: Mapped[dict] = mapped_column(JSON)
    warnings: Mapped[list | None] = mapped_column(JSON)
    embedding: Mapped[bytes | None] = mapped_column(LargeBinary)
    date: Mapped[dt.date | None] = mapped_column(Date)
    language: Mapped[str | None] = mapped_column(String(8))
    # where it was collected: the taxonomy's touchpoint id when the channel names one, else the value lower-cased
    channel: Mapped[str | None] = mapped_column(String(64))
    segments: Mapped[dict | None] = mapped_column(JSON)
    nps: Mapped[int | None] = mapped_column(Integer)
    csat: Mapped[int | None] = mapped_column(Integer)
    ces: Mapped[int | None] = mapped_column(Integer)
    sentiment: Mapped[str | None] = mapped_column(String(8))
    positive: Mapped[float] = mapped_column(Float, default=0.0)
    negative: Mapped[float] = mapped_column(Float, default=0.0)
    detractor: Mapped[float | None] = mapped_column(Float)
    topics: Mapped[list | None] = mapped_column(JSON)  # [[topic id, sentiment label], ...]
    touchpoints: Mapped[list | None] = mapped_column(JSON)  # [touchpoint id, ...]
    discovered: Mapped[int | None] = mapped_column(Integer)  # discovered topic id, -1 outlier

    __table_args__ = (Index("ix_batch_rows_batch_discovered", "batch_id", "discovered"),)


def _private_file(path: Path) -> None:
    """Create the SQLite file (and its WAL/SHM companions) readable by the service's user only (0600)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    for p in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        if p == path or p.exists():
            os.close(os.open(p, os.O_CREAT | os.O_RDWR, 0o600))
            os.chmod(p, 0o600)


#: libpq settings that bound a call through a network partition (packets dropped, nothing refused): the TCP
#: keepalives close an idle connection whose peer went silent after ~60 s, tcp_user_timeout fails a query whose data
#: goes unacknowledged for 60 s, so a worker reaches its wait-and-resume logic instead of waiting for good
PG_CONNECT_ARGS: dict[str, int] = {
    "keepalives": 1, "keepalives_idle": 30, "keepalives_interval": 10, "keepalives_count": 3,
    "tcp_user_timeout": 60_000,
}
#: seconds a new PostgreSQL connection may take (a server that accepts and never answers)
PG_CONNECT_TIMEOUT = 10


#: SQLSTATEs of a connection that went away rather than a statement the server refused: class 08 (connection
#: exception) and 57P01-57P03 (terminated by an administrator, crash shutdown, cannot connect now)
CONNECTION_LOST_STATES = ("08", "57P01", "57P02", "57P03")


def connection_lost(exc: BaseException) -> bool:
    """Whether a database error says the *connection* is gone (backend terminated, server restarted, socket reset,
    network cut), whatever the database answers a moment later.

    SQLAlchemy marks only some of these ``connection_invalidated``: psycopg reports a backend terminated in the
    middle of a pipelined ``executemany`` as ``AdminShutdown`` (57P01) or as a client-side error ("cannot exit
    pipeline mode while busy") on a connection it has not flagged broken yet.  Client-side psycopg errors (no
    SQLSTATE) are about the socket or the protocol state, never about a statement's values.  SQLite never loses a
    connection this way: its errors (locked, disk I/O) are not counted here.
    """
    if not isinstance(exc, DBAPIError):
        return False
    if exc.connection_invalidated:
        return True
    if not isinstance(exc, OperationalError | InterfaceError):
        return False
    orig = exc.orig
    state = getattr(orig, "sqlstate", None)
    if state:
        return str(state).startswith(CONNECTION_LOST_STATES)
    return type(orig).__module__.split(".", 1)[0] == "psycopg"


def make_engine(url: str, *, connect_timeout: int = PG_CONNECT_TIMEOUT) -> Engine:
    """An engine for ``url``; SQLite gets WAL + a busy timeout so readers and the writer coexist."""
    if url.startswith("sqlite"):
        path = url.split("///", 1)[1] if "///" in url else ""  # "sqlite://" is an in-memory database
        if path and path != ":memory:" and not path.startswith("file::memory:"):
            _private_file(Path(path))
        # hide_parameters: an SQL error's message never quotes a row's (customer) values
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30}, hide_parameters=True)

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn, _record) -> None:  # type: ignore[no-untyped-def]
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        return engine
    args = dict(PG_CONNECT_ARGS, connect_timeout=connect_timeout) if url.startswith("postgresql") else {}
    return create_engine(
        url, pool_pre_ping=True, pool_size=5, max_overflow=5, hide_parameters=True, connect_args=args,
    )


def upgrade(engine: Engine) -> None:
    """Bring the schema to the newest Alembic revision (idempotent)."""
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":  # API and workers starting together migrate one at a time
            conn.execute(text("SELECT pg_advisory_xact_lock(72746401)"))
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")


def open_database(url: str) -> sessionmaker:
    """Engine + migrations + a session factory."""
    engine = make_engine(url)
    upgrade(engine)
    return sessionmaker(engine, expire_on_commit=False)
