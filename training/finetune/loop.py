"""The fine-tuning run: rows and targets, LoRA + task heads, the optimiser, the epochs and their dev check.

Seeded throughout: on CPU a run is reproducible bit for bit, on CUDA up to non-deterministic kernels.  The order
in which torch's random stream is used (the slim base, LoRA, the heads, then dropout step by step) is part of
that promise, so :func:`finetune` keeps it.
"""
from __future__ import annotations

import math
import platform
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from torch import nn

from voce.data.datasets import Example, annotated_topics
from voce.training.finetune.anchors import Anchors
from voce.training.finetune.config import FinetuneConfig
from voce.training.finetune.encoder import LowerStack, autocast, embed_pooled, mean_pool, wrap_lora
from voce.training.finetune.export import write_run
from voce.training.finetune.heads import TaskHeads, task_losses
from voce.training.finetune.metrics import task_metrics
from voce.training.finetune.sampler import MixtureSampler, pad_batch
from voce.training.finetune.targets import TaskTargets, build_targets, cap_per_source, has_label, topic_ids_for
from voce.training.slim import SlimTokens, load_slim_base, read_slim_meta

Progress = Callable[[str], None]


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


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda:{torch.cuda.get_device_name(device)}"
    return f"cpu:{platform.processor() or platform.machine()} x{torch.get_num_threads()} threads"


def lib_versions() -> dict[str, str]:
    import peft
    import transformers

    return {"transformers": transformers.__version__, "peft": peft.__version__}


# ---------------------------------------------------------------------------------- rows


@dataclass
class TrainingRows:
    """The rows fine-tuned on (those with a label) and checked on, with their targets and token sequences."""

    train: list[Example]
    dev: list[Example]
    dropped: int  # training rows without any label
    topic_ids: list[str]
    targets: TaskTargets
    dev_targets: TaskTargets
    seqs: list[list[int]]


def prepare_rows(
    split: tuple[Sequence[Example], Sequence[Example]], cfg: FinetuneConfig, tokens: SlimTokens
) -> TrainingRows:
    """Cap each dataset, check every text is in the package, build the targets, drop rows that teach nothing."""
    train_all = cap_per_source(split[0], cfg.max_examples)
    dev = cap_per_source(split[1], cfg.max_examples)
    missing = [e.text for e in [*train_all, *dev] if e.text not in tokens]
    if missing:
        raise ValueError(f"{len(missing)} texts are not in the slim package (first: {missing[0][:60]!r}); re-pack")
    annotated = annotated_topics(train_all)
    topic_ids = topic_ids_for(train_all, cfg.min_topic_positives)
    keep = np.flatnonzero(has_label(build_targets(train_all, topic_ids, annotated)))
    train = [train_all[i] for i in keep]
    targets = build_targets(train, topic_ids, annotated)
    dev_targets = build_targets(dev, topic_ids, annotated)
    if not train:
        raise ValueError("no labelled training rows")
    seqs = [tokens.sequence(e.text, cfg.max_len) for e in train]
    return TrainingRows(train, dev, len(train_all) - len(train), topic_ids, targets, dev_targets, seqs)


# ---------------------------------------------------------------------------- one step


def warmup_then_decay(total_steps: int, warmup: int) -> Callable[[int], float]:
    """Learning-rate factor: linear warm-up over ``warmup`` steps, then linear decay to zero."""

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup))

    return factor


@dataclass
class Training:
    """Everything one optimisation step touches, and the step count and timings so far."""

    cfg: FinetuneConfig
    device: torch.device
    model: nn.Module
    heads: TaskHeads
    lower: LowerStack | None  # the frozen bottom layers' cached output (train_layers), else None
    rows: TrainingRows
    tokens: SlimTokens
    anchors: Anchors
    sampler: MixtureSampler
    optimiser: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    lora_params: list[nn.Parameter]
    weights: dict[str, float]  # task -> weight of its loss in the sum
    steps_per_epoch: int
    total_steps: int
    step: int = 0
    step_times: list[float] = field(default_factory=list)
    # process CPU seconds: the cost on CPU even when other jobs share the cores
    step_cpu: list[float] = field(default_factory=list)

    def forward(self, rows: np.ndarray) -> dict[str, torch.Tensor]:
        """The task heads' logits for a batch of training rows."""
        with autocast(self.device):
            if self.lower is None:
                ids, mask = pad_batch([self.rows.seqs[i] for i in rows], self.tokens.pad)
                mask = mask.to(self.device)
                hidden = self.model(input_ids=ids.to(self.device), attention_mask=mask).last_hidden_state
            else:
                hidden, mask = self.lower.forward(rows, self.device)
        out: dict[str, torch.Tensor] = self.heads(mean_pool(hidden.float(), mask))
        return out

    def train_step(self) -> tuple[float, dict[str, float]]:
        """One sampled batch: forward, weighted task losses (+ anchor term), backward, clip, step; the losses."""
        cfg, device = self.cfg, self.device
        t0, c0 = time.perf_counter(), time.process_time()
        rows = self.sampler.batch(cfg.batch_size)
        tgt = {k: v.to(device, non_blocking=True) for k, v in self.rows.targets.take(rows).items()}
        losses = task_losses(self.forward(rows), tgt)
        if cfg.weight_anchor > 0:
            losses["anchor"] = self.anchors.loss(self.model, self.tokens.pad, cfg.anchor_batch_size, device)
        loss = sum((self.weights[k] * v for k, v in losses.items()), start=torch.zeros((), device=device))
        self.optimiser.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]
        torch.nn.utils.clip_grad_norm_([*self.lora_params, *self.heads.parameters()], cfg.grad_clip)
        self.optimiser.step()
        self.scheduler.step()
        loss_value = float(loss.detach())
        if not math.isfinite(loss_value):
            raise FloatingPointError(f"loss became {loss_value} at step {self.step}")
        task = {k: float(v.detach()) for k, v in losses.items()}
        self.step += 1
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        self.step_times.append(time.perf_counter() - t0)
        self.step_cpu.append(time.process_time() - c0)
        return loss_value, task


def start_training(
    base: nn.Module, rows: TrainingRows, anchors: Anchors, tokens: SlimTokens, cfg: FinetuneConfig,
    device: torch.device, progress: Progress,
) -> Training:  # fmt: skip
    """LoRA into ``base``, the task heads, the optimiser and its schedule, the batch sampler."""
    model = wrap_lora(base, cfg).to(device)
    lower: LowerStack | None = None
    if cfg.train_layers is not None:
        t_lower = time.perf_counter()
        first = int(cast(Any, base).config.num_hidden_layers) - cfg.train_layers
        lower = LowerStack(model, rows.seqs, first, tokens.pad, device, cfg.eval_batch_size)
        progress(f"layers 0-{first - 1} frozen: their output for {len(rows.seqs)} training rows computed once "
                 f"({time.perf_counter() - t_lower:.0f}s)")  # fmt: skip
    heads = TaskHeads(int(cast(Any, base).config.hidden_size), len(rows.topic_ids), cfg.logit_scale).to(device)
    lora_params = [p for p in model.parameters() if p.requires_grad]
    optimiser = torch.optim.AdamW(
        [
            {"params": lora_params, "lr": cfg.lr_lora},
            {"params": list(heads.parameters()), "lr": cfg.lr_heads},
        ],
        weight_decay=cfg.weight_decay,
    )
    steps_per_epoch = math.ceil(len(rows.train) / cfg.batch_size)
    total_steps = cfg.epochs * steps_per_epoch
    if cfg.max_steps is not None:
        total_steps = min(total_steps, cfg.max_steps)
    warmup = max(1, int(cfg.warmup_fraction * total_steps))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimiser, warmup_then_decay(total_steps, warmup))
    sampler = MixtureSampler([e.source for e in rows.train], cfg.mixture_alpha, cfg.seed)
    weights = {"sentiment": cfg.weight_sentiment, "topics": cfg.weight_topics,
               "polarity": cfg.weight_polarity, "detractor": cfg.weight_detractor}  # fmt: skip
    if cfg.weight_anchor > 0:
        weights["anchor"] = cfg.weight_anchor
    return Training(cfg, device, model, heads, lower, rows, tokens, anchors, sampler, optimiser, scheduler,
                    lora_params, weights, steps_per_epoch, total_steps)  # fmt: skip


# ------------------------------------------------------------------------------- epochs


def dev_check(
    model: nn.Module,
    heads: TaskHeads,
    tokens: SlimTokens,
    examples: Sequence[Example],
    targets: TaskTargets,
    cfg: FinetuneConfig,
    device: torch.device,
) -> dict[str, Any]:
    """Quick dev metrics from the training heads (the real ones are the LR heads' in ``voce train``)."""
    if not examples:
        return {}
    pooled = embed_pooled(model, tokens, [e.text for e in examples], cfg.max_len, device, cfg.eval_batch_size)
    heads.eval()
    with torch.inference_mode():
        out = {k: v.float() for k, v in heads(pooled.to(device)).items()}
        losses = task_losses(out, {k: v.to(device) for k, v in targets.take(np.arange(len(examples))).items()})
    heads.train()
    out_np = {k: v.cpu().numpy() for k, v in out.items()}
    loss = {k: round(float(v), 5) for k, v in losses.items()}
    return {"loss": loss, **task_metrics(out_np, targets, [e.source for e in examples])}


def run_epoch(t: Training, epoch: int, progress: Progress) -> dict[str, Any]:
    """Up to one epoch of steps (fewer when ``max_steps`` is reached), then the dev check; the epoch's record."""
    epoch_start = time.perf_counter()
    sums = dict.fromkeys(t.weights, 0.0)
    total_loss = 0.0
    n_steps = 0
    for _ in range(t.steps_per_epoch):
        if t.step >= t.total_steps:
            break
        loss_value, task = t.train_step()
        total_loss += loss_value
        for k, v in task.items():
            sums[k] += v
        n_steps += 1
        if t.cfg.log_every and t.step % t.cfg.log_every == 0:
            progress(f"step {t.step}/{t.total_steps} loss {total_loss / n_steps:.4f} "
                     f"({t.step_times[-1] * 1000:.0f} ms/step)")  # fmt: skip
    dev_metrics = dev_check(t.model, t.heads, t.tokens, t.rows.dev, t.rows.dev_targets, t.cfg, t.device)
    if t.anchors.texts:  # how far the tuned encoder moved the taxonomy prototypes (1 = not at all)
        dev_metrics["anchor_cosine"] = t.anchors.cosine(t.model, t.tokens, t.cfg, t.device)
    return {
        "epoch": epoch,
        "steps": n_steps,
        "train_loss": round(total_loss / max(n_steps, 1), 5),
        "train_task_loss": {k: round(v / max(n_steps, 1), 5) for k, v in sums.items()},
        "dev": dev_metrics,
        "seconds": round(time.perf_counter() - epoch_start, 2),
    }


def epoch_line(record: dict[str, Any]) -> str:
    dev = record["dev"]
    return (
        f"epoch {record['epoch']}: train loss {record['train_loss']:.4f}, dev sentiment macro-F1 "
        f"{dev.get('sentiment_macro_f1')}, topic micro-F1 {dev.get('topic_micro_f1')}, "
        f"detractor F1 {dev.get('detractor_f1')}, anchor cosine {dev.get('anchor_cosine')} "
        f"({record['seconds']:.0f}s)"
    )


# ---------------------------------------------------------------------------- the run


def start_log(t: Training, meta: dict[str, Any], progress: Progress) -> dict[str, Any]:
    """Announce the run and open its log (what it trains on, with what, where)."""
    rows, sampler = t.rows, t.sampler
    n_trainable = sum(p.numel() for p in t.lora_params)
    progress(
        f"{len(rows.train)} train rows ({rows.dropped} without labels dropped), {len(rows.dev)} dev rows; "
        f"{len(rows.topic_ids)} topics; {n_trainable / 1e6:.2f}M LoRA params; {t.total_steps} steps on "
        f"{device_name(t.device)}; "
        f"mixture {dict(zip(sampler.names, np.round(sampler.probabilities, 3).tolist(), strict=True))}"
    )
    return {
        "device": device_name(t.device),
        "versions": {"torch": torch.__version__, "python": platform.python_version(), **lib_versions()},
        "pack": {"source_sha256": meta["source_sha256"], "compact_vocab": meta["config"]["vocab_size"]},
        "n_train": len(rows.train),
        "n_dev": len(rows.dev),
        "topic_ids": rows.topic_ids,
        "mixture": dict(zip(sampler.names, sampler.probabilities.tolist(), strict=True)),
        "lora_parameters": n_trainable,
        "total_steps": t.total_steps,
        "epochs": [],
    }


def finish_log(t: Training, log: dict[str, Any], started: float) -> None:
    """Step timings (the first step apart: it warms up), the learned logit scale and the wall time."""
    steady = t.step_times[1:] or t.step_times
    log["step_seconds_mean"] = round(float(np.mean(steady)), 4) if steady else None
    log["step_seconds_first"] = round(t.step_times[0], 4) if t.step_times else None
    steady_cpu = t.step_cpu[1:] or t.step_cpu
    log["step_cpu_seconds_mean"] = round(float(np.mean(steady_cpu)), 4) if steady_cpu else None
    log["logit_scale"] = round(float(t.heads.log_scale.detach().exp()), 3)
    log["wall_seconds"] = round(time.perf_counter() - started, 1)


def finetune(
    pack_dir: Path,
    examples_split: tuple[Sequence[Example], Sequence[Example]],
    config: FinetuneConfig,
    *,
    out: Path | None = None,
    progress: Progress = print,
) -> FinetuneResult:
    """Fine-tune LoRA + task heads on ``examples_split[0]``, report on ``[1]``; save into ``out`` if given.

    ``out`` receives ``adapter.safetensors``, ``finetune_config.json`` and ``finetune_log.json``.
    """
    cfg = config
    started = time.perf_counter()
    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' requested but torch sees no GPU; pass --device cpu")
    device = torch.device(cfg.device)
    seed_everything(cfg.seed)
    meta = read_slim_meta(pack_dir)
    base, tokens = load_slim_base(pack_dir)
    rows = prepare_rows(examples_split, cfg, tokens)
    anchors = Anchors.load(pack_dir, base, tokens, cfg, device)
    t = start_training(base, rows, anchors, tokens, cfg, device, progress)
    log = start_log(t, meta, progress)
    t.model.train()
    t.heads.train()
    for epoch in range(1, cfg.epochs + 1):
        if t.step >= t.total_steps:
            break
        log["epochs"].append(run_epoch(t, epoch, progress))
        progress(epoch_line(log["epochs"][-1]))

    if cfg.adapter_dtype == "float16":  # what the saved adapter holds is what the model computes with
        with torch.no_grad():
            for p in t.lora_params:
                p.copy_(p.half().float())
    finish_log(t, log, started)
    result = FinetuneResult(model=t.model, heads=t.heads, tokens=tokens, topic_ids=rows.topic_ids, log=log)
    if out is not None:
        result.adapter_file = write_run(Path(out), t.model, cfg, log, meta["source_sha256"])
        progress(f"adapter written to {result.adapter_file}")
    return result
