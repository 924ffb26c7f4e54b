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
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.linear_model import LogisticRegression

from voce.data.custom import CustomData, load_custom_file
from voce.data.datasets import Example, dataset_paths, load_all, load_ate_absita, resolve_data_dir
from voce.data.splits import data_fingerprint
from voce.models.bundle import VoceBundle
from voce.models.encoders.base import Encoder
from voce.models.heads import F32, ZeroShotCalibration
from voce.models.taxonomy import Taxonomy, default_taxonomy, load_taxonomy
from voce.models.zeroshot import ZeroShotScorer
from voce.training.config import TrainConfig
from voce.training.fit import best_threshold, fit_binary_head, fit_softmax_head, fit_temperature
from voce.training.heads import HEAD_FITTERS, HeadContext, each_head

#: the fitting primitives, importable from here as before (tests/models)
__all__ = [
    "best_threshold", "fit_binary_head", "fit_softmax_head", "fit_temperature", "fit_zero_shot_calibration",
    "load_training_data", "train", "train_from_config", "train_heads", "training_taxonomy",
]

log = logging.getLogger(__name__)
Progress = Callable[[str], None]


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


def train_heads(
    cfg: TrainConfig,
    encoder: Encoder,
    train: list[Example],
    *,
    progress: Progress = log.info,
    base_encoder: Callable[[], Encoder] | None = None,
) -> VoceBundle:
    """Fit every registered head on ``train`` (embeddings via ``encoder``) and return an unsaved bundle.

    The heads come from :data:`~voce.training.heads.HEAD_FITTERS`, each under its bundle field; the zero-shot
    calibration is its own step after them (it calibrates the taxonomy's prototypes, not a learned head).
    """
    taxonomy = training_taxonomy(cfg)
    ctx = HeadContext.build(cfg, taxonomy, encoder, train, progress, base_encoder)
    for name, fitter in HEAD_FITTERS.items():
        ctx.fitted[name] = fitter(ctx)
    fitted = dict(ctx.fitted)

    # --- zero-shot calibration, fitted on labelled topics and reused for the rest
    t_fit, t_cal = ctx.topic_rows
    zero_shot = fit_zero_shot_calibration(
        encoder, ctx.center, t_cal or t_fit, ctx.X(t_cal or t_fit), ctx.topic_ids, cfg.seed, taxonomy=taxonomy
    )
    progress(f"zero-shot calibration: {zero_shot.config()}")

    return VoceBundle(
        encoder={"name": encoder.name, "dim": encoder.dim, "backend": cfg.encoder_backend, "model": cfg.encoder_model},
        **fitted,
        zero_shot=zero_shot,
        center=ctx.center,
        version=cfg.version,
        adapter=cfg.encoder_adapter,
        manifest_extra={"taxonomy": taxonomy_record(taxonomy, custom=cfg.taxonomy is not None)},
        topic_languages=_topic_languages(ctx),
        lexical=ctx.lexical if any(h.lexical_dim for h in each_head(fitted)) else None,
        touchpoints_fingerprint=taxonomy.touchpoints.fingerprint() if fitted.get("touchpoints") is not None else None,
    )


def _topic_languages(ctx: HeadContext) -> dict[str, list[str]]:
    """Languages each learned topic had labels in (public rows and the annotated corpus)."""
    from voce.training.touchpoints import corpus_rows

    t_fit = ctx.topic_rows[0]
    corpus = corpus_rows(ctx) if ctx.cfg.corpus_topic_weight > 0 else None
    extra = [(r.language, r.topics) for r in corpus.fit] if corpus is not None else []
    return {
        tid: sorted({e.language for e in t_fit if e.topics and tid in e.topics} | {lg for lg, ts in extra if tid in ts})
        for tid in ctx.topic_ids
    }


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


def train(
    cfg: TrainConfig, encoder: Encoder, *, progress: Progress = log.info, base_encoder: Callable[[], Encoder] | None = None
) -> tuple[VoceBundle, dict[str, Any]]:
    """Load data, split, fit, evaluate on dev, save the bundle; returns it with the dev report.

    ``base_encoder`` is the encoder without the adapter (exclusive sections read it); default: ``encoder``.
    """
    from voce.eval.evaluate import (  # eval depends on models only; imported late to keep CLI start fast
        evaluate_bundle,
        realcx_corpus,
    )

    t0 = time.time()
    examples, custom = load_training_data(cfg, progress=progress)
    train_ex, dev_ex = cfg.split().split(examples)
    progress(f"{len(examples)} examples: {len(train_ex)} train / {len(dev_ex)} dev")
    bundle = train_heads(cfg, encoder, train_ex, progress=progress, base_encoder=base_encoder)
    progress("evaluating on the dev split through the analyzer")
    ate_dev = load_ate_absita("dev", cfg.data_dir) if cfg.include_public_data else None
    report = evaluate_bundle(
        bundle, encoder, dev_ex, ate_dev=ate_dev, taxonomy=training_taxonomy(cfg), progress=progress,
        realcx=realcx_corpus(cfg.data_dir, progress) if cfg.touchpoint_data else None, base_encoder=base_encoder,
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
    bases: list[CachedEncoder] = []

    def base_encoder() -> Encoder:
        """The encoder without the adapter, loaded on first use and cached on disk like the other."""
        if cfg.encoder_adapter is None:
            return cached
        if not bases:
            bases.append(CachedEncoder(load_encoder(spec.model_copy(update={"adapter": None}), progress=progress),
                                       cache_dir))
        return bases[0]

    try:
        return train(cfg, cached, progress=progress, base_encoder=base_encoder)
    finally:
        cached.save()
        for b in bases:
            b.save()


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
