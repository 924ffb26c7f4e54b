"""Where the ONNX encoder's memory goes, and what the session settings and OpenVINO cost or win (issue 14).

Three parts, each written to JSON:

* **breakdown** (``reports/perf/memory_breakdown.json``): RSS after each stage — Python + imports, the
  tokenizer, the ONNX Runtime session (with and without weight prepacking), then the arena after batches of
  growing size — for the graph that holds the word-embedding table (format 1, ``embeddings="graph"``) and the
  one that reads it from disk (format 2, the default).  Every stage list runs in its own fresh process.
* **settings** (``reports/perf/encoder_memory.json``): batched ``encode()`` throughput of ~400 real texts for
  each contender (graph optimisation levels, arena off, arena shrinkage after each run, one vs two threads,
  the in-graph table, OpenVINO on the same graph), **alternating contenders round by round in one process**,
  reported as the median per-round time ratio to the default.  The machine is shared and noisy: only these
  ratios mean anything, never the absolute rates across runs.  RSS after the same texts (and after one batch
  of 512-token windows, which is what grows the arena) is measured per contender in a fresh process.
* **parity**: max abs difference of ``encode()`` and ``encode_spans()`` vectors of every contender against
  the in-graph reference, on the same texts plus a few short probes in other scripts and languages.

Texts come from ``$VOCE_DATA_DIR`` or ``../shared/data`` (IT and EN, tweets to long reviews); without that
folder the script says so and stops.

    cd /work/main && export VOCE_CACHE_DIR=$PWD/.cache/voce HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
    .venv/bin/python benchmarks/bench_encoder_memory.py --texts 400 --rounds 3
"""
from __future__ import annotations

import argparse
import csv
import ctypes
import gc
import json
import os
import platform
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

#: short probes outside IT/EN (written here, not real feedback): rows of the table an IT/EN service rarely needs
OTHER_LANGUAGE_PROBES = [
    "Der Kundendienst hat nie geantwortet, sehr enttäuschend.",
    "Le colis est arrivé en retard et la boîte était abîmée.",
    "El personal fue muy amable, volveré seguro.",
    "O atendimento foi péssimo e demorado.",
    "Доставка опоздала на неделю.",
    "服务很好，但是价格太贵了。",
    "配送が遅れて、箱が壊れていました。",
    "الخدمة كانت سيئة جدا",
    "सेवा बहुत अच्छी थी",
    "Obsługa klienta była bardzo pomocna.",
    "Πολύ καλή εξυπηρέτηση!",
    "👍👍 ok 🙏",
]


# --------------------------------------------------------------------------- data
def data_dir() -> Path:
    return Path(os.environ.get("VOCE_DATA_DIR", ROOT.parent / "shared" / "data"))


def _csv_column(path: Path, column: str, delimiter: str = ",") -> list[str]:
    with path.open(encoding="utf-8", newline="") as fh:
        return [row[column] for row in csv.DictReader(fh, delimiter=delimiter) if row.get(column)]


def load_texts(n: int) -> list[str]:
    """``n`` real texts, an even share from each source, every k-th row (deterministic), all lengths."""
    root = data_dir()
    if not root.is_dir():
        raise SystemExit(f"no real data at {root} (set VOCE_DATA_DIR): this benchmark measures real texts only")
    sources: list[list[str]] = []
    readers: list[Callable[[], list[str]]] = [
        lambda: _csv_column(root / "sentipolc2016/train.csv", "text"),
        lambda: _csv_column(root / "absita2018/train.csv", "sentence", ";"),
        lambda: [json.loads(line)["sentence"] for line in (root / "ate_absita2020/train.ndjson").open(encoding="utf-8")],
        lambda: _csv_column(root / "unlabelled/it_amazon_gdmr/data.csv", "text"),
        lambda: _csv_column(root / "unlabelled/it_pa_tweets_uniba/data.csv", "text"),
        lambda: _csv_column(root / "twitter_airline_en/train.csv", "text"),
        lambda: [s.findtext("text") or "" for s in ET.parse(root / "semeval2016_restaurants_en/train.xml").iter("sentence")],
        lambda: _csv_column(root / "unlabelled/en_brand_complaint_tweets/data.csv", "text"),
        lambda: _csv_column(root / "unlabelled/en_ba_airline_reviews/data.csv", "text"),
    ]
    for read in readers:
        try:
            sources.append([t.strip() for t in read() if t and t.strip()])
        except (OSError, KeyError, ET.ParseError) as exc:
            print(f"skipping a source: {exc}", file=sys.stderr)
    sources = [s for s in sources if s]
    if not sources:
        raise SystemExit(f"no readable texts under {root}")
    per = -(-n // len(sources))
    texts: list[str] = []
    for rows in sources:
        step = max(1, len(rows) // per)
        texts += rows[::step][:per]
    return texts[:n]


# --------------------------------------------------------------------------- memory
def rss_mb() -> float:
    with open("/proc/self/status", encoding="ascii") as fh:
        return next(int(line.split()[1]) / 1024 for line in fh if line.startswith("VmRSS:"))


def hwm_mb() -> float:
    with open("/proc/self/status", encoding="ascii") as fh:
        return next(int(line.split()[1]) / 1024 for line in fh if line.startswith("VmHWM:"))


def trim() -> None:
    """Give freed heap back to the OS, so RSS shows what is live rather than what malloc kept."""
    gc.collect()
    ctypes.CDLL("libc.so.6").malloc_trim(0)


def _checkpoint() -> Path:
    """The checkpoint the service runs: the shipped bundle's encoder (its adapter merged), as ``voce serve`` loads it."""
    from voce.models.bundle import VoceBundle
    from voce.models.encoders.factory import _local_checkpoint
    from voce.service.settings import Settings

    spec = Settings().analyzer_spec()
    bundle = VoceBundle.load(spec.bundle_path())
    encoder = bundle.encoder_spec(backend="onnx", model=spec.encoder, cache_dir=cache_dir(), threads=None)
    return _local_checkpoint(encoder, None)


def cache_dir() -> Path:
    return Path(os.environ.get("VOCE_CACHE_DIR", ROOT / ".cache" / "voce"))


def export_dirs() -> dict[str, Path]:
    """Both layouts of the same checkpoint (exported once, cached)."""
    from voce.models.encoders.onnx_backend import export_onnx

    checkpoint = _checkpoint()
    out = cache_dir() / "onnx"
    return {"external": export_onnx(checkpoint, out), "graph": export_onnx(checkpoint, out, embeddings="graph")}


# --------------------------------------------------------------------------- contenders
#: name -> (layout, session option changes, run option entries, threads)
CONTENDERS: dict[str, dict[str, Any]] = {
    "default": {},
    "graph_table": {"layout": "graph"},
    "opt_extended": {"opt": "ORT_ENABLE_EXTENDED"},
    "opt_basic": {"opt": "ORT_ENABLE_BASIC"},
    "opt_disabled": {"opt": "ORT_DISABLE_ALL"},
    "arena_off": {"arena": False},
    "arena_never_shrinks": {"shrink_above": None},
    "arena_shrink_above_32x128": {"shrink_above": 32 * 128 * 128},
    "no_prepacking": {"config": {"session.disable_prepacking": "1"}},
    "threads_1": {"threads": 1},
    "openvino": {"openvino": True},
}


class _OpenVinoSession:
    """``InferenceSession.run`` over an OpenVINO compiled model of the same ONNX file (benchmark only)."""

    def __init__(self, model_path: Path, threads: int) -> None:
        import openvino as ov

        core = ov.Core()
        self.precision_default = str(core.get_property("CPU", "INFERENCE_PRECISION_HINT"))
        config = {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32"}
        self.compiled = core.compile_model(core.read_model(str(model_path)), "CPU", config)
        self.request = self.compiled.create_infer_request()

    def run(self, _names: list[str], feed: dict[str, np.ndarray], _run_options: Any = None) -> list[np.ndarray]:
        out = self.request.infer(feed)
        return [np.array(out[self.compiled.output(0)])]


def build(name: str, dirs: dict[str, Path], threads: int) -> Any:
    from voce.models.encoders.onnx_backend import MODEL_FILENAME, OnnxEncoder, onnxruntime_offline

    ort = onnxruntime_offline()
    c = CONTENDERS[name]

    def tune(options: Any) -> None:
        if "opt" in c:
            options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, c["opt"])
        if c.get("arena") is False:
            options.enable_cpu_mem_arena = False
        for key, value in c.get("config", {}).items():
            options.add_session_config_entry(key, value)

    export_dir = dirs[c.get("layout", "external")]
    enc = OnnxEncoder(export_dir, threads=c.get("threads", threads), session_options=tune)
    if "shrink_above" in c and enc.arena_shrink_above is not None:
        enc.arena_shrink_above = c["shrink_above"]
    if c.get("openvino"):
        enc._session = _OpenVinoSession(export_dir / MODEL_FILENAME, c.get("threads", threads))
    return enc


def _long_batch_ids(rows: int = 16, width: int = 512) -> tuple[np.ndarray, np.ndarray]:
    ids = np.full((rows, width), 5, np.int64)
    ids[:, 0], ids[:, -1] = 0, 2
    return ids, np.ones((rows, width), np.int64)


# --------------------------------------------------------------------------- children (one process each)
def child_stages(layout: str, prepack: bool, threads: int) -> dict[str, Any]:
    """RSS after each loading stage and after batches of growing size, straight on ONNX Runtime."""
    out: list[dict[str, Any]] = [{"stage": "python", "rss_mb": rss_mb()}]
    export_dir = export_dirs()[layout]  # resolving the checkpoint imports the bundle code (sklearn, scipy)
    trim()
    out.append({"stage": "voce settings + bundle code (finding the checkpoint)", "rss_mb": rss_mb()})
    import tokenizers

    from voce.models.encoders.onnx_backend import MODEL_FILENAME, EmbeddingRows, onnxruntime_offline

    ort = onnxruntime_offline()
    out.append({"stage": "imports (onnxruntime, tokenizers)", "rss_mb": rss_mb()})
    meta = json.loads((export_dir / "voce_onnx.json").read_text(encoding="utf-8"))
    tok = tokenizers.Tokenizer.from_file(str(export_dir / "tokenizer.json"))
    trim()
    out.append({"stage": "tokenizer", "rss_mb": rss_mb()})
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if not prepack:
        options.add_session_config_entry("session.disable_prepacking", "1")
    session = ort.InferenceSession(str(export_dir / MODEL_FILENAME), sess_options=options, providers=["CPUExecutionProvider"])
    peak_load = hwm_mb()
    trim()
    out.append({"stage": "ort session", "rss_mb": rss_mb(), "peak_during_load_mb": peak_load})
    rows = None
    if meta.get("embeddings"):
        rows = EmbeddingRows(export_dir / meta["embeddings"]["file"], meta["embeddings"]["rows"], meta["embeddings"]["dim"])
    for b, width in [(1, 16), (32, 32), (32, 64), (32, 128), (8, 512), (16, 512), (32, 128), (1, 16)]:
        ids = np.full((b, width), 5, np.int64)
        ids[:, ::7] = np.arange(b * width).reshape(b, width)[:, ::7] % 50_000
        mask = np.ones((b, width), np.int64)
        feed = {"input_ids": ids} if rows is None else {"inputs_embeds": rows.lookup(ids)}
        session.run(None, {**feed, "attention_mask": mask})
        out.append({"stage": f"after a {b}x{width} batch", "rss_mb": rss_mb()})
    del tok
    return {"layout": layout, "prepacking": prepack, "threads": threads, "stages": out, "peak_mb": hwm_mb()}


def child_memory(name: str, n_texts: int, threads: int) -> dict[str, Any]:
    """RSS of one contender: loaded, after encoding the benchmark texts, after one batch of 512-token windows."""
    dirs = export_dirs()
    texts = load_texts(n_texts)
    base = rss_mb()
    enc = build(name, dirs, threads)
    loaded = rss_mb()
    enc.encode(texts, batch_size=32)
    after_texts = rss_mb()
    enc._run(*_long_batch_ids())
    after_long = rss_mb()
    enc.encode(texts, batch_size=32)
    rows = enc.embedding_rows
    return {
        "contender": name,
        "before_mb": round(base, 1),
        "loaded_mb": round(loaded, 1),
        "after_texts_mb": round(after_texts, 1),
        "after_16x512_batch_mb": round(after_long, 1),
        "after_texts_again_mb": round(rss_mb(), 1),
        "peak_mb": round(hwm_mb(), 1),
        "embedding_cache": None if rows is None else {"hits": rows.hits, "misses": rows.misses, "rows_cached": len(rows._slots)},
    }


def _run_child(args: list[str]) -> dict[str, Any]:
    proc = subprocess.run([sys.executable, __file__, "--child", *args], capture_output=True, text=True, check=False)
    if proc.returncode:
        raise RuntimeError(f"child {args} failed:\n{proc.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


# --------------------------------------------------------------------------- in-process comparisons
def spans_of(text: str) -> list[tuple[int, int]]:
    """Sentence-ish character spans (split after . ! ?), enough to exercise ``encode_spans``."""
    spans, start = [], 0
    for i, ch in enumerate(text):
        if ch in ".!?" and i + 1 - start > 1:
            spans.append((start, i + 1 - start))
            start = i + 1
    if start < len(text):
        spans.append((start, len(text) - start))
    return spans or [(0, len(text))]


def parity(encoders: dict[str, Any], texts: list[str], reference: str) -> dict[str, Any]:
    probe = texts[:300] + OTHER_LANGUAGE_PROBES
    spans = [spans_of(t) for t in probe]
    ref_vec = encoders[reference].encode(probe)
    ref_docs, ref_spans = encoders[reference].encode_spans(probe, spans)
    ref_other = ref_vec[-len(OTHER_LANGUAGE_PROBES) :]
    out: dict[str, Any] = {"texts": len(probe), "other_language_probes": len(OTHER_LANGUAGE_PROBES), "reference": reference}
    for name, enc in encoders.items():
        if name == reference:
            continue
        vec = enc.encode(probe)
        docs, sp = enc.encode_spans(probe, spans)
        out[name] = {
            "encode_max_abs_diff": float(np.abs(vec - ref_vec).max()),
            "encode_other_languages_max_abs_diff": float(np.abs(vec[-len(OTHER_LANGUAGE_PROBES) :] - ref_other).max()),
            "encode_spans_docs_max_abs_diff": float(np.abs(docs - ref_docs).max()),
            "encode_spans_spans_max_abs_diff": float(max(np.abs(a - b).max() for a, b in zip(sp, ref_spans, strict=True))),
            "min_cosine": float((vec * ref_vec).sum(axis=1).min()),
        }
    return out


def throughput(encoders: dict[str, Any], texts: list[str], rounds: int, baseline: str) -> dict[str, Any]:
    """Alternate contenders (rotating the order each round); ratio = baseline time / contender time, per round."""
    names = list(encoders)
    for enc in encoders.values():  # warm-up: first-run allocations and OpenVINO shape compilation
        enc.encode(texts[:64], batch_size=32)
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(rounds):
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            started = time.perf_counter()
            encoders[name].encode(texts, batch_size=32)
            times[name].append(time.perf_counter() - started)
        print(f"round {r + 1}/{rounds}: " + ", ".join(f"{n} {times[n][-1]:.1f}s" for n in names), file=sys.stderr)
    out: dict[str, Any] = {}
    for name in names:
        ratios = [b / t for b, t in zip(times[baseline], times[name], strict=True)]
        out[name] = {
            "texts_per_s_median": round(len(texts) / float(np.median(times[name])), 2),
            "speed_ratio_vs_default_median": round(float(np.median(ratios)), 3),
            "speed_ratio_per_round": [round(x, 3) for x in ratios],
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--texts", type=int, default=400, help="real texts to encode per contender and round")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds for the throughput ratios")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="intra-op threads of the default")
    parser.add_argument("--contenders", default=",".join(CONTENDERS), help="comma-separated subset of " + ", ".join(CONTENDERS))
    parser.add_argument("--out", type=Path, default=ROOT / "reports/perf/encoder_memory.json")
    parser.add_argument("--breakdown-out", type=Path, default=ROOT / "reports/perf/memory_breakdown.json")
    parser.add_argument("--skip-breakdown", action="store_true")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:
        kind, *rest = args.child
        if kind == "stages":
            result = child_stages(rest[0], rest[1] == "1", int(rest[2]))
        else:
            result = child_memory(rest[0], int(rest[1]), int(rest[2]))
        print(json.dumps(result))
        return

    texts = load_texts(args.texts)
    dirs = export_dirs()  # exports happen here, not inside a timed child
    env = {
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "machine": platform.processor() or platform.machine(),
        "texts": len(texts),
        "mean_chars": round(sum(map(len, texts)) / len(texts), 1),
        "note": "shared 2-core machine: compare ratios within this file only",
    }
    from voce.models.encoders.onnx_backend import onnxruntime_offline

    env["onnxruntime"] = onnxruntime_offline().__version__
    names = [n for n in args.contenders.split(",") if n]
    if "openvino" in names:
        try:
            import openvino

            env["openvino"] = openvino.__version__
        except ImportError:
            print("openvino is not installed: skipping it", file=sys.stderr)
            names.remove("openvino")

    if not args.skip_breakdown:
        stages = [
            _run_child(["stages", layout, prepack, str(args.threads)])
            for layout in ("graph", "external")
            for prepack in ("1", "0")
        ]
        args.breakdown_out.parent.mkdir(parents=True, exist_ok=True)
        args.breakdown_out.write_text(json.dumps({"environment": env, "runs": stages}, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {args.breakdown_out}", file=sys.stderr)

    memory = {name: _run_child(["memory", name, str(len(texts)), str(args.threads)]) for name in names}
    encoders = {name: build(name, dirs, args.threads) for name in names}
    tokens = {t for ids in encoders[names[0]].token_ids(texts) for t in ids}
    reference = "graph_table" if "graph_table" in encoders else names[0]
    report = {
        "environment": env,
        "command": "python benchmarks/bench_encoder_memory.py " + " ".join(sys.argv[1:]),
        "distinct_token_ids_in_texts": len(tokens),
        "contenders": {n: CONTENDERS[n] for n in names},
        "parity_vs_in_graph_table": parity(encoders, texts, reference),
        "throughput": throughput(encoders, texts, args.rounds, "default"),
        "memory": memory,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(report["throughput"], indent=1))
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
