"""``GET /v1/batches/{id}/export``: the analyst's CSV and XLSX, read back as Excel and Python would read them."""
from __future__ import annotations

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

from tests.service.api.helpers import local_client, new_key, sign_in, wait_batch
from tests.service.batch_data import MAPPING, ROWS, batch_settings, csv_bytes
from voce.service.app import create_app


@pytest.fixture(scope="module")
def client(tiny_bundle_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    tmp = tmp_path_factory.mktemp("exports")
    with local_client(create_app(batch_settings(tmp, tiny_bundle_dir)), raise_server_exceptions=False) as c:
        while c.get("/ready").status_code != 200:
            time.sleep(0.05)
        sign_in(c, new_key(c, "acme", ["batches:read", "batches:write"]))
        yield c


def _upload(client: TestClient, data: bytes, name: str = "sondaggio.csv") -> str:
    r = client.post("/v1/batches", files={"file": (name, data)}, data={"mapping": json.dumps(MAPPING)})
    assert r.status_code == 202, r.text
    st = wait_batch(client, r.json()["id"])
    assert st["status"] == "done", st
    return str(st["id"])


@pytest.fixture(scope="module")
def semicolon_batch(client: TestClient) -> str:
    return _upload(client, csv_bytes(ROWS, delimiter=";", encoding="utf-8-sig"))


def test_smoke(client: TestClient, semicolon_batch: str) -> None:
    r = client.get(f"/v1/batches/{semicolon_batch}/export", params={"format": "csv"})
    assert r.status_code == 200, r.text
    print(r.headers)
    print(r.content.decode("utf-8-sig")[:3000])
    r = client.get(f"/v1/batches/{semicolon_batch}/export", params={"format": "xlsx", "language": "en"})
    assert r.status_code == 200, r.text
    wb = openpyxl.load_workbook(io.BytesIO(r.content))
    for ws in wb.worksheets:
        print(ws.title, ws.freeze_panes, ws.auto_filter.ref)
        for row in list(ws.iter_rows(values_only=True))[:40]:
            print(row)
