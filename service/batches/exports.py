"""Batch results as files, two ways.

* For scripts (``/results``): JSONL, CSV or XLSX, the ``/v1/analyze`` object of every row plus its original
  columns, English ids, commas.
* For people (``/export``, :func:`people_export`): CSV or XLSX of any selection the dashboard shows (its filters,
  a comments list's selector), labelled in the page's language with the ids beside, a column per topic and
  touchpoint, numbers as numbers; a CSV in the upload's own dialect (``;``, BOM, decimal commas for Italian Excel);
  an XLSX with a frozen, filterable header and a summary sheet of the same rows' KPIs.  :func:`columns` is the one
  place a column is added.

Both stream page by page; XLSX (a zip) is written to a temporary file with openpyxl's write-only mode, so memory
stays flat for 100,000 rows too.  What a row stores is :mod:`.rows`'s business; this module knows the file
formats (and how to keep a spreadsheet from running customer text as a formula).
"""
from __future__ import annotations

import codecs
import csv
import datetime as dt
import io
import json
import operator
import os
import re
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from voce.service.analytics import Filters, KpiReport, RowFacts, apply_filters, batch_kpis
from voce.service.batches import rows
from voce.service.batches.store import BatchStore
from voce.service.db import Batch
from voce.service.uploads import ColumnMapping, UploadError, open_table

if TYPE_CHECKING:
    from voce.models.taxonomy import Taxonomy
    from voce.service.batches.service import BatchService


def original_columns(b: Batch) -> list[str]:
    """The upload's own columns, in file order: as registered (the file itself is deleted once the batch is done),
    else read from the file, else the mapped ones."""
    if b.columns:
        return list(b.columns)
    try:
        return open_table(Path(b.file_path), b.file_format).columns  # type: ignore[arg-type]
    except (UploadError, OSError):
        return ColumnMapping.model_validate(b.mapping).columns()


def _rows(store: BatchStore, batch_id: str) -> Iterator[Any]:
    return store.iter_rows(batch_id, columns=rows.EXPORT_COLUMNS)


def jsonl_lines(store: BatchStore, batch_id: str) -> Iterator[bytes]:
    from voce.service.learning.corrections import corrected_rows

    fixes = corrected_rows(store, batch_id, active_only=True)  # analysts' corrections, beside the prediction
    buf: list[str] = []
    for r in _rows(store, batch_id):
        item = rows.export_item(r)
        if r.row in fixes:
            fix = fixes[r.row]
            item["correction"] = fix.corrected.model_dump(mode="json") | {
                "by": list(dict.fromkeys(c.author for c in fix.corrections if c.active)),
            }
        buf.append(json.dumps(item, ensure_ascii=False))
        if len(buf) >= 500:
            yield ("\n".join(buf) + "\n").encode("utf-8")
            buf = []
    if buf:
        yield ("\n".join(buf) + "\n").encode("utf-8")


def csv_chunks(store: BatchStore, batch_id: str, columns: list[str]) -> Iterator[bytes]:
    buf = io.StringIO()
    buf.write("\ufeff")  # so Excel reads accented Italian correctly
    w = csv.writer(buf)
    w.writerow([_csv_safe(c) for c in columns] + rows.FLAT_COLUMNS)  # a column name is customer data too
    for n, r in enumerate(_rows(store, batch_id), start=1):
        original = r.original or {}
        w.writerow([_csv_safe(_plain(original.get(c))) for c in columns] + [_csv_safe(v) for v in rows.flat_values(r)])
        if n % 500 == 0:
            yield buf.getvalue().encode("utf-8")
            buf.seek(0)
            buf.truncate()
    yield buf.getvalue().encode("utf-8")


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _csv_safe(v: Any) -> Any:
    """A text cell that a spreadsheet would run as a formula gets a leading apostrophe (OWASP CSV injection);
    numbers such as "-3" stay as they are."""
    if isinstance(v, str) and v.startswith(_FORMULA_START):
        try:
            float(v)
        except ValueError:
            return "'" + v
    return v


def _plain(v: Any) -> Any:
    if isinstance(v, list | dict):
        return json.dumps(v, ensure_ascii=False)
    return v


def write_xlsx(store: BatchStore, batch_id: str, columns: list[str], folder: Path) -> Path:
    import openpyxl

    folder.mkdir(parents=True, exist_ok=True)
    name = folder / f"{batch_id}-{uuid.uuid4().hex[:8]}.xlsx"
    wb = openpyxl.Workbook(write_only=True)
    ws = wb.create_sheet("results")
    ws.append([_xlsx_cell(ws, c) for c in columns] + rows.FLAT_COLUMNS)  # names as text cells, like values
    for r in _rows(store, batch_id):
        original = r.original or {}
        ws.append(
            [_xlsx_cell(ws, _plain(original.get(c))) for c in columns] + [_xlsx_cell(ws, v) for v in rows.flat_values(r)]
        )
    wb.save(name)
    os.chmod(name, 0o600)  # stored results: the service's user only, like the uploads
    return name


def _xlsx_cell(ws: Any, v: Any) -> Any:
    """Text always as a text cell (customer text starting with "=" must never become a live formula);
    openpyxl refuses control characters; Excel caps a cell at 32,767 characters."""
    if not isinstance(v, str):
        return v
    from openpyxl.cell import WriteOnlyCell

    v = "".join(ch for ch in v if ch in "\t\n\r" or ord(ch) >= 32)[:32_000]
    if not v.startswith("="):
        return v
    cell = WriteOnlyCell(ws, value=v)
    cell.data_type = "s"
    return cell


# =================================================================== exports people open (CSV for Excel, XLSX)
# ``/results`` above is the scripts' format (ids, commas, one cell per list).  What follows is the analyst's:
# labels in the page's language with the ids beside them, one column per topic and touchpoint, numbers as
# numbers, the upload's own CSV dialect, an XLSX with a summary sheet, and any selection the dashboard can show.

ExportLanguage = Literal["it", "en"]
CsvEncoding = Literal["utf-8", "cp1252", "utf-16"]
#: the delimiters an upload can have (``uploads._dialect`` sniffs these), by the name a query string can carry
DELIMITERS: dict[str, str] = {"comma": ",", "semicolon": ";", "tab": "\t", "pipe": "|"}
#: a row set past this is read by streaming every row and keeping the selected ones; below it, by row index
_BY_INDEX_MAX = 2_000
_PAGE = 500

#: every text of an export file, in both languages of the page (the file is read without the page's i18n.js)
TEXT: dict[str, dict[str, str]] = {
    "it": {
        "row": "Riga", "id": "ID", "status": "Stato", "status.ok": "analizzato", "status.error": "non analizzato",
        "language": "Lingua", "sentiment": "Sentiment", "sentiment_id": "Sentiment (id)",
        "positive": "Positivo", "neutral": "Neutro", "negative": "Negativo", "mixed": "Misto",
        "p_positive": "Prob. positivo", "p_neutral": "Prob. neutro", "p_negative": "Prob. negativo",
        "detractor": "Prob. detrattore", "nps": "Voto NPS", "csat": "CSAT", "ces": "CES", "date": "Data",
        "channel": "Canale", "channel_id": "Canale (id)", "segment": "Segmento: {name}",
        "topics": "Temi", "topic_ids": "Temi (id)", "topic": "Tema: {name}",
        "primary_touchpoint": "Punto di contatto principale", "primary_touchpoint_id": "Punto di contatto principale (id)",
        "touchpoints": "Punti di contatto", "touchpoint_ids": "Punti di contatto (id)",
        "touchpoint": "Punto di contatto: {name}",
        "theme": "Tema scoperto", "theme_id": "Tema scoperto (id)", "theme.none": "non classificato",
        "evidence": "Evidenza", "warnings": "Avvisi", "error": "Errore",
        "sheet.rows": "Commenti", "sheet.summary": "Riepilogo",
        "summary.title": "Riepilogo dell'esportazione", "summary.batch": "Analisi", "summary.exported": "Esportata il",
        "summary.filters": "Filtri", "summary.filters.none": "nessuno (tutti i commenti)",
        "summary.rows": "Righe", "summary.analysed": "Analizzate", "summary.metric": "Indicatore",
        "summary.value": "Valore", "summary.ci_low": "IC 95% min", "summary.ci_high": "IC 95% max",
        "summary.n": "Risposte", "summary.share": "Quota", "summary.count": "Commenti",
        "summary.nps": "NPS", "summary.nps_estimate": "Stima detrattori (senza voto)", "summary.csat": "CSAT (% 4-5)",
        "summary.ces": "CES (media)", "summary.net": "Sentiment netto", "summary.sentiment": "Sentiment",
        "summary.topics": "Temi principali", "summary.touchpoints": "Punti di contatto principali",
        "summary.name": "Nome", "summary.impact": "Impatto sull'NPS", "summary.significant": "Significativo",
        "summary.driver": "Driver", "summary.unclassified": "non altrimenti classificati",
        "yes": "sì", "no": "no",
        "filter.topic": "Tema", "filter.touchpoint": "Punto di contatto", "filter.channel": "Canale",
        "filter.language": "Lingua", "filter.period": "Periodo", "filter.date_from": "Dal", "filter.date_to": "Al",
        "filter.q": "Ricerca",
        "corrected": "Corretto", "corrected_sentiment": "Sentiment corretto",
        "corrected_sentiment_id": "Sentiment corretto (id)", "corrected_topics": "Temi corretti",
        "corrected_topic_ids": "Temi corretti (id)", "corrected_touchpoints": "Punti di contatto corretti",
        "corrected_touchpoint_ids": "Punti di contatto corretti (id)", "corrected_detractor": "Detrattore (corretto)",
        "corrected_by": "Corretto da",
    },
    "en": {
        "row": "Row", "id": "ID", "status": "Status", "status.ok": "analysed", "status.error": "not analysed",
        "language": "Language", "sentiment": "Sentiment", "sentiment_id": "Sentiment (id)",
        "positive": "Positive", "neutral": "Neutral", "negative": "Negative", "mixed": "Mixed",
        "p_positive": "P(positive)", "p_neutral": "P(neutral)", "p_negative": "P(negative)",
        "detractor": "P(detractor)", "nps": "NPS score", "csat": "CSAT", "ces": "CES", "date": "Date",
        "channel": "Channel", "channel_id": "Channel (id)", "segment": "Segment: {name}",
        "topics": "Topics", "topic_ids": "Topics (id)", "topic": "Topic: {name}",
        "primary_touchpoint": "Main touchpoint", "primary_touchpoint_id": "Main touchpoint (id)",
        "touchpoints": "Touchpoints", "touchpoint_ids": "Touchpoints (id)", "touchpoint": "Touchpoint: {name}",
        "theme": "Discovered theme", "theme_id": "Discovered theme (id)", "theme.none": "not classified",
        "evidence": "Evidence", "warnings": "Warnings", "error": "Error",
        "sheet.rows": "Comments", "sheet.summary": "Summary",
        "summary.title": "Export summary", "summary.batch": "Analysis", "summary.exported": "Exported at",
        "summary.filters": "Filters", "summary.filters.none": "none (every comment)",
        "summary.rows": "Rows", "summary.analysed": "Analysed", "summary.metric": "Metric",
        "summary.value": "Value", "summary.ci_low": "95% CI low", "summary.ci_high": "95% CI high",
        "summary.n": "Answers", "summary.share": "Share", "summary.count": "Comments",
        "summary.nps": "NPS", "summary.nps_estimate": "Detractor estimate (no score)", "summary.csat": "CSAT (% 4-5)",
        "summary.ces": "CES (mean)", "summary.net": "Net sentiment", "summary.sentiment": "Sentiment",
        "summary.topics": "Top topics", "summary.touchpoints": "Top touchpoints",
        "summary.name": "Name", "summary.impact": "NPS impact", "summary.significant": "Significant",
        "summary.driver": "Driver", "summary.unclassified": "not otherwise classified",
        "yes": "yes", "no": "no",
        "filter.topic": "Topic", "filter.touchpoint": "Touchpoint", "filter.channel": "Channel",
        "filter.language": "Language", "filter.period": "Period", "filter.date_from": "From", "filter.date_to": "To",
        "filter.q": "Search",
        "corrected": "Corrected", "corrected_sentiment": "Corrected sentiment",
        "corrected_sentiment_id": "Corrected sentiment (id)", "corrected_topics": "Corrected topics",
        "corrected_topic_ids": "Corrected topics (id)", "corrected_touchpoints": "Corrected touchpoints",
        "corrected_touchpoint_ids": "Corrected touchpoints (id)", "corrected_detractor": "Detractor (corrected)",
        "corrected_by": "Corrected by",
    },
}


@dataclass(frozen=True)
class CsvFormat:
    """How a CSV export is written: what Excel (or a script) on the reader's side expects.

    ``decimal`` is the decimal mark of numbers: Italian Excel reads ``0,85`` as a number and ``0.85`` as text
    (or a thousands-separated 85), and it splits on ``;``; so a ``;`` file gets decimal commas."""

    delimiter: str = ","
    encoding: CsvEncoding = "utf-8"
    bom: bool = True
    decimal: str = "."

    @classmethod
    def choose(
        cls, upload: dict[str, Any] | None, language: ExportLanguage, *, delimiter: str | None = None,
        encoding: CsvEncoding | None = None, bom: bool | None = None, decimal: str | None = None,
    ) -> CsvFormat:
        """The upload's own dialect (``upload``: what :func:`upload_dialect` recorded), each part overridable;
        without a recorded dialect (a JSONL or XLSX upload, a batch from before it was recorded) what Excel in
        the export's language opens: ``;`` and decimal commas for Italian, ``,`` for English, UTF-8 with a BOM."""
        upload = upload or {}
        sep = delimiter or upload.get("delimiter") or (";" if language == "it" else ",")
        if sep not in DELIMITERS.values():
            raise ValueError(f"delimiter must be one of {sorted(DELIMITERS)}, got {sep!r}")
        enc = encoding or upload.get("encoding") or "utf-8"
        if enc not in ("utf-8", "cp1252", "utf-16"):
            enc = "utf-8"
        # UTF-8 without a BOM is read by Excel as the local code page (accents garbled): keep one unless the
        # upload had none and the caller keeps the upload's encoding on purpose
        has_bom = bom if bom is not None else (upload.get("bom", True) if encoding is None else True)
        mark = decimal or ("," if sep == ";" else ".")
        if mark not in (",", "."):
            raise ValueError(f"decimal must be ',' or '.', got {mark!r}")
        return cls(sep, enc, bool(has_bom) or enc == "utf-16", mark)  # type: ignore[arg-type]


def upload_dialect(path: Path, encoding: str | None, delimiter: str | None) -> dict[str, Any] | None:
    """What a CSV upload looked like (delimiter, encoding, byte-order mark), recorded with its batch so its
    exports come back the same way once the file itself is deleted; None for other formats."""
    if delimiter is None or encoding is None or delimiter not in DELIMITERS.values():
        return None
    with path.open("rb") as fh:
        head = fh.read(4)
    enc = "utf-16" if encoding.startswith("utf-16") else "cp1252" if encoding == "cp1252" else "utf-8"
    bom = head.startswith((codecs.BOM_UTF8, codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE))
    return {"delimiter": delimiter, "encoding": enc, "bom": bom}


def record_upload_dialect(store: BatchStore, batch_id: str, dialect: dict[str, Any] | None) -> None:
    """Keep what :func:`upload_dialect` found beside the batch (``batches.upload_dialect``, revision 0007)."""
    if dialect is None:
        return
    from sqlalchemy import update

    with store.sessions() as s, s.begin():
        s.execute(update(Batch).where(Batch.id == batch_id).values(upload_dialect=dialect))


@dataclass(frozen=True)
class Names:
    """Display names in one language: the taxonomy's topics and touchpoints, the batch's discovered themes."""

    language: ExportLanguage = "en"
    topics: dict[str, str] = field(default_factory=dict)
    touchpoints: dict[str, str] = field(default_factory=dict)
    themes: dict[int, str] = field(default_factory=dict)

    @classmethod
    def build(cls, language: ExportLanguage, taxonomy: Taxonomy | None, discovery: dict[str, Any] | None) -> Names:
        def names(entries: list[Any]) -> dict[str, str]:
            return {e.id: e.names.get(language) or next(iter(e.names.values())) for e in entries}

        themes: dict[int, str] = {}
        for t in (discovery or {}).get("topics", []):
            labels = t.get("labels") if isinstance(t.get("labels"), dict) else {}
            label = labels.get(language) or t.get("label") or ""
            if isinstance(t.get("id"), int) and label:
                themes[t["id"]] = str(label)
        return cls(
            language,
            names(taxonomy.topics.entries) if taxonomy is not None else {},
            names(taxonomy.touchpoints.entries) if taxonomy is not None else {},
            themes,
        )

    def text(self, key: str, **params: Any) -> str:
        return TEXT[self.language][key].format(**params)

    def topic(self, tid: str) -> str:
        return self.topics.get(tid, tid)

    def touchpoint(self, tid: str) -> str:
        return self.touchpoints.get(tid, tid)

    def channel(self, cid: str | None) -> str | None:
        """A channel that is a touchpoint id is named like that touchpoint (as the dashboard does)."""
        return None if cid is None else self.touchpoints.get(cid, cid)

    def sentiment(self, label: str | None) -> str | None:
        return None if label is None else TEXT[self.language].get(label, label)

    def theme(self, k: int | None) -> str | None:
        if k is None:
            return None
        if k == -1:
            return self.text("theme.none")
        return self.themes.get(k, f"#{k}")


@dataclass(frozen=True)
class Selection:
    """Which rows an export holds: the dashboard's filters (the KPI report's) and, for a drawer's list, the same
    selector the comment list takes (``sentiment``, ``discovered``, ``errors``, ``q``)."""

    filters: Filters = field(default_factory=Filters)
    sentiment: str | None = None
    discovered: int | None = None
    errors: bool = False
    q: str | None = None

    def narrows(self) -> bool:
        return self.discovered is not None or bool(self.q)

    def describe(self) -> str:
        pairs = self.filters.query_params()
        if self.sentiment:
            pairs.append(("sentiment", self.sentiment))
        if self.discovered is not None:
            pairs.append(("discovered", str(self.discovered)))
        if self.errors:
            pairs.append(("errors", "true"))
        if self.q:
            pairs.append(("q", self.q))
        return "&".join(f"{k}={v}" for k, v in pairs)

    def words(self, names: Names) -> str:
        """The selection as a person reads it, in ``names``' language ("Tema: Consegna · regione: nord")."""
        t = names.text
        f = self.filters
        parts: list[str] = []
        for key, name_of in (("topic", names.topic), ("touchpoint", names.touchpoint), ("channel", names.channel),
                             ("language", str)):
            values = getattr(f, key) or []
            if values:
                parts.append(f"{t('filter.' + key)}: " + ", ".join(str(name_of(v)) for v in values))
        for col, vals in (f.segment or {}).items():
            parts.append(f"{col}: " + ", ".join(vals))
        for key, value in (("period", f.period), ("date_from", f.date_from), ("date_to", f.date_to)):
            if value:
                parts.append(f"{t('filter.' + key)}: {value}")
        if self.sentiment:
            parts.append(f"{t('sentiment')}: {names.sentiment(self.sentiment)}")
        if self.discovered is not None:
            parts.append(f"{t('theme')}: {names.theme(self.discovered)}")
        if self.errors:
            parts.append(t("status.error"))
        if self.q:
            parts.append(f"{t('filter.q')}: «{self.q}»")
        return " · ".join(parts)


def select_rows(store: BatchStore, batch_id: str, facts: list[RowFacts], sel: Selection) -> list[RowFacts]:
    """The facts of the rows a selection holds, in upload order: exactly the rows the comment list pages through
    for the same parameters (``BatchService.rows_page``), read as a stream (a text search keeps no texts)."""
    chosen = [
        f for f in apply_filters(facts, sel.filters)
        if (not sel.errors or not f.ok) and (sel.sentiment is None or f.sentiment == sel.sentiment)
    ]
    if not sel.narrows():
        return chosen
    wanted = {f.row for f in chosen}
    needle = (sel.q or "").lower()
    keep: set[int] = set()
    for r in store.iter_rows(batch_id, columns=rows.SEARCH_COLUMNS):
        if r.row in wanted and (sel.discovered is None or r.discovered == sel.discovered) and (
            not needle or needle in (r.text or "").lower()
        ):
            keep.add(r.row)
    return [f for f in chosen if f.row in keep]


# ------------------------------------------------------------------- the row builder
Kind = Literal["text", "int", "number", "date"]
#: what one export column reads of a stored row
ROW_COLUMNS = ("row", "ok", "doc_id", "date", "channel", "segments", "nps", "csat", "ces", "language", "sentiment",
               "detractor", "original", "result", "warnings", "discovered")


@dataclass(frozen=True)
class Column:
    """One column of a people's export: its header, how its value is read off a stored row, and its kind
    (numbers are written as numbers: numeric XLSX cells, the CSV's decimal mark)."""

    header: str
    value: Callable[[Any], Any]
    kind: Kind = "text"
    width: int = 14


@dataclass
class Plan:
    """Everything an export needs besides the rows: the batch, the selection, the names, the columns."""

    batch: Batch
    selection: Selection
    names: Names
    facts: list[RowFacts]  # the selected rows' facts, in upload order
    originals: list[str]
    topics: list[str] = field(default_factory=list)  # topic ids found in the selection, most frequent first
    touchpoints: list[str] = field(default_factory=list)
    segments: list[str] = field(default_factory=list)
    numeric_originals: str | None = None  # the decimal mark of the upload's numbers, for original cells
    # row -> its analysts' corrections (service/learning): the corrected columns beside the predicted ones
    corrections: dict[int, Any] = field(default_factory=dict)

    @property
    def rows(self) -> list[int]:
        return [f.row for f in self.facts]


def make_plan(batch: Batch, selection: Selection, names: Names, facts: list[RowFacts], originals: list[str],
              decimal: str | None = None) -> Plan:
    topic_count: Counter[str] = Counter(t for f in facts for t in dict(f.topics))
    tp_count: Counter[str] = Counter(t for f in facts for t in dict.fromkeys(f.touchpoints))
    mapping = batch.mapping or {}
    segments = [str(s) for s in mapping.get("segments") or []] or sorted({c for f in facts for c in f.segments})
    return Plan(
        batch, selection, names, facts, originals,
        topics=[t for t, _ in sorted(topic_count.items(), key=lambda kv: (-kv[1], kv[0]))],
        touchpoints=[t for t, _ in sorted(tp_count.items(), key=lambda kv: (-kv[1], kv[0]))],
        segments=segments, numeric_originals=decimal,
    )


_INT = re.compile(r"^-?(0|[1-9]\d{0,8})$")  # at most 9 digits: longer ones are codes (phones, EANs), not numbers
_DEC = {".": re.compile(r"^-?(0|[1-9]\d{0,8})\.\d{1,6}$"), ",": re.compile(r"^-?(0|[1-9]\d{0,8}),\d{1,6}$")}


def _number_or_text(v: Any, decimal: str | None) -> Any:
    """An original cell as a number where it plainly is one ("9", "7,5" in a ``;`` upload): a vote must sort
    and sum in Excel.  Codes stay text: a leading zero ("00184"), more than nine digits, thousands marks."""
    if not isinstance(v, str):
        return v
    s = v.strip()
    if _INT.match(s):
        return int(s)
    if decimal in _DEC and _DEC[decimal].match(s):
        return float(s.replace(",", "."))
    return v


def _evidence(r: Any, names: Names) -> str:
    """The sentences behind each topic: ``Consegna: «arrivato dopo due settimane»`` (the stored text's spans)."""
    text = r.result.get("text") if isinstance(r.result.get("text"), str) else None
    text = text or _text_of(r)
    if not text:
        return ""
    parts: list[str] = []
    for t in r.result.get("topics", []):
        spans = [text[e["offset"] : e["offset"] + e["length"]].strip() for e in t.get("evidence", [])]
        spans = [s for s in spans if s]
        if spans:
            parts.append(f"{names.topic(t['id'])}: " + " … ".join(f"«{s}»" for s in spans[:3]))
    return " | ".join(parts)


def _text_of(r: Any) -> str | None:
    return getattr(r, "text", None)


def _topic_sentiment(tid: str, names: Names) -> Callable[[Any], Any]:
    def read(r: Any) -> Any:
        for t in r.result.get("topics", []):
            if t["id"] == tid:
                return names.sentiment(t["sentiment"]["label"])
        return None

    return read


def _touchpoint_sentiment(tid: str, names: Names) -> Callable[[Any], Any]:
    """A touchpoint's polarity in a row is the row's sentiment (as the KPI report counts it)."""

    def read(r: Any) -> Any:
        return names.sentiment(r.sentiment) if r.ok and tid in (r.result_touchpoints or ()) else None

    return read


def _score(res: dict[str, Any], key: str) -> float | None:
    scores = (res.get("sentiment") or {}).get("scores") or {}
    value = scores.get(key)
    return None if value is None else float(value)


def columns(plan: Plan) -> list[Column]:
    """Every column of a people's export, in order.  THE one place a column is added (corrected values, a new
    per-row fact): a header in :data:`TEXT` for both languages and a reader of the stored row."""
    n = plan.names
    mapping = plan.batch.mapping or {}
    cols: list[Column] = [
        Column(n.text("row"), lambda r: r.row + 1, "int", 7),
        Column(n.text("id"), lambda r: r.result.get("id") or r.doc_id, "text", 12),
    ]
    text_col = mapping.get("text")
    for c in plan.originals:
        cols.append(Column(
            c, _original(c, plan.numeric_originals),
            "text", 60 if c == text_col else max(10, min(30, len(c) + 4)),
        ))
    cols += [
        Column(n.text("status"), lambda r: n.text("status.ok" if r.ok else "status.error"), "text", 12),
        Column(n.text("language"), lambda r: r.language, "text", 8),
        Column(n.text("sentiment"), lambda r: n.sentiment(r.sentiment), "text", 12),
        Column(n.text("sentiment_id"), lambda r: r.sentiment, "text", 12),
        Column(n.text("p_positive"), lambda r: _score(r.result, "positive"), "number", 10),
        Column(n.text("p_neutral"), lambda r: _score(r.result, "neutral"), "number", 10),
        Column(n.text("p_negative"), lambda r: _score(r.result, "negative"), "number", 10),
        Column(n.text("detractor"), lambda r: r.detractor, "number", 10),
    ]
    for key in ("nps", "csat", "ces"):
        if mapping.get(key):
            cols.append(Column(n.text(key), operator.attrgetter(key), "int", 9))
    if mapping.get("date"):
        cols.append(Column(n.text("date"), lambda r: r.date, "date", 11))
    if mapping.get("channel"):
        cols += [
            Column(n.text("channel"), lambda r: n.channel(r.channel), "text", 14),
            Column(n.text("channel_id"), lambda r: r.channel, "text", 14),
        ]
    for s in plan.segments:
        cols.append(Column(n.text("segment", name=s), _segment(s), "text", 14))
    cols += [
        Column(n.text("topics"), lambda r: "; ".join(n.topic(t["id"]) for t in r.result.get("topics", [])), "text", 30),
        Column(n.text("topic_ids"), lambda r: "; ".join(t["id"] for t in r.result.get("topics", [])), "text", 20),
        Column(n.text("primary_touchpoint"), lambda r: _opt(n.touchpoint, rows._primary_touchpoint(r.result)), "text", 18),
        Column(n.text("primary_touchpoint_id"), lambda r: rows._primary_touchpoint(r.result), "text", 14),
        Column(n.text("touchpoints"), lambda r: "; ".join(n.touchpoint(t) for t in r.result_touchpoints), "text", 24),
        Column(n.text("touchpoint_ids"), lambda r: "; ".join(r.result_touchpoints), "text", 18),
        Column(n.text("theme"), lambda r: n.theme(r.discovered), "text", 24),
        Column(n.text("theme_id"), lambda r: r.discovered, "int", 8),
        Column(n.text("evidence"), lambda r: _evidence(r, n), "text", 50),
    ]
    if plan.corrections:
        cols += _corrected_columns(plan)
    for t in plan.topics:
        cols.append(Column(n.text("topic", name=n.topic(t)), _topic_sentiment(t, n), "text", 12))
    for t in plan.touchpoints:
        cols.append(Column(n.text("touchpoint", name=n.touchpoint(t)), _touchpoint_sentiment(t, n), "text", 12))
    cols += [
        Column(n.text("warnings"), lambda r: "; ".join(list(r.result.get("warnings", [])) + list(r.warnings or [])), "text", 20),
        Column(n.text("error"), lambda r: _error(r), "text", 20),
    ]
    return cols


def _corrected_columns(plan: Plan) -> list[Column]:
    """The corrected value beside the prediction (issue 15): blank for a row nobody corrected."""
    n, fixes = plan.names, plan.corrections

    def fixed(read: Callable[[Any], Any]) -> Callable[[Any], Any]:
        def value(r: Any) -> Any:
            rc = fixes.get(r.row)
            return read(rc) if rc is not None and any(c.active for c in rc.corrections) else None
        return value

    return [
        Column(n.text("corrected"), fixed(lambda rc: n.text("yes")), "text", 9),
        Column(n.text("corrected_sentiment"), fixed(lambda rc: n.sentiment(rc.corrected.sentiment)), "text", 12),
        Column(n.text("corrected_sentiment_id"), fixed(lambda rc: rc.corrected.sentiment), "text", 12),
        Column(n.text("corrected_topics"), fixed(lambda rc: "; ".join(n.topic(t.id) for t in rc.corrected.topics)),
               "text", 30),
        Column(n.text("corrected_topic_ids"), fixed(lambda rc: "; ".join(t.id for t in rc.corrected.topics)), "text", 20),
        Column(n.text("corrected_touchpoints"), fixed(lambda rc: "; ".join(n.touchpoint(t)
                                                                             for t in rc.corrected.touchpoints)), "text", 24),
        Column(n.text("corrected_touchpoint_ids"), fixed(lambda rc: "; ".join(rc.corrected.touchpoints)), "text", 18),
        Column(n.text("corrected_detractor"), fixed(lambda rc: None if rc.corrected.detractor is None else
                                                    n.text("yes" if rc.corrected.detractor else "no")), "text", 10),
        Column(n.text("corrected_by"), fixed(lambda rc: ", ".join(dict.fromkeys(
            c.author for c in rc.corrections if c.active))), "text", 16),
    ]


def _original(column: str, decimal: str | None) -> Callable[[Any], Any]:
    return lambda r: _number_or_text(_plain((r.original or {}).get(column)), decimal)


def _segment(column: str) -> Callable[[Any], Any]:
    return lambda r: (r.segments or {}).get(column)


def _opt(f: Callable[[str], str], v: str | None) -> str | None:
    return None if v is None else f(v)


def _error(r: Any) -> str | None:
    if r.ok:
        return None
    err = r.result.get("error", {})
    return f"{err.get('code')}: {err.get('message')}"


class _Row:
    """A stored row with what several columns derive from it computed once."""

    __slots__ = ("_r", "result_touchpoints", "text")

    def __init__(self, r: Any) -> None:
        self._r = r
        self.result_touchpoints = [t["id"] for t in rows._touchpoints(r.result or {})]
        self.text = getattr(r, "text", None)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._r, name)


def plan_rows(store: BatchStore, plan: Plan) -> Iterator[_Row]:
    """The selected stored rows in upload order, a page at a time (never all of them in memory): a short list
    by row index, a long one by streaming the batch and keeping the selected rows."""
    wanted = plan.rows
    cols = (*ROW_COLUMNS, "text")
    if len(wanted) <= _BY_INDEX_MAX:
        for i in range(0, len(wanted), _PAGE):
            page = wanted[i : i + _PAGE]
            found = store.rows_by_index(plan.batch.id, page)
            for k in page:
                if k in found:
                    yield _Row(found[k])
        return
    keep = set(wanted)
    for r in store.iter_rows(plan.batch.id, page=_PAGE, columns=cols):
        if r.row in keep:
            yield _Row(r)


# ------------------------------------------------------------------- CSV
def _csv_value(v: Any, kind: Kind, fmt: CsvFormat) -> Any:
    if v is None:
        return ""
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, int | float):
        text = str(v) if isinstance(v, int) else (f"{v:.6f}".rstrip("0").rstrip(".") or "0")
        return text.replace(".", fmt.decimal)
    if isinstance(v, dt.date):
        return v.isoformat()
    return _csv_safe(str(v))


def people_csv(store: BatchStore, plan: Plan, fmt: CsvFormat) -> Iterator[bytes]:
    """The export as CSV bytes, a page at a time, in ``fmt``'s delimiter, encoding and decimal mark."""
    cols = columns(plan)
    codec = "utf-16-le" if fmt.encoding == "utf-16" else fmt.encoding
    bom = {"utf-8": codecs.BOM_UTF8, "utf-16": codecs.BOM_UTF16_LE}.get(fmt.encoding, b"") if fmt.bom else b""
    buf = io.StringIO()
    w = csv.writer(buf, delimiter=fmt.delimiter, lineterminator="\r\n")
    w.writerow([_csv_safe(c.header) for c in cols])
    first = True
    for n, r in enumerate(plan_rows(store, plan), start=1):
        w.writerow([_csv_value(c.value(r), c.kind, fmt) for c in cols])
        if n % _PAGE == 0:
            yield (bom if first else b"") + buf.getvalue().encode(codec, errors="replace")
            first = False
            buf.seek(0)
            buf.truncate()
    yield (bom if first else b"") + buf.getvalue().encode(codec, errors="replace")


# ------------------------------------------------------------------- XLSX
def summary(plan: Plan, labels: dict[str, str] | None = None, channel_labels: dict[str, str] | None = None) -> KpiReport:
    """The KPIs of exactly the exported rows (the KPI report's own functions, nothing recomputed here)."""
    return batch_kpis(plan.facts, None, labels=labels, channel_labels=channel_labels)


def write_people_xlsx(
    store: BatchStore, plan: Plan, folder: Path, report: KpiReport, *, top: int = 10
) -> Path:
    """The export as an XLSX: the comments sheet (numbers as numeric cells, header frozen, an autofilter, column
    widths) and a summary sheet of the same rows' KPIs.  Write-only mode: rows stream to disk."""
    import openpyxl
    from openpyxl.utils import get_column_letter

    folder.mkdir(parents=True, exist_ok=True)
    name = folder / f"{plan.batch.id}-{uuid.uuid4().hex[:8]}.xlsx"
    n = plan.names
    cols = columns(plan)
    wb = openpyxl.Workbook(write_only=True)
    ws = wb.create_sheet(n.text("sheet.rows"))
    ws.freeze_panes = "A2"
    for i, c in enumerate(cols, start=1):
        ws.column_dimensions[get_column_letter(i)].width = max(c.width, min(40, len(c.header) + 2))
    ws.append([_header_cell(ws, c.header) for c in cols])
    count = 0
    for r in plan_rows(store, plan):
        ws.append([_xlsx_value(ws, c.value(r), c.kind) for c in cols])
        count += 1
    ws.auto_filter.ref = f"A1:{get_column_letter(len(cols))}{count + 1}"
    _summary_sheet(wb, plan, report, top)
    wb.save(name)
    os.chmod(name, 0o600)
    return name


def _header_cell(ws: Any, text: str) -> Any:
    from openpyxl.cell import WriteOnlyCell
    from openpyxl.styles import Font

    cell = WriteOnlyCell(ws, value="".join(ch for ch in text if ch in "\t\n\r" or ord(ch) >= 32)[:32_000])
    cell.data_type = "s"  # a column name is customer data: never a formula
    cell.font = Font(bold=True)
    return cell


def _xlsx_value(ws: Any, v: Any, kind: Kind) -> Any:
    if isinstance(v, dt.date | bool | int | float):
        return v
    return _xlsx_cell(ws, v)


def _summary_sheet(wb: Any, plan: Plan, report: KpiReport, top: int) -> None:
    """The KPIs of the exported rows, as the dashboard shows them: counts, NPS with its interval, sentiment shares,
    the most mentioned topics and touchpoints (the catch-all topic apart, where the report sets it apart)."""
    from openpyxl.cell import WriteOnlyCell
    from openpyxl.cell.cell import Cell
    from openpyxl.styles import Font

    n = plan.names
    ws = wb.create_sheet(n.text("sheet.summary"))
    for letter, width in zip("ABCDEFGH", (36, 22, 12, 12, 14, 14, 14, 10), strict=True):
        ws.column_dimensions[letter].width = width
    t = n.text
    bold = Font(bold=True)

    def row(*values: Any, head: bool = False, share_at: tuple[int, ...] = ()) -> None:
        cells = []
        for i, v in enumerate(values):
            cell = _xlsx_cell(ws, v)
            if head or (i in share_at and v is not None):
                cell = cell if isinstance(cell, Cell) else WriteOnlyCell(ws, value=cell)
                if head:
                    cell.font = bold
                else:
                    cell.number_format = "0.0%"
            cells.append(cell)
        ws.append(cells)

    row(t("summary.title"), head=True)
    row(t("summary.batch"), plan.batch.name)
    row(t("summary.exported"), dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"))
    row(t("summary.filters"), plan.selection.words(n) or t("summary.filters.none"))
    row()
    row(t("summary.metric"), t("summary.value"), t("summary.ci_low"), t("summary.ci_high"), t("summary.n"), head=True)
    row(t("summary.rows"), report.count)
    row(t("summary.analysed"), report.analysed)
    nps = report.nps
    row(t("summary.nps"), nps.value, nps.ci_low, nps.ci_high, nps.responses)
    if report.nps_estimate is not None:
        e = report.nps_estimate
        row(t("summary.nps_estimate"), e.detractor_share, e.ci_low, e.ci_high, e.rows, share_at=(1, 2, 3))
    if report.csat is not None:
        row(t("summary.csat"), report.csat.value, report.csat.ci_low, report.csat.ci_high, report.csat.responses)
    if report.ces is not None:
        row(t("summary.ces"), report.ces.mean, report.ces.ci_low, report.ces.ci_high, report.ces.responses)
    row(t("summary.net"), report.sentiment.net)
    row()
    s = report.sentiment
    known = s.positive + s.neutral + s.negative + s.mixed
    row(t("summary.sentiment"), t("summary.count"), t("summary.share"), head=True)
    for label in ("positive", "neutral", "mixed", "negative"):
        k = getattr(s, label)
        row(n.sentiment(label), k, round(k / known, 4) if known else None, share_at=(2,))
    unclassified = getattr(report, "unclassified", None)  # the catch-all topic, where the report sets it apart
    for title, items, name_of, apart in (
        ("summary.topics", report.topics, n.topic, unclassified),
        ("summary.touchpoints", report.touchpoints, n.touchpoint, None),
    ):
        row()
        row(t(title), "id", t("summary.count"), t("summary.share"), t("summary.net"), t("summary.impact"),
            t("summary.significant"), t("summary.driver"), head=True)
        for x in sorted(items, key=lambda x: -x.count)[:top]:
            driver = getattr(x, "driver", None)
            row(name_of(x.id), x.id, x.count, x.share, x.net_sentiment, x.impact, t("yes" if x.significant else "no"),
                None if driver is None else t("yes" if driver else "no"), share_at=(3,))
        if apart is not None:
            row(f"{name_of(apart.id)} ({t('summary.unclassified')})", apart.id, apart.count, apart.share,
                apart.net_sentiment, None, None, t("no"), share_at=(3,))


# ------------------------------------------------------------------- one call for the API and the CLI
@dataclass(frozen=True)
class ExportFile:
    """A people's export: streamed ``chunks`` (CSV) or a written temporary ``path`` (XLSX; the caller removes it)."""

    stem: str
    extension: Literal["csv", "xlsx"]
    media_type: str
    chunks: Iterator[bytes] | None = None
    path: Path | None = None

    @property
    def filename(self) -> str:
        return f"{self.stem}-voce.{self.extension}"


XLSX_MEDIA_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
_CHARSET = {"utf-8": "utf-8", "cp1252": "windows-1252", "utf-16": "utf-16"}


def people_export(
    service: BatchService,
    batch_id: str,
    fmt: Literal["csv", "xlsx"],
    *,
    selection: Selection | None = None,
    language: ExportLanguage = "it",
    taxonomy: Taxonomy | None = None,
    delimiter: str | None = None,
    encoding: CsvEncoding | None = None,
    bom: bool | None = None,
    decimal: str | None = None,
    folder: Path | None = None,
) -> ExportFile:
    """The rows of ``selection`` (default: every row) as the analyst's CSV or XLSX, labelled in ``language``
    with ``taxonomy``'s names (None: ids).  ``service`` is the caller's tenant's batch layer: another tenant's
    batch is not found.  Raises ``ValueError`` for a delimiter or decimal mark no spreadsheet reads."""
    from voce.service.learning.corrections import corrected_rows

    b = service.get(batch_id)
    sel = selection or Selection()
    facts = select_rows(service.store, batch_id, service.facts(b), sel)
    fixes = corrected_rows(service.store, batch_id, active_only=True)  # analysts' corrections, beside the prediction
    names = Names.build(language, taxonomy, b.discovery)
    upload = getattr(b, "upload_dialect", None)
    stem = Path(b.name).stem or batch_id
    if sel.describe():
        stem += "-" + ("selezione" if language == "it" else "selection")
    if fmt == "csv":
        csv_fmt = CsvFormat.choose(upload, language, delimiter=delimiter, encoding=encoding, bom=bom, decimal=decimal)
        plan = make_plan(b, sel, names, facts, original_columns(b), _upload_decimal(upload))
        plan.corrections = fixes
        return ExportFile(stem, "csv", f"text/csv; charset={_CHARSET[csv_fmt.encoding]}",
                          chunks=people_csv(service.store, plan, csv_fmt))
    plan = make_plan(b, sel, names, facts, original_columns(b), _upload_decimal(upload))
    plan.corrections = fixes
    report = summary(plan)
    path = write_people_xlsx(service.store, plan, folder or service.data_dir / "exports", report)
    return ExportFile(stem, "xlsx", XLSX_MEDIA_TYPE, path=path)


def _upload_decimal(upload: dict[str, Any] | None) -> str:
    """The decimal mark of the upload's own numbers: a ``;`` file is written by a comma-decimal locale."""
    return "," if (upload or {}).get("delimiter") == ";" else "."
