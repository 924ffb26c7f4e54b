"""Who is calling, and what they may do: API keys and page sessions become a :class:`Principal` (a tenant and its
scopes); :class:`Requirement` objects are the route dependencies that demand one.

* ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``: the key's tenant and scopes.
* the page's session cookie (signed; see :mod:`.sessions`): the same, for the key that signed in, plus a CSRF token
  that every state-changing request made with the cookie must send back (``X-CSRF-Token``).
* ``VOCE_AUTH=off``: every request is tenant ``default`` with every scope (a loud warning at start).

The key, never ``X-Tenant``, chooses the tenant: a request whose ``X-Tenant`` names another tenant is refused (403)
rather than silently answered for the key's own.
"""
from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from fastapi import Request, Security
from fastapi.security import APIKeyCookie, APIKeyHeader, HTTPBearer
from sqlalchemy.orm import sessionmaker
from starlette.routing import BaseRoute

from voce.service.auth.keys import SCOPES, KeyInfo, KeyStore, NewKey
from voce.service.auth.sessions import CSRF_HEADER, SESSION_COOKIE, Session, SessionSigner, load_secret, same_token
from voce.service.batches.service import Caller
from voce.service.errors import Forbidden, Unauthenticated
from voce.service.settings import Settings

log = logging.getLogger("voce.service.auth")

#: the tenant of VOCE_AUTH=off and of the first admin key
DEFAULT_TENANT = "default"
#: where the first admin key is kept (mode 0600) besides being printed once
INITIAL_KEY_FILE = "initial-admin-key"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
#: routes anyone may call: liveness/readiness, the API description, the sign-in page, redirects, static assets
PUBLIC_PATHS = frozenset({
    "/health", "/ready", "/openapi.json", "/docs",
    "/", "/ui", "/ui/signin", "/ui/signout", "/ui/static/{path:path}",
})
#: prefixes of public routes (the API docs' vendored assets)
PUBLIC_PREFIXES = ("/docs/",)

# how the OpenAPI document (and /docs' Authorize button) describes the credentials
BEARER = HTTPBearer(auto_error=False, scheme_name="bearer", description="Authorization: Bearer <API key>")
API_KEY_HEADER = APIKeyHeader(name="X-API-Key", auto_error=False, scheme_name="apiKey")
SESSION = APIKeyCookie(name=SESSION_COOKIE, auto_error=False, scheme_name="session",
                       description="the web page's session (state-changing requests also need X-CSRF-Token)")
BEARER_DEP, KEY_DEP, SESSION_DEP = Security(BEARER), Security(API_KEY_HEADER), Security(SESSION)


@dataclass(frozen=True)
class Principal:
    """The caller: one tenant, its scopes, and how it proved it."""

    tenant: str
    scopes: tuple[str, ...]
    via: Literal["key", "session", "open"]
    key_id: str | None = None
    key_prefix: str | None = None
    key_sha256: str | None = None
    #: the session's CSRF token (page sessions only)
    csrf: str | None = None

    def allows(self, scope: str | None) -> bool:
        return scope is None or scope in self.scopes or "admin" in self.scopes

    def caller(self) -> Caller:
        """Who the batch layer records as a batch's creator."""
        return Caller(tenant=self.tenant, api_key_hash=self.key_sha256)


OPEN = Principal(tenant=DEFAULT_TENANT, scopes=SCOPES, via="open")


def _from_key(info: KeyInfo, via: Literal["key", "session"], csrf: str | None = None) -> Principal:
    return Principal(
        tenant=info.tenant, scopes=info.scopes, via=via, key_id=info.id, key_prefix=info.prefix,
        key_sha256=info.sha256, csrf=csrf,
    )


class AccessControl:
    """The app's access state (``app.state.access``): the key store, the session signer and the policy."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.enabled = settings.auth
        self._keys: KeyStore | None = None
        self._signer: SessionSigner | None = None

    # -- start-up
    def start(self, sessions: sessionmaker | None = None) -> NewKey | None:
        """Open the key store (on the batch store's database), load the session secret, and on the first start
        with auth on and no key at all create the admin key of tenant ``default``; returns it when created."""
        self._keys = KeyStore(sessions) if sessions is not None else KeyStore.open(
            self.settings.resolved_database_url()
        )
        secret = self.settings.session_secret.get_secret_value() if self.settings.session_secret else None
        self._signer = SessionSigner(load_secret(secret, self.settings.data_dir), self.settings.session_hours * 3600)
        if "*" in self.settings.allowed_hosts:
            log.warning("VOCE_ALLOWED_HOSTS contains '*': any Host header is served (no DNS-rebinding protection)")
        if not self.enabled:
            _announce(_auth_off_banner(self.settings))
            log.warning("VOCE_AUTH=off: access control is disabled")
            return None
        created = first_admin_key(self._keys)
        if created is not None:
            path = write_initial_key(self.settings.data_dir, created.secret)
            _announce(_first_key_banner(created, path, self.settings))
            log.warning("created the first admin key %s (tenant %r); it was printed once", created.info.prefix,
                        created.info.tenant)
        return created

    @property
    def keys(self) -> KeyStore:
        if self._keys is None:
            raise RuntimeError("access control has not started (the app's lifespan opens it)")
        return self._keys

    @property
    def signer(self) -> SessionSigner:
        if self._signer is None:
            raise RuntimeError("access control has not started (the app's lifespan opens it)")
        return self._signer

    # -- per request
    def authenticate(self, request: Request) -> Principal:
        """The caller of ``request``, cached on it; 401 without valid credentials, 403 for a cookie request that
        changes state without its CSRF token or an ``X-Tenant`` naming another tenant."""
        cached: Principal | None = getattr(request.state, "voce_principal", None)
        if cached is not None:
            return cached
        principal = self._principal(request)
        claimed = request.headers.get("x-tenant")
        if claimed is not None and claimed.strip() != principal.tenant:
            whose = "every request (VOCE_AUTH=off) is" if principal.via == "open" else "this key belongs to"
            raise Forbidden(
                f"X-Tenant does not choose the tenant: {whose} tenant {principal.tenant!r}; drop the header or use a"
                f" key of tenant {claimed.strip()[:128]!r}"
            )
        request.state.voce_principal = principal
        return principal

    def _principal(self, request: Request) -> Principal:
        if not self.enabled:
            return OPEN
        key = presented_key(request)
        if key is not None:
            return _from_key(self._check_key(key), "key")
        session = self.read_session(request)
        if session is not None:
            info = self._session_key(session)
            if request.method not in SAFE_METHODS and not same_token(session.csrf, request.headers.get(CSRF_HEADER)):
                raise Forbidden("missing or wrong X-CSRF-Token for a request made with the session cookie")
            return _from_key(info, "session", csrf=session.csrf)
        if request.cookies.get(SESSION_COOKIE):
            raise Unauthenticated("the session has expired or is no longer valid; sign in again")
        raise Unauthenticated("an API key is required: send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'")

    def _check_key(self, key: str) -> KeyInfo:
        info = self.keys.verify(key)
        if info is None:
            raise Unauthenticated("unknown API key")
        if not info.active:
            raise Unauthenticated("this API key has been revoked")
        self.keys.touch(info.id)
        return info

    def _session_key(self, session: Session) -> KeyInfo:
        info = self.keys.get(session.key_id)
        if info is None or not info.active:
            raise Unauthenticated("the key this session signed in with has been revoked; sign in again")
        self.keys.touch(info.id)
        return info

    def read_session(self, request: Request) -> Session | None:
        return self.signer.read(request.cookies.get(SESSION_COOKIE))

    def page_principal(self, request: Request) -> Principal | None:
        """The caller of a page, or None when it should be sent to the sign-in page (no or stale credentials)."""
        try:
            return self.authenticate(request)
        except Unauthenticated:
            if presented_key(request) is not None:
                raise  # a wrong key in a header is an error, not a reason to show a form
            return None

    def sign_in(self, key: str) -> tuple[KeyInfo, str, Session]:
        """Check a key typed into the sign-in page; the cookie value and session to set."""
        info = self._check_key(key.strip())
        if not (set(info.scopes) & {"batches:read", "admin"}):
            raise Forbidden("this key cannot read batches (it needs the batches:read scope) and so cannot use the page")
        cookie, session = self.signer.issue(info.id)
        return info, cookie, session

    def cookie_secure(self, request: Request) -> bool:
        """``Secure`` on the session cookie: as configured, else when the request came over https."""
        configured = self.settings.session_cookie_secure
        return configured if configured is not None else request.url.scheme == "https"


def presented_key(request: Request) -> str | None:
    """The key in ``Authorization: Bearer`` or ``X-API-Key``; another Authorization scheme is refused (401)."""
    auth = request.headers.get("authorization")
    if auth:
        scheme, _, value = auth.strip().partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise Unauthenticated("use 'Authorization: Bearer <API key>'")
        return value.strip()
    key = request.headers.get("x-api-key")
    return key.strip() if key is not None else None


# ------------------------------------------------------------------ route requirements
class Requirement:
    """A route dependency: the caller must be authenticated and hold ``scope`` (None: any valid key).

    ``open_if`` names a boolean setting that, when true, opens the route to everyone (``metrics_public``).
    Routes declare one of these; :func:`access_table` reads them back, so a route without one is visible.
    """

    def __init__(self, scope: str | None, *, open_if: str | None = None, page: bool = False) -> None:
        if scope is not None and scope not in SCOPES:
            raise ValueError(f"unknown scope {scope!r}")
        self.scope = scope
        self.open_if = open_if
        self.page = page

    def __repr__(self) -> str:
        return f"Requirement({self.scope or 'any key'}{', page' if self.page else ''})"

    def check(self, request: Request) -> Principal | None:
        access: AccessControl = request.app.state.access
        if self.open_if and getattr(access.settings, self.open_if):
            return OPEN if not access.enabled else None
        principal = access.page_principal(request) if self.page else access.authenticate(request)
        if principal is not None and not principal.allows(self.scope):
            raise Forbidden(f"this key lacks the {self.scope} scope (it has: {', '.join(principal.scopes)})")
        return principal


class KeyRequirement(Requirement):
    """For the API: 401 without credentials."""

    def __call__(
        self, request: Request, _b: Any = BEARER_DEP, _k: Any = KEY_DEP, _s: Any = SESSION_DEP  # noqa: B008
    ) -> Principal | None:
        return self.check(request)


class PageRequirement(Requirement):
    """For the pages: None (the page redirects to sign-in) without credentials."""

    def __init__(self, scope: str | None) -> None:
        super().__init__(scope, page=True)

    def __call__(self, request: Request) -> Principal | None:
        return self.check(request)


@dataclass(frozen=True)
class RouteAccess:
    path: str
    methods: tuple[str, ...]
    #: "public", "any key", a scope, or None when the route declares no requirement (a defect)
    requirement: str | None
    page: bool = False
    open_if: str | None = None


def _requirements(dependant: Any) -> Iterator[Requirement]:
    for dep in dependant.dependencies:
        if isinstance(dep.call, Requirement):
            yield dep.call
        yield from _requirements(dep)


def _flat_routes(routes: list[BaseRoute]) -> Iterator[Any]:
    """Every route as served: FastAPI includes routers lazily, so ``app.routes`` holds routers, not their routes."""
    try:
        from fastapi.routing import iter_route_contexts
    except ImportError:  # older FastAPI: app.routes is already flat
        yield from routes
        return
    yield from iter_route_contexts(routes)


def access_table(routes: list[BaseRoute]) -> list[RouteAccess]:
    """Every route of the app (``app.routes``) and what it requires, read from the routes themselves."""
    table = []
    for route in _flat_routes(routes):
        path = getattr(route, "path", "") or ""
        methods = tuple(sorted(getattr(route, "methods", None) or ()))
        dependant = getattr(route, "dependant", None)
        if path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES):
            table.append(RouteAccess(path, methods, "public"))
        elif dependant is not None:
            found = list(_requirements(dependant))
            req = found[0] if found else None
            table.append(RouteAccess(
                path, methods, (req.scope or "any key") if req else None, page=bool(req and req.page),
                open_if=req.open_if if req else None,
            ))
        else:  # a plain Starlette route or a mount: nothing checks its caller
            table.append(RouteAccess(path, methods, None))
    return table


# ------------------------------------------------------------------ the first key
def first_admin_key(keys: KeyStore) -> NewKey | None:
    """The admin key of tenant ``default`` when the database holds no key at all."""
    return keys.create_first(DEFAULT_TENANT, ["admin"], name="first admin key (created at first start)")


def write_initial_key(data_dir: Path, secret: str) -> Path:
    """``<data_dir>/initial-admin-key``, readable by its owner only."""
    path = data_dir / INITIAL_KEY_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(secret + "\n")
    return path


def _announce(lines: list[str]) -> None:
    """Printed on the console once (not logged: logs travel further than a terminal)."""
    rule = "=" * 78
    sys.stderr.write("\n".join([rule, *lines, rule]) + "\n")
    sys.stderr.flush()


def _first_key_banner(created: NewKey, path: Path, settings: Settings) -> list[str]:
    host = "127.0.0.1" if settings.host in ("", "0.0.0.0", "::") else settings.host
    return [
        "Voce: no API key in the database yet, so this first admin key was created for tenant 'default':",
        "",
        f"    {created.secret}",
        "",
        f"It is shown only now and kept in {path} (mode 0600): store it safely, then delete the file.",
        f"Sign in at http://{host}:{settings.port}/ui/ with it, or send 'Authorization: Bearer <key>'.",
        "Keys for other teams: voce keys create --tenant TEAM --scopes analyze,batches:read,batches:write",
    ]


def _auth_off_banner(settings: Settings) -> list[str]:
    lines = [
        "WARNING: VOCE_AUTH=off - access control is OFF.",
        "Every request, from anyone who can reach this port, acts as tenant 'default' with every scope:",
        "it can read, export and delete every batch. Use this on a laptop only, never on a shared host.",
    ]
    if settings.host not in ("127.0.0.1", "localhost", "::1"):
        lines.append(f"This service listens on {settings.host}, not only on loopback: other machines can reach it.")
    return lines

