"""The one owner of a stored row: what it writes fills the table, and every reader gets the same facts back."""
from __future__ import annotations

import datetime as dt
import types
from typing import Any

import numpy as np

from voce.service.batches import rows
from voce.service.batches.runner import analyze_chunk
from voce.service.batches.store import ROWS
from voce.service.uploads import ColumnMapping, prepare_row

MAPPING = ColumnMapping(text="text", id="id", nps="nps", date="date", segments=["region"])
RECORDS = [
    {"id": "a", "text": "Il personale è stato gentilissimo", "nps": "9", "date": "05/03/2026", "region": "nord"},
    {"id": "b", "text": "", "nps": "3", "date": "06/03/2026", "region": "sud"},  # no text: a per-row error
]


def _records(analyzer: Any) -> list[dict[str, Any]]:
    return analyze_chunk(analyzer, [prepare_row(i, r, MAPPING) for i, r in enumerate(RECORDS)])


def _stored(rec: dict[str, Any]) -> Any:
    """A record as the store reads it back (attribute access)."""
    return types.SimpleNamespace(**rec)


def test_a_record_fills_every_column_of_the_table(fake_analyzer: Any) -> None:
    """A new column in ``batch_rows`` must be written by :func:`rows.record` (and so by every kind of row)."""
    columns = {c.name for c in ROWS.columns} - {"batch_id"}
    ok, error = _records(fake_analyzer)
    assert set(ok) == columns and set(error) == columns
    assert set(rows.unstorable(ok)) == columns
    for read in (rows.DISCOVERY_COLUMNS, rows.FACT_COLUMNS, rows.SEARCH_COLUMNS, rows.EXPORT_COLUMNS):
        assert set(read) <= columns


def test_facts_export_and_item_of_an_analysed_row(fake_analyzer: Any) -> None:
    rec = _records(fake_analyzer)[0]
    assert rec["ok"] and rec["doc_id"] == "a" and rec["text"] == RECORDS[0]["text"]
    facts = rows.facts(_stored(rec))
    assert (facts.row, facts.nps, facts.date, facts.segments) == (0, 9, dt.date(2026, 3, 5), {"region": "nord"})
    assert facts.sentiment == rec["result"]["sentiment"]["label"]
    assert facts.topics == tuple((t["id"], t["sentiment"]["label"]) for t in rec["result"]["topics"])
    vec = rows.embedding(_stored(rec))
    assert vec.dtype == np.float16 and vec.shape == (fake_analyzer.encoder.dim,)

    flat = rows.flat_values(_stored(rec))
    assert len(flat) == len(rows.FLAT_COLUMNS) and flat[:3] == [0, "a", "ok"]
    assert rows.export_item(_stored(rec)) == {"row": 0, **rec["result"], "columns": RECORDS[0]}
    item = rows.row_item(_stored(rec))
    assert (item.id, item.ok, item.nps, item.columns) == ("a", True, 9, RECORDS[0])


def test_facts_export_and_item_of_an_error_row(fake_analyzer: Any) -> None:
    rec = _records(fake_analyzer)[1]
    assert not rec["ok"] and rec["embedding"] is None and rec["result"]["error"]["code"] == "EmptyText"
    facts = rows.facts(_stored(rec))
    assert (facts.ok, facts.nps, facts.sentiment, facts.topics, facts.positive) == (False, 3, None, (), 0.0)
    flat = rows.flat_values(_stored(rec))
    assert len(flat) == len(rows.FLAT_COLUMNS) and flat[2] == "error" and flat[-1].startswith("EmptyText: ")
    assert rows.row_item(_stored(rec)).error == rec["result"]["error"]


def test_an_unstorable_row_keeps_its_place_and_id(fake_analyzer: Any) -> None:
    rec = rows.unstorable(_records(fake_analyzer)[0])
    assert (rec["row"], rec["doc_id"], rec["ok"], rec["original"]) == (0, "a", False, {})
    assert rec["result"] == {"id": "a", "error": {"code": "UnstorableRow", "message": "a value of this row could not be stored"}}
