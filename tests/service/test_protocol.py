"""Protocol hygiene through the real app factory: bounded metric labels, bounded integers, malformed bodies as 422
through the envelope, every error status in the OpenAPI, ``Allow`` on 405, ``nosniff`` on every response."""
from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from tests.service.api.helpers import bearer, local_client, new_key, sign_in, wait_ready
from voce.service.api.batches import MAX_OFFSET
from voce.service.app import create_app
from voce.service.protocol import UNMATCHED, RouteLabels
from voce.service.settings import Settings

CSV = b"id;commento\n1;consegna lenta\n2;personale gentile\n"


def _settings(tiny_bundle_dir: Path, tmp: Path, **extra: Any) -> Settings:
    return Settings(
        encoder_backend="fake", encoder="fake", bundle=tiny_bundle_dir, cache_dir=tmp / "cache", data_dir=tmp / "data",
        max_request_bytes=20_000, **extra,
    )


@pytest.fixture(scope="module")
def client(tiny_bundle_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    """No in-process worker (a new batch stays queued, so deleting it is a conflict), one analysis at a time and no
    queue (so holding the slot gives a 429), signed in as the admin."""
    tmp = tmp_path_factory.mktemp("protocol")
    app = create_app(_settings(tiny_bundle_dir, tmp, workers=0, max_concurrency=1, max_waiting=0))

    @app.get("/test-only/boom", include_in_schema=False)
    def boom() -> None:  # an unexpected error: answered by Starlette's outermost middleware
        raise RuntimeError("internal detail that must not leak")

    with local_client(app, raise_server_exceptions=False) as c:
        wait_ready(c)
        sign_in(c)
        yield c


@pytest.fixture(scope="module")
def spec(client: TestClient) -> dict[str, Any]:
    r = client.get("/openapi.json")
    assert r.status_code == 200
    return r.json()


@pytest.fixture(scope="module")
def queued_batch(client: TestClient) -> str:
    r = client.post("/v1/batches", files={"file": ("a.csv", CSV)}, data={"mapping": json.dumps({"text": "commento"})})
    assert r.status_code == 202, r.text
    return str(r.json()["id"])


def _envelope(r: httpx.Response, status: int) -> dict[str, Any]:
    assert r.status_code == status, (r.status_code, r.text)
    body = r.json()
    assert set(body) == {"error"} and {"code", "message"} <= set(body["error"]), body
    return dict(body["error"])


# ------------------------------------------------------------------ metrics
def _series(text: str) -> set[str]:
    return {line.split(" ")[0] for line in text.splitlines() if line.startswith("voce_")}


def test_metrics_label_route_templates_and_stay_bounded_under_random_paths(client: TestClient, queued_batch: str) -> None:
    client.get(f"/v1/batches/{queued_batch}")
    client.get("/v1/batches/no-such-batch")
    for _ in range(20):
        client.get(f"/{secrets.token_hex(8)}")
        client.get(f"/v1/batches/{secrets.token_hex(8)}/nothing-here")
    client.get("/metrics")  # so that its own series exists in the first scrape compared
    before = client.get("/metrics").text
    tokens = [secrets.token_hex(8) for _ in range(300)]
    for t in tokens:
        client.get(f"/{t}")
        client.get(f"/v1/batches/{t}/nothing-here")
    after = client.get("/metrics").text
    assert _series(after) == _series(before), "random paths added metric series"
    assert len(after) < len(before) + 2000  # counts change, not the number of lines
    assert not any(t in after for t in tokens)
    assert queued_batch not in after and "no-such-batch" not in after
    assert f'route="{UNMATCHED}",status="404"' in after
    assert 'route="/v1/batches/{batch_id}",status="200"' in after
    assert 'route="/v1/batches/{batch_id}",status="404"' in after
    assert 'voce_request_seconds_count{route="/v1/batches/{batch_id}"}' in after


def test_a_refused_body_and_a_wrong_method_are_counted_under_their_route(client: TestClient) -> None:
    r = client.post("/v1/analyze", content=b"x" * 30_000, headers={"content-type": "application/json"})
    _envelope(r, 413)
    _envelope(client.put("/v1/analyze", json={}), 405)
    text = client.get("/metrics").text
    assert 'route="/v1/analyze",status="413"' in text
    assert 'route="/v1/analyze",status="405"' in text


def test_route_labels_match_templates_without_a_request(client: TestClient) -> None:
    labels = RouteLabels(client.app)  # type: ignore[arg-type]
    assert labels({"path": "/v1/batches/abc/rows"}) == "/v1/batches/{batch_id}/rows"
    assert labels({"path": "/v1/batches/preview"}) == "/v1/batches/preview"
    assert labels({"path": "/ui/static/vendor/chart.umd.min.js"}) == "/ui/static/{path:path}"
    assert labels({"path": "/openapi.json"}) == "/openapi.json"
    assert labels({"path": "/wp-login.php"}) == UNMATCHED


# ------------------------------------------------------------------ bounded integers
@pytest.mark.parametrize(
    "path, params",
    [
        ("/v1/batches", {"offset": 2**63}),
        ("/v1/batches", {"offset": MAX_OFFSET + 1}),
        ("/v1/batches", {"offset": -1}),
        ("/v1/batches", {"limit": 2**64}),
        ("/v1/batches/{bid}/rows", {"offset": 9223372036854775808}),
        ("/v1/batches/{bid}/rows", {"discovered": 2**63}),
        ("/v1/batches/{bid}/rows", {"discovered": -2}),
        ("/v1/batches/{bid}/topics/9223372036854775808/taxonomy-entry", {}),
        ("/v1/batches/{bid}/topics/-5/taxonomy-entry", {}),
    ],
)
def test_integer_parameters_out_of_bounds_are_422(
    client: TestClient, queued_batch: str, path: str, params: dict[str, int]
) -> None:
    error = _envelope(client.get(path.format(bid=queued_batch), params=params), 422)
    assert error["code"] == "InvalidInput"
    assert error["details"][0]["loc"][0] in ("query", "path")


def test_the_largest_offset_allowed_is_an_empty_page(client: TestClient, queued_batch: str) -> None:
    r = client.get("/v1/batches", params={"offset": MAX_OFFSET})
    assert r.status_code == 200 and r.json()["batches"] == []
    r = client.get(f"/v1/batches/{queued_batch}/rows", params={"offset": MAX_OFFSET})
    assert r.status_code == 200 and r.json()["rows"] == []


@pytest.mark.postgres
def test_the_largest_offset_on_postgresql(tiny_bundle_dir: Path, tmp_path: Path, postgres_url: str) -> None:
    app = create_app(_settings(tiny_bundle_dir, tmp_path, database_url=postgres_url, workers=0))
    with local_client(app, raise_server_exceptions=False) as c:
        wait_ready(c)
        sign_in(c, new_key(c, "protocol", ["batches:read", "batches:write"]))  # the database is the session's
        r = c.post("/v1/batches", files={"file": ("a.csv", CSV)}, data={"mapping": json.dumps({"text": "commento"})})
        bid = r.json()["id"]
        assert c.get("/v1/batches", params={"offset": MAX_OFFSET}).json()["batches"] == []
        assert c.get(f"/v1/batches/{bid}/rows", params={"offset": MAX_OFFSET}).json()["rows"] == []
        _envelope(c.get("/v1/batches", params={"offset": 2**63}), 422)


# ------------------------------------------------------------------ malformed bodies
@pytest.mark.parametrize(
    "body, words",
    [
        (b'{"documents": [', "not valid JSON"),
        (b'{"documents": [{"id": "1", "text": "ok"}]', "not valid JSON"),
        (b"\xff\xfe{\x00}", "not UTF-8"),
        (b'{"documents": [{"id": "1", "text": "caff\xe8"}]}', "not UTF-8"),
        (b"[" * 100_000 + b"]" * 100_000, None),  # too deep for the parser, or past the body limit
        (b"NaN", "valid dictionary"),  # Python's json reads it; it is still not a request
    ],
)
def test_a_malformed_json_body_is_422_through_the_envelope(client: TestClient, body: bytes, words: str | None) -> None:
    r = client.post("/v1/analyze", content=body, headers={"content-type": "application/json"})
    if len(body) > 20_000:
        assert r.status_code in (413, 422), r.text
        return
    error = _envelope(r, 422)
    assert error["code"] == "InvalidInput"
    assert words in error["message"], error


def test_a_deeply_nested_json_body_within_the_limit_is_422(client: TestClient) -> None:
    body = b'{"documents": ' + b"[" * 5000 + b"]" * 5000 + b"}"
    error = _envelope(client.post("/v1/analyze", content=body, headers={"content-type": "application/json"}), 422)
    assert error["code"] == "InvalidInput"


@pytest.mark.parametrize(
    "content_type, body",
    [
        ("multipart/form-data", b"--x\r\nnothing"),  # no boundary
        ("multipart/form-data; boundary=x", b"--x\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\nabc"),
    ],
)
def test_a_malformed_multipart_body_is_422(client: TestClient, content_type: str, body: bytes) -> None:
    error = _envelope(client.post("/v1/batches", content=body, headers={"content-type": content_type}), 422)
    assert error["code"] == "InvalidInput"


# ------------------------------------------------------------------ 405, headers
def test_405_names_the_allowed_methods(client: TestClient, queued_batch: str) -> None:
    r = client.put("/v1/analyze", json={})
    assert _envelope(r, 405)["code"] == "MethodNotAllowed"
    assert r.headers["allow"] == "POST"
    r = client.patch(f"/v1/batches/{queued_batch}")
    _envelope(r, 405)
    assert r.headers["allow"] == "DELETE, GET"  # both routes at this path, not only the first one matched


def _responses(client: TestClient, queued_batch: str) -> Iterator[tuple[str, httpx.Response]]:
    anonymous: dict[str, str] = {"Authorization": ""}
    yield "json 200", client.get("/v1/batches")
    yield "json 202", client.post("/v1/batches", files={"file": ("b.csv", CSV)}, data={"mapping": '{"text": "commento"}'})
    yield "404 unmatched", client.get("/no/such/route")
    yield "404 batch", client.get("/v1/batches/nope")
    yield "405", client.put("/v1/analyze", json={})
    yield "409", client.delete(f"/v1/batches/{queued_batch}")
    yield "422", client.get("/v1/batches", params={"offset": -1})
    yield "401", client.get("/v1/batches", headers=anonymous)
    yield "400 bad host", client.get("/v1/batches", headers={"host": "rebind.evil.example"})
    yield "403 cross-origin", client.post("/v1/analyze", json={}, headers={"origin": "https://evil.example"})
    yield "413", client.post("/v1/analyze", content=b"x" * 30_000, headers={"content-type": "application/json"})
    yield "500", client.get("/test-only/boom")
    yield "metrics", client.get("/metrics")
    yield "health", client.get("/health")
    yield "ready", client.get("/ready")
    yield "openapi", client.get("/openapi.json")
    yield "docs", client.get("/docs")
    yield "docs asset", client.get("/docs/static/swagger-ui.css")
    yield "page", client.get("/ui/")
    yield "sign-in page", client.get("/ui/signin", headers=anonymous)
    yield "redirect", client.get("/", follow_redirects=False)
    yield "static", client.get("/ui/static/voce.css")
    yield "export", client.get(f"/v1/batches/{queued_batch}/results", params={"format": "csv"})


def test_every_response_says_nosniff(client: TestClient, queued_batch: str) -> None:
    seen = []
    for what, r in _responses(client, queued_batch):
        seen.append((what, r.status_code))
        assert r.headers.get("x-content-type-options") == "nosniff", (what, r.status_code, dict(r.headers))
    statuses = {s for _, s in seen}
    assert {200, 202, 307, 400, 401, 403, 404, 405, 409, 413, 422, 500} <= statuses, seen


def test_a_500_hides_its_internals(client: TestClient) -> None:
    error = _envelope(client.get("/test-only/boom"), 500)
    assert "internal detail" not in error["message"] and "reference" in error["message"]


def test_pages_cannot_be_framed_and_send_no_referrer_elsewhere(client: TestClient) -> None:
    for path in ("/ui/", "/ui/signin", "/docs"):
        r = client.get(path, headers={"Authorization": ""} if path == "/ui/signin" else None)
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/html"), path
        assert r.headers["x-frame-options"] == "DENY", path
        assert "frame-ancestors 'none'" in r.headers["content-security-policy"], path
        # same-origin, not no-referrer: with no-referrer the browser sends `Origin: null` with the page's form POSTs
        assert r.headers["referrer-policy"] == "same-origin", path
    assert client.get("/v1/batches").headers["x-frame-options"] == "DENY"


# ------------------------------------------------------------------ the OpenAPI document
ENVELOPE = "#/components/schemas/ErrorEnvelope"


def _declared(spec: dict[str, Any], method: str, template: str) -> dict[str, Any]:
    return dict(spec["paths"][template][method.lower()]["responses"])


def test_every_error_status_in_the_openapi_uses_the_envelope(spec: dict[str, Any]) -> None:
    assert "HTTPValidationError" not in spec["components"]["schemas"]
    checked = 0
    for template, operations in spec["paths"].items():
        for method, operation in operations.items():
            responses = operation["responses"]
            for status, response in responses.items():
                if int(status) < 400 or (template, status) == ("/ready", "503"):
                    continue
                schema = response["content"]["application/json"]["schema"]
                assert schema == {"$ref": ENVELOPE}, (method, template, status, schema)
                checked += 1
            assert {"413", "500"} <= set(responses), (method, template)
            if template not in ("/health", "/ready"):
                assert "400" in responses, (method, template)
            if "{" in template:
                assert {"404", "422"} <= set(responses), (method, template)
    assert checked > 100


Trigger = tuple[str, str, int, Callable[[], httpx.Response]]


def _trigger(client: TestClient, queued_batch: str, failing: TestClient) -> list[Trigger]:
    """(method, route template, status, a request that gets that status) for every kind of error a route answers."""
    bid = queued_batch
    reader = new_key(client, "default", ["batches:read"])
    app = client.app

    def overloaded() -> httpx.Response:
        admission = app.state.admission  # type: ignore[attr-defined]
        with admission.slot():  # the one slot and the queue are taken
            return client.post("/v1/analyze", json={"documents": [{"id": "1", "text": "ciao"}]})

    return [
        ("GET", "/v1/batches", 400, lambda: client.get("/v1/batches", headers={"host": "evil.example"})),
        ("GET", "/v1/batches", 401, lambda: client.get("/v1/batches", headers={"Authorization": "Bearer nope"})),
        ("POST", "/v1/batches", 403, lambda: client.post("/v1/batches", headers=bearer(reader), files={"file": ("a.csv", CSV)})),
        ("GET", "/v1/batches", 422, lambda: client.get("/v1/batches", params={"offset": 2**63})),
        ("GET", "/v1/batches/{batch_id}", 404, lambda: client.get("/v1/batches/nope")),
        ("DELETE", "/v1/batches/{batch_id}", 409, lambda: client.delete(f"/v1/batches/{bid}")),
        ("DELETE", "/v1/batches/{batch_id}", 404, lambda: client.delete("/v1/batches/nope")),
        ("GET", "/v1/batches/{batch_id}/rows", 422, lambda: client.get(f"/v1/batches/{bid}/rows", params={"offset": -1})),
        ("GET", "/v1/batches/{batch_id}/kpis", 422, lambda: client.get(f"/v1/batches/{bid}/kpis", params={"period": "x"})),
        ("GET", "/v1/batches/{batch_id}/topics/{topic_id}/taxonomy-entry", 404,
         lambda: client.get(f"/v1/batches/{bid}/topics/3/taxonomy-entry")),
        ("POST", "/v1/batches", 422, lambda: client.post("/v1/batches", files={"file": ("a.csv", b"")})),
        ("POST", "/v1/batches/preview", 422, lambda: client.post("/v1/batches/preview", content=b"x",
                                                                  headers={"content-type": "multipart/form-data"})),
        ("POST", "/v1/analyze", 413, lambda: client.post("/v1/analyze", content=b"x" * 30_000,
                                                         headers={"content-type": "application/json"})),
        ("POST", "/v1/analyze", 422, lambda: client.post("/v1/analyze", content=b"{",
                                                         headers={"content-type": "application/json"})),
        ("POST", "/v1/analyze", 429, overloaded),
        ("POST", "/v1/analyze", 503, lambda: failing.post("/v1/analyze", json={"documents": [{"id": "1", "text": "ciao"}]})),
        ("GET", "/v1/taxonomy", 503, lambda: failing.get("/v1/taxonomy")),
        ("GET", "/info", 401, lambda: client.get("/info", headers={"Authorization": ""})),
        ("DELETE", "/v1/keys/{key_id}", 404, lambda: client.delete("/v1/keys/nope")),
        ("POST", "/v1/keys", 422, lambda: client.post("/v1/keys", json={"scopes": ["root"]})),
        ("GET", "/metrics", 403, lambda: client.get("/metrics", headers=bearer(reader))),
    ]


@pytest.fixture(scope="module")
def failing(tiny_bundle_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    """An app whose model failed to load (its bundle is missing): what needs the model answers 503."""
    tmp = tmp_path_factory.mktemp("failing")
    settings = _settings(tmp / "no-such-bundle", tmp, workers=0)
    with local_client(create_app(settings), raise_server_exceptions=False) as c:
        while c.get("/ready").json()["status"] == "loading":
            time.sleep(0.05)
        assert c.get("/ready").json()["status"] == "failed"
        sign_in(c)
        yield c


def test_every_status_a_route_answers_is_declared(
    client: TestClient, spec: dict[str, Any], queued_batch: str, failing: TestClient
) -> None:
    for method, template, status, request in _trigger(client, queued_batch, failing):
        r = request()
        assert r.status_code == status, (method, template, status, r.status_code, r.text)
        _envelope(r, status)
        declared = _declared(spec, method, template)
        assert str(status) in declared, f"{method} {template} answers {status} but the OpenAPI does not say so"
        assert declared[str(status)]["content"]["application/json"]["schema"] == {"$ref": ENVELOPE}
        if status in (429, 503):
            assert r.headers["retry-after"]


def test_a_database_outage_is_503_with_retry_after_not_a_500(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Through a route's dependency (GET) and through the key check in front of the routes (POST): the database
    that cannot be reached is a 503 the client may retry, never a 500 (tests/service/test_faults.py cuts a real
    PostgreSQL)."""
    from sqlalchemy.exc import OperationalError

    def unreachable(*_: object, **__: object) -> None:
        raise OperationalError("SELECT ... FROM api_keys", {}, ConnectionRefusedError("connection refused"))

    monkeypatch.setattr(client.app.state.access.keys, "verify", unreachable)  # type: ignore[attr-defined]
    for r in (client.get("/v1/batches"), client.post("/v1/analyze", json={"documents": [{"id": "1", "text": "x"}]})):
        error = _envelope(r, 503)
        assert error["code"] == "DatabaseUnavailable" and "api_keys" not in error["message"], error
        assert r.headers["retry-after"] and r.headers["x-content-type-options"] == "nosniff"
    # answered, not re-raised: the key check in front of the routes handles the outage itself (it used to answer 503
    # and then hand the exception to the server, which logged a traceback for every such request)
    strict = TestClient(client.app, raise_server_exceptions=True, base_url=str(client.base_url))  # no new lifespan
    strict.cookies.update(client.cookies)
    r = strict.post("/v1/analyze", json={"documents": [{"id": "1", "text": "x"}]}, headers=dict(client.headers))
    assert r.status_code == 503
