"""One error envelope and one exception -> status map for the whole API.

Every error body is ``{"error": {"code", "message", "details"?}}``; a 500 never
echoes internals (the traceback goes to the log with a request id instead).
The batch layer raises its domain errors (:mod:`voce.service.batches.errors`) and
the routers their few own (below); :data:`STATUS` is the only place either
becomes an HTTP status.
"""
from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy import exc as sqlalchemy_exc
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.formparsers import MultiPartException

from voce.service.batches.errors import (
    BatchBusy,
    BatchError,
    BatchNotFound,
    InvalidFilter,
    InvalidUpload,
    TopicNotFound,
    UploadStoreUnavailable,
    UploadTooLarge,
)

log = logging.getLogger("voce.service")


class ErrorBody(BaseModel):
    code: str
    message: str
    details: list[dict[str, Any]] | None = None


class ErrorEnvelope(BaseModel):
    error: ErrorBody


class ServiceError(Exception):
    """An error of the service's own (not of a batch), whose message is safe to show to the client."""

    def __init__(self, message: str, *, details: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class InvalidInput(ServiceError):
    """The request is well-formed JSON but asks for something we refuse (duplicate ids, a bad inline taxonomy)."""


class PayloadTooLarge(ServiceError):
    """More documents than one request may carry."""


class Overloaded(ServiceError):
    """Every analysis slot and waiting place is taken."""


class NotReady(ServiceError):
    """The model (or the batch store) is still loading, or failed to load."""


class Unauthenticated(ServiceError):
    """No API key or session, or one that is unknown, revoked or expired (401 with ``WWW-Authenticate``)."""


class Forbidden(ServiceError):
    """The key is valid but lacks the scope, or a cookie request lacks its CSRF token or comes from another origin."""


class NotFound(ServiceError):
    """Something of the service's own (an API key) that does not exist for this caller."""


class BadHost(ServiceError):
    """The ``Host`` header names a host this service does not serve (DNS rebinding): see ``VOCE_ALLOWED_HOSTS``."""


class DatabaseUnavailable(ServiceError):
    """The database cannot be reached (restarted, failed over, cut off) or its pool is exhausted: retry shortly."""


#: The one exception -> (HTTP status, error code) map.  The layers below raise their own errors and never an HTTP
#: status; a subclass without an entry gets its nearest mapped base's (so a new batch error is a 400, never a 500).
STATUS: dict[type[Exception], tuple[int, str]] = {
    ServiceError: (400, "BadRequest"),
    InvalidInput: (422, "InvalidInput"),
    PayloadTooLarge: (413, "PayloadTooLarge"),
    Overloaded: (429, "TooManyRequests"),
    NotReady: (503, "NotReady"),
    Unauthenticated: (401, "Unauthorized"),
    Forbidden: (403, "Forbidden"),
    NotFound: (404, "NotFound"),
    BadHost: (400, "BadHost"),
    DatabaseUnavailable: (503, "DatabaseUnavailable"),
    BatchError: (400, "BadRequest"),
    InvalidUpload: (422, "InvalidInput"),
    InvalidFilter: (422, "InvalidInput"),
    UploadTooLarge: (413, "PayloadTooLarge"),
    UploadStoreUnavailable: (503, "UploadStoreUnavailable"),
    BatchNotFound: (404, "NotFound"),
    TopicNotFound: (404, "NotFound"),
    BatchBusy: (409, "Conflict"),
}


def status_of(exc: BaseException) -> tuple[int, str] | None:
    """(status, code) of a known error, from the most specific class in the map; None for anything else."""
    for cls in type(exc).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return None


def error_response(
    status: int, code: str, message: str, details: list[dict[str, Any]] | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    body = ErrorEnvelope(error=ErrorBody(code=code, message=message, details=details))
    # nosniff here too: a 500 is answered by Starlette's outermost middleware, outside SecurityHeaders
    out = {"X-Content-Type-Options": "nosniff", **(headers or {})}
    if status in (429, 503):
        out.setdefault("Retry-After", "1")
    if status == 401:  # RFC 9110: a 401 names how to authenticate
        out["WWW-Authenticate"] = 'Bearer realm="voce"'
    return JSONResponse(status_code=status, content=body.model_dump(exclude_none=True), headers=out)


def _clean_validation(errors: list[Any]) -> list[dict[str, Any]]:
    out = []
    for e in errors[:20]:
        out.append({"loc": [str(p) for p in e.get("loc", [])], "msg": str(e.get("msg", "")), "type": e.get("type", "")})
    return out


def install_error_handlers(app: FastAPI) -> None:
    async def _known(_: Request, exc: Exception) -> JSONResponse:
        status, code = status_of(exc) or (500, "InternalError")
        return error_response(status, code, getattr(exc, "message", str(exc)), getattr(exc, "details", None))

    for cls in STATUS:
        app.add_exception_handler(cls, _known)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = list(exc.errors())
        details = _clean_validation(errors)
        if errors and errors[0].get("type") == "json_invalid":  # loc is ("body", <character offset>)
            reason = (errors[0].get("ctx") or {}).get("error", "JSON decode error")
            at = errors[0].get("loc", ("body", "?"))[-1]
            details[0]["loc"] = ["body"]
            return error_response(422, "InvalidInput", f"the body is not valid JSON: {reason} (character {at})", details)
        first = details[0] if details else {"loc": [], "msg": "invalid request"}
        where = ".".join(p for p in first["loc"] if p != "body")
        return error_response(422, "InvalidInput", f"{where}: {first['msg']}" if where else str(first["msg"]), details)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        unreadable = _unreadable_body(exc)
        if unreadable is not None:  # the README promises 422 for a malformed body, as for any invalid input
            return error_response(422, "InvalidInput", unreadable, [{"loc": ["body"], "msg": unreadable,
                                                                    "type": "body_invalid"}])
        codes = {404: "NotFound", 405: "MethodNotAllowed", 413: "PayloadTooLarge", 415: "UnsupportedMediaType"}
        # the exception's headers go out with it: 405 carries Allow (RFC 9110), 401 WWW-Authenticate
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            from voce.service.protocol import allowed_methods  # (it imports this module)

            methods = allowed_methods(request.app, request.url.path)
            if methods:
                headers["Allow"] = ", ".join(methods)
        return error_response(exc.status_code, codes.get(exc.status_code, "HttpError"), str(exc.detail), None, headers)

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        rid = uuid.uuid4().hex[:12]
        if database_outage(exc):  # also raised in front of the routes (the key check of a POST): see guard.py
            log.warning("database unavailable (request %s)", rid, exc_info=exc)
            return error_response(503, "DatabaseUnavailable", f"the database is unavailable; retry shortly "
                                                              f"(reference {rid})")
        log.exception("unhandled error (request %s)", rid, exc_info=exc)
        return error_response(500, "InternalError", f"internal error; reference {rid}")

    for cls in (sqlalchemy_exc.DBAPIError, sqlalchemy_exc.TimeoutError):
        app.add_exception_handler(cls, _unexpected)


def _unreadable_body(exc: StarletteHTTPException) -> str | None:
    """Why the body could not be parsed, when ``exc`` is FastAPI's or Starlette's 400 for that; None otherwise.

    FastAPI answers a JSON body it cannot decode at all (invalid UTF-8, nesting too deep for the parser) with
    ``HTTPException(400) from <the error>``, and Starlette a broken multipart body with ``HTTPException(400)``
    raised while handling a ``MultiPartException``; a JSON syntax error is already a validation error (422)."""
    if exc.status_code != 400:
        return None
    cause = exc.__cause__
    if isinstance(cause, UnicodeError):
        return "the body is not valid JSON: it is not UTF-8 text"
    if isinstance(cause, RecursionError):
        return "the body is not valid JSON: it is nested too deeply"
    if isinstance(cause, ValueError):
        return "the body is not valid JSON"
    if isinstance(exc.__context__, MultiPartException):
        return f"the multipart body cannot be read: {exc.detail}"
    return None


def database_outage(exc: BaseException) -> bool:
    """A database that cannot answer now (unreachable, connection lost, pool exhausted, SQLite busy): a 503 with
    ``Retry-After``, where it was a 500; any other database error stays a 500 with a reference."""
    if isinstance(exc, DatabaseUnavailable | sqlalchemy_exc.OperationalError | sqlalchemy_exc.InterfaceError):
        return True
    if isinstance(exc, sqlalchemy_exc.TimeoutError):  # QueuePool limit reached
        return True
    return isinstance(exc, sqlalchemy_exc.DBAPIError) and bool(exc.connection_invalidated)


class BodyLimit:
    """ASGI middleware: a request body larger than its route's limit gets 413, also when it is sent chunked
    (no Content-Length), before the multipart parser has spooled the whole of it to disk."""

    def __init__(self, app: Any, limit_for: Any) -> None:
        self.app = app
        self.limit_for = limit_for  # path -> max bytes

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit: int = self.limit_for(scope["path"])
        seen = 0
        exceeded = False
        started = False

        async def limited_receive() -> Any:
            nonlocal seen, exceeded
            if exceeded:  # stop feeding the parser; the app fails and its response is replaced below
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    exceeded = True
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Any) -> None:
            nonlocal started
            if exceeded:
                return  # whatever the app answers to a cut body, the client gets the 413 below
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except Exception:
            if not exceeded:
                raise
        if exceeded and not started:
            response = error_response(413, "PayloadTooLarge", f"request body exceeds {limit} bytes")
            await response(scope, receive, send)
