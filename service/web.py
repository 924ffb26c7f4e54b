"""Pages for CX teams: upload with a column-mapping preview, the batch list, and a batch dashboard.

The pages are plain HTML shells (``service/templates``) filled with a few escaped values; the browser
does the rest through the public ``/v1`` API, so the UI never sees anything an API client could not.
Static assets (our JS/CSS and a vendored Chart.js) are served from the package by a small route
instead of a CDN: the service runs offline, and a strict Content-Security-Policy keeps every page
from reaching any other host.
"""
from __future__ import annotations

import hashlib
import html
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from string import Template

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

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
_PAGE_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-cache",
}
_BATCH_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


@dataclass(frozen=True)
class StaticFile:
    body: bytes
    content_type: str
    etag: str


def _static(relative: str) -> StaticFile | None:
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


def _page(body: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(body, status_code=status, headers=_PAGE_HEADERS)


def build_web_router() -> APIRouter:
    router = APIRouter(include_in_schema=False)

    @router.get("/")
    def root() -> RedirectResponse:
        return RedirectResponse("/ui/", status_code=307)

    @router.get("/ui")
    def ui_no_slash() -> RedirectResponse:
        return RedirectResponse("/ui/", status_code=307)

    @router.get("/ui/", response_class=HTMLResponse)
    def upload_page() -> HTMLResponse:
        """Upload a file (preview + column mapping), follow its progress, list batches."""
        return _page(render_page("upload.html"))

    @router.get("/ui/batches/{batch_id}", response_class=HTMLResponse)
    def dashboard_page(batch_id: str, request: Request) -> HTMLResponse:
        """KPIs, charts, discovered themes and the comments behind them, for one batch."""
        store = getattr(request.app.state, "store", None)
        if not _BATCH_ID.match(batch_id) or (store is not None and store.get(batch_id) is None):
            return _page(render_page("not_found.html", batch_id=batch_id[:64]), status=404)
        return _page(render_page("dashboard.html", batch_id=batch_id))

    @router.get("/ui/static/{path:path}")
    def static_asset(path: str, request: Request) -> Response:
        """Package assets only (no directory listing, no dot-files, no ``..``); ETag + long cache when versioned."""
        asset = _static(path)
        if asset is None:
            return Response("not found", status_code=404, media_type="text/plain; charset=utf-8")
        versioned = request.query_params.get("v") == asset_version()
        headers = {
            "ETag": asset.etag,
            "X-Content-Type-Options": "nosniff",
            "Cache-Control": "public, max-age=31536000, immutable" if versioned else "public, max-age=300",
        }
        if request.headers.get("if-none-match") == asset.etag:
            return Response(status_code=304, headers=headers)
        return Response(asset.body, media_type=asset.content_type, headers=headers)

    return router
