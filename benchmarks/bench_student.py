"""The encoders of the profiles side by side in one run: fidelity to the served fp32 encoder and speed.

fp32 (default), int8, the distilled student in fp32 and in int8 (``VOCE_ENCODER_STUDENT``), on the same real IT/EN
comments: each comment's vector's cosine to the fp32 encoder's (mean, 5th percentile, lowest) and ``encode``
throughput in alternating rounds.  What the profiles cost in task quality is ``voce eval [--precision int8]
[--student]`` (README "Speed").

    python -m benchmarks.bench_student [--n 300] [--rounds 3] [--out reports/perf/student_encoders.json]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
from datetime import UTC, datetime
from pathlib import Path

from benchmarks.bench_int8 import alternating_seconds, fidelity
from voce.eval.bench import draw, load_pool
from voce.models.bundle import VoceBundle, default_bundle_path
from voce.models.encoders.base import Encoder
from voce.models.encoders.factory import load_encoder


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--cache-dir", type=Path, default=Path(os.environ.get("VOCE_CACHE_DIR", Path.home() / ".cache/voce")))
    ap.add_argument("--out", type=Path, default=Path("reports/perf/student_encoders.json"))
    args = ap.parse_args()

    bundle = VoceBundle.load(default_bundle_path())
    encoders: dict[str, Encoder] = {}
    for name, precision, student in (("fp32", "fp32", False), ("int8", "int8", False),
                                     ("student fp32", "fp32", True), ("student int8", "int8", True)):
        spec = bundle.encoder_spec(cache_dir=args.cache_dir, precision=precision, student=student)  # type: ignore[arg-type]
        encoders[name] = load_encoder(spec, progress=print)
    texts = [t.text for t in draw(load_pool(), args.n, args.seed)]
    ref = encoders["fp32"].encode(texts)
    rows: dict[str, dict[str, object]] = {
        name: {"encoder": enc.name, **fidelity(ref, enc.encode(texts))} for name, enc in encoders.items()
    }
    seconds = alternating_seconds(encoders, texts, args.rounds)
    for name in encoders:
        rows[name]["docs_per_s"] = round(args.rounds * len(texts) / seconds[name], 1)
        rows[name]["speed_vs_fp32"] = round(seconds["fp32"] / seconds[name], 3)
    report = {
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": f"python -m benchmarks.bench_student --n {args.n} --rounds {args.rounds} --seed {args.seed}",
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count()},
        "texts": len(texts), "encoders": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    for name, row in rows.items():
        print(f"{name:<14} cos mean {row['cosine_mean']:.4f} p5 {row['cosine_p5']:.4f} min {row['cosine_min']:.4f}"
              f"  {row['docs_per_s']}/s x{row['speed_vs_fp32']:.2f}")


if __name__ == "__main__":
    main()
