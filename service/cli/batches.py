"""Batch commands: the same jobs as ``/v1/batches``, on the same database, through the same service
(:class:`voce.service.batches.service.BatchService`), so the CLI and the API cannot give different answers."""
from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, cast

import typer

from voce.service.cli.common import fail, say, settings

if TYPE_CHECKING:
    from voce.models.analyzer import Analyzer
    from voce.service.batches.service import BatchService
    from voce.service.batches.store import BatchStore
    from voce.service.privacy import PiiMode
    from voce.service.settings import Settings
    from voce.service.state import Engine, ModelFollower

batch_app = typer.Typer(help="Batches of comments stored in the database (same jobs as /v1/batches).", no_args_is_help=True)


def _service(s: Settings) -> BatchService:
    from voce.service.batches.service import BatchService

    return BatchService.from_settings(s)


def _engine(s: Settings, by: str) -> tuple[Engine, ModelFollower]:
    """The registry's active version loaded (the configured bundle adopted on a first start), and what keeps it
    current: the same :class:`~voce.service.state.ModelFollower` the API runs."""
    from voce.service.state import Engine, ModelFollower

    engine = Engine()
    follower = ModelFollower.from_settings(engine, s, by=by)
    follower.load_first()
    if engine.analyzer is None:
        raise fail(f"the model could not be loaded: {engine.error}")
    say(f"model {engine.version} (registry {follower.registry.root})")
    return engine, follower


def _analyzer(s: Settings) -> Analyzer:
    engine, _ = _engine(s, by="voce batch")
    assert engine.analyzer is not None
    return engine.analyzer


@contextmanager
def _batch_errors(batch_id: str | None = None) -> Iterator[None]:
    """The service's domain errors as ``error: ...`` and exit code 2."""
    from voce.service.batches.errors import BatchError, BatchNotFound

    try:
        yield
    except BatchNotFound as exc:
        raise fail(f"no batch {batch_id}" if batch_id else str(exc)) from exc
    except BatchError as exc:
        raise fail(str(exc)) from exc


def worker(
    threads: Annotated[int, typer.Option(help="batches processed in parallel by this process")] = 1,
    once: Annotated[bool, typer.Option(help="process what is queued, then exit")] = False,
) -> None:
    """Process queued batches beside the API (production: VOCE_WORKERS=0 on the API, N `voce worker` processes)."""
    import signal
    import threading

    from voce.service.batches.executor import build_executor
    from voce.service.batches.retention import RetentionTask
    from voce.service.privacy.logs import install as install_logging

    s = settings()
    install_logging(s.log_level)  # records redacted: no personal data in the worker's log either
    store = _service(s).store
    # the registry's active version; a promotion or rollback is followed (loaded beside, then swapped): a batch
    # running then finishes on the version it started with, the next one is claimed with the new version
    engine, follower = _engine(s, by="voce worker")
    ex = build_executor(s, store, lambda: engine.analyzer, threads=threads, name="worker",
                        spec=lambda: engine.spec or s.analyzer_spec())
    retention = RetentionTask(store, s.data_dir, s.retention_days, keep_uploads=s.keep_uploads, uploads=s.uploads())
    if once:
        n = ex.run_until_idle()
        retention.run_once()
        say(f"{n} batch(es) processed")
        return
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    ex.start()
    retention.start()
    follower.start_following()
    say(f"worker {ex.worker_prefix}: polling {s.resolved_database_url().split('@')[-1]} (Ctrl-C stops after the current chunk)")
    stop.wait()
    follower.stop()
    ex.stop()
    retention.stop()


@batch_app.command("submit")
def batch_submit(
    file: Annotated[Path, typer.Argument(help="CSV, XLSX or JSONL")],
    mapping: Annotated[str | None, typer.Option(help='JSON roles -> columns, e.g. {"text": "comment", "nps": "score"}')] = None,
    name: Annotated[str | None, typer.Option(help="batch name (default: file name)")] = None,
    wait: Annotated[bool, typer.Option(help="analyse it now in this process and wait for the end")] = False,
    pii_mode: Annotated[
        str | None,
        typer.Option(help="personal data stored as: redact (<EMAIL>), mask (m****@e******.com) or keep "
                          "(default: VOCE_PII_MODE)"),
    ] = None,
    tenant: Annotated[str, typer.Option(help="the tenant the batch belongs to (who may read it through the API)")] = (
        "default"
    ),
) -> None:
    """Queue a file for analysis (a running API or `voce worker` picks it up; --wait analyses it here)."""
    from voce.service.batches.service import Caller, parse_mapping
    from voce.service.privacy import PII_MODES

    if pii_mode is not None and pii_mode not in PII_MODES:
        raise fail(f"--pii-mode must be one of {', '.join(PII_MODES)}")
    s = settings()
    batches = _service(s)
    with _batch_errors():
        created = batches.submit_file(
            file, mapping=parse_mapping(mapping), name=name, pii_mode=cast("PiiMode | None", pii_mode),
            caller=Caller(tenant=tenant.strip()[:128] or "default"),
        )
    typer.echo(created.id)
    if wait:
        _run_here(s, batches.store, created.id)


def _run_here(s: Settings, store: BatchStore, batch_id: str) -> None:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from voce.service.batches.executor import new_worker_name
    from voce.service.batches.runner import BatchRunner, RunnerConfig

    config = RunnerConfig.from_settings(s)
    analyzer = _analyzer(s)
    wid = new_worker_name()
    batch = store.claim(wid, config.lease_seconds, batch_id=batch_id)
    if batch is None:
        say("another worker holds this batch; follow it with `voce batch status`")
        return
    with Progress(TextColumn("analysing"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn()) as bar:
        task = bar.add_task("rows", total=None)

        def tick(done: int) -> None:
            b = store.get(batch_id)
            bar.update(task, completed=done, total=b.total_rows if b else None)

        status = BatchRunner(store, analyzer, wid, config, on_chunk=tick).run(batch)
    say(f"batch {batch_id}: {status}")


@batch_app.command("list")
def batch_list() -> None:
    """Batches, newest first."""
    for st in _service(settings()).list_batches().batches:
        typer.echo(f"{st.id}  {st.status:8} {st.rows_done:>7}/{st.rows_total or '?':<7} errors {st.rows_error:<5} {st.name}")


@batch_app.command("status")
def batch_status_cmd(batch_id: str) -> None:
    """Status, progress and ETA of one batch (JSON)."""
    with _batch_errors(batch_id):
        status = _service(settings()).status(batch_id)
    typer.echo(status.model_dump_json(indent=2))


@batch_app.command("cancel")
def batch_cancel_cmd(batch_id: str) -> None:
    """Cancel a queued or running batch (a running one stops at its next chunk; rows analysed so far are kept)."""
    with _batch_errors(batch_id):
        status = _service(settings()).cancel(batch_id)
    stopping = status.cancel_requested and status.status == "running"
    typer.echo(f"{status.id}  {status.status}{' (stopping at the next chunk)' if stopping else ''}")


@batch_app.command("export")
def batch_export(
    batch_id: str,
    output: Annotated[Path, typer.Option("--output", "-o", help="file to write")],
    format: Annotated[str, typer.Option(help="jsonl | csv | xlsx (default: from the output's extension)")] = "",
    lang: Annotated[
        str | None,
        typer.Option(help="it | en: the export for people (as the page's buttons give it: labels in this language with "
                          "the ids beside, a column per topic and touchpoint, a summary sheet in XLSX; CSV in the "
                          "upload's delimiter and encoding); omitted: the scripts' format"),
    ] = None,
    topic: Annotated[list[str] | None, typer.Option(help="with --lang: only rows with this topic (repeatable)")] = None,
    segment: Annotated[list[str] | None, typer.Option(help="with --lang: column:value (repeatable)")] = None,
    period: Annotated[str | None, typer.Option(help="with --lang: 2026-03, 2026-W09 or 2026-03-05")] = None,
) -> None:
    """Write a batch's results with the original columns."""
    from voce.service.batches.service import ExportFormat

    batches = _service(settings())
    with _batch_errors(batch_id):
        batches.get(batch_id)
    fmt = format or output.suffix.lstrip(".").lower()
    if fmt not in ("jsonl", "csv", "xlsx"):
        raise fail("--format must be jsonl, csv or xlsx")
    if lang is not None or topic or segment or period:
        _people_export(batches, batch_id, fmt, output, lang or "it", topic, segment, period)
        return
    export = batches.export(batch_id, cast(ExportFormat, fmt), folder=output.parent)
    if export.path is not None:
        export.path.replace(output)
    else:
        with output.open("wb") as fh:
            for chunk in export.chunks or ():
                fh.write(chunk)
    say(f"{output} written")


def _people_export(
    batches: BatchService, batch_id: str, fmt: str, output: Path, lang: str, topic: list[str] | None,
    segment: list[str] | None, period: str | None,
) -> None:
    """``voce batch export --lang``: the page's export, named by the taxonomy the batch was scored with."""
    from voce.models.spec import load_taxonomy_for
    from voce.service.batches import exports
    from voce.service.batches.service import make_filters
    from voce.service.learning.taxonomies import TaxonomyStore, batch_taxonomy

    if lang not in ("it", "en"):
        raise fail("--lang must be it or en")
    if fmt not in ("csv", "xlsx"):
        raise fail("the export for people is csv or xlsx")
    s = settings()
    with _batch_errors(batch_id):
        selection = exports.Selection(make_filters(topic=topic, segment=segment, period=period))
        taxonomy = batch_taxonomy(TaxonomyStore(batches.store.sessions), batches.get(batch_id),
                                  load_taxonomy_for(s.analyzer_spec()))
        out = exports.people_export(batches, batch_id, fmt, selection=selection, language=lang,  # type: ignore[arg-type]
                                    taxonomy=taxonomy, folder=output.parent)
    if out.path is not None:
        out.path.replace(output)
    else:
        with output.open("wb") as fh:
            for chunk in out.chunks or ():
                fh.write(chunk)
    say(f"{output} written")


@batch_app.command("kpis")
def batch_kpis_cmd(
    batch_id: str,
    topic: Annotated[list[str] | None, typer.Option(help="a topic id (repeatable: any of them)")] = None,
    touchpoint: Annotated[list[str] | None, typer.Option(help="a touchpoint id found in the text (repeatable)")] = None,
    channel: Annotated[
        list[str] | None, typer.Option(help="where the feedback was collected, as in by_channel (repeatable)")
    ] = None,
    language: Annotated[list[str] | None, typer.Option(help="a language code (repeatable)")] = None,
    segment: Annotated[list[str] | None, typer.Option(help="column:value (repeatable)")] = None,
    period: Annotated[str | None, typer.Option(help="2026-03, 2026-W09 or 2026-03-05")] = None,
) -> None:
    """NPS/CSAT/CES, drivers and trends of a batch (JSON, same as GET /v1/batches/{id}/kpis)."""
    from voce.service.batches.service import make_filters

    batches = _service(settings())
    with _batch_errors(batch_id):
        filters = make_filters(
            touchpoint=touchpoint, channel=channel, topic=topic, language=language, segment=segment, period=period
        )
        report = batches.kpis(batch_id, filters)
    typer.echo(json.dumps(report, indent=2, ensure_ascii=False))


@batch_app.command("compare")
def batch_compare_cmd(
    batch_id: str,
    b_batch: Annotated[str | None, typer.Option(help="side B's batch (default: this one)")] = None,
    a_period: Annotated[str | None, typer.Option(help="side A's period: 2026-03, 2026-W09 or 2026-03-05")] = None,
    b_period: Annotated[str | None, typer.Option(help="side B's period")] = None,
    topic: Annotated[list[str] | None, typer.Option(help="both sides: a topic id (repeatable)")] = None,
    touchpoint: Annotated[list[str] | None, typer.Option(help="both sides: a touchpoint id (repeatable)")] = None,
    channel: Annotated[list[str] | None, typer.Option(help="both sides: a channel (repeatable)")] = None,
    language: Annotated[list[str] | None, typer.Option(help="both sides: a language code (repeatable)")] = None,
    segment: Annotated[list[str] | None, typer.Option(help="both sides: column:value (repeatable)")] = None,
) -> None:
    """Side B against side A with intervals and BH significance (JSON, same as GET /v1/batches/{id}/compare)."""
    from voce.service.batches.service import make_filters

    batches = _service(settings())
    with _batch_errors(batch_id):
        filters = make_filters(touchpoint=touchpoint, channel=channel, topic=topic, language=language, segment=segment)
        report = batches.compare(batch_id, filters, b_batch=b_batch, a_period=a_period, b_period=b_period)
    typer.echo(json.dumps(report, indent=2, ensure_ascii=False))


@batch_app.command("purge")
def batch_purge(
    older_than: Annotated[
        float | None, typer.Option(help="days; default VOCE_RETENTION_DAYS (the setting the API and workers apply hourly)")
    ] = None,
    dry_run: Annotated[bool, typer.Option(help="list what would be erased, erase nothing")] = False,
) -> None:
    """Erase finished batches created more than N days ago: rows, embeddings, discovered topics, files."""
    from voce.service.batches.retention import erase, expired

    s = settings()
    days = older_than if older_than is not None else s.retention_days
    if days is None or days <= 0:
        raise fail("give --older-than DAYS or set VOCE_RETENTION_DAYS")
    store = _service(s).store
    found = expired(store, days)
    for b in found:
        typer.echo(f"{b.id}  {b.created_at:%Y-%m-%d %H:%M}  {b.status:8} {b.name}")
        if not dry_run:
            erase(store, b, s.data_dir, s.uploads())
    say(f"{len(found)} batch(es) older than {days:g} days {'would be ' if dry_run else ''}erased")
