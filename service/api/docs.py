"""``/docs`` (Swagger UI) from assets installed with the package, never from a CDN.

FastAPI's own pages load Swagger UI and ReDoc from jsDelivr: offline they stay blank, and online every visit tells
a third party who reads the API documentation.  Swagger UI here comes from the ``fastapi-offline`` wheel (pinned in
``pyproject.toml``; see ``service/static/docs/README.md`` for the version and licences) and is started by our own
``swagger-init.js``, so the page runs under a Content-Security-Policy that allows this origin only (no inline
script; inline styles, which Swagger UI sets, are the exception).  ReDoc is not served: its standalone build loads
its logo from cdn.redoc.ly whatever its options say.
"""
from __future__ import annotations

import hashlib
import html
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from voce.service.errors import error_response
from voce.service.web import STATIC_DIR

router = APIRouter(include_in_schema=False)

def _vendor_dir() -> Path:
    """Where the vendored Swagger UI / ReDoc builds are installed (the fastapi-offline wheel)."""
    import fastapi_offline

    return Path(fastapi_offline.__file__).resolve().parent / "static"


#: every asset the two pages load: name -> (folder, Content-Type); nothing else is served under /docs/static
ASSETS: dict[str, tuple[str, str]] = {
    "swagger-ui-bundle.js": ("vendor", "text/javascript; charset=utf-8"),
    "swagger-ui.css": ("vendor", "text/css; charset=utf-8"),
    "favicon.png": ("vendor", "image/png"),
    "swagger-init.js": ("voce", "text/javascript; charset=utf-8"),
}

#: this origin only; 'unsafe-inline' for styles (Swagger UI styles elements inline), data: images for its icons
DOCS_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "font-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)
_HEADERS = {"Content-Security-Policy": DOCS_CSP, "Cache-Control": "no-cache"}


@dataclass(frozen=True)
class _Asset:
    body: bytes
    content_type: str
    etag: str


@cache
def _asset(name: str) -> _Asset | None:
    """Read once per process; only the names in :data:`ASSETS` (so the cache cannot grow with requests)."""
    if name not in ASSETS:
        return None
    where, content_type = ASSETS[name]
    folder = _vendor_dir() if where == "vendor" else STATIC_DIR / "docs"
    body = (folder / name).read_bytes()
    return _Asset(body, content_type, '"' + hashlib.sha256(body).hexdigest()[:20] + '"')


@cache
def _version() -> str:
    h = hashlib.sha256()
    for name in sorted(ASSETS):
        asset = _asset(name)
        h.update(asset.etag.encode() if asset else b"")
    return h.hexdigest()[:12]


def _url(request: Request, path: str) -> str:
    return html.escape(f"{request.scope.get('root_path', '')}{path}", quote=True)


@router.get("/docs", response_class=HTMLResponse)
def swagger_ui(request: Request) -> HTMLResponse:
    """Swagger UI over ``/openapi.json``."""
    title = html.escape(f"{request.app.title} - API")
    v = _version()
    body = f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<link rel="icon" href="{_url(request, '/docs/static/favicon.png')}?v={v}" type="image/png">
<link rel="stylesheet" href="{_url(request, '/docs/static/swagger-ui.css')}?v={v}">
</head>
<body>
<div id="swagger-ui" data-openapi-url="{_url(request, request.app.openapi_url or '/openapi.json')}"></div>
<script src="{_url(request, '/docs/static/swagger-ui-bundle.js')}?v={v}"></script>
<script src="{_url(request, '/docs/static/swagger-init.js')}?v={v}"></script>
</body>
</html>
"""
    return HTMLResponse(body, headers=_HEADERS)


@router.get("/docs/static/{name}")
def docs_asset(name: str, request: Request) -> Response:
    """One of :data:`ASSETS` (404 for anything else); long-cached when asked for with the current ``?v=``."""
    asset = _asset(name)
    if asset is None:
        return error_response(404, "NotFound", f"no documentation asset {name[:64]!r}")
    versioned = request.query_params.get("v") == _version()
    headers = {
        "ETag": asset.etag,
        "Cache-Control": "public, max-age=31536000, immutable" if versioned else "public, max-age=300",
    }
    if request.headers.get("if-none-match") == asset.etag:
        return Response(status_code=304, headers=headers)
    return Response(asset.body, media_type=asset.content_type, headers=headers)
