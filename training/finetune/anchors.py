"""The anchor term (``weight_anchor``): keep the tuned encoder's view of the taxonomy prototypes near the base's.

Touchpoints have no labels and are scored zero-shot against the prototype texts that :mod:`voce.training.slim`
packs as ``anchor_texts.json``; a fine-tune that only sharpens the labelled tasks can blunt them
(reports/finetune/README.md).  The base encoder's embeddings are computed before LoRA is injected, and
``anchor_cosine`` (1 = the prototypes did not move) is logged every epoch.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from voce.training.finetune.config import FinetuneConfig
from voce.training.finetune.encoder import autocast, embed_pooled, mean_pool
from voce.training.finetune.sampler import pad_batch
from voce.training.slim import SlimTokens, read_anchor_texts


@dataclass
class Anchors:
    """The package's anchor texts, their token sequences, and the base encoder's unit embedding of each."""

    texts: list[str]
    seqs: list[list[int]]
    # (n, dim) on the training device; empty when the package has no anchor texts
    targets: torch.Tensor
    # its own random stream, so runs without anchors sample exactly as before the term existed
    rng: np.random.Generator

    @classmethod
    def load(cls, pack_dir: Path, base: nn.Module, tokens: SlimTokens, cfg: FinetuneConfig, device: torch.device) -> Anchors:
        """Read the anchor texts and embed them with ``base``; call before LoRA is injected into it."""
        texts = read_anchor_texts(pack_dir)
        if cfg.weight_anchor > 0 and not texts:
            raise ValueError("weight_anchor > 0 but the slim package has no anchor texts; re-pack with training.slim")
        targets = torch.zeros(0)
        if texts:  # the base encoder's view of each anchor, before LoRA is injected into the same modules
            base = base.to(device)  # type: ignore[arg-type]  # transformers types .to() loosely
            targets = F.normalize(embed_pooled(base, tokens, texts, cfg.max_len, device,
                                               cfg.eval_batch_size), dim=-1).to(device)  # fmt: skip
        seqs = [tokens.sequence(t, cfg.max_len) for t in texts]
        return cls(texts, seqs, targets, np.random.default_rng(cfg.seed + 7))

    def loss(self, model: nn.Module, pad: int, batch_size: int, device: torch.device) -> torch.Tensor:
        """Mean (1 - cosine) between the tuned and the base embedding of a random batch of anchors."""
        pick = self.rng.choice(len(self.texts), size=min(batch_size, len(self.texts)), replace=False)
        a_ids, a_mask = pad_batch([self.seqs[i] for i in pick], pad)
        with autocast(device):
            a_hidden = model(input_ids=a_ids.to(device), attention_mask=a_mask.to(device)).last_hidden_state
        a_emb = F.normalize(mean_pool(a_hidden.float(), a_mask.to(device)), dim=-1)
        return (1.0 - (a_emb * self.targets[torch.from_numpy(pick).to(device)]).sum(-1)).mean()

    def cosine(self, model: nn.Module, tokens: SlimTokens, cfg: FinetuneConfig, device: torch.device) -> float:
        """How far the tuned encoder moved the anchors: mean cosine to the base embeddings (1 = not at all)."""
        tuned = F.normalize(embed_pooled(model, tokens, self.texts, cfg.max_len, device, cfg.eval_batch_size), dim=-1)
        return round(float((tuned.to(device) * self.targets).sum(-1).mean()), 4)
