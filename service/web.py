"""What the pages are made of: HTML shells, static assets and the headers that keep them offline.

The pages are plain HTML shells (``service/templates``) filled with a few escaped values; the browser
does the rest through the public ``/v1`` API, so the UI never sees anything an API client could not.
Static assets (our JS/CSS and a vendored Chart.js) are served from the package by a small route
(:mod:`voce.service.api.pages`) instead of a CDN: the service runs offline, and a strict
Content-Security-Policy keeps every page from reaching any other host.
"""
from __future__ import annotations

import hashlib
import html
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from string import Template

from voce.models import __version__

_HERE = Path(__file__).resolve().parent
STATIC_DIR = _HERE / "static"
TEMPLATES_DIR = _HERE / "templates"

#: extension -> Content-Type for what the pages load; anything else is not served
CONTENT_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".md": "text/markdown; charset=utf-8",
}

#: pages may load and call only this service (the CSP is also what proves "works offline")
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; font-src 'self'; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
PAGE_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-cache",
}
#: what a batch id in a page URL may look like (anything else is a 404 page without a database lookup)
BATCH_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


@dataclass(frozen=True)
class StaticFile:
    body: bytes
    content_type: str
    etag: str


def static_file(relative: str) -> StaticFile | None:
    """One asset from the package: None for anything outside ``static/``, dot-files and unknown types."""
    if not relative or "\\" in relative or "\x00" in relative:
        return None
    parts = relative.split("/")
    if any(p in ("", ".", "..") or p.startswith(".") for p in parts):
        return None
    path = (STATIC_DIR / relative).resolve()
    if not path.is_relative_to(STATIC_DIR) or not path.is_file() or path.suffix.lower() not in CONTENT_TYPES:
        return None
    return _read_asset(path)


@cache
def _read_asset(path: Path) -> StaticFile:
    """Read once per process; keyed by real files only, so the cache cannot grow with what clients ask for."""
    body = path.read_bytes()
    return StaticFile(body, CONTENT_TYPES[path.suffix.lower()], '"' + hashlib.sha256(body).hexdigest()[:20] + '"')


@cache
def asset_version() -> str:
    """Changes whenever any asset changes, so pages can let browsers cache ``?v=``-stamped assets for long."""
    h = hashlib.sha256(__version__.encode())
    for p in sorted(STATIC_DIR.rglob("*")):
        if p.is_file():
            h.update(p.relative_to(STATIC_DIR).as_posix().encode())
            h.update(p.read_bytes())
    return h.hexdigest()[:12]


@cache
def _template(name: str) -> Template:
    return Template((TEMPLATES_DIR / name).read_text(encoding="utf-8"))


def render_page(name: str, **values: str) -> str:
    """Fill a page shell; every value is HTML-escaped (they land in text and attributes)."""
    escaped = {k: html.escape(v, quote=True) for k, v in values.items()}
    return _template(name).substitute(version=asset_version(), service_version=html.escape(__version__), **escaped)
