"""Fit the bundle's decision rules on real labelled texts and report them before/after on other texts.

``python -m voce.training.calibrate_decisions [--write]`` reads the raw scores that
``python -m voce.eval.quality_dump`` saved (the shipped model's own outputs, no text) and:

* **mixed**: fits :class:`voce.models.labels.MixedRule` on the *calibration* slice of the public training data (held
  out of head fitting by the bundle's split: SENTIPOLC's real mixed class, ABSITA/SemEval sentences, airline tweets,
  and ATE_ABSITA reviews read by their stars: 5 → positive, 1–2 → negative, 4 → positive or mixed, 3 not scored),
  then reports on the *dev* split (never used for fitting) and on the Amazon.it reviews (never trained on);
* **topics**: per-topic report thresholds fitted on the *calibration* slice of the annotated real-text corpus's train
  split (the topic heads learned from the rest of it)
  (``data/labels/realcx``, split by group as everywhere else), so that a topic is not reported from a weak signal
  on a domain its head never saw; precision/recall per source before/after on the corpus's *dev* split.

With ``--write`` the fitted rules are stored under ``decisions`` in the bundle's manifest (the tensors are untouched,
so the checksum still holds).  Reports go to ``reports/quality/``.
"""
from __future__ import annotations

import argparse
import itertools
import json
import os
import random
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from voce.eval import metrics as M
from voce.eval.quality_dump import DocScores, load_scores
from voce.models.labels import SENTIMENT_LABELS, MixedRule

REPORT_DIR = Path("reports/quality")
#: the grid the mixed rule is chosen from (bias on the mixed log-odds, sentence threshold, minority share)
BIASES = (-3.0, -2.5, -2.0, -1.5, -1.0, -0.5, 0.0, 0.5)
SENTENCE_THRESHOLDS: tuple[float | None, ...] = (0.6, 0.7, 0.8, 0.9, None)
MINOR_SHARES = (0.0, 0.1, 0.15, 0.2, 0.25, 0.3)


def star_gold(stars: int) -> set[str] | None:
    """Labels a review of ``stars`` may get: 5 positive, 4 positive or mixed, 1-2 negative; 3 is not scored."""
    return {5: {"positive"}, 4: {"positive", "mixed"}, 2: {"negative"}, 1: {"negative"}}.get(stars)


def _labels(rule: MixedRule, rows: Sequence[DocScores]) -> list[str]:
    return [rule.label(s.doc_p4, list(s.sent_p4)) for s in rows]


def _interval(stat: Callable[[list[int]], float], n: int, seed: int = 13, rounds: int = 300) -> list[float]:
    rng = random.Random(seed)
    vals = sorted(stat([rng.randrange(n) for _ in range(n)]) for _ in range(rounds))
    return [round(vals[int(0.025 * rounds)], 4), round(vals[int(0.975 * rounds) - 1], 4)]


def _mixed_f1(gold: Sequence[str], pred: Sequence[str]) -> float:
    tp = sum(g == p == "mixed" for g, p in zip(gold, pred, strict=True))
    fp = sum(p == "mixed" and g != "mixed" for g, p in zip(gold, pred, strict=True))
    fn = sum(g == "mixed" and p != "mixed" for g, p in zip(gold, pred, strict=True))
    return 2 * tp / (2 * tp + fp + fn) if tp else 0.0


def sentiment_report(gold: Sequence[str], pred: Sequence[str]) -> dict[str, Any]:
    """4-way macro-F1 and mixed F1 with bootstrap intervals, and the share called mixed."""
    n = len(gold)
    labels = list(SENTIMENT_LABELS)
    return {
        "n": n,
        "macro_f1_4way": round(M.macro_f1(list(gold), list(pred), labels), 4),
        "macro_f1_interval": _interval(lambda ix: M.macro_f1([gold[i] for i in ix], [pred[i] for i in ix], labels), n),
        "mixed_f1": round(_mixed_f1(gold, pred), 4),
        "mixed_f1_interval": _interval(lambda ix: _mixed_f1([gold[i] for i in ix], [pred[i] for i in ix]), n),
        "gold_mixed_share": round(float(np.mean([g == "mixed" for g in gold])), 4),
        "called_mixed_share": round(float(np.mean([p == "mixed" for p in pred])), 4),
    }


def star_report(stars: Sequence[int], pred: Sequence[str]) -> dict[str, Any]:
    """Share of 4-5-star reviews called mixed (and of 5-star ones), of 1-2-star ones called positive, with intervals."""
    out: dict[str, Any] = {}
    for name, keep, bad in (
        ("stars_4_5_called_mixed", {4, 5}, "mixed"), ("stars_5_called_mixed", {5}, "mixed"),
        ("stars_4_called_mixed", {4}, "mixed"), ("stars_1_2_called_positive", {1, 2}, "positive"),
        ("stars_1_2_called_mixed", {1, 2}, "mixed"),
    ):  # fmt: skip
        hits = [int(p == bad) for s, p in zip(stars, pred, strict=True) if s in keep]
        if hits:
            out[name] = {"n": len(hits), "share": round(float(np.mean(hits)), 4), "interval": _share_interval(hits)}
    return out


def _share_interval(hits: list[int]) -> list[float]:
    return _interval(lambda ix: float(np.mean([hits[i] for i in ix])), len(hits))


def _objective(rule: MixedRule, labelled: Sequence[tuple[DocScores, str]], starred: Sequence[tuple[DocScores, int]]) -> float:
    """Half 4-way macro-F1 on the sentence/tweet sets, half agreement with the stars."""
    pred = _labels(rule, [s for s, _ in labelled])
    f1 = M.macro_f1([g for _, g in labelled], pred, list(SENTIMENT_LABELS))
    spred = _labels(rule, [s for s, _ in starred])
    ok = [p in (star_gold(st) or set()) for (_, st), p in zip(starred, spred, strict=True)]
    return 0.5 * f1 + 0.5 * float(np.mean(ok))


def fit_mixed(
    labelled: Sequence[tuple[DocScores, str]], starred: Sequence[tuple[DocScores, int]]
) -> tuple[MixedRule, list[dict[str, Any]]]:
    """The grid rule with the best objective (ties: the one closest to the shipped defaults)."""
    default = MixedRule()
    tried = []
    for bias, thr, minor in itertools.product(BIASES, SENTENCE_THRESHOLDS, MINOR_SHARES):
        if thr is None and minor > 0:
            continue
        rule = MixedRule(bias=bias, sentence_threshold=thr, minor_share=minor)
        distance = abs(bias) + (1.0 if thr != default.sentence_threshold else 0.0) + minor
        tried.append((round(_objective(rule, labelled, starred), 4), -distance, rule))
    tried.sort(key=lambda t: (t[0], t[1]), reverse=True)
    top = [{"objective": o, **r.config()} for o, _, r in tried[:10]]
    return tried[0][2], top


def _number(value: str | None) -> bool:
    try:
        return value is not None and 1 <= float(value) <= 5
    except ValueError:
        return False


def _sets(cache: Path) -> dict[str, Any]:
    from voce.data.datasets import ATE_ABSITA, SENTIPOLC, load_all, load_ate_absita
    from voce.data.unlabelled import load_unlabelled

    examples = {e.uid: e for rows in load_all().values() for e in rows} | {e.uid: e for e in load_ate_absita("dev")}
    amazon = {r.uid: int(float(r.meta["stars"])) for r in load_unlabelled("it_amazon_gdmr") if _number(r.meta.get("stars"))}
    out: dict[str, Any] = {}
    for side in ("cal", "dev"):
        scores = load_scores(cache / f"public_{side}.pkl")["scores"]
        rows = [(s, examples[u]) for u, s in scores.items()]
        out[side] = {
            "labelled": [(s, e.sentiment) for s, e in rows if e.sentiment and e.source != ATE_ABSITA],
            "sentipolc": [(s, e.sentiment) for s, e in rows if e.sentiment and e.source == SENTIPOLC],
            "all_labelled": [(s, e.sentiment) for s, e in rows if e.sentiment],
            "starred": [(s, e.stars) for s, e in rows if e.source == ATE_ABSITA and e.stars],
        }
    scores = load_scores(cache / "amazon_it.pkl")["scores"]
    out["amazon"] = [(s, amazon[u]) for u, s in scores.items() if u in amazon]
    return out


def mixed_section(cache: Path) -> tuple[MixedRule, dict[str, Any]]:
    """Fit on the calibration slice, report before/after on the dev split and on Amazon.it."""
    sets = _sets(cache)
    cal = sets["cal"]
    rule, top = fit_mixed(cal["labelled"], cal["starred"])
    before = MixedRule()
    report: dict[str, Any] = {
        "fitted_on": {"labelled_rows": len(cal["labelled"]), "star_rated_reviews": len(cal["starred"]),
                      "split": "calibration slice of the public training data (held out of head fitting)"},
        "rule_before": before.config(), "rule_after": rule.config(), "best_on_calibration": top,
    }  # fmt: skip
    dev = sets["dev"]
    for name, rule_ in (("before", before), ("after", rule)):
        part: dict[str, Any] = {}
        for key in ("sentipolc", "all_labelled"):
            rows = dev[key]
            part[f"{key}_dev"] = sentiment_report([g for _, g in rows], _labels(rule_, [s for s, _ in rows]))
        sp = dev["sentipolc"]
        gp, gn = M.sentiments_to_flags([g for _, g in sp])
        pp, pn = M.sentiments_to_flags(_labels(rule_, [s for s, _ in sp]))
        part["sentipolc_dev"]["polarity_f"] = round(M.sentipolc_polarity_f(gp, gn, pp, pn)["f"], 4)
        for key, rows in (("ate_absita_dev_stars", dev["starred"]), ("amazon_it_stars", sets["amazon"])):
            part[key] = star_report([st for _, st in rows], _labels(rule_, [s for s, _ in rows]))
        report[name] = part
    # a diagnostic, not used for the choice: what the mixed bias alone trades on the report sets
    sweep = []
    for bias in BIASES:
        r = MixedRule(bias=bias, sentence_threshold=rule.sentence_threshold, minor_share=rule.minor_share)
        sp = dev["sentipolc"]
        al = dev["all_labelled"]
        row = {
            "bias": bias,
            "sentipolc_dev_mixed_f1": round(_mixed_f1([g for _, g in sp], _labels(r, [s for s, _ in sp])), 4),
            "all_dev_macro_f1_4way": round(
                M.macro_f1([g for _, g in al], _labels(r, [s for s, _ in al]), list(SENTIMENT_LABELS)), 4
            ),
        }
        for key, rows in (("ate_dev", dev["starred"]), ("amazon_it", sets["amazon"])):
            pred = _labels(r, [s for s, _ in rows])
            high = [p == "mixed" for (_, st), p in zip(rows, pred, strict=True) if st >= 4]
            row[f"{key}_4_5_stars_mixed"] = round(float(np.mean(high)), 4)
        sweep.append(row)
    report["bias_sweep_on_report_sets"] = sweep
    return rule, report


#: report thresholds tried per topic; F-beta with beta < 1 weighs precision (a wrong driver costs more than a
#: missed mention); a topic keeps its own threshold unless a higher one gains at least MIN_GAIN on the train split
TOPIC_GRID = tuple(round(x, 2) for x in np.arange(0.30, 0.96, 0.05))
TOPIC_BETA = 0.5
MIN_GAIN = 0.02
CATCH_ALL = "other"


def _fbeta(tp: int, fp: int, fn: int, beta: float = TOPIC_BETA) -> float:
    b2 = beta * beta
    return (1 + b2) * tp / ((1 + b2) * tp + b2 * fn + fp) if tp else 0.0


def fit_topic_thresholds(
    ids: Sequence[str], learned: Sequence[bool], rows: Sequence[tuple[DocScores, set[str], bool]]
) -> tuple[dict[str, float], dict[str, Any]]:
    """Per topic, the report threshold (at least the head's own) with the best F-beta on ``rows`` of
    ``(scores, gold topics, in domain)``: out-of-domain rows for a learned topic, every row for a zero-shot one."""
    out: dict[str, float] = {}
    detail: dict[str, Any] = {}
    for j, tid in enumerate(ids):
        mine = [(s, g) for s, g, inside in rows if not (learned[j] and inside)]
        if not mine:
            continue
        base = float(mine[0][0].topic_threshold[j])
        scores = np.asarray([s.topic_score[j] for s, _ in mine])
        gold = np.asarray([tid in g for _, g in mine])

        def f(t: float, scores: np.ndarray = scores, gold: np.ndarray = gold) -> tuple[float, int, int, int]:
            pred = scores >= t
            tp, fp, fn = int((pred & gold).sum()), int((pred & ~gold).sum()), int((~pred & gold).sum())
            return _fbeta(tp, fp, fn), tp, fp, fn

        f0 = f(base)
        best_t, best = base, f0
        for t in TOPIC_GRID:
            if t <= base:
                continue
            cur = f(t)
            if cur[0] > best[0] + 1e-9 or (best[1] == 0 and cur[2] < best[2]):
                best_t, best = float(t), cur
        if best[0] < f0[0] + MIN_GAIN and not (f0[1] == 0 and best[2] < f0[2]):
            best_t, best = base, f0
        if best_t > base:
            out[tid] = round(best_t, 2)
        detail[tid] = {"base": round(base, 4), "chosen": round(best_t, 4), "gold": int(gold.sum()),
                       "fbeta_base": round(f0[0], 4), "fbeta_chosen": round(best[0], 4),
                       "tp_fp_fn_base": f0[1:], "tp_fp_fn_chosen": best[1:]}  # fmt: skip
    return out, detail


def _reported(s: DocScores, ids: Sequence[str], learned: Sequence[bool], thresholds: dict[str, float], inside: bool) -> set[str]:
    """The analyzer's rule (``Analyzer._topics``) on dumped scores."""
    out = set()
    for j, tid in enumerate(ids):
        at = float(s.topic_threshold[j])
        if tid in thresholds and not (learned[j] and inside):
            at = max(at, thresholds[tid])
        if s.topic_score[j] >= at:
            out.add(tid)
    return out


def topic_report(
    ids: Sequence[str], learned: Sequence[bool], rows: Sequence[tuple[DocScores, set[str], str, bool]],
    thresholds: dict[str, float],
) -> dict[str, Any]:
    """Micro precision/recall of reported topics per source (learned, zero-shot and the catch-all apart)."""
    kind = {
        tid: (CATCH_ALL if tid == CATCH_ALL else "learned" if lr else "zero_shot") for tid, lr in zip(ids, learned, strict=True)
    }
    preds = [_reported(s, ids, learned, thresholds, inside) for s, _, _, inside in rows]

    def stats(ix: Sequence[int], which: str | None = None) -> dict[str, float]:
        tp = fp = fn = 0
        for i in ix:
            p, g = preds[i], rows[i][1]
            if which is not None:
                p = {t for t in p if kind[t] == which}
                g = {t for t in g if kind.get(t) == which}
            tp += len(p & g)
            fp += len(p - g)
            fn += len(g - p)
        return {"precision": tp / (tp + fp) if tp + fp else float("nan"), "recall": tp / (tp + fn) if tp + fn else float("nan"),
                "reported": tp + fp}  # fmt: skip

    def block(ix: list[int]) -> dict[str, Any]:
        n = len(ix)
        allp = stats(ix)
        only_catch_all = [int(preds[i] == {CATCH_ALL}) for i in ix]
        nothing = [int(not preds[i]) for i in ix]
        out: dict[str, Any] = {
            "texts": n,
            "precision": round(allp["precision"], 4), "recall": round(allp["recall"], 4),
            "precision_interval": _interval(lambda b: stats([ix[k] for k in b])["precision"], n),
            "recall_interval": _interval(lambda b: stats([ix[k] for k in b])["recall"], n),
            "topics_reported_per_text": round(allp["reported"] / n, 3),
            "only_catch_all_share": round(float(np.mean(only_catch_all)), 4),
            "no_topic_share": round(float(np.mean(nothing)), 4),
            "out_of_domain_share": round(float(np.mean([not rows[i][3] for i in ix])), 4),
        }  # fmt: skip
        for which in ("learned", "zero_shot", CATCH_ALL):
            st = stats(ix, which)
            out[which] = {k: (round(v, 4) if isinstance(v, float) and v == v else (None if isinstance(v, float) else v))
                          for k, v in st.items()}  # fmt: skip
        return out

    sources = sorted({src for _, _, src, _ in rows})
    report = {"all": block(list(range(len(rows))))}
    for src in sources:
        report[src] = block([i for i, (_, _, s, _) in enumerate(rows) if s == src])
    return report


#: the public topic data the learned heads were trained on: their "seen" domains (hotels, restaurants, airlines)
DOMAIN_SOURCES = ("absita2018", "semeval2016_restaurants_en", "twitter_airline_en")
#: share of held-out in-domain texts the domain check may call out of domain
DOMAIN_MISS = 0.05
CENTROID_TEXTS = 2000


def domain_centroids(cache_dir: Path) -> tuple[np.ndarray, Any]:
    """Centred, normalised mean vectors of each domain source's head-training texts (fit slice)."""
    from voce.data.datasets import load_all
    from voce.data.splits import SplitSpec
    from voce.eval.quality_dump import load_analyzer
    from voce.models.zeroshot import centre

    analyzer = load_analyzer(cache_dir)
    spec = SplitSpec.from_manifest(analyzer.bundle.manifest_extra.get("split"))
    data = load_all(datasets=DOMAIN_SOURCES)
    out = []
    for src in DOMAIN_SOURCES:
        train, _ = spec.split([e for e in data[src] if e.text.strip()])
        fit, _ = spec.calibration(train)
        texts = [e.text for e in fit[:CENTROID_TEXTS]]
        c = centre(analyzer.encoder.encode(texts), analyzer.bundle.center).mean(axis=0)
        out.append(c / np.linalg.norm(c))
    analyzer.encoder.save()  # type: ignore[attr-defined]
    return np.asarray(out, np.float32), analyzer.bundle.center


def _similarity(vec: np.ndarray, centroids: np.ndarray, center: np.ndarray) -> float:
    from voce.models.zeroshot import centre

    return float((centre(vec[None, :].astype(np.float32), center) @ centroids.T).max())


def topic_section(cache: Path, cache_dir: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """The domain check (centroids, minimum similarity) and per-topic report thresholds, fitted on training-side
    texts; before/after on the annotated corpus's dev split."""
    from voce.data.datasets import load_all
    from voce.data.realcx import load_realcx, split_realcx

    centroids, center = domain_centroids(cache_dir)
    # the minimum similarity: all but DOMAIN_MISS of the domain sources' calibration texts (held out of fitting)
    sources = {e.uid: e.source for rows in load_all(datasets=DOMAIN_SOURCES).values() for e in rows}
    cal = load_scores(cache / "public_cal.pkl")["scores"]
    inside_sims = [_similarity(s.vec, centroids, center) for u, s in cal.items() if u in sources]
    tau = float(np.quantile(inside_sims, DOMAIN_MISS))

    data = load_scores(cache / "realcx.pkl")
    ids, learned, scores = data["topic_ids"], data["learned"], data["scores"]
    corpus = load_realcx()
    train, dev = split_realcx(corpus)
    inside = {r.uid: _similarity(scores[r.uid].vec, centroids, center) >= tau for r in corpus}
    fit_rows = [(scores[r.uid], set(r.topics), inside[r.uid]) for r in train]
    thresholds, detail = fit_topic_thresholds(ids, learned, fit_rows)
    dev_rows = [(scores[r.uid], set(r.topics), r.source, inside[r.uid]) for r in dev]
    rule = {"report_thresholds": thresholds, "domain_sources": list(DOMAIN_SOURCES),
            "domain_min_similarity": round(tau, 4), "domain_centroids": np.round(centroids, 5).tolist()}  # fmt: skip
    report = {
        "fitted_on": {"texts": len(train), "split": "train split of data/labels/realcx (by group); the topic heads "
                      "learned from most of it, so their scores there are optimistic and the fitted thresholds "
                      "lean low (conservative)"},
        "report_on": {"texts": len(dev), "split": "dev split of data/labels/realcx (never fitted on)"},
        "domain_check": {"sources": list(DOMAIN_SOURCES), "min_similarity": round(tau, 4),
                         "held_out_in_domain_texts": len(inside_sims), "allowed_miss": DOMAIN_MISS},
        "thresholds": thresholds, "beta": TOPIC_BETA, "per_topic_fit": detail,
        "before": topic_report(ids, learned, [(s, g, src, True) for s, g, src, _ in dev_rows], {}),
        "after": topic_report(ids, learned, dev_rows, thresholds),
    }  # fmt: skip
    return rule, report


def write_decisions(bundle_dir: Path, decisions: dict[str, Any]) -> None:
    """Store ``decisions`` in the bundle's manifest (merged with what is there; tensors untouched)."""
    path = bundle_dir / "manifest.json"
    manifest = json.loads(path.read_text("utf-8"))
    manifest["decisions"] = {**manifest.get("decisions", {}), **decisions}
    path.write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", "utf-8")


def main(argv: list[str] | None = None) -> None:
    from voce.models.bundle import default_bundle_path

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cache", type=Path, default=Path(os.environ.get("VOCE_CACHE_DIR", ".cache/voce")) / "quality")
    ap.add_argument("--bundle", type=Path, default=None)
    ap.add_argument("--write", action="store_true", help="store the fitted rules in the bundle's manifest")
    args = ap.parse_args(argv)
    REPORT_DIR.mkdir(parents=True, exist_ok=True)
    rule, report = mixed_section(args.cache)
    (REPORT_DIR / "mixed.json").write_text(json.dumps(report, indent=2) + "\n", "utf-8")
    print(json.dumps({k: report[k] for k in ("rule_before", "rule_after")}, indent=1))
    for side in ("before", "after"):
        print(side, json.dumps(report[side]))
    topic_rule, topics = topic_section(args.cache, args.cache.parent)
    (REPORT_DIR / "topics.json").write_text(json.dumps(topics, indent=2) + "\n", "utf-8")
    print("topic report thresholds", topic_rule["report_thresholds"], "domain", topics["domain_check"])
    for side in ("before", "after"):
        print(side, json.dumps({k: {m: v[m] for m in ("precision", "recall", "only_catch_all_share")}
                                for k, v in topics[side].items()}))  # fmt: skip
    decisions = {"mixed": rule.config(), "topics": topic_rule}
    (REPORT_DIR / "decisions.json").write_text(json.dumps(decisions) + "\n", "utf-8")
    if args.write:
        write_decisions(args.bundle or default_bundle_path(), decisions)
        print("written to the bundle manifest")


if __name__ == "__main__":
    main()
