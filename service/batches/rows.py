"""One stored batch row, owned here: every place that writes or reads a ``batch_rows`` record goes through this module.

A row is written once, from an analysis (:func:`record`), and read back four ways: as the slim facts the KPIs
aggregate (:func:`facts`), as export lines and columns (:func:`export_item`, :func:`flat_values`), as the API's
row item (:func:`row_item`) and as the input of topic discovery (:func:`embedding`).  Adding a per-row fact
means editing this module plus the table (``service/db.py``) and its Alembic migration, nothing else.
"""
from __future__ import annotations

import copy
import datetime as dt
from collections.abc import Mapping
from typing import Any

import numpy as np
from pydantic import BaseModel, Field

from voce.models.types import DocumentError, DocumentInput, DocumentResult
from voce.service.analytics import CHANNEL_MAX_CHARS, RowFacts
from voce.service.batches.store import BatchStore
from voce.service.privacy import Redacted, Redactor, column_kind
from voce.service.uploads import PreparedRow

#: what an error row holds where an analysed row holds predictions
_NO_PREDICTION: dict[str, Any] = {
    "language": None, "sentiment": None, "positive": 0.0, "negative": 0.0, "detractor": None, "topics": None,
    "touchpoints": None,
}
#: stored embeddings are float16: half the bytes, and topic discovery needs no more precision
_EMBEDDING_DTYPE = np.float16


# ------------------------------------------------------------------- writing
def stored_channel(raw: str | None, resolved: str | None) -> str | None:
    """What the ``channel`` column holds: the taxonomy's touchpoint id the channel was resolved to, else the raw
    value lower-cased and stripped (an unknown channel still groups: "Fax" and "fax " are one channel), else None.
    The raw value itself stays in the row's original columns."""
    if resolved:
        return resolved
    key = (raw or "").strip().lower()[:CHANNEL_MAX_CHARS]
    return key or None


def record(
    p: PreparedRow,
    item: DocumentResult | DocumentError,
    vec: np.ndarray | None,
    channels: Mapping[str, str] | None = None,
    redactor: Redactor | None = None,
) -> dict[str, Any]:
    """The ``batch_rows`` record of one upload row: its input facts, and its analysis or its per-row error.

    An analysed row's channel is the one the analyzer resolved (``item.channel``); ``channels`` (the taxonomy's
    :meth:`~voce.models.taxonomy.Taxonomy.channel_map`) resolves it the same way for a row that could not be
    analysed, so its survey answers count under the same channel.  With a ``redactor`` the record holds no
    personal data (see :func:`redact`); the analysis itself ran on the original text.
    """
    rec = _record(p, item, vec, channels)
    return redact(rec, redactor) if redactor is not None and redactor.active else rec


def _record(
    p: PreparedRow, item: DocumentResult | DocumentError, vec: np.ndarray | None, channels: Mapping[str, str] | None
) -> dict[str, Any]:
    text = p.doc.text if isinstance(p.doc, DocumentInput) and not p.doc.turns else None
    raw_key = (p.channel or "").strip().lower()
    resolved = item.channel if isinstance(item, DocumentResult) else (channels or {}).get(raw_key)
    rec: dict[str, Any] = {
        "row": p.row, "doc_id": item.id, "original": p.original, "warnings": p.warnings or None, "date": p.date,
        "channel": stored_channel(p.channel, resolved), "segments": p.segments or None, "nps": p.nps,
        "csat": p.csat, "ces": p.ces, "discovered": None,
    }
    if isinstance(item, DocumentError):
        return rec | _NO_PREDICTION | {
            "ok": False, "text": text, "result": item.model_dump(mode="json"), "embedding": None,
        }
    return rec | {
        "ok": True,
        "text": item.text or text,
        "result": item.model_dump(mode="json", exclude_none=True),
        "embedding": None if vec is None else vec.astype(_EMBEDDING_DTYPE).tobytes(),
        "language": item.language,
        "sentiment": item.sentiment.label,
        "positive": item.sentiment.scores.positive,
        "negative": item.sentiment.scores.negative,
        "detractor": item.detractor.probability,
        "topics": [[t.id, t.sentiment.label] for t in item.topics],
        "touchpoints": [t.id for t in item.touchpoints],
    }


def redact(rec: dict[str, Any], redactor: Redactor) -> dict[str, Any]:
    """A record with its personal data redacted (or masked) everywhere a person's data can be: the text, every
    string of the original cells (whole cells of columns named like "Email" or "Nome"), the id, segment values,
    warnings and error messages, and the result's sentence texts and chat speakers.  Every evidence span
    (sentences, topics, touchpoints, chat turns, escalation and effort signals) is moved onto the stored text, so
    ``text[offset:offset + length]`` still shows what the evidence pointed at."""
    language = rec.get("language")
    text = rec.get("text")
    red = redactor.text(text, language) if text else Redacted(text or "")
    doc_id = _redact_id(rec["doc_id"], rec["original"], redactor)
    original = {
        # the text's own cell is the text: redacted once (a chat's turns arrive as a list and are searched)
        c: red.text if text and v == text and column_kind(c) is None else redactor.cell(c, v, language)
        for c, v in (rec["original"] or {}).items()
    }
    return rec | {
        "text": red.text if text else text,
        "doc_id": doc_id,
        "original": original,
        "segments": {c: redactor.cell(c, v, language) for c, v in rec["segments"].items()} if rec["segments"] else None,
        "warnings": [redactor.string(w, language) for w in rec["warnings"]] if rec["warnings"] else rec["warnings"],
        "result": _redact_result(rec["result"], red, redactor, language) | {"id": doc_id},
    }


def _redact_id(doc_id: str, original: dict[str, Any] | None, redactor: Redactor) -> str:
    """The row's id, redacted like the cell it came from (an "email" id column is personal data as a whole)."""
    for column, v in (original or {}).items():
        if v == doc_id:
            return str(redactor.cell(column, v))[:128]
    return redactor.string(doc_id)[:128]


def _redact_result(res: dict[str, Any], red: Redacted, redactor: Redactor, language: str | None) -> dict[str, Any]:
    res = copy.deepcopy(res)

    def move(ev: dict[str, Any]) -> None:
        ev["offset"], ev["length"] = red.span(ev["offset"], ev["length"])

    if "error" in res:
        res["error"] = {k: redactor.string(v, language) for k, v in res["error"].items()}
    if "warnings" in res:
        res["warnings"] = [redactor.string(w, language) for w in res["warnings"]]
    for s in res.get("sentences", []):
        move(s)
        s["text"] = red.text[s["offset"] : s["offset"] + s["length"]]
    for item in res.get("topics", []) + res.get("touchpoints", []):
        for ev in item.get("evidence", []):
            move(ev)
    chat = res.get("chat")
    if chat:
        for turn in chat.get("turns", []):
            move(turn)
            turn["speaker"] = redactor.string(turn["speaker"], language)
        for ev in chat.get("escalation_evidence", []):
            move(ev)
        for sig in chat.get("effort_signals", []):
            move(sig["evidence"])
    if res.get("text") is not None:
        res["text"] = red.text
    return res


def unstorable(rec: dict[str, Any]) -> dict[str, Any]:
    """The row as a per-row error when the database refused one of its values (nothing of it is kept)."""
    doc_id = str(rec.get("doc_id") or f"row-{rec['row'] + 1}")[:128]
    error = DocumentError(id=doc_id, error={"code": "UnstorableRow", "message": "a value of this row could not be stored"})
    return record(PreparedRow(rec["row"], error, {}, []), error, None)


# ------------------------------------------------------------------- reading
#: what topic discovery reads of each row
DISCOVERY_COLUMNS = ("row", "ok", "text", "language", "topics", "embedding")
#: what the KPIs read of each row (no result JSON, no embeddings)
FACT_COLUMNS = ("row", "ok", "date", "language", "channel", "segments", "nps", "csat", "ces", "sentiment",
                "positive", "negative", "detractor", "topics", "touchpoints")
#: what a text search or a discovered-topic lookup reads of each row
SEARCH_COLUMNS = ("row", "discovered", "text")
#: what the exports read of each row
EXPORT_COLUMNS = ("row", "ok", "channel", "original", "result", "warnings", "discovered")


def embedding(r: Any) -> np.ndarray:
    """The stored document embedding of an analysed row (``r.embedding`` is not None)."""
    return np.frombuffer(r.embedding, dtype=_EMBEDDING_DTYPE)


def facts(r: Any) -> RowFacts:
    """The slim per-row facts :mod:`voce.service.analytics` aggregates, from a row read with ``FACT_COLUMNS``."""
    return RowFacts(
        row=r.row, date=r.date, language=r.language, channel=r.channel, segments=r.segments or {},
        nps=r.nps, csat=r.csat, ces=r.ces, sentiment=r.sentiment, positive=r.positive or 0.0,
        negative=r.negative or 0.0, detractor=r.detractor,
        topics=tuple((t[0], t[1]) for t in (r.topics or [])), touchpoints=tuple(r.touchpoints or ()), ok=r.ok,
    )


def load_facts(store: BatchStore, batch_id: str) -> list[RowFacts]:
    """The facts of every stored row of a batch, in upload order."""
    return [facts(r) for r in store.iter_rows(batch_id, page=5000, columns=FACT_COLUMNS)]


# ------------------------------------------------------------------- exports
#: flat columns appended after the original ones (prefixed so they never clash with a customer's column).
#: ``voce_channel`` is where the feedback was collected (the stored channel: a touchpoint id, else the value
#: lower-cased); ``voce_touchpoints`` what the text is about, primary first, and ``voce_primary_touchpoint`` that one.
FLAT_COLUMNS = [
    "voce_row", "voce_id", "voce_status", "voce_language", "voce_sentiment", "voce_positive", "voce_neutral",
    "voce_negative", "voce_detractor_probability", "voce_topics", "voce_channel", "voce_touchpoints",
    "voce_primary_touchpoint", "voce_discovered_topic", "voce_warnings", "voce_error",
]


def _touchpoints(res: dict[str, Any]) -> list[dict[str, Any]]:
    """A stored result's touchpoints, the primary one first (results stored before touchpoints had a primary keep
    their order)."""
    return sorted(res.get("touchpoints", []), key=lambda t: not t.get("primary", False))


def _primary_touchpoint(res: dict[str, Any]) -> str | None:
    return next((t["id"] for t in res.get("touchpoints", []) if t.get("primary")), None)


def export_item(r: Any) -> dict[str, Any]:
    """One JSONL export line: the ``/v1/analyze`` object (or its error) plus the original columns."""
    item = {"row": r.row, **r.result, "columns": r.original}
    if r.warnings:
        item["input_warnings"] = r.warnings
    if r.discovered is not None:
        item["discovered_topic"] = r.discovered
    return item


def flat_values(r: Any) -> list[Any]:
    """The values under ``FLAT_COLUMNS`` for one row (CSV and XLSX exports)."""
    res = r.result
    warnings = list(res.get("warnings", [])) + list(r.warnings or [])
    values: dict[str, Any] = {
        "voce_row": r.row, "voce_id": res.get("id"), "voce_channel": r.channel, "voce_warnings": "; ".join(warnings),
    }
    if not r.ok:
        err = res.get("error", {})
        values |= {"voce_status": "error", "voce_error": f"{err.get('code')}: {err.get('message')}"}
    else:
        scores = res["sentiment"]["scores"]
        values |= {
            "voce_status": "ok", "voce_language": res["language"], "voce_sentiment": res["sentiment"]["label"],
            "voce_positive": scores["positive"], "voce_neutral": scores["neutral"], "voce_negative": scores["negative"],
            "voce_detractor_probability": res["detractor"]["probability"],
            "voce_topics": "; ".join(f"{t['id']} ({t['sentiment']['label']})" for t in res.get("topics", [])),
            "voce_touchpoints": "; ".join(t["id"] for t in _touchpoints(res)),
            "voce_primary_touchpoint": _primary_touchpoint(res), "voce_discovered_topic": r.discovered,
        }
    return [values.get(c) for c in FLAT_COLUMNS]


# ------------------------------------------------------------------- the API's row
class RowItem(BaseModel):
    row: int
    id: str
    ok: bool
    text: str | None
    language: str | None
    date: dt.date | None
    nps: int | None
    channel: str | None = Field(description="Where the feedback was collected (a touchpoint id, else the value).")
    sentiment: str | None
    detractor: float | None
    discovered: int | None
    topics: list[dict[str, Any]]
    touchpoints: list[dict[str, Any]] = Field(description="What the text is about, the primary one first.")
    sentences: list[dict[str, Any]]
    error: dict[str, str] | None
    warnings: list[str]
    columns: dict[str, Any]


def row_item(r: Any) -> RowItem:
    """A full stored row (ORM object) as the comment list shows it: labels with their evidence spans."""
    res = r.result
    return RowItem(
        row=r.row, id=r.doc_id, ok=r.ok, text=r.text, language=r.language, date=r.date, nps=r.nps,
        channel=r.channel, sentiment=r.sentiment, detractor=r.detractor, discovered=r.discovered,
        topics=[{"id": t["id"], "sentiment": t["sentiment"]["label"], "score": t["score"], "evidence": t["evidence"]}
                for t in res.get("topics", [])],
        touchpoints=[
            {"id": t["id"], "score": t["score"], "evidence": t["evidence"], "primary": t.get("primary", False),
             "from_channel": t.get("from_channel", False)}
            for t in _touchpoints(res)
        ],
        sentences=[{"offset": x["offset"], "length": x["length"], "sentiment": x["sentiment"]["label"]}
                   for x in res.get("sentences", [])],
        error=res.get("error"), warnings=list(res.get("warnings", [])) + list(r.warnings or []),
        columns=r.original or {},
    )
