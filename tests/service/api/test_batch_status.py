"""What the upload page reads through the API (issue 17): the preview's column profiles and mapping summary, the
guessed mapping of an Italian export with a 'Tipo cliente' column, the rows' warnings and errors counted by kind
in the batch status, and upload errors as codes + parameters (with the English message kept)."""
from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.service.api.helpers import bearer, local_client, new_key, sign_in, wait_batch
from tests.service.batch_data import batch_settings, csv_bytes
from voce.service.app import create_app


def _export(n: int = 24) -> list[dict[str, str]]:
    """Rows shaped like the issue's survey export (made-up cells, for the columns' shape only)."""
    rows = []
    for i in range(n):
        rows.append({
            "ID": f"R{i + 1}", "Data": f"{1 + i % 28:02d}/03/2026",
            "Commento": "" if i in (4, 9) else f"Consegna {'lenta' if i % 2 else 'veloce'}, ordine numero {i}",
            "Voto": "12" if i % 8 == 0 else str(i % 11), "Tipo cliente": "Fidelity" if i % 2 else "Standard",
        })
    return rows


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def client(
    request: pytest.FixtureRequest, tiny_bundle_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TestClient]:
    tmp = tmp_path_factory.mktemp(f"status-{request.param}")
    url = request.getfixturevalue("postgres_url") if request.param == "postgres" else None
    with local_client(create_app(batch_settings(tmp, tiny_bundle_dir, database_url=url)), raise_server_exceptions=False) as c:
        while c.get("/ready").status_code != 200:
            time.sleep(0.05)
        sign_in(c, new_key(c, "acme", ["batches:read", "batches:write"]))
        yield c


def test_preview_guesses_with_evidence_and_summarises(client: TestClient) -> None:
    p = client.post("/v1/batches/preview", files={"file": ("export.csv", csv_bytes(_export()))}).json()
    guess = p["guessed_mapping"]
    assert guess["kind"] is None and guess["segments"] == ["Tipo cliente"]
    assert (guess["text"], guess["nps"], guess["date"], guess["id"]) == ("Commento", "Voto", "Data", "ID")
    assert p["sample_rows"] == 24 and len(p["rows"]) == 5
    assert p["profiles"]["Voto"]["values"] == 24 and p["profiles"]["Voto"]["nps"] == 21  # rows 0, 8, 16 say 12
    summary = {s["role"]: s for s in p["summary"]}
    assert summary["nps"]["code"] == "summary.score" and summary["nps"]["params"]["invalid"] == 3
    assert summary["text"]["params"]["empty"] == 2 and "text analysed" in summary["text"]["message"]
    assert summary["segment"]["columns"] == ["Tipo cliente"]


def test_status_counts_warnings_and_errors_by_kind(client: TestClient) -> None:
    # the mapping the page guessed before: 'Tipo cliente' as the kind
    mapping = {"text": "Commento", "id": "ID", "nps": "Voto", "date": "Data", "kind": "Tipo cliente"}
    r = client.post("/v1/batches", files={"file": ("export.csv", csv_bytes(_export()))},
                    data={"mapping": json.dumps(mapping)})
    assert r.status_code == 202, r.text
    st = wait_batch(client, r.json()["id"])
    assert st["status"] == "done"
    st = client.get(f"/v1/batches/{st['id']}").json()
    notes = st["notes"]
    assert notes["rows_checked"] == 24
    by_code = {(w["code"], w["params"].get("role")): w for w in notes["warnings"]}
    kind = by_code[("value.kind", None)]
    assert kind["count"] == 22  # every row with a text (two are empty: errors, their kind is never read)
    assert kind["examples"][0]["params"]["value"] in ("Fidelity", "Standard") and kind["examples"][0]["row"] == 1
    assert "is not 'comment' or 'chat'" in kind["message"]
    assert by_code[("value.score", "nps")]["count"] == 3
    assert len(by_code[("value.score", "nps")]["examples"]) == 3
    (empty,) = notes["errors"]
    assert (empty["code"], empty["count"]) == ("EmptyText", 2)
    assert [e["row"] for e in empty["examples"]] == [5, 10] and empty["examples"][0]["params"] == {"column": "Commento"}
    assert notes["rows_with_warnings"] == 22
    # the list stays light: no notes per batch
    listed = client.get("/v1/batches").json()["batches"]
    assert all(b["notes"] is None for b in listed)
    # the guessed mapping of the same file gives no kind warning at all
    r2 = client.post("/v1/batches", files={"file": ("export.csv", csv_bytes(_export()))})
    st2 = wait_batch(client, r2.json()["id"])
    notes2 = client.get(f"/v1/batches/{st2['id']}").json()["notes"]
    assert not [w for w in notes2["warnings"] if w["code"] == "value.kind"]
    assert st2["mapping"]["segments"] == ["Tipo cliente"]
    # another tenant sees none of it
    other = new_key(client, "globex", ["batches:read"])
    assert client.get(f"/v1/batches/{st['id']}", headers=bearer(other)).status_code == 404


@pytest.mark.parametrize(
    ("name", "data", "code", "params"),
    [
        ("photo.png", b"\x89PNG\r\n", "upload.unsupported_type", {"suffix": ".png"}),
        ("s.csv", b"a,b\n1,2\n", "upload.no_text_column", {"columns": "a, b"}),
        ("s.csv", b"\n\n", "upload.empty", {}),
    ],
)
def test_upload_errors_carry_a_code_and_parameters(
    client: TestClient, name: str, data: bytes, code: str, params: dict[str, Any]
) -> None:
    r = client.post("/v1/batches", files={"file": (name, data)})
    assert r.status_code == 422
    err = r.json()["error"]
    assert err["code"] == "InvalidInput" and err["message"]  # the readable English message stays
    assert err["details"][0]["code"] == code
    assert {k: err["details"][0][k] for k in params} == params


def test_mapping_errors_carry_a_code(client: TestClient) -> None:
    r = client.post("/v1/batches", files={"file": ("s.csv", b"t\nciao\n")}, data={"mapping": "{not json"})
    assert r.status_code == 422 and r.json()["error"]["details"][0]["code"] == "upload.mapping_invalid"
    r = client.post("/v1/batches", files={"file": ("s.csv", b"t\nciao\n")}, data={"mapping": '{"text": "nope"}'})
    assert r.status_code == 422
    assert r.json()["error"]["details"][0] == {"code": "upload.unknown_columns", "columns": "nope"}
