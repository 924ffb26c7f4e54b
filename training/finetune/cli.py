"""The fine-tuning command, registered as ``voce finetune`` and run by ``python -m voce.training.finetune``.

Defined here rather than in :mod:`voce.service.cli` so the GPU machine's entry point imports nothing of the
serving stack; this module imports only typer, and the run's modules (torch, peft) load when it runs.
"""
from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer


class Device(StrEnum):
    cuda = "cuda"
    cpu = "cpu"


class EmbedDtype(StrEnum):
    float32 = "float32"
    float16 = "float16"


def finetune(
    pack: Annotated[Path, typer.Option(help="slim package folder (python -m voce.training.slim)")],
    out: Annotated[Path, typer.Option(help="where adapter + config + log are written")],
    config: Annotated[Path | None, typer.Option(help="YAML/JSON file of FinetuneConfig fields")] = None,
    data: Annotated[
        Path | None, typer.Option(help="labelled data folder (default: the package's data/ copy, else $VOCE_TRAIN_DATA_DIR)")
    ] = None,
    epochs: Annotated[int | None, typer.Option(help="passes over the training rows (default 3)")] = None,
    device: Annotated[Device | None, typer.Option(help="default cuda")] = None,
    max_examples: Annotated[int | None, typer.Option(help="cap per dataset on train and dev (smoke runs)")] = None,
    max_steps: Annotated[int | None, typer.Option(help="stop after this many steps (smoke runs, timing)")] = None,
    batch_size: Annotated[int | None, typer.Option(help="rows per step (default 64)")] = None,
    embed_out: Annotated[
        Path | None, typer.Option(help="also write embeddings of every example text with the tuned encoder (npz cache)")
    ] = None,
    embed_dtype: Annotated[
        EmbedDtype, typer.Option(help="dtype of the --embed-out vectors: float16 halves the files (import casts back)")
    ] = EmbedDtype.float32,
) -> None:
    """Multi-task LoRA fine-tuning of the encoder from a slim package (on the GPU machine, or on CPU)."""
    from voce.training.finetune.config import load_finetune_config
    from voce.training.finetune.run import run_finetune

    try:
        cfg = load_finetune_config(config, epochs=epochs, device=device.value if device else None,
                                   max_examples=max_examples, max_steps=max_steps, batch_size=batch_size)  # fmt: skip
    except (ValueError, FileNotFoundError) as exc:  # pydantic's ValidationError is a ValueError
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    run_finetune(pack, out, cfg, data=data, embed_out=embed_out, embed_dtype=embed_dtype.value)


def main() -> None:
    """``python -m voce.training.finetune``."""
    typer.run(finetune)
