"""``voce keys``: create, list and revoke API keys in the configured database (``VOCE_DATABASE_URL`` or the embedded
SQLite in ``VOCE_DATA_DIR``), the same store the API checks keys against (:mod:`voce.service.auth.keys`).

A key is printed once, when it is created (on stdout, alone, so ``KEY=$(voce keys create ...)`` works); only its
hash is stored.  This is the operator's tool: it sees every tenant.
"""
from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated

import typer

from voce.service.cli.common import fail, say, settings

if TYPE_CHECKING:
    import datetime as dt

    from voce.service.auth.keys import KeyInfo, KeyStore

keys_app = typer.Typer(
    help="API keys: each belongs to one tenant and has scopes (analyze, batches:read, batches:write, admin).",
    no_args_is_help=True,
)


def _store() -> KeyStore:
    from voce.service.auth.keys import KeyStore

    return KeyStore.open(settings().resolved_database_url())


def _when(value: dt.datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M") if value is not None else "-"


def _as_dict(k: KeyInfo) -> dict[str, object]:
    return {
        "id": k.id, "prefix": k.prefix, "tenant": k.tenant, "name": k.name, "scopes": list(k.scopes),
        "created_at": k.created_at.isoformat(), "last_used_at": k.last_used_at.isoformat() if k.last_used_at else None,
        "revoked_at": k.revoked_at.isoformat() if k.revoked_at else None,
    }


@keys_app.command("create")
def keys_create(
    tenant: Annotated[str, typer.Option(help="the team or brand the key belongs to; it sees this tenant's batches only")],
    scopes: Annotated[str, typer.Option(help="comma-separated: analyze, batches:read, batches:write, admin")],
    name: Annotated[str | None, typer.Option(help="what the key is for (shown in listings)")] = None,
) -> None:
    """Create a key and print it once (stdout); only its hash is stored."""
    from voce.service.auth.keys import KeySpecError

    try:
        created = _store().create(tenant, scopes, name=name)
    except KeySpecError as exc:
        raise fail(str(exc)) from exc
    info = created.info
    say(f"key {info.prefix}… (id {info.id}) for tenant {info.tenant!r}, scopes {','.join(info.scopes)}; "
        "it is shown only now:")
    typer.echo(created.secret)


@keys_app.command("list")
def keys_list(
    tenant: Annotated[str | None, typer.Option(help="only this tenant's keys")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON object per key")] = False,
) -> None:
    """Keys (never the keys themselves): id, prefix, tenant, scopes, created, last used, revoked."""
    keys = _store().list(tenant=tenant)
    if as_json:
        for k in keys:
            typer.echo(json.dumps(_as_dict(k)))
        return
    if not keys:
        say("no keys" + (f" for tenant {tenant!r}" if tenant else ""))
        return
    typer.echo(f"{'id':32}  {'prefix':13}  {'tenant':16}  {'scopes':40}  {'created':16}  {'last used':16}  "
               f"{'revoked':16}  name")
    for k in keys:
        typer.echo(f"{k.id:32}  {k.prefix:13}  {k.tenant[:16]:16}  {','.join(k.scopes):40}  {_when(k.created_at):16}  "
                   f"{_when(k.last_used_at):16}  {_when(k.revoked_at):16}  {k.name}")


@keys_app.command("revoke")
def keys_revoke(key: Annotated[str, typer.Argument(help="the key's id or prefix (as `voce keys list` shows them)")]) -> None:
    """Revoke a key at once: its requests get 401 and its page sessions end."""
    from voce.service.auth.keys import KeyNotFound

    try:
        info = _store().revoke(key)
    except KeyNotFound as exc:
        raise fail(str(exc)) from exc
    say(f"revoked key {info.prefix}… (id {info.id}) of tenant {info.tenant!r} at {_when(info.revoked_at)} UTC")
