"""Alert webhooks: off unless allowed, private and loopback targets only when listed exactly, a signed POST to a
local HTTP server started here (allowed explicitly), retried with back-off on 5xx, a 4xx or a refusal recorded."""
from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update

from voce.service.batches.store import BatchStore
from voce.service.db import Batch
from voce.service.insights.alerts import AlertService, RuleIn, evaluate_batch
from voce.service.insights.tables import AlertEvent
from voce.service.insights.views import InsightError, Owner
from voce.service.insights.webhooks import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    WebhookPolicy,
    WebhookRefused,
    WebhookSender,
)

OWNER = Owner(tenant="acme", key="k", name="Giulia")


class Receiver:
    """A local HTTP server answering each POST with the next status of ``answers`` (then 200), keeping what came."""

    def __init__(self) -> None:
        self.answers: list[int] = []
        self.got: list[tuple[dict[str, str], bytes]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.got.append(({k.lower(): v for k, v in self.headers.items()}, body))
                status = receiver.answers.pop(0) if receiver.answers else 200
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/hooks/voce"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture()
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.server.shutdown()


@pytest.fixture()
def store(tmp_path: Path) -> BatchStore:
    return BatchStore.open(f"sqlite:///{tmp_path / 'voce.db'}")


def _done_batch(store: BatchStore, bid: str = "b1") -> str:
    store.create(id=bid, tenant="acme", name="survey.csv", file_format="csv", file_path="x", file_bytes=1,
                 mapping={"text": "t"})
    with store.sessions() as s, s.begin():
        s.execute(update(Batch).where(Batch.id == bid).values(status="done"))
    return bid


def _event(store: BatchStore, policy: WebhookPolicy, url: str, bid: str = "b1") -> tuple[int, str]:
    """A rule with a webhook and a fired event of it, written as evaluation writes one; and the rule's secret."""
    rule = AlertService(store.sessions, OWNER, policy).create(RuleIn(
        name="NPS giù", metric="nps", condition="below", threshold=0, min_rows=1, webhook_url=url))
    with store.sessions() as s, s.begin():
        e = AlertEvent(tenant="acme", rule_id=rule.id, rule_name=rule.name, batch_id=bid, status="fired",
                       code="alert.threshold", params={"value": -20.0}, value=-20.0, webhook_status="pending",
                       webhook_attempts=0)
        s.add(e)
        s.flush()
        event_id = e.id
    assert rule.webhook_secret
    return event_id, rule.webhook_secret


def _stored(store: BatchStore, event_id: int) -> AlertEvent:
    with store.sessions() as s:
        e = s.get(AlertEvent, event_id)
        assert e is not None
        return e


def _send(store: BatchStore, policy: WebhookPolicy, event_id: int) -> list[float]:
    from voce.service.insights.alerts import _webhook_body
    from voce.service.insights.webhooks import deliveries_for

    waits: list[float] = []
    batch = store.get("b1")
    assert batch is not None
    sender = WebhookSender(store.sessions, policy, sleep=waits.append)
    thread = sender.start(deliveries_for(store.sessions, [event_id], _webhook_body(store, batch)))
    assert thread is not None
    thread.join(60)
    assert not thread.is_alive()
    return waits


def test_a_signed_delivery_retried_after_server_errors(store: BatchStore, receiver: Receiver) -> None:
    policy = WebhookPolicy(allowed_hosts=(f"127.0.0.1:{receiver.port}",), attempts=5, backoff_seconds=0.5)
    event_id, secret = _event(store, policy, receiver.url, _done_batch(store))
    receiver.answers = [500, 503]
    waits = _send(store, policy, event_id)
    assert waits == [0.5, 1.0]  # back-off doubled
    e = _stored(store, event_id)
    assert (e.webhook_status, e.webhook_attempts, e.webhook_error) == ("delivered", 3, None) and e.delivered_at
    assert len(receiver.got) == 3
    headers, body = receiver.got[-1]
    stamp = headers[TIMESTAMP_HEADER.lower()]
    want = "sha256=" + hmac.new(secret.encode(), stamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(headers[SIGNATURE_HEADER.lower()], want)
    assert headers[SIGNATURE_HEADER.lower()] != "sha256=" + hmac.new(b"wrong", stamp.encode() + b"." + body,
                                                                      hashlib.sha256).hexdigest()
    sent = json.loads(body)
    assert sent["type"] == "voce.alert" and sent["event"]["id"] == event_id and sent["event"]["value"] == -20.0
    assert sent["rule"]["name"] == "NPS giù" and sent["batch"] == {"id": "b1", "name": "survey.csv", "tenant": "acme"}
    assert headers["x-voce-delivery"] == str(event_id)


def test_a_client_error_fails_at_once_and_server_errors_until_the_last_try(store: BatchStore, receiver: Receiver) -> None:
    policy = WebhookPolicy(allowed_hosts=(f"127.0.0.1:{receiver.port}",), attempts=3, backoff_seconds=0.0)
    bid = _done_batch(store)
    first, _ = _event(store, policy, receiver.url, bid)
    receiver.answers = [410]
    _send(store, policy, first)
    e = _stored(store, first)
    assert (e.webhook_status, e.webhook_attempts, e.webhook_error) == ("failed", 1, "HTTP 410")
    second, _ = _event(store, policy, receiver.url + "?again", _done_batch(store, "b2"))
    receiver.answers = [500, 500, 500, 500]
    with store.sessions() as s, s.begin():
        s.execute(update(AlertEvent).where(AlertEvent.id == second).values(batch_id="b1"))
    _send(store, policy, second)
    e = _stored(store, second)
    assert (e.webhook_status, e.webhook_attempts, e.webhook_error) == ("failed", 3, "HTTP 500")
    assert len(receiver.got) == 1 + 3


def test_an_unreachable_receiver_is_retried_and_recorded(store: BatchStore) -> None:
    closed = Receiver()
    closed.server.shutdown()
    closed.server.server_close()  # nothing listens there any more
    policy = WebhookPolicy(allowed_hosts=(f"127.0.0.1:{closed.port}",), attempts=2, backoff_seconds=0.0)
    event_id, _ = _event(store, policy, closed.url, _done_batch(store))
    _send(store, policy, event_id)
    e = _stored(store, event_id)
    assert (e.webhook_status, e.webhook_attempts, e.webhook_error) == ("failed", 2, "ConnectError")


def test_refused_unless_allowed(store: BatchStore, receiver: Receiver) -> None:
    def public(host: str, port: int) -> list[Any]:
        return [ipaddress.ip_address("93.184.216.34")]

    def private(host: str, port: int) -> list[Any]:
        return [ipaddress.ip_address("10.1.2.3")]

    cases = [
        (WebhookPolicy(), "https://hooks.example.com/x", "webhook.off"),
        (WebhookPolicy(allowed_hosts=("hooks.example.com",)), "https://evil.example.net/x", "webhook.host_not_allowed"),
        (WebhookPolicy(allowed_hosts=("*",)), receiver.url, "webhook.private"),  # loopback needs an exact entry
        (WebhookPolicy(allowed_hosts=("127.0.0.1",)), receiver.url.replace("127.0.0.1", "[::1]"), "webhook.host_not_allowed"),
        (WebhookPolicy(allowed_hosts=("*.example.com",), resolve=private), "https://hooks.example.com/x", "webhook.private"),
        (WebhookPolicy(allowed_hosts=("*",)), "ftp://hooks.example.com/x", "webhook.invalid"),
        (WebhookPolicy(allowed_hosts=("*",)), "https://user:pw@hooks.example.com/x", "webhook.invalid"),
        (WebhookPolicy(allowed_hosts=(f"127.0.0.1:{receiver.port + 1}",)), receiver.url, "webhook.host_not_allowed"),
    ]
    for policy, url, code in cases:
        with pytest.raises(WebhookRefused) as exc:
            policy.check(url)
        assert exc.value.code == code, (url, exc.value)
    WebhookPolicy(allowed_hosts=("*.example.com",), resolve=public).check("https://hooks.example.com/x")
    WebhookPolicy(allowed_hosts=("intranet.local",), resolve=private).check("http://intranet.local/x")  # listed exactly
    WebhookPolicy(allowed_hosts=(f"127.0.0.1:{receiver.port}",)).check(receiver.url)

    with pytest.raises(InsightError) as refused:  # a rule's webhook is checked when it is saved
        AlertService(store.sessions, OWNER, WebhookPolicy()).create(RuleIn(
            name="x", metric="nps", condition="below", threshold=0, webhook_url=receiver.url))
    assert refused.value.details == [{"code": "webhook.off"}]


def test_a_target_refused_at_delivery_is_never_called(store: BatchStore, receiver: Receiver) -> None:
    allowed = WebhookPolicy(allowed_hosts=(f"127.0.0.1:{receiver.port}",), backoff_seconds=0.0)
    event_id, _ = _event(store, allowed, receiver.url, _done_batch(store))
    _send(store, WebhookPolicy(allowed_hosts=("*",)), event_id)  # the operator narrowed the list since
    e = _stored(store, event_id)
    assert (e.webhook_status, e.webhook_attempts) == ("refused", 0) and e.webhook_error.startswith("webhook.private")
    assert receiver.got == []


def test_evaluation_sends_what_fired(store: BatchStore, receiver: Receiver, monkeypatch: pytest.MonkeyPatch) -> None:
    """The whole way: a batch finishes, the rule fires, the event is delivered in the background."""
    from voce.service.insights import alerts

    policy = WebhookPolicy(allowed_hosts=(f"127.0.0.1:{receiver.port}",), backoff_seconds=0.0)
    bid = _done_batch(store)
    rule = AlertService(store.sessions, OWNER, policy).create(RuleIn(
        name="volume", metric="nps", condition="below", threshold=0, min_rows=1, webhook_url=receiver.url))
    real = alerts._threshold

    def low_nps(r: Any, *args: Any) -> Any:  # the batch has no rows here: its NPS is measured as -40 of 10 answers
        out = real(r, *args)
        out.fired, out.value, out.rows = True, -40.0, 10
        return out

    monkeypatch.setattr(alerts, "_threshold", low_nps)
    done = evaluate_batch(store, bid, policy)
    assert len(done.events) == 1 and done.deliveries is not None
    done.deliveries.join(60)
    e = _stored(store, done.events[0])
    assert (e.rule_id, e.webhook_status, e.webhook_attempts) == (rule.id, "delivered", 1)
    assert json.loads(receiver.got[0][1])["event"]["value"] == -40.0
    off = evaluate_batch(store, _done_batch(store, "b2"), WebhookPolicy())  # webhooks turned off since
    assert off.deliveries is None and _stored(store, off.events[0]).webhook_status == "refused"


def test_deliveries_left_pending_are_sent_again_at_start(store: BatchStore, receiver: Receiver) -> None:
    import datetime as dt

    from voce.service.insights.alerts import resume_pending

    policy = WebhookPolicy(allowed_hosts=(f"127.0.0.1:{receiver.port}",), backoff_seconds=0.0)
    bid = _done_batch(store)
    stale, _ = _event(store, policy, receiver.url, bid)  # pending: its service stopped before sending it
    with store.sessions() as s, s.begin():
        s.execute(update(AlertEvent).where(AlertEvent.id == stale)
                  .values(created_at=dt.datetime(2026, 1, 1)))
    fresh, _ = _event(store, policy, receiver.url + "?fresh", _done_batch(store, "b2"))  # maybe under way elsewhere
    assert policy.longest_seconds() == 5 * 10.0
    thread = resume_pending(store, policy)
    assert thread is not None
    thread.join(60)
    assert _stored(store, stale).webhook_status == "delivered" and _stored(store, fresh).webhook_status == "pending"
    assert [json.loads(b)["event"]["id"] for _, b in receiver.got] == [stale]
    assert resume_pending(store, WebhookPolicy()) is None  # webhooks off: nothing is sent
