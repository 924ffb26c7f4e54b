"""``voce finetune`` / ``python -m voce.training.finetune`` as one importable function: data, run, exports."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from voce.data.datasets import load_all, resolve_data_dir
from voce.training.finetune.config import FinetuneConfig
from voce.training.finetune.export import export_embeddings
from voce.training.finetune.loop import FinetuneResult, finetune
from voce.training.finetune.targets import load_split
from voce.training.slim import DATA_DIRNAME


def _say(msg: str) -> None:
    print(msg, flush=True)


def run_finetune(
    pack: Path,
    out: Path,
    cfg: FinetuneConfig,
    *,
    data: Path | None = None,
    embed_out: Path | None = None,
    embed_dtype: Literal["float32", "float16"] = "float32",
    progress: Callable[[str], None] = _say,
) -> FinetuneResult:
    """Fine-tune from the slim package ``pack`` into ``out``; with ``embed_out``, also embed every example text.

    ``data`` defaults to the package's ``data/`` copy, else ``$VOCE_TRAIN_DATA_DIR``.  The embeddings cover the
    calibration slice and dev rows too (``voce train --import-embeddings`` reads them back).
    """
    if data is None and (pack / DATA_DIRNAME).is_dir():
        data = pack / DATA_DIRNAME
    data_dir = resolve_data_dir(data)
    progress(f"data from {data_dir}")
    result = finetune(pack, load_split(data_dir, cfg), cfg, out=out, progress=progress)
    if embed_out is not None:  # every text, the calibration slice included
        every = [e for rows in load_all(data_dir).values() for e in rows]
        texts = sorted({e.text for e in every if e.text in result.tokens})
        export_embeddings(result.model, result.tokens, texts, embed_out, torch.device(cfg.device),
                          dtype=np.dtype(embed_dtype))  # fmt: skip
        progress(f"{len(texts)} embeddings written to {embed_out}")
    return result
