"""Deterministic, group-aware train/dev splits, CV folds and data fingerprints.

Why hashing instead of a seeded shuffle: a row's side depends only on
``sha256(f"{seed}:{source}:{group}")``, so it does not move when rows are
reordered, when another dataset is added, or between Python processes
(``hash()`` is salted per process).  A bundle trained today and the eval run next
month therefore agree on which rows were held out, and the manifest only needs
``seed`` and ``dev_fraction`` (plus :func:`data_fingerprint`) to reproduce it.

Why groups: rows that share ``Example.group`` (a duplicated tweet id, the
sentences of one SemEval review) carry near-identical information; if they
straddled the split, dev scores would be inflated by memorisation.

ATE_ABSITA ships an official dev file: its train rows go through the same hash
split as everything else, and the organisers' dev file stays a separate,
untouched check, loaded with ``load_ate_absita(split="dev")``.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from voce.data.datasets import Example, load_ate_absita
from voce.models.files import sha256_file

_HASH_SPACE = float(2**64)


def group_hash(seed: int, source: str, group: str) -> float:
    """Map a group to a uniform number in ``[0, 1)`` that is stable across runs."""
    digest = hashlib.sha256(f"{seed}:{source}:{group}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / _HASH_SPACE


def split_examples(
    examples: Iterable[Example],
    dev_fraction: float = 0.2,
    seed: int = 13,
) -> tuple[list[Example], list[Example]]:
    """Split into ``(train, dev)``: a group is dev when its hash is below the fraction.

    The fraction holds in expectation over *groups*, so datasets with few large
    groups (SemEval: 350 reviews) deviate more from it than one-row-per-group ones.
    Both lists keep the input order.
    """
    if not 0.0 < dev_fraction < 1.0:
        raise ValueError(f"dev_fraction must be in (0, 1), got {dev_fraction}")
    train: list[Example] = []
    dev: list[Example] = []
    for ex in examples:
        is_dev = group_hash(seed, ex.source, ex.group) < dev_fraction
        (dev if is_dev else train).append(ex)
    return train, dev


@dataclass(frozen=True)
class SplitSpec:
    """The one definition of which rows are dev and which calibrate: saved in every manifest, read back by eval.

    Training, fine-tuning and evaluation all split through this object, so the rows a bundle never saw are the
    rows it is scored on.  A plain dataclass: the GPU fine-tuning machine runs without pydantic.
    """

    #: hash seed of the dev split; the calibration slice uses seed + 1
    seed: int = 13
    #: share of groups held out as the dev split
    dev_fraction: float = 0.2
    #: share of the training groups held out to fit temperatures and thresholds
    calibration_fraction: float = 0.15

    def __post_init__(self) -> None:
        # dev_fraction 0: no dev split (training then reports on a separate evaluation file)
        if not 0.0 <= self.dev_fraction < 0.5:
            raise ValueError(f"dev_fraction must be in [0, 0.5), got {self.dev_fraction}")
        if not 0.0 < self.calibration_fraction < 0.5:
            raise ValueError(f"calibration_fraction must be in (0, 0.5), got {self.calibration_fraction}")

    def record(self) -> dict[str, Any]:
        """What the manifest stores under ``split``."""
        return asdict(self)

    def split(self, examples: Iterable[Example]) -> tuple[list[Example], list[Example]]:
        """``(train, dev)`` (dev empty when ``dev_fraction`` is 0)."""
        if self.dev_fraction == 0:
            return list(examples), []
        return split_examples(examples, dev_fraction=self.dev_fraction, seed=self.seed)

    def calibration(self, train: Iterable[Example]) -> tuple[list[Example], list[Example]]:
        """``(fit, calibration)`` out of the training rows."""
        return split_examples(train, dev_fraction=self.calibration_fraction, seed=self.seed + 1)

    @classmethod
    def from_manifest(cls, record: dict[str, Any] | None) -> SplitSpec:
        """The spec a bundle recorded (older manifests lack ``calibration_fraction``: the default then)."""
        record = record or {}
        return cls(**{k: record[k] for k in ("seed", "dev_fraction", "calibration_fraction") if k in record})


def assign_folds(examples: Iterable[Example], k: int = 5, seed: int = 13) -> dict[tuple[str, str], int]:
    """Fold index per ``(source, group)``.

    Each source's groups are sorted by hash and dealt round-robin: unlike
    ``hash % k`` this keeps the folds within one group of the same size per
    source, and it is still independent of input order.
    """
    if k < 2:
        raise ValueError(f"k must be at least 2, got {k}")
    groups_by_source: dict[str, set[str]] = {}
    for ex in examples:
        groups_by_source.setdefault(ex.source, set()).add(ex.group)
    folds: dict[tuple[str, str], int] = {}
    for source in sorted(groups_by_source):
        ranked = sorted(groups_by_source[source], key=lambda g: (group_hash(seed, source, g), g))
        for i, group in enumerate(ranked):
            folds[(source, group)] = i % k
    return folds


def kfold_groups(examples: Sequence[Example], k: int = 5, seed: int = 13) -> list[tuple[list[Example], list[Example]]]:
    """``k`` ``(train, validation)`` pairs; each group is validated exactly once.

    Meant for cross-validating on the train side of :func:`split_examples`; the
    dev side stays unseen until the final report.
    """
    folds = assign_folds(examples, k=k, seed=seed)
    result: list[tuple[list[Example], list[Example]]] = []
    for fold in range(k):
        train = [ex for ex in examples if folds[(ex.source, ex.group)] != fold]
        val = [ex for ex in examples if folds[(ex.source, ex.group)] == fold]
        result.append((train, val))
    return result


def data_fingerprint(
    paths: str | os.PathLike[str] | Iterable[str | os.PathLike[str]],
    root: str | os.PathLike[str] | None = None,
) -> dict[str, str]:
    """sha256 hex digest per file, for bundle manifests ("trained on exactly this").

    ``paths`` is a list of files (e.g. ``voce.data.datasets.dataset_paths()``) or a single
    path; a single directory stands for every non-hidden file below it and becomes
    the ``root``.  Keys are POSIX paths relative to ``root`` when given (manifests
    must not depend on the machine's directory layout), else the paths as passed.
    Sorted by key so that two manifests diff cleanly.
    """
    if isinstance(paths, (str, os.PathLike)):
        single = Path(paths)
        if single.is_dir():
            root = single if root is None else root
            files = sorted(
                f
                for f in single.rglob("*")
                if f.is_file() and not any(part.startswith(".") for part in f.relative_to(single).parts)
            )
        else:
            files = [single]
    else:
        files = [Path(p) for p in paths]
    base = Path(root).resolve() if root is not None else None
    out: dict[str, str] = {}
    for path in files:
        key = path.as_posix()
        if base is not None and path.resolve().is_relative_to(base):
            key = path.resolve().relative_to(base).as_posix()
        out[key] = sha256_file(path)
    return dict(sorted(out.items()))


__all__ = [
    "assign_folds",
    "data_fingerprint",
    "group_hash",
    "kfold_groups",
    "load_ate_absita",
    "split_examples",
]
