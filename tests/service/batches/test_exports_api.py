"""``GET /v1/batches/{id}/export``: the analyst's CSV and XLSX, read back as Python's csv and openpyxl read them
(what Italian Excel needs: ';', a BOM, decimal commas; numbers as numeric cells; a summary sheet)."""
from __future__ import annotations

import codecs
import csv
import io
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openpyxl
import pytest
from fastapi.testclient import TestClient

from tests.service.api.helpers import bearer, local_client, new_key, sign_in, wait_batch
from tests.service.batch_data import MAPPING, ROWS, batch_settings, csv_bytes
from voce.service.app import create_app

#: ROWS with accents (Windows-1252 round trip) and a formula in a comment and in a column name
ACCENTED = [dict(r) for r in ROWS]
ACCENTED[2]["commento"] = "Qualità ottima però caro"
ACCENTED[3]["commento"] = '=HYPERLINK("http://evil.example","clic")'
ACCENTED[4]["commento"] = "@SUM(1+1) il negozio è lento"
ACCENTED = [{**r, "=cmd|' /C calc'!A0": "-2+3"} for r in ACCENTED]
MAPPING_ALL = MAPPING | {"channel": "canale"}


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def client(
    request: pytest.FixtureRequest, tiny_bundle_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TestClient]:
    tmp = tmp_path_factory.mktemp(f"exports-{request.param}")
    url = request.getfixturevalue("postgres_url") if request.param == "postgres" else None
    settings = batch_settings(tmp, tiny_bundle_dir, database_url=url)
    with local_client(create_app(settings), raise_server_exceptions=False) as c:
        while c.get("/ready").status_code != 200:
            time.sleep(0.05)
        sign_in(c, new_key(c, "acme", ["batches:read", "batches:write"]))
        yield c


def _upload(client: TestClient, data: bytes, name: str = "sondaggio.csv", mapping: dict[str, Any] = MAPPING) -> str:
    r = client.post("/v1/batches", files={"file": (name, data)}, data={"mapping": json.dumps(mapping)})
    assert r.status_code == 202, r.text
    st = wait_batch(client, r.json()["id"])
    assert st["status"] == "done", st
    return str(st["id"])


@pytest.fixture(scope="module")
def semicolon_batch(client: TestClient) -> str:
    """What Italian Excel saves: ';' and a UTF-8 BOM."""
    rows = [{**r, "canale": ["App", "Negozio", "email", ""][i % 4]} for i, r in enumerate(ROWS)]
    return _upload(client, csv_bytes(rows, delimiter=";", encoding="utf-8-sig"), mapping=MAPPING_ALL)


@pytest.fixture(scope="module")
def comma_batch(client: TestClient) -> str:
    """An older export: ',' in Windows-1252, no BOM, formulas in a cell and a column name."""
    return _upload(client, csv_bytes(ACCENTED, delimiter=",", encoding="cp1252"), name="export_vecchio.csv")


def _results(client: TestClient, bid: str) -> dict[str, dict[str, Any]]:
    lines = client.get(f"/v1/batches/{bid}/results?format=jsonl").text.splitlines()
    return {x["id"]: x for x in map(json.loads, lines)}


def _names(client: TestClient, lang: str) -> dict[str, dict[str, str]]:
    tax = client.get("/v1/taxonomy").json()
    return {kind: {e["id"]: e["names"].get(lang) or next(iter(e["names"].values())) for e in tax[kind]}
            for kind in ("topics", "touchpoints")}


def _csv(r: Any, delimiter: str, encoding: str = "utf-8-sig") -> list[dict[str, str]]:
    assert r.status_code == 200, r.text
    return list(csv.DictReader(io.StringIO(r.content.decode(encoding)), delimiter=delimiter))


def _num(text: str) -> float:
    return float(text.replace(",", "."))


def test_csv_comes_back_as_the_italian_upload_with_italian_labels(client: TestClient, semicolon_batch: str) -> None:
    r = client.get(f"/v1/batches/{semicolon_batch}/export", params={"format": "csv"})
    assert r.content.startswith(codecs.BOM_UTF8) and r.headers["content-type"] == "text/csv; charset=utf-8"
    head = r.content.decode("utf-8-sig").splitlines()[0]
    assert head.startswith("Riga;ID;id;commento;") and head.count(";") > 20  # ';' as uploaded
    table = _csv(r, ";")
    results, names = _results(client, semicolon_batch), _names(client, "it")
    assert [t["ID"] for t in table] == [r["id"] for r in ROWS]
    sentiments = {"positive": "Positivo", "neutral": "Neutro", "negative": "Negativo", "mixed": "Misto"}
    for row in table:
        res = results[row["ID"]]
        if "error" in res:
            assert (row["Stato"], row["Sentiment"]) == ("non analizzato", "") and row["Errore"].startswith("EmptyText")
            continue
        # labels in Italian, ids beside them in their own columns
        assert row["Sentiment (id)"] == res["sentiment"]["label"] and row["Sentiment"] == sentiments[res["sentiment"]["label"]]
        ids = [t["id"] for t in res.get("topics", [])]
        assert row["Temi (id)"] == "; ".join(ids) and row["Temi"] == "; ".join(names["topics"][i] for i in ids)
        for t in res.get("topics", []):  # one column per topic holding its sentiment
            assert row[f"Tema: {names['topics'][t['id']]}"] == sentiments[t["sentiment"]["label"]]
            assert names["topics"][t["id"]] + ": «" in row["Evidenza"]
        tps = [t["id"] for t in sorted(res.get("touchpoints", []), key=lambda t: not t.get("primary", False))]
        assert row["Punti di contatto (id)"] == "; ".join(tps)
        for tp in tps:
            assert row[f"Punto di contatto: {names['touchpoints'][tp]}"] == sentiments[res["sentiment"]["label"]]
        # numbers with a decimal comma (what Italian Excel reads as a number), parsing back to the results
        assert "," in row["Prob. detrattore"] and "." not in row["Prob. detrattore"]
        assert _num(row["Prob. detrattore"]) == pytest.approx(res["detractor"]["probability"], abs=1e-6)
        assert _num(row["Prob. positivo"]) == pytest.approx(res["sentiment"]["scores"]["positive"], abs=1e-6)
        assert row["Tema scoperto (id)"].lstrip("-").isdigit()
        if row["Tema scoperto (id)"] == "-1":
            assert row["Tema scoperto"] == "non classificato"
    by_id = {t["ID"]: t for t in table}
    assert by_id["r1"]["Voto NPS"] == "10" and by_id["r10"]["Voto NPS"] == "" and by_id["r12"]["nps"] == "dieci"
    assert by_id["r1"]["Canale (id)"] == "mobile_app" and by_id["r1"]["Segmento: regione"] == "nord"
    assert by_id["r1"]["Canale"] == _names(client, "it")["touchpoints"]["mobile_app"]


def test_csv_in_english_and_in_a_chosen_dialect(client: TestClient, semicolon_batch: str) -> None:
    r = client.get(f"/v1/batches/{semicolon_batch}/export",
                   params={"format": "csv", "lang": "en", "delimiter": "tab", "encoding": "utf-16", "decimal": "point"})
    assert r.content.startswith(codecs.BOM_UTF16_LE) and r.headers["content-type"] == "text/csv; charset=utf-16"
    table = _csv(r, "\t", "utf-16")
    assert list(table[0])[:4] == ["Row", "ID", "id", "commento"] and "Topics (id)" in table[0]
    assert {t["Status"] for t in table} == {"analysed", "not analysed"}
    assert all("," not in t["P(detractor)"] for t in table) and float(table[0]["P(detractor)"]) > 0
    assert {t["Discovered theme"] for t in table if t["Discovered theme (id)"] == "-1"} <= {"not classified"}
    plain = client.get(f"/v1/batches/{semicolon_batch}/export", params={"format": "csv", "bom": "false"})
    assert not plain.content.startswith(codecs.BOM_UTF8) and plain.content.startswith(b"Riga;")


def test_csv_of_a_windows_1252_comma_upload(client: TestClient, comma_batch: str) -> None:
    r = client.get(f"/v1/batches/{comma_batch}/export", params={"format": "csv"})
    assert r.headers["content-type"] == "text/csv; charset=windows-1252" and not r.content.startswith(codecs.BOM_UTF8)
    table = _csv(r, ",", "cp1252")
    by_id = {t["ID"]: t for t in table}
    assert by_id["r3"]["commento"] == "Qualità ottima però caro"  # accents survive the round trip
    assert "." in by_id["r1"]["Prob. detrattore"]  # ',' files keep the decimal point
    # spreadsheet formulas neutralised in cells and in column names; numbers such as "-2+3" are not numbers
    assert by_id["r4"]["commento"] == "'" + ACCENTED[3]["commento"]
    assert by_id["r5"]["commento"].startswith("'@SUM")
    formula_col = next(c for c in table[0] if "cmd" in c)
    assert formula_col.startswith("'=") and by_id["r1"][formula_col] == "'-2+3"


def test_xlsx_numbers_autofilter_and_summary(client: TestClient, semicolon_batch: str) -> None:
    params: dict[str, Any] = {"format": "xlsx", "segment": "regione:nord"}
    r = client.get(f"/v1/batches/{semicolon_batch}/export", params=params)
    assert r.status_code == 200, r.text
    wb = openpyxl.load_workbook(io.BytesIO(r.content))
    assert wb.sheetnames == ["Commenti", "Riepilogo"]
    ws = wb["Commenti"]
    sheet = list(ws.iter_rows())
    header = [c.value for c in sheet[0]]
    assert ws.freeze_panes == "A2" and ws.auto_filter.ref == f"A1:{sheet[0][-1].column_letter}{len(sheet)}"
    assert ws.column_dimensions["D"].width == 60  # the comment column
    at = {h: i for i, h in enumerate(header)}
    rows = {row[at["ID"]].value: row for row in sheet[1:]}
    nord = [r["id"] for r in ROWS if r["regione"] == "nord"]
    assert list(rows) == nord
    # the vote is a number, in the upload's column and in Voce's, and so are the probabilities
    assert (rows["r1"][at["nps"]].value, rows["r1"][at["nps"]].data_type) == (10, "n")
    assert (rows["r1"][at["Voto NPS"]].value, rows["r1"][at["Voto NPS"]].data_type) == (10, "n")
    assert rows["r12"][at["nps"]].value == "dieci" and rows["r12"][at["Voto NPS"]].value is None
    assert rows["r1"][at["Prob. detrattore"]].data_type == "n" and rows["r1"][at["Riga"]].value == 1
    assert rows["r1"][at["Data"]].is_date
    # the summary sheet: the KPIs of exactly these rows, as /kpis reports them
    k = client.get(f"/v1/batches/{semicolon_batch}/kpis", params={"segment": "regione:nord"}).json()
    summary = {row[0]: row[1:] for row in wb["Riepilogo"].iter_rows(values_only=True) if row and row[0]}
    assert summary["Righe"][0] == k["count"] == len(nord) and summary["Analizzate"][0] == k["analysed"]
    assert summary["NPS"][:4] == (k["nps"]["value"], k["nps"]["ci_low"], k["nps"]["ci_high"], k["nps"]["responses"])
    assert summary["CSAT (% 4-5)"][0] == k["csat"]["value"] and summary["Sentiment netto"][0] == k["sentiment"]["net"]
    for label, key in (("Positivo", "positive"), ("Negativo", "negative"), ("Misto", "mixed"), ("Neutro", "neutral")):
        assert summary[label][0] == k["sentiment"][key]
    names = _names(client, "it")["topics"]
    for t in k["topics"][:3]:
        assert summary[names[t["id"]]][:3] == (t["id"], t["count"], t["share"])
    assert summary["Filtri"][0] == "regione: nord"
    both = client.get(f"/v1/batches/{semicolon_batch}/export", params={
        "format": "xlsx", "lang": "en", "topic": "delivery", "sentiment": "negative", "q": "late", "discovered": -1})
    words = {r[0]: r[1] for r in openpyxl.load_workbook(io.BytesIO(both.content))["Summary"].iter_rows(values_only=True)}
    assert words["Filters"] == (f"Topic: {_names(client, 'en')['topics']['delivery']} · Sentiment: Negative · "
                                "Discovered theme: not classified · Search: «late»")


@pytest.mark.parametrize("params", [
    {}, {"segment": "regione:nord"}, {"sentiment": "negative"}, {"language": "it", "sentiment": "positive"},
    {"q": "staff"}, {"discovered": -1}, {"errors": "true"}, {"date_from": "2026-02-01", "segment": "regione:sud"},
])
def test_a_filtered_export_holds_the_drawer_rows(client: TestClient, semicolon_batch: str, params: dict[str, Any]) -> None:
    drawer = client.get(f"/v1/batches/{semicolon_batch}/rows", params=params | {"limit": 500}).json()
    table = _csv(client.get(f"/v1/batches/{semicolon_batch}/export", params=params | {"format": "csv"}), ";")
    assert [t["ID"] for t in table] == [r["id"] for r in drawer["rows"]] and len(table) == drawer["total"]
    wb = openpyxl.load_workbook(io.BytesIO(client.get(
        f"/v1/batches/{semicolon_batch}/export", params=params | {"format": "xlsx"}).content))
    assert [r[1] for r in list(wb.worksheets[0].iter_rows(values_only=True))[1:]] == [r["id"] for r in drawer["rows"]]


def test_export_is_the_tenants_own(client: TestClient, semicolon_batch: str) -> None:
    beta = new_key(client, "beta", ["batches:read", "batches:write"])
    for fmt in ("csv", "xlsx"):
        r = client.get(f"/v1/batches/{semicolon_batch}/export", params={"format": fmt}, headers=bearer(beta))
        assert r.status_code == 404 and r.json()["error"]["message"] == f"no batch {semicolon_batch!r}"
    writer_only = new_key(client, "acme", ["batches:write"])
    r = client.get(f"/v1/batches/{semicolon_batch}/export", headers=bearer(writer_only))
    assert r.status_code == 403


def test_bad_parameters_are_422(client: TestClient, semicolon_batch: str) -> None:
    for params in ({"delimiter": "x"}, {"encoding": "latin-9"}, {"lang": "de"}, {"format": "pdf"},
                   {"period": "marzo"}, {"discovered": "-2"}):
        r = client.get(f"/v1/batches/{semicolon_batch}/export", params=params)
        assert r.status_code == 422, (params, r.text)


def test_xlsx_keeps_formulas_as_text(client: TestClient, comma_batch: str) -> None:
    r = client.get(f"/v1/batches/{comma_batch}/export", params={"format": "xlsx", "lang": "en"})
    ws = openpyxl.load_workbook(io.BytesIO(r.content))["Comments"]
    sheet = list(ws.iter_rows())
    header = [c.value for c in sheet[0]]
    formula_col = header.index("=cmd|' /C calc'!A0")
    assert sheet[0][formula_col].data_type == "s" and sheet[0][0].font.b  # a text header, in bold
    cells = {row[1].value: row for row in sheet[1:]}
    text_at = header.index("commento")
    assert (cells["r4"][text_at].value, cells["r4"][text_at].data_type) == (ACCENTED[3]["commento"], "s")
    assert (cells["r1"][formula_col].value, cells["r1"][formula_col].data_type) == ("-2+3", "s")
    assert not any(c.data_type == "f" for row in sheet for c in row)


def test_an_xlsx_upload_exports_for_the_page_language(client: TestClient) -> None:
    """No CSV dialect to follow: Italian gets what Italian Excel opens (';', BOM, decimal commas), English ','."""
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(list(ROWS[0]))
    for r in ROWS[:6]:
        ws.append([int(v) if k in ("nps", "csat") and v.isdigit() else v for k, v in r.items()])
    buf = io.BytesIO()
    wb.save(buf)
    bid = _upload(client, buf.getvalue(), name="sondaggio.xlsx")
    it = client.get(f"/v1/batches/{bid}/export", params={"format": "csv"})
    assert it.content.startswith(codecs.BOM_UTF8) and it.content.decode("utf-8-sig").startswith("Riga;ID;")
    assert "," in _csv(it, ";")[0]["Prob. detrattore"]
    en = _csv(client.get(f"/v1/batches/{bid}/export", params={"format": "csv", "lang": "en"}), ",")
    assert [r["ID"] for r in en] == [r["id"] for r in ROWS[:6]] and "." in en[0]["P(detractor)"]
    sheet = openpyxl.load_workbook(io.BytesIO(client.get(f"/v1/batches/{bid}/export").content))["Commenti"]
    header = [c.value for c in next(sheet.iter_rows(max_row=1))]
    first = [c for c in next(sheet.iter_rows(min_row=2, max_row=2))]
    assert (first[header.index("nps")].value, first[header.index("nps")].data_type) == (10, "n")
