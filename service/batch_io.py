"""File in, JSONL out: the engine behind ``voce analyze``.

Rows stream through in batches (never the whole file in memory); a bad row
becomes an error line with its id, never a failed run.  The file is read as
uploads are (:mod:`voce.service.uploads`): binary data is refused, a byte-order
mark is dropped whatever the encoding, and a CSV row with a broken quote is
read on its own line with a warning instead of swallowing the rows after it.
"""
from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from voce.models.spec import AnalyzerSpec
from voce.models.types import DocumentError, DocumentInput, DocumentResult
from voce.service.uploads import (
    JsonLineProblem,
    UploadError,
    check_text,
    csv_rows,
    json_objects,
    open_text,
    sniff_dialect,
    validation_message,
)

_FIELDS = set(DocumentInput.model_fields)


class InputError(ValueError):
    """The input file as a whole cannot be read (not a per-row problem)."""


def iter_documents(path: Path) -> Iterator[DocumentInput | DocumentError]:
    """Yield documents (or per-row errors) from a JSONL or CSV file."""
    for doc, _ in iter_rows(path):
        yield doc


def iter_rows(path: Path) -> Iterator[tuple[DocumentInput | DocumentError, list[str]]]:
    """Documents (or per-row errors) with the warnings reading their row gave (a broken quote)."""
    if not path.is_file():
        raise InputError(f"{path} does not exist")
    suffix = path.suffix.lower()
    if suffix not in (".jsonl", ".ndjson", ".json", ".csv", ".tsv", ".txt"):
        raise InputError(f"unsupported input type {suffix!r}: use .jsonl or .csv")
    with open_text(path) as fh:
        try:
            check_text(fh.read(1 << 15), "input file")
        except UploadError as exc:
            raise InputError(str(exc)) from exc
        fh.seek(0)
        if suffix in (".jsonl", ".ndjson", ".json"):
            yield from ((doc, []) for doc in _jsonl(fh))
        else:
            yield from _csv(fh)


def _row_to_doc(row: dict[str, Any], default_id: str) -> DocumentInput | DocumentError:
    data = {k: v for k, v in row.items() if k in _FIELDS and v not in (None, "")}
    data["id"] = str(data.get("id") or default_id)
    try:
        return DocumentInput.model_validate(data)
    except ValidationError as exc:
        return DocumentError(id=data["id"], error={"code": "InvalidInput", "message": validation_message(exc)})


def _jsonl(fh: io.TextIOWrapper) -> Iterator[DocumentInput | DocumentError]:
    for n, row in json_objects(fh):
        if isinstance(row, JsonLineProblem):
            yield DocumentError(id=f"line-{n}", error={"code": row.code, "message": row.message})
        else:
            yield _row_to_doc(row, f"line-{n}")


def _csv(fh: io.TextIOWrapper) -> Iterator[tuple[DocumentInput | DocumentError, list[str]]]:
    dialect = sniff_dialect(fh.read(1 << 15))
    fh.seek(0)
    rows = csv_rows(fh, dialect)
    fieldnames: list[str] = next(rows, ([], None))[0]
    names = [f.strip().lower() for f in fieldnames]
    if "text" not in names:
        raise InputError(f"CSV needs a 'text' column; found {fieldnames}")
    n = 1
    for values, note in rows:
        if not values:  # a blank line is no row (as csv.DictReader reads it)
            continue
        n += 1
        yield _row_to_doc(dict(zip(names, values, strict=False)), f"row-{n}"), [note] if note else []


def analyze_file(
    input_path: Path,
    output: Path,
    *,
    spec: AnalyzerSpec,
    batch_size: int = 32,
    progress: Callable[[str], None] | None = None,
) -> tuple[int, int]:
    """Analyse ``input_path`` into ``output`` (JSONL); returns (documents ok, errors)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from voce.models.spec import load_analyzer

    rows = list(iter_rows(input_path))  # typed rows are small; the analysis streams below
    docs = [doc for doc, _ in rows]
    analyzer = load_analyzer(spec, progress=progress)
    output.parent.mkdir(parents=True, exist_ok=True)
    n_ok = n_err = 0
    with output.open("w", encoding="utf-8") as out, Progress(
        TextColumn("analysing"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), transient=False
    ) as bar:
        task = bar.add_task("analyse", total=len(docs))
        for start in range(0, len(docs), batch_size):
            chunk = docs[start : start + batch_size]
            # rows may repeat an id: analyse under positional ids, write back the caller's id
            good = [d.model_copy(update={"id": f"#{i}"}) for i, d in enumerate(chunk) if isinstance(d, DocumentInput)]
            results, errors = analyzer.analyze(good) if good else ([], [])
            by_pos = {r.id: r for r in results} | {e.id: e for e in errors}
            for i, d in enumerate(chunk):
                item = d if isinstance(d, DocumentError) else by_pos[f"#{i}"].model_copy(update={"id": d.id})
                notes = rows[start + i][1]
                if notes and isinstance(item, DocumentResult):
                    item = item.model_copy(update={"warnings": [*notes, *item.warnings]})
                out.write(item.model_dump_json(exclude_none=True) + "\n")
                if isinstance(item, DocumentError):
                    n_err += 1
                else:
                    n_ok += 1
            bar.advance(task, len(chunk))
    return n_ok, n_err
