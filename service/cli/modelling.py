"""Modelling commands for data scientists: fine-tune the encoder, retrain the heads bundle, score a bundle."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from voce.service.cli.common import BundleOpt, CacheOpt, fail, say, settings

# `voce finetune`: the command lives beside the fine-tuning, because `python -m voce.training.finetune` runs it on
# the GPU machine without voce.service; importing it loads typer only (torch when it runs)
from voce.training.finetune.cli import finetune

__all__ = ["evaluate", "finetune", "train"]


def train(
    config: Annotated[Path | None, typer.Option(help="training config YAML/JSON (fields of TrainConfig)")] = None,
    data_dir: Annotated[Path | None, typer.Option(help="labelled data folder (default ../shared/data)")] = None,
    output: Annotated[Path | None, typer.Option(help="bundle folder to write")] = None,
    cache_dir: CacheOpt = None,
    import_embeddings: Annotated[
        list[Path] | None,
        typer.Option(help="npz parts from `voce.training.finetune --embed-out` (GPU pass over the texts) to reuse: "
                     "a file (repeat the option for several) or a folder, whose *.npz are all read"),
    ] = None,
) -> None:
    """Rebuild the heads bundle from the labelled data (seeded; config saved in the bundle)."""
    from voce.data.custom import CustomDataError
    from voce.models.taxonomy import TaxonomyError
    from voce.training.config import load_train_config
    from voce.training.train import train_from_config

    try:
        cfg = load_train_config(config, data_dir=data_dir, output=output)
        _, report = train_from_config(
            cfg, cache_dir=settings(cache_dir=cache_dir).cache_dir, import_embeddings=import_embeddings, progress=say
        )
    except (CustomDataError, TaxonomyError, FileNotFoundError) as exc:
        raise fail(str(exc)) from exc
    typer.echo(json.dumps(report["metrics"], indent=2))


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
    from voce.data.custom import CustomDataError
    from voce.eval.evaluate import labelled_report_renderables, run_eval

    s = settings(cache_dir=cache_dir, bundle=bundle)
    if out is None:
        out = Path("reports") / (f"eval_{data.stem}.json" if data else "dev_metrics.json")
    try:
        report = run_eval(
            s.bundle, data_dir=data_dir, cache_dir=s.cache_dir, out=out, data=data, taxonomy=taxonomy, progress=say
        )
    except CustomDataError as exc:
        raise fail(str(exc)) from exc
    if data is None:
        typer.echo(json.dumps(report["metrics"], indent=2))
        return
    from rich.console import Console

    console = Console()
    for part in labelled_report_renderables(report):
        console.print(part)
