"""The embedded database keeps customer text private: its files are 0600 and SQL errors never quote row values."""
from __future__ import annotations

import stat
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from voce.service.db import make_engine, open_database


def _mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def test_sqlite_files_are_private(tmp_path: Path) -> None:
    db = tmp_path / "var" / "voce.db"
    sessions = open_database(f"sqlite:///{db}")
    with sessions() as s, s.begin():
        s.execute(text("CREATE TABLE t (x TEXT)"))
        s.execute(text("INSERT INTO t VALUES ('mario.rossi@example.com')"))
    assert _mode(db) == 0o600
    for companion in (db.with_name("voce.db-wal"), db.with_name("voce.db-shm")):
        if companion.exists():
            assert _mode(companion) == 0o600


def test_an_existing_database_file_is_made_private(tmp_path: Path) -> None:
    db = tmp_path / "voce.db"
    db.touch(mode=0o644)
    db.chmod(0o644)
    make_engine(f"sqlite:///{db}")
    assert _mode(db) == 0o600


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_sql_errors_do_not_quote_values(tmp_path: Path, backend: str, request: pytest.FixtureRequest) -> None:
    url = request.getfixturevalue("postgres_url") if backend == "postgres" else f"sqlite:///{tmp_path / 'e.db'}"
    engine = make_engine(url)
    with engine.begin() as c:
        c.execute(text("CREATE TABLE IF NOT EXISTS pii_probe (x TEXT PRIMARY KEY)"))
        c.execute(text("DELETE FROM pii_probe"))
        c.execute(text("INSERT INTO pii_probe VALUES (:x)"), {"x": "mario.rossi@example.com"})
    try:
        with pytest.raises(IntegrityError) as err, engine.begin() as c:
            c.execute(text("INSERT INTO pii_probe VALUES (:x)"), {"x": "mario.rossi@example.com"})
        message = str(err.value)
        assert "SQL parameters hidden" in message
        if backend == "sqlite":
            assert "mario.rossi" not in message
        # PostgreSQL's own DETAIL line quotes a duplicate key's value: that text only ever reaches the logs
        # through service/privacy/logs.py, which redacts it (tests/service/privacy/test_logs.py)
    finally:
        with engine.begin() as c:
            c.execute(text("DROP TABLE pii_probe"))
        engine.dispose()


def test_in_memory_sqlite_creates_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    for url in ("sqlite://", "sqlite:///:memory:"):
        with make_engine(url).connect() as c:
            assert c.execute(text("SELECT 1")).scalar() == 1
    assert list(tmp_path.iterdir()) == []


@pytest.mark.postgres
def test_postgresql_calls_are_bounded_through_a_network_partition(postgres_url: str) -> None:
    """A database that accepts connections and never answers (a partition behind a proxy) fails a new connection
    after ``connect_timeout`` instead of hanging; connections carry the keepalive and TCP user timeout settings that
    bound a call on a connection already open (not observable on loopback, where the proxy's kernel acknowledges)."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import OperationalError

    from tests.service.live import TcpProxy
    from voce.service.db import PG_CONNECT_ARGS

    engine = make_engine(postgres_url)
    with engine.connect() as c:
        params = c.connection.dbapi_connection.info.get_parameters()  # type: ignore[union-attr]
        assert {k: params.get(k) for k in PG_CONNECT_ARGS} == {k: str(v) for k, v in PG_CONNECT_ARGS.items()}
    engine.dispose()
    url = make_url(postgres_url)
    with TcpProxy((url.host or "127.0.0.1", url.port or 5432)) as proxy:
        proxy.hang()
        hung = make_engine(url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False),
                           connect_timeout=2)
        with pytest.raises(OperationalError), hung.connect() as c:
            c.execute(text("SELECT 1"))
        hung.dispose()
