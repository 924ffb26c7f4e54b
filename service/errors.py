"""One error envelope and one exception -> status map for the whole API.

Every error body is ``{"error": {"code", "message", "details"?}}``; a 500 never
echoes internals (the traceback goes to the log with a request id instead).
"""
from __future__ import annotations

import logging
import uuid
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger("voce.service")


class ErrorBody(BaseModel):
    code: str
    message: str
    details: list[dict[str, Any]] | None = None


class ErrorEnvelope(BaseModel):
    error: ErrorBody


class ApiError(Exception):
    """An error with a stable code and HTTP status, safe to show to the client."""

    status = 400
    code = "BadRequest"

    def __init__(self, message: str, *, details: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class InvalidInput(ApiError):
    status, code = 422, "InvalidInput"


class PayloadTooLarge(ApiError):
    status, code = 413, "PayloadTooLarge"


class Overloaded(ApiError):
    status, code = 429, "TooManyRequests"


class NotReady(ApiError):
    status, code = 503, "NotReady"


def error_response(status: int, code: str, message: str, details: list[dict[str, Any]] | None = None) -> JSONResponse:
    body = ErrorEnvelope(error=ErrorBody(code=code, message=message, details=details))
    headers = {"Retry-After": "1"} if status in (429, 503) else None
    return JSONResponse(status_code=status, content=body.model_dump(exclude_none=True), headers=headers)


def _clean_validation(errors: list[Any]) -> list[dict[str, Any]]:
    out = []
    for e in errors[:20]:
        out.append({"loc": [str(p) for p in e.get("loc", [])], "msg": str(e.get("msg", "")), "type": e.get("type", "")})
    return out


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.code, exc.message, exc.details)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        details = _clean_validation(list(exc.errors()))
        first = details[0] if details else {"loc": [], "msg": "invalid request"}
        where = ".".join(p for p in first["loc"] if p != "body")
        return error_response(422, "InvalidInput", f"{where}: {first['msg']}" if where else str(first["msg"]), details)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        codes = {404: "NotFound", 405: "MethodNotAllowed", 413: "PayloadTooLarge", 415: "UnsupportedMediaType"}
        return error_response(exc.status_code, codes.get(exc.status_code, "HttpError"), str(exc.detail))

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        rid = uuid.uuid4().hex[:12]
        log.exception("unhandled error (request %s)", rid, exc_info=exc)
        return error_response(500, "InternalError", f"internal error; reference {rid}")


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
