"""What the API tests share besides fixtures: waiting for readiness, and calling the service as a keyed client."""
from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.testclient import TestClient

#: the Host tests call: loopback is served by default (any other name needs VOCE_ALLOWED_HOSTS)
LOOPBACK = "http://127.0.0.1"


def wait_ready(client: TestClient, timeout: float = 60) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        r = client.get("/ready")
        if r.status_code == 200:
            return
        assert r.json()["status"] in ("loading",), r.json()
        time.sleep(0.05)
    raise AssertionError("service never became ready")


def local_client(app: FastAPI, **kwargs: object) -> TestClient:
    """A TestClient that calls the app on loopback (the Host check refuses TestClient's default 'testserver')."""
    return TestClient(app, base_url=LOOPBACK, **kwargs)  # type: ignore[arg-type]


def initial_admin_key(data_dir: Path) -> str:
    """The admin key the first start created and printed (kept in ``<data_dir>/initial-admin-key``)."""
    return (data_dir / "initial-admin-key").read_text("ascii").strip()


def sign_in(client: TestClient, key: str | None = None) -> str:
    """Send ``key`` (default: the first admin key of tenant 'default') with every request of ``client``."""
    key = key or initial_admin_key(client.app.state.settings.data_dir)  # type: ignore[attr-defined]
    client.headers["Authorization"] = f"Bearer {key}"
    return key


def new_key(client: TestClient, tenant: str, scopes: Iterable[str] | str, name: str | None = None) -> str:
    """A fresh key of ``tenant`` in the running app's database (as `voce keys create` would make it)."""
    return client.app.state.access.keys.create(tenant, scopes, name=name).secret  # type: ignore[attr-defined]


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def wait_for(predicate: Callable[[], bool], timeout: float, every: float = 0.05) -> bool:
    """Poll ``predicate`` until it holds or ``timeout`` seconds pass; its last answer."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(every)
    return predicate()


def wait_batch(client: TestClient, batch_id: str, timeout: float = 120, headers: dict[str, str] | None = None,
               ) -> dict[str, Any]:
    """The batch's status once it is done or failed (the test fails if it never ends)."""
    last: dict[str, Any] = {}

    def ended() -> bool:
        nonlocal last
        last = client.get(f"/v1/batches/{batch_id}", headers=headers).json()
        return last.get("status") in ("done", "failed", "cancelled")

    if not wait_for(ended, timeout, every=0.05):
        raise AssertionError(f"batch never finished: {last}")
    return last
