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

import json
import logging
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.linear_model import LogisticRegression

from voce.data.custom import CustomData, load_custom_file
from voce.data.datasets import Example, dataset_paths, load_all, load_ate_absita, resolve_data_dir
from voce.data.splits import data_fingerprint, group_hash
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
    parent: VoceBundle | None = None,
) -> VoceBundle:
    """Fit every registered head on ``train`` (embeddings via ``encoder``) and return an unsaved bundle.

    The heads come from :data:`~voce.training.heads.HEAD_FITTERS`, each under its bundle field; the zero-shot
    calibration is its own step after them (it calibrates the taxonomy's prototypes, not a learned head).
    With a ``parent`` on the same encoder, what this run cannot learn is kept from it (:func:`keep_from_parent`).
    """
    taxonomy = training_taxonomy(cfg)
    ctx = HeadContext.build(cfg, taxonomy, encoder, train, progress, base_encoder)
    for name, fitter in HEAD_FITTERS.items():
        ctx.fitted[name] = fitter(ctx)
    fitted = dict(ctx.fitted)
    kept = keep_from_parent(cfg, encoder, taxonomy, fitted, parent, progress)

    # --- zero-shot calibration: the parent's (same encoder), or fitted on labelled topics and reused for the rest
    if "zero_shot" in kept:
        assert parent is not None
        zero_shot, center = parent.zero_shot, parent.center
    else:
        t_fit, t_cal = ctx.topic_rows
        zero_shot, center = fit_zero_shot_calibration(
            encoder, ctx.center, t_cal or t_fit, ctx.X(t_cal or t_fit), ctx.topic_ids, cfg.seed, taxonomy=taxonomy
        ), ctx.center
    progress(f"zero-shot calibration{' (kept from the parent)' if 'zero_shot' in kept else ''}: {zero_shot.config()}")

    extra: dict[str, Any] = {"taxonomy": taxonomy_record(taxonomy, custom=cfg.taxonomy is not None)}
    if kept:
        extra["kept_from_parent"] = kept
    return VoceBundle(
        encoder={"name": encoder.name, "dim": encoder.dim, "backend": cfg.encoder_backend, "model": cfg.encoder_model},
        **fitted,
        zero_shot=zero_shot,
        center=center,
        version=cfg.version,
        adapter=cfg.adapter_path(),
        manifest_extra=extra,
        topic_languages=_topic_languages(ctx),
        lexical=ctx.lexical if any(h.lexical_dim for h in each_head(fitted)) else None,
        touchpoints_fingerprint=taxonomy.touchpoints.fingerprint() if fitted.get("touchpoints") is not None else None,
    )


def keep_from_parent(
    cfg: TrainConfig, encoder: Encoder, taxonomy: Taxonomy, fitted: dict[str, Any], parent: VoceBundle | None,
    progress: Progress,
) -> list[str]:
    """What this bundle keeps from its parent (names; ``fitted`` is updated in place).

    Only on the parent's own encoder (its vectors mean the same): the zero-shot calibration and centring vector
    (``zero_shot_calibration: parent``), which score every topic and touchpoint without a learned head -- a refit on
    a few hundred team rows had flattened it (``w_margin`` 13.9 -> ~1.5) and no touchpoint reached its threshold any
    more; and the touchpoint heads (with the primary head and the exclusive-section calibration) when this run
    cannot learn them (no annotated corpus) and the taxonomy's touchpoints are the ones they were learned for.
    """
    if parent is None:
        return []
    if parent.encoder.get("name") != encoder.name:
        progress(f"parent bundle {parent.version} uses another encoder ({parent.encoder.get('name')}, this run "
                 f"{encoder.name}): nothing is kept from it, the zero-shot calibration is refitted")  # fmt: skip
        return []
    kept: list[str] = []
    if cfg.zero_shot_calibration == "parent":
        kept.append("zero_shot")
    same_touchpoints = parent.touchpoints_fingerprint == taxonomy.touchpoints.fingerprint()
    if fitted.get("touchpoints") is None and parent.touchpoints is not None and same_touchpoints \
            and not parent.touchpoints.lexical_dim:
        fitted["touchpoints"], fitted["touchpoint_primary"] = parent.touchpoints, parent.touchpoint_primary
        kept.append("touchpoints")
        if fitted.get("exclusive") is None and parent.exclusive is not None:
            fitted["exclusive"] = parent.exclusive
            kept.append("exclusive")
    if kept:
        progress(f"kept from the parent bundle {parent.version}: {', '.join(kept)}")
    return kept


def load_parent(cfg: TrainConfig, progress: Progress = log.info) -> VoceBundle | None:
    """The parent bundle (``cfg.parent``), or None; a missing or broken folder is a clear error."""
    if cfg.parent is None:
        return None
    from voce.models.bundle import BundleError

    try:
        bundle = VoceBundle.load(cfg.parent)
    except BundleError as exc:
        raise FileNotFoundError(f"parent bundle: {exc} (set parent: null to train without one)") from exc
    progress(f"parent bundle: {cfg.parent} ({bundle.version})")
    return bundle


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


def git_sha(where: Path | None = None) -> str | None:
    """The commit of the repository holding this code (None outside a git checkout, e.g. an installed wheel)."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=False,
                             cwd=where or Path(__file__).resolve().parent)  # fmt: skip
    except OSError:
        return None
    return (out.stdout.strip() or None) if out.returncode == 0 else None


def tool_version() -> str:
    """The installed Voce package version (recorded with every bundle, in or out of the repository)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("voce")
    except PackageNotFoundError:
        return "unknown"


@dataclass
class TrainingData:
    """What :func:`load_training_data` read: the rows to split, the custom files, and the rows kept for evaluation."""

    examples: list[Example]
    custom: list[CustomData]
    #: name -> rows scored but never trained on (``eval_data`` and the held-apart part of each ``extra_data`` file)
    held_apart: dict[str, list[Example]] = field(default_factory=dict)
    eval_files: list[CustomData] = field(default_factory=list)


def holdout_split(rows: list[Example], fraction: float, seed: int) -> tuple[list[Example], list[Example]]:
    """``(train, held apart)`` of one custom file, by group (seed + 2: independent of the dev and calibration split)."""
    if fraction <= 0:
        return rows, []
    keep: list[Example] = []
    held: list[Example] = []
    for e in rows:
        (held if group_hash(seed + 2, e.source, e.group) < fraction else keep).append(e)
    return keep, held


def load_training_data(cfg: TrainConfig, *, progress: Progress = log.info) -> TrainingData:
    """Public datasets (unless excluded) plus every ``extra_data`` file, each capped at ``max_per_dataset``.

    ``extra_holdout_fraction`` of each file's groups, and the whole ``eval_data`` file, are held apart.
    """
    cap = cfg.max_per_dataset or None
    examples: list[Example] = []
    if cfg.include_public_data:
        examples = [e for rows in load_all(cfg.data_dir).values() for e in rows[:cap]]
    out = TrainingData(examples, [])
    for path in cfg.extra_data:
        data = load_custom_file(path)
        progress(f"{path}: {data.summary()}")
        for err in data.errors[:20]:
            progress(f"  skipped {path.name} {err}")
        if len(data.errors) > 20:
            progress(f"  ... and {len(data.errors) - 20} more skipped rows")
        out.custom.append(data)
        keep, held = holdout_split(data.examples[:cap], cfg.extra_holdout_fraction, cfg.seed)
        if held:
            progress(f"  {len(held)} of its rows held apart for evaluation (extra_holdout_fraction "
                     f"{cfg.extra_holdout_fraction:g}), {len(keep)} for training")  # fmt: skip
            out.held_apart[f"held_apart:{path.stem}"] = held
        examples += keep
    if cfg.eval_data is not None:
        data = load_custom_file(cfg.eval_data)
        progress(f"{cfg.eval_data} (eval_data, never trained on): {data.summary()}")
        out.eval_files.append(data)
        out.held_apart[f"eval_data:{cfg.eval_data.stem}"] = data.examples
    return out


_PUBLIC_LICENCES = (
    "Trained on research / non-commercial data (see MODEL_CARD.md): SENTIPOLC 2016 (CC BY-NC-SA 3.0 IT),"
    " ABSITA 2018 (research), SemEval-2016 ABSA restaurants (research), Twitter US Airline Sentiment"
    " (CC BY-NC-SA 4.0), ATE_ABSITA 2020 (CC BY-NC-ND 4.0)."
)


class RegressionRefused(RuntimeError):
    """The new bundle loses a task against its parent (outside bootstrap noise) and regressions were not allowed."""

    def __init__(self, message: str, report: dict[str, Any]) -> None:
        super().__init__(message)
        self.report = report


def train(
    cfg: TrainConfig, encoder: Encoder, *, progress: Progress = log.info, base_encoder: Callable[[], Encoder] | None = None,
    parent_encoder: Callable[[VoceBundle], Encoder] | None = None, allow_regression: bool = False,
) -> tuple[VoceBundle, dict[str, Any]]:
    """Load data, split, fit, evaluate on dev, compare with the parent, save the bundle; returns it with the report.

    ``base_encoder`` is the encoder without the adapter (exclusive sections read it); default: ``encoder``.
    ``parent_encoder`` loads the parent's encoder when it is not this run's.  When the new bundle is worse than its
    parent on a task (paired bootstrap, :mod:`voce.eval.compare`), nothing is written and
    :class:`RegressionRefused` is raised, unless ``allow_regression``.
    """
    from voce.eval.compare import compare_bundles, comparison_sets, regressions
    from voce.eval.evaluate import (  # eval depends on models only; imported late to keep CLI start fast
        evaluate_bundle,
        realcx_corpus,
        score_labelled,
    )
    from voce.training.check import check_report, check_summary

    t0 = time.time()
    parent = load_parent(cfg, progress)
    data = load_training_data(cfg, progress=progress)
    examples, custom = data.examples, data.custom
    train_ex, dev_ex = cfg.split().split(examples)
    progress(f"{len(examples)} examples: {len(train_ex)} train / {len(dev_ex)} dev"
             + (f"; {sum(map(len, data.held_apart.values()))} held apart for evaluation" if data.held_apart else ""))
    check = check_report(cfg, train_ex, dev_ex, parent=parent, encoder_name=encoder.name)
    for line in check_summary(check):
        progress(line)
    bundle = train_heads(cfg, encoder, train_ex, progress=progress, base_encoder=base_encoder, parent=parent)
    progress("evaluating on the dev split through the analyzer")
    ate_dev = load_ate_absita("dev", cfg.data_dir) if cfg.include_public_data else None
    realcx = realcx_corpus(cfg.data_dir, progress)
    report = evaluate_bundle(
        bundle, encoder, dev_ex, ate_dev=ate_dev, taxonomy=training_taxonomy(cfg), progress=progress,
        realcx=realcx if cfg.touchpoint_data else None, base_encoder=base_encoder,
    )
    if data.held_apart:
        from voce.eval.evaluate import analyze_examples
        from voce.models.analyzer import Analyzer
        from voce.models.language import default_detector

        analyzer = Analyzer(encoder, bundle, default_detector(), taxonomy=training_taxonomy(cfg), base_encoder=base_encoder)
        for name, rows in data.held_apart.items():
            section = score_labelled(rows, analyze_examples(analyzer, rows), topic_space=analyzer.taxonomy.topics.ids)
            report["metrics"][name] = section["metrics"]
            report["details"][name] = section["details"]
    report["check"] = check
    if parent is not None:
        progress(f"regression report against the parent bundle {parent.version}")
        p_enc = encoder if parent.encoder.get("name") == encoder.name or parent_encoder is None else parent_encoder(parent)
        sets = comparison_sets(dev_ex, realcx, data.held_apart)
        report["regression"] = compare_bundles(
            parent, bundle, p_enc, encoder, sets, names=("parent", "new"), progress=progress,
            taxonomy_b=training_taxonomy(cfg),
        )
        from voce.eval.compare import comparison_lines

        for line in comparison_lines(report["regression"]):
            progress(line)
        worse = regressions(report["regression"])
        if worse and not allow_regression:
            raise RegressionRefused(
                f"not written: the new bundle is worse than its parent {parent.version} on {', '.join(worse)} "
                "(paired bootstrap 95% interval below 0). Look at the report above; rerun with --allow-regression "
                "to write it anyway", report)
    dfp: dict[str, str] = {}
    if cfg.include_public_data:
        dfp = data_fingerprint(dataset_paths(cfg.data_dir), root=resolve_data_dir(cfg.data_dir))
    dfp |= {f"custom/{c.path.name}": c.sha256 for c in custom}
    dfp |= {f"eval/{c.path.name}": c.sha256 for c in data.eval_files}
    licences = _PUBLIC_LICENCES if cfg.include_public_data else "Trained only on the team's own data (custom_data)."
    if custom and cfg.include_public_data:
        licences += " Also trained on the team's own data (custom_data)."
    bundle.manifest_extra = {
        **bundle.manifest_extra,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "git_sha": git_sha(),
        "tool_version": tool_version(),
        "parent": _parent_record(cfg, parent),
        "training_config": cfg.model_dump(mode="json"),
        "training_config_hash": cfg.config_hash(),
        "data": dfp,
        "custom_data": [_custom_record(c, train_ex, dev_ex) for c in custom],
        "split": {"train": len(train_ex), "dev": len(dev_ex), **cfg.split().record(),
                  "held_apart": {k: len(v) for k, v in data.held_apart.items()}},
        "metrics": report["metrics"],
        **({"regression": _regression_record(report["regression"])} if "regression" in report else {}),
        "train_seconds": round(time.time() - t0, 1),
        "licences": licences,
    }
    bundle.save(cfg.output)
    progress(f"bundle written to {cfg.output} in {time.time() - t0:.0f}s")
    return bundle, report


def _parent_record(cfg: TrainConfig, parent: VoceBundle | None) -> dict[str, Any] | None:
    """Lineage: which bundle this one was built on (path, version, config hash, tensors checksum)."""
    if parent is None or cfg.parent is None:
        return None
    manifest = json.loads((cfg.parent / "manifest.json").read_text("utf-8"))
    return {
        "path": str(cfg.parent), "version": parent.version,
        "training_config_hash": manifest.get("training_config_hash"), "tensors_sha256": manifest.get("tensors_sha256"),
        "git_sha": manifest.get("git_sha"),
    }


def _regression_record(rep: dict[str, Any]) -> dict[str, Any]:
    """The comparison's verdicts for the manifest (the registry shows them): task -> verdict and difference."""
    return {
        "against": rep.get("a", {}).get("version"),
        "tasks": {t["task"]: {k: t.get(k) for k in ("set", "a", "b", "diff", "ci_low", "ci_high", "verdict")}
                  for t in rep.get("tasks", [])},
        "verdict": rep.get("verdict"),
    }


def train_from_config(
    cfg: TrainConfig,
    *,
    cache_dir: Path,
    threads: int | None = None,
    import_embeddings: list[Path] | None = None,
    progress: Progress = log.info,
    allow_regression: bool = False,
) -> tuple[VoceBundle, dict[str, Any]]:
    """``voce train``: the encoder ``cfg`` names behind the on-disk embedding cache, then :func:`train`.

    ``import_embeddings`` (files or folders of ``*.npz``) seeds the cache with vectors a GPU pass computed,
    so the CPU does not embed the 30k training texts again; a missing file raises ``FileNotFoundError``.
    """
    from voce.models.encoders.cache import CachedEncoder, embedding_files
    from voce.models.encoders.factory import EncoderSpec, load_encoder

    spec = EncoderSpec(
        backend=cfg.encoder_backend, model=cfg.encoder_model, cache_dir=cache_dir, threads=threads,
        adapter=cfg.adapter_path(),
    )
    cached = CachedEncoder(load_encoder(spec, progress=progress), cache_dir)
    if import_embeddings:
        parts = embedding_files(import_embeddings)
        n = cached.import_npz(parts)
        progress(f"reusing {n} embeddings from {len(parts)} file(s)")
    bases: list[CachedEncoder] = []

    def base_encoder() -> Encoder:
        """The encoder without the adapter, loaded on first use and cached on disk like the other."""
        if spec.adapter is None:
            return cached
        if not bases:
            bases.append(CachedEncoder(load_encoder(spec.model_copy(update={"adapter": None}), progress=progress),
                                       cache_dir))
        return bases[0]

    others: list[CachedEncoder] = []

    def parent_encoder(parent: VoceBundle) -> Encoder:
        """The parent's own encoder (another adapter or model), for the regression report."""
        others.append(CachedEncoder(load_encoder(parent.encoder_spec(cache_dir=cache_dir), progress=progress), cache_dir))
        return others[-1]

    try:
        return train(cfg, cached, progress=progress, base_encoder=base_encoder, parent_encoder=parent_encoder,
                     allow_regression=allow_regression)
    finally:
        cached.save()
        for b in [*bases, *others]:
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
