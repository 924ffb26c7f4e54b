"""``/v1/admin/models``: the model registry over HTTP (the same operations as ``voce models``).

List and show the registered versions, register a bundle folder on the server, promote a version or roll back to
the one before; the running service switches to the promoted version without a restart (``service/state.py``:
loaded and warmed beside the serving one, then swapped), and ``voce worker`` processes follow the same pointer.
Only the operator's admin keys (tenant ``VOCE_OPERATOR_TENANT``) reach these routes: the model serves every tenant.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query
from pydantic import BaseModel, ConfigDict, Field

from voce.models.registry import (
    VERSION_PATTERN,
    ModelRegistry,
    ModelVersion,
    RegistryConflict,
    RegistryError,
    RegistryEvent,
    VersionNotFound,
)
from voce.service.deps import AUTH_RESPONSES, FollowerDep, OperatorDep, require_admin
from voce.service.errors import InvalidInput, NotFound
from voce.service.state import ModelFollower

router = APIRouter(prefix="/v1/admin/models", tags=["models"], responses=AUTH_RESPONSES)

VersionPath = Annotated[str, Path(min_length=1, max_length=128, pattern=VERSION_PATTERN.pattern,
                                  description="a registered model version")]
WaitQuery = Annotated[bool, Query(description="answer once this service answers with the version (or its load "
                                              "failed), at most `timeout` seconds")]
TimeoutQuery = Annotated[float, Query(ge=0, le=600, description="seconds to wait for the swap")]


class Serving(BaseModel):
    """Which version the registry says is active and which one this process answers with now."""

    active: str | None
    serving: str | None
    # a version being loaded to replace the one serving; why the last swap failed (the old version kept serving)
    loading: str | None = None
    swap_error: str | None = None


class ModelSummary(BaseModel):
    version: str
    parent: str | None
    created: str | None
    registered_at: str
    registered_by: str
    active: bool
    metrics: dict[str, Any]


class ModelList(Serving):
    versions: list[ModelSummary]
    history: list[RegistryEvent]


class ModelDetail(Serving):
    model: ModelVersion


class RegisterRequest(BaseModel):
    """A bundle folder on the server (as `voce train` wrote it), registered under its own version or ``version``."""

    model_config = ConfigDict(extra="forbid")

    path: str = Field(min_length=1, max_length=4096)
    version: str | None = Field(default=None, min_length=1, max_length=128, pattern=VERSION_PATTERN.pattern)
    promote: bool = Field(default=False, description="make it the active version at once")
    note: str | None = Field(default=None, max_length=500)


class ChangeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    note: str | None = Field(default=None, max_length=500, description="why (kept in the history)")


class ModelChange(Serving):
    event: RegistryEvent


def _serving(follower: ModelFollower) -> dict[str, Any]:
    engine = follower.engine
    return {"active": follower.registry.active_version(), "serving": engine.version, "loading": engine.loading,
            "swap_error": engine.swap_error}


@contextmanager
def _registry_errors() -> Iterator[None]:
    """The registry's errors as the API's: unknown version 404, anything refused 422 (with its message)."""
    try:
        yield
    except VersionNotFound as exc:
        raise NotFound(str(exc)) from exc
    except (RegistryConflict, RegistryError) as exc:
        raise InvalidInput(str(exc)) from exc


def _change(follower: ModelFollower, change: Callable[[ModelRegistry], RegistryEvent], wait: bool,
            timeout: float) -> ModelChange:
    with _registry_errors():
        event = change(follower.registry)
    follower.nudge()  # this process swaps at once; other processes within VOCE_REGISTRY_POLL_SECONDS
    if wait:
        follower.wait_serving(event.version, timeout)
    return ModelChange(event=event, **_serving(follower))


@router.get("", response_model=ModelList, operation_id="list_models", dependencies=[Depends(require_admin)])
def list_models(follower: FollowerDep, _by: OperatorDep) -> ModelList:
    """Every registered version (newest first), the active one, the one answering here, and the history."""
    index = follower.registry.index()
    versions = [
        ModelSummary(version=v.version, parent=v.parent, created=v.created, registered_at=v.registered_at,
                     registered_by=v.registered_by, active=v.version == index.active, metrics=v.metrics)
        for v in reversed(index.versions)
    ]
    return ModelList(versions=versions, history=list(reversed(index.history)), **_serving(follower))


@router.get("/{model_version}", response_model=ModelDetail, operation_id="show_model",
            dependencies=[Depends(require_admin)])
def show_model(model_version: VersionPath, follower: FollowerDep, _by: OperatorDep) -> ModelDetail:
    """One version: parent, training config and its hash, data hashes, metrics."""
    with _registry_errors():
        found = follower.registry.get(model_version)
    return ModelDetail(model=found, **_serving(follower))


@router.post("", response_model=ModelDetail, status_code=201, operation_id="register_model",
             dependencies=[Depends(require_admin)])
def register_model(body: RegisterRequest, follower: FollowerDep, by: OperatorDep) -> ModelDetail:
    """Copy a bundle folder on the server into the registry (checked and checksummed first); ``promote`` makes it
    active (answered once this service answers with it, or after 120 s)."""
    with _registry_errors():
        found = follower.registry.register(body.path, by=by, version=body.version)
    if body.promote:
        _change(follower, lambda r: r.promote(found.version, by=by, note=body.note), True, 120.0)
    return ModelDetail(model=found, **_serving(follower))


@router.post("/rollback", response_model=ModelChange, operation_id="rollback_model",
             dependencies=[Depends(require_admin)])
def rollback_model(
    follower: FollowerDep, by: OperatorDep, body: ChangeRequest | None = None, wait: WaitQuery = True,
    timeout: TimeoutQuery = 120.0,
) -> ModelChange:
    """Make active again the version that was active before the current one (the same swap as a promotion)."""
    note = body.note if body else None
    return _change(follower, lambda r: r.rollback(by=by, note=note), wait, timeout)


@router.post("/{model_version}/promote", response_model=ModelChange, operation_id="promote_model",
             dependencies=[Depends(require_admin)])
def promote_model(
    model_version: VersionPath, follower: FollowerDep, by: OperatorDep, body: ChangeRequest | None = None,
    wait: WaitQuery = True, timeout: TimeoutQuery = 120.0,
) -> ModelChange:
    """Make ``model_version`` the active one: this service loads and warms it beside the serving one and then
    answers with it (no restart, no failed request); workers follow between batches."""
    note = body.note if body else None
    return _change(follower, lambda r: r.promote(model_version, by=by, note=note), wait, timeout)
