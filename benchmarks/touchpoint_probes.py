"""The probes behind the touchpoint design choices (``reports/touchpoints/README.md``), reproducible.

    python -m benchmarks.touchpoint_probes --out reports/touchpoints/probes.json

On the annotated real-text corpus (:mod:`voce.data.realcx`), with the shipped bundle's fine-tuned encoder and the
base e5 encoder (embeddings cached under ``--cache-dir``):

1. the primary-touchpoint head on the embedding alone against embedding + n-grams: 5-fold CV on the train split
   and leave-one-source-out over the whole corpus (how it carries to a source it never saw);
2. class weighting of the primary head: dev top-1 on the corpus's own mix and with the dev classes reweighted to
   the mix of the issue's held-out texts (product/service 99, delivery 75, billing 67, call center 37, store 36,
   store staff 20, none 103 of 470);
3. weak supervision: the precision of keyword rules on the train split, and the primary head trained with the rules'
   labels on the unlabelled texts added (weight 0.1 and 0.3);
4. journey stages zero-shot: the similarity to the stage descriptions under the fine-tuned and the base encoder.

Scratch-free by design: it uses the library's loaders, encoders and split, and writes one JSON file.
"""
from __future__ import annotations

import argparse
import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
from scipy import sparse
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression

from voce.data.realcx import JOURNEYS, NONE, TOUCHPOINTS, CXText, journey_path, load_realcx, split_realcx
from voce.data.splits import group_hash
from voce.data.unlabelled import UNLABELLED, load_unlabelled
from voce.models.bundle import VoceBundle, default_bundle_path
from voce.models.encoders.cache import CachedEncoder
from voce.models.encoders.factory import load_encoder
from voce.models.heads import zero_shot_features
from voce.models.taxonomy import load_taxonomy
from voce.models.zeroshot import centre

CLASSES = [*TOUCHPOINTS, NONE]
HELD_OUT_MIX = {"product_service": 99, "delivery": 75, "billing": 67, "call_center": 37, "store": 36,
                "store_staff": 20, "none": 103}  # fmt: skip
RULES = {
    "delivery": r"\bcorrier[ei]\b|\bconsegn|spedizion|spedit|\bpacc[oh]i?\b|tracking|\bcourier|deliver(y|ed)\b|\bparcel"
                r"|shipping",
    "packaging": r"imballag|imballo|confezione (era|arrivata|rovinata|danneggiata)|scatola (rovinata|danneggiata|rotta)"
                 r"|packaging|box was (damaged|crushed)",
    "billing": r"bollett|fattur|addebit|rimbors|\brefund|\bcharged\b|overcharg|\binvoice|\bbilling\b|\bbill\b",
    "call_center": r"call ?-?cent|numero verde|\bal telefono\b|\btelefonat|\bon hold\b|\bhotline\b|\boperator[ei]\b",
    "website": r"\bsito\b|\bportale\b|\bwebsite\b|\bweb ?site\b|\bonline check",
    "mobile_app": r"\bl'app\b|\bapp\b|\bapplicazion",
    "email": r"\bemail|\be-mail|\bpec\b",
    "store_staff": r"\bcommess[aoi]|\bcassier|\bflight attendant|\bcabin crew|\bcrew\b|\breceptionist|\bwaiter|\bcameriere",
    "social_media": r"\bdm\b|\bdms\b|direct message|\bfacebook\b|\binstagram\b",
    "advertising": r"pubblicit|\bcommercial\b|\bads?\b|advertis",
    "chat_chatbot": r"\bchat\b|chatbot|whatsapp",
}  # fmt: skip


def _primary_fit(x: np.ndarray, y: np.ndarray, weight: np.ndarray | None = None) -> LogisticRegression:
    return LogisticRegression(C=8, max_iter=3000, random_state=13).fit(x, y, sample_weight=weight)


def _lexical(texts: list[str], fit_idx: list[int]) -> Any:
    word = TfidfVectorizer(ngram_range=(1, 2), min_df=2, max_features=20000, sublinear_tf=True)
    char = TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), min_df=3, max_features=50000, sublinear_tf=True)
    word.fit([texts[i] for i in fit_idx])
    char.fit([texts[i] for i in fit_idx])
    return lambda idx: sparse.hstack([word.transform([texts[i] for i in idx]), char.transform([texts[i] for i in idx])])


def probe_features(rows: list[CXText], x: np.ndarray) -> dict[str, Any]:
    """Embedding vs embedding + n-grams: CV on train, leave-one-source-out on everything."""
    texts = [r.text for r in rows]
    y = np.asarray([CLASSES.index(r.primary) for r in rows])
    train = [i for i, r in enumerate(rows) if r in set(split_realcx(rows)[0])]
    out: dict[str, Any] = {}
    for name, with_lex in (("embedding", False), ("embedding+ngrams", True)):
        def design(fit_idx: list[int], idx: list[int], with_lex: bool = with_lex) -> Any:
            if not with_lex:
                return x[idx]
            return sparse.hstack([sparse.csr_matrix(x[idx]), _lexical(texts, fit_idx)(idx)]).tocsr()

        fold = np.asarray([int(group_hash(77, rows[i].source, rows[i].group) * 5) for i in train])
        hits = 0
        for f in range(5):
            a = [train[k] for k in range(len(train)) if fold[k] != f]
            b = [train[k] for k in range(len(train)) if fold[k] == f]
            hits += int((_primary_fit(design(a, a), y[a]).predict(design(a, b)) == y[b]).sum())
        loso = {}
        for src in sorted({r.source for r in rows}):
            a = [i for i, r in enumerate(rows) if r.source != src]
            b = [i for i, r in enumerate(rows) if r.source == src]
            loso[src] = round(float(np.mean(_primary_fit(design(a, a), y[a]).predict(design(a, b)) == y[b])), 3)
        n = {s: sum(r.source == s for r in rows) for s in loso}
        out[name] = {"cv5_top1": round(hits / len(train), 3), "loso_per_source": loso,
                     "loso_micro": round(sum(loso[s] * n[s] for s in loso) / sum(n.values()), 3)}  # fmt: skip
    return out


def probe_balance(rows: list[CXText], x: np.ndarray) -> dict[str, Any]:
    """Class weights (n / (k * count)) ** p of the primary head, on the corpus's mix and the held-out mix."""
    train, dev = split_realcx(rows)
    ti = [rows.index(r) for r in train]
    di = [rows.index(r) for r in dev]
    counts = Counter(rows[i].primary for i in ti)
    space = [c for c in CLASSES if counts.get(c, 0) >= 8]
    ti = [i for i in ti if rows[i].primary in space]
    y = np.asarray([space.index(rows[i].primary) for i in ti])
    out = {}
    for p in (0.0, 0.5, 1.0):
        c = Counter(y.tolist())
        w = np.asarray([(len(y) / (len(c) * c[v])) ** p for v in y])
        pred = [space[k] for k in _primary_fit(x[ti], y, w).predict(x[di])]
        per = {cl: float(np.mean([pr == rows[i].primary for pr, i in zip(pred, di, strict=True) if rows[i].primary == cl]))
               for cl in HELD_OUT_MIX if any(rows[i].primary == cl for i in di)}  # fmt: skip
        mix = sum(HELD_OUT_MIX[cl] * v for cl, v in per.items()) / sum(HELD_OUT_MIX[cl] for cl in per)
        top1 = float(np.mean([pr == rows[i].primary for pr, i in zip(pred, di, strict=True)]))
        out[f"power_{p:g}"] = {"dev_top1": round(top1, 3), "held_out_mix_top1": round(mix, 3)}
    return out


def probe_weak(rows: list[CXText], x: np.ndarray, enc: CachedEncoder) -> dict[str, Any]:
    """Keyword rules: their precision on the train split, and the primary head with their labels added."""
    rx = {k: re.compile(v, re.I) for k, v in RULES.items()}
    train, dev = split_realcx(rows)
    ti = [rows.index(r) for r in train]
    di = [rows.index(r) for r in dev]
    precision = {}
    for k, r in rx.items():
        fired = [i for i in ti if r.search(rows[i].text)]
        if fired:
            hit = float(np.mean([k in rows[i].touchpoints for i in fired]))
            precision[k] = {"fires": len(fired), "touchpoint_precision": round(hit, 2)}
    known = {r.uid for r in rows}
    pool = [t.text for name in UNLABELLED for t in load_unlabelled(name) if t.uid not in known]
    weak = [(t, [k for k, r in rx.items() if r.search(t)]) for t in pool]
    weak = [(t, f[0]) for t, f in weak if len(f) == 1]
    xw = enc.encode([t for t, _ in weak])
    yw = np.asarray([CLASSES.index(k) for _, k in weak])
    y = np.asarray([CLASSES.index(rows[i].primary) for i in ti])
    yd = np.asarray([CLASSES.index(rows[i].primary) for i in di])
    out: dict[str, Any] = {"rule_precision": precision, "weak_rows": len(weak)}
    for w in (0.0, 0.1, 0.3):
        clf = _primary_fit(np.vstack([x[ti], xw]), np.concatenate([y, yw]),
                           np.concatenate([np.ones(len(ti)), np.full(len(yw), w)]))  # fmt: skip
        out[f"weight_{w:g}_dev_top1"] = round(float(np.mean(clf.predict(x[di]) == yd)), 3)
    return out


def probe_journeys(rows: list[CXText], encoders: dict[str, CachedEncoder]) -> dict[str, Any]:
    """Journey stages from their descriptions alone: best centred cosine under each encoder, against the majority."""
    out: dict[str, Any] = {}
    for name in JOURNEYS:
        section = load_taxonomy(journey_path(name)).touchpoints
        staged = [r for r in rows if r.journey == name and r.stage in section.ids]
        gold = np.asarray([section.ids.index(r.stage) for r in staged])
        part = {"texts": len(staged), "majority": round(Counter(gold.tolist()).most_common(1)[0][1] / len(staged), 3)}
        for label, enc in encoders.items():
            x = enc.encode([r.text for r in rows])
            center = x.mean(axis=0)
            xs = centre(enc.encode([r.text for r in staged]), center)
            protos = [centre(enc.encode(e.prototype_texts()), center) for e in section.entries]
            sims, _ = zero_shot_features(xs, protos)
            part[label] = round(float(np.mean(sims.argmax(axis=1) == gold)), 3)
        out[name] = part
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.touchpoint_probes", description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=Path("reports/touchpoints/probes.json"))
    ap.add_argument("--cache-dir", type=Path, default=Path(".cache/voce"))
    args = ap.parse_args(argv)
    rows = load_realcx()
    bundle = VoceBundle.load(default_bundle_path())
    spec = bundle.encoder_spec(cache_dir=args.cache_dir)
    tuned = CachedEncoder(load_encoder(spec), args.cache_dir)
    base = CachedEncoder(load_encoder(spec.model_copy(update={"adapter": None})), args.cache_dir)
    x = tuned.encode([r.text for r in rows])
    report = {
        "features": probe_features(rows, x),
        "class_balance": probe_balance(rows, x),
        "weak_supervision": probe_weak(rows, x, tuned),
        "journeys_zero_shot_similarity": probe_journeys(rows, {"fine_tuned": tuned, "base": base}),
        "command": "python -m benchmarks.touchpoint_probes --out " + str(args.out),
    }
    tuned.save()
    base.save()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n", "utf-8")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
