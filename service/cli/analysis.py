"""Analysis commands: run the API, prepare the model, analyse a file, run the check sets."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from voce.service.cli.common import BackendOpt, BundleOpt, CacheOpt, EncoderOpt, PrecisionOpt, StudentOpt, fail, say, settings

check_app = typer.Typer(help="Hand-made check sets run through the served analyzer (JSON report).", no_args_is_help=True)


def serve(
    host: Annotated[str | None, typer.Option(help="bind address (default 127.0.0.1)")] = None,
    port: Annotated[int | None, typer.Option(help="port (default 8000)")] = None,
    encoder_backend: BackendOpt = None,
    encoder: EncoderOpt = None,
    bundle: BundleOpt = None,
    taxonomy: Annotated[Path | None, typer.Option(help="taxonomy YAML replacing the default")] = None,
    cache_dir: CacheOpt = None,
    precision: PrecisionOpt = None,
    student: StudentOpt = None,
) -> None:
    """Run the HTTP API (OpenAPI docs at /docs)."""
    import uvicorn

    from voce.service.app import create_app
    from voce.service.privacy.logs import install as install_logging

    s = settings(
        host=host, port=port, encoder_backend=encoder_backend, encoder=encoder, bundle=bundle,
        taxonomy=taxonomy, cache_dir=cache_dir, encoder_precision=precision, encoder_student=student,
    )
    # logs never hold personal data: records redacted, access lines without their query string (privacy.logs)
    config = install_logging(s.log_level)
    uvicorn.run(create_app(s), host=s.host, port=s.port, log_level=s.log_level, log_config=config)


def setup(
    cache_dir: CacheOpt = None, encoder_backend: BackendOpt = None, encoder: EncoderOpt = None, bundle: BundleOpt = None,
    precision: PrecisionOpt = None,
    student: StudentOpt = None,
) -> None:
    """Prepare exactly what `voce serve` loads: convert + verify e5, merge the bundle's adapter, export ONNX; idempotent."""
    from voce.models.spec import load_analyzer

    s = settings(cache_dir=cache_dir, encoder_backend=encoder_backend, encoder=encoder, bundle=bundle,
                 encoder_precision=precision, encoder_student=student)
    analyzer = load_analyzer(s.analyzer_spec(), progress=say)
    analyzer.warm_up()
    say(f"ready: {analyzer.encoder.name} + bundle {analyzer.bundle.version} (cache {s.cache_dir})")


def analyze(
    input: Annotated[Path, typer.Argument(help="JSONL (id, text, kind, language, channel, turns) or CSV with a 'text' column")],
    output: Annotated[Path, typer.Option("--output", "-o", help="JSONL file to write")],
    taxonomy: Annotated[Path | None, typer.Option(help="taxonomy YAML replacing the default")] = None,
    batch_size: Annotated[int, typer.Option(help="documents per encoder batch")] = 32,
    encoder_backend: BackendOpt = None,
    encoder: EncoderOpt = None,
    bundle: BundleOpt = None,
    cache_dir: CacheOpt = None,
    precision: PrecisionOpt = None,
    student: StudentOpt = None,
) -> None:
    """Analyse a file of comments/chats and write one JSON result per line."""
    from voce.service.batch_io import InputError, analyze_file

    s = settings(encoder_backend=encoder_backend, encoder=encoder, bundle=bundle, cache_dir=cache_dir, taxonomy=taxonomy,
                 encoder_precision=precision, encoder_student=student)
    try:
        n_ok, n_err = analyze_file(input, output, spec=s.analyzer_spec(), batch_size=batch_size, progress=say)
    except InputError as exc:
        raise fail(str(exc)) from exc
    say(f"{n_ok} documents analysed, {n_err} errors -> {output}")


OutOpt = Annotated[Path | None, typer.Option("--out", help="JSON report to write")]


@check_app.command("touchpoints")
def check_touchpoints(bundle: BundleOpt = None, out: OutOpt = None, cache_dir: CacheOpt = None) -> None:
    """The 32 hand-written IT/EN touchpoint pairs: a regression guard after any fine-tune."""
    from voce.eval.checksets import write_report
    from voce.eval.touchpoints import load_checks, run_touchpoints
    from voce.models.spec import load_analyzer

    analyzer = load_analyzer(settings(bundle=bundle, cache_dir=cache_dir).analyzer_spec(), progress=say)
    report = run_touchpoints(analyzer, load_checks())
    report["bundle"] = analyzer.bundle.version
    out = out or Path("reports/touchpoints.json")
    report["command"] = f"voce check touchpoints --out {out}" + (f" --bundle {bundle}" if bundle else "")
    write_report(out, report, quiet=("misses",))


@check_app.command("consistency")
def check_consistency(bundle: BundleOpt = None, out: OutOpt = None, cache_dir: CacheOpt = None) -> None:
    """Italian↔English agreement on 40 hand-translated pairs, plus short answers and misspellings."""
    from voce.eval.checksets import write_report
    from voce.eval.consistency import load_pairs, run_consistency
    from voce.models.spec import load_analyzer

    analyzer = load_analyzer(settings(bundle=bundle, cache_dir=cache_dir).analyzer_spec(), progress=say)
    report = run_consistency(analyzer, load_pairs())
    out = out or Path("reports/consistency.json")
    report["command"] = f"voce check consistency --out {out}" + (f" --bundle {bundle}" if bundle else "")
    write_report(out, report, quiet=("short_answers", "misspellings", "disagreements"))


@check_app.command("realcx")
def check_realcx(
    bundle: BundleOpt = None,
    out: OutOpt = None,
    cache_dir: CacheOpt = None,
    shots: Annotated[str, typer.Option(help="examples per stage for the few-shot curve, comma-separated")] = "0,4,16,64",
) -> None:
    """Touchpoints, primary topics and the journey taxonomies on the annotated real texts' dev split (+ few-shot curve)."""
    from voce.data.realcx import load_realcx
    from voce.eval.checksets import write_report
    from voce.eval.realcx import evaluate_corpus, evaluate_journeys
    from voce.models.spec import load_analyzer

    try:
        rows = load_realcx()
    except (FileNotFoundError, ValueError) as exc:
        raise fail(f"the annotated corpus's texts are not available: {exc}") from exc
    analyzer = load_analyzer(settings(bundle=bundle, cache_dir=cache_dir).analyzer_spec(), progress=say)
    metrics, details = evaluate_corpus(analyzer, rows, progress=say)
    journeys = evaluate_journeys(analyzer, rows, shots=[int(k) for k in shots.split(",") if k.strip()], progress=say)
    out = out or Path("reports/realcx.json")
    report = {"bundle": analyzer.bundle.version, "metrics": metrics, **details, "journeys": journeys,
              "command": f"voce check realcx --out {out}" + (f" --bundle {bundle}" if bundle else "")}  # fmt: skip
    write_report(out, report, quiet=("touchpoints", "primary_topic", "journeys"))
