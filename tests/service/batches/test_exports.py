"""The pieces of the people's export: the CSV dialect chosen, numbers read off text cells, the upload's dialect
recorded (migration 0007 on SQLite and the real PostgreSQL)."""
from __future__ import annotations

import codecs
from pathlib import Path

import pytest
from sqlalchemy import inspect

from tests.service.batch_data import MAPPING, ROWS, csv_bytes
from tests.service.migrations import alembic, database_url  # noqa: F401  (the url fixture)
from voce.service.batches import exports
from voce.service.batches.exports import CsvFormat, Names
from voce.service.batches.service import register_upload
from voce.service.batches.store import BatchStore
from voce.service.db import make_engine
from voce.service.uploads import ColumnMapping


def test_the_csv_dialect_follows_the_upload_unless_chosen() -> None:
    italian = {"delimiter": ";", "encoding": "utf-8", "bom": True}
    assert CsvFormat.choose(italian, "en") == CsvFormat(";", "utf-8", True, ",")
    old = {"delimiter": ",", "encoding": "cp1252", "bom": False}
    assert CsvFormat.choose(old, "it") == CsvFormat(",", "cp1252", False, ".")
    # no recorded dialect (an XLSX upload): what Excel in the export's language opens
    assert CsvFormat.choose(None, "it") == CsvFormat(";", "utf-8", True, ",")
    assert CsvFormat.choose(None, "en") == CsvFormat(",", "utf-8", True, ".")
    # chosen parts win; asking for UTF-8 gets a BOM (Excel reads UTF-8 without one as the local code page)
    assert CsvFormat.choose(old, "it", encoding="utf-8") == CsvFormat(",", "utf-8", True, ".")
    assert CsvFormat.choose(italian, "it", delimiter="\t", decimal=".") == CsvFormat("\t", "utf-8", True, ".")
    assert CsvFormat.choose(italian, "it", encoding="utf-16", bom=False).bom  # UTF-16 always has its BOM
    with pytest.raises(ValueError, match="delimiter"):
        CsvFormat.choose(None, "it", delimiter=":")
    with pytest.raises(ValueError, match="decimal"):
        CsvFormat.choose(None, "it", decimal="'")


@pytest.mark.parametrize(("raw", "decimal", "expected"), [
    ("9", ".", 9), (" 10 ", ".", 10), ("-3", ".", -3), ("0", ",", 0), ("7,5", ",", 7.5), ("7.5", ".", 7.5),
    ("7,5", ".", "7,5"), ("7.5", ",", "7.5"),  # the other locale's mark: left as text, never guessed
    ("00184", ".", "00184"), ("3331234567", ".", "3331234567"), ("1.234.567", ",", "1.234.567"),
    ("dieci", ".", "dieci"), ("", ".", ""), (None, ".", None), (4, ".", 4),
])
def test_a_number_in_a_text_cell(raw: object, decimal: str, expected: object) -> None:
    assert exports._number_or_text(raw, decimal) == expected


def test_names_and_the_unclassified_theme() -> None:
    from voce.models.taxonomy import default_taxonomy

    tax = default_taxonomy()
    discovery = {"topics": [{"id": 0, "label": "consegna, ritardo"}, {"id": 1, "label": "x", "labels": {"en": "app"}}]}
    it, en = Names.build("it", tax, discovery), Names.build("en", tax, discovery)
    assert it.topic("other") == next(e.names["it"] for e in tax.topics.entries if e.id == "other")
    assert it.topic("other") != en.topic("other") and it.topic("unknown_id") == "unknown_id"
    assert (it.theme(-1), en.theme(-1), it.theme(0), en.theme(1), it.theme(1), it.theme(7), it.theme(None)) == (
        "non classificato", "not classified", "consegna, ritardo", "app", "x", "#7", None)
    assert (it.sentiment("mixed"), en.sentiment("mixed"), it.sentiment(None)) == ("Misto", "Mixed", None)




@pytest.mark.parametrize(("delimiter", "encoding", "expected"), [
    (";", "utf-8-sig", {"delimiter": ";", "encoding": "utf-8", "bom": True}),
    (",", "cp1252", {"delimiter": ",", "encoding": "cp1252", "bom": False}),
    ("\t", "utf-16", {"delimiter": "\t", "encoding": "utf-16", "bom": True}),
])
def test_the_upload_dialect_is_recorded(url: str, tmp_path: Path, delimiter: str, encoding: str, expected: dict) -> None:
    store = BatchStore.open(url)
    path = tmp_path / "upload"
    accented = [r | {"commento": r["commento"] + " però è così"} for r in ROWS]  # not ASCII: the encoding shows
    path.write_bytes(csv_bytes(accented, delimiter=delimiter, encoding=encoding))
    if encoding == "utf-8-sig":
        assert path.read_bytes().startswith(codecs.BOM_UTF8)
    batch, _ = register_upload(store, path, filename="s.csv", mapping=ColumnMapping(**MAPPING), batch_id="b1")
    found = store.get("b1")
    assert found is not None and found.upload_dialect == expected


def test_migration_0007_round_trip(url: str) -> None:
    BatchStore.open(url)  # to head
    engine = make_engine(url)
    assert "upload_dialect" in {c["name"] for c in inspect(engine).get_columns("batches")}
    engine.dispose()
    alembic(url, "0006", up=False)
    engine = make_engine(url)
    assert "upload_dialect" not in {c["name"] for c in inspect(engine).get_columns("batches")}
    engine.dispose()
    alembic(url, "head", up=True)
    engine = make_engine(url)
    assert "upload_dialect" in {c["name"] for c in inspect(engine).get_columns("batches")}
    engine.dispose()
