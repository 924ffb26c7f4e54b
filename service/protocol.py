"""HTTP hygiene shared by every route: security headers, route templates for metrics, error statuses in the OpenAPI.

* :class:`SecurityHeaders` puts ``X-Content-Type-Options: nosniff`` (and a few headers that cost nothing) on every
  response, errors and redirects included, without overriding what a page sets for itself (its CSP).
* :class:`RouteLabels` names a request by its route *template* (``/v1/batches/{batch_id}``), never its raw path:
  a metrics label per raw path grew ``/metrics`` to 39 MB under 20,000 random 404s and listed batch ids.
* :func:`declare_error_responses` adds to the OpenAPI document every error status a route can answer, each with
  the one error envelope, read from what the route is (its parameters, its dependencies), so a new route cannot
  forget them.
"""
from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute
from starlette.routing import compile_path

from voce.service.errors import ErrorEnvelope

#: the label of a request that matched no route (a 404 or a probe of random paths)
UNMATCHED = "<unmatched>"

#: on every response unless the response set its own
DEFAULT_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"x-content-type-options", b"nosniff"),
    # no page of Voce is meant to be framed (the pages also say frame-ancestors 'none' in their CSP)
    (b"x-frame-options", b"DENY"),
    # 'same-origin', not 'no-referrer': under 'no-referrer' a browser sends `Origin: null` with the page's own form
    # POSTs (sign-in, sign-out; Fetch standard, "append a request Origin header"), which the CSRF guard
    # (service/auth/guard.py) must refuse; 'same-origin' still sends no referrer to any other site
    (b"referrer-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
)


class SecurityHeaders:
    """ASGI middleware: :data:`DEFAULT_HEADERS` on every HTTP response that does not carry them already."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Any) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                headers.extend((name, value) for name, value in DEFAULT_HEADERS if name not in present)
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def api_routes(app: FastAPI) -> Iterator[tuple[str, APIRoute]]:
    """(path template as served, route) of every FastAPI route, through included routers."""
    try:
        from fastapi.routing import iter_route_contexts
    except ImportError:  # an older FastAPI: app.routes is flat
        for route in app.routes:
            if isinstance(route, APIRoute):
                yield route.path, route
        return
    for context in iter_route_contexts(app.routes):
        route = context.original_route
        if isinstance(route, APIRoute):
            yield context.path or route.path, route


def _templates(app: FastAPI) -> Iterator[tuple[str, frozenset[str]]]:
    """(path template, methods) of every route: FastAPI's, then the app's own plain ones (``/openapi.json``)."""
    for template, api_route in api_routes(app):
        yield template, frozenset(api_route.methods or ())
    for route in app.routes:
        plain = getattr(route, "path", None)
        if not hasattr(route, "original_router") and isinstance(plain, str):
            yield plain, frozenset(getattr(route, "methods", None) or ())


def allowed_methods(app: FastAPI, path: str) -> list[str]:
    """Every method some route of ``app`` answers at ``path`` (a 405's ``Allow``: Starlette lists only the first
    matching route's, so ``PATCH /v1/batches/{id}`` said ``GET`` while ``DELETE`` is served there too)."""
    methods: set[str] = set()
    for template, served in _templates(app):
        if compile_path(template)[0].match(path):
            methods |= served
    return sorted(methods)


class RouteLabels:
    """The route template a request path matches, for labels that stay bounded whatever paths clients send."""

    def __init__(self, app: FastAPI) -> None:
        self._app = app
        self._patterns: list[tuple[re.Pattern[str], str]] | None = None

    def _compiled(self) -> list[tuple[re.Pattern[str], str]]:
        if self._patterns is None:  # built on first use: routers are all included by then
            seen: set[str] = set()
            patterns = []
            for template, _ in _templates(self._app):
                if template not in seen:
                    seen.add(template)
                    patterns.append((compile_path(template)[0], template))
            self._patterns = patterns
        return self._patterns

    def __call__(self, scope: Any) -> str:
        """The template of the route that handled (or would handle) ``scope``; :data:`UNMATCHED` for none."""
        route = scope.get("route")
        template = getattr(route, "path", None)
        if isinstance(template, str) and template:
            return template
        path = scope.get("path", "")
        for pattern, template in self._compiled():
            if pattern.match(path):
                return template
        return UNMATCHED


# ------------------------------------------------------------------ the error statuses of the OpenAPI document
_ENVELOPE_REF = {"$ref": "#/components/schemas/ErrorEnvelope"}


def _calls(dependant: Any) -> Iterator[Any]:
    for dep in dependant.dependencies:
        if dep.call is not None:
            yield dep.call
        yield from _calls(dep)


def _has_params(dependant: Any) -> bool:
    if dependant.path_params or dependant.query_params or dependant.header_params or dependant.cookie_params:
        return True
    if dependant.body_params:
        return True
    return any(_has_params(dep) for dep in dependant.dependencies)


def error_statuses(path: str, route: APIRoute) -> dict[int, str]:
    """Every error status ``route`` can answer besides those it declares itself, with why."""
    from voce.service.auth.access import Requirement
    from voce.service.auth.guard import ANY_HOST_PATHS
    from voce.service.deps import get_admission, get_analyzer, get_batches, get_store

    calls = set(_calls(route.dependant))
    out: dict[int, str] = {}
    if path not in ANY_HOST_PATHS:
        out[400] = "the Host header names a host this service does not serve (VOCE_ALLOWED_HOSTS)"
    if "{" in path:
        out[404] = "nothing with this id for the caller's tenant"
    out[413] = "the request body is larger than the route allows"
    if _has_params(route.dependant):
        out[422] = "invalid input: a parameter or body field out of bounds, a malformed JSON or multipart body"
    if get_admission in calls:
        out[429] = "every analysis slot is busy; retry after Retry-After seconds"
    if calls & {get_analyzer, get_batches, get_store} or any(isinstance(c, Requirement) for c in calls):
        out[503] = ("the model or the batch store is not ready yet (see /ready), or the database is unreachable; "
                    "retry after Retry-After seconds")
    out[500] = "an unexpected error; the body carries a reference id for the log, never the internals"
    return out


def declare_error_responses(app: FastAPI) -> None:
    """Wrap ``app.openapi`` so that each operation lists :func:`error_statuses` with the error envelope (a status
    a route declares itself, like ``/ready``'s 503, is left as it is)."""
    build: Callable[[], dict[str, Any]] = app.openapi
    done = False

    def openapi() -> dict[str, Any]:
        nonlocal done
        schema = build()  # FastAPI caches it on app.openapi_schema; it is completed once, in place
        if done:
            return schema
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        if "ErrorEnvelope" not in components:
            defs = ErrorEnvelope.model_json_schema(ref_template="#/components/schemas/{model}")
            components.update(defs.pop("$defs", {}))
            components["ErrorEnvelope"] = defs
        for path, route in api_routes(app):
            if not route.include_in_schema or path not in schema.get("paths", {}):
                continue
            for method in route.methods or ():
                operation = schema["paths"][path].get(method.lower())
                if operation is None:
                    continue
                responses = operation.setdefault("responses", {})
                for status, why in error_statuses(path, route).items():
                    declared = responses.get(str(status))
                    # FastAPI adds its own 422 body (HTTPValidationError); Voce answers 422 with the envelope
                    if declared is None or "HTTPValidationError" in str(declared):
                        responses[str(status)] = {
                            "description": why, "content": {"application/json": {"schema": _ENVELOPE_REF}}
                        }
        text = str(schema.get("paths"))
        for unused in ("HTTPValidationError", "ValidationError"):
            if f"/{unused}'" not in text:
                components.pop(unused, None)
        done = True
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
