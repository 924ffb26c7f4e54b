"""Modelling commands for data scientists: fine-tune the encoder, retrain the heads bundle, score a bundle."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from voce.service.cli.common import BundleOpt, CacheOpt, PrecisionOpt, StudentOpt, fail, say, settings

# `voce finetune`: the command lives beside the fine-tuning, because `python -m voce.training.finetune` runs it on
# the GPU machine without voce.service; importing it loads typer only (torch when it runs)
from voce.training.finetune.cli import finetune

__all__ = ["evaluate", "finetune", "train"]


def _data_help(data_dir: Path | None) -> str:
    """One paragraph for a missing labelled-data folder (a fresh clone has no ../shared/data)."""
    from voce.data.datasets import DATA_DIR_ENV, resolve_data_dir

    where = resolve_data_dir(data_dir)
    return (
        f"the labelled public data is not in {where}. Training on it needs the five public datasets there "
        f"(see README 'Data and licences'): point to them with data_dir: in the config, --data-dir, or "
        f"{DATA_DIR_ENV}=/path/to/data (one setting, the same for voce train and voce eval). To train on your own "
        "labelled files only, set include_public_data: false and list them under extra_data: (paths relative to "
        "the config file)."
    )


def train(
    config: Annotated[Path | None, typer.Option(help="training config YAML/JSON (fields of TrainConfig)")] = None,
    data_dir: Annotated[
        Path | None, typer.Option(help="labelled public data folder (default: VOCE_TRAIN_DATA_DIR, else ../shared/data)")
    ] = None,
    output: Annotated[Path | None, typer.Option(help="bundle folder to write")] = None,
    cache_dir: CacheOpt = None,
    import_embeddings: Annotated[
        list[Path] | None,
        typer.Option(help="npz parts from `voce.training.finetune --embed-out` (GPU pass over the texts) to reuse: "
                     "a file (repeat the option for several) or a folder, whose *.npz are all read"),
    ] = None,
    check: Annotated[
        bool, typer.Option("--check", help="only check the data: rows per label after the dev and calibration splits, "
                           "which heads will be trained and which not (and why); fits nothing")
    ] = False,
    allow_regression: Annotated[
        bool, typer.Option("--allow-regression", help="write the bundle even when it is worse than its parent on a task")
    ] = False,
    report: Annotated[Path | None, typer.Option(help="also write the full training report (JSON) here")] = None,
) -> None:
    """Retrain the heads bundle on the labelled data, building on a parent bundle (default: the shipped one).

    Ends with a regression report against the parent on every task; a bundle that is worse on a task (outside
    bootstrap noise) is not written without --allow-regression.
    """
    from pydantic import ValidationError

    from voce.data.custom import CustomDataError
    from voce.models.taxonomy import TaxonomyError
    from voce.training.config import load_train_config
    from voce.training.train import RegressionRefused, train_from_config

    try:
        cfg = load_train_config(config, data_dir=data_dir, output=output)
    except ValidationError as exc:
        raise fail(f"{config}: " + "; ".join(f"{'.'.join(map(str, e['loc'])) or 'config'}: {e['msg']}"
                                             for e in exc.errors())) from exc  # fmt: skip
    except (ValueError, FileNotFoundError, OSError) as exc:
        raise fail(str(exc)) from exc
    if cfg.include_public_data:
        from voce.data.datasets import resolve_data_dir

        if not resolve_data_dir(cfg.data_dir).is_dir():
            raise fail(_data_help(cfg.data_dir))
    try:
        if check:
            _check(cfg)
            return
        from voce.training.tracking import track_run

        with track_run("train", cfg.output.name) as run:
            _, result = train_from_config(
                cfg, cache_dir=settings(cache_dir=cache_dir).cache_dir, import_embeddings=import_embeddings,
                progress=say, allow_regression=allow_regression,
            )
            run.log_train(cfg, result, cfg.output)
    except RegressionRefused as exc:
        if report:
            _write(report, exc.report)
        raise fail(str(exc), code=3) from exc
    except (CustomDataError, TaxonomyError, FileNotFoundError) as exc:
        msg = str(exc)
        if isinstance(exc, FileNotFoundError) and cfg.data_dir is None and "shared" in msg:
            msg = _data_help(cfg.data_dir)
        raise fail(msg) from exc
    except ValueError as exc:  # a head that cannot be fitted (one class only, no rows)
        raise fail(str(exc)) from exc
    if report:
        _write(report, result)
    typer.echo(json.dumps(result["metrics"], indent=2))


def _write(path: Path, payload: dict) -> None:  # type: ignore[type-arg]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, ensure_ascii=False, default=str) + "\n", "utf-8")
    say(f"report written to {path}")


def _check(cfg) -> None:  # type: ignore[no-untyped-def]
    """``voce train --check``: the data check, without embedding anything."""
    from voce.models.bundle import VoceBundle
    from voce.training.check import check_report, check_summary
    from voce.training.train import load_training_data

    parent = VoceBundle.load(cfg.parent) if cfg.parent is not None else None
    data = load_training_data(cfg, progress=say)
    train_ex, dev_ex = cfg.split().split(data.examples)
    rep = check_report(cfg, train_ex, dev_ex, parent=parent)
    for line in check_summary(rep):
        typer.echo(line)
    if data.held_apart:
        typer.echo("  held apart for evaluation: " + ", ".join(f"{k} {len(v)}" for k, v in data.held_apart.items()))
    if rep["problems"]:
        raise typer.Exit(1)


def evaluate(
    bundle: BundleOpt = None,
    data: Annotated[
        Path | None,
        typer.Option(help="your own labelled CSV/JSONL (text + sentiment/topics/nps/detractor/stars); scores every row"),
    ] = None,
    data_dir: Annotated[
        Path | None, typer.Option(help="labelled public data folder (default: VOCE_TRAIN_DATA_DIR, else ../shared/data)")
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(help="JSON report to write (default reports/dev_metrics.json; with --data reports/eval_<file>.json)"),
    ] = None,
    taxonomy: Annotated[Path | None, typer.Option(help="taxonomy YAML replacing the bundle's")] = None,
    cache_dir: CacheOpt = None,
    compare: Annotated[
        tuple[Path, Path] | None,
        typer.Option(help="ACTIVE CANDIDATE: compare two bundles task by task on the same rows (dev split, real-text "
                     "dev set, touchpoint checks and --data), paired bootstrap intervals and a verdict"),
    ] = None,
    predictions: Annotated[
        Path | None, typer.Option(help="with --data: write every row's probabilities (sentiment, each topic, "
                                  "detractor) as JSONL here")
    ] = None,
    thresholds: Annotated[
        bool, typer.Option("--thresholds", help="with --data: print precision/recall per threshold for each topic")
    ] = False,
    save_thresholds: Annotated[
        Path | None, typer.Option(help="with --data: write each topic's F1-best threshold on the file into this "
                                  "bundle folder (a copy of --bundle; the analyzer then uses them)")
    ] = None,
    threshold: Annotated[
        list[str] | None, typer.Option(help="with --save-thresholds: TOPIC=VALUE, your own choice for a topic "
                                       "(repeat the option); the others take their F1-best threshold")
    ] = None,
    precision: PrecisionOpt = None,
    student: StudentOpt = None,
) -> None:
    """Score a bundle on the dev split, or on your own labelled file (--data), or compare two bundles (--compare)."""
    from voce.data.custom import CustomDataError
    from voce.eval.evaluate import labelled_report_renderables, run_eval

    s = settings(cache_dir=cache_dir, bundle=bundle, encoder_precision=precision, encoder_student=student)
    if compare is not None:
        from voce.eval.compare import comparison_table, run_compare

        try:
            rep = run_compare(compare[0], compare[1], data=data, data_dir=data_dir, cache_dir=s.cache_dir,
                              taxonomy=taxonomy, progress=say)  # fmt: skip
        except (CustomDataError, FileNotFoundError) as exc:
            raise fail(str(exc)) from exc
        import sys

        from rich.console import Console

        # piped or redirected: wide enough for the eight columns (a terminal keeps its own width)
        Console(width=None if sys.stdout.isatty() else 160).print(comparison_table(rep))
        if out:
            _write(out, rep)
        from voce.training.tracking import track_run

        with track_run("compare", compare[1].name) as run:
            run.log_compare(rep)
        return
    if out is None:
        out = Path("reports") / (f"eval_{data.stem}.json" if data else "dev_metrics.json")
    if (predictions or save_thresholds or thresholds) and data is None:
        raise fail("--predictions, --thresholds and --save-thresholds need --data (a labelled file)")
    chosen: dict[str, float] = {}
    for item in threshold or []:
        tid, _, value = item.partition("=")
        try:
            chosen[tid.strip()] = float(value)
        except ValueError:
            raise fail(f"--threshold {item!r}: expected TOPIC=VALUE, e.g. staff=0.4") from None
    try:
        report = run_eval(
            s.bundle, data_dir=data_dir, cache_dir=s.cache_dir, out=out, data=data, taxonomy=taxonomy, progress=say,
            predictions=predictions, save_thresholds=save_thresholds, thresholds=chosen,
            precision=s.encoder_precision, student=s.encoder_student,
        )
    except (CustomDataError, ValueError) as exc:
        raise fail(str(exc)) from exc
    except FileNotFoundError as exc:
        raise fail(_data_help(data_dir) if data is None else str(exc)) from exc
    from voce.training.tracking import track_run

    with track_run("eval", (s.bundle or Path("default")).name) as run:
        run.log_eval(report, out)
    if data is None:
        typer.echo(json.dumps(report["metrics"], indent=2))
        return
    from rich.console import Console

    console = Console()
    for part in labelled_report_renderables(report, thresholds=thresholds):
        console.print(part)
