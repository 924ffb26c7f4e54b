"""Batch results as JSONL, CSV or XLSX: the ``/v1/analyze`` object of every row plus its original columns.

JSONL and CSV stream page by page; XLSX (a zip) is written to a temporary file with openpyxl's write-only mode,
so memory stays flat for 100,000 rows too.  What a row contributes is :mod:`.rows`'s business; this module only
knows the file formats (and how to keep a spreadsheet from running customer text as a formula).
"""
from __future__ import annotations

import csv
import io
import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from voce.service.batches import rows
from voce.service.batches.store import BatchStore
from voce.service.db import Batch
from voce.service.uploads import ColumnMapping, UploadError, open_table


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
    buf: list[str] = []
    for r in _rows(store, batch_id):
        buf.append(json.dumps(rows.export_item(r), ensure_ascii=False))
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
