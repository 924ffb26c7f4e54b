"""One error envelope and one exception -> status map: every domain error reaches the client as the same status."""
from __future__ import annotations

from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from voce.service.batches import errors as batch_errors
from voce.service.batches.errors import (
    BatchBusy,
    BatchError,
    BatchNotFound,
    InvalidFilter,
    InvalidUpload,
    TopicNotFound,
    UploadTooLarge,
)
from voce.service.errors import (
    STATUS,
    InvalidInput,
    NotReady,
    Overloaded,
    PayloadTooLarge,
    ServiceError,
    install_error_handlers,
    status_of,
)

CASES = [
    (InvalidInput("bad ids"), 422, "InvalidInput"),
    (PayloadTooLarge("too many"), 413, "PayloadTooLarge"),
    (Overloaded("busy"), 429, "TooManyRequests"),
    (NotReady("loading"), 503, "NotReady"),
    (BatchNotFound("no batch 'x'"), 404, "NotFound"),
    (TopicNotFound("no topic 3"), 404, "NotFound"),
    (BatchBusy("still running"), 409, "Conflict"),
    (InvalidUpload("the file is empty"), 422, "InvalidInput"),
    (InvalidFilter("invalid filter: period"), 422, "InvalidInput"),
    (UploadTooLarge("upload exceeds 10 bytes"), 413, "PayloadTooLarge"),
]


@pytest.fixture(scope="module")
def client() -> TestClient:
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/raise/{i}")
    def raise_case(i: int) -> None:
        raise CASES[i][0]

    @app.get("/new-batch-error")
    def raise_unmapped() -> None:
        class NewBatchError(BatchError):
            pass

        raise NewBatchError("a batch error nobody mapped yet")

    @app.get("/crash")
    def crash() -> None:
        raise RuntimeError("SELECT secret FROM customers")

    return TestClient(app, raise_server_exceptions=False)


@pytest.mark.parametrize("i", range(len(CASES)), ids=[type(c[0]).__name__ for c in CASES])
def test_each_error_has_its_status_code_and_envelope(client: TestClient, i: int) -> None:
    exc, status, code = CASES[i]
    r = client.get(f"/raise/{i}")
    assert r.status_code == status
    assert r.json() == {"error": {"code": code, "message": str(exc)}}
    assert ("retry-after" in r.headers) == (status in (429, 503))


def test_every_domain_error_is_mapped() -> None:
    """A batch error added without a map entry would be a bare 400: each one we raise has its own."""
    domain = {c for c in vars(batch_errors).values() if isinstance(c, type) and issubclass(c, BatchError)} - {BatchError}
    assert domain <= set(STATUS)
    assert all(status_of(c("x")) == STATUS[c] for c in domain)
    assert status_of(ValueError("x")) is None and status_of(ServiceError("x")) == (400, "BadRequest")


def test_an_unmapped_domain_error_is_a_400_and_anything_else_a_500_without_internals(client: TestClient) -> None:
    r = client.get("/new-batch-error")
    assert r.status_code == 400 and r.json()["error"] == {"code": "BadRequest", "message": "a batch error nobody mapped yet"}
    r = client.get("/crash")
    assert r.status_code == 500 and r.json()["error"]["code"] == "InternalError"
    assert "SELECT" not in r.text and "reference" in r.json()["error"]["message"]


def test_body_limit_stops_reading_at_the_limit() -> None:
    """The middleware itself: the app under it stops receiving once the limit is passed, and the client gets 413."""
    import asyncio

    from voce.service.errors import BodyLimit

    pulled: list[int] = []
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        pulled.append(1)
        return {"type": "http.request", "body": b"x" * 10_000, "more_body": len(pulled) < 100}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def reader_app(scope: Any, rcv: Any, snd: Any) -> None:  # reads everything, like a multipart parser
        while True:
            m = await rcv()
            if m["type"] == "http.disconnect":
                raise RuntimeError("client went away")
            if not m.get("more_body"):
                break
        await snd({"type": "http.response.start", "status": 200, "headers": []})
        await snd({"type": "http.response.body", "body": b"ok"})

    asyncio.run(BodyLimit(reader_app, lambda _p: 200_000)({"type": "http", "path": "/v1/batches"}, receive, send))
    assert sent[0]["status"] == 413 and len(pulled) == 21  # 21 x 10 kB crosses 200 kB: nothing read after that
