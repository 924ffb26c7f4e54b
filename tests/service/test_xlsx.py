"""XLSX uploads read with every limit enforced while unzipping, and read once (service/xlsx.py, uploads.normalise_xlsx).

The malicious workbooks are built here, part by part, as small zips that inflate to far more than the limits of
these tests allow (the limits are low, so each refusal comes after a few megabytes at most).
"""
from __future__ import annotations

import datetime as dt
import zipfile
from collections.abc import Iterable
from pathlib import Path

import openpyxl
import pytest

from voce.service.uploads import UploadError, UploadLimitExceeded, normalise_xlsx, open_table
from voce.service.xlsx import MAX_ZIP_ENTRIES, XlsxLimitExceeded, XlsxLimits, read_first_sheet

_NS = 'xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"'
_R = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
_PARTS = {
    "[Content_Types].xml": (
        '<?xml version="1.0"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
        '<Default Extension="xml" ContentType="application/xml"/></Types>'
    ),
    "_rels/.rels": (
        '<?xml version="1.0"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
        f'<Relationship Id="rId1" Type="{_R}/officeDocument" Target="xl/workbook.xml"/></Relationships>'
    ),
    "xl/workbook.xml": (
        f'<?xml version="1.0"?><workbook {_NS} xmlns:r="{_R}"><sheets>'
        '<sheet name="survey" sheetId="1" r:id="rId1"/></sheets></workbook>'
    ),
    "xl/_rels/workbook.xml.rels": (
        '<?xml version="1.0"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
        f'<Relationship Id="rId1" Type="{_R}/worksheet" Target="worksheets/sheet1.xml"/>'
        f'<Relationship Id="rId2" Type="{_R}/sharedStrings" Target="sharedStrings.xml"/>'
        f'<Relationship Id="rId3" Type="{_R}/styles" Target="styles.xml"/></Relationships>'
    ),
}
HEADER_ROW = b'<row><c t="inlineStr"><is><t>commento</t></is></c></row>'


def workbook_zip(
    path: Path,
    sheet: Iterable[bytes],
    shared: Iterable[bytes] = (b"<sst " + _NS.encode() + b"/>",),
    styles: Iterable[bytes] = (b"<styleSheet " + _NS.encode() + b"/>",),
) -> Path:
    """A minimal workbook whose sheet, shared strings and styles are streamed in from the arguments."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, body in _PARTS.items():
            zf.writestr(name, body)
        parts = (("xl/worksheets/sheet1.xml", sheet), ("xl/sharedStrings.xml", shared), ("xl/styles.xml", styles))
        for name, chunks in parts:
            with zf.open(name, "w", force_zip64=True) as fh:
                for chunk in chunks:
                    fh.write(chunk)
    return path


def sheet_xml(rows: Iterable[bytes]) -> Iterable[bytes]:
    yield f'<?xml version="1.0"?><worksheet {_NS}><sheetData>'.encode()
    yield from rows
    yield b"</sheetData></worksheet>"


def shared_strings_bomb(entries: int, chars: int) -> Iterable[bytes]:
    """``entries`` shared strings of ``chars`` letters each: megabytes that compress to kilobytes."""
    yield f'<?xml version="1.0"?><sst {_NS} count="{entries}" uniqueCount="{entries}">'.encode()
    one = b"<si><t>" + b"A" * chars + b"</t></si>"
    for _ in range(entries // 1000):
        yield one * 1000
    yield b"</sst>"


def _limit(exc: pytest.ExceptionInfo[BaseException]) -> str:
    return str(exc.value)


def test_a_shared_strings_bomb_stops_at_the_limit_while_inflating(tmp_path: Path) -> None:
    # 20 MB of shared strings in a ~40 kB file (the attack: 2.6 MB inflating to 1 GB, 7.9 GB of memory)
    bomb = workbook_zip(tmp_path / "bomb.xlsx", sheet_xml([HEADER_ROW]), shared_strings_bomb(20_000, 1000))
    assert bomb.stat().st_size < 200_000
    with pytest.raises(XlsxLimitExceeded) as by_bytes:
        list(read_first_sheet(bomb, XlsxLimits(max_uncompressed_bytes=2_000_000)))
    assert "VOCE_XLSX_MAX_UNCOMPRESSED_BYTES" in _limit(by_bytes) and "2,000,000" in _limit(by_bytes)
    with pytest.raises(XlsxLimitExceeded) as by_chars:
        list(read_first_sheet(bomb, XlsxLimits(max_shared_string_chars=100_000)))
    assert "VOCE_XLSX_MAX_SHARED_STRING_CHARS" in _limit(by_chars)
    with pytest.raises(XlsxLimitExceeded) as by_count:
        list(read_first_sheet(bomb, XlsxLimits(max_shared_strings=500)))
    assert "VOCE_XLSX_MAX_SHARED_STRINGS" in _limit(by_count)
    # through the upload path: an UploadLimitExceeded (413), and nothing left behind
    with pytest.raises(UploadLimitExceeded, match="VOCE_XLSX_MAX_UNCOMPRESSED_BYTES"):
        normalise_xlsx(bomb, XlsxLimits(max_uncompressed_bytes=2_000_000))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bomb.xlsx"]


def test_a_part_that_declares_more_than_the_budget_is_refused_before_inflating(tmp_path: Path) -> None:
    bomb = workbook_zip(tmp_path / "declared.xlsx", sheet_xml([HEADER_ROW]), shared_strings_bomb(5_000, 1000))
    declared = zipfile.ZipFile(bomb).getinfo("xl/sharedStrings.xml").file_size
    assert declared > 1_000_000
    with pytest.raises(XlsxLimitExceeded, match="VOCE_XLSX_MAX_UNCOMPRESSED_BYTES"):
        list(read_first_sheet(bomb, XlsxLimits(max_uncompressed_bytes=1_000_000)))


def test_millions_of_empty_rows_stop_at_the_row_limit(tmp_path: Path) -> None:
    # 2,000,000 empty rows (the attack: 22 M rows, ~5 minutes to create the batch, parsed again by the worker)
    rows = [HEADER_ROW] + [b"<row/>" * 100_000] * 20
    sheet = workbook_zip(tmp_path / "rows.xlsx", sheet_xml(rows))
    with pytest.raises(XlsxLimitExceeded) as exc:
        list(read_first_sheet(sheet, XlsxLimits(max_rows=50_000)))
    assert "more rows than 50,000" in _limit(exc) and "VOCE_XLSX_MAX_ROWS" in _limit(exc)
    with pytest.raises(XlsxLimitExceeded, match="VOCE_XLSX_MAX_ROWS"):  # Excel's own maximum, by default
        list(read_first_sheet(sheet, XlsxLimits()))


def test_rows_times_columns_and_cell_length_are_bounded(tmp_path: Path) -> None:
    wide = b'<row><c r="XFD2" t="inlineStr"><is><t>x</t></is></c></row>'  # one cell in Excel's last column
    sheet = workbook_zip(tmp_path / "wide.xlsx", sheet_xml([HEADER_ROW] + [wide] * 100))
    with pytest.raises(XlsxLimitExceeded, match=r"rows x columns.*VOCE_XLSX_MAX_CELLS"):
        list(read_first_sheet(sheet, XlsxLimits(max_cells=100_000)))
    cells = workbook_zip(tmp_path / "cells.xlsx", sheet_xml([HEADER_ROW, b"<row>" + b"<c/>" * 200_000 + b"</row>"]))
    with pytest.raises(XlsxLimitExceeded, match=r"more cells than 100,000.*VOCE_XLSX_MAX_CELLS"):
        list(read_first_sheet(cells, XlsxLimits(max_cells=100_000)))
    long = b'<row><c t="inlineStr"><is><t>' + b"parola " * 20_000 + b"</t></is></c></row>"
    sheet = workbook_zip(tmp_path / "long.xlsx", sheet_xml([HEADER_ROW, long]))
    with pytest.raises(XlsxLimitExceeded, match="VOCE_XLSX_MAX_CELL_CHARS"):
        list(read_first_sheet(sheet, XlsxLimits(max_cell_chars=32_767)))
    beyond = workbook_zip(tmp_path / "beyond.xlsx", sheet_xml([HEADER_ROW, b'<row><c r="ZZZZ1"><v>1</v></c></row>']))
    with pytest.raises(UploadError, match="last column"):
        open_table(beyond, "xlsx")


def test_zip_directories_of_many_entries_and_dtds_are_refused(tmp_path: Path) -> None:
    many = tmp_path / "many.xlsx"
    with zipfile.ZipFile(many, "w") as zf:
        for i in range(MAX_ZIP_ENTRIES + 1):
            zf.writestr(f"x/{i}", b"")
    with pytest.raises(XlsxLimitExceeded, match="entries"):
        list(read_first_sheet(many, XlsxLimits()))
    laughs = (
        b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;">]>'
        b"<sst " + _NS.encode() + b"><si><t>&lol2;</t></si></sst>"
    )
    dtd = workbook_zip(tmp_path / "dtd.xlsx", sheet_xml([HEADER_ROW]), [laughs])
    with pytest.raises(UploadError, match="DTD"):
        open_table(dtd, "xlsx")
    with pytest.raises(UploadError, match="not a zip"):
        open_table(_write(tmp_path / "fake.xlsx", b"PK\x03\x04 not really a zip"), "xlsx")


def test_memory_bombs_inside_the_byte_budget_are_refused_too(tmp_path: Path) -> None:
    """What fits the byte budget can still cost memory as Python objects: a styles part of a million formats, one
    tag of megabytes (expat holds a whole tag before any handler sees it), a cell of a million empty runs."""
    styles = [b"<styleSheet " + _NS.encode() + b"><cellXfs>" + b"<xf/>" * 1_000_000 + b"</cellXfs></styleSheet>"]
    with pytest.raises(XlsxLimitExceeded, match="formats"):
        list(read_first_sheet(workbook_zip(tmp_path / "styles.xlsx", sheet_xml([HEADER_ROW]), styles=styles), XlsxLimits()))
    tag = b'<row><c r="A2" t="inlineStr" x="' + b"y" * 5_000_000 + b'"><is><t>x</t></is></c></row>'
    with pytest.raises(XlsxLimitExceeded, match="XML tag or text of more than"):
        list(read_first_sheet(workbook_zip(tmp_path / "tag.xlsx", sheet_xml([HEADER_ROW, tag])), XlsxLimits()))
    runs = b'<row><c r="A2" t="inlineStr"><is>' + b"<r><t></t></r>" * 1_000_000 + b"<r><t>fine</t></r></is></c></row>"
    rows = list(read_first_sheet(workbook_zip(tmp_path / "runs.xlsx", sheet_xml([HEADER_ROW, runs])), XlsxLimits()))
    assert rows == [["commento"], ["fine"]]


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _survey(path: Path) -> Path:
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(["Comment", "NPS", "Date", None])
    ws.append(["Il negozio era pulito", 9, dt.datetime(2026, 3, 5, 10, 30), "extra"])
    ws.append([None, None, None, None])
    ws.append(["Bad service", 2.0, dt.date(2026, 3, 6), None])
    ws.append(["+39 non è una formula", True, dt.time(10, 30), 1.5e20])
    wb.create_sheet("other").append(["never", "read"])
    wb.save(path)
    return path


def test_cells_read_as_openpyxl_reads_them(tmp_path: Path) -> None:
    path = _survey(tmp_path / "survey.xlsx")
    wb = openpyxl.load_workbook(path, read_only=True, data_only=True)
    expected = []
    for row in wb.worksheets[0].iter_rows(values_only=True):
        values = list(row)
        while values and values[-1] is None:
            values.pop()
        if values:
            expected.append(values)
    wb.close()
    assert list(read_first_sheet(path, XlsxLimits())) == expected


def test_an_upload_is_read_once_into_normalised_rows(tmp_path: Path) -> None:
    path = _survey(tmp_path / "survey.xlsx")
    direct = open_table(path, "xlsx")
    assert direct.columns == ["Comment", "NPS", "Date", "column_4"] and direct.count() == 3
    records = list(direct.records())
    rows = normalise_xlsx(path, XlsxLimits())
    assert not path.exists() and rows.name == "survey.xlsx.rows"  # the workbook is replaced by its rows
    table = open_table(rows, "xlsx")
    assert table.columns == direct.columns and table.count() == 3  # counted at upload: no pass of the worker
    stored = list(table.records())
    assert stored[0] == {"Comment": "Il negozio era pulito", "NPS": 9, "Date": "2026-03-05 10:30:00", "column_4": "extra"}
    assert stored[1]["Date"] == "2026-03-06 00:00:00" and stored[2]["Comment"] == "+39 non è una formula"
    assert [r["Comment"] for r in stored] == [r["Comment"] for r in records]  # type: ignore[index]
