"""Rebuild the shipped heads from the labelled public data, reproducibly.

Frozen encoder + logistic-regression heads: every text is embedded once with the
serving encoder (cached on disk), then each head is fitted on the training split,
calibrated on a held-out calibration slice of it, and scored on the dev split
through the same :class:`~models.analyzer.Analyzer` the service runs.

A team's own labelled files (``extra_data``, read by :mod:`voce.data.custom`)
join the public data, or replace it (``include_public_data: false``); they go
through the same seeded split and get their own section in the dev report.
Topic heads are trained for the topic ids of ``taxonomy`` (default: the shipped
taxonomy), and a custom taxonomy is saved into the bundle's manifest.
"""
from __future__ import annotations

import logging
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from scipy import sparse
from sklearn.linear_model import LogisticRegression

from voce.data.custom import CustomData, load_custom_file
from voce.data.datasets import Example, annotated_topics, dataset_paths, load_all, load_ate_absita, resolve_data_dir
from voce.data.splits import data_fingerprint
from voce.models.bundle import VoceBundle
from voce.models.encoders.base import Encoder
from voce.models.heads import F32, Lexical, LinearHead, ZeroShotCalibration
from voce.models.labels import SENTIMENT_LABELS
from voce.models.lexical import LexicalFeaturizer
from voce.models.taxonomy import Taxonomy, default_taxonomy, load_taxonomy
from voce.models.zeroshot import ZeroShotScorer
from voce.training.config import TrainConfig

log = logging.getLogger(__name__)
Progress = Callable[[str], None]


def fit_temperature(logits: F32, y: np.ndarray) -> float:
    """Temperature minimising the negative log-likelihood (grid + golden refinement)."""
    def nll(t: float) -> float:
        z = logits / t
        z = z - z.max(axis=1, keepdims=True)
        logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
        return float(-logp[np.arange(len(y)), y].mean())

    grid = np.exp(np.linspace(np.log(0.2), np.log(5.0), 41))
    best = float(grid[np.argmin([nll(float(t)) for t in grid])])
    lo, hi = best / 1.2, best * 1.2
    for _ in range(30):
        a, b = lo + (hi - lo) * 0.382, lo + (hi - lo) * 0.618
        if nll(a) < nll(b):
            hi = b
        else:
            lo = a
    return float((lo + hi) / 2)


def _design(x: F32, lex: Lexical | None) -> Any:
    """The LR design matrix: the embedding, then (for hybrid heads) the sparse n-gram block."""
    return x if lex is None else sparse.hstack([sparse.csr_matrix(x), lex], format="csr")


def _split_coef(coef: np.ndarray, dim: int, hybrid: bool) -> tuple[F32, F32 | None]:
    """Embedding weights, and the lexical ones rounded to float16 as the bundle stores them."""
    w = np.asarray(coef[:, :dim], np.float32)
    return w, (np.asarray(coef[:, dim:], np.float16).astype(np.float32) if hybrid else None)


def fit_softmax_head(
    x: F32, labels: Sequence[str], label_space: list[str], C: float, seed: int, x_cal: F32, y_cal: Sequence[str],
    lex: Lexical | None = None, lex_cal: Lexical | None = None,
) -> LinearHead:
    """Multinomial LR over ``label_space``; classes absent from voce.training get a -inf-like bias.

    With ``lex`` (and ``lex_cal``) the head is hybrid: it also reads those n-gram features.
    """
    idx = {lab: i for i, lab in enumerate(label_space)}
    y = np.asarray([idx[v] for v in labels])
    clf = LogisticRegression(C=C, max_iter=2000, random_state=seed)
    clf.fit(_design(x, lex), y)
    width = x.shape[1] + (lex.shape[1] if lex is not None else 0)
    coef_all = np.zeros((len(label_space), width), np.float32)
    b = np.full(len(label_space), -30.0, np.float32)
    coef = clf.coef_ if len(clf.classes_) > 2 else np.vstack([-clf.coef_[0] / 2, clf.coef_[0] / 2])
    icpt = clf.intercept_ if len(clf.classes_) > 2 else np.asarray([-clf.intercept_[0] / 2, clf.intercept_[0] / 2])
    for row, cls in enumerate(clf.classes_):
        coef_all[cls], b[cls] = coef[row], icpt[row]
    w, w_lex = _split_coef(coef_all, x.shape[1], lex is not None)
    head = LinearHead(kind="softmax", labels=list(label_space), weight=w, bias=b, lex_weight=w_lex)
    if len(y_cal) >= 20:
        y_c = np.asarray([idx[v] for v in y_cal])
        head.temperature = np.asarray([fit_temperature(head.logits(x_cal, lex_cal), y_c)], np.float32)
    return head


def fit_binary_head(
    x: F32, y: np.ndarray, C: float, seed: int, x_cal: F32, y_cal: np.ndarray, label: str,
    lex: Lexical | None = None, lex_cal: Lexical | None = None, sample_weight: np.ndarray | None = None,
) -> LinearHead:
    clf = LogisticRegression(C=C, max_iter=2000, random_state=seed, class_weight=None)
    clf.fit(_design(x, lex), y, sample_weight=sample_weight)
    w, w_lex = _split_coef(clf.coef_, x.shape[1], lex is not None)
    head = LinearHead(kind="sigmoid", labels=[label], weight=w, bias=clf.intercept_, lex_weight=w_lex)
    if len(y_cal) >= 20 and 0 < y_cal.sum() < len(y_cal):
        z = head.logits(x_cal, lex_cal)[:, 0]
        two = np.stack([np.zeros_like(z), z], axis=1)
        head.temperature = np.asarray([fit_temperature(two, y_cal.astype(int))], np.float32)
    return head


def best_threshold(p: np.ndarray, y: np.ndarray) -> float:
    """Decision threshold maximising F1 on calibration data (0.5 when too few positives)."""
    if y.sum() < 5:
        return 0.5
    grid = np.linspace(0.15, 0.85, 29)
    f1 = []
    for t in grid:
        pred = p >= t
        tp = float((pred & (y == 1)).sum())
        f1.append(2 * tp / max(float(pred.sum() + y.sum()), 1.0))
    return float(grid[int(np.argmax(f1))])


def training_taxonomy(cfg: TrainConfig) -> Taxonomy:
    """The taxonomy whose topic ids get learned heads: ``cfg.taxonomy`` (missing sections from the default)."""
    return load_taxonomy(cfg.taxonomy) if cfg.taxonomy else default_taxonomy()


def taxonomy_record(taxonomy: Taxonomy, custom: bool) -> dict[str, Any]:
    """``manifest["taxonomy"]``: which taxonomy the topic heads belong to.

    A custom taxonomy is stored whole (``definition``, the same format as the YAML
    file) so a bundle trained on it can serve without the original file; the
    default one is named by version and fingerprint only.
    """
    record: dict[str, Any] = {
        "version": taxonomy.version,
        "custom": custom,
        "topics_fingerprint": taxonomy.topics.fingerprint(),
    }
    if custom:
        record["definition"] = taxonomy.model_dump(mode="json")
        record["definition"]["topics"] = record["definition"]["topics"]["entries"]
        record["definition"]["touchpoints"] = record["definition"]["touchpoints"]["entries"]
    return record


@dataclass(frozen=True)
class _TaxonomyRows:
    """The taxonomy's topic examples as training rows: embeddings, n-grams (hybrid heads) and topic ids."""

    x: F32
    lex: Lexical | None
    topic: np.ndarray


def _taxonomy_rows(
    taxonomy: Taxonomy, topic_ids: list[str], cfg: TrainConfig, encoder: Encoder, lexical: LexicalFeaturizer | None
) -> _TaxonomyRows | None:
    """Example sentences of the topics that get heads, or None when unused (weight 0 or no examples)."""
    if cfg.taxonomy_example_weight <= 0:
        return None
    rows = [(text, e.id) for e in taxonomy.topics.entries if e.id in topic_ids for text in e.examples if text.strip()]
    if not rows:
        return None
    texts = [t for t, _ in rows]
    lex = lexical.transform(texts) if lexical is not None else None
    return _TaxonomyRows(encoder.encode(texts), lex, np.asarray([tid for _, tid in rows]))


def _learns_topic(rows: list[Example], tid: str, annotated: dict[str, frozenset[str]], cfg: TrainConfig) -> np.ndarray:
    """Which topic-labelled rows the head of ``tid`` learns from (``cfg.topic_negatives``)."""
    keep = np.asarray([tid in annotated.get(e.source, frozenset()) for e in rows], bool)
    labels = {tid in (e.topics or {}) for e, k in zip(rows, keep, strict=True) if k}
    if cfg.topic_negatives == "all" or len(labels) < 2:  # the annotating rows alone have no negatives
        return np.ones(len(rows), bool)
    return keep


def _need_labels(what: str, rows: list[Example], values: Sequence[object], hint: str) -> None:
    """Fail with a clear message instead of scikit-learn's when a head cannot be fitted."""
    if not rows:
        raise ValueError(f"no training rows with a {what} label; {hint}")
    if len(set(values)) < 2:
        raise ValueError(f"every training row has the same {what} label ({values[0]!r}); a head needs two classes; {hint}")


def train_heads(
    cfg: TrainConfig,
    encoder: Encoder,
    train: list[Example],
    *,
    progress: Progress = log.info,
) -> VoceBundle:
    """Fit every head on ``train`` (embeddings via ``encoder``) and return an unsaved bundle."""
    taxonomy = training_taxonomy(cfg)
    hint = "add such labels to extra_data or set include_public_data: true"
    fit, cal = cfg.split().calibration(train)
    progress(f"embedding {len(train)} training texts with {encoder.name}")
    texts = sorted({e.text for e in train})
    vecs = encoder.encode(texts)
    row = {t: i for i, t in enumerate(texts)}

    def X(exs: list[Example]) -> F32:
        return vecs[[row[e.text] for e in exs]] if exs else np.zeros((0, encoder.dim), np.float32)

    lexical = None
    if cfg.lexical_heads:
        lexical = LexicalFeaturizer.fit(texts, cfg.lexical_spec())
        if lexical.dim:
            progress(f"lexical n-grams for {', '.join(cfg.lexical_heads)}: {lexical.dim} features")
            lex_all = lexical.transform(texts)
        else:
            progress(f"no n-gram occurs in {cfg.lexical_min_df} training texts: every head stays embedding-only")
            lexical = None

    def Lx(exs: list[Example], head: str) -> Lexical | None:
        """The rows' n-gram features when ``head`` is one of ``cfg.lexical_heads``."""
        if lexical is None or head not in cfg.lexical_heads:
            return None
        return lex_all[[row[e.text] for e in exs]]

    center = vecs.mean(axis=0).astype(np.float32)

    # --- sentiment (document/sentence, 4-way)
    s_fit = [e for e in fit if e.sentiment is not None]
    s_cal = [e for e in cal if e.sentiment is not None]
    progress(f"sentiment head on {len(s_fit)} texts")
    _need_labels("sentiment", s_fit, [e.sentiment for e in s_fit], hint)
    sentiment = fit_softmax_head(
        X(s_fit), [e.sentiment for e in s_fit if e.sentiment], SENTIMENT_LABELS, cfg.C_sentiment, cfg.seed,
        X(s_cal), [e.sentiment for e in s_cal if e.sentiment], Lx(s_fit, "sentiment"), Lx(s_cal, "sentiment"),
    )

    # --- topics (multi-label, one binary LR per labelled topic)
    t_fit = [e for e in fit if e.topics is not None]
    t_cal = [e for e in cal if e.topics is not None]
    counts: dict[str, int] = {}
    for e in t_fit:
        for k in e.topics or {}:
            counts[k] = counts.get(k, 0) + 1
    # a topic on every annotated row has no negatives to learn from
    topic_ids = [t for t in taxonomy.topics.ids if cfg.min_topic_examples <= counts.get(t, 0) < len(t_fit)]
    progress(f"topic heads for {len(topic_ids)} topics on {len(t_fit)} texts: {', '.join(topic_ids)}")
    undeclared = sorted(set(counts) - set(taxonomy.topics.ids))
    if undeclared:
        progress(
            f"no head for labelled topics missing from taxonomy {taxonomy.version!r}: {', '.join(undeclared)}"
            " (declare them in a taxonomy YAML and set taxonomy: in the train config)"
        )
    ws, ws_lex, bs, temps, thrs = [], [], [], [], []
    xf, xc, lf, lc = X(t_fit), X(t_cal), Lx(t_fit, "topics"), Lx(t_cal, "topics")
    tax = _taxonomy_rows(taxonomy, topic_ids, cfg, encoder, lexical if lf is not None else None)
    if tax is not None:
        progress(f"topic heads also learn from {len(tax.topic)} taxonomy example sentences "
                 f"(weight {cfg.taxonomy_example_weight:g})")  # fmt: skip
    annotated = annotated_topics([*t_fit, *t_cal])
    for tid in topic_ids:
        keep_f = _learns_topic(t_fit, tid, annotated, cfg)
        keep_c = _learns_topic(t_cal, tid, annotated, cfg)
        yf = np.asarray([tid in (e.topics or {}) for e in t_fit], int)[keep_f]
        yc = np.asarray([tid in (e.topics or {}) for e in t_cal], int)[keep_c]
        x_t, l_t, weight = xf[keep_f], (lf[keep_f] if lf is not None else None), None
        if tax is not None:
            x_t = np.vstack([x_t, tax.x])
            l_t = sparse.vstack([l_t, tax.lex], format="csr") if l_t is not None else None
            yf = np.concatenate([yf, (tax.topic == tid).astype(int)])
            weight = np.concatenate([np.ones(int(keep_f.sum())), np.full(len(tax.topic), cfg.taxonomy_example_weight)])
        x_c, l_c = xc[keep_c], (lc[keep_c] if lc is not None else None)
        h = fit_binary_head(x_t, yf, cfg.C_topics, cfg.seed, x_c, yc, tid, l_t, l_c, weight)
        ws.append(h.weight[0])
        if h.lex_weight is not None:
            ws_lex.append(h.lex_weight[0])
        bs.append(h.bias[0])
        temps.append(h.temperature[0])
        thrs.append(best_threshold(h.predict_proba(x_c, l_c)[:, 0], yc))
    topics = LinearHead(
        kind="sigmoid", labels=topic_ids, weight=np.stack(ws) if ws else np.zeros((0, encoder.dim), np.float32),
        bias=np.asarray(bs, np.float32), temperature=np.asarray(temps, np.float32), thresholds=np.asarray(thrs, np.float32),
        lex_weight=(np.stack(ws_lex) if ws_lex else np.zeros((0, lf.shape[1]), np.float32)) if lf is not None else None,
    )

    # --- per-topic polarity (aspect sentiment)
    polarity: dict[str, LinearHead] = {}
    for tid in topic_ids:
        pf = [e for e in fit if e.topics and tid in e.topics]
        pc = [e for e in cal if e.topics and tid in e.topics]
        classes = {e.topics[tid] for e in pf if e.topics}
        if len(pf) < cfg.min_polarity_examples or len(classes) < 2:
            continue
        polarity[tid] = fit_softmax_head(
            X(pf), [e.topics[tid] for e in pf if e.topics], SENTIMENT_LABELS, cfg.C_sentiment, cfg.seed,
            X(pc), [e.topics[tid] for e in pc if e.topics], Lx(pf, "topic_polarity"), Lx(pc, "topic_polarity"),
        )
    progress(f"topic polarity heads: {', '.join(sorted(polarity))}")

    # --- detractor
    d_fit = [e for e in fit if e.nps_detractor is not None]
    d_cal = [e for e in cal if e.nps_detractor is not None]
    progress(f"detractor head on {len(d_fit)} texts")
    _need_labels("detractor (nps/detractor/stars)", d_fit, [e.nps_detractor for e in d_fit], hint)
    detractor = fit_binary_head(
        X(d_fit), np.asarray([e.nps_detractor for e in d_fit]), cfg.C_detractor, cfg.seed,
        X(d_cal), np.asarray([e.nps_detractor for e in d_cal]), "detractor", Lx(d_fit, "detractor"),
        Lx(d_cal, "detractor"),
    )

    # --- zero-shot calibration, fitted on labelled topics and reused for the rest
    zero_shot = fit_zero_shot_calibration(
        encoder, center, t_cal or t_fit, X(t_cal or t_fit), topic_ids, cfg.seed, taxonomy=taxonomy
    )
    progress(f"zero-shot calibration: {zero_shot.config()}")

    return VoceBundle(
        encoder={"name": encoder.name, "dim": encoder.dim, "backend": cfg.encoder_backend, "model": cfg.encoder_model},
        sentiment=sentiment,
        topics=topics,
        topic_polarity=polarity,
        detractor=detractor,
        zero_shot=zero_shot,
        center=center,
        version=cfg.version,
        adapter=cfg.encoder_adapter,
        manifest_extra={"taxonomy": taxonomy_record(taxonomy, custom=cfg.taxonomy is not None)},
        topic_languages={
            tid: sorted({e.language for e in t_fit if e.topics and tid in e.topics}) for tid in topic_ids
        },
        lexical=lexical if any(h.lexical_dim for h in (sentiment, topics, detractor, *polarity.values())) else None,
    )


def fit_zero_shot_calibration(
    encoder: Encoder,
    center: F32,
    examples: list[Example],
    x: F32,
    topic_ids: list[str],
    seed: int,
    *,
    taxonomy: Taxonomy | None = None,
) -> ZeroShotCalibration:
    """Fit P(topic | similarity, margin) on labelled topics with the taxonomy's prototypes.

    Without a labelled topic that has both positive and negative rows there is
    nothing to fit, and the default coefficients are kept.
    """
    section = (taxonomy or default_taxonomy()).topics
    y = np.asarray([[t in (e.topics or {}) for t in topic_ids] for e in examples], int)
    if not topic_ids or len(np.unique(y)) < 2:
        return ZeroShotCalibration()
    scorer = ZeroShotScorer(encoder, center)
    sims, margin = scorer.features(scorer.centre(x), section)
    cols = [section.ids.index(t) for t in topic_ids]
    feats = np.stack([sims[:, cols].ravel(), margin[:, cols].ravel()], axis=1)
    clf = LogisticRegression(C=1.0, max_iter=1000, random_state=seed)
    clf.fit(feats, y.ravel())
    return ZeroShotCalibration(
        w_sim=float(clf.coef_[0, 0]), w_margin=float(clf.coef_[0, 1]), bias=float(clf.intercept_[0])
    )


def git_sha() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=False)
    except OSError:
        return None
    return out.stdout.strip() or None


def load_training_data(cfg: TrainConfig, *, progress: Progress = log.info) -> tuple[list[Example], list[CustomData]]:
    """Public datasets (unless excluded) plus every ``extra_data`` file, each capped at ``max_per_dataset``."""
    cap = cfg.max_per_dataset or None
    examples: list[Example] = []
    if cfg.include_public_data:
        examples = [e for rows in load_all(cfg.data_dir).values() for e in rows[:cap]]
    custom: list[CustomData] = []
    for path in cfg.extra_data:
        data = load_custom_file(path)
        progress(f"{path}: {data.summary()}")
        for err in data.errors[:20]:
            progress(f"  skipped {path.name} {err}")
        if len(data.errors) > 20:
            progress(f"  ... and {len(data.errors) - 20} more skipped rows")
        custom.append(data)
        examples += data.examples[:cap]
    return examples, custom


_PUBLIC_LICENCES = (
    "Trained on research / non-commercial data (see MODEL_CARD.md): SENTIPOLC 2016 (CC BY-NC-SA 3.0 IT),"
    " ABSITA 2018 (research), SemEval-2016 ABSA restaurants (research), Twitter US Airline Sentiment"
    " (CC BY-NC-SA 4.0), ATE_ABSITA 2020 (CC BY-NC-ND 4.0)."
)


def train(cfg: TrainConfig, encoder: Encoder, *, progress: Progress = log.info) -> tuple[VoceBundle, dict[str, Any]]:
    """Load data, split, fit, evaluate on dev, save the bundle; returns it with the dev report."""
    from voce.eval.evaluate import evaluate_bundle  # eval depends on models only; imported late to keep CLI start fast

    t0 = time.time()
    examples, custom = load_training_data(cfg, progress=progress)
    train_ex, dev_ex = cfg.split().split(examples)
    progress(f"{len(examples)} examples: {len(train_ex)} train / {len(dev_ex)} dev")
    bundle = train_heads(cfg, encoder, train_ex, progress=progress)
    progress("evaluating on the dev split through the analyzer")
    ate_dev = load_ate_absita("dev", cfg.data_dir) if cfg.include_public_data else None
    report = evaluate_bundle(
        bundle, encoder, dev_ex, ate_dev=ate_dev, taxonomy=training_taxonomy(cfg), progress=progress
    )
    data: dict[str, str] = {}
    if cfg.include_public_data:
        data = data_fingerprint(dataset_paths(cfg.data_dir), root=resolve_data_dir(cfg.data_dir))
    data |= {f"custom/{c.path.name}": c.sha256 for c in custom}
    licences = _PUBLIC_LICENCES if cfg.include_public_data else "Trained only on the team's own data (custom_data)."
    if custom and cfg.include_public_data:
        licences += " Also trained on the team's own data (custom_data)."
    bundle.manifest_extra = {
        **bundle.manifest_extra,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "git_sha": git_sha(),
        "training_config": cfg.model_dump(mode="json"),
        "training_config_hash": cfg.config_hash(),
        "data": data,
        "custom_data": [_custom_record(c, train_ex, dev_ex) for c in custom],
        "split": {"train": len(train_ex), "dev": len(dev_ex), **cfg.split().record()},
        "metrics": report["metrics"],
        "train_seconds": round(time.time() - t0, 1),
        "licences": licences,
    }
    bundle.save(cfg.output)
    progress(f"bundle written to {cfg.output} in {time.time() - t0:.0f}s")
    return bundle, report


def train_from_config(
    cfg: TrainConfig,
    *,
    cache_dir: Path,
    threads: int | None = None,
    import_embeddings: list[Path] | None = None,
    progress: Progress = log.info,
) -> tuple[VoceBundle, dict[str, Any]]:
    """``voce train``: the encoder ``cfg`` names behind the on-disk embedding cache, then :func:`train`.

    ``import_embeddings`` (files or folders of ``*.npz``) seeds the cache with vectors a GPU pass computed,
    so the CPU does not embed the 30k training texts again; a missing file raises ``FileNotFoundError``.
    """
    from voce.models.encoders.cache import CachedEncoder, embedding_files
    from voce.models.encoders.factory import EncoderSpec, load_encoder

    spec = EncoderSpec(
        backend=cfg.encoder_backend, model=cfg.encoder_model, cache_dir=cache_dir, threads=threads,
        adapter=cfg.encoder_adapter,
    )
    cached = CachedEncoder(load_encoder(spec, progress=progress), cache_dir)
    if import_embeddings:
        parts = embedding_files(import_embeddings)
        n = cached.import_npz(parts)
        progress(f"reusing {n} embeddings from {len(parts)} file(s)")
    try:
        return train(cfg, cached, progress=progress)
    finally:
        cached.save()


def _custom_record(data: CustomData, train_ex: list[Example], dev_ex: list[Example]) -> dict[str, Any]:
    """What the manifest says about one extra_data file: identity, parsing, and its share of each split."""
    return {
        "source": data.source,
        "file": data.path.name,
        "sha256": data.sha256,
        "encoding": data.encoding,
        "delimiter": data.delimiter,
        "rows": len(data.examples),
        "skipped_rows": len(data.errors),
        "labels": data.label_counts(),
        "train": sum(e.source == data.source for e in train_ex),
        "dev": sum(e.source == data.source for e in dev_ex),
    }
