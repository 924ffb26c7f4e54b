"""Alert events POSTed to a URL the tenant chose, signed, retried in a background thread, each try recorded.

The service makes no outbound call unless the operator allows it: webhooks are off until
``VOCE_WEBHOOK_ALLOWED_HOSTS`` names the hosts they may reach (``hooks.example.com``, ``*.example.com``, or ``*`` for
any public host).  A host whose address is private, loopback, link-local or otherwise not global is refused unless
it is listed exactly (``127.0.0.1:9000`` or ``intranet.local``), whatever the wildcards say, so an alert rule cannot
be used to reach the service's own network.  The address is checked again right before every try (the name may
resolve elsewhere by then); redirects are not followed.

Each request carries ``X-Voce-Timestamp`` (Unix seconds) and ``X-Voce-Signature: sha256=<hex>``, the HMAC-SHA256
of ``"<timestamp>.<body>"`` under the rule's secret (shown once, when the rule is created): a receiver recomputes it
and rejects a stale timestamp.  A 2xx answer is delivered; a 408, 429, 5xx, a timeout or a refused connection is
tried again after ``backoff``, doubled each time, up to ``attempts`` tries; any other 4xx fails at once.  The
event records the state (``pending`` -> ``delivered`` | ``failed`` | ``refused``), the tries and the last error.
A service stopped while a delivery waits leaves it ``pending``; the next start of the service sends it again
(:func:`voce.service.insights.alerts.resume_pending`).
"""
from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from sqlalchemy import select
from sqlalchemy.orm import sessionmaker

from voce.service.db import utcnow
from voce.service.insights.tables import AlertEvent, AlertRule

if TYPE_CHECKING:
    from voce.service.settings import Settings

log = logging.getLogger("voce.alerts")

SIGNATURE_HEADER = "X-Voce-Signature"
TIMESTAMP_HEADER = "X-Voce-Timestamp"
MAX_URL_CHARS = 2000


class WebhookRefused(ValueError):
    """A URL this service will not call; ``code`` and ``params`` say why (the page translates them)."""

    def __init__(self, message: str, code: str, **params: Any) -> None:
        super().__init__(message)
        self.code = code
        self.params = params


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """``sha256=<hex>``: HMAC-SHA256 of ``"<timestamp>.<body>"`` under ``secret`` (what a receiver recomputes)."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def _host_matches(host: str, port: int, entry: str) -> tuple[bool, bool]:
    """(matches, exactly): ``entry`` is ``host``, ``host:port``, ``*.domain`` or ``*``."""
    entry = entry.strip().lower()
    if entry == "*":
        return True, False
    if entry.startswith("*."):
        return host.endswith(entry[1:]), False
    if entry.startswith("[") or entry.count(":") == 1:  # host:port ([v6]:port)
        name, _, p = entry.rpartition(":")
        return name.strip("[]") == host and p == str(port), True
    return entry.strip("[]") == host, True


def _resolve(host: str, port: int) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in infos]


@dataclass(frozen=True)
class WebhookPolicy:
    """Where alert webhooks may go and how they are retried (``VOCE_WEBHOOK_*``); empty ``allowed_hosts``: off."""

    allowed_hosts: tuple[str, ...] = ()
    attempts: int = 5
    backoff_seconds: float = 2.0
    timeout_seconds: float = 10.0
    resolve: Callable[[str, int], list[Any]] = field(default=_resolve, compare=False, repr=False)

    @classmethod
    def from_settings(cls, settings: Settings) -> WebhookPolicy:
        return cls(
            allowed_hosts=tuple(settings.webhook_allowed_hosts), attempts=settings.webhook_attempts,
            backoff_seconds=settings.webhook_backoff_seconds,
        )

    @property
    def enabled(self) -> bool:
        return bool(self.allowed_hosts)

    def longest_seconds(self) -> float:
        """How long one delivery may take at most: every try's timeout and every wait between them."""
        waits = sum(self.backoff_seconds * 2**i for i in range(self.attempts - 1))
        return self.attempts * self.timeout_seconds + waits

    def check(self, url: str, *, resolve: bool = True) -> None:
        """Refuse (:class:`WebhookRefused`) a URL this policy does not allow; ``resolve`` also checks the addresses
        the host has now (at delivery; a rule's URL is checked without resolving when it is saved)."""
        if not self.enabled:
            raise WebhookRefused("webhooks are off: the operator allows them with VOCE_WEBHOOK_ALLOWED_HOSTS",
                                 "webhook.off")
        if len(url) > MAX_URL_CHARS:
            raise WebhookRefused(f"the webhook URL is at most {MAX_URL_CHARS} characters", "webhook.invalid")
        try:
            parts = urlsplit(url)
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError as exc:
            raise WebhookRefused(f"not a URL: {exc}", "webhook.invalid") from exc
        host = (parts.hostname or "").lower()
        if parts.scheme not in ("http", "https") or not host or parts.username or parts.password:
            raise WebhookRefused("the webhook URL must be http(s)://host/... without credentials", "webhook.invalid")
        matches = [_host_matches(host, port, e) for e in self.allowed_hosts]
        if not any(m for m, _ in matches):
            raise WebhookRefused(f"host {host!r} is not in VOCE_WEBHOOK_ALLOWED_HOSTS", "webhook.host_not_allowed",
                                 host=host)
        exact = any(m and x for m, x in matches)
        try:
            literal = ipaddress.ip_address(host)
        except ValueError:
            literal = None
        addresses = [literal] if literal is not None else []
        if resolve and literal is None:
            try:
                addresses = self.resolve(host, port)
            except OSError as exc:
                raise WebhookRefused(f"host {host!r} does not resolve", "webhook.unresolved", host=host) from exc
        if not exact and any(not a.is_global for a in addresses):
            raise WebhookRefused(f"host {host!r} is a private or loopback address; list it exactly in "
                                 "VOCE_WEBHOOK_ALLOWED_HOSTS to allow it", "webhook.private", host=host)


@dataclass
class Delivery:
    """One event to send: where, the signed body, and what happened."""

    event_id: int
    url: str
    secret: str
    body: bytes


def payload(event: dict[str, Any], rule: dict[str, Any], batch: dict[str, Any]) -> bytes:
    """The JSON body a receiver gets (no customer text: ids, names, numbers)."""
    return json.dumps({"type": "voce.alert", "event": event, "rule": rule, "batch": batch},
                      separators=(",", ":"), sort_keys=True, default=str).encode()


class WebhookSender:
    """Sends deliveries in a background thread with retries and writes each try's outcome on its event."""

    def __init__(self, sessions: sessionmaker, policy: WebhookPolicy,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.sessions = sessions
        self.policy = policy
        self.sleep = sleep

    def start(self, deliveries: Iterable[Delivery]) -> threading.Thread | None:
        items = list(deliveries)
        if not items:
            return None
        thread = threading.Thread(target=self.run, args=(items,), name="voce-webhooks", daemon=True)
        thread.start()
        return thread

    def run(self, deliveries: list[Delivery]) -> None:
        for d in deliveries:
            try:
                self.deliver(d)
            except Exception:  # never let one event stop the others; the event keeps its last recorded state
                log.exception("webhook for alert event %s could not be delivered", d.event_id)

    def _record(self, event_id: int, **values: Any) -> None:
        with self.sessions() as s, s.begin():
            event = s.get(AlertEvent, event_id)
            if event is not None:
                for k, v in values.items():
                    setattr(event, k, v)

    def deliver(self, d: Delivery) -> str:
        """Try ``d`` until it is delivered, fails for good or runs out of tries; returns the final state."""
        import httpx

        wait = self.policy.backoff_seconds
        for attempt in range(1, self.policy.attempts + 1):
            try:
                self.policy.check(d.url)
            except WebhookRefused as exc:
                self._record(d.event_id, webhook_status="refused", webhook_attempts=attempt - 1,
                             webhook_error=f"{exc.code}: {exc}")
                return "refused"
            stamp = str(int(time.time()))
            headers = {"Content-Type": "application/json", "User-Agent": "voce-alerts",
                       TIMESTAMP_HEADER: stamp, SIGNATURE_HEADER: sign(d.secret, stamp, d.body),
                       "X-Voce-Delivery": str(d.event_id)}
            retry, error = False, None
            try:
                with httpx.Client(timeout=self.policy.timeout_seconds, follow_redirects=False, trust_env=False) as c:
                    r = c.post(d.url, content=d.body, headers=headers)
                if 200 <= r.status_code < 300:
                    self._record(d.event_id, webhook_status="delivered", webhook_attempts=attempt,
                                 webhook_error=None, delivered_at=utcnow())
                    return "delivered"
                error = f"HTTP {r.status_code}"
                retry = r.status_code in (408, 429) or r.status_code >= 500
            except httpx.HTTPError as exc:
                error, retry = type(exc).__name__, True
            last = not retry or attempt == self.policy.attempts
            self._record(d.event_id, webhook_status="failed" if last else "pending", webhook_attempts=attempt,
                         webhook_error=error)
            if last:
                log.warning("webhook for alert event %s failed after %d tries: %s", d.event_id, attempt, error)
                return "failed"
            self.sleep(wait)
            wait *= 2
        return "failed"  # attempts >= 1: not reached


def deliveries_for(sessions: sessionmaker, event_ids: Iterable[int], body: Callable[[AlertEvent, AlertRule], bytes],
                   ) -> list[Delivery]:
    """The deliveries of fired events whose rule has a webhook."""
    out: list[Delivery] = []
    with sessions() as s:
        for event in s.scalars(select(AlertEvent).where(AlertEvent.id.in_(list(event_ids)))):
            rule = s.get(AlertRule, event.rule_id) if event.rule_id is not None else None
            if rule is not None and rule.webhook_url and rule.webhook_secret and event.status == "fired":
                out.append(Delivery(event.id, rule.webhook_url, rule.webhook_secret, body(event, rule)))
    return out
