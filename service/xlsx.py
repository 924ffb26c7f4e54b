"""The first worksheet of an XLSX upload, read while unzipping with every limit enforced.

An XLSX file is a zip of XML parts, and both compress extremely well: a 2.6 MB upload whose shared strings
inflated to 1 GB drove openpyxl past 7.9 GB of memory, and a sheet of 22 million empty rows took minutes.
openpyxl cannot be told to stop, so this module reads the parts itself:

* the zip's central directory is checked first (entries, its own size) from the end-of-directory record;
* each part is inflated as a stream, its declared size checked before and its actual bytes counted while
  reading, against one budget for the whole workbook (``max_uncompressed_bytes``);
* XML is parsed by expat as it arrives (no tree; a DTD or entity declaration is refused), counting shared
  strings and their characters, rows, cells, the rows' width and each cell's length as it goes.

Whatever limit is passed first ends the read with :class:`XlsxLimitExceeded`, naming the limit and its
setting.  Cell values are what openpyxl's read-only, data-only mode gives (dates by the cell's number
format, the workbook's 1900/1904 epoch, shared and inline strings, booleans, cached formula results).
"""
from __future__ import annotations

import posixpath
import struct
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from xml.parsers import expat

if TYPE_CHECKING:
    from voce.service.settings import Settings

#: parts a workbook has are counted in tens; a directory of thousands of entries is a zip bomb of its own kind
MAX_ZIP_ENTRIES = 10_000
MAX_ZIP_DIRECTORY_BYTES = 16 * 1024 * 1024
#: Excel's own limits: 16,384 columns (XFD), 64,000 cell formats (we allow 65,536), a few hundred number formats
EXCEL_MAX_COLUMNS = 16_384
MAX_CELL_FORMATS = 65_536
#: relationships of the package and of the workbook (each names a part: a zip holds at most MAX_ZIP_ENTRIES)
MAX_RELATIONSHIPS = MAX_ZIP_ENTRIES
_CHUNK = 1 << 16


class XlsxError(ValueError):
    """The file cannot be read as a workbook (not a zip, damaged XML, no worksheet)."""


class XlsxLimitExceeded(XlsxError):
    """Reading the workbook would pass a configured limit; ``setting`` is the environment variable that sets it."""

    def __init__(self, message: str, setting: str) -> None:
        super().__init__(f"{message} (limit {setting})")
        self.setting = setting


@dataclass(frozen=True)
class XlsxLimits:
    """What one XLSX upload may hold once unzipped (defaults: ``service/settings.py``)."""

    #: bytes of all the parts read (workbook, relationships, styles, shared strings, the first sheet), inflated
    max_uncompressed_bytes: int = 512 * 1024 * 1024
    #: cells of the first sheet: ``<c>`` elements read, and the rows' widths summed (rows x columns)
    max_cells: int = 5_000_000
    #: ``<row>`` elements of the first sheet, empty ones included (Excel's own maximum)
    max_rows: int = 1_048_576
    #: entries of the shared-string table, and their characters in all
    max_shared_strings: int = 2_000_000
    max_shared_string_chars: int = 64_000_000
    #: characters of one cell (Excel's own maximum)
    max_cell_chars: int = 32_767

    @classmethod
    def from_settings(cls, s: Settings) -> XlsxLimits:
        return cls(
            max_uncompressed_bytes=s.xlsx_max_uncompressed_bytes, max_cells=s.xlsx_max_cells, max_rows=s.xlsx_max_rows,
            max_shared_strings=s.xlsx_max_shared_strings, max_shared_string_chars=s.xlsx_max_shared_string_chars,
            max_cell_chars=s.xlsx_max_cell_chars,
        )


def _exceeded(what: str, limit: int, setting: str) -> XlsxLimitExceeded:
    return XlsxLimitExceeded(f"the XLSX file holds {what} than {limit:,}", f"VOCE_{setting.upper()}")


# ------------------------------------------------------------------ the zip
def _check_directory(path: Path) -> None:
    """Entries and central-directory size from the end-of-directory record, before zipfile reads the directory
    into memory (one ZipInfo per entry)."""
    with path.open("rb") as fh:
        fh.seek(0, 2)
        size = fh.tell()
        tail_len = min(size, 22 + 65_535 + 20 + 56)
        fh.seek(size - tail_len)
        tail = fh.read(tail_len)
    at = tail.rfind(b"PK\x05\x06")
    if at < 0 or len(tail) - at < 22:
        raise XlsxError("cannot read the XLSX file: it is not a zip archive")
    entries, directory = struct.unpack("<HL", tail[at + 10 : at + 16])
    if entries == 0xFFFF or directory == 0xFFFFFFFF:  # zip64: the real counts are in the zip64 record
        at64 = tail.rfind(b"PK\x06\x06", 0, at)
        if at64 >= 0 and len(tail) - at64 >= 56:
            entries, directory = struct.unpack("<QQ", tail[at64 + 32 : at64 + 48])
    if entries > MAX_ZIP_ENTRIES or directory > MAX_ZIP_DIRECTORY_BYTES:
        raise XlsxLimitExceeded(
            f"the XLSX file's zip directory lists {entries:,} entries in {directory:,} bytes; a workbook has tens",
            f"{MAX_ZIP_ENTRIES:,} entries, {MAX_ZIP_DIRECTORY_BYTES:,} bytes",
        )


class _Budget:
    """Inflated bytes left for the whole workbook."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.left = limit

    def take(self, n: int) -> None:
        self.left -= n
        if self.left < 0:
            raise _exceeded("more bytes once unzipped", self.limit, "xlsx_max_uncompressed_bytes")


def _chunks(zf: zipfile.ZipFile, name: str, budget: _Budget) -> Iterator[bytes]:
    """One part, inflated a chunk at a time: refused on its declared size, stopped on its actual bytes."""
    info = zf.getinfo(name)
    if info.file_size > budget.left:
        raise _exceeded("more bytes once unzipped", budget.limit, "xlsx_max_uncompressed_bytes")
    with zf.open(info) as fh:
        while chunk := fh.read(_CHUNK):
            budget.take(len(chunk))
            yield chunk


# ------------------------------------------------------------------ XML
Start = Callable[[str, dict[str, str]], None]
End = Callable[[str], None]


def _parse(
    chunks: Iterator[bytes], part: str, start: Start, end: End, text: Callable[[str], None] | None, longest: int
) -> Iterator[None]:
    """Feed ``chunks`` to expat (namespaces dropped from names); yields after each chunk so the caller can hand
    on what the handlers collected.  A DTD (entity expansion) is refused outright, and so is a stretch of more
    than ``longest`` bytes without a ``>`` (expat holds a whole tag, attributes and all, before any handler sees it)."""
    parser = expat.ParserCreate(namespace_separator=" ")

    def refuse(*_: Any) -> None:
        raise XlsxError(f"cannot read the XLSX file: {part} declares a DTD or entities")

    parser.StartDoctypeDeclHandler = refuse
    parser.EntityDeclHandler = refuse
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    parser.buffer_text = True
    parser.StartElementHandler = lambda name, attrs: start(
        name.rpartition(" ")[2], {k.rpartition(" ")[2]: v for k, v in attrs.items()}
    )
    parser.EndElementHandler = lambda name: end(name.rpartition(" ")[2])
    if text is not None:
        parser.CharacterDataHandler = text
    since_tag_end = 0
    try:
        for chunk in chunks:
            last = chunk.rfind(b">")
            since_tag_end = since_tag_end + len(chunk) if last < 0 else len(chunk) - last - 1
            if since_tag_end > longest:
                raise XlsxLimitExceeded(f"the XLSX file's {part} holds an XML tag or text of more than {longest:,} bytes",
                                        "VOCE_XLSX_MAX_CELL_CHARS")
            parser.Parse(chunk, False)
            yield
        parser.Parse(b"", True)
    except expat.ExpatError as exc:
        raise XlsxError(f"cannot read the XLSX file: {part} is not well-formed XML ({exc})") from exc
    yield


def _drain(parse: Iterator[None]) -> None:
    for _ in parse:
        pass


def _longest(limits: XlsxLimits) -> int:
    """Bytes a tag or a text may run to: a cell's characters at their longest escape (``&#x1F600;``), at least 1 MB."""
    return max(1 << 20, 10 * limits.max_cell_chars)


def _relationships(zf: zipfile.ZipFile, part: str, budget: _Budget, longest: int) -> dict[str, tuple[str, str]]:
    """Id -> (type, target part name) of a part's relationships (``_rels/<name>.rels`` next to it)."""
    folder, name = posixpath.split(part)
    rels = posixpath.join(folder, "_rels", f"{name}.rels")
    out: dict[str, tuple[str, str]] = {}
    if rels not in zf.NameToInfo:
        return out

    def start(tag: str, a: dict[str, str]) -> None:
        if tag == "Relationship" and "Id" in a and "Target" in a and a.get("TargetMode") != "External":
            if len(out) >= MAX_RELATIONSHIPS:
                raise XlsxLimitExceeded(f"the XLSX file's {rels} lists more relationships than {MAX_RELATIONSHIPS:,}",
                                        f"{MAX_RELATIONSHIPS:,} relationships")
            target = a["Target"]
            resolved = target.lstrip("/") if target.startswith("/") else posixpath.join(folder, target)
            out[a["Id"]] = (a.get("Type", ""), posixpath.normpath(resolved))

    _drain(_parse(_chunks(zf, rels, budget), rels, start, lambda _t: None, None, longest))
    return out


@dataclass
class _Workbook:
    sheet: str
    shared_strings: str | None
    styles: str | None
    epoch_1904: bool


def _workbook(zf: zipfile.ZipFile, budget: _Budget, longest: int) -> _Workbook:
    """The first worksheet's part (as openpyxl's ``worksheets[0]``), the shared strings, the styles, the epoch."""
    package = _relationships(zf, "", budget, longest)
    office = next((t for kind, t in package.values() if kind.endswith("/officeDocument")), "xl/workbook.xml")
    if office not in zf.NameToInfo:
        raise XlsxError("cannot read the XLSX file: it has no workbook part")
    rels = _relationships(zf, office, budget, longest)
    first: list[str] = []
    epoch_1904 = [False]

    def start(tag: str, a: dict[str, str]) -> None:
        if tag == "sheet" and not first and rels.get(a.get("id", ""), ("", ""))[0].endswith("/worksheet"):
            first.append(rels[a["id"]][1])
        elif tag == "workbookPr":
            epoch_1904[0] = a.get("date1904", "").lower() in ("1", "true")

    _drain(_parse(_chunks(zf, office, budget), office, start, lambda _t: None, None, longest))
    if not first or first[0] not in zf.NameToInfo:
        raise XlsxError("the XLSX file has no worksheet")
    by_kind = {kind.rsplit("/", 1)[-1]: target for kind, target in rels.values()}
    strings, styles = by_kind.get("sharedStrings"), by_kind.get("styles")
    return _Workbook(
        first[0], strings if strings in zf.NameToInfo else None, styles if styles in zf.NameToInfo else None,
        epoch_1904[0],
    )


def _date_styles(zf: zipfile.ZipFile, part: str | None, budget: _Budget, longest: int) -> tuple[set[int], set[int]]:
    """Indexes of the cell formats (``cellXfs``) that show a date, and those that show a duration."""
    from openpyxl.styles.numbers import builtin_format_code, is_date_format, is_timedelta_format

    if part is None:
        return set(), set()
    custom: dict[int, str] = {}
    xfs: list[int] = []
    inside = [False]

    def start(tag: str, a: dict[str, str]) -> None:
        if len(custom) >= MAX_CELL_FORMATS or len(xfs) >= MAX_CELL_FORMATS:
            raise XlsxLimitExceeded(f"the XLSX file's styles hold more formats than {MAX_CELL_FORMATS:,}",
                                    f"{MAX_CELL_FORMATS:,} formats")
        if tag == "numFmt" and a.get("numFmtId", "").isdigit():
            custom[int(a["numFmtId"])] = a.get("formatCode", "")[:1000]
        elif tag == "cellXfs":
            inside[0] = True
        elif tag == "xf" and inside[0]:
            fmt = a.get("numFmtId", "0")
            xfs.append(int(fmt) if fmt.isdigit() else 0)

    def end(tag: str) -> None:
        if tag == "cellXfs":
            inside[0] = False

    _drain(_parse(_chunks(zf, part, budget), part, start, end, None, longest))
    dates, durations = set(), set()
    for i, fmt_id in enumerate(xfs):
        fmt = custom[fmt_id] if fmt_id in custom else builtin_format_code(fmt_id)
        if is_date_format(fmt):
            dates.add(i)
        if is_timedelta_format(fmt):
            durations.add(i)
    return dates, durations


class _Text:
    """Character data of one cell (its ``<t>`` runs together), refused past ``limit`` characters as it arrives."""

    def __init__(self, limit: int, setting: str) -> None:
        self.limit, self.setting = limit, setting
        self.parts: list[str] = []
        self.size = 0
        self.on = False

    def add(self, data: str) -> None:
        if self.on:
            self.size += len(data)
            if self.size > self.limit:
                raise _exceeded("a cell with more characters", self.limit, self.setting)
            self.parts.append(data)

    def take(self) -> str:
        out = "".join(self.parts)
        self.parts, self.size, self.on = [], 0, False
        return out


def _shared_strings(zf: zipfile.ZipFile, part: str | None, budget: _Budget, limits: XlsxLimits) -> list[str]:
    """The shared-string table (plain text of each entry: its runs joined, phonetic runs left out)."""
    if part is None:
        return []
    out: list[str] = []
    total = [0]
    text = _Text(limits.max_cell_chars, "xlsx_max_cell_chars")
    phonetic = [False]

    def start(tag: str, _a: dict[str, str]) -> None:
        if tag == "si":
            text.take()
        elif tag == "rPh":
            phonetic[0] = True
        elif tag == "t" and not phonetic[0]:
            text.on = True

    def end(tag: str) -> None:
        if tag == "t":
            text.on = False
        elif tag == "rPh":
            phonetic[0] = False
        elif tag == "si":
            value = text.take().replace("x005F_", "")  # as openpyxl reads it
            if len(out) >= limits.max_shared_strings:
                raise _exceeded("more shared strings", limits.max_shared_strings, "xlsx_max_shared_strings")
            total[0] += len(value)
            if total[0] > limits.max_shared_string_chars:
                raise _exceeded(
                    "more characters of shared strings", limits.max_shared_string_chars, "xlsx_max_shared_string_chars"
                )
            if len(value) > limits.max_cell_chars:
                raise _exceeded("a cell with more characters", limits.max_cell_chars, "xlsx_max_cell_chars")
            out.append(value)

    _drain(_parse(_chunks(zf, part, budget), part, start, end, text.add, _longest(limits)))
    return out


def _column(ref: str) -> int:
    """1-based column of a cell reference ("AB12" -> 28); 0 when it has none."""
    n = 0
    for ch in ref:
        if "A" <= ch <= "Z":
            n = n * 26 + ord(ch) - 64
        elif "a" <= ch <= "z":
            n = n * 26 + ord(ch) - 96
        else:
            break
        if n > EXCEL_MAX_COLUMNS:
            raise XlsxError(f"cannot read the XLSX file: cell {ref[:20]!r} lies beyond Excel's last column")
    return n


class _Cells:
    """Turns one ``<c>`` into its value, as openpyxl's read-only, data-only reader does."""

    def __init__(self, strings: list[str], dates: set[int], durations: set[int], epoch_1904: bool) -> None:
        from openpyxl.utils.datetime import MAC_EPOCH, WINDOWS_EPOCH

        self.strings, self.dates, self.durations = strings, dates, durations
        self.epoch = MAC_EPOCH if epoch_1904 else WINDOWS_EPOCH

    def value(self, kind: str, style: int, raw: str | None, inline: str | None) -> Any:
        from openpyxl.utils.datetime import from_excel, from_ISO8601

        if kind == "inlineStr":
            return inline
        if not raw:
            return None
        if kind == "s":
            try:
                return self.strings[int(raw)]
            except (ValueError, IndexError) as exc:
                raise XlsxError(f"cannot read the XLSX file: a cell refers to shared string {raw[:20]!r}, "
                                "which does not exist") from exc
        if kind == "b":
            return raw.strip() not in ("0", "false", "")
        if kind in ("str", "e"):
            return raw
        if kind == "d":
            try:
                return from_ISO8601(raw)
            except ValueError:
                return raw
        try:
            number: int | float = float(raw) if any(c in raw for c in ".eE") else int(raw)
        except ValueError:
            return raw
        if style in self.dates:
            try:
                return from_excel(number, self.epoch, timedelta=style in self.durations)
            except (OverflowError, ValueError):
                return "#VALUE!"
        return number


def read_first_sheet(path: Path, limits: XlsxLimits) -> Iterator[list[Any]]:
    """Each row of the first worksheet that holds a cell value, as a list indexed by column (``None`` where a
    cell is empty; trailing empty cells dropped).  Every limit of ``limits`` is enforced while reading."""
    _check_directory(path)
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise XlsxError(f"cannot read the XLSX file: {exc}") from exc
    with zf:
        try:
            yield from _sheet_rows(zf, limits)
        except (zipfile.BadZipFile, NotImplementedError, RuntimeError, EOFError) as exc:
            raise XlsxError(f"cannot read the XLSX file: {exc}") from exc  # damaged, encrypted, bad CRC


def _sheet_rows(zf: zipfile.ZipFile, limits: XlsxLimits) -> Iterator[list[Any]]:
    budget = _Budget(limits.max_uncompressed_bytes)
    longest = _longest(limits)
    book = _workbook(zf, budget, longest)
    dates, durations = _date_styles(zf, book.styles, budget, longest)
    cells = _Cells(_shared_strings(zf, book.shared_strings, budget, limits), dates, durations, book.epoch_1904)
    text = _Text(limits.max_cell_chars, "xlsx_max_cell_chars")
    done: list[list[Any]] = []
    row: dict[int, Any] = {}
    state: dict[str, Any] = {"rows": 0, "cells": 0, "area": 0, "col": 0, "kind": "n", "style": 0,
                             "in_sheet": False, "in_cell": False, "in_is": False, "phonetic": False}
    raw: list[str | None] = [None]
    inline: list[str | None] = [None]

    def start(tag: str, a: dict[str, str]) -> None:
        if tag == "sheetData":
            state["in_sheet"] = True
        elif not state["in_sheet"]:
            return
        elif tag == "row":
            state["rows"] += 1
            if state["rows"] > limits.max_rows:
                raise _exceeded("more rows", limits.max_rows, "xlsx_max_rows")
            state["col"] = 0
            row.clear()
        elif tag == "c":
            state["cells"] += 1
            if state["cells"] > limits.max_cells:
                raise _exceeded("more cells", limits.max_cells, "xlsx_max_cells")
            ref = a.get("r")
            state["col"] = (_column(ref) if ref else 0) or state["col"] + 1
            state["kind"] = a.get("t", "n")
            style = a.get("s", "0")
            state["style"] = int(style) if style.isdigit() else 0
            state["in_cell"] = True
            raw[0] = inline[0] = None
        elif not state["in_cell"]:
            return
        elif tag == "v":
            text.take()
            text.on = True
        elif tag == "is":
            text.take()
            state["in_is"] = True
        elif tag == "rPh":
            state["phonetic"] = True
        elif tag == "t" and state["in_is"] and not state["phonetic"]:
            text.on = True

    def end(tag: str) -> None:
        if not state["in_sheet"]:
            return
        if tag == "v" and state["in_cell"]:
            raw[0] = text.take()
        elif tag == "t" and state["in_is"]:
            text.on = False
        elif tag == "rPh":
            state["phonetic"] = False
        elif tag == "is":
            state["in_is"] = False
            inline[0] = text.take()
        elif tag == "c" and state["in_cell"]:
            state["in_cell"] = False
            value = cells.value(state["kind"], state["style"], raw[0], inline[0])
            if value is not None:
                row[state["col"]] = value
        elif tag == "row" and row:
            width = max(row)
            state["area"] += width
            if state["area"] > limits.max_cells:
                raise _exceeded("more cells (rows x columns)", limits.max_cells, "xlsx_max_cells")
            values: list[Any] = [None] * width
            for col, value in row.items():
                values[col - 1] = value
            done.append(values)
            row.clear()
        elif tag == "sheetData":
            state["in_sheet"] = False

    for _ in _parse(_chunks(zf, book.sheet, budget), book.sheet, start, end, text.add, longest):
        yield from done
        done.clear()
