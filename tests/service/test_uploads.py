"""Reading uploads: encodings, delimiters, XLSX, JSONL, mapping guesses, scores and dates."""
from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from voce.models.types import DocumentError, DocumentInput
from voce.service.uploads import (
    QUOTING,
    ColumnMapping,
    UploadError,
    check_mapping,
    detect_format,
    guess_mapping,
    open_table,
    parse_date,
    parse_score,
    prepare_row,
    preview_rows,
)

ROWS = [
    ["id", "commento", "voto", "data", "regione"],
    ["1", "Consegna in ritardo, però il corriere è stato gentilissimo", "6", "05/03/2026", "nord"],
    ["2", "Great app; checkout was quick", "10", "2026-03-06", "sud"],
    ["3", 'Multi-line\n"quoted" text; with delimiter', "8", "07.03.2026", "centro"],
]


def _csv(rows: list[list[str]], delimiter: str) -> str:
    import csv
    import io

    buf = io.StringIO()
    csv.writer(buf, delimiter=delimiter, lineterminator="\r\n").writerows(rows)
    return buf.getvalue()


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "latin-1", "cp1252", "utf-16", "utf-16-le"])
@pytest.mark.parametrize("delimiter", [",", ";", "\t", "|"])
def test_csv_encodings_and_delimiters(tmp_path: Path, encoding: str, delimiter: str) -> None:
    path = tmp_path / "export.csv"
    data = _csv(ROWS, delimiter).encode(encoding)
    if encoding == "utf-16-le":  # no BOM: detected from the NUL pattern
        assert not data.startswith(b"\xff\xfe")
    path.write_bytes(data)
    table = open_table(path, "csv")
    assert table.columns == ROWS[0]
    records = list(table.records())
    assert [r["commento"] for r in records] == [r[1] for r in ROWS[1:]]  # accents and embedded newlines intact
    assert table.count() == 3


def test_xlsx_and_jsonl(tmp_path: Path) -> None:
    import openpyxl

    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(["Comment", "NPS", "Date", None])
    ws.append(["Il negozio era pulito", 9, dt.datetime(2026, 3, 5, 10, 30), "extra"])
    ws.append([None, None, None, None])  # blank rows are skipped
    ws.append(["Bad service", 2.0, dt.datetime(2026, 3, 6), None])
    path = tmp_path / "survey.xlsx"
    wb.save(path)
    assert detect_format("survey.bin", path.read_bytes()[:8]) == "xlsx"
    table = open_table(path, "xlsx")
    assert table.columns == ["Comment", "NPS", "Date", "column_4"]
    recs = list(table.records())
    assert len(recs) == 2 and recs[1]["NPS"] == 2.0
    m = guess_mapping(table.columns, preview_rows(table))
    assert m is not None and (m.text, m.nps, m.date) == ("Comment", "NPS", "Date")
    row = prepare_row(0, recs[0], m)
    assert row.date == dt.date(2026, 3, 5) and row.nps == 9 and isinstance(row.doc, DocumentInput)
    assert row.original["Date"] == "2026-03-05 10:30:00"  # JSON-safe copy of the cell

    jl = tmp_path / "chats.jsonl"
    jl.write_text(
        json.dumps({"text": "ok", "score": 7}) + "\n{broken\n\n"
        + json.dumps({"text": [{"speaker": "Cliente", "text": "pacco perso"}], "score": 1}) + "\n[1,2]\n",
        encoding="utf-8",
    )
    t2 = open_table(jl, "jsonl")
    recs2 = list(t2.records())
    assert len(recs2) == 4  # the broken line and the array keep their rows, as errors
    m2 = ColumnMapping(text="text", nps="score")
    prepared = [prepare_row(i, r, m2) for i, r in enumerate(recs2)]
    assert isinstance(prepared[1].doc, DocumentError) and prepared[1].doc.error["code"] == "UnreadableRow"
    assert isinstance(prepared[2].doc, DocumentInput) and prepared[2].doc.kind == "chat" and prepared[2].doc.turns
    assert isinstance(prepared[3].doc, DocumentError)


def test_bad_files_are_clear_errors(tmp_path: Path) -> None:
    empty = tmp_path / "e.csv"
    empty.write_bytes(b"")
    with pytest.raises(UploadError, match="empty"):
        open_table(empty, "csv")
    with pytest.raises(UploadError, match="unsupported"):
        detect_format("photo.png", b"\x89PNG")
    broken = tmp_path / "b.xlsx"
    broken.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(UploadError, match="XLSX"):
        open_table(broken, "xlsx")
    nojson = tmp_path / "n.jsonl"
    nojson.write_text("hello\nworld\n")
    with pytest.raises(UploadError, match="JSON"):
        open_table(nojson, "jsonl")
    with pytest.raises(UploadError, match="not in the file"):
        check_mapping(ColumnMapping(text="comment", nps="score"), ["comment", "rating"])


def test_guess_mapping_italian_headers() -> None:
    cols = ["ID Risposta", "Commento cliente", "Punteggio", "Data", "Canale", "Regione", "CSAT", "Lingua"]
    m = guess_mapping(cols)
    assert m is not None
    assert m.text == "Commento cliente" and m.nps == "Punteggio" and m.date == "Data" and m.channel == "Canale"
    assert m.csat == "CSAT" and m.language == "Lingua" and m.segments == ["Regione"]
    # no recognisable name: the column with the longest texts
    m2 = guess_mapping(["a", "b"], [{"a": "1", "b": "a long free-text answer"}])
    assert m2 is not None and m2.text == "b"
    assert guess_mapping(["a"], []) is None


@pytest.mark.parametrize(
    ("value", "expected"), [("9", 9), (9, 9), (9.0, 9), ("9,0", 9), ("9/10", 9), (" 0 ", 0), ("10", 10)]
)
def test_parse_score(value: object, expected: int) -> None:
    assert parse_score(value, 0, 10) == expected


@pytest.mark.parametrize("value", ["11", "-1", "9.5", "abc", "", True])
def test_parse_score_rejects(value: object) -> None:
    with pytest.raises((ValueError, TypeError)):
        parse_score(value, 0, 10)


def test_parse_date_formats() -> None:
    assert parse_date("2026-03-05") == dt.date(2026, 3, 5)
    assert parse_date("2026-03-05T23:10:00Z") == dt.date(2026, 3, 5)
    assert parse_date("05/03/2026") == dt.date(2026, 3, 5)
    assert parse_date("05/03/2026", dayfirst=False) == dt.date(2026, 5, 3)
    assert parse_date("5.3.2026 10:00") == dt.date(2026, 3, 5)
    assert parse_date(46086) == dt.date(2026, 3, 5)  # Excel serial
    with pytest.raises(ValueError):
        parse_date("yesterday")


def test_prepare_row_keeps_text_when_scores_are_bad() -> None:
    m = ColumnMapping(text="t", nps="n", csat="c", ces="e", date="d", kind="k", language="l", segments=["r"])
    row = prepare_row(4, {"t": "Servizio lento", "n": "12", "c": "4", "e": "x", "d": "ieri", "k": "chat?", "l": "it_IT"}, m)
    assert isinstance(row.doc, DocumentInput) and row.doc.id == "row-5" and row.doc.language == "it"
    assert (row.nps, row.csat, row.ces, row.date) == (None, 4, None, None)
    assert len(row.warnings) == 4 and any(w.startswith("nps:") for w in row.warnings)
    assert row.segments == {"r": "(empty)"}
    empty = prepare_row(5, {"t": "   ", "n": "3"}, m)
    assert isinstance(empty.doc, DocumentError) and empty.doc.error["code"] == "EmptyText" and empty.nps == 3


def test_commas_inside_comments_are_kept(tmp_path: Path) -> None:
    one = tmp_path / "one.csv"
    one.write_text("comment\nGreat service, fast delivery\nOk\n", encoding="utf-8")
    t = open_table(one, "csv")
    assert t.columns == ["comment"] and [r["comment"] for r in t.records()] == ["Great service, fast delivery", "Ok"]
    loose = tmp_path / "loose.csv"
    loose.write_text("id,score,comment\n1,9,Great service, fast delivery, thanks\n", encoding="utf-8")
    rec = next(open_table(loose, "csv").records())
    row = prepare_row(0, rec, ColumnMapping(text="comment", nps="score"))
    assert isinstance(row.doc, DocumentInput) and row.doc.text == "Great service, fast delivery, thanks"
    assert row.nps == 9 and any("more field" in w for w in row.warnings)
    assert all(not k.startswith("\x00") for k in row.original)


def test_nul_and_nan_never_reach_the_database(tmp_path: Path) -> None:
    jl = tmp_path / "x.jsonl"
    jl.write_text('{"text": "ciao\\u0000 mondo", "score": NaN, "extra": [Infinity, "a\\u0000"]}\n', encoding="utf-8")
    rec = next(open_table(jl, "jsonl").records())
    row = prepare_row(0, rec, ColumnMapping(text="text", nps="score"))
    assert isinstance(row.doc, DocumentInput) and row.doc.text == "ciao mondo"
    assert row.original == {"text": "ciao mondo", "score": None, "extra": [None, "a"]}
    json.dumps(row.original, allow_nan=False)


def test_windows_1252_accents_late_in_the_file(tmp_path: Path) -> None:
    path = tmp_path / "late.csv"
    body = "id;commento\n" + "".join(f"{i};riga semplice numero {i}\n" for i in range(5000))
    body += "5000;Perché l’attesa “infinita” costa 5 €?\n"
    path.write_bytes(body.encode("cp1252"))
    assert len(body) > 1 << 16
    last = list(open_table(path, "csv").records())[-1]
    assert last["commento"] == "Perché l’attesa “infinita” costa 5 €?"


# ------------------------------------------------------------------ hostile and careless files (issue 13)
def test_an_unclosed_quote_is_reported_on_its_row_and_merges_nothing(tmp_path: Path) -> None:
    path = tmp_path / "broken.csv"
    path.write_text(
        'id,comment,score\n1,"Great service,9\n2,Slow delivery,4\n3,Rude staff,2\n4,"ok",5\n5,fine,8\n'
        '6,"Two lines,\nboth in the comment",7\n', encoding="utf-8",
    )
    table = open_table(path, "csv")
    records = list(table.records())
    assert [r["id"] for r in records] == ["1", "2", "3", "4", "5", "6"]  # read as two rows before: 1 swallowed 2-4
    assert table.count() == 6
    m = ColumnMapping(text="comment", nps="score", id="id")
    rows = [prepare_row(i, r, m) for i, r in enumerate(records)]
    assert any("unbalanced quote" in w and "3 line(s)" in w for w in rows[0].warnings)
    assert rows[0].original["comment"] == '"Great service' and rows[0].nps == 9
    assert [r.nps for r in rows[1:5]] == [4, 2, 5, 8] and not any(r.warnings for r in rows[1:5])
    assert isinstance(rows[5].doc, DocumentInput) and rows[5].doc.text == "Two lines,\nboth in the comment"
    assert not rows[5].warnings  # a quoted field over two lines is CSV, not an error

    tail = tmp_path / "tail.csv"  # a quote left open at the end of the file swallowed every row after it
    tail.write_text('id,comment\n1,ok\n2,"never closed\n3,x\n4,y\n', encoding="utf-8")
    recs = list(open_table(tail, "csv").records())
    assert [r["id"] for r in recs] == ["1", "2", "3", "4"]
    assert "unbalanced quote" in recs[1][QUOTING] and QUOTING not in recs[2]

    stray = tmp_path / "stray.csv"  # one line with a misplaced quote: kept as read, with a note
    stray.write_text('id,comment\n1,"abc"def\n', encoding="utf-8")
    rec = next(open_table(stray, "csv").records())
    row = prepare_row(0, rec, ColumnMapping(text="comment"))
    assert isinstance(row.doc, DocumentInput) and any("misplaced quote" in w for w in row.warnings)


def test_binary_data_named_csv_is_refused(tmp_path: Path) -> None:
    import random

    garbage = tmp_path / "export.csv"
    garbage.write_bytes(random.Random(13).randbytes(200_000))  # it was "analysed" as 1,580 rows
    with pytest.raises(UploadError, match="not text"):
        open_table(garbage, "csv")
    zipped = tmp_path / "zipped.csv"
    zipped.write_bytes(b"PK\x03\x04" + random.Random(1).randbytes(5000))
    with pytest.raises(UploadError, match="not text"):
        open_table(zipped, "csv")
    # real exports carry the odd control character (a vertical tab for a line break, a ^Z at the end): still text
    odd = tmp_path / "odd.csv"
    odd.write_bytes(("commento\n" + "Riga con\x0b a capo e un\x01 carattere strano\n" * 20 + "\x1a").encode("utf-8"))
    assert len(list(open_table(odd, "csv").records())) == 21


def test_a_utf8_bom_before_windows_1252_text_is_dropped(tmp_path: Path) -> None:
    path = tmp_path / "excel.csv"
    path.write_bytes(b"\xef\xbb\xbf" + "id;commento\n1;Perché l’attesa?\n".encode("cp1252"))
    table = open_table(path, "csv")
    assert table.columns == ["id", "commento"] and table.encoding == "cp1252"  # was ['ï»¿id', 'commento']
    assert [r["commento"] for r in table.records()] == ["Perché l’attesa?"]
    jl = tmp_path / "excel.jsonl"
    jl.write_bytes(b"\xef\xbb\xbf" + '{"text": "Perché"}\n'.encode("cp1252"))
    assert list(open_table(jl, "jsonl").records()) == [{"text": "Perché"}]


def test_jsonl_chat_rows_without_text_are_chats_under_the_guessed_mapping(tmp_path: Path) -> None:
    jl = tmp_path / "mixed.jsonl"
    jl.write_text(
        json.dumps({"id": "c1", "text": "Consegna veloce, grazie"}) + "\n"
        + json.dumps({"id": "t1", "turns": [{"speaker": "Cliente", "text": "Il pacco non arriva"},
                                            {"speaker": "Operatore", "text": "Verifico subito"}]}) + "\n",
        encoding="utf-8",
    )
    table = open_table(jl, "jsonl")
    m = guess_mapping(table.columns, preview_rows(table, 20))
    assert m is not None and m.text == "text" and m.id == "id"
    comment, chat = [prepare_row(i, r, m) for i, r in enumerate(table.records())]
    assert isinstance(comment.doc, DocumentInput) and comment.doc.kind == "comment"
    assert isinstance(chat.doc, DocumentInput), chat.doc  # was EmptyText: the chat rows were lost
    assert chat.doc.kind == "chat" and chat.doc.turns is not None and len(chat.doc.turns) == 2
    only = tmp_path / "chats.jsonl"  # a file of chats only: "turns" is the text column
    only.write_text(json.dumps({"turns": [{"speaker": "Cliente", "text": "ciao"}]}) + "\n", encoding="utf-8")
    m2 = guess_mapping(open_table(only, "jsonl").columns)
    assert m2 is not None and m2.text == "turns"


def test_invalid_unicode_in_a_row_is_cleaned_with_a_warning(tmp_path: Path) -> None:
    jl = tmp_path / "bad.jsonl"
    jl.write_text(
        '{"text": "pessimo \\ud800 servizio", "note\\udc00": "x\\u0000y", "extra": ["\\uffff"], "score": 3}\n'
        '{"text": "tutto bene", "score": 9}\n', encoding="utf-8",
    )
    table = open_table(jl, "jsonl")
    assert table.columns == ["text", "note\ufffd", "extra", "score"]
    bad, good = [prepare_row(i, r, ColumnMapping(text="text", nps="score")) for i, r in enumerate(table.records())]
    assert isinstance(bad.doc, DocumentInput) and bad.doc.text == "pessimo \ufffd servizio"
    assert bad.original == {"text": "pessimo \ufffd servizio", "note\ufffd": "xy", "extra": ["\ufffd"], "score": 3}
    json.dumps(bad.original, ensure_ascii=False).encode("utf-8")  # storable: this failed the whole batch before
    assert any("invalid characters" in w and "'text'" in w and "'extra'" in w for w in bad.warnings)
    assert not good.warnings
    assert preview_rows(table, 1)[0]["note\ufffd"] == "xy"


def test_the_delimiter_is_one_the_header_uses(tmp_path: Path) -> None:
    """The Sniffer guessed a tab from a quoted tab in a row, though the header holds only commas."""
    path = tmp_path / "sniff.csv"
    path.write_text('0,00\r\n"""\t",\r\n', encoding="utf-8")
    table = open_table(path, "csv")
    assert table.columns == ["0", "00"] and list(table.records()) == [{"0": '"\t', "00": ""}]
