"""One service (real factory and lifespan, fake encoder, SQLite) with two tenants, each with a finished batch, and
named keys: ``acme`` / ``beta`` (every scope but admin), ``acme2`` (a colleague at acme), ``acme-reader``
(batches:read only), ``acme-admin``."""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.service.api.helpers import local_client, wait_ready
from tests.service.auth.conftest import upload, wait_done
from tests.service.batch_data import batch_settings
from voce.service.app import create_app

FULL = ["analyze", "batches:read", "batches:write"]


@dataclass
class Team:
    client: TestClient
    keys: dict[str, str] = field(default_factory=dict)
    batch: dict[str, str] = field(default_factory=dict)

    def h(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[who]}"}


@pytest.fixture(scope="module")
def team(tiny_bundle_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Team]:
    tmp = tmp_path_factory.mktemp("insights")
    settings = batch_settings(tmp, tiny_bundle_dir, workers=1, discovery=False)
    with local_client(create_app(settings), raise_server_exceptions=False) as c:
        wait_ready(c)
        keys = c.app.state.access.keys  # type: ignore[attr-defined]
        t = Team(client=c)
        for who, tenant, scopes, name in (
            ("acme", "acme", FULL, "Giulia"), ("beta", "beta", FULL, "Marco"), ("acme2", "acme", FULL, "Luca"),
            ("acme-reader", "acme", ["batches:read"], "viewer"), ("acme-admin", "acme", ["admin"], "boss"),
        ):
            t.keys[who] = keys.create(tenant, scopes, name=name).secret
        for tenant in ("acme", "beta"):
            t.batch[tenant] = upload(c, t.keys[tenant])
        for tenant in ("acme", "beta"):
            assert wait_done(c, t.keys[tenant], t.batch[tenant])["status"] == "done"
        yield t
