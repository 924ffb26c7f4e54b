"""The model registry folder: registration copies and checks a bundle, promotion and rollback move the active
pointer and are recorded, the configured bundle is adopted once, and concurrent writers never lose a change."""
from __future__ import annotations

import json
import multiprocessing
import shutil
from pathlib import Path

import pytest

from voce.models.bundle import default_bundle_path
from voce.models.files import sha256_file
from voce.models.registry import ModelRegistry, RegistryConflict, RegistryError, VersionNotFound


def _bundle_with(tmp: Path, src: Path, name: str, **manifest: object) -> Path:
    """A copy of ``src`` whose manifest says ``manifest`` (version, parent...)."""
    out = tmp / name
    shutil.copytree(src, out)
    m = json.loads((out / "manifest.json").read_text("utf-8"))
    m.update(manifest)
    (out / "manifest.json").write_text(json.dumps(m), "utf-8")
    return out


def test_register_copies_the_bundle_and_reads_its_manifest(tmp_path: Path) -> None:
    """The shipped bundle's manifest (training config, data hashes, metrics), as a child of its own version."""
    src = _bundle_with(tmp_path, default_bundle_path(), "child", version="tiny-child", parent="tiny-test")
    reg = ModelRegistry(tmp_path / "reg")
    entry = reg.register(src, by="ana")
    assert entry.version == "tiny-child" and entry.parent == "tiny-test" and entry.registered_by == "ana"
    assert entry.training_config_hash and entry.tensors_sha256 and entry.data is not None
    manifest = json.loads((src / "manifest.json").read_text("utf-8"))
    assert entry.metrics == manifest["metrics"] and entry.training_config == manifest["training_config"]
    shutil.rmtree(src)  # the registry keeps its own copy
    assert (reg.bundle_path("tiny-child") / "heads.safetensors").is_file()
    assert reg.active_version() is None  # registered is not active
    assert reg.register(reg.bundle_path("tiny-child"), by="bob").registered_by == "ana"  # same weights: the same entry
    # `voce train` writes its lineage as a record under "parent", and its comparison with the parent
    record = {"path": "models/bundles/default", "version": "voce-ft-2026.12.1", "tensors_sha256": "ab"}
    trained = _bundle_with(tmp_path, default_bundle_path(), "trained", version="team-1", parent=record,
                           regression={"against": "voce-ft-2026.12.1", "tasks": {}})
    entry = reg.register(trained, by="ana")
    assert entry.parent == "voce-ft-2026.12.1" and entry.lineage == record and entry.regression is not None
    assert [e.action for e in reg.history()] == ["register", "register"]  # tiny-child once, team-1


def test_a_taken_name_with_other_weights_is_refused_unless_renamed(tiny_bundle_dir: Path, tmp_path: Path) -> None:
    reg = ModelRegistry(tmp_path / "reg")
    reg.register(tiny_bundle_dir, by="ana")
    other = _bundle_with(tmp_path, tiny_bundle_dir, "other")
    heads = other / "heads.safetensors"
    m = json.loads((other / "manifest.json").read_text("utf-8"))
    m["tensors_sha256"] = "0" * 64  # a manifest that lies about its weights is refused first
    (other / "manifest.json").write_text(json.dumps(m), "utf-8")
    with pytest.raises(RegistryError, match="checksum"):
        reg.register(other, by="ana")
    data = bytearray(heads.read_bytes())
    data[-1] ^= 1
    heads.write_bytes(bytes(data))
    m["tensors_sha256"] = sha256_file(heads)
    (other / "manifest.json").write_text(json.dumps(m), "utf-8")
    with pytest.raises(RegistryConflict, match="already registered with other weights"):
        reg.register(other, by="ana")
    renamed = reg.register(other, by="ana", version="tiny-test-b")
    assert json.loads((reg.bundle_path(renamed.version) / "manifest.json").read_text())["version"] == "tiny-test-b"
    with pytest.raises(RegistryError, match="not a usable version name"):
        reg.register(other, by="ana", version="../escape")
    with pytest.raises(RegistryError, match="not a Voce bundle"):
        reg.register(tmp_path / "nowhere", by="ana")


def test_promote_and_rollback_walk_the_activation_history(tiny_bundle_dir: Path, tmp_path: Path) -> None:
    reg = ModelRegistry(tmp_path / "reg")
    for name in ("a", "b", "c"):
        reg.register(tiny_bundle_dir, by="ana", version=name)
    with pytest.raises(RegistryConflict, match="nothing to roll back"):
        reg.rollback(by="ana")
    reg.promote("a", by="ana")
    reg.promote("b", by="bob", note="better touchpoints")
    reg.promote("c", by="ana")
    assert reg.active_version() == "c"
    back = reg.rollback(by="carla")
    assert (back.version, back.previous, back.by, back.action) == ("b", "c", "carla", "rollback")
    assert reg.rollback(by="carla").version == "a"  # again: one further back
    with pytest.raises(RegistryConflict):
        reg.rollback(by="carla")
    with pytest.raises(VersionNotFound):
        reg.promote("zzz", by="ana")
    events = [(e.action, e.version, e.previous) for e in reg.history() if e.action != "register"]
    assert events == [("promote", "a", None), ("promote", "b", "a"), ("promote", "c", "b"),
                      ("rollback", "b", "c"), ("rollback", "a", "b")]
    assert ModelRegistry(tmp_path / "reg").active_version() == "a"  # on disk, for every process


def test_adopt_registers_the_configured_bundle_once(tiny_bundle_dir: Path, tmp_path: Path) -> None:
    reg = ModelRegistry(tmp_path / "reg")
    assert reg.adopt(tiny_bundle_dir, by="start") == "tiny-test"  # first start: registered and active
    reg.register(tiny_bundle_dir, by="ana", version="other")
    reg.promote("other", by="ana")
    assert reg.adopt(tiny_bundle_dir, by="start") == "other"  # a restart keeps what was promoted
    new = _bundle_with(tmp_path, tiny_bundle_dir, "new", version="tiny-new")
    assert reg.adopt(new, by="start") == "tiny-new"  # a new VOCE_BUNDLE is served
    assert reg.history()[-1].note and "VOCE_BUNDLE" in reg.history()[-1].note
    # retrained in place: same version name, other weights; served under the name plus its weights' checksum
    heads = new / "heads.safetensors"
    data = bytearray(heads.read_bytes())
    data[-1] ^= 1
    heads.write_bytes(bytes(data))
    m = json.loads((new / "manifest.json").read_text("utf-8"))
    m["tensors_sha256"] = sha256_file(heads)
    (new / "manifest.json").write_text(json.dumps(m), "utf-8")
    served = reg.adopt(new, by="start")
    assert served == f"tiny-new+{m['tensors_sha256'][:8]}" and reg.get(served).tensors_sha256 == m["tensors_sha256"]
    assert reg.adopt(new, by="start") == served  # and only once


def _promote_many(root: str, who: str, n: int) -> None:
    reg = ModelRegistry(root)
    for i in range(n):
        reg.promote("a" if i % 2 else "b", by=f"{who}-{i}")


def test_concurrent_promotions_from_processes_are_all_recorded(tiny_bundle_dir: Path, tmp_path: Path) -> None:
    reg = ModelRegistry(tmp_path / "reg")
    reg.register(tiny_bundle_dir, by="ana", version="a")
    reg.register(tiny_bundle_dir, by="ana", version="b")
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_promote_many, args=(str(tmp_path / "reg"), f"p{k}", 15)) for k in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    promotions = [e for e in reg.history() if e.action == "promote"]
    assert len(promotions) == 45 and len({e.by for e in promotions}) == 45
    for before, after in zip(promotions, promotions[1:], strict=False):  # applied one after the other
        assert after.previous == before.version


def test_a_path_no_bundle_can_be_read_from_is_a_registry_error(tmp_path: Path) -> None:
    from voce.models.registry import ModelRegistry, RegistryError

    registry = ModelRegistry(tmp_path / "registry")
    for bad in (tmp_path / "missing", tmp_path / ("0" * 5000)):
        with pytest.raises(RegistryError):
            registry.register(bad, by="test")
