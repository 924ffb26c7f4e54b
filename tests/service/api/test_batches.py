"""``/v1/batches`` end to end through the real app factory and lifespan, on SQLite and on a real PostgreSQL."""
from __future__ import annotations

import csv
import hashlib
import io
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openpyxl
import pytest
from fastapi.testclient import TestClient

from tests.service.api.helpers import local_client, new_key, sign_in, wait_batch
from tests.service.batch_data import MAPPING, ROWS, batch_settings, csv_bytes
from voce.service.app import create_app
from voce.service.batches.store import BatchStore

# scored rows: 10, 9, 9, 8, 7, 6, 3, 0, 10, 4 (r11: no text, but its answer still counts) -> n = 10
# promoters (9-10): r1 r2 r3 r9 = 4; passives (7-8): r4 r5 = 2; detractors (0-6): r6 r7 r8 r11 = 4
EXPECTED_NPS = 0.0  # 100 * (4 - 4) / 10
# CSAT answers: 5 5 4 4 3 2 1 1 5 2 3 -> 11 answers, 4-5: five of them -> 45.45 %
EXPECTED_CSAT = round(100 * 5 / 11, 2)


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def client(
    request: pytest.FixtureRequest, tiny_bundle_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TestClient]:
    tmp = tmp_path_factory.mktemp(f"batches-{request.param}")
    url = request.getfixturevalue("postgres_url") if request.param == "postgres" else None
    with local_client(create_app(batch_settings(tmp, tiny_bundle_dir, database_url=url)), raise_server_exceptions=False) as c:
        while c.get("/ready").status_code != 200:
            time.sleep(0.05)
        sign_in(c, new_key(c, "acme", ["batches:read", "batches:write"]))  # tenant acme's key, on every call
        yield c


@pytest.fixture(scope="module")
def done_batch(client: TestClient) -> dict[str, Any]:
    r = client.post(
        "/v1/batches", files={"file": ("survey.csv", csv_bytes(ROWS))}, data={"mapping": json.dumps(MAPPING)},
        headers={"X-Tenant": "acme"},  # may be sent, but only the key chooses the tenant
    )
    assert r.status_code == 202, r.text
    st = wait_batch(client, r.json()["id"])
    assert st["status"] == "done", st
    return st


def test_status_progress_and_tenant(client: TestClient, done_batch: dict[str, Any]) -> None:
    st = done_batch
    assert (st["rows_total"], st["rows_done"], st["rows_error"], st["progress"]) == (12, 12, 1, 1.0)
    assert st["tenant"] == "acme" and st["model_version"] == "tiny-test" and st["attempts"] == 1
    assert st["mapping"]["text"] == "commento"
    listed = client.get("/v1/batches").json()["batches"]
    assert done_batch["id"] in [b["id"] for b in listed]
    store: BatchStore = client.app.state.store  # type: ignore[attr-defined]
    b = store.get(done_batch["id"])
    key = client.headers["Authorization"].removeprefix("Bearer ")
    assert b is not None and b.api_key_hash == hashlib.sha256(key.encode()).hexdigest()  # the key's hash, never the key


def test_results_in_three_formats(client: TestClient, done_batch: dict[str, Any]) -> None:
    bid = done_batch["id"]
    lines = [json.loads(x) for x in client.get(f"/v1/batches/{bid}/results?format=jsonl").text.splitlines()]
    assert [x["row"] for x in lines] == list(range(12))
    assert [x["id"] for x in lines] == [r["id"] for r in ROWS]
    assert lines[0]["columns"] == ROWS[0] and lines[0]["sentiment"]["label"] in ("positive", "neutral", "negative", "mixed")
    assert lines[10]["error"]["code"] == "EmptyText" and lines[10]["columns"]["nps"] == "4"
    assert any("nps" in w for w in lines[11]["input_warnings"]) and "sentiment" in lines[11]  # bad score: still analysed

    text = client.get(f"/v1/batches/{bid}/results?format=csv").content.decode("utf-8-sig")
    table = list(csv.DictReader(io.StringIO(text)))
    assert len(table) == 12 and table[0]["commento"] == ROWS[0]["commento"] and table[0]["voce_status"] == "ok"
    assert table[10]["voce_status"] == "error" and table[10]["voce_error"].startswith("EmptyText")
    assert float(table[1]["voce_detractor_probability"]) == pytest.approx(lines[1]["detractor"]["probability"])

    r = client.get(f"/v1/batches/{bid}/results?format=xlsx")
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/vnd.openxmlformats")
    ws = openpyxl.load_workbook(io.BytesIO(r.content), read_only=True).worksheets[0]
    sheet = list(ws.iter_rows(values_only=True))
    assert len(sheet) == 13 and sheet[0][:2] == ("id", "commento") and sheet[1][1] == ROWS[0]["commento"]


def test_kpis_match_hand_computation(client: TestClient, done_batch: dict[str, Any]) -> None:
    bid = done_batch["id"]
    k = client.get(f"/v1/batches/{bid}/kpis").json()
    assert k["count"] == 12 and k["analysed"] == 11
    nps = k["nps"]
    assert (nps["promoters"], nps["passives"], nps["detractors"], nps["responses"]) == (4, 2, 4, 10)
    assert nps["value"] == pytest.approx(EXPECTED_NPS)
    # multinomial variance: (p_p + p_d - (p_p - p_d)^2) / n = (0.4 + 0.4 - 0) / 10 = 0.08 -> se 0.2828 -> ±55.44
    assert nps["ci_low"] == pytest.approx(-55.44, abs=0.02) and nps["ci_high"] == pytest.approx(55.44, abs=0.02)
    assert k["csat"]["value"] == pytest.approx(EXPECTED_CSAT, abs=0.01) and k["csat"]["responses"] == 11
    # one analysed row (r10) has no score: its predicted detractor probability is the estimate
    assert k["nps_estimate"]["rows"] == 2 and k["nps_estimate"]["estimated"] is True  # r10 and r12 ("dieci")
    assert k["trend"]["granularity"] in ("day", "week", "month")
    assert sum(p["count"] for p in k["trend"]["periods"]) == 11  # r12's date is unreadable
    north = client.get(f"/v1/batches/{bid}/kpis", params={"segment": "regione:nord"}).json()
    # nord: r1 r3 r5 r7 r9 r11 r12; scored: 10 9 7 3 10 4 -> promoters 3, detractors 2 of 6
    assert north["count"] == 7 and north["nps"]["responses"] == 6
    assert north["nps"]["value"] == pytest.approx(round(100 * (3 - 2) / 6, 2))
    jan = client.get(f"/v1/batches/{bid}/kpis", params={"period": "2026-01"}).json()
    assert jan["count"] == 3 and jan["nps"]["value"] == pytest.approx(100.0)
    assert client.get(f"/v1/batches/{bid}/kpis", params={"period": "March"}).status_code == 422


def test_rows_click_through(client: TestClient, done_batch: dict[str, Any]) -> None:
    bid = done_batch["id"]
    page = client.get(f"/v1/batches/{bid}/rows", params={"limit": 5}).json()
    assert page["total"] == 12 and len(page["rows"]) == 5 and page["rows"][0]["text"] == ROWS[0]["commento"]
    errs = client.get(f"/v1/batches/{bid}/rows", params={"errors": True}).json()
    assert errs["total"] == 1 and errs["rows"][0]["error"]["code"] == "EmptyText"
    found = client.get(f"/v1/batches/{bid}/rows", params={"q": "STAFF"}).json()
    assert {r["id"] for r in found["rows"]} == {"r2", "r8"}
    neg = client.get(f"/v1/batches/{bid}/rows", params={"sentiment": "negative", "limit": 500}).json()
    assert all(r["sentiment"] == "negative" for r in neg["rows"])
    topics = client.get(f"/v1/batches/{bid}/topics").json()
    assert topics["status"] in ("done", "failed") and "topics" in topics


def test_bad_uploads_are_clear_422s(client: TestClient) -> None:
    def post(name: str, data: bytes, mapping: str | None = None) -> Any:
        return client.post("/v1/batches", files={"file": (name, data)}, data={"mapping": mapping} if mapping else {})

    r = post("empty.csv", b"")
    assert r.status_code == 422 and "empty" in r.json()["error"]["message"]
    r = post("x.png", b"\x89PNG\r\n")
    assert r.status_code == 422 and "unsupported" in r.json()["error"]["message"]
    r = post("s.csv", csv_bytes(ROWS), json.dumps({"text": "comment"}))
    assert r.status_code == 422 and "commento" in r.json()["error"]["message"]  # lists the real columns
    r = post("s.csv", csv_bytes(ROWS), "{not json")
    assert r.status_code == 422 and "mapping" in r.json()["error"]["message"]
    r = post("s.csv", csv_bytes(ROWS), json.dumps({"text": "commento", "colour": "x"}))
    assert r.status_code == 422
    r = post("s.csv", b"a,b\n1,2\n")
    assert r.status_code == 422 and "guess" in r.json()["error"]["message"]
    assert client.get("/v1/batches/nope").status_code == 404
    assert client.get("/v1/batches/nope/kpis").json()["error"]["code"] == "NotFound"


def test_preview_guesses_mapping(client: TestClient) -> None:
    data = csv_bytes(ROWS, delimiter="\t", encoding="utf-16")
    p = client.post("/v1/batches/preview", files={"file": ("s.tsv", data)}).json()
    assert p["columns"] == list(ROWS[0]) and p["delimiter"] == "\t" and len(p["rows"]) == 5
    assert p["guessed_mapping"]["text"] == "commento" and p["guessed_mapping"]["nps"] == "nps"
    assert p["guessed_mapping"]["segments"] == ["regione"]


def test_xlsx_and_jsonl_uploads(client: TestClient) -> None:
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(["Comment", "Score"])
    for i in range(10):
        ws.append([f"Comment number {i}: the delivery was fine", i])
    buf = io.BytesIO()
    wb.save(buf)
    r = client.post("/v1/batches", files={"file": ("q.xlsx", buf.getvalue())})
    assert r.status_code == 202 and r.json()["mapping"]["nps"] == "Score"
    jl = "\n".join(json.dumps({"text": f"riga {i}", "channel": "app"}) for i in range(5)).encode()
    r2 = client.post("/v1/batches", files={"file": ("c.jsonl", jl)})
    assert r2.status_code == 202
    for bid, n in ((r.json()["id"], 10), (r2.json()["id"], 5)):
        st = wait_batch(client, bid)
        assert st["status"] == "done" and st["rows_done"] == n and st["rows_error"] == 0


def test_hostile_cells_nul_nan_formulas_and_unicode_names(client: TestClient) -> None:
    lines = [
        {"text": "=HYPERLINK(\"http://evil\",\"clic\") il servizio è ok", "score": 9},
        {"text": "ciao\u0000 mondo, consegna rapida", "score": float("nan")},
        {"text": "+39 mi hanno richiamato subito", "score": 10, "extra": [float("inf"), "x\u0000"]},
    ]
    body = "\n".join(json.dumps(x) for x in lines).encode()  # json.dumps writes NaN/Infinity, as some tools do
    r = client.post("/v1/batches", files={"file": ("sondaggio “Q1” ✓.jsonl", body)},
                    data={"mapping": json.dumps({"text": "text", "nps": "score"})})
    assert r.status_code == 202, r.text
    st = wait_batch(client, r.json()["id"])
    assert (st["status"], st["rows_done"], st["rows_error"]) == ("done", 3, 0), st
    bid = st["id"]
    res = client.get(f"/v1/batches/{bid}/results")
    assert res.status_code == 200 and "filename*=UTF-8''" in res.headers["content-disposition"]
    rows = [json.loads(x) for x in res.text.splitlines()]  # strict JSON: no NaN tokens
    assert rows[1]["columns"] == {"text": "ciao mondo, consegna rapida", "score": None}
    table = list(csv.reader(io.StringIO(client.get(f"/v1/batches/{bid}/results?format=csv").content.decode("utf-8-sig"))))
    assert table[1][0].startswith("'=HYPERLINK") and table[3][0].startswith("'+39")  # never a live formula
    ws = openpyxl.load_workbook(io.BytesIO(client.get(f"/v1/batches/{bid}/results?format=xlsx").content)).worksheets[0]
    assert ws["A2"].data_type == "s" and ws["A2"].value.startswith("=HYPERLINK")
    assert st["name"] == "sondaggio “Q1” ✓.jsonl"


def test_a_discovered_theme_becomes_a_taxonomy_entry(client: TestClient, done_batch: dict[str, Any]) -> None:
    import yaml
    from sqlalchemy import update

    from voce.models.taxonomy import parse_taxonomy
    from voce.service.db import Batch, BatchRow

    bid = done_batch["id"]
    store: BatchStore = client.app.state.store  # type: ignore[attr-defined]
    theme = {"id": 0, "size": 2, "languages": {"it": 1, "en": 1}, "label": "consegna / delivery",
             "keywords": {"it": ["consegna", "pacco", "corriere"], "en": ["delivery", "late", "parcel"]},
             "representative": [{"index": 0, "text": ROWS[0]["commento"]}]}
    with store.sessions() as s, s.begin():  # as if discovery had run
        s.execute(update(Batch).where(Batch.id == bid).values(discovery={"topics": [theme]}))
        s.execute(update(BatchRow).where(BatchRow.batch_id == bid, BatchRow.row.in_([0, 5])).values(discovered=0))
    r = client.get(f"/v1/batches/{bid}/topics/0/taxonomy-entry")
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/yaml")
    entries = yaml.safe_load(r.text)
    tax = parse_taxonomy({"version": "mine-1", "topics": entries})  # loads as a custom taxonomy
    entry = tax.topics.get(entries[0]["id"])
    assert entry is not None and entry.id.startswith("new_delivery")
    assert entry.names == {"it": "consegna, pacco, corriere", "en": "delivery, late, parcel"}
    assert entry.examples == [ROWS[0]["commento"], ROWS[5]["commento"]]  # representative first, then its other comments
    assert client.get(f"/v1/batches/{bid}/topics/0/taxonomy-entry?format=json").json()["id"] == entry.id
    assert client.get(f"/v1/batches/{bid}/topics/7/taxonomy-entry").status_code == 404


# ------------------------------------------------------------------ channel and touchpoint
#: texts with and without support for the touchpoint their channel names (fake encoder, tiny bundle: deterministic)
CHANNEL_ROWS: list[dict[str, str]] = [
    {"id": "c1", "commento": "The app is ok", "canale": "App", "nps": "9"},
    {"id": "c2", "commento": "Un ascensore era fuori servizio", "canale": "App", "nps": "2"},
    {"id": "c3", "commento": "L'app si blocca sempre al login", "canale": "app ", "nps": "3"},
    {"id": "c4", "commento": "Il call center non risponde mai", "canale": "Negozio", "nps": "4"},
    {"id": "c5", "commento": "Consegna velocissima!", "canale": "Telefono", "nps": "10"},
    {"id": "c6", "commento": "Ottimo prezzo", "canale": "Fax", "nps": "8"},
    {"id": "c7", "commento": "Delivery was late again", "canale": "", "nps": "6"},
    {"id": "c8", "commento": "", "canale": "App", "nps": "0"},  # no text: an error row, collected through the app
]


@pytest.fixture(scope="module")
def channel_batches(client: TestClient) -> tuple[str, str]:
    """The same comments uploaded twice: with the channel column mapped, and without it."""
    ids = []
    for mapping in ({"text": "commento", "id": "id", "nps": "nps", "channel": "canale"},
                    {"text": "commento", "id": "id", "nps": "nps"}):
        r = client.post("/v1/batches", files={"file": ("canali.csv", csv_bytes(CHANNEL_ROWS))},
                        data={"mapping": json.dumps(mapping)})
        assert r.status_code == 202, r.text
        assert wait_batch(client, r.json()["id"])["status"] == "done"
        ids.append(r.json()["id"])
    return ids[0], ids[1]


def _results(client: TestClient, bid: str) -> list[dict[str, Any]]:
    return [json.loads(x) for x in client.get(f"/v1/batches/{bid}/results?format=jsonl").text.splitlines()]


def test_a_channel_never_creates_a_touchpoint_on_its_own(client: TestClient, channel_batches: tuple[str, str]) -> None:
    with_channel, text_only = (_results(client, bid) for bid in channel_batches)
    assert [x.get("channel") for x in with_channel] == ["mobile_app"] * 3 + ["store", "call_center", None, None, None]
    assert all("channel" not in x for x in text_only)
    raised = 0
    for w, t in zip(with_channel[:7], text_only[:7], strict=True):
        from_text = {tp["id"] for tp in t["touchpoints"]}
        for tp in w["touchpoints"]:
            if tp["id"] not in from_text:  # only the channel's own touchpoint, flagged, and only where the text has it
                assert tp["from_channel"] and tp["id"] == w["channel"], (w["columns"], tp)
                raised += 1
        assert [tp["id"] for tp in w["touchpoints"] if tp["primary"]] == [tp["id"] for tp in w["touchpoints"][:1]]
    assert raised >= 1  # "The app is ok" through the app: the text supports the app, the channel raised it
    assert with_channel[1]["touchpoints"] == []  # a lift out of order, sent through the app, is about no app
    assert [tp["id"] for tp in with_channel[3]["touchpoints"]] == ["call_center"]  # written in the store, about the phone


def test_kpis_by_channel_and_touchpoint_channel(client: TestClient, channel_batches: tuple[str, str]) -> None:
    bid, text_only = channel_batches
    k = client.get(f"/v1/batches/{bid}/kpis").json()
    by = {c["id"]: c for c in k["by_channel"]}
    # the app: c1 c2 c3 and the error row c8 (its answer counts: the channel is an input, not a text result)
    assert {c: (by[c]["count"], by[c]["label"]) for c in by} == {
        "mobile_app": (4, "Mobile app"), "store": (1, "Store"), "call_center": (1, "Call center"), "fax": (1, "fax")
    }
    assert (by["mobile_app"]["nps_responses"], by["mobile_app"]["nps"]) == (4, -50.0)  # 9 | 2 3 0
    assert client.get(f"/v1/batches/{text_only}/kpis").json()["by_channel"] == []
    cells = {(c["touchpoint"], c["channel"]): c["count"] for c in k["touchpoint_channel"]}
    expected: dict[tuple[str, str], int] = {}
    for x in _results(client, bid):  # every touchpoint found in the text of an analysed row with a channel
        for tp in x.get("touchpoints", []) if x.get("channel") or x["columns"]["canale"] == "Fax" else []:
            key = (tp["id"], x.get("channel") or "fax")
            expected[key] = expected.get(key, 0) + 1
    assert cells == expected and cells[("call_center", "store")] == 1  # about the call center, written in the store

    app = client.get(f"/v1/batches/{bid}/kpis", params={"channel": "MOBILE_APP"}).json()
    assert (app["count"], app["nps"]["value"], app["filters"]["channel"]) == (4, -50.0, ["mobile_app"])
    page = client.get(f"/v1/batches/{bid}/rows", params={"channel": "mobile_app", "limit": 500}).json()
    assert [r["id"] for r in page["rows"]] == ["c1", "c2", "c3", "c8"] and page["rows"][0]["channel"] == "mobile_app"
    fax = client.get(f"/v1/batches/{bid}/rows", params={"channel": "fax"}).json()
    assert [(r["id"], r["channel"], r["columns"]["canale"]) for r in fax["rows"]] == [("c6", "fax", "Fax")]
    none = client.get(f"/v1/batches/{bid}/rows", params={"channel": "unknown"}).json()
    assert [r["id"] for r in none["rows"]] == ["c7"]
    bad = client.get(f"/v1/batches/{bid}/kpis", params={"channel": "x" * 65})
    assert bad.status_code == 422 and "channel" in bad.json()["error"]["message"]


def test_exports_carry_channel_and_touchpoints_apart(client: TestClient, channel_batches: tuple[str, str]) -> None:
    bid = channel_batches[0]
    lines = _results(client, bid)
    text = client.get(f"/v1/batches/{bid}/results?format=csv").content.decode("utf-8-sig")
    table = list(csv.DictReader(io.StringIO(text)))
    assert [r["canale"] for r in table] == [r["canale"] for r in CHANNEL_ROWS]  # the raw value, as uploaded
    assert [r["voce_channel"] for r in table] == ["mobile_app"] * 3 + ["store", "call_center", "fax", "", "mobile_app"]
    for row, line in zip(table, lines, strict=True):
        tps = [t["id"] for t in line.get("touchpoints", [])]
        assert row["voce_touchpoints"] == "; ".join(tps)
        assert row["voce_primary_touchpoint"] == (tps[0] if tps else "")
    ws = openpyxl.load_workbook(io.BytesIO(client.get(f"/v1/batches/{bid}/results?format=xlsx").content)).worksheets[0]
    sheet = list(ws.iter_rows(values_only=True))
    header = list(sheet[0])
    at = {c: header.index(c) for c in ("voce_channel", "voce_touchpoints", "voce_primary_touchpoint")}
    assert [r[at["voce_channel"]] for r in sheet[1:]] == [r["voce_channel"] or None for r in table]
    assert [r[at["voce_primary_touchpoint"]] for r in sheet[1:]] == [r["voce_primary_touchpoint"] or None for r in table]


def test_chunked_upload_over_the_limit_is_refused(tiny_bundle_dir: Path, tmp_path: Path) -> None:
    """No Content-Length: the body is counted as it arrives and cut at the limit with a 413."""
    settings = batch_settings(tmp_path, tiny_bundle_dir, max_upload_bytes=200_000, workers=0)
    boundary = "voceboundary"
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.csv\"\r\n"
            "Content-Type: text/csv\r\n\r\ntext\n").encode()

    def body() -> Iterator[bytes]:
        yield head
        for _ in range(100):  # 1 MB of rows, sent chunked
            yield b"una riga di commento abbastanza lunga\n" * 262
        yield f"\r\n--{boundary}--\r\n".encode()

    with local_client(create_app(settings), raise_server_exceptions=False) as c:
        sign_in(c)
        r = c.post("/v1/batches", content=body(), headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
        assert r.status_code == 413 and r.json()["error"]["code"] == "PayloadTooLarge"
        assert c.get("/v1/batches").json()["batches"] == []
        small = c.post("/v1/batches", files={"file": ("ok.csv", b"text\nciao\n")})
        assert small.status_code == 202  # below the limit, unaffected
    assert len(list((tmp_path / "data" / "uploads").iterdir())) == 1  # only the accepted upload is on disk


def test_cancel_through_the_api(client: TestClient) -> None:
    """POST /v1/batches/{id}/cancel on a finished batch returns it unchanged; on an unknown one 404."""
    r = client.post(
        "/v1/batches", files={"file": ("survey.csv", csv_bytes(ROWS))}, data={"mapping": json.dumps(MAPPING)},
    )
    assert r.status_code == 202, r.text
    bid = r.json()["id"]
    c = client.post(f"/v1/batches/{bid}/cancel")
    assert c.status_code == 202, c.text
    assert c.json()["status"] in ("cancelled", "running", "done")  # queued: cancelled at once; running: stops soon
    st = wait_batch(client, bid)
    if st["status"] != "done":  # it was cancelled before it could finish
        assert st["status"] == "cancelled" and st["cancel_requested"] is True
        assert client.get(f"/v1/batches/{bid}/rows").status_code == 200  # rows stored so far stay readable
    again = client.post(f"/v1/batches/{bid}/cancel").json()
    assert again["status"] == st["status"]  # a finished batch is left as it is
    assert client.post("/v1/batches/nope/cancel").status_code == 404
