"""Property tests of the upload readers (:mod:`voce.service.uploads`): whatever a file holds, the readers raise
nothing but :class:`UploadError`, and every row written comes back exactly once (rows out + reported row errors =
rows in), with the values as written where the format can carry them.

Bounded for CI: a fixed number of examples per property, derandomized (the same examples every run, no example
database), no deadline (the machine is shared).  RELIABILITY.md lists what is tried here.
"""
from __future__ import annotations

import codecs
import csv
import datetime as dt
import io
import json
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from voce.models.types import DocumentError, DocumentInput
from voce.service.uploads import (
    OVERFLOW,
    QUOTING,
    ColumnMapping,
    UploadError,
    UploadRowError,
    check_mapping,
    detect_format,
    guess_mapping,
    open_table,
    prepare_row,
    preview_rows,
)

BOUNDED = settings(
    max_examples=150, deadline=None, derandomize=True, database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large],
)
NOTES = (OVERFLOW, QUOTING)
DELIMITERS = (",", ";", "\t", "|")

# text a survey export may hold in a cell: letters (accents, other scripts, emoji), digits, punctuation, quotes,
# the delimiters themselves and spaces; no control characters (a file of those is refused as binary, on purpose)
_CELL_CHARS = st.characters(
    codec="utf-8", exclude_categories=("Cc", "Cs", "Co", "Cn", "Zl", "Zp"), exclude_characters="\ufeff\ufffd"
)
# ... and in a CSV cell also tabs and line breaks (a quoted field over several lines, as CSV allows)
_CSV_CELL = st.lists(st.one_of(_CELL_CHARS, st.sampled_from(["\t", "\n", "\r\n", '"'])), max_size=20).map("".join)
cell_text = st.text(_CELL_CHARS, max_size=30)
# header names as a reader returns them: stripped, non-empty, distinct
header_name = st.text(st.characters(codec="utf-8", categories=("L", "N"), include_characters="_ -"), min_size=1,
                      max_size=12).map(str.strip).filter(bool)


def _tmp(suffix: str, data: bytes) -> Path:
    folder = Path(tempfile.mkdtemp(prefix="voce-prop-"))
    path = folder / f"upload{suffix}"
    path.write_bytes(data)
    return path


def _records(path: Path, fmt: Any) -> tuple[list[str], list[dict[str, Any] | UploadRowError], int]:
    table = open_table(path, fmt)
    records = list(table.records())
    return table.columns, records, table.count()


def _prepared_one_each(records: list[dict[str, Any] | UploadRowError], mapping: ColumnMapping) -> None:
    """Every record becomes exactly one prepared row, a document or a per-row error, in order."""
    prepared = [prepare_row(i, rec, mapping) for i, rec in enumerate(records)]
    assert [p.row for p in prepared] == list(range(len(records)))
    assert all(isinstance(p.doc, DocumentInput | DocumentError) for p in prepared)


# ------------------------------------------------------------------ CSV
@st.composite
def csv_tables(draw: st.DrawFn) -> tuple[list[str], list[list[str]]]:
    header = draw(st.lists(header_name, min_size=1, max_size=5, unique=True))
    rows = draw(st.lists(st.lists(_CSV_CELL, min_size=len(header), max_size=len(header)), max_size=12))
    return header, rows


@BOUNDED
@given(csv_tables(), st.sampled_from(DELIMITERS), st.sampled_from(["utf-8", "utf-8-sig", "utf-16", "cp1252"]),
       st.sampled_from(["\r\n", "\n"]))
def test_csv_round_trip(table: tuple[list[str], list[list[str]]], delimiter: str, encoding: str, eol: str) -> None:
    """A CSV as Excel or a survey tool writes it (quoted where needed) reads back cell for cell, any delimiter,
    any of the encodings we accept; a row of blank cells is the only row skipped (documented)."""
    header, rows = table
    # a delimiter that occurs in the header names would be read as two columns: not what a tool writes
    assume(not any(d in h for h in header for d in DELIMITERS))
    buf = io.StringIO()
    w = csv.writer(buf, delimiter=delimiter, lineterminator=eol)
    w.writerow(header)
    w.writerows(rows)
    try:
        data = buf.getvalue().encode(encoding)
    except UnicodeEncodeError:
        assume(False)
    path = _tmp(".csv", data)
    columns, records, count = _records(path, "csv")
    assert columns == header
    expected = [r for r in rows if any(c.strip() for c in r)]
    assert count == len(records) == len(expected)
    for got, want in zip(records, expected, strict=True):
        assert isinstance(got, dict)
        assert not any(k in got for k in NOTES), got
        assert [got[h] for h in header] == want
    _prepared_one_each(records, ColumnMapping(text=header[0]))


def test_csv_delimiter_comes_from_the_header_line(tmp_path: Path) -> None:
    """Comments pasted with a trailing tab, quoted by the exporting tool: still two columns, split on the comma
    (the sniffer guessed tab from the quoted cells; found by test_csv_round_trip)."""
    path = tmp_path / "survey.csv"
    path.write_text('commento,nps\r\n"""Ottimo""\t",9\r\n"""Male""\t",2\r\n', "utf-8")
    table = open_table(path, "csv")
    assert table.columns == ["commento", "nps"]
    assert list(table.records()) == [{"commento": '"Ottimo"\t', "nps": "9"}, {"commento": '"Male"\t', "nps": "2"}]


_PLAIN = st.text(st.characters(codec="utf-8", categories=("L", "N"), include_characters=" .!?'-"), max_size=15)


@st.composite
def broken_quote_lines(draw: st.DrawFn) -> tuple[str, list[str], list[list[str]]]:
    """A CSV whose data lines may each open a quote that is never closed (a comment typed as ``"great``).

    A stray quote is only ever put at the start of a field and followed by a letter, so no two lines can form a
    valid quoted field together: every line is one row by any reading."""
    delimiter = draw(st.sampled_from([",", ";"]))
    header = draw(st.lists(st.sampled_from(["id", "commento", "nps", "data", "regione"]), min_size=2, max_size=4,
                           unique=True))
    lines, cells = [], []
    for _ in range(draw(st.integers(1, 12))):
        row = draw(st.lists(_PLAIN, min_size=len(header), max_size=len(header)))
        row = [c if c.strip() else "x" for c in row]  # no blank row (those are skipped by design)
        if draw(st.booleans()):
            k = draw(st.integers(0, len(row) - 1))
            row[k] = '"' + draw(st.sampled_from("abcdxyzàè")) + row[k]
        cells.append(row)
        lines.append(delimiter.join(row))
    return delimiter.join(header) + "\n" + "\n".join(lines) + "\n", header, cells


@BOUNDED
@given(broken_quote_lines())
def test_csv_unclosed_quotes_lose_and_merge_no_row(case: tuple[str, list[str], list[list[str]]]) -> None:
    """An unclosed quote used to merge the following lines into one row (5 rows read as 2): now every line is
    its own row and the one with the stray quote carries a warning."""
    text, header, cells = case
    path = _tmp(".csv", text.encode("utf-8"))
    columns, records, count = _records(path, "csv")
    assert columns == header
    assert count == len(records) == len(cells)
    for got, want in zip(records, cells, strict=True):
        assert isinstance(got, dict)
        quoted = any(c.startswith('"') for c in want)
        assert (QUOTING in got) == quoted, (got, want)
        if not quoted:
            assert [got[h] for h in header] == want
    _prepared_one_each(records, ColumnMapping(text=header[1]))


@BOUNDED
@given(st.binary(min_size=1, max_size=4000), st.sampled_from([".csv", ".txt", ".jsonl", ".dat", ""]))
def test_any_bytes_are_refused_or_read_never_a_crash(data: bytes, suffix: str) -> None:
    """Random bytes under a table's name: refused with an UploadError (binary, no header, no JSON object) or read
    as rows; never another exception, and every record is prepared into exactly one row."""
    path = _tmp(suffix, data)
    try:
        fmt = detect_format(path.name, data[:8])
        if fmt == "xlsx":
            fmt = "csv" if suffix else fmt  # a PK header only: exercised by the XLSX test below
        columns, records, count = _records(path, fmt)
    except UploadError:
        return
    assert count == len(records)
    assert columns
    _prepared_one_each(records, ColumnMapping(text=next((c for c in columns if c), "text")))


# ------------------------------------------------------------------ JSONL
_json_scalar = st.none() | st.booleans() | st.integers(-10**12, 10**12) | st.floats(allow_nan=False) | cell_text
_json_value = st.recursive(_json_scalar, lambda kids: st.lists(kids, max_size=3) | st.dictionaries(cell_text, kids,
                                                                                                     max_size=3),
                           max_leaves=8)
_json_object = st.dictionaries(header_name, _json_value, min_size=1, max_size=5)
_jsonl_line = st.one_of(
    _json_object.map(lambda o: ("object", o)),
    st.one_of(st.lists(_json_scalar, max_size=3), _json_scalar).map(lambda v: ("not-an-object", v)),
    st.text(st.characters(codec="utf-8", exclude_categories=("Cc", "Cs", "Zl", "Zp")), min_size=1, max_size=20)
    .filter(lambda s: s.strip() != "" and not _is_json(s)).map(lambda s: ("garbage", s)),
    st.sampled_from(["", "   "]).map(lambda s: ("blank", s)),
)


def _is_json(s: str) -> bool:
    try:
        json.loads(s)
    except ValueError:
        return False
    return True


@BOUNDED
@given(st.lists(_jsonl_line, min_size=1, max_size=15), st.booleans())
def test_jsonl_every_line_is_a_row_or_a_reported_row_error(lines: list[tuple[str, Any]], ascii_only: bool) -> None:
    """Objects come back as written; a line that is not a JSON object is a per-row error in its place (with its
    line number); blank lines are not rows.  Rows in = records out."""
    text = "\n".join(v if kind in ("garbage", "blank") else json.dumps(v, ensure_ascii=ascii_only)
                     for kind, v in lines) + "\n"
    path = _tmp(".jsonl", text.encode("utf-8"))
    try:
        columns, records, count = _records(path, "jsonl")
    except UploadError as exc:
        assert not any(kind == "object" for kind, _ in lines[:200]), exc
        return
    rows = [(n, kind, v) for n, (kind, v) in enumerate(lines, start=1) if kind != "blank"]
    assert count == len(records) == len(rows)
    for got, (n, kind, v) in zip(records, rows, strict=True):
        if kind == "object":
            assert got == v
        else:
            assert isinstance(got, UploadRowError) and f"line {n}:" in got.message
    first_keys = [k for kind, v in lines if kind == "object" for k in v]
    assert set(columns) <= set(first_keys)
    _prepared_one_each(records, ColumnMapping(text=columns[0] or "text"))


@BOUNDED
@given(st.lists(st.dictionaries(st.text(max_size=6), st.text(max_size=12) | st.lists(st.text(max_size=8), max_size=2),
                                min_size=1, max_size=4), min_size=1, max_size=8))
def test_jsonl_invalid_unicode_never_fails(objects: list[dict[str, Any]]) -> None:
    """Keys and values with lone surrogates, NULs and non-characters (as ``\\ud800`` escapes): read, prepared
    (cleaned, with a warning), never an exception."""
    path = _tmp(".jsonl", "\n".join(json.dumps(o) for o in objects).encode("ascii"))
    try:
        columns, records, count = _records(path, "jsonl")
    except UploadError:
        assert all(not o for o in objects)
        return
    assert count == len(records) == len(objects)
    for col in [c for c in columns if c] or ["text"]:
        _prepared_one_each(records, ColumnMapping(text=col))
    prepared = [prepare_row(i, r, ColumnMapping(text=columns[0] or "text")) for i, r in enumerate(records)]
    for p in prepared:
        json.dumps(p.original, ensure_ascii=False).encode("utf-8")  # storable as UTF-8 (no lone surrogate left)


# ------------------------------------------------------------------ XLSX
_xlsx_cell = st.one_of(
    st.none(),
    st.text(st.characters(codec="utf-8", exclude_categories=("Cc", "Cs", "Co", "Cn")), max_size=20)
    .filter(lambda s: s.strip() != "" and not s.startswith("=")),
    st.integers(-10**9, 10**9),
    st.floats(allow_nan=False, allow_infinity=False, min_value=-1e12, max_value=1e12),
    st.booleans(),
    st.dates(dt.date(1950, 1, 1), dt.date(2090, 12, 31)).map(lambda d: dt.datetime(d.year, d.month, d.day)),
)


@settings(BOUNDED, max_examples=40)
@given(st.lists(header_name, min_size=1, max_size=4, unique=True), st.data())
def test_xlsx_round_trip(header: list[str], data: st.DataObject) -> None:
    """A workbook's first sheet reads back value for value (numbers, booleans, dates, text); rows with no value are
    the only rows skipped (documented)."""
    from openpyxl import Workbook

    rows = data.draw(st.lists(st.lists(_xlsx_cell, min_size=len(header), max_size=len(header)), max_size=10))
    wb = Workbook()
    ws = wb.active
    ws.append(header)
    for r in rows:
        ws.append(r)
    buf = io.BytesIO()
    wb.save(buf)
    path = _tmp(".xlsx", buf.getvalue())
    columns, records, count = _records(path, "xlsx")
    assert columns == header
    expected = [r for r in rows if any(v not in (None, "") for v in r)]
    assert count == len(records) == len(expected)
    for got, want in zip(records, expected, strict=True):
        assert isinstance(got, dict)
        assert {h: _same(v) for h, v in zip(header, want, strict=True) if v is not None} == {
            h: _same(_back(v)) for h, v in got.items()
        }
    _prepared_one_each(records, ColumnMapping(text=header[0]))


def _same(v: Any) -> Any:
    """A value compared as a spreadsheet keeps it: a number to 15 significant digits (what Excel and openpyxl
    write; 2.0 may come back as 2, -0.0 as 0)."""
    return ("number", f"{float(v) + 0.0:.15g}") if isinstance(v, int | float) and not isinstance(v, bool) else v


def _back(v: Any) -> Any:
    """A value as the workbook held it (a reader may give dates as ISO text in its normalised rows)."""
    if isinstance(v, str):
        try:
            return dt.datetime.fromisoformat(v) if len(v) >= 10 and v[4] == "-" and v[7] == "-" else v
        except ValueError:
            return v
    return v


@settings(BOUNDED, max_examples=30)
@given(st.binary(max_size=3000))
def test_xlsx_garbage_is_an_upload_error(tail: bytes) -> None:
    """A file that starts like a zip (or is any bytes) named .xlsx: an UploadError naming the problem, nothing else."""
    path = _tmp(".xlsx", b"PK\x03\x04" + tail)
    try:
        _records(path, "xlsx")
    except UploadError:
        return


# ------------------------------------------------------------------ mapping
_column_names = st.lists(
    st.one_of(st.sampled_from(["id", "ID", "commento", "Comment", "testo", "nps", "NPS score", "data", "date",
                               "canale", "channel", "regione", "store", "csat", "ces", "lingua", "kind", "turns",
                               "id_risposta", "voto_nps", "text", "row_id", "", " "]),
              st.text(max_size=12)),
    max_size=10, unique=True,
)


@BOUNDED
@given(_column_names, st.data())
def test_guessed_mapping_names_only_real_columns_once(columns: list[str], data: st.DataObject) -> None:
    """The guess never raises, names only columns the file has, gives each column one role at most, and round
    trips through its JSON form (what the page sends back)."""
    rows = data.draw(st.lists(st.fixed_dictionaries({c: cell_text for c in columns}), max_size=4))
    guess = guess_mapping(columns, rows)
    if guess is None:
        return
    check_mapping(guess, columns)  # raises UploadError for a column the file does not have
    roles = [getattr(guess, r) for r in ("text", "id", "date", "channel", "nps", "csat", "ces", "kind", "language")]
    used = [c for c in roles if c] + guess.segments
    assert len(used) == len(set(used))
    assert ColumnMapping.model_validate(json.loads(guess.model_dump_json())) == guess


@BOUNDED
@given(st.dictionaries(st.text(max_size=8), _json_value, max_size=6), st.data())
def test_prepare_row_any_record_any_mapping(record: dict[str, Any], data: st.DataObject) -> None:
    """Any record under any mapping of its columns is one row: a document, or a per-row error; never raises."""
    names = sorted(record) or ["text"]
    pick = st.none() | st.sampled_from(names)
    mapping = ColumnMapping(
        text=data.draw(st.sampled_from(names).filter(bool) | st.just("text")),
        id=data.draw(pick), date=data.draw(pick), nps=data.draw(pick), csat=data.draw(pick), channel=data.draw(pick),
        kind=data.draw(pick), language=data.draw(pick), segments=data.draw(st.lists(st.sampled_from(names), max_size=2)),
    )
    p = prepare_row(7, record, mapping)
    assert p.row == 7 and isinstance(p.doc, DocumentInput | DocumentError)
    json.dumps(p.original, ensure_ascii=False).encode("utf-8")


def test_preview_of_each_format_is_the_first_rows(tmp_path: Path) -> None:
    """The preview the page shows is the first records, in order, for every format (a fixed file each)."""
    rows = [{"id": str(i), "commento": f"riga {i}"} for i in range(8)]
    csv_path = tmp_path / "a.csv"
    csv_path.write_bytes(codecs.BOM_UTF8 + b"id;commento\n" + "".join(
        f"{r['id']};{r['commento']}\n" for r in rows).encode())
    jsonl_path = tmp_path / "a.jsonl"
    jsonl_path.write_text("".join(json.dumps(r) + "\n" for r in rows), "utf-8")
    for path, fmt in ((csv_path, "csv"), (jsonl_path, "jsonl")):
        assert preview_rows(open_table(path, fmt), 5) == rows[:5]  # type: ignore[arg-type]
