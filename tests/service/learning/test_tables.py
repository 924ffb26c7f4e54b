"""Migration 0005 on SQLite and the real PostgreSQL: the tables, a correction and taxonomy versions stored and read
through the service layer, a batch's corrections erased with it, downgrade and upgrade again."""
from __future__ import annotations

from pathlib import Path

from sqlalchemy import inspect, select

from tests.service.migrations import alembic, database_url  # noqa: F401  (the url fixture)
from voce.models.taxonomy import default_taxonomy
from voce.service.batches.retention import erase
from voce.service.batches.store import BatchStore
from voce.service.db import make_engine, open_database
from voce.service.learning import corrections as corr
from voce.service.learning.tables import Correction
from voce.service.learning.taxonomies import TaxonomyStore, UpdateEntry, apply_edits, diff


def test_migration_tables_round_trip(url: str, tmp_path: Path) -> None:
    sessions = open_database(url)
    names = set(inspect(sessions.kw["bind"]).get_table_names())
    assert {"corrections", "taxonomy_versions"} <= names
    store = BatchStore(sessions)
    store.create(id="b1", tenant="acme", name="s.csv", file_format="csv", file_path=str(tmp_path / "x"), file_bytes=1,
                 mapping={"text": "t"})
    with sessions() as s, s.begin():
        s.add(Correction(tenant="acme", batch_id="b1", row=3, author="Giulia", original={"sentiment": "neutral",
              "topics": [], "touchpoints": [], "detractor": None, "detractor_probability": None},
              change={"sentiment": "negative"}))
    assert corr.active_changes(sessions, "b1") == {3: [{"sentiment": "negative"}]}

    base = default_taxonomy()
    taxonomies = TaxonomyStore(sessions)
    edited = apply_edits(base, [UpdateEntry(op="update", section="topics", id="other",
                                            patch={"names": {"it": "Altro"}})])
    v1 = taxonomies.save("acme", edited, author="Giulia", message="rename", base=base)
    v2 = taxonomies.save("acme", base, author="Giulia", message="back", base=base, restored_from=None)
    assert (v1.version, v2.version) == (1, 2) and v2.label == f"{base.version}+v2"
    assert taxonomies.active("acme") == base.model_copy(update={"version": v2.label})
    assert taxonomies.active("beta") is None
    assert [c["field"] for c in v1.changes] == ["names.it"] and diff(edited, base)[0].after != "Altro"

    erase(store, store.get("b1"), tmp_path)  # type: ignore[arg-type]
    with sessions() as s:
        assert s.scalars(select(Correction)).all() == []
    sessions.kw["bind"].dispose()

    alembic(url, "0004", up=False)
    engine = make_engine(url)
    left = set(inspect(engine).get_table_names())
    engine.dispose()
    assert not {"corrections", "taxonomy_versions"} & left and "batches" in left
    alembic(url, "head", up=True)
    engine = make_engine(url)
    assert {"corrections", "taxonomy_versions"} <= set(inspect(engine).get_table_names())
    engine.dispose()
