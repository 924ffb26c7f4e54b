"""What determines a fine-tuning run, and the files a run writes.

Configured like ``voce train``: a :class:`~voce.training.config.StrictConfig` (unknown fields refused), a comment
on every field, read from YAML or JSON by the same :func:`~voce.training.config.load_config`, and saved next to
the adapter as ``finetune_config.json``.  The dev and calibration rows are :class:`~voce.data.splits.SplitSpec`'s,
the very split ``voce train`` scores and calibrates on.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from voce.data.splits import SplitSpec
from voce.training.config import StrictConfig, load_config

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
#: what a run writes into its output folder (training/sweep.py reads them back)
ADAPTER_FILENAME = "adapter.safetensors"
CONFIG_FILENAME = "finetune_config.json"
LOG_FILENAME = "finetune_log.json"


class FinetuneConfig(StrictConfig):
    """Everything that determines a fine-tuning run; saved as ``finetune_config.json``."""

    # seed for torch, numpy, random, head initialisation and the sampling order
    seed: int = 13
    # dev split (SplitSpec.seed): must equal TrainConfig.seed so the rows voce train scores on stay unseen
    split_seed: int = 13
    # share of groups in the dev split (SplitSpec.dev_fraction): must equal TrainConfig.dev_fraction
    dev_fraction: float = 0.2
    # share of the training groups NOT fine-tuned on: voce train fits temperatures and thresholds on exactly this
    # calibration slice (SplitSpec.calibration, seed + 1), which must be unseen by the encoder or the calibrated
    # heads come out over-confident; 0 = fine-tune on every training row
    calibration_fraction: float = Field(default=0.15, ge=0.0)
    # passes over the training rows (an epoch = ceil(n_train / batch_size) sampled batches)
    epochs: int = Field(default=3, ge=1)
    # rows per optimisation step
    batch_size: int = Field(default=64, ge=1)
    # tokens per training sequence, <s> and </s> included (longer texts are rare and get cut)
    max_len: int = Field(default=128, ge=8)
    # LoRA rank ...
    lora_r: int = Field(default=16, ge=1)
    # ... alpha (scaling = alpha / r) ...
    lora_alpha: int = 32
    # ... and dropout on the LoRA input
    lora_dropout: float = 0.1
    # storage of the adapter file: "float16" halves it; the trained LoRA weights are then rounded to
    # fp16 in the model too, so --embed-out vectors match what the shipped adapter computes
    adapter_dtype: Literal["float32", "float16"] = "float32"
    # module-name suffixes that get LoRA (see LORA_TARGETS)
    lora_targets: tuple[str, ...] = LORA_TARGETS
    # LoRA in the top N encoder layers only (None = every layer).  The layers below are then frozen, so their
    # outputs are computed once per training text and cached: no backward pass and no repeated forward pass
    # through them.  The CPU preset (training/configs/finetune_cpu.json) uses 4 of 12: a step costs about a
    # third, and the shipped bundle format is unchanged (the adapter simply has fewer LoRA pairs)
    train_layers: int | None = Field(default=None, ge=1)
    # AdamW learning rate of the LoRA matrices ...
    lr_lora: float = 2e-4
    # ... and of the task heads (plus the logit scale)
    lr_heads: float = 1e-3
    # AdamW weight decay of both groups
    weight_decay: float = 0.01
    # share of all steps spent in linear warm-up; then linear decay to zero
    warmup_fraction: float = Field(default=0.06, ge=0.0, lt=1.0)
    # global gradient-norm clip
    grad_clip: float = 1.0
    # dataset mixture: P(dataset) ∝ n_rows ** alpha (1 = proportional, 0 = uniform); 0.5 keeps
    # SENTIPOLC and airline from drowning SemEval and ABSITA
    mixture_alpha: float = Field(default=0.5, ge=0.0, le=1.0)
    # initial multiplier of the L2-normalised embedding before the heads (learned from there),
    # so that logits of unit vectors are not squashed near zero
    logit_scale: float = 20.0
    # weight of the sentiment loss in the sum
    weight_sentiment: float = 1.0
    # weight of the topic loss
    weight_topics: float = 1.0
    # weight of the topic-polarity loss
    weight_polarity: float = 1.0
    # weight of the detractor loss
    weight_detractor: float = 1.0
    # keep zero-shot scoring intact: weight of mean (1 - cosine) between the tuned and the base encoder's
    # embeddings of the package's anchor texts (the taxonomy prototypes, training.slim); 0 = off.  Touchpoints
    # have no labels and are scored zero-shot, so a fine-tune that only sharpens the labelled topics can
    # blunt them (reports/finetune/README.md)
    weight_anchor: float = Field(default=0.0, ge=0.0)
    # anchor texts per step when weight_anchor > 0
    anchor_batch_size: int = Field(default=32, ge=1)
    # a topic gets a head when it has at least this many positive training rows
    min_topic_positives: int = 1
    # cap per dataset on train and on dev rows (None = all); for smoke runs
    max_examples: int | None = Field(default=None, ge=1)
    # stop after this many steps in total (None = epochs * steps per epoch); for smoke runs and timing
    max_steps: int | None = Field(default=None, ge=1)
    # "cuda" or "cpu"; bf16 autocast is used on cuda only
    device: Literal["cuda", "cpu"] = "cuda"
    # rows per forward pass when embedding the dev split
    eval_batch_size: int = 256
    # print a progress line every this many steps (0 = never)
    log_every: int = 50

    @model_validator(mode="after")
    def _valid_split(self) -> FinetuneConfig:
        self.split()  # SplitSpec checks the fractions
        return self

    def split(self) -> SplitSpec:
        """The dev split and calibration slice these fields name (``TrainConfig.split()`` for the same values).

        With ``calibration_fraction`` 0 no slice is held out (:attr:`holds_out_calibration`), and the spec
        carries SplitSpec's default fraction, unused.
        """
        fraction = self.calibration_fraction if self.holds_out_calibration else SplitSpec.calibration_fraction
        return SplitSpec(seed=self.split_seed, dev_fraction=self.dev_fraction, calibration_fraction=fraction)

    @property
    def holds_out_calibration(self) -> bool:
        """Whether the calibration slice is kept out of fine-tuning."""
        return self.calibration_fraction > 0


def load_finetune_config(path: Path | None, **overrides: Any) -> FinetuneConfig:
    """A :class:`FinetuneConfig` from a YAML/JSON file (or the defaults), with the command line's values on top."""
    return load_config(FinetuneConfig, path, **overrides)
