"""The web pages: upload (with a column-mapping preview) and the batch list, a batch dashboard, static assets.

Every page is an HTML shell from :mod:`voce.service.web`; the browser then reads the public ``/v1`` API.
"""
from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from voce.service.deps import MaybeBatchesDep
from voce.service.web import BATCH_ID, PAGE_HEADERS, asset_version, render_page, static_file

router = APIRouter(include_in_schema=False)


def _page(body: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(body, status_code=status, headers=PAGE_HEADERS)


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
def dashboard_page(batch_id: str, batches: MaybeBatchesDep) -> HTMLResponse:
    """KPIs, charts, discovered themes and the comments behind them, for one batch."""
    if not BATCH_ID.match(batch_id) or (batches is not None and not batches.exists(batch_id)):
        return _page(render_page("not_found.html", batch_id=batch_id[:64]), status=404)
    return _page(render_page("dashboard.html", batch_id=batch_id))


@router.get("/ui/static/{path:path}")
def static_asset(path: str, request: Request) -> Response:
    """Package assets only (no directory listing, no dot-files, no ``..``); ETag + long cache when versioned."""
    asset = static_file(path)
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
