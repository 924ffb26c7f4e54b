"""`voce batch export --lang`: the page's export from the command line (fake encoder, tiny bundle)."""
from __future__ import annotations

import codecs
import csv
import io
import json
from pathlib import Path

import openpyxl
from typer.testing import CliRunner

from tests.service.batch_data import MAPPING, ROWS, csv_bytes
from voce.service.cli import app

runner = CliRunner()


def test_batch_export_for_people(env: Path, monkeypatch: object) -> None:
    monkeypatch.setenv("VOCE_DATA_DIR", str(env / "data"))  # type: ignore[attr-defined]
    monkeypatch.setenv("VOCE_DISCOVERY", "false")  # type: ignore[attr-defined]
    src = env / "sondaggio.csv"
    src.write_bytes(csv_bytes(ROWS, delimiter=";", encoding="utf-8-sig"))
    r = runner.invoke(app, ["batch", "submit", str(src), "--mapping", json.dumps(MAPPING), "--wait"])
    assert r.exit_code == 0, r.output
    bid = r.stdout.strip().splitlines()[0]

    out = env / "nord.csv"
    r = runner.invoke(app, ["batch", "export", bid, "-o", str(out), "--lang", "it", "--segment", "regione:nord"])
    assert r.exit_code == 0, r.output
    assert out.read_bytes().startswith(codecs.BOM_UTF8)  # as uploaded: ';' with a BOM
    table = list(csv.DictReader(io.StringIO(out.read_text("utf-8-sig")), delimiter=";"))
    assert [t["ID"] for t in table] == [r["id"] for r in ROWS if r["regione"] == "nord"]
    assert {t["Stato"] for t in table} == {"analizzato", "non analizzato"}

    xlsx = env / "all.xlsx"
    assert runner.invoke(app, ["batch", "export", bid, "-o", str(xlsx), "--lang", "en"]).exit_code == 0
    wb = openpyxl.load_workbook(xlsx)
    assert wb.sheetnames == ["Comments", "Summary"] and wb["Comments"].max_row == len(ROWS) + 1

    bad = runner.invoke(app, ["batch", "export", bid, "-o", str(env / "x.jsonl"), "--lang", "it"])
    assert bad.exit_code == 2 and "csv or xlsx" in bad.output
    bad = runner.invoke(app, ["batch", "export", bid, "-o", str(out), "--lang", "de"])
    assert bad.exit_code == 2 and "--lang" in bad.output
    bad = runner.invoke(app, ["batch", "export", bid, "-o", str(out), "--period", "marzo"])
    assert bad.exit_code == 2 and "period" in bad.output
    # without --lang: the scripts' format, as before
    plain = env / "plain.csv"
    assert runner.invoke(app, ["batch", "export", bid, "-o", str(plain)]).exit_code == 0
    assert plain.read_text("utf-8-sig").splitlines()[0].split(",")[:2] == ["id", "commento"]
