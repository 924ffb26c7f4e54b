"""/v1/alerts/rules and /v1/alerts/events: create, read, list, change, delete; validation with codes; scopes;
another tenant's rules and events not found; the events feed paged with cursors and since=."""
from __future__ import annotations

import datetime as dt
from typing import Any

from tests.service.insights.conftest import Team
from voce.service.insights.alerts import evaluate_batch

RULE = {"name": "NPS sotto zero", "metric": "nps", "condition": "below", "threshold": 10, "min_rows": 5}


def _create(team: Team, who: str = "acme", **body: Any) -> dict[str, Any]:
    r = team.client.post("/v1/alerts/rules", json={**RULE, **body}, headers=team.h(who))
    assert r.status_code == 201, r.text
    return dict(r.json())


def test_create_read_update_delete(team: Team) -> None:
    rule = _create(team, subject="segment", subject_id=" regione : nord ", query="language=it&language=en")
    assert (rule["subject_id"], rule["query"], rule["owner"], rule["enabled"]) == (
        "regione:nord", "language=it&language=en", "Giulia", True)
    assert rule["webhook_url"] is None and rule["webhook_secret"] is None
    assert team.client.get(f"/v1/alerts/rules/{rule['id']}", headers=team.h("acme-reader")).json()["name"] == RULE["name"]
    r = team.client.patch(f"/v1/alerts/rules/{rule['id']}", json={"enabled": False, "threshold": -20},
                          headers=team.h("acme"))
    assert r.status_code == 200 and (r.json()["enabled"], r.json()["threshold"]) == (False, -20)
    listed = team.client.get("/v1/alerts/rules", headers=team.h("acme2")).json()["rules"]  # the tenant's rules
    assert rule["id"] in {x["id"] for x in listed}
    assert team.client.delete(f"/v1/alerts/rules/{rule['id']}", headers=team.h("acme")).status_code == 204
    assert team.client.get(f"/v1/alerts/rules/{rule['id']}", headers=team.h("acme")).status_code == 404


def test_rules_that_cannot_be_evaluated_are_422_with_codes(team: Team) -> None:
    cases = [
        ({"threshold": None}, "alerts.threshold_missing"),
        ({"threshold": 150}, "alerts.threshold_range"),
        ({"metric": "negative_share", "threshold": 30}, "alerts.threshold_range"),  # shares are 0..1
        ({"subject": "topic"}, "alerts.subject_missing"),
        ({"subject": "segment", "subject_id": "nocolon"}, "alerts.segment_invalid"),
        ({"metric": "nps_impact"}, "alerts.metric_subject"),
        ({"metric": "share", "subject": "segment", "subject_id": "a:b", "threshold": 0.5}, "alerts.metric_subject"),
        ({"condition": "change"}, "alerts.compare_to_missing"),
        ({"condition": "change", "compare_to": "previous_batch", "metric": "nps_impact", "subject": "topic",
          "subject_id": "delivery"}, "alerts.metric_condition"),
        ({"query": "period=marzo"}, "filters.invalid"),
        ({"query": "colour=red"}, "filters.unknown"),
        ({"webhook_url": "https://hooks.example.com/voce"}, "webhook.off"),  # no VOCE_WEBHOOK_ALLOWED_HOSTS here
    ]
    for body, code in cases:
        r = team.client.post("/v1/alerts/rules", json={**RULE, **body}, headers=team.h("acme"))
        assert r.status_code == 422, (body, r.text)
        assert r.json()["error"]["details"][0]["code"] == code, (body, r.json())
    for body in ({"metric": "csat"}, {"condition": "equals"}, {"min_rows": 0}, {"name": ""}, {"colour": "red"}):
        r = team.client.post("/v1/alerts/rules", json={**RULE, **body}, headers=team.h("acme"))
        assert r.status_code == 422 and r.json()["error"]["code"] == "InvalidInput", body
    assert not [x for x in team.client.get("/v1/alerts/rules", headers=team.h("acme")).json()["rules"]
                if x["name"] == RULE["name"] and x["threshold"] == 150]
    ok = _create(team)
    r = team.client.patch(f"/v1/alerts/rules/{ok['id']}", json={"threshold": 500}, headers=team.h("acme"))
    assert r.status_code == 422 and r.json()["error"]["details"][0]["code"] == "alerts.threshold_range"
    assert team.client.get(f"/v1/alerts/rules/{ok['id']}", headers=team.h("acme")).json()["threshold"] == 10


def test_scopes_and_another_tenant(team: Team) -> None:
    rule = _create(team)
    r = team.client.post("/v1/alerts/rules", json=RULE, headers=team.h("acme-reader"))
    assert r.status_code == 403 and "batches:write" in r.json()["error"]["message"]
    assert team.client.delete(f"/v1/alerts/rules/{rule['id']}", headers=team.h("acme-reader")).status_code == 403
    for method in ("GET", "DELETE"):
        assert team.client.request(method, f"/v1/alerts/rules/{rule['id']}", headers=team.h("beta")).status_code == 404
    assert team.client.patch(f"/v1/alerts/rules/{rule['id']}", json={"enabled": False},
                             headers=team.h("beta")).status_code == 404
    assert rule["id"] not in {x["id"] for x in team.client.get("/v1/alerts/rules", headers=team.h("beta")).json()["rules"]}
    assert team.client.get(f"/v1/alerts/rules/{rule['id']}", headers=team.h("acme")).json()["enabled"] is True


def test_the_events_feed_pages_and_stays_in_the_tenant(team: Team) -> None:
    store = team.client.app.state.store  # type: ignore[attr-defined]
    made = [_create(team, name=f"feed {i}", threshold=10 + i)["id"] for i in range(5)]  # ROWS: NPS 0 on 10 answers
    done = evaluate_batch(store, team.batch["acme"])  # the batch finished before these rules: evaluated here
    mine = done.events
    assert len(mine) >= 5
    seen: list[int] = []
    after = None
    while True:
        params: dict[str, Any] = {"limit": 2, **({"after": after} if after is not None else {})}
        page = team.client.get("/v1/alerts/events", params=params, headers=team.h("acme-reader")).json()
        seen += [e["id"] for e in page["events"]]
        assert len(page["events"]) <= 2 and page["has_more"] == (page["next_cursor"] is not None)
        if not page["has_more"]:
            break
        after = page["next_cursor"]
    assert seen == sorted(seen) and set(mine) <= set(seen)
    newest = team.client.get("/v1/alerts/events", params={"order": "desc", "limit": 3}, headers=team.h("acme")).json()
    assert [e["id"] for e in newest["events"]] == sorted(seen, reverse=True)[:3]
    older = team.client.get("/v1/alerts/events", params={"order": "desc", "limit": 3, "before": newest["next_cursor"]},
                            headers=team.h("acme")).json()
    assert [e["id"] for e in older["events"]] == sorted(seen, reverse=True)[3:6]
    one = team.client.get("/v1/alerts/events", params={"rule_id": made[0]}, headers=team.h("acme")).json()["events"]
    assert len(one) == 1 and one[0]["rule_name"] == "feed 0" and one[0]["status"] == "fired"
    assert one[0]["code"] == "alert.threshold" and one[0]["params"]["threshold"] == 10 and one[0]["value"] == 0.0
    assert one[0]["webhook"] == {"status": "none", "attempts": 0, "error": None, "delivered_at": None}
    later = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)).isoformat()
    assert team.client.get("/v1/alerts/events", params={"since": later}, headers=team.h("acme")).json()["events"] == []
    earlier = (dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)).isoformat()
    assert len(team.client.get("/v1/alerts/events", params={"since": earlier, "limit": 500},
                               headers=team.h("acme")).json()["events"]) == len(seen)
    assert team.client.get("/v1/alerts/events", headers=team.h("beta")).json()["events"] == []
    for bad in ({"limit": 0}, {"limit": 501}, {"order": "sideways"}, {"since": "yesterday"}):
        assert team.client.get("/v1/alerts/events", params=bad, headers=team.h("acme")).status_code == 422
    assert team.client.delete(f"/v1/alerts/rules/{made[0]}", headers=team.h("acme")).status_code == 204
    kept = team.client.get("/v1/alerts/events", params={"limit": 500}, headers=team.h("acme")).json()["events"]
    assert any(e["rule_id"] is None and e["rule_name"] == "feed 0" for e in kept)  # the event outlives its rule
