"""Batch commands: the same jobs as ``/v1/batches``, on the same database."""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Annotated

import typer

from voce.service.cli.common import say, settings

batch_app = typer.Typer(help="Batches of comments stored in the database (same jobs as /v1/batches).", no_args_is_help=True)


def _store(s):  # noqa: ANN001, ANN202 - lazily imported types
    from voce.service.db import open_database
    from voce.service.jobs import BatchStore

    return BatchStore(open_database(s.resolved_database_url()))


def _analyzer(s):  # noqa: ANN001, ANN202
    from voce.models.spec import load_analyzer

    a = load_analyzer(s.analyzer_spec(), progress=say)
    a.warm_up()
    return a


def worker(
    threads: Annotated[int, typer.Option(help="batches processed in parallel by this process")] = 1,
    once: Annotated[bool, typer.Option(help="process what is queued, then exit")] = False,
) -> None:
    """Process queued batches beside the API (production: VOCE_WORKERS=0 on the API, N `voce worker` processes)."""
    import signal
    import threading

    from voce.service.app import runner_config
    from voce.service.jobs import LocalExecutor

    s = settings()
    logging.basicConfig(level=s.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    store = _store(s)
    analyzer = _analyzer(s)
    ex = LocalExecutor(store, lambda: analyzer, runner_config(s), threads=threads, name="worker")
    if once:
        n = ex.run_until_idle()
        say(f"{n} batch(es) processed")
        return
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    ex.start()
    say(f"worker {ex.worker_prefix}: polling {s.resolved_database_url().split('@')[-1]} (Ctrl-C stops after the current chunk)")
    stop.wait()
    ex.stop()


@batch_app.command("submit")
def batch_submit(
    file: Annotated[Path, typer.Argument(help="CSV, XLSX or JSONL")],
    mapping: Annotated[str | None, typer.Option(help='JSON roles -> columns, e.g. {"text": "comment", "nps": "score"}')] = None,
    name: Annotated[str | None, typer.Option(help="batch name (default: file name)")] = None,
    wait: Annotated[bool, typer.Option(help="analyse it now in this process and wait for the end")] = False,
) -> None:
    """Queue a file for analysis (a running API or `voce worker` picks it up; --wait analyses it here)."""
    import shutil
    import uuid

    from voce.service.jobs import submit_upload
    from voce.service.uploads import ColumnMapping, UploadError

    s = settings()
    store = _store(s)
    if not file.is_file():
        say(f"error: {file} does not exist")
        raise typer.Exit(2)
    try:
        cols = ColumnMapping.model_validate_json(mapping) if mapping else None
    except ValueError as exc:
        say(f"error: mapping: {exc}")
        raise typer.Exit(2) from exc
    batch_id = uuid.uuid4().hex
    dest = s.data_dir / "uploads" / batch_id
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(file, dest)
    try:
        batch, _ = submit_upload(store, dest, filename=file.name, mapping=cols, batch_id=batch_id, name=name)
    except UploadError as exc:
        say(f"error: {exc}")
        raise typer.Exit(2) from exc
    typer.echo(batch.id)
    if wait:
        _run_here(s, store, batch.id)


def _run_here(s, store, batch_id: str) -> None:  # noqa: ANN001
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from voce.service.app import runner_config
    from voce.service.jobs import BatchRunner, new_worker_name

    analyzer = _analyzer(s)
    wid = new_worker_name()
    batch = store.claim(wid, s.worker_lease_seconds, batch_id=batch_id)
    if batch is None:
        say("another worker holds this batch; follow it with `voce batch status`")
        return
    with Progress(TextColumn("analysing"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn()) as bar:
        task = bar.add_task("rows", total=None)

        def tick(done: int) -> None:
            b = store.get(batch_id)
            bar.update(task, completed=done, total=b.total_rows if b else None)

        status = BatchRunner(store, analyzer, wid, runner_config(s), on_chunk=tick).run(batch)
    say(f"batch {batch_id}: {status}")


@batch_app.command("list")
def batch_list() -> None:
    """Batches, newest first."""
    from voce.service.batches_api import batch_status

    for b in _store(settings()).list_batches():
        st = batch_status(b)
        typer.echo(f"{st.id}  {st.status:8} {st.rows_done:>7}/{st.rows_total or '?':<7} errors {st.rows_error:<5} {st.name}")


@batch_app.command("status")
def batch_status_cmd(batch_id: str) -> None:
    """Status, progress and ETA of one batch (JSON)."""
    from voce.service.batches_api import batch_status

    b = _store(settings()).get(batch_id)
    if b is None:
        say(f"error: no batch {batch_id}")
        raise typer.Exit(2)
    typer.echo(batch_status(b).model_dump_json(indent=2))


@batch_app.command("export")
def batch_export(
    batch_id: str,
    output: Annotated[Path, typer.Option("--output", "-o", help="file to write")],
    format: Annotated[str, typer.Option(help="jsonl | csv | xlsx (default: from the output's extension)")] = "",
) -> None:
    """Write a batch's results with the original columns."""
    from voce.service import exports
    from voce.service.batches_api import _original_columns

    s = settings()
    store = _store(s)
    b = store.get(batch_id)
    if b is None:
        say(f"error: no batch {batch_id}")
        raise typer.Exit(2)
    fmt = format or output.suffix.lstrip(".").lower()
    if fmt not in ("jsonl", "csv", "xlsx"):
        say("error: --format must be jsonl, csv or xlsx")
        raise typer.Exit(2)
    if fmt == "xlsx":
        tmp = exports.write_xlsx(store, batch_id, _original_columns(b), output.parent)
        tmp.replace(output)
    else:
        chunks = exports.jsonl_lines(store, batch_id) if fmt == "jsonl" else exports.csv_chunks(
            store, batch_id, _original_columns(b)
        )
        with output.open("wb") as fh:
            for c in chunks:
                fh.write(c)
    say(f"{output} written")


@batch_app.command("kpis")
def batch_kpis_cmd(
    batch_id: str,
    topic: Annotated[str | None, typer.Option()] = None,
    touchpoint: Annotated[str | None, typer.Option()] = None,
    language: Annotated[str | None, typer.Option()] = None,
    segment: Annotated[list[str] | None, typer.Option(help="column:value (repeatable)")] = None,
    period: Annotated[str | None, typer.Option(help="2026-03, 2026-W09 or 2026-03-05")] = None,
) -> None:
    """NPS/CSAT/CES, drivers and trends of a batch (JSON, same as GET /v1/batches/{id}/kpis)."""
    from voce.models.taxonomy import default_taxonomy
    from voce.service import analytics
    from voce.service.batches_api import _filters, load_facts

    s = settings()
    store = _store(s)
    if store.get(batch_id) is None:
        say(f"error: no batch {batch_id}")
        raise typer.Exit(2)
    report = analytics.batch_kpis(
        load_facts(store, batch_id), _filters(touchpoint, topic, language, segment, period, None, None),
        labels=default_taxonomy().labels(),
    )
    typer.echo(json.dumps({"batch_id": batch_id, **report.model_dump(mode="json")}, indent=2, ensure_ascii=False))


