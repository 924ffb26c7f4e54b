"""``/v1/admin/models`` and the hot swap under load: clients keep calling ``/v1/analyze`` while a version is promoted
and rolled back through the API; no request fails, every response comes whole from one version (its documents are
exactly what that version answers alone), and the versions switch.  Another tenant's admin key may not touch the
registry; the old analyzer is freed once nothing holds it."""
from __future__ import annotations

import gc
import threading
import weakref
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.service.api.helpers import bearer, local_client, new_key, sign_in, wait_for, wait_ready
from tests.service.models_data import train_second_bundle
from voce.models.types import DocumentInput
from voce.service.app import create_app
from voce.service.settings import Settings

DOCS = [
    {"id": "a", "text": "Il personale è stato gentilissimo e disponibile."},
    {"id": "b", "text": "Way overpriced, not worth the money."},
    {"id": "c", "text": "Il volo è stato cancellato senza preavviso, pessimo servizio."},
]


@pytest.fixture(scope="module")
def second_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_second_bundle(tmp_path_factory.mktemp("tiny-v2") / "bundle")


@pytest.fixture()
def client(tiny_bundle_dir: Path, tmp_path: Path) -> Iterator[TestClient]:
    settings = Settings(
        encoder_backend="fake", encoder="fake", bundle=tiny_bundle_dir, cache_dir=tmp_path / "cache",
        data_dir=tmp_path / "data", workers=0, registry_poll_seconds=0.1, max_concurrency=4, max_waiting=64,
    )
    with local_client(create_app(settings), raise_server_exceptions=False) as c:
        wait_ready(c)
        sign_in(c)  # the first admin key: tenant 'default', the operator
        yield c


def _expected(client: TestClient, version: str) -> list[dict[str, Any]]:
    """What ``version`` answers for DOCS on its own (loaded apart from the service)."""
    from voce.models.spec import load_analyzer

    app: Any = client.app
    spec = app.state.follower.spec_for(version)
    results, errors = load_analyzer(spec).analyze([DocumentInput.model_validate(d) for d in DOCS])
    assert not errors
    return [r.model_dump(mode="json") for r in results]


def test_list_and_show_start_with_the_configured_bundle(client: TestClient) -> None:
    r = client.get("/v1/admin/models")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["active"] == body["serving"] == "tiny-test"
    assert [v["version"] for v in body["versions"]] == ["tiny-test"] and body["versions"][0]["active"]
    assert [(e["action"], e["version"]) for e in body["history"]] == [("promote", "tiny-test"), ("register", "tiny-test")]
    shown = client.get("/v1/admin/models/tiny-test").json()
    assert shown["model"]["version"] == "tiny-test" and shown["model"]["path"] == "bundles/tiny-test"
    missing = client.get("/v1/admin/models/nope")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "NotFound"
    assert client.post("/v1/admin/models/nope/promote").status_code == 404
    bad = client.post("/v1/admin/models", json={"path": "/does/not/exist"})
    assert bad.status_code == 422 and "not a Voce bundle" in bad.json()["error"]["message"]
    nothing = client.post("/v1/admin/models/rollback")
    assert nothing.status_code == 422 and "nothing to roll back" in nothing.json()["error"]["message"]


def test_another_tenants_admin_may_not_touch_the_model(client: TestClient, second_bundle: Path) -> None:
    other = bearer(new_key(client, "acme", ["admin"]))
    for method, path, kw in (("GET", "/v1/admin/models", {}), ("POST", "/v1/admin/models/rollback", {}),
                             ("POST", "/v1/admin/models", {"json": {"path": str(second_bundle)}})):
        r = client.request(method, path, headers=other, **kw)
        assert r.status_code == 403 and "tenant 'default'" in r.json()["error"]["message"], r.text
    assert client.get("/v1/admin/models").json()["versions"][0]["version"] == "tiny-test"  # nothing registered


def test_promote_and_rollback_under_concurrent_load(client: TestClient, second_bundle: Path) -> None:
    expected = {"tiny-test": _expected(client, "tiny-test")}
    reg = client.post("/v1/admin/models", json={"path": str(second_bundle), "note": "fewer rows"})
    assert reg.status_code == 201 and reg.json()["model"]["version"] == "tiny-v2", reg.text
    expected["tiny-v2"] = _expected(client, "tiny-v2")
    assert expected["tiny-v2"] != expected["tiny-test"]  # the versions answer differently: a mix would show

    stop = threading.Event()
    seen: list[str] = []
    failures: list[str] = []
    headers = dict(client.headers)

    def hammer() -> None:
        while not stop.is_set():
            r = client.post("/v1/analyze", json={"documents": DOCS}, headers=headers)
            if r.status_code != 200:
                failures.append(f"{r.status_code}: {r.text[:200]}")
                continue
            body = r.json()
            version = body["model_version"]
            if body["documents"] != expected.get(version) or body["errors"]:
                failures.append(f"answer not wholly from {version}: {body}")
            seen.append(version)

    threads = [threading.Thread(target=hammer) for _ in range(6)]
    for t in threads:
        t.start()
    try:
        assert wait_for(lambda: len(seen) >= 20, 60)
        promoted = client.post("/v1/admin/models/tiny-v2/promote", json={"note": "try v2"})
        assert promoted.status_code == 200, promoted.text
        body = promoted.json()
        assert body["event"]["previous"] == "tiny-test" and body["active"] == body["serving"] == "tiny-v2"
        mark = len(seen)
        assert wait_for(lambda: len(seen) >= mark + 20, 60)
        rolled = client.post("/v1/admin/models/rollback")
        assert rolled.status_code == 200 and rolled.json()["serving"] == "tiny-test", rolled.text
        mark2 = len(seen)
        assert wait_for(lambda: len(seen) >= mark2 + 20, 60)
    finally:
        stop.set()
        for t in threads:
            t.join(60)
    assert not failures, failures[:3]
    counts = Counter(seen)
    assert counts["tiny-test"] >= 20 and counts["tiny-v2"] >= 10, counts
    # requests started after each swap answered returned: the last ones are the rolled-back version's
    assert seen[-1] == "tiny-test" and "tiny-v2" in seen[mark:mark2]
    history = client.get("/v1/admin/models").json()["history"]
    assert [(e["action"], e["version"]) for e in history[:3]] == [
        ("rollback", "tiny-test"), ("promote", "tiny-v2"), ("register", "tiny-v2")]
    assert history[1]["note"] == "try v2" and history[0]["by"] and history[0]["at"]


def test_the_old_analyzer_is_freed_after_the_swap(client: TestClient, second_bundle: Path) -> None:
    app: Any = client.app
    old = weakref.ref(app.state.engine.analyzer)
    assert client.post("/v1/analyze", json={"documents": DOCS}).status_code == 200
    assert client.post("/v1/admin/models", json={"path": str(second_bundle), "promote": True}).json()["serving"] == "tiny-v2"
    assert client.post("/v1/analyze", json={"documents": DOCS}).json()["model_version"] == "tiny-v2"
    gc.collect()
    assert old() is None  # nothing held on to the old model


def test_a_promotion_from_another_process_is_followed(client: TestClient, second_bundle: Path) -> None:
    """`voce models promote` writes the registry; the service notices within VOCE_REGISTRY_POLL_SECONDS."""
    from voce.models.registry import ModelRegistry

    app: Any = client.app
    other = ModelRegistry(app.state.settings.data_dir / "registry")  # another process's view of the folder
    other.register(second_bundle, by="ana")
    other.promote("tiny-v2", by="ana")
    assert wait_for(lambda: client.post("/v1/analyze", json={"documents": DOCS}).json()["model_version"] == "tiny-v2", 30)
    listed = client.get("/v1/admin/models").json()
    assert listed["active"] == listed["serving"] == "tiny-v2" and listed["history"][0]["by"] == "ana"


def test_a_version_that_fails_to_load_leaves_the_old_one_serving(client: TestClient, second_bundle: Path) -> None:
    app: Any = client.app
    client.post("/v1/admin/models", json={"path": str(second_bundle)})
    (app.state.settings.data_dir / "registry" / "bundles" / "tiny-v2" / "heads.safetensors").write_bytes(b"broken")
    r = client.post("/v1/admin/models/tiny-v2/promote", params={"timeout": 30})
    assert r.status_code == 200
    body = r.json()
    assert body["active"] == "tiny-v2" and body["serving"] == "tiny-test" and "checksum" in body["swap_error"]
    assert client.post("/v1/analyze", json={"documents": DOCS}).json()["model_version"] == "tiny-test"
    # repaired and promoted again: tried again (a failed version is not retried at every poll, only when promoted)
    registered = app.state.follower.registry.bundle_path("tiny-v2")
    (registered / "heads.safetensors").write_bytes((second_bundle / "heads.safetensors").read_bytes())
    again = client.post("/v1/admin/models/tiny-v2/promote", params={"timeout": 30}).json()
    assert again["serving"] == "tiny-v2" and again["swap_error"] is None
    assert client.post("/v1/admin/models/rollback").json()["serving"] == "tiny-test"


@pytest.mark.real_model
@pytest.mark.slow
def test_the_shipped_bundle_swaps_under_load_on_the_real_encoder(voce_cache_dir: Path, tmp_path: Path) -> None:
    """The shipped bundle over ONNX e5, registered again under another name and promoted, then rolled back, while
    three clients call /v1/analyze: no request fails, the labels stay those of the (same) weights, versions switch."""
    from voce.models.bundle import default_bundle_path

    settings = Settings(cache_dir=voce_cache_dir, data_dir=tmp_path / "data", workers=0, registry_poll_seconds=0.2)
    with local_client(create_app(settings), raise_server_exceptions=False) as c:
        wait_ready(c, timeout=300)
        sign_in(c)
        first = c.post("/v1/analyze", json={"documents": DOCS}).json()
        shipped = first["model_version"]
        labels = [d["sentiment"]["label"] for d in first["documents"]]
        made = c.post("/v1/admin/models", json={"path": str(default_bundle_path()), "version": "shipped-copy"})
        assert made.status_code == 201, made.text
        stop, seen, failures = threading.Event(), [], []
        headers = dict(c.headers)

        def hammer() -> None:
            while not stop.is_set():
                r = c.post("/v1/analyze", json={"documents": DOCS}, headers=headers)
                if r.status_code != 200 or [d["sentiment"]["label"] for d in r.json()["documents"]] != labels:
                    failures.append(f"{r.status_code}: {r.text[:300]}")
                    continue
                seen.append(r.json()["model_version"])

        threads = [threading.Thread(target=hammer) for _ in range(3)]
        for t in threads:
            t.start()
        try:
            assert wait_for(lambda: len(seen) >= 5, 120)
            promoted = c.post("/v1/admin/models/shipped-copy/promote", params={"timeout": 300})
            assert promoted.json()["serving"] == "shipped-copy", promoted.text
            mark = len(seen)
            assert wait_for(lambda: len(seen) >= mark + 5, 120)
            assert c.post("/v1/admin/models/rollback", params={"timeout": 300}).json()["serving"] == shipped
            mark2 = len(seen)
            assert wait_for(lambda: len(seen) >= mark2 + 5, 120)
        finally:
            stop.set()
            for t in threads:
                t.join(120)
        assert not failures, failures[:2]
        assert "shipped-copy" in seen[mark:mark2] and seen[-1] == shipped and seen[0] == shipped
