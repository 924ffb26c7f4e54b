"""The pruned tokenizer (``models/encoders/vocab.py``) against the full XLM-R tokenizer, on every real text we have.

* **exactness**: every text of every source under ``../shared/data`` (or ``$VOCE_DATA_DIR``), with the e5
  ``query: `` prefix the encoders add: ids and character offsets of the pruned tokenizer against the full one's,
  per source; how many texts needed the full tokenizer, and which characters sent them there;
* **memory**: RSS of a fresh process after loading each (the pruned one from its cached files), and of one that
  loads the full tokenizer on demand and releases it;
* **speed**: load time, and ``encode_batch`` over all texts, the two alternating round by round in one process
  (the median per-round ratio; absolute rates on this shared machine mean little).

Writes ``reports/perf/tokenizer_pruning.json``.

    cd /work/main && .venv/bin/python benchmarks/bench_tokenizer.py
"""
from __future__ import annotations

import argparse
import collections
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_encoder_memory import _csv_column, data_dir, rss_mb, trim  # noqa: E402

PREFIX = "query: "


def sources() -> dict[str, Callable[[], list[str]]]:
    root = data_dir()

    def ndjson(*paths: str) -> list[str]:
        return [json.loads(line)["sentence"] for p in paths for line in (root / p).open(encoding="utf-8")]

    return {
        "sentipolc2016 (it tweets)": lambda: _csv_column(root / "sentipolc2016/train.csv", "text"),
        "absita2018 (it hotel reviews)": lambda: _csv_column(root / "absita2018/train.csv", "sentence", ";"),
        "ate_absita2020 (it product reviews)": lambda: ndjson("ate_absita2020/train.ndjson", "ate_absita2020/dev.ndjson"),
        "it_amazon_gdmr (it reviews)": lambda: _csv_column(root / "unlabelled/it_amazon_gdmr/data.csv", "text"),
        "it_pa_tweets_uniba (it tweets)": lambda: _csv_column(root / "unlabelled/it_pa_tweets_uniba/data.csv", "text"),
        "twitter_airline_en (en tweets)": lambda: _csv_column(root / "twitter_airline_en/train.csv", "text"),
        "semeval2016 restaurants (en)": lambda: [s.findtext("text") or "" for s in
                                                 ET.parse(root / "semeval2016_restaurants_en/train.xml").iter("sentence")],
        "en_brand_complaint_tweets (en)": lambda: _csv_column(root / "unlabelled/en_brand_complaint_tweets/data.csv", "text"),
        "en_ba_airline_reviews (en)": lambda: _csv_column(root / "unlabelled/en_ba_airline_reviews/data.csv", "text"),
    }


def full_json() -> Path:
    import semantra_multilingual

    return Path(semantra_multilingual.get_asset_dir()) / "tokenizer.json"


def child(kind: str, folder: str) -> dict[str, Any]:
    """RSS of a fresh process around loading one tokenizer (run as a subprocess)."""
    from tokenizers import Tokenizer

    from voce.models.encoders.vocab import pruned_tokenizer

    path = Path(folder) / "tokenizer.json"
    trim()
    before = rss_mb()
    started = time.perf_counter()
    if kind == "full":
        tok: Any = Tokenizer.from_file(str(path))
    else:
        tok = pruned_tokenizer(path, keep_seconds=0.5)
    loaded_s = time.perf_counter() - started
    tok.encode_batch([PREFIX + "Il servizio clienti è stato gentile 👍"], add_special_tokens=False)
    trim()
    out = {"kind": kind, "load_s": round(loaded_s, 3), "rss_before_mb": round(before, 1), "rss_loaded_mb": round(rss_mb(), 1)}
    if kind == "pruned":
        tok.encode_batch([PREFIX + "Доставка опоздала"], add_special_tokens=False)
        out["rss_with_full_loaded_mb"] = round(rss_mb(), 1)
        time.sleep(1.5)
        trim()
        out["rss_after_full_released_mb"] = round(rss_mb(), 1)
        out["full_loads"] = tok.full_loads
    return out


def run_child(kind: str, folder: str) -> dict[str, Any]:
    proc = subprocess.run([sys.executable, __file__, "--child", kind, folder], capture_output=True, text=True,
                          check=False)
    if proc.returncode:
        raise RuntimeError(proc.stderr[-3000:])
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def exactness(full: Any, pruned: Any) -> tuple[list[dict[str, Any]], list[str]]:
    rows, everything = [], []
    for name, read in sources().items():
        try:
            texts = [PREFIX + t for t in read() if t and t.strip()]
        except (OSError, KeyError, ET.ParseError) as exc:
            print(f"skipping {name}: {exc}", file=sys.stderr)
            continue
        everything += texts
        loads = pruned.full_loads
        theirs = full.encode_batch(texts, add_special_tokens=False)
        ours = pruned.encode_batch(texts, add_special_tokens=False)
        needed, chars = 0, collections.Counter[str]()
        for text in texts:
            ids = pruned._pruned.encode(text, add_special_tokens=False).ids
            if pruned.needs_full(text, ids):
                needed += 1
                chars.update(set(pruned._pruned.normalizer.normalize_str(text)) & pruned._removed)
        mismatched = sum((a.ids, a.offsets) != (b.ids, b.offsets) for a, b in zip(ours, theirs, strict=True))
        rows.append({"source": name, "texts": len(texts), "tokens": sum(len(e.ids) for e in theirs),
                     "mismatched_ids_or_offsets": mismatched, "needed_the_full_tokenizer": needed,
                     "characters_that_needed_it": dict(chars.most_common(10)),
                     "full_tokenizer_loads": pruned.full_loads - loads})
        print(json.dumps(rows[-1], ensure_ascii=False), file=sys.stderr)
    return rows, everything


def speed(full: Any, pruned: Any, texts: list[str], rounds: int) -> dict[str, Any]:
    times: dict[str, list[float]] = {"full": [], "pruned": []}
    for _ in range(rounds):
        for name, tok in (("full", full), ("pruned", pruned)):
            started = time.perf_counter()
            # what the encoders keep of each: the ids and the offsets (held until the batch is planned)
            kept = [(enc.ids, enc.offsets) for enc in tok.encode_batch(texts, add_special_tokens=False)]
            times[name].append(time.perf_counter() - started)
            del kept
    ratio = statistics.median(p / f for p, f in zip(times["pruned"], times["full"], strict=True))
    return {"texts": len(texts), "rounds": rounds, "full_s": [round(t, 3) for t in times["full"]],
            "pruned_s": [round(t, 3) for t in times["pruned"]],
            "pruned_time_over_full_median": round(ratio, 3),
            "full_texts_per_s": round(len(texts) / statistics.median(times["full"]), 1),
            "pruned_texts_per_s": round(len(texts) / statistics.median(times["pruned"]), 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", type=Path, default=ROOT / "reports/perf/tokenizer_pruning.json")
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(*args.child)))
        return
    if not data_dir().is_dir():
        raise SystemExit(f"no real data at {data_dir()} (set VOCE_DATA_DIR): this benchmark measures real texts only")
    import tokenizers

    from voce.models.encoders.vocab import pruned_tokenizer

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "tokenizer.json").write_bytes(full_json().read_bytes())
        started = time.perf_counter()
        pruned = pruned_tokenizer(folder / "tokenizer.json", keep_seconds=5.0)
        build_s = time.perf_counter() - started
        assert pruned is not None
        full = tokenizers.Tokenizer.from_file(str(folder / "tokenizer.json"))
        rows, texts = exactness(full, pruned)
        memory = [run_child("full", tmp), run_child("pruned", tmp)]
        timing = speed(full, pruned, texts, args.rounds)
    total = {k: sum(r[k] for r in rows) for k in ("texts", "tokens", "mismatched_ids_or_offsets",
                                                   "needed_the_full_tokenizer")}
    report = {
        "environment": {"python": platform.python_version(), "tokenizers": tokenizers.__version__,
                        "machine": platform.machine(), "note": "shared 2-core machine: ratios within this file only"},
        "vocabulary": {"full_pieces": full.get_vocab_size(), "pruned_pieces": pruned.vocab_size,
                       "build_s_first_time": round(build_s, 2)},
        "exactness": {"total": total, "by_source": rows},
        "memory": memory,
        "speed": timing,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(json.dumps({"total": total, "memory": memory, "speed": {k: v for k, v in timing.items() if "_s" not in k}},
                     indent=2))


if __name__ == "__main__":
    main()
