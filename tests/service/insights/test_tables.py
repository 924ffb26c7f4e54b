"""Migration 0004 on SQLite and the real PostgreSQL: the tables, a view, a rule and an event stored and read, a
batch's views and events erased with it, downgrade to 0003 and upgrade again."""
from __future__ import annotations

from pathlib import Path

from sqlalchemy import inspect, select

from tests.service.migrations import alembic, database_url  # noqa: F401  (the url fixture)
from voce.service.batches.retention import erase
from voce.service.batches.store import BatchStore
from voce.service.db import make_engine, open_database
from voce.service.insights.tables import AlertEvent, AlertRule, SavedView

TABLES = {"saved_views", "alert_rules", "alert_events"}




def _tables(url: str) -> set[str]:
    engine = make_engine(url)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_migration_round_trip(url: str, tmp_path: Path) -> None:
    sessions = open_database(url)
    assert set(inspect(sessions.kw["bind"]).get_table_names()) >= TABLES
    store = BatchStore(sessions)
    store.create(id="b1", tenant="acme", name="s.csv", file_format="csv", file_path=str(tmp_path / "x"), file_bytes=1,
                 mapping={"text": "t"})
    with sessions() as s, s.begin():
        s.add(SavedView(id="v1", tenant="acme", name="Nord", batch_id="b1", query="segment=regione%3Anord",
                        owner_key="k1", owner="Giulia", shared=True))
        rule = AlertRule(tenant="acme", name="NPS", owner="Giulia", enabled=True, subject="overall", metric="nps",
                         condition="below", threshold=0.0, min_rows=20, query="")
        s.add(rule)
        s.flush()
        s.add(AlertEvent(tenant="acme", rule_id=rule.id, rule_name="NPS", batch_id="b1", status="fired",
                         code="alert.threshold", params={"value": -12.5}, value=-12.5, webhook_status="none",
                         webhook_attempts=0))
    with sessions() as s:
        assert s.get(SavedView, "v1").shared is True  # type: ignore[union-attr]
        assert s.scalars(select(AlertEvent.params)).one() == {"value": -12.5}
    erase(store, store.get("b1"), tmp_path)  # type: ignore[arg-type]
    with sessions() as s:  # the batch's view and events go with it; the rule stays
        assert s.scalars(select(SavedView)).all() == [] and s.scalars(select(AlertEvent)).all() == []
        assert len(s.scalars(select(AlertRule)).all()) == 1
    sessions.kw["bind"].dispose()

    alembic(url, "0003", up=False)
    left = _tables(url)
    assert not TABLES & left and "batches" in left
    alembic(url, "head", up=True)
    assert _tables(url) >= TABLES
