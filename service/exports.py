"""Batch results as JSONL, CSV or XLSX: the ``/v1/analyze`` object of every row plus its original columns.

JSONL and CSV stream page by page; XLSX (a zip) is written to a temporary file
with openpyxl's write-only mode, so memory stays flat for 100,000 rows too.
"""
from __future__ import annotations

import csv
import io
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from voce.service.jobs import BatchStore

#: flat columns appended after the original ones (prefixed so they never clash with a customer's column)
FLAT_COLUMNS = [
    "voce_row", "voce_id", "voce_status", "voce_language", "voce_sentiment", "voce_positive", "voce_neutral",
    "voce_negative", "voce_detractor_probability", "voce_topics", "voce_touchpoints", "voce_discovered_topic",
    "voce_warnings", "voce_error",
]


def _rows(store: BatchStore, batch_id: str) -> Iterator[Any]:
    return store.iter_rows(batch_id, columns=("row", "ok", "original", "result", "warnings", "discovered"))


def jsonl_lines(store: BatchStore, batch_id: str) -> Iterator[bytes]:
    buf: list[str] = []
    for r in _rows(store, batch_id):
        item = {"row": r.row, **r.result, "columns": r.original}
        if r.warnings:
            item["input_warnings"] = r.warnings
        if r.discovered is not None:
            item["discovered_topic"] = r.discovered
        buf.append(json.dumps(item, ensure_ascii=False))
        if len(buf) >= 500:
            yield ("\n".join(buf) + "\n").encode("utf-8")
            buf = []
    if buf:
        yield ("\n".join(buf) + "\n").encode("utf-8")


def flat_values(r: Any) -> list[Any]:
    res = r.result
    warnings = list(res.get("warnings", [])) + list(r.warnings or [])
    if not r.ok:
        err = res.get("error", {})
        return [r.row, res.get("id"), "error", None, None, None, None, None, None, None, None, None,
                "; ".join(warnings), f"{err.get('code')}: {err.get('message')}"]
    scores = res["sentiment"]["scores"]
    topics = "; ".join(f"{t['id']} ({t['sentiment']['label']})" for t in res.get("topics", []))
    touchpoints = "; ".join(t["id"] for t in res.get("touchpoints", []))
    return [
        r.row, res["id"], "ok", res["language"], res["sentiment"]["label"], scores["positive"], scores["neutral"],
        scores["negative"], res["detractor"]["probability"], topics, touchpoints, r.discovered, "; ".join(warnings), None,
    ]


def csv_chunks(store: BatchStore, batch_id: str, columns: list[str]) -> Iterator[bytes]:
    buf = io.StringIO()
    buf.write("\ufeff")  # so Excel reads accented Italian correctly
    w = csv.writer(buf)
    w.writerow(columns + FLAT_COLUMNS)
    for n, r in enumerate(_rows(store, batch_id), start=1):
        original = r.original or {}
        w.writerow([_csv_safe(_plain(original.get(c))) for c in columns] + [_csv_safe(v) for v in flat_values(r)])
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
    ws.append([_xlsx_cell(ws, c) for c in columns] + FLAT_COLUMNS)
    for r in _rows(store, batch_id):
        original = r.original or {}
        ws.append([_xlsx_cell(ws, _plain(original.get(c))) for c in columns] + [_xlsx_cell(ws, v) for v in flat_values(r)])
    wb.save(name)
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
