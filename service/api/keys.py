"""``/v1/keys``: an admin key manages the API keys of its own tenant (list, create, revoke); never another's.

Keys for a new tenant, and every tenant's keys at once, are the operator's: ``voce keys`` on the database.
"""
from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field

from voce.service.auth.access import Principal
from voce.service.auth.keys import KeyInfo, KeyNotFound, KeySpecError
from voce.service.deps import AUTH_RESPONSES, AccessDep, require_admin
from voce.service.errors import ErrorEnvelope, InvalidInput, NotFound

router = APIRouter(prefix="/v1/keys", tags=["keys"], responses={**AUTH_RESPONSES, 404: {"model": ErrorEnvelope}})

Scope = Literal["analyze", "batches:read", "batches:write", "admin"]
AdminDep = Annotated[Principal | None, Depends(require_admin)]


class KeyOut(BaseModel):
    id: str
    tenant: str
    name: str
    prefix: str = Field(description="the first characters of the key, to recognise it (the key itself is never stored)")
    scopes: list[str]
    created_at: dt.datetime
    last_used_at: dt.datetime | None
    revoked_at: dt.datetime | None

    @classmethod
    def of(cls, info: KeyInfo) -> KeyOut:
        return cls(
            id=info.id, tenant=info.tenant, name=info.name, prefix=info.prefix, scopes=list(info.scopes),
            created_at=info.created_at.replace(tzinfo=info.created_at.tzinfo or dt.UTC), last_used_at=_utc(info.last_used_at),
            revoked_at=_utc(info.revoked_at),
        )


def _utc(d: dt.datetime | None) -> dt.datetime | None:
    """Stored times are naive UTC; the API sends them with their offset (RFC 3339), as the batch routes do."""
    return d.replace(tzinfo=dt.UTC) if d is not None and d.tzinfo is None else d


class KeyList(BaseModel):
    keys: list[KeyOut]


class KeyCreate(BaseModel):
    scopes: list[Scope] = Field(min_length=1, max_length=4)
    name: str | None = Field(default=None, max_length=128)

    model_config = {"extra": "forbid"}


class KeyCreated(KeyOut):
    key: str = Field(description="the key: shown in this answer only")


def _tenant(principal: Principal | None) -> str:
    assert principal is not None
    return principal.tenant


@router.get("", response_model=KeyList, operation_id="list_keys")
def list_keys(principal: AdminDep, access: AccessDep) -> KeyList:
    """The keys of this key's tenant (revoked ones too), oldest first."""
    return KeyList(keys=[KeyOut.of(k) for k in access.keys.list(tenant=_tenant(principal))])


@router.post("", response_model=KeyCreated, status_code=201, operation_id="create_key")
def create_key(body: KeyCreate, principal: AdminDep, access: AccessDep) -> KeyCreated:
    """A new key for this key's tenant; the answer is the only time the key is shown."""
    try:
        created = access.keys.create(_tenant(principal), body.scopes, name=body.name)
    except KeySpecError as exc:
        raise InvalidInput(str(exc)) from exc
    return KeyCreated(**KeyOut.of(created.info).model_dump(), key=created.secret)


@router.delete("/{key_id}", response_model=KeyOut, operation_id="revoke_key")
def revoke_key(key_id: str, principal: AdminDep, access: AccessDep) -> KeyOut:
    """Revoke a key of this tenant (by id or prefix) at once; its page sessions end with it."""
    try:
        return KeyOut.of(access.keys.revoke(key_id, tenant=_tenant(principal)))
    except KeyNotFound as exc:
        raise NotFound(str(exc)) from exc
