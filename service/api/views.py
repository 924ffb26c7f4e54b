"""``/v1/views``: saved dashboard views of the caller's tenant (see :mod:`voce.service.insights.views`), and their
link ``/ui/views/{id}``, which opens the dashboard with the view's filters.

Every call needs ``batches:read`` (a view is a reader's bookmark); an unshared view is its owner's key's only,
another tenant's view is a 404.
"""
from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse

from voce.service.deps import AUTH_RESPONSES, PageDep, ViewsDep, get_store
from voce.service.errors import ErrorEnvelope
from voce.service.insights.views import Owner, ViewIn, ViewList, ViewOut, ViewPatch, ViewService
from voce.service.web import PAGE_HEADERS, render_page

router = APIRouter(prefix="/v1", tags=["views"], responses={
    **AUTH_RESPONSES, 404: {"model": ErrorEnvelope, "description": "no such view or batch for this tenant"},
})
page_router = APIRouter(include_in_schema=False)

ViewId = Annotated[str, Path(min_length=1, max_length=64)]
_INVALID: dict[int | str, dict[str, Any]] = {
    422: {"model": ErrorEnvelope, "description": "a filter, the batch or a field that cannot be saved "
                                      "(details: a code and its parameters)"},
}


@router.get("/views", response_model=ViewList, operation_id="list_views")
def list_views(views: ViewsDep) -> ViewList:
    """The caller's views and the tenant's shared ones, newest first."""
    return views.list()


@router.post("/views", response_model=ViewOut, status_code=201, operation_id="create_view", responses=_INVALID)
def create_view(body: ViewIn, views: ViewsDep) -> ViewOut:
    """Save the dashboard's current selection under a name; ``shared`` shows it to the whole tenant."""
    return views.create(body)


@router.get("/views/{view_id}", response_model=ViewOut, operation_id="get_view")
def get_view(view_id: ViewId, views: ViewsDep) -> ViewOut:
    return views.get(view_id)


@router.patch("/views/{view_id}", response_model=ViewOut, operation_id="update_view", responses=_INVALID)
def update_view(view_id: ViewId, body: ViewPatch, views: ViewsDep) -> ViewOut:
    """Rename, share or unshare, change the filters or the batch (owner or admin only)."""
    return views.update(view_id, body)


@router.delete("/views/{view_id}", status_code=204, operation_id="delete_view")
def delete_view(view_id: ViewId, views: ViewsDep) -> Response:
    views.delete(view_id)
    return Response(status_code=204)


@page_router.get("/ui/views/{view_id}", response_class=HTMLResponse)
def view_page(view_id: ViewId, request: Request, page: PageDep) -> Response:
    """A view's shareable link: the dashboard of its batch (or the latest one) with its filters."""
    from urllib.parse import quote

    from voce.service.errors import NotFound

    principal, batches = page
    if principal is None:
        return RedirectResponse(f"/ui/signin?next={quote(request.url.path, safe='')}", status_code=303)
    target = None
    if batches is not None:
        owner = Owner(tenant=principal.tenant, key=principal.key_id or "open", name="", admin="admin" in principal.scopes)
        try:
            target = ViewService(get_store(request).sessions, batches, owner).dashboard_url(view_id)
        except NotFound:
            target = None
    if target is None:
        return HTMLResponse(render_page("not_found.html", batch_id=view_id[:64]), status_code=404, headers=PAGE_HEADERS)
    return RedirectResponse(target, status_code=303)
