"""``/v1/batches/{id}/compare`` and the dashboard's new KPI fields (multi-select filters, small groups, the
catch-all apart) through the real app factory and lifespan, on SQLite and on a real PostgreSQL."""
from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.service.api.helpers import bearer, local_client, new_key, sign_in, wait_batch
from tests.service.batch_data import MAPPING, ROWS, batch_settings, csv_bytes
from voce.service.app import create_app


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def client(
    request: pytest.FixtureRequest, tiny_bundle_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TestClient]:
    tmp = tmp_path_factory.mktemp(f"compare-{request.param}")
    url = request.getfixturevalue("postgres_url") if request.param == "postgres" else None
    settings = batch_settings(tmp, tiny_bundle_dir, database_url=url)
    with local_client(create_app(settings), raise_server_exceptions=False) as c:
        while c.get("/ready").status_code != 200:
            time.sleep(0.05)
        sign_in(c, new_key(c, "acme", ["batches:read", "batches:write"]))
        yield c


def _upload(client: TestClient, rows: list[dict[str, str]], headers: dict[str, str] | None = None) -> str:
    r = client.post("/v1/batches", files={"file": ("survey.csv", csv_bytes(rows))},
                    data={"mapping": json.dumps(MAPPING)}, headers=headers)
    assert r.status_code == 202, r.text
    assert wait_batch(client, r.json()["id"], headers=headers)["status"] == "done"
    return str(r.json()["id"])


@pytest.fixture(scope="module")
def two_batches(client: TestClient) -> tuple[str, str]:
    """The 12 hand rows, and the same comments a month later with every NPS answer 0 (all detractors)."""
    later = [{**r, "nps": "0" if r["nps"].isdigit() else r["nps"]} for r in ROWS]
    return _upload(client, ROWS), _upload(client, later)


def test_two_periods_of_one_batch(client: TestClient, two_batches: tuple[str, str]) -> None:
    bid, _ = two_batches
    r = client.get(f"/v1/batches/{bid}/compare", params={"a_period": "2026-01", "b_period": "2026-03"})
    assert r.status_code == 200, r.text
    c = r.json()
    # January: 10 9 9 -> NPS +100 (n 3); March: 0 10 and r11's 4 (no text, its answer counts) -> -33.33 (n 3)
    nps = c["kpis"]["nps"]
    assert (nps["a"], nps["b"], nps["n_a"], nps["n_b"]) == (100.0, round(-100 / 3, 2), 3, 3)
    assert nps["diff"] == pytest.approx(-133.33, abs=0.01) and nps["small"] is True
    assert nps["ci_low"] < nps["diff"] < nps["ci_high"] and 0 <= nps["p_value"] <= 1
    assert (c["batch_a"], c["batch_b"]) == (bid, bid) and c["a"]["filters"]["period"] == "2026-01"
    assert c["a"]["label"].endswith("2026-01") and c["b"]["count"] == 4
    assert isinstance(c["topics"], list) and isinstance(c["touchpoints"], list) and c["tests"] >= 2
    assert all(t["id"] != "other" for t in c["topics"])


def test_two_uploads_with_shared_multi_select_filters(client: TestClient, two_batches: tuple[str, str]) -> None:
    first, second = two_batches
    both = {"segment": ["regione:nord", "regione:sud"]}
    c = client.get(f"/v1/batches/{first}/compare", params={"b_batch": second, **both}).json()
    assert c["batch_b"] == second and c["a"]["filters"]["segment"] == {"regione": ["nord", "sud"]}
    nps = c["kpis"]["nps"]
    assert (nps["a"], nps["b"], nps["n_a"], nps["n_b"]) == (0.0, -100.0, 10, 10)
    assert nps["significant"] is True and nps["p_value"] < 0.01
    north = client.get(f"/v1/batches/{first}/compare", params={"b_batch": second, "segment": "regione:nord"}).json()
    assert north["a"]["count"] == 7 and north["kpis"]["nps"]["n_b"] == 6


def test_compare_errors_and_tenants(client: TestClient, two_batches: tuple[str, str]) -> None:
    first, _ = two_batches
    bad = client.get(f"/v1/batches/{first}/compare", params={"a_period": "March"})
    assert bad.status_code == 422 and "period" in bad.json()["error"]["message"]
    assert client.get("/v1/batches/nope/compare").status_code == 404
    assert client.get(f"/v1/batches/{first}/compare", params={"b_batch": "nope"}).status_code == 404
    beta = new_key(client, "beta", ["batches:read", "batches:write"])
    theirs = _upload(client, ROWS[:4], headers=bearer(beta))
    hidden = client.get(f"/v1/batches/{first}/compare", params={"b_batch": theirs})
    assert hidden.status_code == 404 and hidden.json()["error"]["code"] == "NotFound"  # another tenant's upload
    assert client.get(f"/v1/batches/{theirs}/compare", headers=bearer(beta), params={"b_batch": first}).status_code == 404


def test_kpis_mark_small_groups_and_take_repeated_filters(client: TestClient, two_batches: tuple[str, str]) -> None:
    bid, _ = two_batches
    k = client.get(f"/v1/batches/{bid}/kpis").json()
    nord = next(g for g in k["by_segment"]["regione"] if g["key"] == "nord")
    assert nord["nps_small"] is True and nord["nps_ci_low"] < nord["nps"] < nord["nps_ci_high"]
    assert k["min_driver_support"] == 20 and k["small_group"] == 30 and "unclassified" in k
    assert all(not t["driver"] or t["nps_responses"] >= 20 for t in k["topics"])  # 10 answers: no drivers at all
    many = client.get(f"/v1/batches/{bid}/kpis", params=[("segment", "regione:nord"), ("segment", "regione:sud")]).json()
    assert many["count"] == 12 and many["filters"]["segment"] == {"regione": ["nord", "sud"]}
    rows = client.get(f"/v1/batches/{bid}/rows", params=[("language", "it"), ("language", "en"), ("limit", 500)]).json()
    one = [client.get(f"/v1/batches/{bid}/rows", params={"language": x, "limit": 500}).json()["total"] for x in ("it", "en")]
    assert rows["total"] == sum(one)
