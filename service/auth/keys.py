"""API keys: shown once when created, stored only as a SHA-256 hash beside their tenant and scopes.

Why SHA-256 rather than a slow password hash: a key is 32 random bytes (256 bits), so there is no dictionary to
guess from and a stolen table cannot be brute-forced; slow hashes (scrypt, argon2) protect low-entropy passwords
and would add tens of milliseconds to every request.  The first characters of the key (its prefix) are stored to
find the candidate rows and to name the key in listings; the hash is then compared in constant time.

A key belongs to one tenant and only ever sees that tenant's batches.  Scopes say what it may do:
``analyze`` (``POST /v1/analyze``), ``batches:read`` (list, status, rows, KPIs, topics, exports, the pages),
``batches:write`` (upload, preview, delete) and ``admin`` (every scope of its tenant, plus ``/metrics`` and the
tenant's keys through ``/v1/keys``).  No key crosses tenants, ``admin`` included.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re
import secrets
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import func, or_, select, text, update
from sqlalchemy.orm import sessionmaker

from voce.service.db import ApiKey, open_database, utcnow

SCOPES: tuple[str, ...] = ("analyze", "batches:read", "batches:write", "admin")
#: every key starts with this, so a leaked one is recognisable (secret scanners, logs)
KEY_START = "voce_"
#: stored and shown: "voce_" and the first 8 random characters
PREFIX_LENGTH = len(KEY_START) + 8
TENANT_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
#: last_used_at is written at most this often per key and process (not on every request)
TOUCH_EVERY_SECONDS = 60.0


class KeySpecError(ValueError):
    """A key cannot be created as asked (unknown scope, bad tenant name)."""


class KeyNotFound(LookupError):
    """No key has that id or prefix (in the tenant asked about)."""


@dataclass(frozen=True)
class KeyInfo:
    """What may be shown about a key: never the key, never its hash."""

    id: str
    tenant: str
    name: str
    prefix: str
    scopes: tuple[str, ...]
    created_at: dt.datetime
    last_used_at: dt.datetime | None
    revoked_at: dt.datetime | None
    #: SHA-256 hex of the key: what batches record as the key that created them
    sha256: str

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    def allows(self, scope: str) -> bool:
        return scope in self.scopes or "admin" in self.scopes


@dataclass(frozen=True)
class NewKey:
    """A key just created: ``secret`` is the key itself, to hand over once; only its hash is stored."""

    info: KeyInfo
    secret: str


def parse_scopes(scopes: str | Iterable[str]) -> tuple[str, ...]:
    """``"analyze,batches:read"`` (or a list) -> the scopes in canonical order; unknown or no scopes are refused."""
    items = scopes.split(",") if isinstance(scopes, str) else list(scopes)
    wanted = {s.strip() for s in items if s.strip()}
    unknown = sorted(wanted - set(SCOPES))
    if unknown:
        raise KeySpecError(f"unknown scope(s) {', '.join(unknown)}; the scopes are {', '.join(SCOPES)}")
    if not wanted:
        raise KeySpecError(f"a key needs at least one scope of {', '.join(SCOPES)}")
    return tuple(s for s in SCOPES if s in wanted)


def check_tenant(tenant: str) -> str:
    if not TENANT_PATTERN.match(tenant):
        raise KeySpecError(
            f"tenant {tenant[:40]!r}: use 1-128 letters, digits, '.', '_' or '-', starting with a letter or digit"
        )
    return tenant


def new_secret() -> str:
    return KEY_START + secrets.token_urlsafe(32)


def key_sha256(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def _stored_hash(key: str) -> str:
    return "sha256:" + key_sha256(key)


def looks_like_key(key: str) -> bool:
    """Cheap shape check before any database lookup (no key is shorter, longer or differently started)."""
    return key.startswith(KEY_START) and PREFIX_LENGTH < len(key) <= 128 and key.isascii() and key.isprintable()


def _new_row(tenant: str, scopes: str | Iterable[str], name: str | None) -> tuple[ApiKey, str]:
    checked = parse_scopes(scopes)
    tenant = check_tenant(tenant.strip())
    clean_name = "".join(ch for ch in (name or "") if ch.isprintable()).strip()[:128]
    secret = new_secret()
    row = ApiKey(
        id=uuid.uuid4().hex, tenant=tenant, name=clean_name, prefix=secret[:PREFIX_LENGTH],
        key_hash=_stored_hash(secret), scopes=list(checked), created_at=utcnow(),
    )
    return row, secret


def _info(row: ApiKey) -> KeyInfo:
    return KeyInfo(
        id=row.id, tenant=row.tenant, name=row.name, prefix=row.prefix, scopes=tuple(row.scopes or ()),
        created_at=row.created_at, last_used_at=row.last_used_at, revoked_at=row.revoked_at,
        sha256=row.key_hash.split(":", 1)[-1],
    )


class KeyStore:
    """Create, find, verify and revoke API keys in the configured database (SQLite or PostgreSQL)."""

    def __init__(self, sessions: sessionmaker) -> None:
        self.sessions = sessions
        self._touched: dict[str, float] = {}
        self._touch_lock = threading.Lock()

    @classmethod
    def open(cls, url: str) -> KeyStore:
        """The store on the database at ``url``, its schema migrated to the newest revision."""
        return cls(open_database(url))

    def create(self, tenant: str, scopes: str | Iterable[str], name: str | None = None) -> NewKey:
        """A new key for ``tenant``; the returned secret is the only time the key exists outside the caller."""
        row, secret = _new_row(tenant, scopes, name)
        with self.sessions() as s, s.begin():
            s.add(row)
        return NewKey(_info(row), secret)

    def create_first(self, tenant: str, scopes: str | Iterable[str], name: str) -> NewKey | None:
        """A key only when the database holds none at all, checked and written in one transaction (on PostgreSQL
        under an advisory lock, so two API processes starting together create one key, not two)."""
        row, secret = _new_row(tenant, scopes, name)
        with self.sessions() as s, s.begin():
            if s.get_bind().dialect.name == "postgresql":
                s.execute(text("SELECT pg_advisory_xact_lock(72746402)"))
            if s.scalar(select(func.count()).select_from(ApiKey)):
                return None
            s.add(row)
        return NewKey(_info(row), secret)

    def list(self, tenant: str | None = None) -> list[KeyInfo]:
        """Keys, oldest first (of one tenant, or all of them for the operator's CLI)."""
        with self.sessions() as s:
            q = select(ApiKey).order_by(ApiKey.created_at, ApiKey.id)
            if tenant is not None:
                q = q.where(ApiKey.tenant == tenant)
            return [_info(r) for r in s.scalars(q)]

    def count(self) -> int:
        with self.sessions() as s:
            return int(s.scalar(select(func.count()).select_from(ApiKey)) or 0)

    def get(self, key_id: str) -> KeyInfo | None:
        with self.sessions() as s:
            row = s.get(ApiKey, key_id)
            return _info(row) if row is not None else None

    def find(self, id_or_prefix: str, tenant: str | None = None) -> KeyInfo:
        """One key by its id or by (the start of) its prefix; an ambiguous prefix is refused, never guessed."""
        ref = id_or_prefix.strip()
        if not ref:
            raise KeyNotFound("give a key id or prefix")
        with self.sessions() as s:
            q = select(ApiKey).where(or_(ApiKey.id == ref, ApiKey.prefix.startswith(ref, autoescape=True)))
            if tenant is not None:
                q = q.where(ApiKey.tenant == tenant)
            rows = list(s.scalars(q.limit(10)))
        exact = [r for r in rows if r.id == ref]
        if exact:
            return _info(exact[0])
        if not rows:
            raise KeyNotFound(f"no key with id or prefix {ref[:40]!r}")
        if len(rows) > 1:
            raise KeyNotFound(f"{ref!r} matches {len(rows)} keys; give more of the prefix, or the id")
        return _info(rows[0])

    def revoke(self, id_or_prefix: str, tenant: str | None = None) -> KeyInfo:
        """Revoke a key at once (its sessions end with it); revoking a revoked key changes nothing."""
        info = self.find(id_or_prefix, tenant)
        if info.revoked_at is None:
            with self.sessions() as s, s.begin():
                s.execute(update(ApiKey).where(ApiKey.id == info.id, ApiKey.revoked_at.is_(None))
                          .values(revoked_at=utcnow()))
            info = self.get(info.id) or info
        return info

    def verify(self, key: str) -> KeyInfo | None:
        """The key's record (revoked ones too: the caller says why it refuses), or None for an unknown key."""
        if not looks_like_key(key):
            return None
        expected = _stored_hash(key)
        with self.sessions() as s:
            rows = list(s.scalars(select(ApiKey).where(ApiKey.prefix == key[:PREFIX_LENGTH]).limit(10)))
        found = None
        for row in rows:  # every candidate is compared, in constant time
            if hmac.compare_digest(row.key_hash.encode(), expected.encode()):
                found = row
        return _info(found) if found is not None else None

    def touch(self, key_id: str) -> None:
        """Record that a key was used (at most once a minute per key and process)."""
        now = time.monotonic()
        with self._touch_lock:
            if now - self._touched.get(key_id, -TOUCH_EVERY_SECONDS) < TOUCH_EVERY_SECONDS:
                return
            self._touched[key_id] = now
        with self.sessions() as s, s.begin():
            s.execute(update(ApiKey).where(ApiKey.id == key_id).values(last_used_at=utcnow()))
