"""Small prediction heads that read shared sentence embeddings.

Heads are plain affine maps plus a link function, evaluated in numpy so serving
needs no training library.  Each head type has a versioned registered name
(``LinearSoftmax.v1`` ...): a behaviour change gets a new name and old bundles
keep loading.  Calibration parameters live inside the head so a score means the
same thing wherever it is read.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import numpy as np
import numpy.typing as npt

F32 = npt.NDArray[np.float32]
#: lexical features of the same rows: a scipy sparse matrix (or a dense array in tests)
Lexical = Any


def _softmax(z: F32) -> F32:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    out: F32 = (e / e.sum(axis=1, keepdims=True)).astype(np.float32)
    return out


def _sigmoid(z: F32) -> F32:
    out: F32 = (1.0 / (1.0 + np.exp(-np.clip(z, -40, 40)))).astype(np.float32)
    return out


@dataclass
class LinearHead:
    """``link((x @ W.T + b) / temperature)`` over an embedding matrix ``x``.

    ``softmax`` heads are single-label with one temperature; ``sigmoid`` heads are
    multi-label with one temperature per label and a decision threshold per label.
    A *hybrid* head also reads lexical n-gram features (:mod:`models.lexical`):
    ``lex @ lex_weight.T`` is added to the logits; its weights are stored in
    float16 (they are rounded so when fitted, so stored and fitted heads agree).
    """

    kind: Literal["softmax", "sigmoid"]
    labels: list[str]
    weight: F32  # (n_labels, dim)
    bias: F32  # (n_labels,)
    temperature: F32 = field(default_factory=lambda: np.ones(1, np.float32))
    thresholds: F32 | None = None  # sigmoid only: per-label decision threshold
    lex_weight: F32 | None = None  # hybrid only: (n_labels, lexical dim)

    NAMES: ClassVar[dict[str, str]] = {"softmax": "LinearSoftmax.v1", "sigmoid": "LinearSigmoid.v1"}
    HYBRID_NAMES: ClassVar[dict[str, str]] = {"softmax": "HybridSoftmax.v1", "sigmoid": "HybridSigmoid.v1"}

    def __post_init__(self) -> None:
        self.weight = np.asarray(self.weight, np.float32)
        self.bias = np.asarray(self.bias, np.float32)
        self.temperature = np.asarray(self.temperature, np.float32).reshape(-1)
        if self.weight.shape[0] != len(self.labels) or self.bias.shape != (len(self.labels),):
            raise ValueError("weight/bias do not match the label list")
        if self.temperature.size not in (1, len(self.labels)):
            raise ValueError("temperature must be a scalar or one per label")
        if self.kind == "sigmoid" and self.thresholds is None:
            self.thresholds = np.full(len(self.labels), 0.5, np.float32)
        if self.thresholds is not None:
            self.thresholds = np.asarray(self.thresholds, np.float32)
        if self.lex_weight is not None:
            # held column-major: ``lex_weight.T`` is then C-contiguous, which scipy's sparse @ dense reads in place
            # (a row-major weight was copied whole on every call: ~1 ms per head per request)
            self.lex_weight = np.asfortranarray(np.asarray(self.lex_weight, np.float32))
            if self.lex_weight.ndim != 2 or self.lex_weight.shape[0] != len(self.labels):
                raise ValueError("lex_weight does not match the label list")

    @property
    def registered_name(self) -> str:
        return (self.HYBRID_NAMES if self.lex_weight is not None else self.NAMES)[self.kind]

    @property
    def lexical_dim(self) -> int:
        """Width of the lexical features the head reads (0: embedding only)."""
        return 0 if self.lex_weight is None else int(self.lex_weight.shape[1])

    @property
    def dim(self) -> int:
        return int(self.weight.shape[1])

    def logits(self, x: F32, lex: Lexical | None = None) -> F32:
        z = np.asarray(x, np.float32) @ self.weight.T + self.bias
        if self.lex_weight is not None:
            if lex is None:
                raise ValueError("this head also reads lexical features; pass lex=")
            if lex.shape != (z.shape[0], self.lexical_dim):
                raise ValueError(f"head expects {self.lexical_dim} lexical features per row, got {lex.shape}")
            z = z + np.asarray(lex @ self.lex_weight.T, np.float32)
        out: F32 = (z / self.temperature).astype(np.float32)
        return out

    def predict_proba(self, x: F32, lex: Lexical | None = None) -> F32:
        """Calibrated probabilities, shape ``(n, n_labels)``; ``lex``: the rows' lexical features (hybrid heads)."""
        x = np.atleast_2d(np.asarray(x, np.float32))
        if x.shape[1] != self.dim:
            raise ValueError(f"head expects {self.dim}-d embeddings, got {x.shape[1]}-d")
        z = self.logits(x, lex)
        return _softmax(z) if self.kind == "softmax" else _sigmoid(z)

    # --- serialisation: tensors go to safetensors, the rest to the manifest ---
    def tensors(self, prefix: str) -> dict[str, F32]:
        out = {f"{prefix}.weight": self.weight, f"{prefix}.bias": self.bias, f"{prefix}.temperature": self.temperature}
        if self.thresholds is not None:
            out[f"{prefix}.thresholds"] = self.thresholds
        if self.lex_weight is not None:
            out[f"{prefix}.lex_weight"] = np.ascontiguousarray(self.lex_weight, np.float16)
        return out

    def config(self) -> dict[str, Any]:
        return {"type": self.registered_name, "labels": list(self.labels)}

    @classmethod
    def from_parts(cls, config: dict[str, Any], tensors: dict[str, F32], prefix: str) -> LinearHead:
        kinds = {v: k for k, v in cls.NAMES.items()} | {v: k for k, v in cls.HYBRID_NAMES.items()}
        hybrid = config["type"] in cls.HYBRID_NAMES.values()
        if hybrid and f"{prefix}.lex_weight" not in tensors:
            raise ValueError(f"{config['type']} head {prefix!r} has no lexical weights")
        if config["type"] not in kinds:
            raise ValueError(f"unknown head type {config['type']!r}")
        kind: Literal["softmax", "sigmoid"] = "softmax" if kinds[config["type"]] == "softmax" else "sigmoid"
        return cls(
            kind=kind,
            labels=list(config["labels"]),
            weight=tensors[f"{prefix}.weight"],
            bias=tensors[f"{prefix}.bias"],
            temperature=tensors[f"{prefix}.temperature"],
            thresholds=tensors.get(f"{prefix}.thresholds"),
            lex_weight=tensors[f"{prefix}.lex_weight"] if hybrid else None,
        )


@dataclass
class ZeroShotCalibration:
    """Maps taxonomy similarity features to a probability.

    Raw e5 cosines are compressed into a narrow band, so the probability uses the
    best prototype similarity *and* its margin over the mean similarity to all
    entries of the section; the three coefficients are fitted during training on
    topics that do have labels and reused for entries that do not.
    """

    w_sim: float = 20.0
    w_margin: float = 20.0
    bias: float = -12.0

    NAME: ClassVar[str] = "ZeroShotCalibration.v1"

    def probability(self, sim: F32, margin: F32) -> F32:
        return _sigmoid(np.float32(self.w_sim) * sim + np.float32(self.w_margin) * margin + np.float32(self.bias))

    def config(self) -> dict[str, Any]:
        return {"type": self.NAME, "w_sim": self.w_sim, "w_margin": self.w_margin, "bias": self.bias}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> ZeroShotCalibration:
        if config.get("type") != cls.NAME:
            raise ValueError(f"unknown zero-shot calibration {config.get('type')!r}")
        return cls(w_sim=float(config["w_sim"]), w_margin=float(config["w_margin"]), bias=float(config["bias"]))


def zero_shot_features(x: F32, prototypes: list[F32]) -> tuple[F32, F32]:
    """Best-prototype cosine per entry, and its margin over the mean across entries.

    ``x`` rows and prototype rows must already be L2-normalised (and centred the
    same way).  Returns two ``(n, n_entries)`` matrices.
    """
    sizes = [len(p) for p in prototypes]
    if prototypes and min(sizes) > 0:  # one product for every entry, then the best per entry's column block
        allp = np.concatenate(prototypes).astype(np.float32, copy=False)
        starts = np.cumsum([0, *sizes[:-1]])
        sims = np.maximum.reduceat(np.asarray(x, np.float32) @ allp.T, starts, axis=1).astype(np.float32)
    else:
        sims = np.stack([(x @ p.T).max(axis=1) for p in prototypes], axis=1).astype(np.float32)
    margin = (sims - sims.mean(axis=1, keepdims=True)).astype(np.float32)
    return sims, margin


@dataclass
class ExclusiveCalibration:
    """How an exclusive (``mode: single``) section of a custom taxonomy picks its entry, and how sure it is.

    Two signals per (text, entry): ``sim``, the best cosine between the text and the entry's names,
    descriptions and examples, computed with the *base* e5 encoder (the fine-tuned one sharpens the labelled
    tasks but blunts similarity to unseen descriptions), centred on ``center``; and ``concept``, the agreement
    between the text's learned touchpoint and topic probabilities and the same heads run on the entry's texts
    (a "pay" stage reads like billing to the heads; so does a complaint about a charge).  A softmax over the
    section's entries of ``(w_sim * sim + w_concept * concept) / temperature`` gives the confidence; its three
    coefficients are fitted on one journey taxonomy and checked on others it never saw (``voce eval``).
    """

    w_sim: float
    w_concept: float
    temperature: float
    #: a choice below this confidence is flagged uncertain
    uncertain_below: float
    #: mean base-encoder embedding, removed before similarity
    center: F32
    #: the concept vector's layout: "touchpoint:<id>" and "topic:<id>" in head label order
    concepts: list[str]

    NAME: ClassVar[str] = "ExclusiveCalibration.v1"

    def __post_init__(self) -> None:
        self.center = np.asarray(self.center, np.float32)

    def logits(self, sim: F32, concept: F32) -> F32:
        out = (np.float32(self.w_sim) * sim + np.float32(self.w_concept) * concept) / np.float32(self.temperature)
        return np.asarray(out, dtype=np.float32)

    def config(self) -> dict[str, Any]:
        return {"type": self.NAME, "w_sim": self.w_sim, "w_concept": self.w_concept, "temperature": self.temperature,
                "uncertain_below": self.uncertain_below, "concepts": list(self.concepts)}  # fmt: skip

    @classmethod
    def from_parts(cls, config: dict[str, Any], tensors: dict[str, F32], prefix: str) -> ExclusiveCalibration:
        if config.get("type") != cls.NAME:
            raise ValueError(f"unknown exclusive calibration {config.get('type')!r}")
        return cls(
            w_sim=float(config["w_sim"]), w_concept=float(config["w_concept"]),
            temperature=float(config["temperature"]), uncertain_below=float(config["uncertain_below"]),
            center=tensors[f"{prefix}.center"], concepts=list(config["concepts"]),
        )  # fmt: skip
