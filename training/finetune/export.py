"""What a run leaves behind: the LoRA adapter (Voce's adapter format), its config and log, and embeddings.

The adapter is all that ships (:func:`voce.models.encoders.adapter.merge_adapter` folds it into the base at load
time); the embeddings let the CPU head-fitting step (``voce train --import-embeddings``) reuse the GPU's pass
over the training texts.
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from voce.models.encoders.adapter import write_adapter
from voce.training.finetune.config import ADAPTER_FILENAME, CONFIG_FILENAME, LOG_FILENAME, FinetuneConfig
from voce.training.finetune.encoder import mean_pool
from voce.training.finetune.sampler import pad_batch
from voce.training.slim import SlimTokens


def adapter_pairs(model: nn.Module) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], float]:
    """LoRA (A, B) per adapted weight, keyed by the FULL BertModel parameter name, and the scaling.

    peft names modules ``base_model.model.<BertModel module>``; stripping that
    prefix and appending ``.weight`` gives the name in the converted checkpoint.
    """
    from peft.tuners.lora import LoraLayer

    pairs: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    scalings: set[float] = set()
    for name, module in model.named_modules():
        if not isinstance(module, LoraLayer) or "default" not in module.lora_A:
            continue
        _, sep, inner = name.partition("base_model.model.")
        if not sep:
            raise ValueError(f"unexpected peft module name {name!r}")
        lora_a: Any = module.lora_A["default"]
        lora_b: Any = module.lora_B["default"]
        a = lora_a.weight.detach().float().cpu().numpy()
        b = lora_b.weight.detach().float().cpu().numpy()
        pairs[f"{inner}.weight"] = (a, b)
        scalings.add(float(module.scaling["default"]))
    if len(scalings) != 1:
        raise ValueError(f"expected one LoRA scaling for all layers, got {sorted(scalings)}")
    return pairs, scalings.pop()


def save_adapter(model: nn.Module, path: Path, cfg: FinetuneConfig, base_source_sha256: str) -> Path:
    """Write the peft model's LoRA weights in the Voce adapter format (see models/encoders/adapter.py)."""
    pairs, scaling = adapter_pairs(model)
    return write_adapter(
        path,
        pairs,
        scaling,
        metadata={
            "base_source_sha256": base_source_sha256,
            "r": str(cfg.lora_r),
            "alpha": str(cfg.lora_alpha),
            "targets": ",".join(cfg.lora_targets),
        },
        dtype=np.dtype(cfg.adapter_dtype),
    )



def write_run(out: Path, model: nn.Module, cfg: FinetuneConfig, log: dict[str, Any], base_source_sha256: str) -> Path:
    """``adapter.safetensors``, ``finetune_config.json`` and ``finetune_log.json`` into ``out``; the adapter's path."""
    out.mkdir(parents=True, exist_ok=True)
    adapter = save_adapter(model, out / ADAPTER_FILENAME, cfg, base_source_sha256)
    (out / CONFIG_FILENAME).write_text(json.dumps(cfg.model_dump(mode="json"), indent=2) + "\n", encoding="utf-8")
    (out / LOG_FILENAME).write_text(json.dumps(log, indent=2) + "\n", encoding="utf-8")
    return adapter


def export_embeddings(
    model: nn.Module,
    tokens: SlimTokens,
    texts: Sequence[str],
    path: Path,
    device: torch.device,
    dtype: np.dtype[Any] = np.dtype(np.float32),
) -> list[Path]:
    """L2-normalised embeddings (computed in fp32, no autocast) in :class:`~models.encoders.cache.CachedEncoder`'s format.

    Lets the CPU head-fitting step reuse the GPU's pass over the training texts; the
    CPU recomputes anything missing with the merged ONNX model, which matches to ~1e-6.
    """
    from voce.models.encoders.cache import cache_key

    seqs = [tokens.sequence(t, 512) for t in texts]
    order = sorted(range(len(seqs)), key=lambda i: -len(seqs[i]))
    out = torch.zeros(len(seqs), int(cast(Any, model).config.hidden_size), dtype=torch.float32)
    model.eval()
    with torch.inference_mode():
        for start in range(0, len(order), 256):
            idx = order[start : start + 256]
            ids, mask = pad_batch([seqs[i] for i in idx], tokens.pad)
            hidden = model(input_ids=ids.to(device), attention_mask=mask.to(device)).last_hidden_state
            out[idx] = F.normalize(mean_pool(hidden.float(), mask.to(device)), dim=-1).cpu()
    path.parent.mkdir(parents=True, exist_ok=True)
    keys, vecs = np.asarray([cache_key(t) for t in texts]), out.numpy().astype(dtype)
    # parts of ~12 MB (7,500 fp32 rows) so each file fits the GPU machine's 16 MB transfer limit
    rows = max(1, (12 * 1024 * 1024) // (vecs.shape[1] * dtype.itemsize + keys.dtype.itemsize))
    written = []
    for part, start in enumerate(range(0, len(texts), rows)):
        written.append(path.with_name(f"{path.stem}-{part}.npz"))
        np.savez(written[-1], keys=keys[start : start + rows], vectors=vecs[start : start + rows])
    return written
