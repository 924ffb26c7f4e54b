"""``voce models list|show|register|promote|rollback``: the model registry (``models/registry.py``) from the shell.

The same operations as ``/v1/admin/models``, on the same registry folder (VOCE_REGISTRY_DIR, else
``<data_dir>/registry``).  A running service and its ``voce worker`` processes look at the active version every
VOCE_REGISTRY_POLL_SECONDS and switch to a promoted one without a restart.
"""
from __future__ import annotations

import getpass
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from voce.service.cli.common import fail, say, settings

if TYPE_CHECKING:
    from voce.models.registry import ModelRegistry

models_app = typer.Typer(
    help="Model versions the service serves: list, show, register, promote, rollback (same as /v1/admin/models).",
    no_args_is_help=True,
)

ByOpt = Annotated[str | None, typer.Option("--by", help="who makes the change (default: your user name)")]
NoteOpt = Annotated[str | None, typer.Option("--note", help="why (kept in the history)")]
#: the metrics `list` shows, when a version's manifest has them
HEADLINE = ("sentipolc_polarity_f", "airline_sentiment_macro_f1", "realcx_touchpoint_top1")


def _by(by: str | None) -> str:
    if by:
        return by
    try:
        return f"{getpass.getuser()} (cli)"
    except Exception:  # no user name in a bare container
        return "cli"


def open_registry() -> ModelRegistry:
    """The configured registry, with the configured bundle adopted (so a fresh registry lists its first version)."""
    from voce.service.state import configured_bundle

    s = settings()
    registry = s.model_registry()
    registry.adopt(configured_bundle(s), by="voce (first version)")
    return registry


@contextmanager
def _errors() -> Iterator[None]:
    from voce.models.bundle import BundleError
    from voce.models.registry import RegistryError

    try:
        yield
    except (RegistryError, BundleError) as exc:
        raise fail(str(exc)) from exc


def list_models(
    as_json: Annotated[bool, typer.Option("--json", help="the whole index as JSON")] = False,
) -> None:
    """Registered versions, newest first (* = active), and the promotion history."""
    with _errors():
        index = open_registry().index()
    if as_json:
        typer.echo(index.model_dump_json(indent=2))
        return
    for v in reversed(index.versions):
        mark = "*" if v.version == index.active else " "
        metrics = "  ".join(f"{k}={v.metrics[k]}" for k in HEADLINE if v.metrics.get(k) is not None)
        typer.echo(f"{mark} {v.version:<28} parent={v.parent or '-':<22} registered {v.registered_at} by "
                   f"{v.registered_by}  {metrics}".rstrip())
    if index.history:
        typer.echo("history (newest first):")
        for e in reversed(index.history[-20:]):
            came = f" (was {e.previous})" if e.previous and e.action != "register" else ""
            note = f": {e.note}" if e.note else ""
            typer.echo(f"  {e.at}  {e.action:<8} {e.version}{came} by {e.by}{note}")


def show(version: Annotated[str, typer.Argument(help="a registered version")]) -> None:
    """One version as JSON: parent, training config and hash, data hashes, metrics, where its copy is."""
    with _errors():
        registry = open_registry()
        found = registry.get(version)
    out = found.model_dump(mode="json") | {"active": registry.active_version() == version,
                                            "folder": str(registry.root / found.path)}
    typer.echo(json.dumps(out, indent=2, ensure_ascii=False))


def register(
    path: Annotated[Path, typer.Argument(help="a bundle folder (as `voce train` wrote it)")],
    version: Annotated[str | None, typer.Option("--version", help="register under this name (default: the "
                                                                  "bundle's own version)")] = None,
    promote: Annotated[bool, typer.Option("--promote", help="make it the active version at once")] = False,
    by: ByOpt = None,
    note: NoteOpt = None,
) -> None:
    """Copy a bundle into the registry (checked against its checksums first); not active until promoted."""
    with _errors():
        registry = open_registry()
        entry = registry.register(path, by=_by(by), version=version)
        say(f"registered {entry.version} (parent {entry.parent or 'unknown'}) in {registry.root / entry.path}")
        if promote:
            _promoted(registry.promote(entry.version, by=_by(by), note=note).version)
    typer.echo(entry.version)


def promote(
    version: Annotated[str, typer.Argument(help="a registered version")], by: ByOpt = None, note: NoteOpt = None,
) -> None:
    """Make a version the active one: the running service and workers switch to it without a restart."""
    with _errors():
        event = open_registry().promote(version, by=_by(by), note=note)
    _promoted(event.version, event.previous)


def rollback(by: ByOpt = None, note: NoteOpt = None) -> None:
    """Make active again the version that was active before the current one (the same switch as a promotion)."""
    with _errors():
        event = open_registry().rollback(by=_by(by), note=note)
    _promoted(event.version, event.previous)


def _promoted(version: str, previous: str | None = None) -> None:
    s = settings()
    was = f" (was {previous})" if previous else ""
    say(f"active: {version}{was}; running services and workers switch within {s.registry_poll_seconds:g} s "
        "(loaded and warmed beside the old version first; no request fails)")


models_app.command("list")(list_models)
models_app.command()(show)
models_app.command()(register)
models_app.command()(promote)
models_app.command()(rollback)
