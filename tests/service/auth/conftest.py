"""Two tenants on one service (real factory and lifespan, fake encoder, SQLite): each with a finished batch, keys of
every kind, and a revoked key."""
from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.service.api.helpers import bearer, local_client, new_key, wait_batch, wait_ready
from tests.service.batch_data import MAPPING, ROWS, batch_settings, csv_bytes
from voce.service.app import create_app

ALL_BUT_ADMIN = ("analyze", "batches:read", "batches:write")


@dataclass
class Tenants:
    """The service and what each tenant holds: ``full[t]`` (every scope but admin), ``admin[t]``, ``batch[t]``."""

    client: TestClient
    full: dict[str, str] = field(default_factory=dict)
    admin: dict[str, str] = field(default_factory=dict)
    batch: dict[str, str] = field(default_factory=dict)
    revoked: str = ""

    def key(self, tenant: str, scopes: tuple[str, ...] | list[str]) -> str:
        return new_key(self.client, tenant, scopes)


def upload(client: TestClient, key: str, name: str = "survey.csv") -> str:
    r = client.post("/v1/batches", files={"file": (name, csv_bytes(ROWS))}, data={"mapping": json.dumps(MAPPING)},
                    headers=bearer(key))
    assert r.status_code == 202, r.text
    return str(r.json()["id"])


def wait_done(client: TestClient, key: str, batch_id: str, timeout: float = 120) -> dict[str, object]:
    return wait_batch(client, batch_id, timeout, headers=bearer(key))


@pytest.fixture(scope="module")
def tenants(tiny_bundle_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tenants]:
    tmp = tmp_path_factory.mktemp("auth")
    settings = batch_settings(tmp, tiny_bundle_dir, workers=1, discovery=False)
    with local_client(create_app(settings), raise_server_exceptions=False) as c:
        wait_ready(c)
        t = Tenants(client=c)
        for tenant in ("acme", "beta"):
            t.full[tenant] = t.key(tenant, ALL_BUT_ADMIN)
            t.admin[tenant] = t.key(tenant, ["admin"])
            t.batch[tenant] = upload(c, t.full[tenant])
        for tenant in ("acme", "beta"):
            assert wait_done(c, t.full[tenant], t.batch[tenant])["status"] == "done"
        t.revoked = t.key("acme", ALL_BUT_ADMIN)
        c.app.state.access.keys.revoke(t.revoked[:13])  # type: ignore[attr-defined]
        yield t
