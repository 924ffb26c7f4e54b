"""`voce analyze` end to end on small files (fake encoder, tiny bundle), and `voce --help`."""
from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from voce.service.cli import app

runner = CliRunner()


def _read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text("utf-8").splitlines()]


def test_analyze_jsonl_with_bad_rows(env: Path) -> None:
    src = env / "in.jsonl"
    src.write_text(
        '{"id": "a", "text": "Personale gentilissimo"}\n'
        "not json\n"
        '{"id": "b", "text": ""}\n'
        '{"id": "c", "kind": "chat", "text": "Cliente: pacco in ritardo\\nOperatore: verifico"}\n'
        '{"id": "d", "text": 42}\n',
        "utf-8",
    )
    out = env / "out.jsonl"
    r = runner.invoke(app, ["analyze", str(src), "--output", str(out)])
    assert r.exit_code == 0, r.output
    rows = _read(out)
    assert [x["id"] for x in rows] == ["a", "line-2", "b", "c", "d"]
    assert rows[0]["sentiment"]["label"] in {"positive", "neutral", "negative", "mixed"}
    assert rows[1]["error"]["code"] == "InvalidJson"
    assert rows[2]["error"]["code"] == "EmptyText"
    assert rows[3]["chat"]["turns"][0]["role"] == "customer"
    assert rows[4]["error"]["code"] == "InvalidInput"


def test_analyze_semicolon_latin1_csv(env: Path) -> None:
    src = env / "in.csv"
    src.write_bytes("id;text;channel\n1;Perché è così caro?;store\n2;Ottimo caffè;\n".encode("latin-1"))
    out = env / "out.jsonl"
    r = runner.invoke(app, ["analyze", str(src), "-o", str(out)])
    assert r.exit_code == 0, r.output
    rows = _read(out)
    assert [x["id"] for x in rows] == ["1", "2"]
    assert rows[0]["sentences"][0]["text"] == "Perché è così caro?"


def test_analyze_with_custom_taxonomy_file(env: Path) -> None:
    tax = env / "tax.yaml"
    tax.write_text('version: "x1"\ntopics:\n  - id: coffee\n    names: {it: "Caffè", en: "Coffee"}\n', "utf-8")
    src = env / "in.jsonl"
    src.write_text('{"id": "1", "text": "Ottimo caffè"}\n', "utf-8")
    out = env / "out.jsonl"
    r = runner.invoke(app, ["analyze", str(src), "-o", str(out), "--taxonomy", str(tax)])
    assert r.exit_code == 0, r.output
    assert {t["id"] for t in _read(out)[0]["topics"]} <= {"coffee"}


def test_missing_text_column_is_a_clear_error(env: Path) -> None:
    src = env / "in.csv"
    src.write_text("id,comment\n1,hello\n", "utf-8")
    r = runner.invoke(app, ["analyze", str(src), "-o", str(env / "o.jsonl")])
    assert r.exit_code == 2 and "text" in r.output


def test_help_lists_commands() -> None:
    r = runner.invoke(app, ["--help"])
    assert r.exit_code == 0
    for cmd in ("serve", "analyze", "train", "eval", "setup"):
        assert cmd in r.output


def test_repeated_ids_keep_every_row(env: Path) -> None:
    src = env / "dup.csv"
    src.write_text("id,text\n7,Ottimo servizio\n7,Pessimo servizio\n", "utf-8")
    out = env / "out.jsonl"
    r = runner.invoke(app, ["analyze", str(src), "-o", str(out)])
    assert r.exit_code == 0, r.output
    rows = _read(out)
    assert [x["id"] for x in rows] == ["7", "7"]
    assert [x["sentences"][0]["text"] for x in rows] == ["Ottimo servizio", "Pessimo servizio"]
