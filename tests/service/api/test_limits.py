"""Hostile input through the API, bounded (issue 13): invalid Unicode never a 500 nor a failed batch, the work of
one request bounded by tokens and its inline taxonomy, XLSX bombs refused at upload with the limit named, and the
careless files (broken quotes, binary data named .csv, a BOM before Latin-1, chats among comments) read right.

Every limit is low here, so each refusal is cheap; the defaults are in service/settings.py and ``/info``.
"""
from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openpyxl
import pytest
from fastapi.testclient import TestClient

from tests.service.api.helpers import local_client, new_key, sign_in, wait_batch, wait_ready
from tests.service.batch_data import batch_settings
from tests.service.test_xlsx import HEADER_ROW, shared_strings_bomb, sheet_xml, workbook_zip
from voce.service.app import create_app

EMOJI = "".join(chr(0x1F600 + i % 80) for i in range(1000))
NORMAL = "Il call center mi ha lasciato in attesa quaranta minuti, poi è caduta la linea. " * 10
LIMITS: dict[str, Any] = dict(
    max_documents=25, max_chars=2000, max_request_tokens=3000, max_taxonomy_entries=4, max_taxonomy_examples=3,
    max_taxonomy_text_chars=100, max_taxonomy_tokens=300, xlsx_max_uncompressed_bytes=1_000_000,
    xlsx_max_rows=5_000, xlsx_max_cells=20_000,
)


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def client(
    request: pytest.FixtureRequest, tiny_bundle_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TestClient]:
    tmp = tmp_path_factory.mktemp(f"limits-{request.param}")
    url = request.getfixturevalue("postgres_url") if request.param == "postgres" else None
    settings = batch_settings(tmp, tiny_bundle_dir, database_url=url, discovery=False, **LIMITS)
    with local_client(create_app(settings), raise_server_exceptions=False) as c:
        wait_ready(c)
        # a key of its own (on PostgreSQL the session's database already holds keys: no first admin key is made)
        sign_in(c, new_key(c, "limits", ["analyze", "batches:read", "batches:write"]))
        yield c


def _post(client: TestClient, body: str) -> Any:
    return client.post("/v1/analyze", content=body.encode("utf-8"), headers={"Content-Type": "application/json"})


def _results(client: TestClient, batch_id: str) -> list[dict[str, Any]]:
    return [json.loads(x) for x in client.get(f"/v1/batches/{batch_id}/results?format=jsonl").text.splitlines()]


def _upload(client: TestClient, name: str, data: bytes, mapping: dict[str, Any] | None = None) -> Any:
    form = {"mapping": json.dumps(mapping)} if mapping else {}
    return client.post("/v1/batches", files={"file": (name, data)}, data=form)


# ------------------------------------------------------------------ /v1/analyze
def test_invalid_unicode_is_cleaned_per_document_never_a_500(client: TestClient) -> None:
    # JSON escapes make lone surrogates and NULs that Python keeps in a str: the response could not be encoded
    body = (
        '{"documents": [{"id": "a\\ud800", "text": "Servizio pessimo \\ud800 e lento\\u0000.", "channel": "app\\uffff"},'
        ' {"id": "b", "turns": [{"speaker": "Cliente\\udc00", "text": "il pacco \\ud83d non arriva"}]},'
        ' {"id": "c", "text": "Tutto perfetto, grazie!"}]}'
    )
    r = _post(client, body)
    assert r.status_code == 200, r.text
    docs = {d["id"]: d for d in r.json()["documents"]}
    assert set(docs) == {"a\ufffd", "b", "c"} and not r.json()["errors"]
    assert any("U+FFFD in id, text, channel" in w for w in docs["a\ufffd"]["warnings"])
    assert any("turns[0].speaker, turns[0].text" in w for w in docs["b"]["warnings"])
    assert not any("U+FFFD" in w for w in docs["c"]["warnings"])
    bad_taxonomy = '{"documents": [{"id": "1", "text": "ok"}], "taxonomy": {"version": "x\\ud800", "topics": []}}'
    r = _post(client, bad_taxonomy)
    assert r.status_code == 422 and "taxonomy.version: invalid character U+D800" in r.json()["error"]["message"]


def test_a_request_is_bounded_by_tokens_not_characters(client: TestClient) -> None:
    normal = [{"id": str(i), "text": NORMAL[:1500]} for i in range(10)]
    assert _post(client, json.dumps({"documents": normal})).status_code == 200
    # the same number of documents, of fewer characters, but of emoji: about one token each
    emoji = [{"id": str(i), "text": EMOJI[:900]} for i in range(10)]
    r = _post(client, json.dumps({"documents": emoji}))
    assert r.status_code == 413, r.text
    message = r.json()["error"]["message"]
    assert "9,000 tokens" in message and "VOCE_MAX_REQUEST_TOKENS" in message and "3,000" in message
    # one document over its own token limit (max_chars // 2 = 1,000) is cut, with a warning, not refused
    r = _post(client, json.dumps({"documents": [{"id": "e", "text": EMOJI + " " + EMOJI[:900]}]}))
    assert r.status_code == 200, r.text
    assert any("cut to its first 1000 tokens" in w for w in r.json()["documents"][0]["warnings"])


def _taxonomy(entries: int = 2, examples: int = 1, text: str = "Tempi di attesa al telefono") -> dict[str, Any]:
    return {"version": "t1", "topics": [
        {"id": f"t{i}", "names": {"it": f"Tema {i}"}, "examples": [text] * examples} for i in range(entries)
    ]}


@pytest.mark.parametrize(
    ("taxonomy", "setting"),
    [
        (_taxonomy(entries=5), "VOCE_MAX_TAXONOMY_ENTRIES"),
        (_taxonomy(examples=4), "VOCE_MAX_TAXONOMY_EXAMPLES"),
        (_taxonomy(text="parola " * 20), "VOCE_MAX_TAXONOMY_TEXT_CHARS"),
        (_taxonomy(entries=4, examples=3, text=EMOJI[:90]), "VOCE_MAX_TAXONOMY_TOKENS"),
    ],
)
def test_an_inline_taxonomy_is_bounded(client: TestClient, taxonomy: dict[str, Any], setting: str) -> None:
    r = client.post("/v1/analyze", json={"documents": [{"id": "1", "text": "Attesa infinita"}], "taxonomy": taxonomy})
    assert r.status_code == 413 and setting in r.json()["error"]["message"], r.text


def test_a_taxonomy_within_the_bounds_is_used(client: TestClient) -> None:
    r = client.post("/v1/analyze", json={"documents": [{"id": "1", "text": "Attesa infinita"}], "taxonomy": _taxonomy()})
    assert r.status_code == 200 and r.json()["taxonomy_version"] == "t1"


def test_info_lists_every_limit(client: TestClient) -> None:
    limits = client.get("/info").json()["limits"]
    assert limits["max_document_tokens"] == 1000 and limits["max_request_tokens"] == 3000
    assert (limits["max_taxonomy_entries"], limits["max_taxonomy_examples"]) == (4, 3)
    assert (limits["max_taxonomy_text_chars"], limits["max_taxonomy_tokens"]) == (100, 300)
    assert limits["xlsx_max_uncompressed_bytes"] == 1_000_000 and limits["xlsx_max_rows"] == 5_000
    assert {"xlsx_max_cells", "xlsx_max_shared_strings", "xlsx_max_shared_string_chars", "xlsx_max_cell_chars",
            "max_upload_bytes"} <= set(limits)


# ------------------------------------------------------------------ uploads
def test_invalid_unicode_in_a_jsonl_upload_never_fails_the_batch(client: TestClient) -> None:
    """A lone surrogate failed the job with 0 rows stored, on SQLite and PostgreSQL; NUL is refused by PostgreSQL."""
    lines = [
        '{"id": "1", "text": "Consegna \\ud800 in ritardo", "extra\\u0000": "a\\u0000b"}',
        '{"id": "2\\udfff", "text": "Ottimo servizio\\u0000, grazie"}',
        '{"id": "3", "text": "Tutto bene"}',
    ]
    r = _upload(client, "bad.jsonl", ("\n".join(lines) + "\n").encode("utf-8"))
    assert r.status_code == 202, r.text
    st = wait_batch(client, r.json()["id"])
    assert (st["status"], st["rows_done"], st["rows_error"]) == ("done", 3, 0), st
    rows = _results(client, r.json()["id"])
    assert [x["id"] for x in rows] == ["1", "2\ufffd", "3"]
    assert any("invalid characters" in w for w in rows[0]["input_warnings"])
    assert rows[0]["columns"]["extra"] == "ab" and "\x00" not in json.dumps(rows, ensure_ascii=False)


def _bomb(tmp_path: Path) -> bytes:
    """A workbook of ~40 kB whose shared strings inflate to 20 MB (tests/service/test_xlsx.py builds it)."""
    path = workbook_zip(tmp_path / "bomb.xlsx", sheet_xml([HEADER_ROW]), shared_strings_bomb(20_000, 1000))
    return path.read_bytes()


def test_an_xlsx_bomb_is_refused_at_upload_naming_the_limit(client: TestClient, tmp_path: Path) -> None:
    before = client.get("/v1/batches").json()["batches"]
    data_dir: Path = client.app.state.settings.data_dir  # type: ignore[attr-defined]
    files = {p for p in data_dir.rglob("*") if p.is_file() and p.parent.name in ("uploads", "tmp")}
    for path in ("/v1/batches", "/v1/batches/preview"):
        r = client.post(path, files={"file": ("survey.xlsx", _bomb(tmp_path))})
        assert r.status_code == 413, r.text
        assert "VOCE_XLSX_MAX_UNCOMPRESSED_BYTES" in r.json()["error"]["message"]
    assert client.get("/v1/batches").json()["batches"] == before  # nothing queued
    assert {p for p in data_dir.rglob("*") if p.is_file() and p.parent.name in ("uploads", "tmp")} == files  # no trace


def test_an_xlsx_upload_is_previewed_and_analysed(client: TestClient) -> None:
    buf = io.BytesIO()
    wb = openpyxl.Workbook()
    for row in (["id", "commento", "voto"], ["1", "Consegna veloce", 9], ["2", "Pacco rotto", 2]):
        wb.active.append(row)
    wb.save(buf)
    preview = client.post("/v1/batches/preview", files={"file": ("survey.xlsx", buf.getvalue())})
    assert preview.status_code == 200, preview.text  # every XLSX preview failed: the scratch file had no .xlsx suffix
    assert preview.json()["columns"] == ["id", "commento", "voto"] and preview.json()["guessed_mapping"]["text"] == "commento"
    r = _upload(client, "survey.xlsx", buf.getvalue())
    assert r.status_code == 202, r.text
    st = wait_batch(client, r.json()["id"])
    assert (st["status"], st["rows_total"], st["rows_done"]) == ("done", 2, 2)


def test_careless_files_are_read_right(client: TestClient) -> None:
    import random

    garbage = _upload(client, "export.csv", random.Random(7).randbytes(200_000))
    assert garbage.status_code == 422 and "not text" in garbage.json()["error"]["message"]

    quotes = b'id,commento,voto\n1,"Servizio ottimo,9\n2,Consegna lenta,4\n3,Staff scortese,2\n4,"ok",5\n5,bene,8\n'
    r = _upload(client, "quotes.csv", quotes)
    assert r.status_code == 202, r.text
    assert wait_batch(client, r.json()["id"])["rows_done"] == 5  # was merged into 2 rows
    rows = _results(client, r.json()["id"])
    assert any("unbalanced quote" in w for w in rows[0]["input_warnings"])

    bom = b"\xef\xbb\xbf" + "id;commento\n1;Perché così lento?\n".encode("cp1252")
    assert _upload(client, "latin.csv", bom).json()["columns"] == ["id", "commento"]  # was ['ï»¿id', 'commento']

    chats = (json.dumps({"text": "Consegna veloce"}) + "\n"
             + json.dumps({"turns": [{"speaker": "Cliente", "text": "Il pacco non arriva"}]}) + "\n")
    r = _upload(client, "mixed.jsonl", chats.encode("utf-8"))
    st = wait_batch(client, r.json()["id"])
    assert (st["status"], st["rows_error"]) == ("done", 0), st  # the chat row was an EmptyText error
    assert _results(client, r.json()["id"])[1]["chat"]["turns"][0]["role"] == "customer"


def test_exports_neutralise_formulas_in_column_names_too(client: TestClient) -> None:
    data = b"=HYPERLINK(\"http://x\");+cmd;commento\n1;2;Servizio ottimo\n"
    r = _upload(client, "formula.csv", data, {"text": "commento"})
    assert r.status_code == 202, r.text
    bid = r.json()["id"]
    assert wait_batch(client, bid)["status"] == "done"
    header = next(csv.reader(io.StringIO(client.get(f"/v1/batches/{bid}/results?format=csv").content.decode("utf-8-sig"))))
    assert header[:3] == ["'=HYPERLINK(\"http://x\")", "'+cmd", "commento"]
    xlsx = client.get(f"/v1/batches/{bid}/results?format=xlsx")
    ws = openpyxl.load_workbook(io.BytesIO(xlsx.content)).active
    assert ws.cell(1, 1).value == "=HYPERLINK(\"http://x\")" and ws.cell(1, 1).data_type == "s"  # text, not a formula
