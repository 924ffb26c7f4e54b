"""Assemble an :class:`~models.analyzer.Analyzer` from plain settings.

Shared by the HTTP service, the CLI and the evaluation so that all three run the
same encoder, bundle and taxonomy.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from voce.models.analyzer import Analyzer, AnalyzerConfig
from voce.models.bundle import BundleError, VoceBundle, default_bundle_path
from voce.models.encoders.factory import EncoderSpec, load_encoder
from voce.models.language import default_detector
from voce.models.taxonomy import Taxonomy, load_taxonomy


def load_analyzer(
    *,
    backend: str = "onnx",
    model: str = "e5-small",
    cache_dir: Path,
    bundle: Path | None = None,
    taxonomy: Path | Taxonomy | None = None,
    threads: int | None = None,
    config: AnalyzerConfig | None = None,
    progress: Callable[[str], None] | None = None,
) -> Analyzer:
    """Load encoder + bundle (+ taxonomy) and check they belong together."""
    bundle_obj = VoceBundle.load(bundle or default_bundle_path())
    spec = EncoderSpec(
        backend=backend,  # type: ignore[arg-type]
        model=model,
        cache_dir=cache_dir,
        threads=threads,
        adapter=bundle_obj.adapter if backend != "fake" else None,
    )
    encoder = load_encoder(spec, progress=progress)
    trained_with = bundle_obj.encoder.get("model")
    if backend != "fake" and trained_with and trained_with != model:
        raise BundleError(
            f"bundle {bundle_obj.version} was trained on encoder {trained_with!r}, but {model!r} is configured;"
            " retrain with `voce train` for this encoder"
        )
    tax = load_taxonomy(taxonomy) if isinstance(taxonomy, (str, Path)) else taxonomy
    return Analyzer(encoder, bundle_obj, default_detector(), taxonomy=tax, config=config)
