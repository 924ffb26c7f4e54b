"""The encoder being tuned: the slim BertModel with LoRA injected, and every forward pass over it.

Embeddings here are what serving computes (mean over non-padding tokens, specials included); bf16 autocast is
used on CUDA only, so a CPU run is reproducible bit for bit.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F
from torch import nn

from voce.training.finetune.config import FinetuneConfig
from voce.training.finetune.sampler import pad_batch
from voce.training.slim import SlimTokens


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over non-padding tokens, specials included: what every serving backend computes."""
    m = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * m).sum(dim=1) / m.sum(dim=1).clamp(min=1.0)



def autocast(device: torch.device) -> Any:
    if device.type == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return torch.autocast(device_type="cpu", enabled=False)



def wrap_lora(base: nn.Module, cfg: FinetuneConfig) -> nn.Module:
    """peft LoRA around the slim BertModel; everything else (embeddings included) frozen."""
    from peft import LoraConfig, get_peft_model

    n_layers = int(cast(Any, base).config.num_hidden_layers)
    if cfg.train_layers is not None and cfg.train_layers > n_layers:
        raise ValueError(f"train_layers={cfg.train_layers} but the encoder has {n_layers} layers")
    top = None if cfg.train_layers is None else list(range(n_layers - cfg.train_layers, n_layers))
    lora = LoraConfig(
        r=cfg.lora_r,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=cfg.lora_dropout,
        target_modules=list(cfg.lora_targets),
        bias="none",
        layers_to_transform=top,
        layers_pattern=None if top is None else "layer",
    )
    model = get_peft_model(base, lora)  # type: ignore[arg-type]
    for name, param in model.named_parameters():
        if "lora_" not in name:
            param.requires_grad_(False)
    return model



def embed_pooled(
    model: nn.Module, tokens: SlimTokens, texts: Sequence[str], max_len: int, device: torch.device, batch_size: int
) -> torch.Tensor:
    """Mean-pooled (not normalised) fp32 embeddings, in eval mode, longest texts first for little padding."""
    seqs = [tokens.sequence(t, max_len) for t in texts]
    order = sorted(range(len(seqs)), key=lambda i: -len(seqs[i]))
    dim = int(cast(Any, model).config.hidden_size)
    out = torch.zeros(len(seqs), dim, dtype=torch.float32)
    was_training = model.training
    model.eval()
    with torch.inference_mode(), autocast(device):
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            ids, mask = pad_batch([seqs[i] for i in idx], tokens.pad)
            ids, mask = ids.to(device), mask.to(device)
            hidden = model(input_ids=ids, attention_mask=mask).last_hidden_state
            out[idx] = mean_pool(hidden.float(), mask).cpu()
    model.train(was_training)
    return out


def run_layers(bert: Any, hidden: torch.Tensor, mask: torch.Tensor, layers: Sequence[nn.Module]) -> torch.Tensor:
    """Run ``hidden`` through some of a BertModel's layers, as its own forward would (padding masked out)."""
    if hasattr(bert, "_create_attention_masks"):  # transformers 5: the mask format depends on the attention kernel
        extended = bert._create_attention_masks(attention_mask=mask, encoder_attention_mask=None,
                                                embedding_output=hidden, encoder_hidden_states=None,
                                                past_key_values=None)[0]  # fmt: skip
    else:  # transformers 4
        extended = bert.get_extended_attention_mask(mask, tuple(mask.shape))
    for layer in layers:
        out = layer(hidden, attention_mask=extended)
        hidden = out[0] if isinstance(out, tuple) else out
    return hidden


class LowerStack:
    """The frozen bottom layers' output for every training sequence, computed once (``train_layers``).

    With LoRA in the top layers only, nothing below them changes during training, so their forward pass is
    paid once instead of once per step, and no gradient flows through them.  States are kept in fp32 on the
    CPU, one ``(length, hidden)`` tensor per sequence; :meth:`batch` pads a batch of them.
    """

    def __init__(self, model: nn.Module, seqs: Sequence[Sequence[int]], first_trained: int, pad: int,
                 device: torch.device, batch_size: int) -> None:  # fmt: skip
        self.bert = cast(Any, model).get_base_model()
        self.first = first_trained
        self.states: list[torch.Tensor] = [torch.zeros(0)] * len(seqs)
        order = sorted(range(len(seqs)), key=lambda i: -len(seqs[i]))
        was_training = model.training
        model.eval()
        with torch.inference_mode(), autocast(device):
            for start in range(0, len(order), batch_size):
                idx = order[start : start + batch_size]
                ids, mask = pad_batch([seqs[i] for i in idx], pad)
                ids, mask = ids.to(device), mask.to(device)
                hidden = run_layers(self.bert, self.bert.embeddings(input_ids=ids), mask,
                                    self.bert.encoder.layer[: self.first])  # fmt: skip
                for row, i in enumerate(idx):
                    self.states[i] = hidden[row, : len(seqs[i])].float().cpu().clone()
        model.train(was_training)

    def batch(self, rows: Sequence[int] | npt.NDArray[np.int64]) -> tuple[torch.Tensor, torch.Tensor]:
        """Padded ``(hidden, attention_mask)`` of the cached states of ``rows``."""
        width = max(len(self.states[i]) for i in rows)
        dim = self.states[rows[0]].shape[-1]
        hidden = torch.zeros(len(rows), width, dim)
        mask = torch.zeros(len(rows), width, dtype=torch.int64)
        for row, i in enumerate(rows):
            n = len(self.states[i])
            hidden[row, :n], mask[row, :n] = self.states[i], 1
        return hidden, mask

    def forward(self, rows: Sequence[int] | npt.NDArray[np.int64], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """The top layers (with LoRA, in the model's train/eval mode) over the cached states: ``(last, mask)``."""
        hidden, mask = self.batch(rows)
        hidden, mask = hidden.to(device), mask.to(device)
        return run_layers(self.bert, hidden, mask, self.bert.encoder.layer[self.first :]), mask


def embed_texts(model: nn.Module, tokens: SlimTokens, texts: Sequence[str], max_len: int = 256,
                device: str = "cpu", batch_size: int = 64) -> npt.NDArray[np.float32]:  # fmt: skip
    """L2-normalised embeddings as serving computes them (for texts that fit one window)."""
    pooled = embed_pooled(model, tokens, texts, max_len, torch.device(device), batch_size)
    out: npt.NDArray[np.float32] = F.normalize(pooled, dim=-1).numpy()
    return out

