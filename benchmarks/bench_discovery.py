"""Does topic discovery put Italian and English comments about the same thing together?

Multilingual e5 vectors carry a language component, so clustering them tends
to split every theme into an Italian and an English topic.  This benchmark
measures that with the real encoder over a few seeds, for four settings of
:func:`models.discovery.discover_topics`: no centering (``off``), plain
per-language mean centering (``center``), topic-balanced centering (the
default, ``balanced``: language means averaged over taxonomy topics that both
languages have) and plain centering plus removal of each language's top
principal direction (``center+pc1``).  Metrics:

* **pairs together**: the 40 hand-written IT/EN parallel pairs
  (``eval/data/parallel_it_en.jsonl``) are mixed into a background of real
  comments; a pair counts when both sides land in the same topic (an outlier
  never counts).
* **bilingual share**: the share of topics with >= 10 % Italian and >= 10 %
  English comments (see :func:`models.discovery.bilingual_share`).  Not a
  score to maximise: the background has English-only themes (airline tweets)
  and Italian-only ones (product reviews), which should stay monolingual.
* **aspect alignment**: the background's gold topics that exist in both
  languages (staff, price_value, location): how often an Italian and an
  English comment share a discovered topic when they have the same gold topic
  vs different ones.  Centering should raise the first without raising the
  second, i.e. mix languages by meaning, not indiscriminately.
* outlier shares, number of topics, seconds; and, with ``--timing-docs``,
  the wall time of one run on that many real comments.

Scenarios:

* ``real_mixed``: the pairs + real comments read from the shared data folder
  (never copied into the repository): ABSITA 2018 hotel sentences and
  ATE_ABSITA 2020 product reviews (it), SemEval-2016 restaurant sentences and
  airline tweets (en); plain e5-small vectors; gold languages; gold topics
  stand in for the analyzer's.  The two languages mostly cover different
  domains here, so language and domain are confounded.
* ``taxonomy_examples``: the pairs + the default taxonomy's example sentences
  (~6 it + ~6 en for each of 24 topics): small and hand-written, but both
  languages cover the same themes.
* ``real_mixed_analyzer`` (skip with ``--no-analyzer``): the ``real_mixed``
  corpus through the production analyzer (default bundle: fine-tuned encoder,
  detected languages, predicted topics), i.e. what the batch service feeds
  discovery; aspect and ARI metrics still use the gold topics.

Vectors and analyzer outputs are cached under ``<cache-dir>/bench_discovery/``.

    python -m benchmarks.bench_discovery --out reports/discovery/bilingual.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import random
import statistics
import sys
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from voce.models.discovery import DiscoveryResult, discover_topics, taxonomy_topic_labels
from voce.models.taxonomy import default_taxonomy

PARALLEL_PATH = Path(__file__).parent / "data" / "parallel_it_en.jsonl"
#: gold topics annotated in both an Italian and an English background dataset
SHARED_TOPICS = ("staff", "price_value", "location")
DEFAULT_SEEDS = (13, 7, 42)


def load_parallel(path: Path = PARALLEL_PATH) -> list[tuple[str, str]]:
    """``(it, en)`` pairs of the hand-written parallel set."""
    with path.open(encoding="utf-8") as fh:
        rows = [json.loads(line) for line in fh if line.strip()]
    return [(r["it"], r["en"]) for r in rows]


def load_background(data_dir: Path | None, n: int, seed: int) -> list[dict[str, Any]]:
    """``n`` distinct real comments, half Italian and half English, with their gold topics.

    Italian: 3/4 ABSITA hotel sentences, 1/4 ATE_ABSITA product reviews; English:
    half SemEval restaurant sentences, half airline tweets (each capped by what the
    file has, the rest filled from the other sources of the same language; only
    batches larger than those files, such as the 20k timing batch, reach the
    SENTIPOLC tweets listed last with no share of their own).
    """
    from voce.data.datasets import ABSITA, AIRLINE, ATE_ABSITA, SEMEVAL, SENTIPOLC, load_dataset

    rng = random.Random(seed)
    plan = {"it": [(ABSITA, 0.75), (ATE_ABSITA, 0.25), (SENTIPOLC, 0.0)], "en": [(SEMEVAL, 0.5), (AIRLINE, 0.5)]}
    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    for lang, sources in plan.items():
        want = n // 2 if lang == "it" else n - n // 2
        pools: list[list[dict[str, Any]]] = []
        for name, _share in sources:
            pool = []
            for e in load_dataset(name, data_dir):
                key = " ".join(e.text.lower().split())
                if len(key) < 3 or key in seen:
                    continue
                seen.add(key)
                pool.append({"text": e.text, "language": e.language, "source": name, "topics": sorted(e.topics or {})})
            rng.shuffle(pool)
            pools.append(pool)
        quotas = [int(round(want * share)) for _name, share in sources]
        quotas[-1] = want - sum(quotas[:-1])
        taken = [pool[:q] for pool, q in zip(pools, quotas, strict=True)]
        short = want - sum(len(t) for t in taken)
        for pool, got in zip(pools, taken, strict=True):
            if short <= 0:
                break
            extra = pool[len(got) : len(got) + short]
            got.extend(extra)
            short -= len(extra)
        out.extend(row for t in taken for row in t)
    return out


def encode_cached(texts: list[str], cache_dir: Path) -> tuple[np.ndarray, str]:
    """e5-small (ONNX) embeddings of ``texts``, cached by content hash; also the encoder's name."""
    from voce.models.encoders.factory import EncoderSpec, encoder_name, load_encoder

    spec = EncoderSpec(backend="onnx", model="e5-small", cache_dir=cache_dir)
    name = encoder_name(spec)
    digest = hashlib.sha256(("\x00".join([name, *texts])).encode("utf-8")).hexdigest()[:20]
    path = cache_dir / "bench_discovery" / f"{digest}.npy"
    if path.is_file():
        return np.load(path), name
    enc = load_encoder(spec, progress=lambda m: print(f"  encoder: {m}", file=sys.stderr))
    start = time.perf_counter()
    vecs = np.asarray(enc.encode(texts, batch_size=64), dtype=np.float32)
    print(f"  encoded {len(texts)} texts in {time.perf_counter() - start:.1f}s", file=sys.stderr)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, vecs)
    return vecs, name


#: the settings compared: name -> discover_topics keyword arguments ("balanced" is the default setting)
VARIANTS: dict[str, dict[str, Any]] = {
    "off": {"center_languages": False},
    "center": {"center_languages": True, "balance_centering": False},
    "balanced": {"center_languages": True, "balance_centering": True},
    "center+pc1": {"center_languages": True, "balance_centering": False, "language_components": 1},
}


def pairs_together(result: DiscoveryResult, pair_rows: Sequence[tuple[int, int]]) -> dict[str, float]:
    """Share of parallel pairs in one topic, and the same for mismatched pairs (IT of one, EN of another).

    The mismatched rate is the chance level: with three huge topics almost any
    two comments share one, so "together" only means something above it.
    """
    a = result.assignments
    together = sum(1 for i, j in pair_rows if a[i] != -1 and a[i] == a[j]) / len(pair_rows)
    mismatched = [(i, j2) for k, (i, _j) in enumerate(pair_rows) for k2, (_i2, j2) in enumerate(pair_rows) if k != k2]
    chance = sum(1 for i, j in mismatched if a[i] != -1 and a[i] == a[j]) / len(mismatched)
    return {"pairs_together": round(together, 4), "pairs_together_chance": round(chance, 4)}


def aspect_alignment(result: DiscoveryResult, rows: Sequence[dict[str, Any]], shared: Sequence[str]) -> dict[str, float]:
    """P(same discovered topic) for (IT, EN) comment pairs with the same vs a different gold topic.

    Only comments whose gold topics are exactly one of ``shared`` count;
    outliers never count as together.
    """
    counts: dict[tuple[str, str], Counter[int]] = {}
    for i, row in enumerate(rows):
        if len(row["topics"]) != 1 or row["topics"][0] not in shared:
            continue
        counts.setdefault((row["language"], row["topics"][0]), Counter())[result.assignments[i]] += 1
    same_num = same_den = diff_num = diff_den = 0
    for a in shared:
        for b in shared:
            it, en = counts.get(("it", a), Counter()), counts.get(("en", b), Counter())
            together = sum(it[t] * en[t] for t in it if t != -1)
            total = sum(it.values()) * sum(en.values())
            if a == b:
                same_num, same_den = same_num + together, same_den + total
            else:
                diff_num, diff_den = diff_num + together, diff_den + total
    same = same_num / same_den if same_den else float("nan")
    diff = diff_num / diff_den if diff_den else float("nan")
    return {"same_topic_rate": round(same, 4), "different_topic_rate": round(diff, 4)}


def gold_agreement(result: DiscoveryResult, rows: Sequence[dict[str, Any]]) -> float:
    """Adjusted Rand index between discovered topics and single gold topics (comments with exactly one)."""
    from sklearn.metrics import adjusted_rand_score

    keep = [i for i, r in enumerate(rows) if len(r["topics"]) == 1]
    return round(float(adjusted_rand_score([rows[i]["topics"][0] for i in keep], [result.assignments[i] for i in keep])), 4)


def summarise(runs: list[dict[str, Any]], keys: Sequence[str]) -> dict[str, dict[str, float]]:
    out = {}
    for key in keys:
        values = [float(r[key]) for r in runs if r.get(key) is not None]
        if not values:
            continue
        out[key] = {
            "mean": round(statistics.fmean(values), 4),
            "std": round(statistics.pstdev(values), 4),
            "min": round(min(values), 4),
            "max": round(max(values), 4),
        }
    return out


SUMMARY_KEYS = (
    "pairs_together", "pairs_together_chance", "bilingual_share", "outlier_share_before", "outlier_share", "n_topics",
    "mapped_to_taxonomy_share", "same_topic_rate", "different_topic_rate", "gold_ari", "seconds",
)  # fmt: skip


def with_parallel(
    rows: list[dict[str, Any]], pairs: Sequence[tuple[str, str]]
) -> tuple[list[dict[str, Any]], list[tuple[int, int]]]:
    """``rows`` followed by both sides of every parallel pair (no gold topic), and the pairs' row indices."""
    out = list(rows)
    pair_rows: list[tuple[int, int]] = []
    for it, en in pairs:
        out += [
            {"text": it, "language": "it", "source": "parallel", "topics": []},
            {"text": en, "language": "en", "source": "parallel", "topics": []},
        ]
        pair_rows.append((len(out) - 2, len(out) - 1))
    return out, pair_rows


def taxonomy_example_rows() -> list[dict[str, Any]]:
    """The default taxonomy's example sentences (IT and EN, about the same 24 topics), language as detected."""
    from voce.models.language import default_detector

    detector = default_detector()
    return [
        {"text": x, "language": detector.detect(x).code, "source": "taxonomy_examples", "topics": [e.id]}
        for e in default_taxonomy().topics.entries
        for x in e.examples
    ]


def analyze_cached(rows: list[dict[str, Any]], cache_dir: Path) -> tuple[list[dict[str, Any]], np.ndarray, str]:
    """Run the production analyzer (default bundle: fine-tuned encoder, heads, language detector) over ``rows``.

    Returns the rows with ``language`` and ``topics`` replaced by the analyzer's
    (what the batch service hands to discovery), its document vectors and the
    encoder's name; cached by content hash like :func:`encode_cached`.
    """
    from voce.models.bundle import VoceBundle, default_bundle_path

    bundle = VoceBundle.load(default_bundle_path())
    key = "\x00".join([bundle.version, *(r["text"] for r in rows)])
    digest = hashlib.sha256(key.encode("utf-8")).hexdigest()[:20]
    base = cache_dir / "bench_discovery" / f"analyzer-{digest}"
    if not base.with_suffix(".json").is_file():
        from voce.models.spec import AnalyzerSpec, load_analyzer
        from voce.models.types import DocumentInput

        analyzer = load_analyzer(AnalyzerSpec(cache_dir=cache_dir), progress=lambda m: print(f"  analyzer: {m}", file=sys.stderr))
        start = time.perf_counter()
        out_langs: list[str] = []
        out_topics: list[list[str]] = []
        chunks: list[np.ndarray] = []
        for lo in range(0, len(rows), 256):
            docs = [DocumentInput(id=str(i), text=r["text"]) for i, r in enumerate(rows[lo : lo + 256], start=lo)]
            results, errors, vecs = analyzer.analyze_with_embeddings(docs)
            if errors:
                raise RuntimeError(f"analyzer rejected {len(errors)} benchmark comments, e.g. {errors[0]}")
            out_langs += [res.language for res in results]
            out_topics += [[t.id for t in res.topics] for res in results]
            chunks.append(vecs)
        print(f"  analyzed {len(rows)} texts in {time.perf_counter() - start:.1f}s", file=sys.stderr)
        base.parent.mkdir(parents=True, exist_ok=True)
        np.save(base.with_suffix(".npy"), np.vstack(chunks))
        meta = {"encoder": analyzer.encoder.name, "languages": out_langs, "topics": out_topics}
        base.with_suffix(".json").write_text(json.dumps(meta), encoding="utf-8")
    meta = json.loads(base.with_suffix(".json").read_text(encoding="utf-8"))
    vecs = np.load(base.with_suffix(".npy"))
    out = [
        {**r, "language": lang, "topics": topics, "gold_topics": r["topics"], "gold_language": r["language"]}
        for r, lang, topics in zip(rows, meta["languages"], meta["topics"], strict=True)
    ]
    return out, vecs, f"{meta['encoder']} (bundle {bundle.version})"


def run_scenario(
    name: str, rows: list[dict[str, Any]], pairs: Sequence[tuple[str, str]], shared: Sequence[str],
    cache_dir: Path, seeds: Sequence[int], *, analyzer: bool = False,
) -> dict[str, Any]:  # fmt: skip
    """All variants x seeds on one corpus.

    With ``analyzer`` the embeddings, languages and assigned topics come from
    the production analyzer instead of the plain encoder and the gold labels;
    the aspect and ARI metrics still score against the gold topics.
    """
    rows, pair_rows = with_parallel(rows, pairs)
    print(f"{name}: {len(rows)} comments ({dict(Counter(r['source'] for r in rows))})", file=sys.stderr)
    if analyzer:
        rows, vecs, encoder = analyze_cached(rows, cache_dir)
        gold_rows = [{**r, "language": r["gold_language"], "topics": r["gold_topics"]} for r in rows]
    else:
        vecs, encoder = encode_cached([r["text"] for r in rows], cache_dir)
        gold_rows = rows
    texts = [r["text"] for r in rows]
    langs = [r["language"] for r in rows]
    assigned = [r["topics"] for r in rows]
    labels = taxonomy_topic_labels(default_taxonomy())

    runs: list[dict[str, Any]] = []
    examples: dict[str, Any] = {}
    for seed in seeds:
        for variant, settings in VARIANTS.items():
            res = discover_topics(texts, vecs, langs, assigned_topics=assigned, topic_labels=labels, seed=seed, **settings)
            record = {
                "seed": seed,
                "variant": variant,
                **pairs_together(res, pair_rows),
                "bilingual_share": res.bilingual_share,
                "outlier_share_before": res.outlier_share_before,
                "outlier_share": res.outlier_share,
                "n_topics": len(res.topics),
                "min_topic_size": res.min_topic_size,
                "mapped_to_taxonomy_share": round(
                    sum(t.taxonomy_topic is not None for t in res.topics) / max(1, len(res.topics)), 4
                ),
                **aspect_alignment(res, gold_rows, shared),
                "gold_ari": gold_agreement(res, gold_rows),
                "centering_topics": len(res.centering_topics),
                "seconds": res.seconds,
            }
            runs.append(record)
            print(f"  {record}", file=sys.stderr)
            if seed == seeds[0]:
                examples[variant] = {
                    "largest_topics": [
                        {
                            "id": t.id, "size": t.size, "languages": t.languages, "label": t.label,
                            "taxonomy_topic": t.taxonomy_topic, "taxonomy_share": t.taxonomy_share,
                        }
                        for t in res.topics[:12]
                    ],
                    "pairs_split": [
                        {"en": pairs[k][1], "it_topic": res.assignments[i], "en_topic": res.assignments[j]}
                        for k, (i, j) in enumerate(pair_rows)
                        if res.assignments[i] == -1 or res.assignments[i] != res.assignments[j]
                    ],
                }  # fmt: skip
    return {
        "encoder": encoder,
        "inputs": "production analyzer: its vectors, detected languages, predicted topics"
        if analyzer
        else "plain encoder vectors, gold languages, gold topics",
        "n_docs": len(rows),
        "by_source": dict(Counter(r["source"] for r in rows)),
        "by_language": dict(Counter(langs)),
        "aspect_topics": list(shared),
        "summary": {v: summarise([r for r in runs if r["variant"] == v], SUMMARY_KEYS) for v in VARIANTS},
        "runs": runs,
        "examples_first_seed": examples,
    }


def run(
    data_dir: Path | None, cache_dir: Path, background: int, seeds: Sequence[int], timing_docs: int, analyzer: bool
) -> dict[str, Any]:
    pairs = load_parallel()
    tax_rows = taxonomy_example_rows()
    real_rows = load_background(data_dir, background, seed=0)
    scenarios = {
        "real_mixed": run_scenario("real_mixed", real_rows, pairs, SHARED_TOPICS, cache_dir, seeds),
        "taxonomy_examples": run_scenario(
            "taxonomy_examples", tax_rows, pairs, sorted({r["topics"][0] for r in tax_rows}), cache_dir, seeds
        ),
    }
    if analyzer:
        scenarios["real_mixed_analyzer"] = run_scenario(
            "real_mixed_analyzer", real_rows, pairs, SHARED_TOPICS, cache_dir, seeds, analyzer=True
        )
    report: dict[str, Any] = {
        "what": "topic discovery (BERTopic UMAP+HDBSCAN on e5 embeddings): IT/EN mixing without language centering "
        "(off), with plain per-language mean centering (center), with topic-balanced centering (balanced, the "
        "default: each language's mean averaged over taxonomy topics both languages have) and with plain centering "
        "plus removal of each language's top principal direction (center+pc1)",
        "scenarios_described": {
            "real_mixed": "the 40 parallel pairs + a background of real comments: it = ABSITA hotel sentences (3/4) "
            "and ATE_ABSITA product reviews (1/4), en = SemEval restaurant sentences and airline tweets (1/2 each); "
            "gold languages; gold topics (mapped to the default taxonomy) stand in for the analyzer's; aspect rates "
            "over staff/price_value/location, the gold topics both languages have. The languages mostly talk about "
            "different domains here, so language and domain are confounded.",
            "taxonomy_examples": "the 40 parallel pairs + the default taxonomy's 292 example sentences (about 6 it and "
            "6 en per topic, same 24 topics in both languages); detected languages; gold = the example's topic. Small "
            "and hand-written, but the one set where both languages cover the same themes.",
            "real_mixed_analyzer": "the real_mixed corpus through the production analyzer (default bundle: fine-tuned "
            "encoder vectors, detected languages, predicted topics), as the batch service runs discovery; aspect and "
            "ARI metrics still against gold topics",
        },
        "metrics_described": {
            "pairs_together": "share of parallel pairs whose it and en sides share a topic (outliers never count)",
            "pairs_together_chance": "the same for mismatched pairs (it of one pair, en of another): the chance level",
            "bilingual_share": "share of topics (>= 2 docs) with >= 10% it and >= 10% en docs",
            "same_topic_rate / different_topic_rate": "P(an it doc and an en doc share a topic) when their gold "
            "topics are the same / different",
            "gold_ari": "adjusted Rand index of discovered topics vs gold topics (docs with exactly one gold topic)",
        },
        "seeds": list(seeds),
        "scenarios": scenarios,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
    }
    if timing_docs:
        report["timing"] = time_large_batch(data_dir, cache_dir, timing_docs, seeds[0])
    return report


def time_large_batch(data_dir: Path | None, cache_dir: Path, n: int, seed: int) -> dict[str, Any]:
    """Wall time of one discovery run (centering on) over ``n`` real comments; numba is already warm."""
    rows = load_background(data_dir, n, seed=1)
    texts = [r["text"] for r in rows]
    vecs, _ = encode_cached(texts, cache_dir)
    langs = [r["language"] for r in rows]
    res = discover_topics(texts, vecs, langs, assigned_topics=[r["topics"] for r in rows], seed=seed)
    out = {
        "n_docs": len(rows),
        "seconds": res.seconds,
        "n_topics": len(res.topics),
        "min_topic_size": res.min_topic_size,
        "outlier_share_before": res.outlier_share_before,
        "outlier_share": res.outlier_share,
        "bilingual_share": res.bilingual_share,
        "cpus": os.cpu_count(),
    }
    print(f"  timing: {out}", file=sys.stderr)
    return out


def print_table(report: dict[str, Any]) -> None:
    cols = [
        ("pairs_together", "pairs together"), ("pairs_together_chance", "chance"), ("bilingual_share", "bilingual"),
        ("outlier_share_before", "outliers before"), ("outlier_share", "outliers after"), ("n_topics", "topics"),
        ("same_topic_rate", "same-gold IT/EN"), ("different_topic_rate", "diff-gold IT/EN"), ("gold_ari", "ARI"),
        ("seconds", "seconds"),
    ]  # fmt: skip
    for name, scenario in report["scenarios"].items():
        print(f"\n{name} ({scenario['n_docs']} docs, seeds {report['seeds']}; mean ± std)")
        print(f"{'variant':<12}" + "".join(f"{title:>17}" for _k, title in cols))
        for variant, summary in scenario["summary"].items():
            cells = [f"{s['mean']:.3f}±{s['std']:.3f}" if (s := summary.get(key)) else "-" for key, _t in cols]
            print(f"{variant:<12}" + "".join(f"{c:>17}" for c in cells))
    if "timing" in report:
        t = report["timing"]
        print(f"\ntiming: {t['n_docs']} docs in {t['seconds']:.1f}s on {t['cpus']} CPUs ({t['n_topics']} topics)")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, default=Path("reports/discovery/bilingual.json"))
    parser.add_argument("--data-dir", type=Path, default=None, help="default: $VOCE_TRAIN_DATA_DIR, else ../shared/data")
    parser.add_argument("--cache-dir", type=Path, default=Path(".cache/voce"), help="encoder exports + embedding cache")
    parser.add_argument("--background", type=int, default=4000, help="real background comments (half it, half en)")
    parser.add_argument("--seeds", type=int, nargs="+", default=list(DEFAULT_SEEDS))
    parser.add_argument("--timing-docs", type=int, default=0, help="also time one run on this many comments (0 = skip)")
    parser.add_argument(
        "--no-analyzer", dest="analyzer", action="store_false", help="skip the scenario run through the production analyzer"
    )
    args = parser.parse_args(argv)
    report = run(args.data_dir, args.cache_dir, args.background, args.seeds, args.timing_docs, args.analyzer)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print_table(report)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
