"""Host and Origin checks in front of every route (pure ASGI, before anything reads the body).

* **Host** (DNS rebinding): a page on ``rebind.evil.example`` whose name is re-pointed at 127.0.0.1 reaches a
  loopback service with ``Host: rebind.evil.example``.  Only the names in :class:`HostPolicy` are served; anything
  else gets 400.  ``/health`` and ``/ready`` answer any host (probes call them by pod IP; they reveal nothing).
* **Origin** (CSRF): a state-changing request (POST, PUT, PATCH, DELETE) that a browser marks as coming from another
  origin (``Origin``, or ``Sec-Fetch-Site: cross-site`` when there is no ``Origin``) gets 403 before its multipart
  body is parsed, whatever credentials it carries.  Clients that are not browsers send neither header and pass on
  to the key check.
* **Credentials first**: a state-changing request is authenticated here, before its body is read (FastAPI parses
  a multipart body before running the route's dependencies), so an upload without a valid key or CSRF token is
  refused without being spooled to disk.  The routes still check scope and tenant themselves.
"""
from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from voce.service.errors import (
    BadHost,
    DatabaseUnavailable,
    Forbidden,
    ServiceError,
    Unauthenticated,
    database_outage,
    error_response,
    status_of,
)
from voce.service.settings import Settings

UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
LOOPBACK = ("127.0.0.1", "localhost", "::1")
#: answered whatever the Host header says
ANY_HOST_PATHS = frozenset({"/health", "/ready"})
_WILDCARD_BIND = ("", "0.0.0.0", "::")
#: state-changing routes anyone may call (they check what they need themselves)
OPEN_POSTS = frozenset({"/ui/signin", "/ui/signout"})


def split_host(value: str) -> tuple[str, str | None]:
    """``"[::1]:8000"`` -> ``("::1", "8000")``; names lower-cased, a trailing dot dropped."""
    value = value.strip().lower()
    if value.startswith("["):
        end = value.find("]")
        if end < 0:
            return "", None
        host, rest = value[1:end], value[end + 1 :]
        port = rest[1:] if rest.startswith(":") else None
    elif value.count(":") == 1:
        host, port = value.split(":")
    else:
        host, port = value, None
    return host.rstrip("."), port


def _netloc(host: str, port: str | None, scheme: str | None = None) -> str:
    """host[:port] with the scheme's default port left out (and both defaults when the scheme is unknown)."""
    defaults = {"http": {"80"}, "https": {"443"}}.get(scheme or "", {"80", "443"})
    shown = f"[{host}]" if ":" in host else host
    return shown if port is None or port in defaults else f"{shown}:{port}"


class HostPolicy:
    """The host names this service answers to: loopback, the bound ``host``, and ``allowed_hosts``."""

    def __init__(self, settings: Settings) -> None:
        names = set(LOOPBACK)
        if settings.host.strip() not in _WILDCARD_BIND:
            names.add(split_host(settings.host)[0] if settings.host.startswith("[") else settings.host.lower())
        for entry in settings.allowed_hosts:
            entry = entry.strip().lower()
            names.add(entry if entry.startswith("*") else split_host(entry)[0])
        self.any = "*" in names
        self.suffixes = tuple(n[1:] for n in names if n.startswith("*.") and len(n) > 2)
        self.names = frozenset(n for n in names if not n.startswith("*"))

    def allows(self, host: str) -> bool:
        if self.any:
            return True
        return bool(host) and (host in self.names or host.endswith(self.suffixes))


class OriginPolicy:
    """Which ``Origin`` may send a state-changing request: the request's own host, or a trusted origin."""

    def __init__(self, settings: Settings) -> None:
        self.trusted = frozenset(self.normalise(o) for o in settings.trusted_origins)

    @staticmethod
    def normalise(origin: str) -> str:
        parts = urlsplit(origin.strip().lower())
        host, port = split_host(parts.netloc)
        return f"{parts.scheme}://{_netloc(host, port, parts.scheme)}"

    def allows(self, origin: str, host_header: str) -> bool:
        parts = urlsplit(origin.strip().lower())
        if parts.scheme not in ("http", "https") or not parts.netloc:
            return False  # "null" (sandboxed frames, file://) and anything odd
        if self.normalise(origin) in self.trusted:
            return True
        o_host, o_port = split_host(parts.netloc)
        h_host, h_port = split_host(host_header)
        return _netloc(o_host, o_port, parts.scheme) == _netloc(h_host, h_port)


class RequestGuard:
    """ASGI middleware: 400 for a Host this service does not serve, 403 for a cross-origin state change."""

    def __init__(self, app: Any, settings: Settings) -> None:
        self.app = app
        self.hosts = HostPolicy(settings)
        self.origins = OriginPolicy(settings)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        host_header = headers.get("host", "")
        host, _ = split_host(host_header)
        if scope["path"] not in ANY_HOST_PATHS and not self.hosts.allows(host):
            shown = host_header[:100].encode("ascii", "replace").decode("ascii")
            await _refuse(BadHost(
                f"this service does not answer to host {shown!r}; an operator can add it to VOCE_ALLOWED_HOSTS"
            ), scope, receive, send)
            return
        if scope["method"] in UNSAFE_METHODS:
            origin = headers.get("origin")
            fetch_site = headers.get("sec-fetch-site", "").lower()
            cross = (origin is not None and not self.origins.allows(origin, host_header)) or (
                origin is None and fetch_site in ("cross-site", "same-site")
            )
            if cross:
                await _refuse(Forbidden(
                    "state-changing requests from another origin are refused (CSRF protection)"
                ), scope, receive, send)
                return
            if scope["path"] not in OPEN_POSTS:
                access = scope["app"].state.access
                try:  # the result is kept on the request's state, which the route's request shares
                    await run_in_threadpool(access.authenticate, Request(scope))
                except (Unauthenticated, Forbidden) as exc:
                    await _refuse(exc, scope, receive, send)
                    return
                except Exception as exc:  # the key check needs the database: an outage is a 503, not a traceback
                    if not database_outage(exc):
                        raise
                    await _refuse(DatabaseUnavailable(
                        "the database is unavailable right now; retry shortly"
                    ), scope, receive, send)
                    return
        await self.app(scope, receive, send)


async def _refuse(exc: ServiceError, scope: Any, receive: Any, send: Any) -> None:
    """The error envelope and status of ``exc``, answered before the app sees the request."""
    status, code = status_of(exc) or (400, "BadRequest")
    await error_response(status, code, exc.message)(scope, receive, send)
