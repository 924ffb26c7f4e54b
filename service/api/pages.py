"""The web pages: sign-in, upload (with a column-mapping preview) and the batch list, a batch dashboard, assets.

Every page is an HTML shell from :mod:`voce.service.web`; the browser then reads the public ``/v1`` API with the
session cookie set here (``HttpOnly``, ``SameSite=Strict``, ``Secure`` over https) and sends the page's CSRF
token with every state-changing call.  Without a session a page redirects to ``/ui/signin``; another tenant's
batch is the same 404 page as a batch that does not exist.
"""
from __future__ import annotations

import secrets
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from voce.service.auth.access import Principal
from voce.service.auth.sessions import CSRF_FIELD, SESSION_COOKIE, SIGNIN_COOKIE, same_token
from voce.service.deps import AccessDep, PageDep
from voce.service.errors import Forbidden, NotFound, Unauthenticated
from voce.service.web import BATCH_ID, PAGE_HEADERS, asset_version, render_page, static_file

router = APIRouter(include_in_schema=False)

#: the sign-in form's nonce cookie lives this long (a form left open longer is simply shown again)
_SIGNIN_SECONDS = 3600


def _page(body: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(body, status_code=status, headers=PAGE_HEADERS)


def _safe_next(value: str | None) -> str:
    """Where to go after signing in: a page of this service only (never another host: no open redirect)."""
    if value and value.startswith("/ui/") and not value.startswith("//") and "\\" not in value and value.isprintable():
        return value
    return "/ui/"


def _to_signin(request: Request) -> RedirectResponse:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/ui/signin?next={quote(target, safe='')}", status_code=303)


def _session_values(principal: Principal) -> dict[str, str]:
    """What every signed-in page shows: who is signed in, the CSRF token for its calls, the sign-out form."""
    who = f"{principal.tenant} · {principal.key_prefix}…" if principal.key_prefix else principal.tenant
    return {
        "csrf_token": principal.csrf or "",
        "who": who,
        "signout_hidden": "" if principal.via == "session" else "hidden",
    }


@router.get("/")
def root() -> RedirectResponse:
    return RedirectResponse("/ui/", status_code=307)


@router.get("/ui")
def ui_no_slash() -> RedirectResponse:
    return RedirectResponse("/ui/", status_code=307)


@router.get("/ui/", response_class=HTMLResponse)
def upload_page(request: Request, page: PageDep) -> Response:
    """Upload a file (preview + column mapping), follow its progress, list batches."""
    principal, _ = page
    if principal is None:
        return _to_signin(request)
    return _page(render_page("upload.html", **_session_values(principal)))


@router.get("/ui/batches/{batch_id}", response_class=HTMLResponse)
def dashboard_page(batch_id: str, request: Request, page: PageDep) -> Response:
    """KPIs, charts, discovered themes and the comments behind them, for one batch of the caller's tenant."""
    principal, batches = page
    if principal is None:
        return _to_signin(request)
    if not BATCH_ID.match(batch_id) or (batches is not None and not batches.exists(batch_id)):
        return _page(render_page("not_found.html", batch_id=batch_id[:64]), status=404)
    return _page(render_page("dashboard.html", batch_id=batch_id, **_session_values(principal)))


# ------------------------------------------------------------------ sign-in / sign-out
def _signin_form(
    request: Request, access: AccessDep, *, next_url: str, error: str = "", error_key: str = "", status: int = 200
) -> HTMLResponse:
    """The sign-in page, its CSRF token bound to a fresh nonce cookie (login CSRF)."""
    nonce = secrets.token_urlsafe(24)
    response = _page(
        render_page(
            "signin.html", csrf_token=access.signer.signin_token(nonce), next=next_url, error=error,
            error_key=error_key or "signin.error.invalid", error_hidden="" if error else "hidden",
        ),
        status=status,
    )
    response.set_cookie(
        SIGNIN_COOKIE, nonce, max_age=_SIGNIN_SECONDS, path="/ui/signin", httponly=True, samesite="strict",
        secure=access.cookie_secure(request),
    )
    return response


@router.get("/ui/signin", response_class=HTMLResponse)
def signin_page(request: Request, access: AccessDep, next: str | None = None) -> Response:  # noqa: A002
    """Paste an API key; with access control off there is nothing to sign in to."""
    if not access.enabled:
        return RedirectResponse(_safe_next(next), status_code=303)
    return _signin_form(request, access, next_url=_safe_next(next))


@router.post("/ui/signin", response_class=HTMLResponse)
def signin(
    request: Request,
    access: AccessDep,
    key: Annotated[str, Form(max_length=256)] = "",
    csrf_token: Annotated[str, Form(max_length=256)] = "",
    next: Annotated[str, Form(max_length=2048)] = "/ui/",  # noqa: A002
) -> Response:
    """Check the key; on success a session cookie and back to the page that asked (303)."""
    target = _safe_next(next)
    if not access.enabled:
        return RedirectResponse(target, status_code=303)
    if not access.signer.check_signin_token(request.cookies.get(SIGNIN_COOKIE), csrf_token):
        return _signin_form(request, access, next_url=target, error="The form expired; please sign in again.",
                            error_key="signin.error.expired", status=403)
    try:
        info, cookie, _ = access.sign_in(key)
    except Unauthenticated:
        return _signin_form(request, access, next_url=target, error="This key is unknown or has been revoked.",
                            error_key="signin.error.invalid", status=401)
    except Forbidden:
        return _signin_form(request, access, next_url=target, error="This key cannot read batches (scope "
                            "batches:read), so it cannot use these pages.", error_key="signin.error.scope", status=403)
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(
        SESSION_COOKIE, cookie, max_age=access.signer.lifetime, path="/", httponly=True, samesite="strict",
        secure=access.cookie_secure(request),
    )
    response.delete_cookie(SIGNIN_COOKIE, path="/ui/signin")
    return response


@router.post("/ui/signout")
def signout(
    request: Request, access: AccessDep, csrf_token: Annotated[str, Form(alias=CSRF_FIELD, max_length=256)] = ""
) -> Response:
    """Delete the session cookie (the form carries the session's CSRF token) and show the sign-in page."""
    session = access.read_session(request) if access.enabled else None
    if session is not None and not same_token(session.csrf, csrf_token):
        raise Forbidden("missing or wrong CSRF token for signing out")
    response = RedirectResponse("/ui/signin", status_code=303)
    response.delete_cookie(
        SESSION_COOKIE, path="/", httponly=True, samesite="strict", secure=access.cookie_secure(request)
    )
    return response


# ------------------------------------------------------------------ assets
@router.get("/ui/static/{path:path}")
def static_asset(path: str, request: Request) -> Response:
    """Package assets only (no directory listing, no dot-files, no ``..``); ETag + long cache when versioned."""
    asset = static_file(path)
    if asset is None:
        raise NotFound(f"no asset {path[:200]!r}")
    versioned = request.query_params.get("v") == asset_version()
    headers = {
        "ETag": asset.etag,
        "X-Content-Type-Options": "nosniff",
        "Cache-Control": "public, max-age=31536000, immutable" if versioned else "public, max-age=300",
    }
    if request.headers.get("if-none-match") == asset.etag:
        return Response(status_code=304, headers=headers)
    return Response(asset.body, media_type=asset.content_type, headers=headers)
