"""The distilled student: stored without the word-embedding table, assembled into a checkpoint in the cache, named
apart from its teacher, refused for a bundle it was not distilled for."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from voce.models.bundle import BundleError, VoceBundle, default_bundle_path
from voce.models.encoders.factory import E5_SMALL_INT8_KEEP_FP32, EncoderSpec, encoder_name, int8_keep_fp32
from voce.models.encoders.student import (
    STUDENT_DIRNAME,
    STUDENT_META,
    STUDENT_WEIGHTS,
    WORD_EMBEDDINGS,
    assemble_student,
    student_key,
)

KEEP = [0, 2, 4, 7, 9, 11]
TEXTS = ["Il pacco è arrivato in ritardo e la scatola era danneggiata.", "Great support, fixed in five minutes.", "ok"]


def _student_from(checkpoint: Path, out: Path, teacher: str = "teacher", keep: list[int] = KEEP) -> Path:
    """A student folder as voce.training.distill writes it: the kept layers renumbered, no word-embedding table."""
    from safetensors.numpy import load_file, save_file

    (weights,) = sorted(checkpoint.glob("*.safetensors"))
    full = load_file(str(weights))
    state: dict[str, np.ndarray] = {}
    for key, value in full.items():
        if key == WORD_EMBEDDINGS or key.startswith("pooler."):
            continue
        if key.startswith("encoder.layer."):
            layer = int(key.split(".")[2])
            if layer not in keep:
                continue
            key = key.replace(f"encoder.layer.{layer}.", f"encoder.layer.{keep.index(layer)}.", 1)
        state[key] = value.astype(np.float16)
    out.mkdir(parents=True)
    save_file(state, str(out / STUDENT_WEIGHTS))
    (out / STUDENT_META).write_text(json.dumps({"teacher": teacher, "keep_layers": keep, "layers": len(keep)}))
    return out


def test_student_names_the_encoder_and_maps_the_int8_layers(tmp_path: Path) -> None:
    folder = tmp_path / "s"
    folder.mkdir()
    (folder / STUDENT_WEIGHTS).write_bytes(b"weights")
    (folder / STUDENT_META).write_text(json.dumps({"teacher": "t", "keep_layers": KEEP, "layers": 6}))
    full = EncoderSpec(cache_dir=tmp_path)
    student = full.model_copy(update={"student": folder})
    assert encoder_name(student) != encoder_name(full)
    assert f"student={student_key(folder)[:16]}" in encoder_name(student)
    # the teacher's layer 4 is the student's layer 2; its layer 5 was dropped
    assert int8_keep_fp32(full) == E5_SMALL_INT8_KEEP_FP32 and int8_keep_fp32(student) == (2,)


def test_bundle_without_a_student_refuses_the_profile(tmp_path: Path) -> None:
    copy = tmp_path / "bundle"
    shutil.copytree(default_bundle_path(), copy, ignore=shutil.ignore_patterns(STUDENT_DIRNAME))
    bundle = VoceBundle.load(copy)
    assert bundle.student is None
    with pytest.raises(BundleError, match="no distilled student"):
        bundle.encoder_spec(cache_dir=tmp_path, student=True)


def test_student_of_another_teacher_is_refused(tmp_path: Path) -> None:
    copy = tmp_path / "bundle"
    shutil.copytree(default_bundle_path(), copy, ignore=shutil.ignore_patterns(STUDENT_DIRNAME))
    (copy / STUDENT_DIRNAME).mkdir()
    (copy / STUDENT_DIRNAME / STUDENT_WEIGHTS).write_bytes(b"w")
    (copy / STUDENT_DIRNAME / STUDENT_META).write_text(json.dumps({"teacher": "onnx/another", "keep_layers": KEEP,
                                                                    "layers": 6}))
    bundle = VoceBundle.load(copy)
    assert bundle.student == copy / STUDENT_DIRNAME
    with pytest.raises(BundleError, match="distilled from another encoder"):
        bundle.encoder_spec(cache_dir=tmp_path, student=True)
    # saving the bundle keeps its student
    saved = VoceBundle.load(bundle.save(tmp_path / "saved"))
    assert saved.student is not None and (saved.student / STUDENT_WEIGHTS).read_bytes() == b"w"


@pytest.mark.real_model
@pytest.mark.slow
def test_assembled_student_runs_the_kept_layers(e5_checkpoint: Path, tmp_path: Path) -> None:
    import torch
    from transformers import AutoModel

    from voce.models.encoders.onnx_backend import OnnxEncoder, export_onnx

    folder = _student_from(e5_checkpoint, tmp_path / "student")
    assembled = assemble_student(e5_checkpoint, folder, tmp_path / "cache")
    assert assemble_student(e5_checkpoint, folder, tmp_path / "cache") == assembled  # reused
    assert json.loads((assembled / "config.json").read_text())["num_hidden_layers"] == len(KEEP)
    # the reference: the teacher with the other layers dropped, in torch (fp16-rounded like the stored student)
    model = AutoModel.from_pretrained(str(e5_checkpoint), attn_implementation="eager").eval()
    model.encoder.layer = torch.nn.ModuleList([model.encoder.layer[i] for i in KEEP])
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name != WORD_EMBEDDINGS:
                p.copy_(p.to(torch.float16).to(torch.float32))
    enc = OnnxEncoder(export_onnx(assembled, tmp_path / "onnx"))
    ids = [[*enc.specials.head, *t, *enc.specials.tail] for t in enc.token_ids(TEXTS[:1])]
    with torch.no_grad():
        want = model(input_ids=torch.tensor(ids)).last_hidden_state.mean(dim=1)[0].numpy()
    got = enc.encode(TEXTS[:1])[0]
    np.testing.assert_allclose(got, want / np.linalg.norm(want), atol=2e-4)


@pytest.mark.real_model
@pytest.mark.slow
def test_shipped_student_serves_the_fast_profile(voce_cache_dir: Path) -> None:
    """The bundle's own student, int8, through the analyzer exactly as VOCE_ENCODER_STUDENT=true loads it."""
    from voce.models.spec import AnalyzerSpec, load_analyzer
    from voce.models.types import DocumentInput

    bundle = VoceBundle.load(default_bundle_path())
    if bundle.student is None:
        pytest.skip("this bundle ships no student")
    analyzer = load_analyzer(AnalyzerSpec(cache_dir=voce_cache_dir, precision="int8", student=True))
    assert "student=" in analyzer.encoder.name and "precision=int8" in analyzer.encoder.name
    docs = [DocumentInput(id=str(i), text=t) for i, t in enumerate(TEXTS)]
    results, errors = analyzer.analyze(docs)
    assert not errors and [r.id for r in results] == ["0", "1", "2"]
    assert results[0].sentiment.label == "negative" and results[1].sentiment.label == "positive"
    # the same comment alone or in a batch: the same result (int8 runs rows alone)
    alone, _ = analyzer.analyze(docs[:1])
    assert alone[0].model_dump() == results[0].model_dump()
