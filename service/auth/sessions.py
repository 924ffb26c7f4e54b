"""The page's session: a signed cookie naming the key that signed in, and the CSRF token that goes with it.

The cookie holds ``v1.<key id>.<expiry>.<csrf token>.<HMAC-SHA256>``: no key, no tenant, nothing to forge without
the secret.  Every request re-reads the key by id, so revoking a key ends its sessions at once; signing out deletes
the cookie.  The CSRF token travels in the page (a ``<meta>`` tag and hidden form fields) and must come back in
``X-CSRF-Token`` (or the form's ``csrf_token``) on every state-changing request made with the cookie: another site
can make the browser send the cookie (SameSite=Strict already stops that in current browsers) but cannot read the
page to learn the token.

The secret is ``VOCE_SESSION_SECRET``, or a random one created once in ``<data_dir>/session-secret`` (mode 0600),
so sessions survive a restart and every process sharing the data folder accepts them.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

SESSION_COOKIE = "voce_session"
#: a short-lived cookie holding the nonce the sign-in form's CSRF token is bound to (login CSRF)
SIGNIN_COOKIE = "voce_signin"
CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "csrf_token"
SECRET_FILE = "session-secret"


@dataclass(frozen=True)
class Session:
    key_id: str
    expires: int
    csrf: str


def load_secret(configured: str | None, data_dir: Path) -> bytes:
    """The configured secret, else the one kept in the data folder (created 0600 on first use, race-safe)."""
    if configured:
        return configured.encode("utf-8")
    path = data_dir / SECRET_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        value = path.read_text("ascii").strip()
        if len(value) < 32:
            raise RuntimeError(f"{path} is shorter than 32 characters; delete it to make a new one") from None
        return value.encode("ascii")
    value = secrets.token_hex(32)
    with os.fdopen(fd, "w") as fh:
        fh.write(value + "\n")
    return value.encode("ascii")


def _mac(secret: bytes, message: str) -> str:
    digest = hmac.new(secret, message.encode("utf-8"), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


class SessionSigner:
    """Issues and checks session cookies and sign-in form tokens with one secret."""

    def __init__(self, secret: bytes, lifetime_seconds: float) -> None:
        self._secret = secret
        self.lifetime = int(lifetime_seconds)

    def issue(self, key_id: str) -> tuple[str, Session]:
        session = Session(key_id=key_id, expires=int(time.time()) + self.lifetime, csrf=secrets.token_urlsafe(24))
        body = f"v1.{session.key_id}.{session.expires}.{session.csrf}"
        return f"{body}.{_mac(self._secret, 'session:' + body)}", session

    def read(self, cookie: str | None) -> Session | None:
        """The session a cookie holds, or None when it is missing, forged, malformed or expired."""
        if not cookie or len(cookie) > 512:
            return None
        parts = cookie.split(".")
        if len(parts) != 5 or parts[0] != "v1":
            return None
        body, mac = ".".join(parts[:4]), parts[4]
        if not hmac.compare_digest(mac.encode(), _mac(self._secret, "session:" + body).encode()):
            return None
        _, key_id, expires, csrf = parts[:4]
        if not expires.isdigit() or int(expires) < time.time():
            return None
        return Session(key_id=key_id, expires=int(expires), csrf=csrf)

    # -- the sign-in form's CSRF token: bound to a nonce in a short-lived cookie
    def signin_token(self, nonce: str) -> str:
        return _mac(self._secret, "signin:" + nonce)

    def check_signin_token(self, nonce: str | None, token: str | None) -> bool:
        if not nonce or not token:
            return False
        return hmac.compare_digest(token.encode(), self.signin_token(nonce).encode())


def same_token(expected: str, given: str | None) -> bool:
    """Constant-time comparison of a CSRF token."""
    return bool(given) and hmac.compare_digest(expected.encode(), (given or "").encode())
