"""/v1/views and the link /ui/views/{id}: create, read, list, change, delete; filters validated by Filters;
owner-only views, shared views, another tenant's views and batches not found."""
from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

from tests.service.insights.conftest import Team


def _create(team: Team, who: str = "acme", **body: object) -> dict[str, object]:
    payload = {"name": "Nord, marzo", "batch_id": team.batch["acme"], "query": "segment=regione:nord&period=2026-03"}
    payload.update(body)
    r = team.client.post("/v1/views", json=payload, headers=team.h(who))
    assert r.status_code == 201, r.text
    return dict(r.json())


def test_create_read_update_delete(team: Team) -> None:
    view = _create(team, query="?topic=delivery&topic=price&segment=regione:nord&granularity=week")
    assert view["filters"]["topic"] == ["delivery", "price"] and view["filters"]["segment"] == {"regione": ["nord"]}
    assert view["query"] == "topic=delivery&topic=price&segment=regione%3Anord" and view["granularity"] == "week"
    assert view["owner"] == "Giulia" and view["mine"] is True and view["shared"] is False
    assert view["link"] == f"/ui/views/{view['id']}"
    got = team.client.get(f"/v1/views/{view['id']}", headers=team.h("acme")).json()
    assert got == view
    r = team.client.patch(f"/v1/views/{view['id']}", json={"name": "Nord", "query": "language=it", "shared": True},
                          headers=team.h("acme"))
    assert r.status_code == 200, r.text
    assert (r.json()["name"], r.json()["query"], r.json()["shared"]) == ("Nord", "language=it", True)
    assert r.json()["granularity"] == "week"
    assert view["id"] in {v["id"] for v in team.client.get("/v1/views", headers=team.h("acme")).json()["views"]}
    assert team.client.delete(f"/v1/views/{view['id']}", headers=team.h("acme")).status_code == 204
    assert team.client.get(f"/v1/views/{view['id']}", headers=team.h("acme")).status_code == 404


def test_bad_filters_and_fields_are_422_with_codes(team: Team) -> None:
    for query, code in (("period=marzo", "filters.invalid"), ("segment=nocolon", "filters.invalid"),
                        ("colour=red", "filters.unknown"), ("date_from=2026-03-02&date_to=2026-03-01", "filters.invalid"),
                        ("granularity=year", "filters.invalid")):
        r = team.client.post("/v1/views", json={"name": "x", "query": query}, headers=team.h("acme"))
        assert r.status_code == 422, (query, r.text)
        assert r.json()["error"]["details"][0]["code"] == code, (query, r.json())
    for body in ({"name": ""}, {"name": "x" * 129}, {"name": "x", "extra": 1}, {"name": "x", "shared": "maybe"}):
        r = team.client.post("/v1/views", json=body, headers=team.h("acme"))
        assert r.status_code == 422 and r.json()["error"]["code"] == "InvalidInput", body
    before = team.client.get("/v1/views", headers=team.h("acme")).json()["views"]
    assert not [v for v in before if v["name"] == "x"]  # nothing half-saved


def test_unshared_views_are_the_owners_shared_ones_the_tenants(team: Team) -> None:
    private = _create(team, name="mine only")
    shared = _create(team, name="for the team", shared=True)
    seen = {v["id"]: v for v in team.client.get("/v1/views", headers=team.h("acme2")).json()["views"]}
    assert shared["id"] in seen and private["id"] not in seen and seen[shared["id"]]["mine"] is False
    assert team.client.get(f"/v1/views/{private['id']}", headers=team.h("acme2")).status_code == 404
    # a colleague opens a shared view but does not change it; an admin key of the tenant may
    r = team.client.patch(f"/v1/views/{shared['id']}", json={"name": "taken"}, headers=team.h("acme2"))
    assert r.status_code == 403 and r.json()["error"]["details"][0]["code"] == "views.not_owner"
    assert team.client.delete(f"/v1/views/{shared['id']}", headers=team.h("acme2")).status_code == 403
    assert team.client.get(f"/v1/views/{shared['id']}", headers=team.h("acme-reader")).status_code == 200
    assert team.client.patch(f"/v1/views/{shared['id']}", json={"name": "renamed"},
                             headers=team.h("acme-admin")).json()["name"] == "renamed"


def test_another_tenant_sees_nothing_and_cannot_use_our_batch(team: Team) -> None:
    shared = _create(team, name="acme shared", shared=True)
    assert shared["id"] not in {v["id"] for v in team.client.get("/v1/views", headers=team.h("beta")).json()["views"]}
    for method in ("get", "delete"):
        r = team.client.request(method.upper(), f"/v1/views/{shared['id']}", headers=team.h("beta"))
        assert r.status_code == 404, r.text
    assert team.client.patch(f"/v1/views/{shared['id']}", json={"name": "x"}, headers=team.h("beta")).status_code == 404
    r = team.client.post("/v1/views", json={"name": "theirs", "batch_id": team.batch["acme"]}, headers=team.h("beta"))
    assert r.status_code == 404 and r.json()["error"]["message"] == f"no batch {team.batch['acme']!r}"
    assert team.client.get(f"/ui/views/{shared['id']}", headers=team.h("beta"), follow_redirects=False).status_code == 404
    assert team.client.get(f"/v1/views/{shared['id']}", headers=team.h("acme")).status_code == 200


def test_the_link_opens_the_dashboard_with_the_filters(team: Team) -> None:
    view = _create(team, query="segment=regione:nord&period=2026-03", granularity="day", shared=True)
    r = team.client.get(f"/ui/views/{view['id']}", headers=team.h("acme2"), follow_redirects=False)
    assert r.status_code == 303, r.text
    target = urlsplit(r.headers["location"])
    assert target.path == f"/ui/batches/{team.batch['acme']}"
    assert parse_qs(target.query) == {"segment": ["regione:nord"], "date_from": ["2026-03-01"], "date_to": ["2026-03-31"],
                                      "granularity": ["day"], "view": [view["id"]]}  # the page filters by dates
    latest = _create(team, name="latest", batch_id=None)
    r = team.client.get(f"/ui/views/{latest['id']}", headers=team.h("acme"), follow_redirects=False)
    assert r.status_code == 303 and urlsplit(r.headers["location"]).path == f"/ui/batches/{team.batch['acme']}"
    r = team.client.get(f"/ui/views/{latest['id']}", follow_redirects=False)  # no key: sign in first
    assert r.status_code == 303 and r.headers["location"].startswith("/ui/signin?next=")
