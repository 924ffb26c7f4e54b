"""CX taxonomies: the versioned, editable lists of topics and touchpoints.

A taxonomy is data, not code: the default ships as YAML next to this module and
teams replace it (wholly or per section) with their own file or an inline JSON
object.  Every entry carries Italian and English names and descriptions, plus
optional examples, which is all the zero-shot linker needs.
"""
from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator, model_validator

_ID = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


class TaxonomyError(ValueError):
    """A taxonomy file or object that cannot be used; the message says why."""


class TaxonomyEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(description="snake_case identifier, unique within its section")
    names: dict[str, str] = Field(description="Display names by language; at least 'it' or 'en'.")
    descriptions: dict[str, str] = Field(default_factory=dict, description="How customers talk about it, by language.")
    examples: list[str] = Field(default_factory=list, max_length=200, description="Example sentences, any language.")
    channels: list[str] = Field(default_factory=list, description="Touchpoints only: channel values mapping here.")

    @field_validator("id")
    @classmethod
    def _snake_case(cls, v: str) -> str:
        if not _ID.match(v):
            raise ValueError(f"id {v!r} must be snake_case: lowercase letters, digits and '_', starting with a letter")
        return v

    @field_validator("names")
    @classmethod
    def _has_name(cls, v: dict[str, str]) -> dict[str, str]:
        if not any(v.get(lang, "").strip() for lang in ("it", "en")):
            raise ValueError("names needs at least a non-empty 'it' or 'en' entry")
        return v

    @field_validator("channels")
    @classmethod
    def _lower(cls, v: list[str]) -> list[str]:
        return [c.strip().lower() for c in v if c.strip()]

    def prototype_texts(self) -> list[str]:
        """Texts whose embeddings describe the entry for zero-shot similarity."""
        out = [n for n in self.names.values() if n.strip()]
        out += [d for d in self.descriptions.values() if d.strip()]
        out += [e for e in self.examples if e.strip()]
        return out


SectionMode = Literal["multi", "single"]


class TaxonomySection(BaseModel):
    """The topics or the touchpoints of one taxonomy.

    ``multi`` (the default): a text may belong to any number of entries, or to none.
    ``single``: the entries are exclusive and exhaustive (journey stages: every comment
    belongs to exactly one), so the best entry is always returned with a calibrated
    confidence, and flagged as uncertain when that confidence is low.
    """

    model_config = ConfigDict(extra="forbid")

    entries: list[TaxonomyEntry]
    mode: SectionMode = "multi"
    # the fingerprint, computed once: every analyze call asks for it several times (a section is a value: nothing
    # mutates one in place, and model_copy starts without it)
    _fingerprint: str | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _unique(self) -> TaxonomySection:
        seen: set[str] = set()
        for e in self.entries:
            if e.id in seen:
                raise ValueError(f"duplicate id {e.id!r}")
            seen.add(e.id)
        if not self.entries:
            raise ValueError("a section needs at least one entry")
        return self

    @property
    def ids(self) -> list[str]:
        return [e.id for e in self.entries]

    def get(self, entry_id: str) -> TaxonomyEntry | None:
        return next((e for e in self.entries if e.id == entry_id), None)

    def fingerprint(self) -> str:
        """Identity of the section's content (entries, and the mode when it is not the default)."""
        if self._fingerprint is None:
            content: Any = [e.model_dump() for e in self.entries]
            if self.mode != "multi":
                content = {"mode": self.mode, "entries": content}
            payload = json.dumps(content, sort_keys=True, ensure_ascii=False)
            self._fingerprint = hashlib.sha256(payload.encode()).hexdigest()[:16]
        return self._fingerprint

    def __eq__(self, other: object) -> bool:  # the content, not whether the fingerprint was computed yet
        if not isinstance(other, TaxonomySection):
            return NotImplemented
        return self.entries == other.entries and self.mode == other.mode

    __hash__ = None  # type: ignore[assignment]  # mutable model: unhashable, like every BaseModel

    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> TaxonomySection:
        copy = super().model_copy(update=update, deep=deep)
        copy._fingerprint = None
        return copy


class Taxonomy(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: str
    topics: TaxonomySection
    touchpoints: TaxonomySection

    def labels(self, language: str = "en") -> dict[str, str]:
        """Topic and touchpoint id -> display name in ``language`` (else the entry's first name)."""
        return {
            e.id: e.names.get(language) or next(iter(e.names.values()))
            for e in self.topics.entries + self.touchpoints.entries
        }

    def channel_map(self) -> dict[str, str]:
        """channel value (lowercase) -> touchpoint id; ids map to themselves."""
        out: dict[str, str] = {}
        for e in self.touchpoints.entries:
            out[e.id] = e.id
            for c in e.channels:
                out.setdefault(c, e.id)
        return out


class _SectionFile(BaseModel):
    """A section written as a mapping, to set its mode: ``{mode: single, entries: [...]}``."""

    model_config = ConfigDict(extra="forbid")

    mode: SectionMode = "multi"
    entries: list[TaxonomyEntry]


class _TaxonomyFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: str = Field(min_length=1, max_length=64)
    # a section is a list of entries (multi-label) or {mode, entries}
    topics: list[TaxonomyEntry] | _SectionFile | None = None
    touchpoints: list[TaxonomyEntry] | _SectionFile | None = None

    @staticmethod
    def section(raw: list[TaxonomyEntry] | _SectionFile) -> TaxonomySection:
        if isinstance(raw, _SectionFile):
            return TaxonomySection(entries=raw.entries, mode=raw.mode)
        return TaxonomySection(entries=raw)

    @field_validator("version", mode="before")
    @classmethod
    def _str_version(cls, v: Any) -> Any:
        return str(v) if isinstance(v, (int, float)) else v


def parse_taxonomy(data: Any, *, base: Taxonomy | None = None) -> Taxonomy:
    """Validate a taxonomy object; a missing section falls back to ``base``'s (the default)."""
    try:
        raw = _TaxonomyFile.model_validate(data)
        if raw.topics is None and raw.touchpoints is None:
            raise TaxonomyError("taxonomy must contain 'topics' and/or 'touchpoints'")
        base = base if base is not None else default_taxonomy()
        topics = _TaxonomyFile.section(raw.topics) if raw.topics is not None else base.topics
        touchpoints = _TaxonomyFile.section(raw.touchpoints) if raw.touchpoints is not None else base.touchpoints
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise TaxonomyError(f"invalid taxonomy at {where or '<root>'}: {first['msg']}") from exc
    except ValueError as exc:
        if isinstance(exc, TaxonomyError):
            raise
        raise TaxonomyError(f"invalid taxonomy: {exc}") from exc
    return Taxonomy(version=raw.version, topics=topics, touchpoints=touchpoints)


def load_taxonomy(path: str | Path, *, base: Taxonomy | None = None) -> Taxonomy:
    """Read a YAML (or JSON) taxonomy file."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise TaxonomyError(f"cannot read taxonomy file {p}: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise TaxonomyError(f"taxonomy file {p} is not UTF-8 text (byte {exc.start}); save it as UTF-8") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise TaxonomyError(f"taxonomy file {p} is not valid YAML: {exc}") from exc
    return parse_taxonomy(data, base=base)


@lru_cache(maxsize=1)
def default_taxonomy() -> Taxonomy:
    """The taxonomy shipped with the package (cached; treat as read-only)."""
    text = resources.files("voce.models.resources").joinpath("taxonomy_default.yaml").read_text(encoding="utf-8")
    raw = _TaxonomyFile.model_validate(yaml.safe_load(text))
    assert raw.topics is not None and raw.touchpoints is not None
    return Taxonomy(
        version=raw.version, topics=_TaxonomyFile.section(raw.topics), touchpoints=_TaxonomyFile.section(raw.touchpoints)
    )
