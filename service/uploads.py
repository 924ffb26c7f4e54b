"""Reading uploaded tables (CSV, XLSX, JSONL) row by row, and mapping their columns to roles.

A CX export comes in whatever shape the survey tool wrote: ``;`` or tab
delimited, UTF-8 with or without BOM, Latin-1 from an old Excel, UTF-16 from
another; dates as ``05/03/2026`` or Excel dates; scores as ``9`` or ``9.0``.
Everything here streams (one record at a time), so a 100,000-row upload is
never in memory, and a bad value becomes a warning or a per-row error, never a
failed job.  Hostile files are refused with a clear error before anything is
queued: binary data named ``.csv``, and XLSX files past their limits once
unzipped (:mod:`voce.service.xlsx`), which are read once, at upload, into
normalised rows (:func:`normalise_xlsx`) that the worker then streams.
"""
from __future__ import annotations

import codecs
import csv
import datetime as dt
import functools
import io
import json
import math
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from voce.models.cleaning import clean_text
from voce.models.types import DocumentError, DocumentInput
from voce.service.xlsx import XlsxError, XlsxLimitExceeded, XlsxLimits, read_first_sheet

FileFormat = Literal["csv", "xlsx", "jsonl"]
ROLES = ("text", "id", "date", "channel", "nps", "csat", "ces", "kind", "language")
csv.field_size_limit(16 * 1024 * 1024)
#: key of a CSV record's note about extra fields (kept out of the original columns, reported as a warning)
OVERFLOW = "\x00overflow"
#: key of a CSV record's note about broken quoting (likewise)
QUOTING = "\x00quoting"
_NOTES = (OVERFLOW, QUOTING)
#: first line of the normalised rows an XLSX upload is turned into (see :func:`normalise_xlsx`)
_ROWS_MAGIC = b'{"voce_rows": 1'


#: the codes an :class:`UploadError` (and the batch layer's upload refusals) carry; the page has words for each
UPLOAD_ERROR_CODES = (
    "upload.empty", "upload.mapping_invalid", "upload.no_header", "upload.no_json", "upload.no_text_column",
    "upload.not_text", "upload.too_large", "upload.unknown_columns", "upload.unreadable", "upload.unsupported_type",
    "upload.xlsx_empty", "upload.xlsx_limit", "upload.xlsx_unreadable",
)


class UploadError(ValueError):
    """The file as a whole cannot be read (wrong type, no header, unknown column): a 422, never a job.

    ``code`` and ``params`` say the same as the English message in a form the page translates (``upload.*`` keys
    of ``static/i18n.js``); the API sends them as the error envelope's ``details``."""

    def __init__(self, message: str, code: str = "upload.unreadable", **params: Any) -> None:
        super().__init__(message)
        self.code = code
        self.params = params


class UploadLimitExceeded(UploadError):
    """The file holds more than a configured limit allows once read (an XLSX unzipped): a 413, never a job."""


class ColumnMapping(BaseModel):
    """Which column plays which role; only ``text`` is required."""

    model_config = ConfigDict(extra="forbid")

    text: str = Field(min_length=1, description="Column with the comment or chat transcript.")
    id: str | None = Field(default=None, description="Column with the row's own id (default: row number).")
    date: str | None = Field(default=None, description="Date of the answer (ISO, dd/mm/yyyy or an Excel date).")
    channel: str | None = Field(
        default=None,
        description="Where the feedback was collected (web, app, store…): its own breakdown, apart from the "
        "touchpoints read from the text; it may confirm a touchpoint the text supports, never create one.",
    )
    nps: str | None = Field(default=None, description="'How likely to recommend' answer, 0–10.")
    csat: str | None = Field(default=None, description="Satisfaction answer, 1–5.")
    ces: str | None = Field(default=None, description="Customer-effort answer, 1–7.")
    kind: str | None = Field(default=None, description="'comment' or 'chat' per row.")
    language: str | None = Field(default=None, description="ISO language code per row (otherwise detected).")
    segments: list[str] = Field(default_factory=list, max_length=10, description="Columns to break results down by.")
    dayfirst: bool = Field(default=True, description="Read 03/05/2026 as 3 May (Italian/European) rather than 5 March.")

    def columns(self) -> list[str]:
        used = [getattr(self, r) for r in ROLES if getattr(self, r)]
        return used + list(self.segments)


# ------------------------------------------------------------------ formats
def detect_format(filename: str, head: bytes) -> FileFormat:
    """From the extension, or the content when the extension says nothing useful."""
    suffix = Path(filename or "").suffix.lower()
    if suffix in (".xlsx", ".xlsm"):
        return "xlsx"
    if suffix in (".jsonl", ".ndjson"):
        return "jsonl"
    if suffix in (".csv", ".tsv", ".txt"):
        return "csv"
    if head.startswith(b"PK\x03\x04"):
        return "xlsx"
    if head.lstrip(b"\xef\xbb\xbf \r\n\t").startswith(b"{"):
        return "jsonl"
    if suffix in ("", ".dat"):
        return "csv"
    raise UploadError(f"unsupported file type {suffix!r}: upload CSV, XLSX or JSONL", "upload.unsupported_type",
                      suffix=suffix)


def sniff_encoding(sample: bytes) -> str:
    """UTF-16 (BOM or NUL pattern), UTF-8 (BOM or valid), else Windows-1252 (what Excel on Windows writes;
    a superset of Latin-1's printable characters, with ’ “ ” € – where Latin-1 has control codes)."""
    if sample.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    if len(sample) >= 4 and sample[1:4:2] == b"\x00\x00" and sample[0:4:2] != b"\x00\x00":
        return "utf-16-le"
    if len(sample) >= 4 and sample[0:4:2] == b"\x00\x00" and sample[1:4:2] != b"\x00\x00":
        return "utf-16-be"
    try:
        sample.decode("utf-8")
        return "utf-8-sig"
    except UnicodeDecodeError as exc:
        # a multi-byte character cut by the end of the sample is still UTF-8
        return "utf-8-sig" if exc.start >= len(sample) - 3 else "cp1252"


@functools.lru_cache(maxsize=64)
def _file_encoding(path: str, size: int, mtime: float) -> str:
    """The sample decides, but a file that looks UTF-8 is checked to the end: a Windows-1252 accent after
    the first 64 KB must not turn into replacement characters."""
    with open(path, "rb") as fh:
        enc = sniff_encoding(fh.read(1 << 16))
        if enc != "utf-8-sig":
            return enc
        fh.seek(0)
        decoder = codecs.getincrementaldecoder("utf-8")()
        try:
            while block := fh.read(1 << 20):
                decoder.decode(block)
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            return "cp1252"
    return enc


class _AfterBom(io.RawIOBase):
    """A file read from after its UTF-8 byte-order mark: an old Excel may write one before Windows-1252 text,
    which no codec strips (it decoded as "ï»¿" in front of the first column's name)."""

    def __init__(self, path: Path) -> None:
        self._fh = path.open("rb")
        self._skip = len(codecs.BOM_UTF8)
        self._fh.seek(self._skip)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        return self._fh.readinto(buffer)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_SET:
            offset += self._skip
        return self._fh.seek(offset, whence) - self._skip

    def tell(self) -> int:
        return self._fh.tell() - self._skip

    def close(self) -> None:
        self._fh.close()
        super().close()


def open_text(path: Path) -> io.TextIOWrapper:
    st = path.stat()
    enc = _file_encoding(str(path), st.st_size, st.st_mtime)
    if enc != "utf-8-sig":
        with path.open("rb") as fh:
            if fh.read(len(codecs.BOM_UTF8)) == codecs.BOM_UTF8:
                return io.TextIOWrapper(io.BufferedReader(_AfterBom(path)), encoding=enc, newline="", errors="replace")
    return io.TextIOWrapper(path.open("rb"), encoding=enc, newline="", errors="replace")


#: NUL and the other C0 controls but tab, newline, vertical tab, form feed and carriage return; DEL; and what
#: the decoder put for bytes no encoding of ours uses
_NOT_TEXT = re.compile("[\x00-\x08\x0e-\x1f\x7f\ufffd]")
#: share of such characters above which a file is taken for binary data (random bytes: ~13% as Windows-1252;
#: real exports: a stray vertical tab or ^Z)
_NOT_TEXT_SHARE = 0.05


def check_text(sample: str, what: str = "file") -> None:
    """Refuse binary data under a text name (an image, a zip, an encrypted export saved as ``.csv``): analysing
    it would turn its bytes into rows of garbage."""
    if not sample:
        return
    bad = len(_NOT_TEXT.findall(sample))
    if bad > _NOT_TEXT_SHARE * len(sample):
        raise UploadError(
            f"the {what} is not text: {bad / len(sample):.0%} of its first {len(sample):,} characters are control "
            "characters or bytes no text encoding uses; upload a CSV, XLSX or JSONL file",
            "upload.not_text", share=round(bad / len(sample), 2), chars=len(sample),
        )


def sniff_dialect(sample: str) -> type[csv.Dialect]:
    """The delimiter is sniffed; quoting stays Excel's (the Sniffer's quote guesses break on embedded quotes)."""
    lines = sample.splitlines()
    sample = "\n".join(lines[:-1] if len(lines) > 2 else lines)  # the last line of a sample may be cut
    header = lines[0] if lines else ""
    if not any(d in header for d in ",;\t|"):  # one column: a comma inside a comment is not a delimiter
        return type("OneColumn", (csv.excel,), {"delimiter": "\x1f"})
    try:
        delimiter = csv.Sniffer().sniff(sample, delimiters=",;\t|").delimiter
    except csv.Error:
        delimiter = ""
    if delimiter not in header or not delimiter:
        # the Sniffer's guess from quotes can name a delimiter the header never uses ('0,00' + a quoted tab in a
        # row gave a tab, so one column): the header's most frequent candidate then
        delimiter = max(",;\t|", key=header.count)
    return type("Sniffed", (csv.excel,), {"delimiter": delimiter})


@dataclass
class Table:
    """A readable table: its columns and a fresh record iterator each call."""

    path: Path
    fmt: FileFormat
    columns: list[str]
    encoding: str | None = None
    delimiter: str | None = None

    #: XLSX: the rows in the normalised rows file (known without reading them)
    rows: int | None = None

    def records(self) -> Iterator[dict[str, Any] | UploadRowError]:
        if self.fmt == "csv":
            yield from _csv_records(self.path)
        elif self.fmt == "xlsx":
            yield from _xlsx_records(self.path, self.columns)
        else:
            yield from _jsonl_records(self.path)

    def count(self) -> int:
        if self.rows is not None:
            return self.rows
        return sum(1 for _ in self.records())


@dataclass(frozen=True)
class UploadRowError:
    """A record that could not even be parsed (broken JSON line, …); it still occupies its row."""

    message: str


def open_table(path: Path, fmt: FileFormat, xlsx_limits: XlsxLimits | None = None) -> Table:
    """The file's columns and a record reader.  An XLSX file is either the normalised rows an upload was turned
    into (cheap) or a workbook, read within ``xlsx_limits`` (default: :class:`XlsxLimits`'s)."""
    if fmt == "csv":
        with open_text(path) as fh:
            sample = fh.read(1 << 15)
            if not sample.strip():
                raise UploadError("the file is empty", "upload.empty")
            check_text(sample)
            dialect = sniff_dialect(sample)
            fh.seek(0)
            header = next(csv.reader(fh, dialect=dialect), None)
            enc = fh.encoding
        if not header or not any(h.strip() for h in header):
            raise UploadError("the CSV has no header row", "upload.no_header")
        return Table(path, fmt, _unique([_name(h) for h in header]), encoding=enc, delimiter=dialect.delimiter)
    if fmt == "xlsx":
        if _is_rows_file(path):
            head = _rows_header(path)
            return Table(path, fmt, head["columns"], rows=head["rows"])
        columns, rows = _xlsx_scan(path, xlsx_limits or XlsxLimits())
        return Table(path, fmt, columns, rows=rows)
    cols: dict[str, None] = {}
    with open_text(path) as fh:
        for n, line in enumerate(fh):
            if n >= 200:
                break
            try:
                obj = json.loads(line) if line.strip() else None
            except json.JSONDecodeError:
                continue
            if isinstance(obj, dict):
                cols.update(dict.fromkeys(_key(k) for k in obj))
    if not cols:
        raise UploadError("no JSON object found in the first lines: JSONL needs one object per line", "upload.no_json")
    return Table(path, fmt, list(cols), encoding="utf-8")


def _name(header_cell: Any) -> str:
    """A column name as read from a header cell: stripped, without invalid characters."""
    return _cell(header_cell if isinstance(header_cell, str) else str(header_cell)).strip()


def _key(key: Any) -> str:
    """A record's key as a column name (JSON keys may carry NULs or lone surrogates too)."""
    return _cell(str(key))


def _unique(names: list[str]) -> list[str]:
    """Blank or repeated header cells get distinct names (column_3, text_2) so no value is dropped."""
    out: list[str] = []
    for i, n in enumerate(names, start=1):
        base = n or f"column_{i}"
        name, k = base, 2
        while name in out:
            name, k = f"{base}_{k}", k + 1
        out.append(name)
    return out


# ----------------------------------------------------------- row warnings
#: every warning a row can get while it is read, as code -> English template; the code and its parameters are
#: what the page translates (``warn.*`` keys of static/i18n.js); the stored text is the English message, and
#: :func:`classify_warning` reads the code and parameters back from it (batch status counts warnings by code)
ROW_WARNINGS: dict[str, str] = {
    "row.extra_fields": "{extra} more field(s) than the header; joined into the last column '{column}'",
    "row.unbalanced_quote": "unbalanced quote: it would have merged the next {lines} line(s) into this row; read as "
                            "a character, each line its own row",
    "row.stray_quote": "unbalanced quote; read as a character",
    "row.misplaced_quote": "misplaced quote in this row (a quote inside a quoted field must be doubled); read as it "
                           "stands",
    "row.invalid_characters": "invalid characters (NUL, lone surrogates or non-characters) removed or replaced in "
                              "{columns}",
    "value.score": "{role}: '{value}' is not a whole number {lo}–{hi}; ignored",
    "value.date": "date: '{value}' is not a date; ignored",
    "value.kind": "kind: '{value}' is not 'comment' or 'chat'; read as comment",
    "value.language": "language: '{value}' is not a language code; detected instead",
}
#: per-row errors of reading (the code is stored with the error; these give its parameters back)
ROW_ERRORS: dict[str, str] = {"EmptyText": "column '{column}' is empty"}


def row_warning(code: str, **params: Any) -> str:
    """The English message of a row warning (what is stored with the row and exported)."""
    return ROW_WARNINGS[code].format(**params)


def _template_pattern(template: str) -> re.Pattern[str]:
    parts = re.split(r"\{(\w+)\}", template)
    body = "".join(re.escape(p) if i % 2 == 0 else f"(?P<{p}>.*?)" for i, p in enumerate(parts))
    return re.compile(f"^{body}$", re.DOTALL)


_WARNING_PATTERNS = {code: _template_pattern(t) for code, t in ROW_WARNINGS.items()}
_ERROR_PATTERNS = {code: _template_pattern(t) for code, t in ROW_ERRORS.items()}


def classify_warning(message: str) -> tuple[str, dict[str, str]]:
    """(code, parameters) of a stored warning message; ``row.other`` with the message for one no template made
    (rows stored before the codes, or a note of the analysis)."""
    for code, pattern in _WARNING_PATTERNS.items():
        m = pattern.match(message)
        if m:
            return code, m.groupdict()
    return "row.other", {"message": message}


def error_params(code: str, message: str) -> dict[str, str]:
    """The parameters of a per-row error's message (``{"column": "Commento"}`` of an EmptyText)."""
    pattern = _ERROR_PATTERNS.get(code)
    m = pattern.match(message) if pattern else None
    return m.groupdict() if m else {}


class _Lines:
    """The physical lines a CSV reader takes, kept until :meth:`take` (the reader never reads ahead)."""

    def __init__(self, fh: io.TextIOWrapper) -> None:
        self._fh = fh
        self.taken: list[str] = []

    def __iter__(self) -> _Lines:
        return self

    def __next__(self) -> str:
        line = next(self._fh)
        self.taken.append(line)
        return line

    def take(self) -> list[str]:
        out, self.taken = self.taken, []
        return out


def csv_rows(fh: io.TextIOWrapper, dialect: type[csv.Dialect]) -> Iterator[tuple[list[str], str | None]]:
    """The records of a CSV text, each with a note when its quoting was broken (None otherwise).

    A quote that is never closed makes a CSV reader run on through the following lines, silently merging rows
    (five rows read as two).  Each record's physical lines are kept and re-read strictly when they hold a quote:
    a record of several lines that is not valid CSV is read again line by line, the line with the stray quote
    taking it as a character, with a note; a single line with misplaced quotes is kept as read, with a note.
    """
    strict = type("Strict", (dialect,), {"strict": True})
    literal = type("Literal", (dialect,), {"quoting": csv.QUOTE_NONE})
    quote = dialect.quotechar or '"'
    lines = _Lines(fh)
    reader = csv.reader(lines, dialect=dialect)
    while True:
        try:
            values = next(reader)
        except StopIteration:
            return
        except csv.Error:  # e.g. a field past the size limit: the lines it took are re-read one by one
            values = None
        raw = lines.take()
        if values is not None and (len(raw) <= 1 or not any(quote in line for line in raw)):
            yield values, (_quote_note(raw[0], strict) if raw and quote in raw[0] else None)
            continue
        if values is not None and _strictly(raw, strict) is not None:
            yield values, None  # a quoted field over several lines, as CSV allows
            continue
        for i, line in enumerate(raw):
            alone = _strictly([line], strict)
            if alone is not None:
                yield alone, None
            else:
                lit = next(csv.reader([line], dialect=literal), [])
                yield lit, (
                    row_warning("row.unbalanced_quote", lines=len(raw) - 1) if i == 0
                    else row_warning("row.stray_quote")
                )


def _strictly(raw: list[str], strict: type[csv.Dialect]) -> list[str] | None:
    """The one record ``raw`` holds when it is valid CSV, else None."""
    try:
        records = list(csv.reader(raw, dialect=strict))
    except csv.Error:
        return None
    return records[0] if len(records) == 1 else None


def _quote_note(line: str, strict: type[csv.Dialect]) -> str | None:
    if _strictly([line], strict) is not None or not line.strip():
        return None
    return row_warning("row.misplaced_quote")


def _csv_records(path: Path) -> Iterator[dict[str, Any] | UploadRowError]:
    with open_text(path) as fh:
        dialect = sniff_dialect(fh.read(1 << 15))
        fh.seek(0)
        rows = csv_rows(fh, dialect)
        header = _unique([_name(h) for h in next(rows, ([], None))[0]])
        for values, note in rows:
            if not values or not any(v.strip() for v in values):
                continue
            rec: dict[str, Any]
            if len(values) > len(header) and header:
                # an unquoted delimiter inside the free text (usually the last column): keep every character
                extra = len(values) - len(header)
                values = values[: len(header) - 1] + [dialect.delimiter.join(values[len(header) - 1 :])]
                rec = dict(zip(header, values, strict=False))
                rec[OVERFLOW] = row_warning("row.extra_fields", extra=extra, column=header[-1])
            else:
                rec = dict(zip(header, values, strict=False))
            if note:
                rec[QUOTING] = note
            yield rec


def _sheet(path: Path, limits: XlsxLimits) -> Iterator[list[Any]]:
    """The first sheet's rows (see :func:`voce.service.xlsx.read_first_sheet`), its errors as upload errors."""
    try:
        yield from read_first_sheet(path, limits)
    except XlsxLimitExceeded as exc:
        raise UploadLimitExceeded(str(exc), "upload.xlsx_limit", reason=str(exc)) from exc
    except XlsxError as exc:
        raise UploadError(str(exc), "upload.xlsx_unreadable", reason=str(exc)) from exc


def _filled(row: list[Any]) -> bool:
    return any(v not in (None, "") for v in row)


def _xlsx_header_row(row: list[Any], width: int) -> list[str]:
    """Column names from the header row, as wide as the widest row (blank header cells get ``column_N``)."""
    return _unique([_name("" if v is None else v) for v in row + [None] * (width - len(row))])


def _xlsx_scan(path: Path, limits: XlsxLimits) -> tuple[list[str], int]:
    """Columns and data rows of a workbook in one bounded pass (a workbook not normalised yet)."""
    header: list[Any] | None = None
    width = rows = 0
    for row in _sheet(path, limits):
        if header is None:
            if _filled(row):
                header = row
                width = len(row)
            continue
        if _filled(row):
            rows += 1
            width = max(width, len(row))
    if header is None:
        raise UploadError("the first sheet of the XLSX file is empty", "upload.xlsx_empty")
    return _xlsx_header_row(header, width), rows


def _is_rows_file(path: Path) -> bool:
    with path.open("rb") as fh:
        return fh.read(len(_ROWS_MAGIC)) == _ROWS_MAGIC


def _rows_header(path: Path) -> dict[str, Any]:
    with path.open("rb") as fh:
        head: dict[str, Any] = json.loads(fh.readline())
    return head


def normalise_xlsx(path: Path, limits: XlsxLimits) -> Path:
    """Read an uploaded workbook once, within ``limits``, into normalised rows: a JSON header line (columns, row
    count) and one JSON array of cell values per data row, in ``<path>.rows``, which replaces the workbook.

    Why: the workbook is read while it is registered (columns, mapping, and every limit, answered with a 413
    or 422 at once); the worker and the exports then stream plain JSON lines instead of unzipping and parsing
    the sheet again (twice: it is counted, then read).  Cell values are made JSON-safe as stored rows keep
    them anyway (dates as ISO text, which the date and score parsers read the same).
    """
    out = path.with_name(path.name + ".rows")
    body = path.with_name(path.name + ".rows-body")
    header: list[Any] | None = None
    width = rows = 0
    try:
        with body.open("w", encoding="utf-8") as fh:
            for row in _sheet(path, limits):
                if header is None:
                    if _filled(row):
                        header, width = row, len(row)
                    continue
                if _filled(row):
                    rows += 1
                    width = max(width, len(row))
                    fh.write(json.dumps([_cell(v) for v in row], ensure_ascii=False) + "\n")
        if header is None:
            raise UploadError("the first sheet of the XLSX file is empty", "upload.xlsx_empty")
        head = {"voce_rows": 1, "source": "xlsx", "columns": _xlsx_header_row(header, width), "rows": rows}
        with out.open("w", encoding="utf-8") as dst, body.open("r", encoding="utf-8") as src:
            dst.write(json.dumps(head, ensure_ascii=False) + "\n")
            shutil.copyfileobj(src, dst, 1 << 20)
    except BaseException:
        out.unlink(missing_ok=True)
        raise
    finally:
        body.unlink(missing_ok=True)
    path.unlink(missing_ok=True)
    return out


def _xlsx_records(path: Path, columns: list[str]) -> Iterator[dict[str, Any] | UploadRowError]:
    if _is_rows_file(path):
        with path.open("r", encoding="utf-8") as fh:
            next(fh, None)
            for line in fh:
                yield {h: v for h, v in zip(columns, json.loads(line), strict=False) if v is not None}
        return
    header_seen = False
    for row in _sheet(path, XlsxLimits()):
        if not header_seen:
            header_seen = _filled(row)
            continue
        if _filled(row):
            yield {h: v for h, v in zip(columns, row, strict=False) if v is not None}


@dataclass(frozen=True)
class JsonLineProblem:
    """A JSONL line that is not a JSON object: ``InvalidJson`` or ``InvalidInput`` (valid JSON, not an object)."""

    code: str
    message: str


def json_objects(fh: io.TextIOWrapper) -> Iterator[tuple[int, dict[str, Any] | JsonLineProblem]]:
    """(line number, object) for each non-blank line, or (line number, problem); shared by every JSONL reader."""
    for n, line in enumerate(fh, start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            yield n, JsonLineProblem("InvalidJson", f"line {n}: invalid JSON ({exc.msg})")
            continue
        if not isinstance(obj, dict):
            yield n, JsonLineProblem("InvalidInput", f"line {n}: each line must be a JSON object")
            continue
        yield n, obj


def _jsonl_records(path: Path) -> Iterator[dict[str, Any] | UploadRowError]:
    with open_text(path) as fh:
        for _, obj in json_objects(fh):
            yield UploadRowError(obj.message) if isinstance(obj, JsonLineProblem) else {_key(k): v for k, v in obj.items()}


def validation_message(exc: ValidationError) -> str:
    """The first problem of a pydantic error as 'field: message'."""
    e = exc.errors()[0]
    return f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}"


# ----------------------------------------------------------------- mapping
_GUESSES: dict[str, tuple[str, ...]] = {
    "text": ("text", "comment", "comments", "commento", "commenti", "testo", "feedback", "verbatim", "message",
             "messaggio", "review", "recensione", "answer", "risposta", "transcript", "trascrizione", "note", "body",
             "turns"),
    "id": ("id", "row_id", "response_id", "respondent_id", "ticket", "ticket_id", "codice", "code", "uid"),
    "date": ("date", "data", "created_at", "timestamp", "submitted_at", "datetime", "giorno", "day", "time"),
    "channel": ("channel", "canale", "source", "fonte", "touchpoint", "origin"),
    "nps": ("nps", "nps_score", "recommend", "likelihood_to_recommend", "ltr", "raccomandazione", "consiglieresti",
            "score", "voto", "punteggio", "rating", "valutazione"),
    "csat": ("csat", "satisfaction", "soddisfazione", "csat_score", "stelle", "stars"),
    "ces": ("ces", "effort", "customer_effort", "sforzo", "ces_score"),
    "kind": ("kind", "type", "tipo"),
    "language": ("language", "lang", "lingua", "locale"),
}
#: names that say "a score" without saying which: NPS unless every sampled answer sits in 1-5 (a star rating: CSAT)
_GENERIC_SCORES = ("score", "voto", "punteggio", "rating", "valutazione")
_SEGMENT_GUESSES = ("region", "regione", "segment", "segmento", "store", "negozio", "product", "prodotto", "country",
                    "paese", "brand", "area", "city", "città", "citta", "cliente", "customer", "customer_type",
                    "tipo_cliente", "fascia", "tier", "plan", "piano", "categoria", "category", "reparto", "department")
#: share of a sample's non-empty values that must fit a role for a column's name to give it the role (the rest
#: become row warnings, which the mapping summary counts); below it the values contradict the name
FIT_SHARE = 0.8
#: the same for a role given by the values alone, without a name saying so (a column of comment/chat values)
VALUES_ONLY_SHARE = 0.95
#: a column with at most this many distinct values, each repeated, is offered as a segment and ticked
SEGMENT_MAX_VALUES = 20
#: segments ticked by default (the dashboard breaks results down by each)
SEGMENTS_TICKED = 5
#: how many sample values a column profile keeps to show
_TOP_VALUES = 5
_LANGUAGE_NAMES = {"italiano": "it", "italian": "it", "inglese": "en", "english": "en", "tedesco": "de",
                   "german": "de", "deutsch": "de", "francese": "fr", "french": "fr", "français": "fr",
                   "spagnolo": "es", "spanish": "es", "español": "es"}


def language_code(value: Any) -> str | None:
    """An ISO 639 code from a language cell ('it', 'it-IT', 'en_GB', 'Italiano'); None when it is none."""
    raw = _text_of(value).lower()
    if raw in _LANGUAGE_NAMES:
        return _LANGUAGE_NAMES[raw]
    code = raw.replace("_", "-").split("-")[0]
    return code if 2 <= len(code) <= 3 and code.isascii() and code.isalpha() else None


class ColumnProfile(BaseModel):
    """What a sample of one column's values shows: the evidence its role is guessed from, and the counts the
    mapping summary states ("12 values out of range will be ignored")."""

    column: str
    values: int = Field(description="Non-empty values in the sample.")
    empty: int
    distinct: int
    wordy: int = Field(description="Values with at least three letters (a comment, a label).")
    mean_chars: float
    numbers: int = Field(description="Values that are numbers.")
    nps: int = Field(description="Whole numbers 0-10.")
    csat: int = Field(description="Whole numbers 1-5.")
    ces: int = Field(description="Whole numbers 1-7.")
    dates_dayfirst: int = Field(description="Values read as dates, 03/05 being 3 May.")
    dates_monthfirst: int = Field(description="Values read as dates, 03/05 being 5 March.")
    date_like: int = Field(description="Dates written as dates (not a bare number an Excel serial could be).")
    kinds: int = Field(description="Values naming a comment or a chat (comment, chat, commento, conversazione...).")
    languages: int = Field(description="Values naming a language (it, en-GB, Italiano).")
    top: list[str] = Field(description="The most frequent values, most frequent first.")

    def fit(self, role: str, dayfirst: bool = True) -> int:
        """How many of the sample's values the role reads (the rest become warnings or are ignored)."""
        if role in ("nps", "csat", "ces", "kind"):
            return int(getattr(self, role if role != "kind" else "kinds"))
        if role == "date":
            return self.dates_dayfirst if dayfirst else self.dates_monthfirst
        if role == "language":
            return self.languages
        if role == "text":
            return self.values
        return self.values


def _score_fits(v: Any, lo: int, hi: int) -> bool:
    try:
        parse_score(v, lo, hi)
    except (ValueError, TypeError, OverflowError):
        return False
    return True


_BARE_NUMBER = re.compile(r"\s*\d+(?:[.,]\d+)?\s*")


def _date_fits(v: Any, dayfirst: bool) -> bool:
    if isinstance(v, str) and (len(v) > 40 or not v.strip()[:1].isdigit()
                               or (_BARE_NUMBER.fullmatch(v) and len(v.strip()) != 8)):
        # every date format we read starts with a digit and is no bare number but yyyymmdd: no parse tried
        return False
    try:
        parse_date(v, dayfirst)
    except (ValueError, TypeError, OverflowError):
        return False
    return True


def _is_number(v: Any) -> bool:
    if isinstance(v, bool):
        return False
    if isinstance(v, int | float):
        return True
    try:
        float(str(v).strip().replace(",", "."))
    except ValueError:
        return False
    return True


def profile_columns(columns: list[str], rows: list[dict[str, Any]]) -> dict[str, ColumnProfile]:
    """Each column's profile over the sample ``rows`` (a preview's first rows).  Each distinct cell is checked once
    and counted as often as it occurs (a segment column of 200 rows holds a handful of values)."""
    out: dict[str, ColumnProfile] = {}
    for c in columns:
        cells = [r.get(c) for r in rows]
        filled: dict[tuple[str, str], tuple[Any, int]] = {}  # (type, text) -> (a value, how many)
        for v in cells:
            if v in (None, "") or (isinstance(v, str) and not v.strip()):
                continue
            key = (type(v).__name__, v if isinstance(v, str) else repr(v))
            found = filled.get(key)
            filled[key] = (v, found[1] + 1 if found else 1)
        texts: dict[str, int] = {}
        for v, n in filled.values():
            t = _text_of(v)
            texts[t] = texts.get(t, 0) + n

        def count(fits: Any, filled: dict[tuple[str, str], tuple[Any, int]] = filled) -> int:
            return sum(n for v, n in filled.values() if fits(v))

        values = sum(n for _, n in filled.values())
        out[c] = ColumnProfile(
            column=c, values=values, empty=len(cells) - values, distinct=len(texts),
            wordy=sum(n for t, n in texts.items() if sum(ch.isalpha() for ch in t) >= 3),
            mean_chars=round(sum(len(t) * n for t, n in texts.items()) / values, 1) if values else 0.0,
            numbers=count(_is_number),
            nps=count(lambda v: _score_fits(v, 0, 10)),
            csat=count(lambda v: _score_fits(v, 1, 5)),
            ces=count(lambda v: _score_fits(v, 1, 7)),
            dates_dayfirst=count(lambda v: _date_fits(v, True)),
            dates_monthfirst=count(lambda v: _date_fits(v, False)),
            date_like=count(lambda v: not _is_number(v) and _date_fits(v, True)),
            kinds=sum(n for t, n in texts.items() if t.lower() in _KINDS),
            languages=count(lambda v: language_code(v) is not None),
            top=[t[:40] for t, _ in sorted(texts.items(), key=lambda kv: -kv[1])[:_TOP_VALUES]],
        )
    return out


def _fits(role: str, p: ColumnProfile | None, share: float) -> bool:
    """Whether the sampled values bear the role out (no sample, or no value in it: nothing contradicts a name)."""
    if p is None or p.values == 0:
        return True
    need = share * p.values
    if role == "text":
        return p.wordy >= 0.5 * p.values
    if role == "id":
        return p.distinct >= 0.95 * p.values and p.mean_chars <= 64
    if role == "channel":
        categorical = p.mean_chars <= 40 and p.numbers < 0.5 * p.values and p.date_like < 0.5 * p.values
        return categorical and p.kinds < VALUES_ONLY_SHARE * p.values  # comment/chat values: the kind
    if role == "date":
        return max(p.dates_dayfirst, p.dates_monthfirst) >= need
    return p.fit(role) >= need


def _categorical(p: ColumnProfile | None, named: bool) -> bool:
    """A low-cardinality column whose values repeat: a breakdown an analyst would tick (a name like 'regione'
    lets numbers through: store numbers are segments; otherwise a column of numbers is more likely a score)."""
    if p is None:
        return named
    if p.values == 0 or p.distinct > SEGMENT_MAX_VALUES or p.mean_chars > 40:
        return False
    if p.date_like >= 0.5 * p.values:
        return False
    if not named and (p.numbers >= 0.5 * p.values or p.distinct < 2):
        return False
    return p.values < 4 or p.distinct <= max(2, p.values // 2)


def _hints(key: str, names: tuple[str, ...]) -> tuple[int, str] | None:
    """(strength, the name matched) of a normalised column name against a role's names: whole name 3,
    first word 2 ("id_risposta"), last word 1 ("commento_cliente"); None when none matches."""
    for n in names:
        if key == n:
            return 3, n
    for n in names:
        if key.startswith(n + "_"):
            return 2, n
    for n in names:
        if key.endswith("_" + n):
            return 1, n
    return None


def _norm(name: str) -> str:
    return re.sub(r"[^a-z0-9à-ù]+", "_", name.strip().lower()).strip("_")


def guess_mapping(columns: list[str], rows: list[dict[str, Any]] | None = None) -> ColumnMapping | None:
    """Best guess of each column's role: a name hint (IT/EN) gives a role only when the sampled values bear it out
    (a 'Tipo cliente' of Fidelity/Standard is no comment/chat ``kind``), a few roles come from the values alone
    (the longest texts, comment/chat values, dates written as dates), and low-cardinality columns left over are
    segments.  Without ``rows`` the names decide (nothing contradicts them)."""
    profiles = profile_columns(columns, rows) if rows else {}
    normed = {c: _norm(c) for c in columns}
    picked: dict[str, str] = {}

    def free(col: str) -> bool:
        return col not in picked.values()

    candidates = []  # (strength, role order, column order, role, column, name matched)
    for r_i, (role, names) in enumerate(_GUESSES.items()):
        for c_i, col in enumerate(columns):
            hint = _hints(normed[col], names)
            if hint is not None:
                candidates.append((-hint[0], r_i, c_i, role, col, hint[1]))
    for *_, role, col, name in sorted(candidates):
        if role in picked or not free(col):
            continue
        p = profiles.get(col)
        if role == "nps" and name in _GENERIC_SCORES and p is not None and p.values >= 5 and p.csat == p.values:
            role = "csat"  # every answer 1-5: a star rating, not a 0-10 recommendation
            if role in picked:
                continue
        if _fits(role, p, FIT_SHARE):
            picked[role] = col
    if rows and "text" not in picked:  # no name says so: the column with the longest texts
        def wordy(v: Any) -> int:  # only text with letters counts: ids, scores and dates are not comments
            v = str(v or "")
            return len(v) if sum(ch.isalpha() for ch in v) >= 3 else 0

        lengths = {c: sum(wordy(r.get(c)) for r in rows) for c in columns if free(c)}
        best = max(lengths, key=lambda c: lengths[c], default=None)
        if best and lengths[best] > 0:
            picked["text"] = best
    if "text" not in picked:
        return None
    for role, count in (("kind", "kinds"), ("date", "date_like"), ("language", "languages")):
        if role in picked:
            continue
        for col in columns:  # from the values alone: strong evidence only
            p = profiles.get(col)
            if free(col) and p is not None and p.values >= 3 and getattr(p, count) >= VALUES_ONLY_SHARE * p.values \
                    and (role != "language" or p.distinct <= 10):
                picked[role] = col
                break
    named = [c for c in columns if free(c) and _hints(normed[c], _SEGMENT_GUESSES) and _categorical(profiles.get(c), True)]
    others = [c for c in columns if free(c) and c not in named and rows and _categorical(profiles.get(c), False)]
    return ColumnMapping.model_validate({**picked, "segments": (named + others)[:SEGMENTS_TICKED]})


class SummaryItem(BaseModel):
    """What one role of a mapping will do, said as a code and parameters (the page's words: ``summary.*`` keys of
    ``static/i18n.js``) and in English."""

    role: str = Field(description="A role of the mapping, 'segment', or 'ignored' (columns no role reads).")
    columns: list[str]
    code: str
    params: dict[str, Any]
    message: str


_SUMMARY_EN = {
    "summary.text": "{column} → text analysed; {empty} of {sample} preview rows empty (not analysed)",
    "summary.score": "{column} → {role} {lo}–{hi}; {invalid} of {values} preview values out of range or not a "
                     "whole number (ignored)",
    "summary.date": "{column} → date ({order}); {invalid} of {values} preview values not a date (ignored)",
    "summary.id": "{column} → row id; {duplicates} repeated in the preview",
    "summary.channel": "{column} → channel (where feedback was collected); {distinct} values in the preview",
    "summary.kind": "{column} → comment or chat; {invalid} of {values} preview values neither (read as comments)",
    "summary.language": "{column} → language; {invalid} of {values} preview values not a language code (detected)",
    "summary.segment": "{column} → segment (results broken down by it); {distinct} values in the preview",
    "summary.ignored": "not used: {columns}",
}
_SCALES = {"nps": (0, 10), "csat": (1, 5), "ces": (1, 7)}


def mapping_summary(mapping: ColumnMapping, columns: list[str], rows: list[dict[str, Any]]) -> list[SummaryItem]:
    """What each role of ``mapping`` will do with the file, counted on the sample ``rows``; the page shows the
    same (static/upload.js computes it again from the profiles as the analyst changes the mapping)."""
    profiles = profile_columns(columns, rows)
    out: list[SummaryItem] = []

    def add(what: str, cols: list[str], code: str, **params: Any) -> None:
        out.append(SummaryItem(role=what, columns=cols, code=code, params=params,
                               message=_SUMMARY_EN[code].format(**params)))

    sample = len(rows)
    for role in ("text", "nps", "csat", "ces", "date", "id", "channel", "kind", "language"):
        col = getattr(mapping, role)
        if not col or col not in profiles:
            continue
        p = profiles[col]
        if role == "text":
            add(role, [col], "summary.text", column=col, empty=p.empty, sample=sample)
        elif role in _SCALES:
            lo, hi = _SCALES[role]
            add(role, [col], "summary.score", column=col, role=role, lo=lo, hi=hi, values=p.values,
                invalid=p.values - p.fit(role))
        elif role == "date":
            add(role, [col], "summary.date", column=col, values=p.values, invalid=p.values - p.fit(role, mapping.dayfirst),
                order="day-first" if mapping.dayfirst else "month-first")
        elif role == "id":
            add(role, [col], "summary.id", column=col, duplicates=p.values - p.distinct)
        elif role == "channel":
            add(role, [col], "summary.channel", column=col, distinct=p.distinct)
        else:
            add(role, [col], f"summary.{role}", column=col, values=p.values, invalid=p.values - p.fit(role))
    for col in mapping.segments:
        if col in profiles:
            add("segment", [col], "summary.segment", column=col, distinct=profiles[col].distinct)
    used = set(mapping.columns())
    ignored = [c for c in columns if c not in used]
    if ignored:
        add("ignored", ignored, "summary.ignored", columns=", ".join(ignored))
    return out


def check_mapping(mapping: ColumnMapping, columns: list[str]) -> None:
    missing = [c for c in mapping.columns() if c not in columns]
    if missing:
        raise UploadError(f"mapped column(s) {missing} not in the file; its columns are {columns}",
                          "upload.unknown_columns", columns=", ".join(missing))


# --------------------------------------------------------------- row parse
@dataclass
class PreparedRow:
    """One record turned into a document (or an error) plus the facts KPIs need."""

    row: int
    doc: DocumentInput | DocumentError
    original: dict[str, Any]
    warnings: list[str]
    date: dt.date | None = None
    channel: str | None = None
    nps: int | None = None
    csat: int | None = None
    ces: int | None = None
    segments: dict[str, str] = field(default_factory=dict)


def _cell(v: Any) -> Any:
    """JSON-safe, database-safe copy of an original cell: no NaN/Infinity, no NUL (dropped) nor lone surrogates
    or non-characters (U+FFFD): PostgreSQL stores no NUL, and a lone surrogate cannot even be encoded."""
    if isinstance(v, str):
        return clean_text(v.replace("\x00", ""))[0]
    if isinstance(v, bool) or v is None or isinstance(v, int):
        return v
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    if isinstance(v, dt.datetime):
        return v.isoformat(sep=" ")
    if isinstance(v, dt.date | dt.time):
        return v.isoformat()
    if isinstance(v, list):
        return [_cell(x) for x in v]
    if isinstance(v, dict):
        return {_cell(str(k)): _cell(x) for k, x in v.items()}
    return _cell(str(v))


def _dirty(v: Any) -> bool:
    """Whether :func:`_cell` has invalid characters to drop or replace in ``v``."""
    if isinstance(v, str):
        return clean_text(v)[1] > 0
    if isinstance(v, list):
        return any(_dirty(x) for x in v)
    if isinstance(v, dict):
        return any(_dirty(k) or _dirty(x) for k, x in v.items())
    return False


def _text_of(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        if not math.isfinite(v):
            return ""
        if v.is_integer():
            return str(int(v))
    return _cell(str(v)).strip()


def parse_score(v: Any, lo: int, hi: int) -> int:
    """'9', 9, 9.0, '9,0', '9/10' → 9; anything else (or out of range) raises ValueError."""
    if isinstance(v, bool):
        raise ValueError(v)
    if isinstance(v, int | float):
        x = float(v)
    else:
        s = str(v).strip().replace(",", ".")
        s = re.sub(r"\s*/\s*\d+$", "", s)
        x = float(s)
    if not x.is_integer() or not lo <= x <= hi:
        raise ValueError(v)
    return int(x)


_DATE_FORMATS_DAYFIRST = ("%d/%m/%Y", "%d-%m-%Y", "%d.%m.%Y", "%d/%m/%y", "%Y/%m/%d", "%m/%d/%Y")
_DATE_FORMATS_MONTHFIRST = ("%m/%d/%Y", "%m-%d-%Y", "%m/%d/%y", "%Y/%m/%d", "%d/%m/%Y", "%d.%m.%Y")


def parse_date(v: Any, dayfirst: bool = True) -> dt.date:
    if isinstance(v, dt.datetime):
        return v.date()
    if isinstance(v, dt.date):
        return v
    if isinstance(v, int | float) and 20000 < float(v) < 80000:  # an Excel serial date kept as a number
        return dt.date(1899, 12, 30) + dt.timedelta(days=int(v))
    s = str(v).strip()
    try:
        return dt.datetime.fromisoformat(s.replace("Z", "+00:00")).date()
    except ValueError:
        pass
    head = s.split(" ")[0].split("T")[0]
    for fmt in _DATE_FORMATS_DAYFIRST if dayfirst else _DATE_FORMATS_MONTHFIRST:
        try:
            return dt.datetime.strptime(head, fmt).date()
        except ValueError:
            continue
    raise ValueError(v)


_KINDS = {"chat": "chat", "transcript": "chat", "conversation": "chat", "conversazione": "chat",
          "comment": "comment", "commento": "comment", "survey": "comment", "review": "comment"}


def prepare_row(row: int, record: dict[str, Any] | UploadRowError, mapping: ColumnMapping) -> PreparedRow:
    """Record → document + facts.  Bad scores/dates become warnings (the text is still analysed);
    a row with no text or an unreadable record becomes a per-row error."""
    default_id = f"row-{row + 1}"
    if isinstance(record, UploadRowError):
        err = DocumentError(id=default_id, error={"code": "UnreadableRow", "message": record.message})
        return PreparedRow(row, err, {}, [])
    warnings: list[str] = [str(record[k]) for k in _NOTES if k in record]
    dirty = [str(k) for k, v in record.items() if k not in _NOTES and (_dirty(v) or _dirty(str(k)))]
    if dirty:
        warnings.append(row_warning("row.invalid_characters", columns=_columns(dirty)))
    record = {_key(k): _cell(v) for k, v in record.items() if k not in _NOTES}
    original = record
    doc_id = _text_of(record.get(mapping.id)) if mapping.id else ""
    doc_id = (doc_id or default_id)[:128]
    out = PreparedRow(row, DocumentError(id=doc_id, error={}), original, warnings)

    def score(role: str, lo: int, hi: int) -> int | None:
        col = getattr(mapping, role)
        if not col or record.get(col) in (None, ""):
            return None
        try:
            return parse_score(record[col], lo, hi)
        except (ValueError, TypeError):
            warnings.append(row_warning("value.score", role=role, value=str(record[col])[:40], lo=lo, hi=hi))
            return None

    out.nps, out.csat, out.ces = score("nps", 0, 10), score("csat", 1, 5), score("ces", 1, 7)
    if mapping.date and record.get(mapping.date) not in (None, ""):
        try:
            out.date = parse_date(record[mapping.date], mapping.dayfirst)
        except (ValueError, TypeError, OverflowError):
            warnings.append(row_warning("value.date", value=str(record[mapping.date])[:40]))
    if mapping.channel:
        out.channel = _text_of(record.get(mapping.channel))[:64] or None
    out.segments = {c: _text_of(record.get(c))[:128] or "(empty)" for c in mapping.segments}

    raw_text = record.get(mapping.text)
    if raw_text in (None, "") and isinstance(record.get("turns"), list):
        raw_text = record["turns"]  # a JSONL chat row ({"turns": [...]}) among comment rows ({"text": ...})
    data: dict[str, Any] = {"id": doc_id, "channel": out.channel}
    if isinstance(raw_text, list):  # JSONL chats may carry turns
        data["turns"], data["kind"] = raw_text, "chat"
    else:
        data["text"] = _text_of(raw_text)
        if not data["text"]:
            message = ROW_ERRORS["EmptyText"].format(column=mapping.text)  # the column: the page's words
            out.doc = DocumentError(id=doc_id, error={"code": "EmptyText", "message": message, "column": mapping.text})
            return out
    if mapping.kind and record.get(mapping.kind) not in (None, ""):
        kind = _KINDS.get(_text_of(record[mapping.kind]).lower())
        if kind:
            data["kind"] = kind
        else:
            warnings.append(row_warning("value.kind", value=str(record[mapping.kind])[:40]))
    if mapping.language and record.get(mapping.language) not in (None, ""):
        lang = language_code(record[mapping.language])
        if lang:
            data["language"] = lang
        else:
            warnings.append(row_warning("value.language", value=str(record[mapping.language])[:20]))
    try:
        out.doc = DocumentInput.model_validate({k: v for k, v in data.items() if v is not None})
    except ValidationError as exc:
        out.doc = DocumentError(id=doc_id, error={"code": "InvalidInput", "message": validation_message(exc)})
    return out


def _columns(names: list[str]) -> str:
    shown = ", ".join(repr(_cell(n)) for n in names[:5])
    return f"column(s) {shown}" + (f" and {len(names) - 5} more" if len(names) > 5 else "")


def preview_rows(table: Table, n: int = 5) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for rec in table.records():
        if isinstance(rec, UploadRowError):
            continue
        rows.append({_key(k): _cell(v) for k, v in rec.items() if k not in _NOTES})
        if len(rows) >= n:
            break
    return rows
