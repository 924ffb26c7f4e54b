"""Every route of the live app (``app.routes``), across two tenants: no key, an unknown or revoked key and a wrong
scope are refused, another tenant's batch or key is a 404 (never a 403: existence is not revealed), the owner gets
through.  A new route that declares no requirement, or that this table does not know, fails here."""
from __future__ import annotations

import hashlib
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.service.api.helpers import bearer
from tests.service.auth.conftest import ALL_BUT_ADMIN, Tenants, upload, wait_done
from tests.service.batch_data import MAPPING, ROWS, csv_bytes
from voce.service.app import create_app
from voce.service.auth.access import PUBLIC_PATHS, access_table
from voce.service.auth.keys import SCOPES
from voce.service.settings import Settings

_DOCS = {"documents": [{"id": "1", "text": "La consegna è arrivata in ritardo"}]}
_UPLOAD = {"files": {"file": ("s.csv", csv_bytes(ROWS))}, "data": {"mapping": '{"text": "commento"}'}}

#: (method, path) -> (the requirement it must declare, how to call it). A route missing here fails the suite:
#: add it with the scope it needs.
ROUTES: dict[tuple[str, str], tuple[str, dict[str, Any]]] = {
    ("GET", "/info"): ("any key", {}),
    ("GET", "/metrics"): ("admin", {}),
    ("GET", "/v1/taxonomy"): ("any key", {}),
    ("POST", "/v1/analyze"): ("analyze", {"json": _DOCS}),
    ("POST", "/analyze"): ("analyze", {"json": _DOCS}),
    ("POST", "/v1/batches/preview"): ("batches:write", {"files": _UPLOAD["files"]}),
    ("POST", "/v1/batches"): ("batches:write", _UPLOAD),
    ("GET", "/v1/batches"): ("batches:read", {}),
    ("GET", "/v1/batches/{batch_id}"): ("batches:read", {}),
    ("DELETE", "/v1/batches/{batch_id}"): ("batches:write", {}),
    ("POST", "/v1/batches/{batch_id}/cancel"): ("batches:write", {}),
    ("GET", "/v1/batches/{batch_id}/results"): ("batches:read", {"params": {"format": "csv"}}),
    ("GET", "/v1/batches/{batch_id}/export"): ("batches:read", {"params": {"format": "csv"}}),
    ("GET", "/v1/batches/{batch_id}/kpis"): ("batches:read", {}),
    ("GET", "/v1/batches/{batch_id}/compare"): ("batches:read", {}),
    ("GET", "/v1/batches/{batch_id}/topics"): ("batches:read", {}),
    ("GET", "/v1/batches/{batch_id}/topics/{topic_id}/taxonomy-entry"): ("batches:read", {}),
    ("GET", "/v1/batches/{batch_id}/rows"): ("batches:read", {"params": {"q": "consegna"}}),
    ("GET", "/v1/keys"): ("admin", {}),
    # model versions: admin keys of the operator's tenant only (test_the_owner_gets_through, tests/service/api/test_models.py)
    ("GET", "/v1/admin/models"): ("admin", {}),
    ("GET", "/v1/admin/models/{model_version}"): ("admin", {}),
    ("POST", "/v1/admin/models"): ("admin", {}),
    ("POST", "/v1/admin/models/{model_version}/promote"): ("admin", {}),
    ("POST", "/v1/admin/models/rollback"): ("admin", {}),
    ("POST", "/v1/keys"): ("admin", {"json": {"scopes": ["analyze"], "name": "from the test"}}),
    ("DELETE", "/v1/keys/{key_id}"): ("admin", {}),
    ("GET", "/v1/batches/{batch_id}/corrections"): ("batches:read", {}),
    ("GET", "/v1/batches/{batch_id}/rows/{row}/corrections"): ("batches:read", {}),
    ("POST", "/v1/batches/{batch_id}/rows/{row}/corrections"): ("batches:write", {"json": {"sentiment": "neutral"}}),
    ("DELETE", "/v1/batches/{batch_id}/rows/{row}/corrections/{correction_id}"): ("batches:write", {}),
    ("GET", "/v1/taxonomy/versions"): ("any key", {}),
    ("GET", "/v1/taxonomy/versions/{version}"): ("any key", {}),
    ("GET", "/v1/taxonomy/diff"): ("any key", {"params": {"from": 0}}),
    ("PATCH", "/v1/taxonomy"): ("batches:write", {"json": {"edits": [
        {"op": "add", "section": "topics", "entry": {"id": "from_the_routes_test", "names": {"en": "Routes"}}}]}}),
    ("PUT", "/v1/taxonomy"): ("batches:write", {"json": {"yaml": "version: x\ntouchpoints:\n- id: desk\n  names: {en: Desk}\n"}}),
    ("POST", "/v1/taxonomy/versions/{version}/rollback"): ("batches:write", {}),
    ("GET", "/ui/taxonomy"): ("batches:read", {}),
    ("POST", "/v1/batches/{batch_id}/rescore"): ("batches:write", {}),
    ("GET", "/v1/batches/{batch_id}/rescore"): ("batches:read", {}),
    ("GET", "/v1/views"): ("batches:read", {}),
    ("POST", "/v1/views"): ("batches:read", {"json": {"name": "routes", "query": "language=it"}}),
    ("GET", "/v1/views/{view_id}"): ("batches:read", {}),
    ("PATCH", "/v1/views/{view_id}"): ("batches:read", {"json": {"shared": True}}),
    ("DELETE", "/v1/views/{view_id}"): ("batches:read", {}),
    ("GET", "/ui/views/{view_id}"): ("batches:read", {}),
    ("GET", "/v1/alerts/rules"): ("batches:read", {}),
    ("POST", "/v1/alerts/rules"): ("batches:write", {"json": {"name": "routes", "metric": "nps", "condition": "below",
                                                              "threshold": 0}}),
    ("GET", "/v1/alerts/rules/{rule_id}"): ("batches:read", {}),
    ("PATCH", "/v1/alerts/rules/{rule_id}"): ("batches:write", {"json": {"enabled": False}}),
    ("DELETE", "/v1/alerts/rules/{rule_id}"): ("batches:write", {}),
    ("GET", "/v1/alerts/events"): ("batches:read", {"params": {"limit": 5}}),
    ("GET", "/ui/"): ("batches:read", {}),
    ("GET", "/ui/batches/{batch_id}"): ("batches:read", {}),
}


def _live_routes() -> list[tuple[str, str, str | None, bool]]:
    app = create_app(Settings(encoder_backend="fake", encoder="fake"))  # the table only: no lifespan runs
    return [(m, r.path, r.requirement, r.page) for r in access_table(app.routes) for m in r.methods if m != "HEAD"]


LIVE = _live_routes()
GUARDED = [(m, p, page) for m, p, req, page in LIVE if req != "public"]


def _id(route: tuple[str, str, bool]) -> str:
    return f"{route[0]} {route[1]}"


def test_every_route_declares_a_requirement_and_this_table_knows_it() -> None:
    undeclared = [f"{m} {p}" for m, p, req, _ in LIVE if req is None]
    assert not undeclared, f"routes without an access requirement (see service/deps.py): {undeclared}"
    for m, p, req, _ in LIVE:
        if req == "public":
            assert p in PUBLIC_PATHS or p.startswith("/docs/"), p
            continue
        assert (m, p) in ROUTES, f"{m} {p} is not in this test's ROUTES: add it with the scope it requires"
        assert ROUTES[(m, p)][0] == req, f"{m} {p} requires {req}, this table says {ROUTES[(m, p)][0]}"
    assert {(m, p) for m, p, _ in GUARDED} == set(ROUTES)


def test_a_route_without_a_requirement_is_caught() -> None:
    app = create_app(Settings(encoder_backend="fake", encoder="fake"))

    @app.get("/v1/forgotten")
    def forgotten() -> dict[str, str]:
        return {"secret": "every tenant's data"}

    table = {r.path: r.requirement for r in access_table(app.routes)}
    assert table["/v1/forgotten"] is None and table["/v1/batches"] == "batches:read"


def _path(path: str, t: Tenants, owner: str = "acme", key_id: str | None = None) -> str:
    return (path.replace("{batch_id}", t.batch[owner]).replace("{topic_id}", "0").replace("{row}", "0")
            .replace("{correction_id}", "1").replace("{version}", "1").replace("{model_version}", "tiny-test")
            .replace("{key_id}", key_id or t.client.app.state.access.keys.list(tenant=owner)[0].id))  # type: ignore[attr-defined]


def _new_taxonomy_version(t: Tenants) -> int:
    """A new version of acme's taxonomy (one more touchpoint), to read or roll back to."""
    n = len(t.client.get("/v1/taxonomy/versions", headers=bearer(t.full["acme"])).json()["versions"])
    r = t.client.patch("/v1/taxonomy", headers=bearer(t.full["acme"]), json={"edits": [
        {"op": "add", "section": "touchpoints", "entry": {"id": f"kiosk_{n}", "names": {"en": f"Kiosk {n}"}}}]})
    assert r.status_code == 200, r.text
    return int(r.json()["version"])


def _call(t: Tenants, method: str, path: str, headers: dict[str, str] | None = None, **kw: Any) -> Any:
    spec = dict(ROUTES[(method, path)][1])
    spec.update(kw)
    if "{version}" in path:
        path = path.replace("{version}", str(_new_taxonomy_version(t)))
    if "{view_id}" in path or "{rule_id}" in path:  # acme's own view / alert rule, made for this call
        made = t.client.post("/v1/views" if "{view_id}" in path else "/v1/alerts/rules", headers=bearer(t.full["acme"]),
                             json=ROUTES[("POST", "/v1/views" if "{view_id}" in path else "/v1/alerts/rules")][1]["json"])
        assert made.status_code == 201, made.text
        path = path.replace("{view_id}", str(made.json()["id"])).replace("{rule_id}", str(made.json()["id"]))
    return t.client.request(method, _path(path, t, key_id=spec.pop("key_id", None)), headers=headers or {},
                            follow_redirects=False, **spec)


@pytest.mark.parametrize("route", GUARDED, ids=_id)
def test_no_key_is_401_or_the_sign_in_page(tenants: Tenants, route: tuple[str, str, bool]) -> None:
    method, path, page = route
    r = _call(tenants, method, path)
    if page:
        assert r.status_code == 303 and r.headers["location"].startswith("/ui/signin?next=%2Fui%2F"), r.text
    else:
        assert r.status_code == 401, r.text
        assert r.headers["www-authenticate"].startswith("Bearer")
        assert r.json()["error"]["code"] == "Unauthorized"


@pytest.mark.parametrize("route", GUARDED, ids=_id)
def test_unknown_and_revoked_keys_are_401(tenants: Tenants, route: tuple[str, str, bool]) -> None:
    method, path, _ = route
    unknown = "voce_" + "A" * 43
    for key, why in ((unknown, "unknown"), (tenants.revoked, "revoked"), (tenants.full["acme"][:-2], "unknown")):
        for headers in (bearer(key), {"X-API-Key": key}):
            r = _call(tenants, method, path, headers)
            assert r.status_code == 401, (why, r.status_code, r.text)
            assert why in r.json()["error"]["message"] and "www-authenticate" in r.headers
    basic = _call(tenants, method, path, {"Authorization": "Basic YWRtaW46YWRtaW4="})
    assert basic.status_code == 401 and "Bearer" in basic.json()["error"]["message"]


@pytest.mark.parametrize("route", GUARDED, ids=_id)
def test_a_key_without_the_scope_is_403(tenants: Tenants, route: tuple[str, str, bool]) -> None:
    method, path, _ = route
    needed = ROUTES[(method, path)][0]
    if needed == "any key":  # any one scope will do
        r = _call(tenants, method, path, bearer(tenants.key("acme", ["analyze"])))
        assert r.status_code == 200, r.text
        return
    others = [s for s in SCOPES if s not in (needed, "admin")]
    r = _call(tenants, method, path, bearer(tenants.key("acme", others)))
    assert r.status_code == 403, r.text
    assert r.json()["error"]["code"] == "Forbidden" and needed in r.json()["error"]["message"]
    assert tenants.client.get(f"/v1/batches/{tenants.batch['acme']}", headers=bearer(tenants.full["acme"])).status_code == 200


TENANT_ROUTES = [r for r in GUARDED if any(k in r[1] for k in ("{batch_id}", "{key_id}", "{view_id}", "{rule_id}"))]


@pytest.mark.parametrize("route", TENANT_ROUTES, ids=_id)
def test_another_tenants_batch_or_key_is_404(tenants: Tenants, route: tuple[str, str, bool]) -> None:
    """beta's admin key (every scope of beta) on acme's batch / key: not found, and nothing happened to it."""
    method, path, page = route
    r = _call(tenants, method, path, bearer(tenants.admin["beta"]))
    assert r.status_code == 404, r.text
    if page:
        assert 'data-testid="not-found"' in r.text and "dashboard" not in r.text
    else:
        body = r.json()["error"]
        assert body["code"] == "NotFound" and "topic" not in body["message"]  # the batch, not its topic, is missing
    still = tenants.client.get(f"/v1/batches/{tenants.batch['acme']}", headers=bearer(tenants.full["acme"]))
    assert still.status_code == 200 and still.json()["status"] == "done"
    acme_keys = tenants.client.get("/v1/keys", headers=bearer(tenants.admin["acme"])).json()["keys"]
    assert all(k["revoked_at"] is None for k in acme_keys if k["prefix"] != tenants.revoked[:13])


@pytest.mark.parametrize("route", GUARDED, ids=_id)
def test_the_owner_gets_through(tenants: Tenants, route: tuple[str, str, bool]) -> None:
    method, path, _ = route
    needed = ROUTES[(method, path)][0]
    key = tenants.admin["acme"] if needed == "admin" else tenants.full["acme"]
    extra: dict[str, Any] = {}
    if path.startswith("/v1/admin/models"):  # the model serves every tenant: the operator's (tenant 'default') admin
        key = tenants.key("default", ["admin"])
        bundle = str(tenants.client.app.state.settings.bundle)  # type: ignore[attr-defined]
        if method == "POST" and path == "/v1/admin/models":
            extra["json"] = {"path": bundle}
        if path.endswith("/rollback"):  # something to roll back from: the same weights under another name
            made = tenants.client.post("/v1/admin/models", headers=bearer(key),
                                       json={"path": bundle, "version": "tiny-routes", "promote": True})
            assert made.status_code == 201 and made.json()["serving"] == "tiny-routes", made.text
    if method == "DELETE" and "{batch_id}" in path:  # delete a batch of acme's own, made for this
        bid = upload(tenants.client, key, "to-delete.csv")
        wait_done(tenants.client, key, bid)
        r = tenants.client.delete(f"/v1/batches/{bid}", headers=bearer(key))
        assert r.status_code == 204 and tenants.client.get(f"/v1/batches/{bid}", headers=bearer(key)).status_code == 404
        return
    if method == "DELETE" and "{correction_id}" in path:  # revert a correction made for this
        made = tenants.client.post(_path("/v1/batches/{batch_id}/rows/{row}/corrections", tenants),
                                   json={"sentiment": "mixed"}, headers=bearer(key))
        assert made.status_code == 201, made.text
        cid = made.json()["corrections"][-1]["id"]
        r = tenants.client.delete(_path(path, tenants).replace("/corrections/1", f"/corrections/{cid}"),
                                  headers=bearer(key))
        assert r.status_code == 200, r.text
        return
    if method == "DELETE" and "{key_id}" in path:
        extra["key_id"] = tenants.client.app.state.access.keys.create("acme", ["analyze"]).info.id  # type: ignore[attr-defined]
    r = _call(tenants, method, path, bearer(key), **extra)
    if path == "/ui/views/{view_id}":  # a view's link leads to its batch's dashboard
        assert r.status_code == 303 and r.headers["location"].startswith("/ui/batches/"), r.text
        return
    if path.endswith("/taxonomy-entry"):  # no discovered topics in this service: the batch was found, its topic not
        assert r.status_code == 404 and "has no discovered topic" in r.json()["error"]["message"]
        return
    assert r.status_code in (200, 201, 202, 204), (r.status_code, r.text)


def test_lists_hold_only_the_callers_tenant(tenants: Tenants) -> None:
    for tenant, other in (("acme", "beta"), ("beta", "acme")):
        for key in (tenants.full[tenant], tenants.admin[tenant]):  # admin does not cross tenants either
            listed = {b["id"]: b for b in tenants.client.get("/v1/batches", headers=bearer(key)).json()["batches"]}
            assert tenants.batch[tenant] in listed and tenants.batch[other] not in listed
            assert {b["tenant"] for b in listed.values()} == {tenant}
        keys = tenants.client.get("/v1/keys", headers=bearer(tenants.admin[tenant])).json()["keys"]
        assert keys and {k["tenant"] for k in keys} == {tenant}
        assert all("key" not in k and "key_hash" not in k for k in keys)


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "xlsx"])
def test_exports_only_to_the_owner(tenants: Tenants, fmt: str) -> None:
    url = f"/v1/batches/{tenants.batch['acme']}/results?format={fmt}"
    assert tenants.client.get(url, headers=bearer(tenants.full["beta"])).status_code == 404
    own = tenants.client.get(url, headers=bearer(tenants.full["acme"]))
    assert own.status_code == 200 and len(own.content) > 100


def test_kpis_rows_and_topics_of_the_other_tenant_are_404(tenants: Tenants) -> None:
    bid = tenants.batch["beta"]
    for tail in ("", "/kpis", "/rows", "/rows?q=consegna", "/topics", "/results", "/topics/0/taxonomy-entry"):
        r = tenants.client.get(f"/v1/batches/{bid}{tail}", headers=bearer(tenants.full["acme"]))
        assert r.status_code == 404 and r.json()["error"]["message"] == f"no batch {bid!r}", (tail, r.text)
    assert tenants.client.get(f"/ui/batches/{bid}", headers=bearer(tenants.full["acme"])).status_code == 404
    assert tenants.client.delete(f"/v1/batches/{bid}", headers=bearer(tenants.full["acme"])).status_code == 404
    assert tenants.client.get(f"/v1/batches/{bid}", headers=bearer(tenants.full["beta"])).status_code == 200


def test_x_tenant_does_not_choose_the_tenant(tenants: Tenants) -> None:
    key = tenants.full["acme"]
    r = tenants.client.get("/v1/batches", headers={**bearer(key), "X-Tenant": "beta"})
    assert r.status_code == 403 and "belongs to tenant 'acme'" in r.json()["error"]["message"]
    r = tenants.client.get(f"/v1/batches/{tenants.batch['beta']}", headers={**bearer(key), "X-Tenant": "beta"})
    assert r.status_code == 403
    assert tenants.client.get("/v1/batches", headers={**bearer(key), "X-Tenant": "acme"}).status_code == 200


def test_a_batch_records_its_tenant_and_key_hash(tenants: Tenants) -> None:
    key = tenants.full["beta"]
    b = tenants.client.app.state.store.get(tenants.batch["beta"])  # type: ignore[attr-defined]
    assert b.tenant == "beta" and b.api_key_hash == hashlib.sha256(key.encode()).hexdigest()


def test_keys_api_creates_a_key_once_and_revokes_it(tenants: Tenants) -> None:
    admin = bearer(tenants.admin["beta"])
    created = tenants.client.post("/v1/keys", json={"scopes": ["batches:read"], "name": "dashboard"}, headers=admin)
    assert created.status_code == 201, created.text
    body = created.json()
    key = body["key"]
    assert body["tenant"] == "beta" and body["scopes"] == ["batches:read"] and key.startswith(body["prefix"])
    listed = tenants.client.get("/v1/keys", headers=admin).text
    assert body["id"] in listed and key not in listed
    stored = tenants.client.app.state.access.keys.get(body["id"])  # type: ignore[attr-defined]
    assert stored.sha256 == hashlib.sha256(key.encode()).hexdigest()
    assert tenants.client.get("/v1/batches", headers=bearer(key)).status_code == 200
    assert tenants.client.post("/v1/analyze", json=_DOCS, headers=bearer(key)).status_code == 403
    bad = tenants.client.post("/v1/keys", json={"scopes": ["root"]}, headers=admin)
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "InvalidInput"
    revoked = tenants.client.delete(f"/v1/keys/{body['prefix']}", headers=admin)
    assert revoked.status_code == 200 and revoked.json()["revoked_at"]
    after = tenants.client.get("/v1/batches", headers=bearer(key))
    assert after.status_code == 401 and "revoked" in after.json()["error"]["message"]


def test_last_used_is_recorded(tenants: Tenants) -> None:
    key = tenants.key("acme", ALL_BUT_ADMIN)
    keys = tenants.client.app.state.access.keys  # type: ignore[attr-defined]
    info = keys.verify(key)
    assert info is not None and info.last_used_at is None
    assert tenants.client.get("/v1/batches", headers=bearer(key)).status_code == 200
    assert keys.get(info.id).last_used_at is not None


def test_uploads_without_a_valid_key_leave_nothing_behind(tenants: Tenants) -> None:
    data_dir = tenants.client.app.state.settings.data_dir  # type: ignore[attr-defined]
    before = sorted(p.name for p in (data_dir / "uploads").iterdir())
    tmp_before = sorted(p.name for p in (data_dir / "tmp").iterdir()) if (data_dir / "tmp").exists() else []
    for headers in ({}, bearer(tenants.revoked), bearer(tenants.key("acme", ["batches:read"]))):
        for path in ("/v1/batches", "/v1/batches/preview"):
            r = tenants.client.post(path, files={"file": ("s.csv", csv_bytes(ROWS))},
                                    data={"mapping": str(MAPPING).replace("'", '"')}, headers=headers)
            assert r.status_code in (401, 403), r.text
    assert sorted(p.name for p in (data_dir / "uploads").iterdir()) == before
    assert (sorted(p.name for p in (data_dir / "tmp").iterdir()) if (data_dir / "tmp").exists() else []) == tmp_before


def test_ops_policy(tenants: Tenants, client_metrics_public: TestClient) -> None:
    c = tenants.client
    assert c.get("/health").status_code == 200 and c.get("/ready").status_code == 200
    assert c.get("/openapi.json").status_code == 200
    assert c.get("/metrics", headers=bearer(tenants.full["acme"])).status_code == 403
    assert "voce_requests_total" in c.get("/metrics", headers=bearer(tenants.admin["acme"])).text
    assert client_metrics_public.get("/metrics").status_code == 200
    assert client_metrics_public.get("/info").status_code == 401


def test_openapi_describes_the_credentials(tenants: Tenants) -> None:
    spec = tenants.client.get("/openapi.json").json()
    schemes = spec["components"]["securitySchemes"]
    assert schemes["bearer"]["scheme"] == "bearer" and schemes["apiKey"]["name"] == "X-API-Key"
    for path, op in (("/v1/batches", "get"), ("/v1/batches", "post"), ("/v1/analyze", "post"), ("/v1/keys", "get"),
                     ("/metrics", "get"), ("/info", "get")):
        assert spec["paths"][path][op]["security"], path
        assert {"401", "403"} <= set(spec["paths"][path][op]["responses"]), path
    assert "security" not in spec["paths"]["/health"]["get"]


@pytest.fixture(scope="module")
def client_metrics_public(tiny_bundle_dir: Any, tmp_path_factory: pytest.TempPathFactory) -> Any:
    from tests.service.api.helpers import local_client

    tmp = tmp_path_factory.mktemp("metrics-public")
    s = Settings(encoder_backend="fake", encoder="fake", bundle=tiny_bundle_dir, cache_dir=tmp / "c", data_dir=tmp / "d",
                 workers=0, metrics_public=True)
    with local_client(create_app(s)) as c:
        yield c
