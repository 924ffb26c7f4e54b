"""Distil the bundle's fine-tuned encoder into a shallower student (the "student" encoder of the fast profile).

The student starts as the teacher with some of its twelve layers dropped (``--keep``), shares the teacher's word
embeddings (frozen, not stored: the table stays the converted e5 checkpoint's), and learns to give the teacher's
token states: masked mean-squared error on every token's last hidden state (sentence and chat-turn vectors are pooled
out of those, "late chunking") plus one minus the cosine of the pooled comment vectors (what the heads read).  The
bundle's heads are not retrained: the student is trained to land in the teacher's space, and ``voce eval
--student`` measures what that costs.

Texts: the unlabelled real customer texts of ``../shared/data/unlabelled`` (Italian public-service tweets and Amazon
reviews, English brand-complaint tweets and airline reviews) and the training split of the public labelled sets, minus
every text a dev set scores (the annotated real-text corpus, the public dev split, ATE_ABSITA's official dev set).
The teacher's token states are computed once with the served ONNX graph.

    python -m voce.training.distill [--minutes 40] [--keep 0,2,4,7,9,11] [--max-texts 30000]

writes ``models/bundles/default/student/`` (``student.safetensors`` in float16 without the word-embedding table,
``student.json`` with the kept layers, the teacher's encoder name, the data's hash, the loss curve and the time).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import random
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from voce.data.datasets import load_all, load_ate_absita
from voce.data.realcx import load_realcx
from voce.data.splits import SplitSpec
from voce.data.unlabelled import UNLABELLED, load_unlabelled
from voce.models.bundle import VoceBundle, default_bundle_path
from voce.models.encoders.factory import encoder_name, resolve_checkpoint
from voce.models.encoders.onnx_backend import OnnxEncoder, export_onnx
from voce.models.encoders.student import STUDENT_DIRNAME, STUDENT_META, STUDENT_WEIGHTS, WORD_EMBEDDINGS


def distil_texts(bundle: VoceBundle, data_dir: Path | None, max_texts: int, seed: int) -> tuple[list[str], str]:
    """The texts the student learns from, de-duplicated and shuffled, and a hash of their ids: the unlabelled real
    texts minus the annotated corpus, and the training split of the public labelled sets (as the bundle's manifest
    splits them); no text that any dev set scores (the public dev split, ATE_ABSITA's official dev set, the
    annotated corpus) is used, compared by text, not only by id."""
    annotated = load_realcx(data_dir)
    examples = [e for rows in load_all(data_dir).values() for e in rows]
    train, dev = SplitSpec.from_manifest(bundle.manifest_extra.get("split")).split(examples)
    scored = {r.text.strip() for r in annotated} | {e.text.strip() for e in dev}
    scored |= {e.text.strip() for e in load_ate_absita("dev", data_dir)}
    annotated_ids = {row.uid for row in annotated}
    seen: set[str] = set()
    picked: list[tuple[str, str]] = []
    rows = [(row.uid, row.text) for name in UNLABELLED for row in load_unlabelled(name, data_dir)
            if row.uid not in annotated_ids] + [(e.uid, e.text) for e in train]
    for uid, raw in rows:
        text = raw.strip()
        if not text or text in scored or text in seen:
            continue
        seen.add(text)
        picked.append((uid, text))
    random.Random(seed).shuffle(picked)
    picked = picked[:max_texts]
    digest = hashlib.sha256("\n".join(sorted(uid for uid, _ in picked)).encode()).hexdigest()
    return [t for _, t in picked], digest


def padded(rows: list[list[int]], pad: int) -> tuple[np.ndarray, np.ndarray]:
    """Token ids padded to the longest row, and the attention mask."""
    width = max(len(r) for r in rows)
    m = np.full((len(rows), width), pad, np.int64)
    mask = np.zeros((len(rows), width), np.int64)
    for k, r in enumerate(rows):
        m[k, : len(r)], mask[k, : len(r)] = r, 1
    return m, mask


def teacher_states(teacher: OnnxEncoder, ids: list[list[int]], batches: list[list[int]]) -> dict[int, np.ndarray]:
    """Every text's last hidden states from the served fp32 graph (float16, its own tokens only)."""
    t0 = time.perf_counter()
    targets: dict[int, np.ndarray] = {}
    for n, b in enumerate(batches):
        m, mask = padded([ids[i] for i in b], teacher.specials.pad)
        states = teacher._infer(m, mask)
        for k, i in enumerate(b):
            targets[i] = states[k, : len(ids[i])].astype(np.float16)
        if n % 100 == 0:
            print(f"teacher states {n}/{len(batches)} batches ({time.perf_counter() - t0:.0f} s)", flush=True)
    return targets


def make_student(checkpoint: Path, keep: list[int]) -> Any:
    """The teacher with only the ``keep`` layers, no dropout or pooler, its word-embedding table frozen."""
    from transformers import AutoModel

    model: Any = AutoModel.from_pretrained(str(checkpoint), attn_implementation="eager", use_safetensors=True,
                                           hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    model.encoder.layer = type(model.encoder.layer)([model.encoder.layer[i] for i in keep])
    model.config.num_hidden_layers = len(keep)
    model.embeddings.word_embeddings.weight.requires_grad_(False)
    if getattr(model, "pooler", None) is not None:
        model.pooler = None
    return model


def distil(model: Any, ids: list[list[int]], targets: dict[int, np.ndarray], batches: list[list[int]],
           args: argparse.Namespace, pad: int, dim: int) -> tuple[int, list[dict[str, float]]]:
    """Train ``model`` for ``args.minutes`` (warm-up then cosine decay, planned from the first 30 steps' time);
    return the steps taken and the loss curve."""
    import torch

    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.01)
    model.train()
    budget = args.minutes * 60
    rng = random.Random(args.seed)
    curve: list[dict[str, float]] = []
    step, started = 0, time.perf_counter()
    planned: int | None = None
    epoch = 0
    done = False
    while not done:
        epoch += 1
        todo = batches[:]
        rng.shuffle(todo)
        for b in todo:
            elapsed = time.perf_counter() - started
            if step == 30:  # plan the schedule from the measured step time
                planned = max(60, int(budget / (elapsed / step)))
                print(f"{elapsed / step:.2f} s/step: {planned} steps in {args.minutes:g} min "
                      f"({planned * args.batch / len(ids):.2f} epochs)", flush=True)
            if planned is not None and step >= planned:
                done = True
                break
            total = planned or 10**9
            warm = max(1, total // 20)
            lr = args.lr * min(1.0, (step + 1) / warm) * (0.5 * (1 + math.cos(math.pi * min(1.0, step / total))))
            for g in opt.param_groups:
                g["lr"] = lr
            m, mask = padded([ids[i] for i in b], pad)
            width = m.shape[1]
            tgt = np.zeros((len(b), width, dim), np.float32)
            for k, i in enumerate(b):
                tgt[k, : len(ids[i])] = targets[i]
            ids_t, mask_t, tgt_t = torch.from_numpy(m), torch.from_numpy(mask), torch.from_numpy(tgt)
            out = model(input_ids=ids_t, attention_mask=mask_t).last_hidden_state
            w = mask_t.unsqueeze(-1).to(out.dtype)
            tok = (((out - tgt_t) ** 2) * w).sum() / (w.sum() * dim)
            pooled_s = (out * w).sum(1) / w.sum(1)
            pooled_t = (tgt_t * w).sum(1) / w.sum(1)
            cos = torch.nn.functional.cosine_similarity(pooled_s, pooled_t, dim=-1)
            loss = tok + args.cos_weight * (1 - cos).mean()
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            step += 1
            tok, cos = tok.detach(), cos.detach()
            if step % 25 == 0:
                curve.append({"step": step, "epoch": epoch, "mse": round(float(tok), 6),
                              "cosine": round(float(cos.mean()), 5), "lr": lr})
                print(f"step {step} epoch {epoch} mse {float(tok):.5f} cos {float(cos.mean()):.4f} "
                      f"({time.perf_counter() - started:.0f} s)", flush=True)
    return step, curve



def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--keep", default="0,2,4,7,9,11", help="teacher layers the student keeps, in order")
    ap.add_argument("--minutes", type=float, default=40.0, help="training time budget (the schedule fits it)")
    ap.add_argument("--max-texts", type=int, default=30000)
    ap.add_argument("--max-tokens", type=int, default=128, help="training texts are cut here (serving windows to 512)")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=2e-4)
    ap.add_argument("--cos-weight", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=13)
    ap.add_argument("--data-dir", type=Path, default=None)
    ap.add_argument("--cache-dir", type=Path, default=Path(os.environ.get("VOCE_CACHE_DIR", Path.home() / ".cache/voce")))
    ap.add_argument("--out", type=Path, default=default_bundle_path() / STUDENT_DIRNAME)
    args = ap.parse_args()

    import torch
    from safetensors.torch import save_file

    torch.manual_seed(args.seed)
    torch.set_num_threads(os.cpu_count() or 1)
    keep = [int(x) for x in args.keep.split(",")]
    bundle = VoceBundle.load(default_bundle_path())
    spec = bundle.encoder_spec(cache_dir=args.cache_dir)
    checkpoint = resolve_checkpoint(spec, print)
    assert isinstance(checkpoint, Path)
    teacher = OnnxEncoder(export_onnx(checkpoint, args.cache_dir / "onnx", progress=print))
    texts, data_hash = distil_texts(bundle, args.data_dir, args.max_texts, args.seed)
    print(f"{len(texts)} texts")

    # token ids as served: prefix, specials, cut at max_tokens
    sp = teacher.specials
    room = args.max_tokens - len(sp.head) - len(sp.tail)
    ids = [[*sp.head, *t[:room], *sp.tail] for t in teacher.token_ids(texts)]
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
    batches = [order[i : i + args.batch] for i in range(0, len(order), args.batch)]
    t0 = time.perf_counter()
    targets = teacher_states(teacher, ids, batches)
    teacher_s = time.perf_counter() - t0
    print(f"teacher states in {teacher_s:.0f} s")
    model = make_student(checkpoint, keep)
    t0 = time.perf_counter()
    step, curve = distil(model, ids, targets, batches, args, sp.pad, teacher.dim)
    train_s = time.perf_counter() - t0

    state = {k: v.detach().to(torch.float16).contiguous() for k, v in model.state_dict().items()
             if k != WORD_EMBEDDINGS}
    args.out.mkdir(parents=True, exist_ok=True)
    save_file(state, str(args.out / STUDENT_WEIGHTS))
    os.chmod(args.out / STUDENT_WEIGHTS, 0o644)
    meta = {
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "teacher": encoder_name(spec), "keep_layers": keep, "layers": len(keep),
        "loss": "masked token-state MSE + cos_weight x (1 - cosine of pooled vectors)",
        "texts": len(texts), "data_sha256": data_hash,
        "sources": [*UNLABELLED, "training split of the public labelled sets (bundle manifest's split)"],
        "excluded": "every text any dev set scores: the annotated real-text corpus, the public dev split, "
                    "ATE_ABSITA's official dev set (compared by text)",
        "max_tokens": args.max_tokens, "batch": args.batch, "lr": args.lr, "cos_weight": args.cos_weight,
        "seed": args.seed, "steps": step, "epochs": round(step * args.batch / len(texts), 2),
        "teacher_states_s": round(teacher_s, 1), "train_s": round(train_s, 1), "curve": curve,
        "command": "python -m voce.training.distill " + " ".join(
            f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if k not in ("data_dir", "cache_dir", "out")),
    }
    (args.out / STUDENT_META).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    print(f"student written to {args.out} ({step} steps, {train_s:.0f} s)")


if __name__ == "__main__":
    main()
