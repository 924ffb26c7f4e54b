"""The HTTP API through the real app factory and lifespan (fake encoder, tiny bundle)."""
from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from voce.service.app import Admission, create_app
from voce.service.errors import Overloaded
from voce.service.settings import Settings


def _wait_ready(client: TestClient, timeout: float = 60) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        r = client.get("/ready")
        if r.status_code == 200:
            return
        assert r.json()["status"] in ("loading",), r.json()
        time.sleep(0.05)
    raise AssertionError("service never became ready")


@pytest.fixture(scope="module")
def client(tiny_bundle_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    settings = Settings(
        encoder_backend="fake", encoder="fake", bundle=tiny_bundle_dir,
        cache_dir=tmp_path_factory.mktemp("api-cache"), max_documents=5, max_chars=300, max_request_bytes=20_000,
    )
    with TestClient(create_app(settings), raise_server_exceptions=False) as c:
        _wait_ready(c)
        yield c


def test_health_ready_info_metrics(client: TestClient) -> None:
    assert client.get("/health").json()["status"] == "ok"
    assert client.get("/ready").json()["status"] == "ready"
    info = client.get("/info").json()
    assert info["model_version"] == "tiny-test" and info["ready"] is True
    assert info["limits"] == {"max_documents": 5, "max_chars": 300, "max_request_bytes": 20_000}
    assert "call_center" in info["touchpoints"] and "staff" in info["learned_topics"]
    assert info["sentiment_labels"] == ["positive", "neutral", "negative", "mixed"]
    client.post("/v1/analyze", json={"documents": [{"id": "m", "text": "ciao"}]})
    metrics = client.get("/metrics").text
    assert "voce_requests_total" in metrics and "voce_documents_total" in metrics


def test_analyze_shape_and_invariants(client: TestClient) -> None:
    body = {
        "documents": [
            {"id": "a", "text": "Il personale era scortese. La camera era sporca!", "language": "it"},
            {"id": "b", "text": "Great value for money.", "channel": "web"},
            {"id": "c", "kind": "chat", "turns": [
                {"speaker": "Cliente", "text": "Ho già chiamato tre volte, il pacco non arriva"},
                {"speaker": "Operatore", "text": "La trasferisco a un collega"},
            ]},
        ]
    }
    for path in ("/v1/analyze", "/analyze"):
        r = client.post(path, json=body)
        assert r.status_code == 200, r.text
        out = r.json()
        assert out["model_version"] == "tiny-test" and out["errors"] == []
        docs = {d["id"]: d for d in out["documents"]}
        assert set(docs) == {"a", "b", "c"}
        for d in docs.values():
            s = d["sentiment"]["scores"]
            assert abs(s["positive"] + s["neutral"] + s["negative"] - 1) < 1e-5
            assert 0 <= d["detractor"]["probability"] <= 1
            text = d.get("text") or next(x["text"] for x in body["documents"] if x["id"] == d["id"])
            for sent in d["sentences"]:
                assert text[sent["offset"] : sent["offset"] + sent["length"]] == sent["text"]
            for item in d["topics"] + d["touchpoints"]:
                assert item["evidence"] and 0 <= item["score"] <= 1
                for ev in item["evidence"]:
                    assert ev["offset"] >= 0 and ev["offset"] + ev["length"] <= len(text)
        assert docs["a"]["language"] == "it"
        chat = docs["c"]["chat"]
        assert [t["role"] for t in chat["turns"]] == ["customer", "agent"]
        assert {e["kind"] for e in chat["effort_signals"]} >= {"repeat_contact", "transfer"}


def test_per_document_errors_do_not_fail_the_request(client: TestClient) -> None:
    r = client.post("/v1/analyze", json={"documents": [
        {"id": "ok", "text": "Tutto bene"}, {"id": "empty", "text": "   "}, {"id": "long", "text": "x " * 200},
    ]})
    assert r.status_code == 200
    errors = {e["id"]: e["error"]["code"] for e in r.json()["errors"]}
    assert errors == {"empty": "EmptyText", "long": "TextTooLong"}
    assert [d["id"] for d in r.json()["documents"]] == ["ok"]


@pytest.mark.parametrize(
    ("payload", "status", "code"),
    [
        ({"documents": []}, 422, "InvalidInput"),
        ({"documents": [{"id": str(i), "text": "x"} for i in range(6)]}, 413, "PayloadTooLarge"),
        ({"documents": [{"id": "1", "text": 5}]}, 422, "InvalidInput"),
        ({"documents": [{"text": "no id"}]}, 422, "InvalidInput"),
        ({"documents": [{"id": "1", "text": "x", "kind": "letter"}]}, 422, "InvalidInput"),
        ({"documents": [{"id": "1", "text": "x"}, {"id": "1", "text": "y"}]}, 422, "InvalidInput"),
        ({"documents": [{"id": "1", "text": "x"}], "taxonomy": {"version": "1"}}, 422, "InvalidInput"),
        ({"documents": [{"id": "1", "text": "x"}], "extra": 1}, 422, "InvalidInput"),
        ("not json", 422, "InvalidInput"),
    ],
)
def test_bad_input_gets_a_clear_4xx(client: TestClient, payload: object, status: int, code: str) -> None:
    if isinstance(payload, str):
        r = client.post("/v1/analyze", content=payload, headers={"content-type": "application/json"})
    else:
        r = client.post("/v1/analyze", json=payload)
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert err["code"] == code and err["message"]


def test_body_over_the_byte_limit_is_413(client: TestClient) -> None:
    r = client.post("/v1/analyze", content=b"{" + b" " * 30_000 + b"}", headers={"content-type": "application/json"})
    assert r.status_code == 413 and r.json()["error"]["code"] == "PayloadTooLarge"


def test_inline_custom_taxonomy_replaces_topics(client: TestClient) -> None:
    tax = {"version": "custom-1", "topics": [
        {"id": "parcel", "names": {"it": "Pacco", "en": "Parcel"}, "examples": ["il pacco non arriva", "parcel lost"]},
        {"id": "weather", "names": {"it": "Meteo", "en": "Weather"}, "examples": ["piove sempre", "sunny day"]},
    ]}
    r = client.post("/v1/analyze", json={"documents": [{"id": "1", "text": "il pacco non arriva mai"}], "taxonomy": tax})
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["taxonomy_version"] == "custom-1"
    assert {t["id"] for t in out["documents"][0]["topics"]} <= {"parcel", "weather"}
    assert all(t["source"] == "zero_shot" for t in out["documents"][0]["topics"])


def test_openapi_has_stable_operation_ids(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    ops = {op["operationId"] for p in spec["paths"].values() for op in p.values()}
    assert {"analyze", "analyze_legacy", "health", "ready", "info", "metrics"} <= ops


def test_unknown_route_uses_the_envelope(client: TestClient) -> None:
    r = client.get("/v1/nothing")
    assert r.status_code == 404 and r.json()["error"]["code"] == "NotFound"


def test_not_ready_is_503_then_ready(tiny_bundle_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import voce.service.app as app_module

    gate = __import__("threading").Event()
    real = app_module.load_analyzer

    def slow(spec, **kw: object):  # type: ignore[no-untyped-def]
        gate.wait(10)
        return real(spec, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(app_module, "load_analyzer", slow)
    s = Settings(encoder_backend="fake", encoder="fake", bundle=tiny_bundle_dir, cache_dir=tmp_path)
    with TestClient(create_app(s)) as c:
        assert c.get("/ready").status_code == 503
        r = c.post("/v1/analyze", json={"documents": [{"id": "1", "text": "ciao"}]})
        assert r.status_code == 503 and r.json()["error"]["code"] == "NotReady"
        assert c.get("/health").status_code == 200
        gate.set()
        _wait_ready(c)
        assert c.post("/v1/analyze", json={"documents": [{"id": "1", "text": "ciao"}]}).status_code == 200


def test_failed_load_is_reported_not_crashed(tmp_path: Path) -> None:
    s = Settings(encoder_backend="fake", encoder="fake", bundle=tmp_path / "missing", cache_dir=tmp_path)
    with TestClient(create_app(s)) as c:
        deadline = time.time() + 10
        while c.get("/ready").json()["status"] == "loading" and time.time() < deadline:
            time.sleep(0.02)
        r = c.get("/ready")
        assert r.status_code == 503 and r.json()["status"] == "failed" and "bundle" in r.json()["detail"]


def test_admission_rejects_beyond_capacity() -> None:
    a = Admission(concurrency=1, waiting=0)
    with a.slot(), pytest.raises(Overloaded), a.slot():
        pass
    with a.slot():  # released again
        pass
