"""The distilled student encoder: the teacher's word embeddings + fewer transformer layers, trained by
``voce.training.distill`` to give the teacher's token states.

A bundle may carry ``student/`` with ``student.safetensors`` (every tensor but the word-embedding table, float16) and
``student.json`` (the kept layers, the teacher it was distilled from, its data and loss).  The table is the converted
e5 checkpoint's (366 MB, never stored twice); :func:`assemble_student` joins the two into an ordinary checkpoint
folder in the cache, keyed by both, which the ONNX export then treats like any other checkpoint.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

#: where a bundle keeps its student, and the files in it
STUDENT_DIRNAME = "student"
STUDENT_WEIGHTS = "student.safetensors"
STUDENT_META = "student.json"
#: the one tensor a student does not store: it is the teacher's, frozen during distillation
WORD_EMBEDDINGS = "embeddings.word_embeddings.weight"


def student_meta(student_dir: Path) -> dict[str, Any]:
    """``student.json`` of a bundle's student folder."""
    return dict(json.loads((Path(student_dir) / STUDENT_META).read_text(encoding="utf-8")))


def student_key(student_dir: Path) -> str:
    """Hash of the student's weights and metadata (keys the assembled checkpoint and the encoder's name)."""
    digest = hashlib.sha256()
    for name in (STUDENT_WEIGHTS, STUDENT_META):
        digest.update((Path(student_dir) / name).read_bytes())
    return digest.hexdigest()


def assemble_student(teacher_dir: Path, student_dir: Path, out_root: Path) -> Path:
    """A checkpoint folder = the teacher's files with the student's layers and the teacher's word embeddings.

    Written to a temporary folder and renamed into place (concurrent callers never see a partial folder); reused
    when it exists.  Refuses a student distilled for another word-embedding table.
    """
    import numpy as np
    from safetensors import safe_open
    from safetensors.numpy import save_file

    teacher_dir, student_dir = Path(teacher_dir), Path(student_dir)
    target = Path(out_root) / f"{teacher_dir.name}-student-{student_key(student_dir)[:16]}"
    if (target / "model.safetensors").exists():
        return target
    meta = student_meta(student_dir)
    tensors: dict[str, Any] = {}
    with safe_open(str(student_dir / STUDENT_WEIGHTS), "np") as fh:
        for key in fh.keys():  # noqa: SIM118 - safe_open has no __iter__
            tensors[key] = np.asarray(fh.get_tensor(key), np.float32)
    (weights,) = sorted(teacher_dir.glob("*.safetensors"))
    with safe_open(str(weights), "np") as fh:
        table = fh.get_tensor(WORD_EMBEDDINGS)
    position = tensors.get("embeddings.position_embeddings.weight")
    if position is not None and position.shape[1] != table.shape[1]:
        raise ValueError(f"student {student_dir} has width {position.shape[1]}, the teacher {table.shape[1]}")
    tensors[WORD_EMBEDDINGS] = np.asarray(table, np.float32)
    config = json.loads((teacher_dir / "config.json").read_text(encoding="utf-8"))
    config["num_hidden_layers"] = int(meta["layers"])
    Path(out_root).mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=out_root))
    try:
        for item in teacher_dir.iterdir():
            if item.suffix == ".safetensors" or item.name in ("config.json", "voce_adapter.json"):
                continue
            (shutil.copytree if item.is_dir() else shutil.copyfile)(item, tmp / item.name)
        (tmp / "config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
        save_file(tensors, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        (tmp / "voce_student.json").write_text(json.dumps({"teacher": teacher_dir.name, **meta}, indent=2) + "\n")
        os.chmod(tmp, 0o755)
        try:
            tmp.rename(target)
        except OSError:
            if not (target / "model.safetensors").exists():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target
