"""Which int8 recipe for the fast profile: fidelity to the fp32 vectors and speed, side by side in one run.

Each variant is ONNX Runtime's dynamic quantisation (weights int8 per output channel, activations per batch) of the
served fp32 graph (the bundle's merged checkpoint), with some layers' feed-forward output projection kept fp32.
On the same real IT/EN comments it measures the cosine of every comment's vector to the fp32 one (mean, 5th
percentile, lowest) and the throughput of ``encode`` in alternating rounds against fp32.  The chosen recipe is
``E5_SMALL_INT8_KEEP_FP32`` in ``models/encoders/factory.py``; what it costs in task quality is ``voce eval
--precision int8`` (README "Speed").

    python -m benchmarks.bench_int8 [--n 300] [--rounds 3] [--out reports/perf/int8_recipe.json]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from voce.eval.bench import draw, load_pool
from voce.models.bundle import VoceBundle, default_bundle_path
from voce.models.encoders.factory import resolve_checkpoint
from voce.models.encoders.onnx_backend import OnnxEncoder, export_onnx, quantize_int8

#: name -> layers whose feed-forward output projection stays fp32 (None: all twelve)
VARIANTS: dict[str, tuple[int, ...] | None] = {
    "everything int8": (),
    "FFN output projections fp32 (all layers)": None,
    "FFN output projection fp32 in layers 0-5": (0, 1, 2, 3, 4, 5),
    "FFN output projection fp32 in layers 6-11": (6, 7, 8, 9, 10, 11),
    "FFN output projection fp32 in layers 0-3": (0, 1, 2, 3),
    "FFN output projection fp32 in layer 4": (4,),
    "FFN output projection fp32 in layers 4-5 (shipped)": (4, 5),
}


def fidelity(ref: np.ndarray, vectors: np.ndarray) -> dict[str, float]:
    """Cosine of each row to the reference's (both unit-norm): mean, 5th percentile, lowest."""
    cos = (ref * vectors).sum(axis=1)
    return {"cosine_mean": round(float(cos.mean()), 4), "cosine_p5": round(float(np.percentile(cos, 5)), 4),
            "cosine_min": round(float(cos.min()), 4)}


def alternating_seconds(encoders: dict[str, Any], texts: list[str], rounds: int) -> dict[str, float]:
    """Seconds each encoder spent on ``encode(texts)`` over ``rounds`` rounds taken in turn (noise hits all alike)."""
    seconds = dict.fromkeys(encoders, 0.0)
    for _ in range(rounds):
        for name, enc in encoders.items():
            t0 = time.perf_counter()
            enc.encode(texts)
            seconds[name] += time.perf_counter() - t0
    return seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--cache-dir", type=Path, default=Path(os.environ.get("VOCE_CACHE_DIR", Path.home() / ".cache/voce")))
    ap.add_argument("--out", type=Path, default=Path("reports/perf/int8_recipe.json"))
    args = ap.parse_args()

    bundle = VoceBundle.load(default_bundle_path())
    export_dir = export_onnx(resolve_checkpoint(bundle.encoder_spec(cache_dir=args.cache_dir), print), args.cache_dir / "onnx")
    texts = [t.text for t in draw(load_pool(), args.n, args.seed)]
    fp32 = OnnxEncoder(export_dir)
    ref = fp32.encode(texts)
    encoders = {name: OnnxEncoder(export_dir, graph=quantize_int8(export_dir, keep).name) for name, keep in VARIANTS.items()}
    rows: dict[str, dict[str, object]] = {
        name: {"keep_fp32_layers": VARIANTS[name], **fidelity(ref, enc.encode(texts))} for name, enc in encoders.items()
    }
    seconds = alternating_seconds({"fp32": fp32, **encoders}, texts, args.rounds)
    for name in encoders:
        rows[name]["speed_vs_fp32"] = round(seconds["fp32"] / seconds[name], 3)
    report = {
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": f"python -m benchmarks.bench_int8 --n {args.n} --rounds {args.rounds} --seed {args.seed}",
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count()},
        "encoder": fp32.name, "texts": len(texts),
        "fp32_docs_per_s": round(args.rounds * len(texts) / seconds["fp32"], 1),
        "variants": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    for name, row in rows.items():
        print(f"{name:<52} cos mean {row['cosine_mean']:.4f} p5 {row['cosine_p5']:.4f} min {row['cosine_min']:.4f}"
              f"  x{row['speed_vs_fp32']:.2f}")


if __name__ == "__main__":
    main()
