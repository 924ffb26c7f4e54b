"""Several fine-tuning configurations side by side on one GPU, ranked on the dev split.

Why: a lent GPU machine comes for a few minutes at a time and e5-small uses a
small part of an H100, so the configurations of a comparison run together, each
as its own ``python -m voce.training.finetune`` process.  Every run writes its
adapter, config, log and float16 embeddings under ``--work`` (the device, cuda by
default, comes from each config); what comes back
(``--out``) is bounded, because the machine returns few files: ``sweep.json``
(every run's config, per-epoch dev metrics and timing), the best run's
embeddings, and as many adapters, best first, as fit in ``--max-mb``.

Runs are ranked by the mean of the training heads' final dev metrics
(sentiment macro-F1, topic micro-F1, topic-polarity accuracy).  Those heads are
only a proxy for the calibrated LR heads ``voce train`` fits afterwards, so
treat close scores as ties and re-check with ``voce train --import-embeddings``::

    python -m voce.training.sweep --pack .cache/voce/slim --configs .cache/voce/slim/cfg \\
        --work /tmp/sweep --out $OUT --threads 4
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from voce.training.finetune.config import ADAPTER_FILENAME, LOG_FILENAME

#: final-epoch dev metrics averaged into the ranking score
RANK_METRICS = ("sentiment_macro_f1", "topic_micro_f1", "topic_polarity_accuracy")


def rank_score(log: dict[str, Any]) -> float | None:
    """Mean of :data:`RANK_METRICS` at the last epoch; ``None`` when the run did not finish."""
    if not log.get("epochs"):
        return None
    dev = log["epochs"][-1]["dev"]
    values = [dev.get(k) for k in RANK_METRICS]
    if any(v is None for v in values):
        return None
    return round(sum(float(v) for v in values) / len(values), 4)


def launch(pack: Path, config: Path, work: Path, threads: int, timeout_s: int, embed: bool) -> subprocess.Popen[bytes]:
    run_dir = work / config.stem
    run_dir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONUNBUFFERED": "1"}
    cmd = [
        "timeout", str(timeout_s), sys.executable, "-m", "voce.training.finetune", "--pack", str(pack),
        "--config", str(config), "--out", str(run_dir),
    ]  # fmt: skip
    if embed:
        cmd += ["--embed-out", str(run_dir / "emb" / "embeddings.npz"), "--embed-dtype", "float16"]
    log = (run_dir / "stdout.log").open("wb")
    return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)


def collect(configs: Sequence[Path], work: Path, return_codes: dict[str, int]) -> list[dict[str, Any]]:
    runs = []
    for config in configs:
        run_dir = work / config.stem
        log_file = run_dir / LOG_FILENAME
        log = json.loads(log_file.read_text(encoding="utf-8")) if log_file.exists() else {}
        stdout = (run_dir / "stdout.log").read_text(encoding="utf-8", errors="replace")
        runs.append({
            "name": config.stem,
            "config": json.loads(config.read_text(encoding="utf-8")),
            "return_code": return_codes[config.stem],
            "score": rank_score(log),
            "log": log,
            "stdout_tail": stdout[-2000:],
        })  # fmt: skip
    runs.sort(key=lambda r: -(r["score"] if r["score"] is not None else -1.0))
    return runs


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m voce.training.sweep", description=__doc__.split("\n\n")[0])
    parser.add_argument("--pack", type=Path, required=True, help="slim package (python -m voce.training.slim)")
    parser.add_argument("--configs", type=Path, required=True, help="folder of FinetuneConfig JSON files, one per run")
    parser.add_argument("--work", type=Path, required=True, help="scratch folder for every run's outputs")
    parser.add_argument("--out", type=Path, required=True, help="what comes back: sweep.json, best embeddings, adapters")
    parser.add_argument("--threads", type=int, default=4, help="CPU threads per run")
    parser.add_argument("--timeout", type=int, default=540, help="seconds after which a run is killed")
    parser.add_argument("--no-embed", action="store_true", help="compare dev metrics only, no embeddings")
    parser.add_argument("--max-mb", type=float, default=60.0, help="size budget of --out")
    args = parser.parse_args(argv)

    configs = sorted(args.configs.glob("*.json"))
    if not configs:
        raise SystemExit(f"no *.json configs in {args.configs}")
    started = time.perf_counter()
    procs = {c.stem: launch(args.pack, c, args.work, args.threads, args.timeout, not args.no_embed) for c in configs}
    codes = {name: p.wait() for name, p in procs.items()}
    runs = collect(configs, args.work, codes)
    args.out.mkdir(parents=True, exist_ok=True)
    budget = args.max_mb * 1024 * 1024
    returned: list[str] = []
    best = next((r for r in runs if r["score"] is not None), None)
    if best is not None:
        for part in sorted((args.work / best["name"] / "emb").glob("*.npz")):
            target = args.out / f"emb_{best['name']}_{part.name}"
            shutil.copyfile(part, target)
            budget -= target.stat().st_size
            returned.append(target.name)
    for run in runs:
        adapter = args.work / run["name"] / ADAPTER_FILENAME
        if run["score"] is not None and adapter.exists() and adapter.stat().st_size <= budget:
            target = args.out / f"adapter_{run['name']}.safetensors"
            shutil.copyfile(adapter, target)
            budget -= target.stat().st_size
            returned.append(target.name)
    summary = {
        "ranked_by": f"mean of final-epoch dev {', '.join(RANK_METRICS)} (training heads)",
        "wall_seconds": round(time.perf_counter() - started, 1),
        "returned": returned,
        "runs": runs,
    }
    (args.out / "sweep.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    for r in runs:
        print(f"{r['name']}: score {r['score']} rc {r['return_code']} "
              f"wall {r['log'].get('wall_seconds')} s", flush=True)  # fmt: skip
    print(f"returned: {', '.join(returned)}", flush=True)


if __name__ == "__main__":
    main()
