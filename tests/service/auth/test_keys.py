"""API keys at rest (SQLite and PostgreSQL), the first start's admin key, ``voce keys``, and VOCE_AUTH=off."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from tests.service.api.helpers import bearer, local_client, wait_ready
from tests.service.batch_data import ROWS, csv_bytes
from voce.service.app import create_app
from voce.service.auth.keys import KeyNotFound, KeySpecError, KeyStore, parse_scopes
from voce.service.cli import app as cli
from voce.service.db import ApiKey
from voce.service.settings import Settings

runner = CliRunner()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> KeyStore:
    if request.param == "postgres":
        return KeyStore.open(request.getfixturevalue("fresh_postgres_url"))
    return KeyStore.open(f"sqlite:///{tmp_path / 'keys.db'}")


def test_a_key_is_stored_as_a_hash_and_shown_once(store: KeyStore) -> None:
    created = store.create("acme", "batches:read, analyze", name="CRM\x00 sync")
    key, info = created.secret, created.info
    assert key.startswith("voce_") and len(key) >= 45 and info.prefix == key[:13]
    assert info.scopes == ("analyze", "batches:read") and info.name == "CRM sync" and info.tenant == "acme"
    with store.sessions() as s:
        row = s.scalars(select(ApiKey).where(ApiKey.id == info.id)).one()
        stored = " ".join(str(v) for v in (row.id, row.tenant, row.name, row.prefix, row.key_hash, row.scopes))
    assert key not in stored and key[13:] not in stored  # neither the key nor its secret part
    assert row.key_hash == "sha256:" + hashlib.sha256(key.encode()).hexdigest()
    verified = store.verify(key)
    assert verified is not None and verified.id == info.id and verified.active
    for wrong in (key[:-1] + ("A" if key[-1] != "A" else "B"), key + "x", key[:13], "", "voce_", key.upper(), "x" * 200):
        assert store.verify(wrong) is None, wrong


def test_revoke_by_id_or_prefix_and_refuse_ambiguity(store: KeyStore) -> None:
    a = store.create("acme", ["analyze"]).info
    b = store.create("beta", ["analyze"]).info
    assert store.find(a.id).id == a.id and store.find(a.prefix).id == a.id
    with pytest.raises(KeyNotFound, match="matches 2 keys"):
        store.find("voce_")
    with pytest.raises(KeyNotFound):
        store.revoke(b.prefix, tenant="acme")  # another tenant's key is not found through a tenant's scope
    with pytest.raises(KeyNotFound):
        store.find("%")  # LIKE wildcards are literal
    revoked = store.revoke(a.prefix)
    assert revoked.revoked_at is not None and store.revoke(a.id).revoked_at == revoked.revoked_at  # idempotent
    listed = {k.id: k for k in store.list()}
    assert not listed[a.id].active and listed[b.id].active
    assert [k.id for k in store.list(tenant="beta")] == [b.id]


def test_bad_scopes_and_tenants_are_refused() -> None:
    assert parse_scopes(["admin", "analyze"]) == ("analyze", "admin")
    for bad in ("", "read", "analyze,root", ","):
        with pytest.raises(KeySpecError):
            parse_scopes(bad)
    store = KeyStore.open("sqlite://")
    for tenant in ("", " ", "a b", "../x", "x" * 129, "-lead", "ténant"):
        with pytest.raises(KeySpecError):
            store.create(tenant, ["analyze"])


def test_the_first_admin_key_is_made_once(store: KeyStore) -> None:
    first = store.create_first("default", ["admin"], "first")
    assert first is not None and first.info.scopes == ("admin",)
    assert store.create_first("default", ["admin"], "first") is None and store.count() == 1


def _settings(tmp: Path, bundle: Path, **kw: object) -> Settings:
    return Settings(encoder_backend="fake", encoder="fake", bundle=bundle, cache_dir=tmp / "c", data_dir=tmp / "d",
                    workers=0, **kw)  # type: ignore[arg-type]


def test_first_start_prints_an_admin_key_once_and_keeps_it_private(
    tiny_bundle_dir: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    s = _settings(tmp_path, tiny_bundle_dir)
    with local_client(create_app(s)) as c:
        wait_ready(c)
        printed = capfd.readouterr().err
        path = s.data_dir / "initial-admin-key"
        key = path.read_text().strip()
        assert oct(path.stat().st_mode & 0o777) == "0o600"
        assert key in printed and "tenant 'default'" in printed and str(path) in printed
        assert c.get("/v1/keys", headers=bearer(key)).json()["keys"][0]["scopes"] == ["admin"]
        assert c.get("/v1/batches").status_code == 401  # secure by default
        secret = s.data_dir / "session-secret"
        assert oct(secret.stat().st_mode & 0o777) == "0o600"
    with local_client(create_app(s)) as c:  # a restart: the key stays, nothing new is made or printed
        wait_ready(c)
        assert "voce_" not in capfd.readouterr().err
        assert c.get("/v1/batches", headers=bearer(key)).status_code == 200
        assert len(c.app.state.access.keys.list()) == 1  # type: ignore[attr-defined]


def test_auth_off_is_loud_and_acts_as_tenant_default(
    tiny_bundle_dir: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    s = _settings(tmp_path, tiny_bundle_dir, auth=False)
    with local_client(create_app(s), follow_redirects=False) as c:
        wait_ready(c)
        assert "VOCE_AUTH=off" in capfd.readouterr().err
        assert not (s.data_dir / "initial-admin-key").exists()
        created = c.post("/v1/batches", files={"file": ("s.csv", csv_bytes(ROWS))}, data={"mapping": '{"text": "commento"}'})
        assert created.status_code == 202, created.text
        assert c.get(f"/v1/batches/{created.json()['id']}").json()["tenant"] == "default"
        assert c.get("/metrics").status_code == 200 and c.get("/ui/").status_code == 200
        assert c.get("/ui/signin").status_code == 303
        r = c.get("/v1/batches", headers={"X-Tenant": "acme"})
        assert r.status_code == 403 and "VOCE_AUTH=off" in r.json()["error"]["message"]
        # the Host and Origin checks stay on: they are what protects a laptop's open service from web pages
        assert c.get("/ui/", headers={"Host": "rebind.evil.example"}).status_code == 400
        cross = c.post("/v1/batches", files={"file": ("s.csv", b"text\nciao\n")}, headers={"Origin": "http://evil.example"})
        assert cross.status_code == 403


def test_voce_keys_create_list_revoke(env: Path, monkeypatch: pytest.MonkeyPatch, tiny_bundle_dir: Path) -> None:
    monkeypatch.setenv("VOCE_DATA_DIR", str(env / "data"))
    made = runner.invoke(cli, ["keys", "create", "--tenant", "acme", "--scopes", "analyze,batches:read",
                               "--name", "CRM sync"])
    assert made.exit_code == 0, made.output
    key = made.stdout.strip()
    assert key.startswith("voce_") and "\n" not in key and "shown only now" in made.stderr
    listed = runner.invoke(cli, ["keys", "list"])
    assert listed.exit_code == 0 and key[:13] in listed.stdout and key not in listed.stdout
    assert "analyze,batches:read" in listed.stdout and "CRM sync" in listed.stdout
    as_json = [json.loads(x) for x in runner.invoke(cli, ["keys", "list", "--json", "--tenant", "acme"]).stdout.splitlines()]
    assert [(k["tenant"], k["scopes"], k["revoked_at"]) for k in as_json] == [("acme", ["analyze", "batches:read"], None)]

    # the key works against the service on the same database, and stops working once revoked
    with local_client(create_app(Settings(workers=0))) as c:
        wait_ready(c)
        assert c.get("/v1/batches", headers=bearer(key)).status_code == 200
        assert c.post("/v1/batches", files={"file": ("s.csv", b"text\nciao\n")}, headers=bearer(key)).status_code == 403
        revoked = runner.invoke(cli, ["keys", "revoke", key[:13]])
        assert revoked.exit_code == 0 and "revoked key" in revoked.stderr
        assert c.get("/v1/batches", headers=bearer(key)).status_code == 401
    assert json.loads(runner.invoke(cli, ["keys", "list", "--json", "--tenant", "acme"]).stdout)["revoked_at"]

    bad = runner.invoke(cli, ["keys", "create", "--tenant", "acme", "--scopes", "root"])
    assert bad.exit_code == 2 and "unknown scope(s) root" in bad.output
    missing = runner.invoke(cli, ["keys", "revoke", "voce_nope"])
    assert missing.exit_code == 2 and "no key" in missing.output


@pytest.mark.postgres
def test_tenants_apart_on_postgresql(tiny_bundle_dir: Path, tmp_path: Path, fresh_postgres_url: str) -> None:
    """The production path: keys, the first admin key and tenant scoping on PostgreSQL."""
    s = _settings(tmp_path, tiny_bundle_dir, database_url=fresh_postgres_url)
    with local_client(create_app(s)) as c:
        wait_ready(c)
        admin = (s.data_dir / "initial-admin-key").read_text().strip()
        keys = c.app.state.access.keys  # type: ignore[attr-defined]
        acme = keys.create("acme", ["batches:read", "batches:write"]).secret
        beta = keys.create("beta", ["batches:read", "batches:write"]).secret
        upload = {"files": {"file": ("s.csv", csv_bytes(ROWS))}, "data": {"mapping": '{"text": "commento"}'}}
        bid = c.post("/v1/batches", headers=bearer(acme), **upload).json()["id"]  # type: ignore[arg-type]
        assert c.get(f"/v1/batches/{bid}", headers=bearer(acme)).json()["tenant"] == "acme"
        for key in (beta, admin):  # neither another tenant nor tenant default's admin sees it
            assert c.get(f"/v1/batches/{bid}", headers=bearer(key)).status_code == 404
            assert c.delete(f"/v1/batches/{bid}", headers=bearer(key)).status_code == 404
            assert bid not in c.get("/v1/batches", headers=bearer(key)).text
        assert [b["id"] for b in c.get("/v1/batches", headers=bearer(acme)).json()["batches"]] == [bid]
        keys.revoke(acme[:13])
        assert c.get(f"/v1/batches/{bid}", headers=bearer(acme)).status_code == 401
