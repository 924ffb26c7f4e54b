"""The learning loop end to end on the real PostgreSQL (production path): corrections counted by the KPIs and
reverted, taxonomy versions with a diff and a rollback, a batch re-scored with the active version."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.service.api.helpers import local_client, wait_ready
from tests.service.auth.conftest import upload, wait_done
from tests.service.batch_data import batch_settings
from tests.service.learning.conftest import Team
from voce.service.app import create_app


@pytest.fixture()
def pg_team(tiny_bundle_dir: Path, tmp_path: Path, fresh_postgres_url: str) -> Iterator[Team]:
    settings = batch_settings(tmp_path, tiny_bundle_dir, workers=1, discovery=False, database_url=fresh_postgres_url)
    with local_client(create_app(settings), raise_server_exceptions=False) as c:
        wait_ready(c)
        t = Team(client=c)
        t.keys["acme"] = c.app.state.access.keys.create(  # type: ignore[attr-defined]
            "acme", ["analyze", "batches:read", "batches:write"], name="Giulia").secret
        t.batch["acme"] = upload(c, t.keys["acme"])
        assert wait_done(c, t.keys["acme"], t.batch["acme"])["status"] == "done"
        yield t


def test_corrections_taxonomy_and_rescore_on_postgres(pg_team: Team) -> None:
    t = pg_team
    base = f"/v1/batches/{t.batch['acme']}"
    before = t.client.get(f"{base}/kpis", headers=t.h("acme")).json()["sentiment"]
    row = t.client.get(f"{base}/rows", params={"limit": 50}, headers=t.h("acme")).json()["rows"][0]
    new = "negative" if row["sentiment"] != "negative" else "positive"
    made = t.client.post(f"{base}/rows/0/corrections", json={"sentiment": new}, headers=t.h("acme"))
    assert made.status_code == 201, made.text
    after = t.client.get(f"{base}/kpis", headers=t.h("acme")).json()["sentiment"]
    assert after[new] == before[new] + 1
    cid = made.json()["corrections"][0]["id"]
    assert t.client.delete(f"{base}/rows/0/corrections/{cid}", headers=t.h("acme")).status_code == 200
    assert t.client.get(f"{base}/kpis", headers=t.h("acme")).json()["sentiment"] == before

    edit = {"edits": [{"op": "add", "section": "topics", "entry": {"id": "parcheggio", "names": {"it": "Parcheggio"}}}]}
    v1 = t.client.patch("/v1/taxonomy", json=edit, headers=t.h("acme")).json()
    v2 = t.client.patch("/v1/taxonomy", json={"edits": [{"op": "retire", "section": "topics", "id": "parcheggio"}]},
                        headers=t.h("acme")).json()
    assert (v1["version"], v2["version"]) == (1, 2)
    diff = t.client.get("/v1/taxonomy/diff", params={"from": 1, "to": 2}, headers=t.h("acme")).json()["changes"]
    assert [(c["kind"], c["id"]) for c in diff] == [("removed", "parcheggio")]
    back = t.client.post("/v1/taxonomy/versions/1/rollback", headers=t.h("acme")).json()
    assert back["version"] == 3 and back["restored_from"] == 1

    started = t.client.post(f"{base}/rescore", headers=t.h("acme"))
    assert started.status_code == 202, started.text
    t.client.app.state.rescorer.wait(t.batch["acme"], 60)  # type: ignore[attr-defined]
    assert t.client.get(f"{base}/rescore", headers=t.h("acme")).json()["state"] == "done"
    assert t.client.get(base, headers=t.h("acme")).json()["taxonomy_version"] == back["label"]
