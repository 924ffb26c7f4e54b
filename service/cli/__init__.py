"""The ``voce`` command line: one Typer app; each command is a few lines over an importable function.

Commands are grouped by role, one module each: :mod:`.analysis` (serve, setup, analyze, check),
:mod:`.batches` (batch ..., worker), :mod:`.keys` (keys create|list|revoke), :mod:`.modelling` (finetune, train,
eval) and :mod:`.models` (models list|show|register|promote|rollback).  Heavy imports happen inside
the commands, so ``voce --help`` stays fast.
"""
from __future__ import annotations

import typer

from voce.service.cli import analysis, batches, bench, keys, learning, modelling, models

app = typer.Typer(
    name="voce",
    help="Voce: offline Italian/English customer-feedback analysis (sentiment, topics, touchpoints, detractors).",
    no_args_is_help=True,
    add_completion=False,
)
app.command()(analysis.serve)
app.command()(analysis.setup)
app.command()(analysis.analyze)
app.add_typer(analysis.check_app, name="check")
app.command()(modelling.finetune)
app.command()(modelling.train)
app.command("eval")(modelling.evaluate)
app.command()(batches.worker)
app.add_typer(batches.batch_app, name="batch")
app.add_typer(keys.keys_app, name="keys")
app.add_typer(learning.taxonomy_app, name="taxonomy")
app.add_typer(learning.corrections_app, name="corrections")
app.add_typer(models.models_app, name="models")
app.command()(bench.bench)


def main() -> None:  # console-script entry point
    app()
