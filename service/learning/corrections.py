"""Analysts' corrections of batch rows: stored per tenant, applied to what the dashboard counts, exported for training.

A correction records only what the analyst changed on one row (its sentiment, topics added or removed, touchpoints
added or removed, the detractor flag) together with the row's prediction at that moment, the author (the API key's
name), the time and the model and taxonomy versions it corrects.  A row's *corrected* value is its prediction with
its active corrections applied in the order they were made; reverting a correction keeps it in the history and
stops applying it.

Every call goes through a :class:`~voce.service.batches.service.BatchService` scoped to the caller's tenant, so
another tenant's batch (and its corrections) is not found.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import json
import re
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator
from sqlalchemy import func, select, update
from sqlalchemy.orm import sessionmaker

from voce.service.analytics import RowFacts
from voce.service.batches.store import BatchStore
from voce.service.db import Batch, utcnow
from voce.service.errors import InvalidInput, NotFound
from voce.service.learning.tables import Correction

if TYPE_CHECKING:
    from voce.models.taxonomy import Taxonomy
    from voce.service.batches.service import BatchService

Sentiment = Literal["positive", "neutral", "negative", "mixed"]
#: a topic or touchpoint id as taxonomies write them
EntryId = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,63}$")]
#: bounds of one correction (a row has a handful of topics; more than this is not a correction)
MAX_IDS = 32
MAX_NOTE_CHARS = 500
#: a predicted detractor probability at or above this is shown (and exported) as "detractor"
DETRACTOR_CUT = 0.5
#: what a corrected sentiment does to the calibrated probabilities the KPIs read
_SENTIMENT_PROBS: dict[str, tuple[float, float]] = {
    "positive": (1.0, 0.0), "negative": (0.0, 1.0), "neutral": (0.0, 0.0), "mixed": (0.5, 0.5),
}


class CorrectionError(InvalidInput):
    """A correction that cannot be applied to its row (422); ``details`` carry a code and parameters the page
    translates."""

    def __init__(self, message: str, code: str, **params: Any) -> None:
        super().__init__(message, details=[{"code": code, **params}])


class CorrectionNotFound(NotFound):
    """No such row, or no active correction with this id on it (404)."""


# ------------------------------------------------------------------ shapes
class TopicFix(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: EntryId
    sentiment: Sentiment | None = Field(
        default=None, description="The topic's polarity in this comment; omitted: the row's (corrected) sentiment."
    )


class CorrectionIn(BaseModel):
    """What an analyst changes on one row; at least one field."""

    model_config = ConfigDict(extra="forbid")

    sentiment: Sentiment | None = None
    topics_add: list[TopicFix] = Field(default_factory=list, max_length=MAX_IDS,
                                       description="Topics to add (or whose polarity to change).")
    topics_remove: list[EntryId] = Field(default_factory=list, max_length=MAX_IDS)
    touchpoints_add: list[EntryId] = Field(default_factory=list, max_length=MAX_IDS)
    touchpoints_remove: list[EntryId] = Field(default_factory=list, max_length=MAX_IDS)
    detractor: bool | None = Field(default=None, description="Whether the customer is a detractor (NPS 0-6).")
    note: str | None = Field(default=None, max_length=MAX_NOTE_CHARS)

    @model_validator(mode="after")
    def _something_changes(self) -> CorrectionIn:
        if not self.change():
            raise ValueError("a correction needs at least one of sentiment, topics_add, topics_remove, "
                             "touchpoints_add, touchpoints_remove, detractor")
        added = {t.id for t in self.topics_add}
        if len(added) != len(self.topics_add):
            raise ValueError("topics_add names a topic twice")
        if added & set(self.topics_remove):
            raise ValueError(f"topics both added and removed: {sorted(added & set(self.topics_remove))}")
        if set(self.touchpoints_add) & set(self.touchpoints_remove):
            raise ValueError("touchpoints both added and removed: "
                             f"{sorted(set(self.touchpoints_add) & set(self.touchpoints_remove))}")
        return self

    def change(self) -> dict[str, Any]:
        """The stored change: only the fields that change something."""
        out: dict[str, Any] = {}
        if self.sentiment is not None:
            out["sentiment"] = self.sentiment
        if self.topics_add:
            out["topics_add"] = [t.model_dump(exclude_none=True) for t in self.topics_add]
        for name in ("topics_remove", "touchpoints_add", "touchpoints_remove"):
            values = list(dict.fromkeys(getattr(self, name)))
            if values:
                out[name] = values
        if self.detractor is not None:
            out["detractor"] = self.detractor
        return out


class TopicLabel(BaseModel):
    id: str
    sentiment: str


class RowLabels(BaseModel):
    """The values an analyst can correct, as predicted or as corrected."""

    sentiment: str | None
    topics: list[TopicLabel]
    touchpoints: list[str]
    detractor: bool | None = Field(description=f"P(detractor) >= {DETRACTOR_CUT}, or the analyst's flag.")
    detractor_probability: float | None = Field(description="The model's probability (the flag's source).")


class CorrectionOut(BaseModel):
    id: int
    batch_id: str
    row: int
    author: str
    created_at: dt.datetime
    model_version: str | None
    taxonomy_version: str | None
    original: RowLabels
    change: dict[str, Any]
    note: str | None
    active: bool
    reverted_at: dt.datetime | None
    reverted_by: str | None


class RowCorrection(BaseModel):
    """One row's prediction and corrected value side by side, with the corrections between them."""

    row: int
    original: RowLabels
    corrected: RowLabels
    corrections: list[CorrectionOut]


class BatchCorrections(BaseModel):
    batch_id: str
    rows: list[RowCorrection] = Field(description="The rows with at least one correction (active or reverted).")


# ------------------------------------------------------------------ applying
def _labels_of(sentiment: str | None, topics: Iterable[Any], touchpoints: Iterable[str], det: float | None) -> RowLabels:
    return RowLabels(
        sentiment=sentiment, topics=[TopicLabel(id=t[0], sentiment=t[1]) for t in topics],
        touchpoints=list(touchpoints), detractor=None if det is None else det >= DETRACTOR_CUT,
        detractor_probability=det,
    )


def apply(labels: RowLabels, change: dict[str, Any]) -> RowLabels:
    """``labels`` with one correction's ``change`` applied."""
    out = labels.model_copy(deep=True)
    if "sentiment" in change:
        out.sentiment = change["sentiment"]
    removed = set(change.get("topics_remove", []))
    topics = [t for t in out.topics if t.id not in removed]
    for fix in change.get("topics_add", []):
        polarity = fix.get("sentiment") or _topic_polarity(out.sentiment)
        found = next((t for t in topics if t.id == fix["id"]), None)
        if found is not None:
            found.sentiment = polarity
        else:
            topics.append(TopicLabel(id=fix["id"], sentiment=polarity))
    out.topics = topics
    gone = set(change.get("touchpoints_remove", []))
    out.touchpoints = [t for t in out.touchpoints if t not in gone]
    out.touchpoints += [t for t in change.get("touchpoints_add", []) if t not in out.touchpoints]
    if "detractor" in change:
        out.detractor = bool(change["detractor"])
    return out


def _topic_polarity(sentiment: str | None) -> str:
    return sentiment if sentiment in _SENTIMENT_PROBS else "neutral"


def corrected(original: RowLabels, changes: Iterable[dict[str, Any]]) -> RowLabels:
    out = original
    for change in changes:
        out = apply(out, change)
    return out


def corrected_facts(facts: list[RowFacts], changes: dict[int, list[dict[str, Any]]]) -> list[RowFacts]:
    """The KPIs' row facts with each row's active corrections applied (rows without any are the same objects)."""
    if not changes:
        return facts
    out = []
    for f in facts:
        row_changes = changes.get(f.row)
        if not row_changes or not f.ok:
            out.append(f)
            continue
        fixed = corrected(_labels_of(f.sentiment, f.topics, f.touchpoints, f.detractor), row_changes)
        update: dict[str, Any] = {
            "topics": tuple((t.id, t.sentiment) for t in fixed.topics), "touchpoints": tuple(fixed.touchpoints),
        }
        if fixed.sentiment != f.sentiment and fixed.sentiment is not None:
            update["sentiment"] = fixed.sentiment
            update["positive"], update["negative"] = _SENTIMENT_PROBS[fixed.sentiment]
        if any("detractor" in c for c in row_changes):
            update["detractor"] = 1.0 if fixed.detractor else 0.0
        out.append(dataclasses.replace(f, **update))
    return out


# ------------------------------------------------------------------ storage
def _out(c: Correction) -> CorrectionOut:
    return CorrectionOut(
        id=c.id, batch_id=c.batch_id, row=c.row, author=c.author, created_at=_utc(c.created_at),
        model_version=c.model_version, taxonomy_version=c.taxonomy_version, original=RowLabels.model_validate(c.original),
        change=c.change, note=c.note, active=c.reverted_at is None, reverted_at=_utc(c.reverted_at),
        reverted_by=c.reverted_by,
    )


def _utc(d: dt.datetime | None) -> Any:
    return d.replace(tzinfo=dt.UTC) if d is not None and d.tzinfo is None else d


def active_changes(sessions: sessionmaker, batch_id: str) -> dict[int, list[dict[str, Any]]]:
    """Row -> the changes of its active corrections, oldest first."""
    out: dict[int, list[dict[str, Any]]] = {}
    with sessions() as s:
        q = (select(Correction.row, Correction.change)
             .where(Correction.batch_id == batch_id, Correction.reverted_at.is_(None)).order_by(Correction.id))
        for row, change in s.execute(q):
            out.setdefault(row, []).append(change)
    return out


def stamp(sessions: sessionmaker, batch_id: str) -> tuple[Any, ...]:
    """Changes whenever a correction of the batch is made or reverted (the KPI facts cache key)."""
    with sessions() as s:
        q = select(func.count(Correction.id), func.max(Correction.id), func.max(Correction.reverted_at))
        return tuple(s.execute(q.where(Correction.batch_id == batch_id)).one())


def _row_labels(r: Any) -> RowLabels:
    """A stored row's prediction as correctable labels."""
    return _labels_of(r.sentiment, r.topics or [], r.touchpoints or [], r.detractor)


class CorrectionService:
    """Create, list and revert corrections of one tenant's batches (``batches`` is scoped to that tenant)."""

    def __init__(self, batches: BatchService, taxonomy_of: Callable[[Batch], Taxonomy]) -> None:
        self.batches = batches
        self.sessions = batches.store.sessions
        # the taxonomy a batch was scored with: what a correction's topic and touchpoint ids must belong to
        self.taxonomy_of = taxonomy_of

    def _row(self, batch_id: str, row: int) -> tuple[Batch, Any]:
        b = self.batches.get(batch_id)  # another tenant's batch: BatchNotFound (404)
        found = self.batches.store.rows_by_index(batch_id, [row]).get(row)
        if found is None:
            raise CorrectionNotFound(f"batch {batch_id!r} has no row {row}")
        return b, found

    def create(self, batch_id: str, row: int, body: CorrectionIn, author: str) -> RowCorrection:
        b, r = self._row(batch_id, row)
        if not r.ok:
            raise CorrectionError(f"row {row} could not be analysed, so it has no prediction to correct",
                                  "correction.error_row", row=row)
        taxonomy = self.taxonomy_of(b)
        current = corrected(_row_labels(r), active_changes(self.sessions, batch_id).get(row, []))
        self._validate(body, current, taxonomy)
        with self.sessions() as s, s.begin():
            s.add(Correction(
                tenant=b.tenant, batch_id=batch_id, row=row, author=author[:128], created_at=utcnow(),
                model_version=b.model_version, taxonomy_version=b.taxonomy_version,
                original=_row_labels(r).model_dump(mode="json"), change=body.change(), note=body.note,
            ))
        return self.row(batch_id, row)

    @staticmethod
    def _validate(body: CorrectionIn, current: RowLabels, taxonomy: Taxonomy) -> None:
        topics, touchpoints = set(taxonomy.topics.ids), set(taxonomy.touchpoints.ids)
        on_row = {t.id for t in current.topics}
        for t in body.topics_add:
            if t.id not in topics:
                raise CorrectionError(f"topic {t.id!r} is not in the batch's taxonomy ({taxonomy.version})",
                                      "correction.unknown_topic", id=t.id)
        for tid in body.topics_remove:
            if tid not in on_row:
                raise CorrectionError(f"topic {tid!r} is not on this row", "correction.topic_not_on_row", id=tid)
        for tid in body.touchpoints_add:
            if tid not in touchpoints:
                raise CorrectionError(f"touchpoint {tid!r} is not in the batch's taxonomy ({taxonomy.version})",
                                      "correction.unknown_touchpoint", id=tid)
        for tid in body.touchpoints_remove:
            if tid not in current.touchpoints:
                raise CorrectionError(f"touchpoint {tid!r} is not on this row", "correction.touchpoint_not_on_row",
                                      id=tid)

    def row(self, batch_id: str, row: int) -> RowCorrection:
        """One row: its prediction, its corrected value and every correction made to it."""
        _, r = self._row(batch_id, row)
        with self.sessions() as s:
            found = list(s.scalars(select(Correction).where(Correction.batch_id == batch_id, Correction.row == row)
                                   .order_by(Correction.id)))
        original = _row_labels(r)
        changes = [c.change for c in found if c.reverted_at is None]
        return RowCorrection(row=row, original=original, corrected=corrected(original, changes),
                             corrections=[_out(c) for c in found])

    def batch(self, batch_id: str) -> BatchCorrections:
        """Every corrected row of a batch (what the comment drill-down shows side by side)."""
        self.batches.get(batch_id)
        return BatchCorrections(batch_id=batch_id, rows=list(corrected_rows(self.batches.store, batch_id).values()))

    def revert(self, batch_id: str, row: int, correction_id: int, author: str) -> RowCorrection:
        """Stop applying one correction (kept in the history, with who reverted it and when)."""
        self._row(batch_id, row)
        with self.sessions() as s, s.begin():
            res = s.execute(
                update(Correction)
                .where(Correction.id == correction_id, Correction.batch_id == batch_id, Correction.row == row,
                       Correction.reverted_at.is_(None))
                .values(reverted_at=utcnow(), reverted_by=author[:128])
            )
            if res.rowcount != 1:  # type: ignore[attr-defined]
                raise CorrectionNotFound(f"row {row} of batch {batch_id!r} has no active correction {correction_id}")
        return self.row(batch_id, row)


def corrected_rows(store: BatchStore, batch_id: str, active_only: bool = False) -> dict[int, RowCorrection]:
    """Row -> its prediction, corrected value and corrections, for every row of the batch with a correction
    (``active_only``: with an active one); the caller has checked the batch is the tenant's."""
    with store.sessions() as s:
        q = select(Correction).where(Correction.batch_id == batch_id)
        found = list(s.scalars(q.order_by(Correction.id)))
    by_row: dict[int, list[Correction]] = {}
    for c in found:
        by_row.setdefault(c.row, []).append(c)
    if active_only:
        by_row = {r: cs for r, cs in by_row.items() if any(c.reverted_at is None for c in cs)}
    stored = store.rows_by_index(batch_id, sorted(by_row))
    out = {}
    for row, cs in sorted(by_row.items()):
        if row not in stored:
            continue
        original = _row_labels(stored[row])
        changes = [c.change for c in cs if c.reverted_at is None]
        out[row] = RowCorrection(row=row, original=original, corrected=corrected(original, changes),
                                 corrections=[_out(c) for c in cs])
    return out


# ------------------------------------------------------------------ training export
#: the columns :func:`voce.data.custom.load_custom_file` reads (plus provenance it ignores)
EXPORT_FIELDS = ("id", "text", "language", "sentiment", "topics", "detractor", "touchpoints", "batch_id", "row",
                 "model_version", "corrected_by")


def training_records(sessions: sessionmaker, *, tenant: str | None = None,
                     batch_id: str | None = None) -> Iterator[dict[str, Any]]:
    """One custom-data record per corrected row (its corrected labels), for ``voce train`` (:mod:`voce.data.custom`).

    Only what the analyst looked at becomes a label: the sentiment when corrected or confirmed by a correction of
    the row, the row's corrected topics (as ``{id: polarity}``; an analyst who corrected topics has looked at all of
    them) only when a correction touched topics, the detractor flag only when corrected.  The text is the stored
    (redacted) text; chats without a single text are skipped.
    """
    with sessions() as s:
        q = select(Correction).where(Correction.reverted_at.is_(None))
        if tenant is not None:
            q = q.where(Correction.tenant == tenant)
        if batch_id is not None:
            q = q.where(Correction.batch_id == batch_id)
        found = list(s.scalars(q.order_by(Correction.batch_id, Correction.row, Correction.id)))
    by_row: dict[tuple[str, int], list[Correction]] = {}
    for c in found:
        by_row.setdefault((c.batch_id, c.row), []).append(c)
    store_rows: dict[str, dict[int, Any]] = {}
    store = BatchStore(sessions)
    for (bid, row), cs in by_row.items():
        if bid not in store_rows:
            store_rows[bid] = store.rows_by_index(bid, sorted(r for b, r in by_row if b == bid))
        r = store_rows[bid].get(row)
        if r is None or not r.ok or not (r.text or "").strip():
            continue
        fixed = corrected(_row_labels(r), [c.change for c in cs])
        touched = set().union(*(c.change.keys() for c in cs))
        rec: dict[str, Any] = {
            "id": f"{bid}:{row}", "text": r.text, "language": r.language if r.language in ("it", "en") else "",
            "sentiment": fixed.sentiment if "sentiment" in touched else "",
            "topics": ({t.id: t.sentiment for t in fixed.topics} or "none")
            if touched & {"topics_add", "topics_remove"} else "",
            "detractor": ("1" if fixed.detractor else "0") if "detractor" in touched else "",
            "touchpoints": ";".join(fixed.touchpoints) if touched & {"touchpoints_add", "touchpoints_remove"} else "",
            "batch_id": bid, "row": row, "model_version": cs[-1].model_version or "",
            "corrected_by": ", ".join(dict.fromkeys(c.author for c in cs)),
        }
        if not (rec["sentiment"] or rec["topics"] or rec["detractor"]):
            continue  # touchpoints only: the training format has no touchpoint labels yet
        yield rec


def write_training_file(records: Iterable[dict[str, Any]], out: Path) -> int:
    """Write records as JSON Lines (``.jsonl``) or CSV (any other suffix); returns how many were written."""
    import csv

    n = 0
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", encoding="utf-8", newline="") as fh:
        if out.suffix.lower() in (".jsonl", ".ndjson", ".json"):
            for rec in records:
                line = {k: v for k, v in rec.items() if v != ""}
                fh.write(json.dumps(line, ensure_ascii=False) + "\n")
                n += 1
            return n
        writer = csv.DictWriter(fh, fieldnames=list(EXPORT_FIELDS))
        writer.writeheader()
        for rec in records:
            writer.writerow({k: json.dumps(v, ensure_ascii=False) if isinstance(v, dict) else v for k, v in rec.items()})
            n += 1
    return n


_AUTHOR_OK = re.compile(r"[^\w .@:/+-]")


def author_name(name: str | None, fallback: str) -> str:
    """What a correction or taxonomy version records as its author: the key's name, else ``fallback``."""
    clean = _AUTHOR_OK.sub("", (name or "").strip())[:128]
    return clean or fallback
