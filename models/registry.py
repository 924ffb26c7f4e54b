"""The model registry: every bundle a service may serve, which one is active, and who changed that when.

A folder (``VOCE_REGISTRY_DIR``, default ``<data_dir>/registry``) holds a copy of each registered bundle under
``bundles/<version>/`` and one index, ``registry.json``: the versions with what their manifests say (parent,
training config and its hash, data hashes, metrics, git sha), the active version, and the history of
registrations, promotions and rollbacks (who, when, from which version).  Copies, not links: a registered version
cannot change or vanish under a running service because someone retrained into the same output folder.

Every change is made under an exclusive lock on ``.lock`` and the index is replaced atomically (written aside, then
renamed), so a reader (the API process or a ``voce worker`` polling the active version between batches) always
reads a whole index, and two promotions from two processes are applied one after the other.  The folder must be
shared by every process that serves the model, like the data folder.

A version's name is its bundle's ``version`` (what ``/v1/analyze`` answers in ``model_version``); registering a
bundle whose version is taken by other weights is refused unless it is registered under a new name (the copy's
manifest then carries that name).  Rollback is a promotion too: it makes active again the version that was active
before the current one (repeated, it walks further back), and it is recorded like one.
"""
from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from voce.models.bundle import BundleError, VoceBundle

INDEX = "registry.json"
LOCK = ".lock"
BUNDLES = "bundles"
#: a version name is a folder name: letters, digits and . _ + - (no path separators, no leading dot)
VERSION_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$")


class RegistryError(RuntimeError):
    """A registry operation that cannot be done; the message says why (safe to show)."""


class VersionNotFound(RegistryError):
    """No registered version of that name."""


class RegistryConflict(RegistryError):
    """The operation contradicts what is registered (a version name taken by other weights, nothing to roll back to)."""


class ModelVersion(BaseModel):
    """One registered bundle: where its copy is, and what its manifest says about how it was made."""

    model_config = ConfigDict(extra="forbid")

    version: str
    # the version this one was trained from (the manifest's ``parent``/``lineage``), None when it does not say
    parent: str | None = None
    created: str | None = None  # when the bundle was trained (its manifest)
    registered_at: str
    registered_by: str
    source: str  # the folder it was registered from
    path: str  # its copy, relative to the registry folder
    encoder: str | None = None
    tensors_sha256: str | None = None
    git_sha: str | None = None
    training_config: dict[str, Any] | None = None
    training_config_hash: str | None = None
    data: dict[str, Any] | list[Any] | None = None  # data file hashes
    metrics: dict[str, Any] = Field(default_factory=dict)
    taxonomy: dict[str, Any] | None = None
    lineage: dict[str, Any] | None = None  # the manifest's lineage record, as it is
    # the training run's comparison with its parent (task -> verdict and difference), when it made one
    regression: dict[str, Any] | None = None


class RegistryEvent(BaseModel):
    """One change: a registration, a promotion or a rollback; ``previous`` is the version active before it."""

    model_config = ConfigDict(extra="forbid")

    action: Literal["register", "promote", "rollback"]
    version: str
    previous: str | None = None
    by: str
    at: str
    note: str | None = None


class RegistryIndex(BaseModel):
    """What ``registry.json`` holds."""

    model_config = ConfigDict(extra="forbid")

    schema_version: int = 1
    active: str | None = None
    versions: list[ModelVersion] = Field(default_factory=list)
    history: list[RegistryEvent] = Field(default_factory=list)

    def find(self, version: str) -> ModelVersion | None:
        return next((v for v in self.versions if v.version == version), None)

    def activation_stack(self) -> list[str]:
        """The versions made active one after the other, rollbacks undone: the last is active, the one before it
        is what a rollback returns to."""
        stack: list[str] = []
        for event in self.history:
            if event.action == "promote":
                if not stack or stack[-1] != event.version:
                    stack.append(event.version)
            elif event.action == "rollback":
                if stack:
                    stack.pop()
                if not stack or stack[-1] != event.version:
                    stack.append(event.version)
        return stack


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _summary(manifest: dict[str, Any]) -> dict[str, Any]:
    """What the registry copies out of a bundle manifest (the heads themselves stay in the bundle)."""
    lineage = manifest.get("lineage") if isinstance(manifest.get("lineage"), dict) else None
    parent = manifest.get("parent")
    if isinstance(parent, dict):  # a lineage record under "parent"
        lineage = lineage or parent
        parent = parent.get("version")
    if parent is None and lineage is not None:
        parent = lineage.get("parent") or lineage.get("parent_version")
    config = manifest.get("training_config")
    encoder = manifest.get("encoder") or {}
    return {
        "parent": str(parent) if parent is not None else None,
        "created": manifest.get("created"),
        "encoder": encoder.get("name") if isinstance(encoder, dict) else None,
        "tensors_sha256": manifest.get("tensors_sha256"),
        "git_sha": manifest.get("git_sha"),
        "training_config": config if isinstance(config, dict) else None,
        "training_config_hash": manifest.get("training_config_hash"),
        "data": manifest.get("data"),
        "metrics": manifest.get("metrics") or {},
        "taxonomy": manifest.get("taxonomy"),
        "lineage": lineage,
        "regression": manifest.get("regression") if isinstance(manifest.get("regression"), dict) else None,
    }


class ModelRegistry:
    """The registry folder (created on first use)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self._cache: tuple[tuple[int, int], RegistryIndex] | None = None

    # ------------------------------------------------------------------ reading
    def index(self) -> RegistryIndex:
        """The index as it is now (re-read only when the file changed: cheap enough to poll between chunks)."""
        path = self.root / INDEX
        try:
            st = path.stat()
        except FileNotFoundError:
            return RegistryIndex()
        key = (st.st_mtime_ns, st.st_ino)
        if self._cache is not None and self._cache[0] == key:
            return self._cache[1]
        index = RegistryIndex.model_validate_json(path.read_text("utf-8"))
        self._cache = (key, index)
        return index

    def active_version(self) -> str | None:
        return self.index().active

    def versions(self) -> list[ModelVersion]:
        return list(self.index().versions)

    def get(self, version: str) -> ModelVersion:
        found = self.index().find(version)
        if found is None:
            raise VersionNotFound(f"no model version {version!r} in the registry")
        return found

    def bundle_path(self, version: str) -> Path:
        """The folder of the registered copy of ``version`` (what ``load_analyzer`` is given)."""
        return self.root / self.get(version).path

    def history(self) -> list[RegistryEvent]:
        return list(self.index().history)

    # ------------------------------------------------------------------ changing
    def register(self, source: str | Path, by: str, version: str | None = None) -> ModelVersion:
        """Copy the bundle at ``source`` into the registry (not active yet).  The same weights registered again
        under the same name are the version already there; another bundle claiming a taken name is refused."""
        source = Path(source)
        try:
            bundle = VoceBundle.load(source)  # checks the manifest schema and every checksum before anything moves
            manifest = json.loads((source / "manifest.json").read_text("utf-8"))
        except BundleError as exc:
            raise RegistryError(str(exc)) from exc
        except OSError as exc:  # not a folder this process can read (missing, a name too long, no permission)
            raise RegistryError(f"no bundle can be read at {str(source)[:200]!r}: {exc.strerror or exc}") from exc
        name = version or bundle.version
        if not VERSION_PATTERN.match(name):
            raise RegistryError(f"{name!r} is not a usable version name (letters, digits and . _ + -, up to 128)")
        with self._locked() as index:
            found = index.find(name)
            if found is not None:
                if found.tensors_sha256 and found.tensors_sha256 == manifest.get("tensors_sha256"):
                    return found
                raise RegistryConflict(
                    f"version {name!r} is already registered with other weights; register this bundle under "
                    "another name (--version) or retrain with a new version"
                )
            dest = self.root / BUNDLES / name
            dest.parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=dest.parent))
            try:
                shutil.copytree(source, tmp, dirs_exist_ok=True)
                if name != bundle.version:  # the copy answers under its registered name
                    manifest["version"] = name
                    manifest.setdefault("registered_from_version", bundle.version)
                    (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", "utf-8")
                os.chmod(tmp, 0o755)
                if dest.exists():  # a copy left by a registration that died before writing the index
                    shutil.rmtree(dest)
                tmp.rename(dest)
            finally:
                if tmp.exists():
                    shutil.rmtree(tmp, ignore_errors=True)
            entry = ModelVersion(
                version=name, registered_at=_now(), registered_by=by, source=str(source.resolve()),
                path=f"{BUNDLES}/{name}", **_summary(manifest),
            )
            index.versions.append(entry)
            index.history.append(
                RegistryEvent(action="register", version=name, previous=index.active, by=by, at=entry.registered_at)
            )
            return entry

    def promote(self, version: str, by: str, note: str | None = None) -> RegistryEvent:
        """Make ``version`` the active one (the services and workers following the registry switch to it)."""
        with self._locked() as index:
            if index.find(version) is None:
                raise VersionNotFound(f"no model version {version!r} in the registry")
            event = RegistryEvent(action="promote", version=version, previous=index.active, by=by, at=_now(), note=note)
            index.active = version
            index.history.append(event)
            return event

    def rollback(self, by: str, note: str | None = None) -> RegistryEvent:
        """Make active again the version that was active before the current one."""
        with self._locked() as index:
            stack = index.activation_stack()
            if len(stack) < 2:
                raise RegistryConflict("nothing to roll back to: no version was active before the current one")
            target = stack[-2]
            event = RegistryEvent(action="rollback", version=target, previous=index.active, by=by, at=_now(), note=note)
            index.active = target
            index.history.append(event)
            return event

    def adopt(self, source: str | Path, by: str) -> str:
        """The version a process starting with the bundle ``source`` serves: ``source`` is registered if it is new,
        and made active if it is new or nothing is active yet (the first start, or an operator who pointed
        VOCE_BUNDLE at a new bundle); a bundle registered before leaves the active version as promoted.  A bundle
        retrained in place under a version name already registered with other weights is new too: it is registered
        as ``<version>+<first 8 of its weights' sha256>``."""
        source = Path(source)
        bundle_version = VoceBundle.load(source).version
        sha = json.loads((source / "manifest.json").read_text("utf-8")).get("tensors_sha256") or ""
        before = self.index()
        name = bundle_version
        known = before.find(name)
        if known is not None and known.tensors_sha256 != sha:
            name = f"{bundle_version}+{sha[:8]}"
            known = before.find(name)
        if known is not None and before.active is not None:
            return before.active
        entry = self.register(source, by=by, version=name if name != bundle_version else None) if known is None else known
        with self._locked() as index:
            if (known is None or index.active is None) and index.active != entry.version:
                index.history.append(RegistryEvent(
                    action="promote", version=entry.version, previous=index.active, by=by, at=_now(),
                    note="the configured bundle (first start or a new VOCE_BUNDLE)",
                ))
                index.active = entry.version
            assert index.active is not None
            return index.active

    @contextmanager
    def _locked(self) -> Iterator[RegistryIndex]:
        """The index under the registry's exclusive lock, written back atomically when the block succeeds."""
        self.root.mkdir(parents=True, exist_ok=True)
        with (self.root / LOCK).open("a+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                self._cache = None
                index = self.index()
                copy = index.model_copy(deep=True)
                yield copy
                tmp = self.root / f".{INDEX}.{os.getpid()}.tmp"
                tmp.write_text(copy.model_dump_json(indent=2) + "\n", "utf-8")
                os.replace(tmp, self.root / INDEX)
                self._cache = None
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)
