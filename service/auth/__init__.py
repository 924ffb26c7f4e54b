"""Access control: API keys per tenant and scope, the page's session and CSRF token, Host and Origin checks.

* :mod:`.keys` - keys stored as hashes with their tenant and scopes (``voce keys`` and ``/v1/keys`` use it);
* :mod:`.sessions` - the page's signed session cookie and its CSRF token;
* :mod:`.guard` - the Host (DNS rebinding) and Origin (CSRF) checks in front of every route;
* :mod:`.access` - credentials -> :class:`~.access.Principal`, the route requirements, the first admin key.

:func:`install_access` is the one call :func:`voce.service.app.create_app` makes; the routes take their
requirements from :mod:`voce.service.deps`.
"""
from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fastapi import FastAPI

    from voce.service.settings import Settings


def install_access(app: FastAPI, settings: Settings) -> None:
    """Host/Origin guard outermost, ``app.state.access``, and its start-up after the app's own (which opened the
    batch store whose database the keys share)."""
    from voce.service.auth.access import AccessControl
    from voce.service.auth.guard import RequestGuard

    access = AccessControl(settings)
    app.state.access = access
    app.add_middleware(RequestGuard, settings=settings)
    inner = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(a: Any) -> AsyncIterator[Any]:
        async with inner(a) as state:
            store = getattr(a.state, "store", None)
            access.start(store.sessions if store is not None else None)
            yield state

    app.router.lifespan_context = lifespan
