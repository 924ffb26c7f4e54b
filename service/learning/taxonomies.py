"""A tenant's taxonomy as a stored, versioned resource.

Until a tenant saves one, its taxonomy is the service's configured one (the bundle's, or ``VOCE_TAXONOMY``).  Every
change (an edit, a YAML import, a promoted discovered theme, a rollback) stores a whole new version with its author,
time, message and a readable list of what changed; the newest version is the active one.  Rolling back to version
*k* stores a new version equal to *k*, so the history only grows.

The analyzer scores with the active version as it would with an inline taxonomy (the zero-shot part needs no
retraining; learned heads keep answering for the ids they were trained on).  A batch records the version string it
was scored with (``batches.taxonomy_version``: ``<name>+v<n>``), and :func:`batch_taxonomy` finds it again.
"""
from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import sessionmaker

from voce.models.taxonomy import Taxonomy, TaxonomyEntry, TaxonomyError, TaxonomySection, parse_taxonomy
from voce.service.db import Batch, utcnow
from voce.service.errors import InvalidInput, NotFound, PayloadTooLarge
from voce.service.learning.tables import TaxonomyVersion

if TYPE_CHECKING:
    from voce.models.analyzer import Analyzer

Section = Literal["topics", "touchpoints"]
SECTIONS: tuple[Section, ...] = ("topics", "touchpoints")
#: examples per entry of a stored version (at least): it is encoded once and cached, not on every request like an
#: inline taxonomy (``VOCE_MAX_TAXONOMY_EXAMPLES``); a promoted theme brings up to 12 comments
STORED_EXAMPLES = 100
#: a version's name part is this long at most (the label adds "+v<n>")
_NAME_CHARS = 48


class TaxonomyEditError(InvalidInput):
    """An edit that cannot be applied (422); ``details`` carry a code and parameters the page translates."""

    def __init__(self, message: str, code: str, **params: Any) -> None:
        super().__init__(message, details=[{"code": code, **params}])


class TaxonomyVersionNotFound(NotFound):
    """The tenant has no such taxonomy version (404)."""


# ------------------------------------------------------------------ content <-> Taxonomy
def content_of(t: Taxonomy) -> dict[str, Any]:
    """A taxonomy as its file object (what YAML export writes and import reads)."""
    def section(s: TaxonomySection) -> Any:
        entries = [e.model_dump(exclude_defaults=True) for e in s.entries]
        return entries if s.mode == "multi" else {"mode": s.mode, "entries": entries}

    return {"version": t.version, "topics": section(t.topics), "touchpoints": section(t.touchpoints)}


def taxonomy_of(row: TaxonomyVersion) -> Taxonomy:
    """A stored version as a :class:`Taxonomy` whose ``version`` is the version's label."""
    t = parse_taxonomy(row.content)
    return t.model_copy(update={"version": row.label})


def to_yaml(t: Taxonomy) -> str:
    return yaml.safe_dump(content_of(t), allow_unicode=True, sort_keys=False, width=120)


def from_yaml(text: str, *, base: Taxonomy) -> Taxonomy:
    """A YAML (or JSON) taxonomy; a missing section is ``base``'s."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise TaxonomyEditError(f"not valid YAML: {exc}", "taxonomy.bad_yaml") from exc
    return parse(data, base=base)


def parse(data: Any, *, base: Taxonomy) -> Taxonomy:
    try:
        return parse_taxonomy(data, base=base)
    except TaxonomyError as exc:
        raise TaxonomyEditError(str(exc), "taxonomy.invalid", reason=str(exc)) from exc


# ------------------------------------------------------------------ diff
class Change(BaseModel):
    """One readable change between two versions (``text`` in English; the page builds its own from the fields)."""

    kind: Literal["added", "removed", "changed", "mode"]
    section: Section
    id: str | None = None
    field: str | None = Field(default=None, description="names.it, descriptions.en, examples, channels")
    before: Any = None
    after: Any = None
    text: str


def _entry_fields(e: TaxonomyEntry) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for lang, v in e.names.items():
        out[f"names.{lang}"] = v
    for lang, v in e.descriptions.items():
        out[f"descriptions.{lang}"] = v
    out["examples"] = list(e.examples)
    out["channels"] = list(e.channels)
    return out


def diff(before: Taxonomy | None, after: Taxonomy) -> list[Change]:
    """What changed from ``before`` to ``after`` (everything is "added" when there is no ``before``)."""
    out: list[Change] = []
    for name in SECTIONS:
        new: TaxonomySection = getattr(after, name)
        old: TaxonomySection | None = getattr(before, name) if before is not None else None
        singular = name[:-1]
        if old is not None and old.mode != new.mode:
            out.append(Change(kind="mode", section=name, before=old.mode, after=new.mode,
                              text=f"{name}: mode {old.mode} -> {new.mode}"))
        old_ids = set(old.ids) if old is not None else set()
        for e in new.entries:
            if e.id not in old_ids:
                label = e.names.get("en") or e.names.get("it") or e.id
                out.append(Change(kind="added", section=name, id=e.id, after=label,
                                  text=f"added {singular} {e.id} ({label})"))
                continue
            prev = old.get(e.id) if old is not None else None
            assert prev is not None
            a, b = _entry_fields(prev), _entry_fields(e)
            for key in sorted(set(a) | set(b)):
                va, vb = a.get(key), b.get(key)
                if va == vb:
                    continue
                if key in ("examples", "channels"):
                    gained = [x for x in (vb or []) if x not in (va or [])]
                    lost = [x for x in (va or []) if x not in (vb or [])]
                    text = f"{singular} {e.id}: {key} +{len(gained)} -{len(lost)}"
                    out.append(Change(kind="changed", section=name, id=e.id, field=key,
                                      before=lost, after=gained, text=text))
                else:
                    out.append(Change(kind="changed", section=name, id=e.id, field=key, before=va, after=vb,
                                      text=f"{singular} {e.id}: {key} {va!r} -> {vb!r}"))
        new_ids = set(new.ids)
        for e in old.entries if old is not None else []:
            if e.id not in new_ids:
                out.append(Change(kind="removed", section=name, id=e.id,
                                  text=f"removed {singular} {e.id}"))
    return out


# ------------------------------------------------------------------ edits
class EntryPatch(BaseModel):
    """Fields of an entry to replace (omitted: kept); names and descriptions per language ("" removes one)."""

    model_config = ConfigDict(extra="forbid")

    names: dict[Literal["it", "en"], str] | None = None
    descriptions: dict[Literal["it", "en"], str] | None = None
    examples: list[str] | None = Field(default=None, max_length=200)
    channels: list[str] | None = Field(default=None, max_length=100)


class AddEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")
    op: Literal["add"]
    section: Section
    entry: TaxonomyEntry


class UpdateEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")
    op: Literal["update"]
    section: Section
    id: str
    patch: EntryPatch


class RenameEntry(BaseModel):
    """A new id and/or new display names for an entry (rows already scored keep the old id)."""

    model_config = ConfigDict(extra="forbid")
    op: Literal["rename"]
    section: Section
    id: str
    new_id: str | None = None
    names: dict[Literal["it", "en"], str] | None = None


class MergeEntry(BaseModel):
    """``id`` folds into ``into``: its examples (and descriptions where ``into`` has none) move there, it goes."""

    model_config = ConfigDict(extra="forbid")
    op: Literal["merge"]
    section: Section
    id: str
    into: str
    examples: list[str] = Field(default_factory=list, max_length=200,
                                description="More examples for 'into' (a promoted theme's comments).")


class RetireEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")
    op: Literal["retire"]
    section: Section
    id: str


Edit = Annotated[AddEntry | UpdateEntry | RenameEntry | MergeEntry | RetireEntry, Field(discriminator="op")]


def _need(section: TaxonomySection, name: Section, entry_id: str) -> TaxonomyEntry:
    found = section.get(entry_id)
    if found is None:
        raise TaxonomyEditError(f"{name} has no entry {entry_id!r}", "taxonomy.no_entry", section=name, id=entry_id)
    return found


def _dedup(items: list[str], limit: int = 200) -> list[str]:
    return list(dict.fromkeys(x.strip() for x in items if x.strip()))[:limit]


def apply_edits(t: Taxonomy, edits: list[Any]) -> Taxonomy:
    """``t`` with ``edits`` applied in order (each an :data:`Edit`); the result is validated as a whole."""
    sections = {name: list(getattr(t, name).entries) for name in SECTIONS}
    modes = {name: getattr(t, name).mode for name in SECTIONS}
    for ed in edits:
        entries = sections[ed.section]
        current = TaxonomySection.model_construct(entries=entries, mode=modes[ed.section])
        if ed.op == "add":
            if current.get(ed.entry.id) is not None:
                raise TaxonomyEditError(f"{ed.section} already has an entry {ed.entry.id!r}", "taxonomy.duplicate",
                                        section=ed.section, id=ed.entry.id)
            entries.append(ed.entry)
            continue
        e = _need(current, ed.section, ed.id)
        i = entries.index(e)
        if ed.op == "update":
            patch = ed.patch.model_dump(exclude_none=True)
            for key in ("names", "descriptions"):  # per language: "" removes one, an omitted one is kept
                if key in patch:
                    merged = {**getattr(e, key), **patch[key]}
                    patch[key] = {lang: v.strip() for lang, v in merged.items() if v.strip()}
            if "examples" in patch:
                patch["examples"] = _dedup(patch["examples"])
            entries[i] = _entry(e.model_dump() | patch)
        elif ed.op == "rename":
            if ed.new_id is None and ed.names is None:
                raise TaxonomyEditError("rename needs new_id and/or names", "taxonomy.rename_empty")
            if ed.new_id and ed.new_id != e.id and current.get(ed.new_id) is not None:
                raise TaxonomyEditError(f"{ed.section} already has an entry {ed.new_id!r}", "taxonomy.duplicate",
                                        section=ed.section, id=ed.new_id)
            data = e.model_dump()
            if ed.new_id:
                data["id"] = ed.new_id
            if ed.names is not None:
                data["names"] = {**e.names, **ed.names}
            entries[i] = _entry(data)
        elif ed.op == "merge":
            target = _need(current, ed.section, ed.into)
            if target.id == e.id:
                raise TaxonomyEditError("an entry cannot be merged into itself", "taxonomy.merge_self", id=e.id)
            j = entries.index(target)
            data = target.model_dump()
            data["examples"] = _dedup(list(target.examples) + list(e.examples) + list(ed.examples))
            data["descriptions"] = {**e.descriptions, **target.descriptions}
            data["channels"] = list(dict.fromkeys(list(target.channels) + list(e.channels)))
            entries[j] = _entry(data)
            entries.remove(e)
        elif ed.op == "retire":
            if len(entries) == 1:
                raise TaxonomyEditError(f"{ed.section} needs at least one entry", "taxonomy.last_entry",
                                        section=ed.section)
            entries.remove(e)
    try:
        return Taxonomy(
            version=t.version,
            topics=TaxonomySection(entries=sections["topics"], mode=modes["topics"]),
            touchpoints=TaxonomySection(entries=sections["touchpoints"], mode=modes["touchpoints"]),
        )
    except ValueError as exc:
        raise TaxonomyEditError(f"invalid taxonomy: {exc}", "taxonomy.invalid", reason=str(exc)) from exc


def _entry(data: dict[str, Any]) -> TaxonomyEntry:
    try:
        return TaxonomyEntry.model_validate(data)
    except ValueError as exc:
        raise TaxonomyEditError(f"invalid entry: {exc}", "taxonomy.invalid", reason=str(exc)) from exc


# ------------------------------------------------------------------ bounds
class TaxonomyLimits(BaseModel):
    """What a stored taxonomy may hold (the settings ``max_taxonomy_*``, as for an inline taxonomy)."""

    entries: int = 64
    examples: int = STORED_EXAMPLES
    text_chars: int = 500

    def check(self, t: Taxonomy, base: Taxonomy | None = None) -> None:
        """Refuse a taxonomy past the limits (413); entries equal to ``base``'s (the shipped taxonomy, which may
        carry more examples) are not counted against the example limit."""
        for name in SECTIONS:
            section: TaxonomySection = getattr(t, name)
            shipped = getattr(base, name) if base is not None else None
            if len(section.entries) > self.entries:
                raise PayloadTooLarge(f"taxonomy.{name} has {len(section.entries)} entries; the limit is "
                                      f"{self.entries} (VOCE_MAX_TAXONOMY_ENTRIES)",
                                      details=[{"code": "taxonomy.too_many_entries", "limit": self.entries}])
            for e in section.entries:
                same = shipped is not None and shipped.get(e.id) == e
                if len(e.examples) > self.examples and not same:
                    raise PayloadTooLarge(
                        f"taxonomy.{name} entry {e.id!r} has {len(e.examples)} examples; the limit is "
                        f"{self.examples} (VOCE_MAX_TAXONOMY_EXAMPLES)",
                        details=[{"code": "taxonomy.too_many_examples", "id": e.id, "limit": self.examples}])
                for text in e.prototype_texts():
                    if len(text) > self.text_chars:
                        raise PayloadTooLarge(
                            f"taxonomy.{name} entry {e.id!r} has a text of {len(text)} characters; the limit is "
                            f"{self.text_chars} (VOCE_MAX_TAXONOMY_TEXT_CHARS)",
                            details=[{"code": "taxonomy.text_too_long", "id": e.id, "limit": self.text_chars}])


# ------------------------------------------------------------------ storage
class VersionInfo(BaseModel):
    version: int
    label: str
    author: str
    created_at: Any
    message: str | None
    restored_from: int | None
    changes: list[Change]


def info(row: TaxonomyVersion) -> VersionInfo:
    import datetime as dt

    created = row.created_at.replace(tzinfo=dt.UTC) if row.created_at.tzinfo is None else row.created_at
    return VersionInfo(version=row.version, label=row.label, author=row.author, created_at=created,
                       message=row.message, restored_from=row.restored_from,
                       changes=[Change.model_validate(c) for c in row.changes])


class TaxonomyStore:
    """Every tenant's taxonomy versions; the active one of a tenant is its newest.

    Parsed taxonomies are kept per (tenant, version), so the analyzer meets the same object (and its cached
    prototype vectors) on every call until the tenant saves a new version.
    """

    def __init__(self, sessions: sessionmaker) -> None:
        self.sessions = sessions
        self._parsed: dict[tuple[str, int], Taxonomy] = {}
        # (tenant, version) -> (the base analyzer, it scoring with that version): one object per tenant version, so
        # the micro-batcher joins a tenant's concurrent requests (it joins requests of the same analyzer)
        self._analyzers: dict[tuple[str, int], tuple[Analyzer, Analyzer]] = {}
        self._lock = threading.Lock()

    def latest(self, tenant: str) -> TaxonomyVersion | None:
        with self.sessions() as s:
            q = select(TaxonomyVersion).where(TaxonomyVersion.tenant == tenant)
            return s.scalars(q.order_by(TaxonomyVersion.version.desc()).limit(1)).first()

    def get(self, tenant: str, version: int) -> TaxonomyVersion:
        with self.sessions() as s:
            found = s.get(TaxonomyVersion, (tenant, version))
        if found is None:
            raise TaxonomyVersionNotFound(f"no taxonomy version {version}")
        return found

    def by_label(self, tenant: str, label: str) -> TaxonomyVersion | None:
        with self.sessions() as s:
            q = select(TaxonomyVersion).where(TaxonomyVersion.tenant == tenant, TaxonomyVersion.label == label)
            return s.scalars(q.limit(1)).first()

    def history(self, tenant: str, limit: int = 100, offset: int = 0) -> list[TaxonomyVersion]:
        with self.sessions() as s:
            q = (select(TaxonomyVersion).where(TaxonomyVersion.tenant == tenant)
                 .order_by(TaxonomyVersion.version.desc()).limit(limit).offset(offset))
            return list(s.scalars(q))

    def count(self, tenant: str) -> int:
        with self.sessions() as s:
            return int(s.scalar(select(func.count()).where(TaxonomyVersion.tenant == tenant)) or 0)

    def taxonomy(self, row: TaxonomyVersion) -> Taxonomy:
        key = (row.tenant, row.version)
        with self._lock:
            found = self._parsed.get(key)
            if found is None:
                found = self._parsed[key] = taxonomy_of(row)
                if len(self._parsed) > 64:
                    self._parsed.pop(next(iter(self._parsed)))
        return found

    def analyzer_for(self, base: Analyzer, tenant: str) -> Analyzer:
        """``base`` scoring with the tenant's active version (``base`` itself when the tenant never saved one)."""
        row = self.latest(tenant)
        if row is None:
            return base
        key = (tenant, row.version)
        with self._lock:
            hit = self._analyzers.get(key)
        if hit is not None and hit[0] is base:
            return hit[1]
        scoring = with_taxonomy(base, self.taxonomy(row))
        with self._lock:
            self._analyzers[key] = (base, scoring)
            if len(self._analyzers) > 64:
                self._analyzers.pop(next(iter(self._analyzers)))
        return scoring

    def active(self, tenant: str) -> Taxonomy | None:
        """The tenant's active taxonomy, or None when it never saved one (the configured one applies)."""
        row = self.latest(tenant)
        return self.taxonomy(row) if row is not None else None

    def save(
        self, tenant: str, taxonomy: Taxonomy, *, author: str, message: str | None, base: Taxonomy,
        restored_from: int | None = None, name: str | None = None,
    ) -> TaxonomyVersion:
        """Store ``taxonomy`` as the tenant's next version (refused when nothing changed: 422)."""
        for _ in range(3):  # two saves racing for the same number: the loser takes the next one
            prev = self.latest(tenant)
            before = self.taxonomy(prev) if prev is not None else base
            changes = diff(before, taxonomy)
            if not changes and restored_from is None:
                raise TaxonomyEditError("nothing changed", "taxonomy.no_change")
            number = (prev.version if prev is not None else 0) + 1
            stem = (name or _name(prev.label if prev is not None else base.version))[:_NAME_CHARS]
            label = f"{stem}+v{number}"
            content = content_of(taxonomy.model_copy(update={"version": label}))
            row = TaxonomyVersion(
                tenant=tenant, version=number, label=label, author=author[:128], created_at=utcnow(),
                message=(message or "")[:1000] or None, content=content,
                changes=[c.model_dump(mode="json") for c in changes], restored_from=restored_from,
            )
            try:
                with self.sessions() as s, s.begin():
                    s.add(row)
            except IntegrityError:
                continue
            return row
        raise TaxonomyEditError("the taxonomy is being changed by someone else; try again", "taxonomy.busy")


def _name(label: str) -> str:
    """The name part of a version label ("2026.11-1+v3" -> "2026.11-1")."""
    stem, sep, tail = label.rpartition("+v")
    return stem if sep and tail.isdigit() else label


# ------------------------------------------------------------------ what a batch is scored with
def batch_taxonomy(store: TaxonomyStore, batch: Batch, configured: Taxonomy) -> Taxonomy:
    """The taxonomy ``batch`` was (or is being) scored with: the stored version its ``taxonomy_version`` names
    (a resumed batch keeps its version), else the tenant's active one for a batch not started yet, else
    ``configured``."""
    if batch.taxonomy_version:
        row = store.by_label(batch.tenant, batch.taxonomy_version)
        if row is not None:
            return store.taxonomy(row)
        if batch.rows_done:
            return configured
    return store.active(batch.tenant) or configured


def with_taxonomy(analyzer: Analyzer, taxonomy: Taxonomy) -> Analyzer:
    """The same models and caches scoring with ``taxonomy`` by default (the zero-shot prototypes of a stored
    version are encoded once, on first use)."""
    if taxonomy is analyzer.taxonomy:
        return analyzer
    other = analyzer.with_config(analyzer.config)
    other.taxonomy = taxonomy
    return other


# ------------------------------------------------------------------ one tenant's taxonomy (the API's and CLI's layer)
class TaxonomyView(BaseModel):
    """The active taxonomy of a tenant: its version (None: the configured one, never edited) and its content."""

    tenant: str
    version: int | None
    label: str
    stored: bool = Field(description="False until the tenant saves a version: the service's configured taxonomy.")
    taxonomy: dict[str, Any]


class TenantTaxonomy:
    """One tenant's taxonomy: read, edit, import, diff and roll back; every change is a new version."""

    def __init__(self, store: TaxonomyStore, tenant: str, configured: Taxonomy, limits: TaxonomyLimits) -> None:
        self.store, self.tenant, self.configured, self.limits = store, tenant, configured, limits

    def current(self) -> tuple[Taxonomy, TaxonomyVersion | None]:
        row = self.store.latest(self.tenant)
        return (self.store.taxonomy(row), row) if row is not None else (self.configured, None)

    def view(self, version: int | None = None) -> TaxonomyView:
        if version is None:
            t, row = self.current()
        else:
            row = self.store.get(self.tenant, version)
            t = self.store.taxonomy(row)
        return TaxonomyView(tenant=self.tenant, version=row.version if row is not None else None, label=t.version,
                            stored=row is not None, taxonomy=content_of(t))

    def _save(self, t: Taxonomy, author: str, message: str | None, **kw: Any) -> VersionInfo:
        self.limits.check(t, base=self.configured)
        return info(self.store.save(self.tenant, t, author=author, message=message, base=self.configured, **kw))

    def edit(self, edits: list[Any], author: str, message: str | None = None,
             expect_version: int | None = None) -> VersionInfo:
        """Apply ``edits`` to the active version; ``expect_version`` refuses (409-like 422) an edit made on an
        older version than the active one, so two analysts do not overwrite each other."""
        t, row = self.current()
        if expect_version is not None and (row.version if row is not None else 0) != expect_version:
            raise TaxonomyEditError(
                f"the taxonomy changed since version {expect_version}; reload it",
                "taxonomy.stale", expected=expect_version, active=row.version if row is not None else 0)
        return self._save(apply_edits(t, edits), author, message)

    def replace(self, data: Any, author: str, message: str | None = None) -> VersionInfo:
        """Store a whole taxonomy object (a missing section keeps the active one's)."""
        t, _ = self.current()
        new = parse(data, base=t)
        return self._save(new, author, message, name=_name(new.version))

    def import_yaml(self, text: str, author: str, message: str | None = None) -> VersionInfo:
        t, _ = self.current()
        new = from_yaml(text, base=t)
        return self._save(new, author, message or "imported from YAML", name=_name(new.version))

    def rollback(self, version: int, author: str, message: str | None = None) -> VersionInfo:
        """A new version equal to ``version``."""
        old = self.store.taxonomy(self.store.get(self.tenant, version))
        return self._save(old, author, message or f"rollback to version {version}", restored_from=version)

    def diff(self, a: int | None, b: int | None) -> list[Change]:
        """Changes from version ``a`` to ``b`` (0 or None for ``a``: the configured taxonomy; None for ``b``: the
        active one)."""
        before = self.configured if not a else self.store.taxonomy(self.store.get(self.tenant, a))
        after = self.current()[0] if b is None else (
            self.configured if b == 0 else self.store.taxonomy(self.store.get(self.tenant, b)))
        return diff(before, after)

    def history(self, limit: int = 100, offset: int = 0) -> list[VersionInfo]:
        return [info(r) for r in self.store.history(self.tenant, limit, offset)]
