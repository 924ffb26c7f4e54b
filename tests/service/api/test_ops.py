"""Operations routes through the real app: health, readiness (loading, failed, ready), info, metrics, the envelope."""
from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.service.api.helpers import local_client, sign_in, wait_ready
from voce.service.app import create_app
from voce.service.settings import Settings


def test_health_ready_info_metrics(client: TestClient) -> None:
    assert client.get("/health").json()["status"] == "ok"
    assert client.get("/ready").json()["status"] == "ready"
    info = client.get("/info").json()
    assert info["model_version"] == "tiny-test" and info["ready"] is True
    limits = info["limits"]
    assert {k: limits[k] for k in ("max_documents", "max_chars", "max_request_bytes")} == {
        "max_documents": 5, "max_chars": 300, "max_request_bytes": 20_000}
    # the work bounds (tests/service/api/test_limits.py): a document's tokens follow its characters
    assert limits["max_document_tokens"] == 150 and limits["max_taxonomy_entries"] == 64
    assert "call_center" in info["touchpoints"] and "staff" in info["learned_topics"]
    assert info["sentiment_labels"] == ["positive", "neutral", "negative", "mixed"]
    client.post("/v1/analyze", json={"documents": [{"id": "m", "text": "ciao"}]})
    metrics = client.get("/metrics").text
    assert "voce_requests_total" in metrics and "voce_documents_total" in metrics
    # the micro-batcher's calls (at least the one request above, answered by one analyzer call)
    calls = re.search(r"^voce_microbatch_documents_count (\S+)$", metrics, re.M)
    assert calls is not None and float(calls.group(1)) >= 1
    assert re.search(r"^voce_microbatch_requests_bucket\{le=\"1.0\"\} [1-9]", metrics, re.M)


def test_openapi_has_stable_operation_ids(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    ops = {op["operationId"] for p in spec["paths"].values() for op in p.values()}
    assert {"analyze", "analyze_legacy", "health", "ready", "info", "metrics"} <= ops


def test_unknown_route_uses_the_envelope(client: TestClient) -> None:
    r = client.get("/v1/nothing")
    assert r.status_code == 404 and r.json()["error"]["code"] == "NotFound"


def test_not_ready_is_503_then_ready(tiny_bundle_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import voce.service.state as state_module

    gate = __import__("threading").Event()
    real = state_module.load_analyzer

    def slow(spec, **kw: object):  # type: ignore[no-untyped-def]
        gate.wait(10)
        return real(spec, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(state_module, "load_analyzer", slow)
    s = Settings(encoder_backend="fake", encoder="fake", bundle=tiny_bundle_dir, cache_dir=tmp_path, data_dir=tmp_path)
    with local_client(create_app(s)) as c:
        sign_in(c)
        assert c.get("/ready").status_code == 503
        r = c.post("/v1/analyze", json={"documents": [{"id": "1", "text": "ciao"}]})
        assert r.status_code == 503 and r.json()["error"]["code"] == "NotReady"
        assert c.get("/health").status_code == 200
        gate.set()
        wait_ready(c)
        assert c.post("/v1/analyze", json={"documents": [{"id": "1", "text": "ciao"}]}).status_code == 200


def test_failed_load_is_reported_not_crashed(tmp_path: Path) -> None:
    s = Settings(encoder_backend="fake", encoder="fake", bundle=tmp_path / "missing", cache_dir=tmp_path, data_dir=tmp_path)
    with local_client(create_app(s)) as c:
        deadline = time.time() + 10
        while c.get("/ready").json()["status"] == "loading" and time.time() < deadline:
            time.sleep(0.02)
        r = c.get("/ready")
        assert r.status_code == 503 and r.json()["status"] == "failed" and "bundle" in r.json()["detail"]
