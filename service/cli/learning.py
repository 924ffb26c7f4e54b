"""``voce taxonomy`` and ``voce corrections``: a tenant's taxonomy versions and analysts' corrections in the
configured database (``VOCE_DATABASE_URL`` or the embedded SQLite in ``VOCE_DATA_DIR``), the same store the API uses
(:mod:`voce.service.learning`).  This is the operator's tool: it names the tenant (default ``default``).
"""
from __future__ import annotations

import getpass
import json
import os
import shlex
import subprocess
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from voce.service.cli.common import fail, say, settings

if TYPE_CHECKING:
    from voce.service.learning.taxonomies import TenantTaxonomy, VersionInfo

taxonomy_app = typer.Typer(
    help="A tenant's taxonomy as versions: show, edit, import/export YAML, history, diff, rollback.",
    no_args_is_help=True,
)
corrections_app = typer.Typer(help="Analysts' corrections of batch rows: list them, export them for `voce train`.",
                              no_args_is_help=True)

TenantOpt = Annotated[str, typer.Option(help="whose taxonomy / corrections")]
AuthorOpt = Annotated[str | None, typer.Option(help="recorded as the version's author (default: cli:<user>)")]
MessageOpt = Annotated[str | None, typer.Option("--message", "-m", help="what changed and why")]


def _sessions() -> Any:
    from voce.service.db import open_database

    return open_database(settings().resolved_database_url())


def _tenant_taxonomy(tenant: str) -> TenantTaxonomy:
    from voce.models.spec import load_taxonomy_for
    from voce.service.learning.taxonomies import STORED_EXAMPLES, TaxonomyLimits, TaxonomyStore, TenantTaxonomy

    s = settings()
    limits = TaxonomyLimits(entries=s.max_taxonomy_entries, examples=max(s.max_taxonomy_examples, STORED_EXAMPLES),
                            text_chars=s.max_taxonomy_text_chars)
    return TenantTaxonomy(TaxonomyStore(_sessions()), tenant, load_taxonomy_for(s.analyzer_spec()), limits)


def _author(author: str | None) -> str:
    try:
        user = getpass.getuser()
    except Exception:  # no login name (a container without a passwd entry)
        user = "operator"
    return author or f"cli:{user}"


def _print_version(v: VersionInfo) -> None:
    say(f"version {v.version} ({v.label}) by {v.author}: {len(v.changes)} change(s)")
    for c in v.changes:
        typer.echo(f"  {c.text}")


def _guard(fn: Any) -> Any:
    from voce.service.errors import ServiceError

    try:
        return fn()
    except ServiceError as exc:
        raise fail(exc.message) from exc


@taxonomy_app.command("show")
def taxonomy_show(
    tenant: TenantOpt = "default",
    version: Annotated[int | None, typer.Option(help="a stored version (default: the active one)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON instead of a summary")] = False,
) -> None:
    """The active (or a stored) taxonomy: its version and entries."""
    view = _guard(lambda: _tenant_taxonomy(tenant).view(version))
    if as_json:
        typer.echo(json.dumps(view.model_dump(mode="json"), ensure_ascii=False, indent=2))
        return
    state = f"version {view.version}" if view.stored else "the configured taxonomy (never edited)"
    typer.echo(f"tenant {tenant}: {view.label} ({state})")
    for section in ("topics", "touchpoints"):
        raw = view.taxonomy[section]
        entries = raw if isinstance(raw, list) else raw["entries"]
        typer.echo(f"{section} ({len(entries)}):")
        for e in entries:
            names = e.get("names", {})
            typer.echo(f"  {e['id']:28} {names.get('it', '-')[:30]:30} {names.get('en', '-')[:30]:30} "
                       f"{len(e.get('examples', []))} examples")


@taxonomy_app.command("export")
def taxonomy_export(
    out: Annotated[Path | None, typer.Argument(help="YAML file to write (default: stdout)")] = None,
    tenant: TenantOpt = "default",
    version: Annotated[int | None, typer.Option(help="a stored version (default: the active one)")] = None,
) -> None:
    """The taxonomy as YAML (the format `VOCE_TAXONOMY` and `voce taxonomy import` read)."""
    from voce.models.taxonomy import parse_taxonomy
    from voce.service.learning.taxonomies import to_yaml

    view = _guard(lambda: _tenant_taxonomy(tenant).view(version))
    text = to_yaml(parse_taxonomy(view.taxonomy))
    if out is None:
        typer.echo(text, nl=False)
    else:
        out.write_text(text, encoding="utf-8")
        say(f"wrote {out} ({view.label})")


@taxonomy_app.command("import")
def taxonomy_import(
    file: Annotated[Path, typer.Argument(help="a taxonomy YAML (or JSON) file; a missing section keeps the active one")],
    tenant: TenantOpt = "default", author: AuthorOpt = None, message: MessageOpt = None,
) -> None:
    """Store a taxonomy file as the tenant's next version (refused when nothing changes)."""
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise fail(f"cannot read {file}: {exc}") from exc
    _print_version(_guard(lambda: _tenant_taxonomy(tenant).import_yaml(text, _author(author),
                                                                       message or f"imported from {file.name}")))


@taxonomy_app.command("edit")
def taxonomy_edit(
    tenant: TenantOpt = "default", author: AuthorOpt = None, message: MessageOpt = None,
    ops: Annotated[Path | None, typer.Option(help='JSON edits instead of an editor: [{"op": "add"|"update"|"rename"|'
                                                  '"merge"|"retire", "section": "topics", ...}]')] = None,
) -> None:
    """Edit the active taxonomy in $EDITOR (as YAML), or apply JSON edits (--ops); saved as a new version."""
    from pydantic import TypeAdapter, ValidationError

    from voce.models.taxonomy import parse_taxonomy
    from voce.service.learning.taxonomies import Edit, to_yaml

    tt = _tenant_taxonomy(tenant)
    if ops is not None:
        try:
            edits = TypeAdapter(list[Edit]).validate_json(ops.read_bytes())
        except (OSError, ValidationError) as exc:
            raise fail(f"cannot read the edits in {ops}: {exc}") from exc
        _print_version(_guard(lambda: tt.edit(edits, _author(author), message)))
        return
    current = tt.view()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "taxonomy.yaml"
        path.write_text(to_yaml(parse_taxonomy(current.taxonomy)), encoding="utf-8")
        editor = os.environ.get("VISUAL") or os.environ.get("EDITOR") or "vi"
        if subprocess.call([*shlex.split(editor), str(path)]) != 0:
            raise fail("the editor exited with an error; nothing saved")
        text = path.read_text(encoding="utf-8")
    _print_version(_guard(lambda: tt.import_yaml(text, _author(author), message or "edited with voce taxonomy edit")))


@taxonomy_app.command("history")
def taxonomy_history(
    tenant: TenantOpt = "default",
    limit: Annotated[int, typer.Option(min=1, max=500)] = 20,
) -> None:
    """Versions, newest (active) first, with author, time, message and changes."""
    versions = _tenant_taxonomy(tenant).history(limit)
    if not versions:
        say(f"tenant {tenant!r} has no saved taxonomy version (it uses the configured one)")
    for v in versions:
        restored = f" (rollback to {v.restored_from})" if v.restored_from else ""
        typer.echo(f"v{v.version}  {v.created_at:%Y-%m-%d %H:%M}  {v.author}  {v.label}{restored}  {v.message or ''}")
        for c in v.changes[:20]:
            typer.echo(f"    {c.text}")
        if len(v.changes) > 20:
            typer.echo(f"    ... and {len(v.changes) - 20} more")


@taxonomy_app.command("diff")
def taxonomy_diff(
    a: Annotated[int, typer.Argument(help="from this version (0: the configured taxonomy)")],
    b: Annotated[int | None, typer.Argument(help="to this version (default: the active one)")] = None,
    tenant: TenantOpt = "default",
) -> None:
    """What changed between two versions."""
    for c in _guard(lambda: _tenant_taxonomy(tenant).diff(a, b)):
        typer.echo(c.text)


@taxonomy_app.command("rollback")
def taxonomy_rollback(
    version: Annotated[int, typer.Argument(help="the version to make active again")],
    tenant: TenantOpt = "default", author: AuthorOpt = None,
) -> None:
    """Make an old version active again: a new version equal to it."""
    _print_version(_guard(lambda: _tenant_taxonomy(tenant).rollback(version, _author(author))))


@corrections_app.command("export")
def corrections_export(
    out: Annotated[Path, typer.Argument(help="training file to write: .jsonl, or .csv (the custom-data format)")],
    tenant: Annotated[str | None, typer.Option(help="only this tenant's corrections (default: every tenant)")] = None,
    batch: Annotated[str | None, typer.Option(help="only this batch's corrections")] = None,
) -> None:
    """Active corrections as labelled rows `voce train` reads (custom data: text, language, sentiment, topics,
    detractor; touchpoints and provenance as extra columns).  Only what analysts corrected becomes a label."""
    from voce.service.learning.corrections import training_records, write_training_file

    n = write_training_file(training_records(_sessions(), tenant=tenant, batch_id=batch), out)
    say(f"wrote {n} corrected row(s) to {out}")


@corrections_app.command("list")
def corrections_list(
    batch: Annotated[str, typer.Argument(help="the batch id")],
) -> None:
    """A batch's corrected rows: prediction -> correction, with author and time."""
    from voce.service.batches.errors import BatchNotFound
    from voce.service.batches.service import BatchService
    from voce.service.batches.store import BatchStore
    from voce.service.learning.corrections import CorrectionService

    store = BatchStore(_sessions())
    service = BatchService.from_settings(settings(), store=store)
    try:
        found = CorrectionService(service, lambda b: service_taxonomy()).batch(batch)
    except BatchNotFound as exc:
        raise fail(exc.message) from exc
    for rc in found.rows:
        o, c = rc.original, rc.corrected
        typer.echo(f"row {rc.row}: sentiment {o.sentiment} -> {c.sentiment}; topics "
                   f"{[t.id for t in o.topics]} -> {[t.id for t in c.topics]}; touchpoints {o.touchpoints} -> "
                   f"{c.touchpoints}; detractor {o.detractor} -> {c.detractor}")
        for x in rc.corrections:
            state = "active" if x.active else f"reverted by {x.reverted_by}"
            typer.echo(f"    #{x.id} {x.created_at:%Y-%m-%d %H:%M} {x.author} ({state}): {json.dumps(x.change)}")


def service_taxonomy() -> Any:
    from voce.models.spec import load_taxonomy_for

    return load_taxonomy_for(settings().analyzer_spec())
