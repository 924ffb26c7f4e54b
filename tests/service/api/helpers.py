"""What the API tests share besides fixtures."""
from __future__ import annotations

import time

from fastapi.testclient import TestClient


def wait_ready(client: TestClient, timeout: float = 60) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        r = client.get("/ready")
        if r.status_code == 200:
            return
        assert r.json()["status"] in ("loading",), r.json()
        time.sleep(0.05)
    raise AssertionError("service never became ready")
