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


# ------------------------------------------------------------------- channel and touchpoints
CHANNEL_MAPPING = ColumnMapping(text="text", id="id", channel="canale")
CHANNEL_RECORDS = [
    {"id": "app", "text": "The app is ok", "canale": "App"},  # the text supports the app: the channel raises it
    {"id": "lift", "text": "Un ascensore era fuori servizio", "canale": "App"},  # it does not: no touchpoint
    {"id": "fax", "text": "Il call center non risponde mai", "canale": " Fax "},  # a channel the taxonomy lacks
    {"id": "none", "text": "Consegna velocissima!", "canale": ""},
    {"id": "err", "text": "", "canale": "Telefono"},  # an error row: its channel is resolved all the same
]


def _channel_records(analyzer: Any) -> list[dict[str, Any]]:
    return analyze_chunk(analyzer, [prepare_row(i, r, CHANNEL_MAPPING) for i, r in enumerate(CHANNEL_RECORDS)])


def test_the_channel_column_holds_the_normalised_channel(fake_analyzer: Any) -> None:
    recs = _channel_records(fake_analyzer)
    assert [r["channel"] for r in recs] == ["mobile_app", "mobile_app", "fax", None, "call_center"]
    assert [r["original"]["canale"] for r in recs] == [r["canale"] for r in CHANNEL_RECORDS]  # the raw value stays
    assert recs[0]["result"]["channel"] == "mobile_app" and "channel" not in recs[2]["result"]
    assert any("matches no touchpoint" in w for w in recs[2]["result"]["warnings"])
    assert [rows.facts(_stored(r)).channel for r in recs] == [r["channel"] for r in recs]
    # the channel never creates a touchpoint the text does not support
    assert [t["id"] for t in recs[1]["result"]["touchpoints"]] == []
    assert [t["id"] for t in recs[2]["result"]["touchpoints"]] == ["call_center"]  # from the text, via a fax


def test_stored_channel() -> None:
    assert rows.stored_channel("App", "mobile_app") == "mobile_app"
    assert rows.stored_channel("  Piccione Viaggiatore ", None) == "piccione viaggiatore"
    assert rows.stored_channel("  ", None) is None and rows.stored_channel(None, None) is None
    assert rows.stored_channel("X" * 80, None) == "x" * 64  # the column's width


def test_exports_and_items_carry_channel_and_touchpoints_apart(fake_analyzer: Any) -> None:
    recs = _channel_records(fake_analyzer)
    flat = [dict(zip(rows.FLAT_COLUMNS, rows.flat_values(_stored(r)), strict=True)) for r in recs]
    assert [(f["voce_channel"], f["voce_touchpoints"], f["voce_primary_touchpoint"]) for f in flat] == [
        ("mobile_app", "mobile_app", "mobile_app"), ("mobile_app", "", None), ("fax", "call_center", "call_center"),
        (None, "delivery", "delivery"), ("call_center", None, None),
    ]
    assert flat[4]["voce_status"] == "error"
    item = rows.row_item(_stored(recs[0]))
    assert item.channel == "mobile_app"
    assert [(t["id"], t["primary"], t["from_channel"]) for t in item.touchpoints] == [("mobile_app", True, True)]
    assert rows.export_item(_stored(recs[0]))["channel"] == "mobile_app"  # JSONL: the whole result


def test_the_primary_touchpoint_is_listed_first() -> None:
    def stored(touchpoints: list[dict[str, Any]]) -> Any:
        result = {"id": "x", "language": "it", "sentiment": {"label": "neutral", "scores": {
            "positive": 0.2, "neutral": 0.6, "negative": 0.2}}, "detractor": {"probability": 0.3},
            "touchpoints": touchpoints}
        return _stored({"row": 0, "doc_id": "x", "ok": True, "text": "t", "language": "it", "date": None, "nps": None,
                        "channel": "store", "sentiment": "neutral", "detractor": 0.3, "discovered": None,
                        "result": result, "warnings": None, "original": {}})

    def tp(tid: str, primary: bool | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {"id": tid, "score": 0.7, "evidence": [], "from_channel": False}
        return out if primary is None else out | {"primary": primary}

    r = stored([tp("billing", False), tp("store", True)])
    flat = dict(zip(rows.FLAT_COLUMNS, rows.flat_values(r), strict=True))
    assert (flat["voce_touchpoints"], flat["voce_primary_touchpoint"]) == ("store; billing", "store")
    assert [t["id"] for t in rows.row_item(r).touchpoints] == ["store", "billing"]
    legacy = stored([tp("billing"), tp("store")])  # stored before touchpoints had a primary: order kept, none named
    flat = dict(zip(rows.FLAT_COLUMNS, rows.flat_values(legacy), strict=True))
    assert (flat["voce_touchpoints"], flat["voce_primary_touchpoint"]) == ("billing; store", None)
