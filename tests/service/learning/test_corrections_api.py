"""Corrections through the API: create, list, revert; validation; another tenant can neither see nor write them;
the KPIs and the comment list count the corrected value."""
from __future__ import annotations

from typing import Any

from tests.service.learning.conftest import Team


def _url(t: Team, tenant: str = "acme", row: int | None = 0) -> str:
    base = f"/v1/batches/{t.batch[tenant]}"
    return base + (f"/rows/{row}/corrections" if row is not None else "/corrections")


def _row(t: Team, row: int) -> dict[str, Any]:
    page = t.client.get(f"/v1/batches/{t.batch['acme']}/rows", params={"limit": 50}, headers=t.h("acme")).json()
    return next(r for r in page["rows"] if r["row"] == row)


def test_create_list_and_revert(team: Team) -> None:
    t = team
    before = _row(t, 5)  # "Delivery was late again"
    kpis_before = t.client.get(f"/v1/batches/{t.batch['acme']}/kpis", headers=t.h("acme")).json()
    new_sentiment = "positive" if before["sentiment"] != "positive" else "negative"
    r = t.client.post(_url(t, row=5), json={"sentiment": new_sentiment, "detractor": False, "note": "sarcasm"},
                      headers=t.h("acme"))
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["original"]["sentiment"] == before["sentiment"]
    assert body["corrected"]["sentiment"] == new_sentiment and body["corrected"]["detractor"] is False
    (c,) = body["corrections"]
    assert c["author"] == "Giulia" and c["active"] and c["model_version"] and c["note"] == "sarcasm"
    assert c["change"] == {"sentiment": new_sentiment, "detractor": False}

    listed = t.client.get(_url(t, row=None), headers=t.h("acme-reader")).json()
    assert [x["row"] for x in listed["rows"]] == [5]
    assert listed["rows"][0]["corrected"]["sentiment"] == new_sentiment

    # the dashboard counts the corrected value: the sentiment counts move by one row
    kpis = t.client.get(f"/v1/batches/{t.batch['acme']}/kpis", headers=t.h("acme")).json()
    count = kpis_before["sentiment"]["counts"] if "counts" in kpis_before["sentiment"] else kpis_before["sentiment"]
    now = kpis["sentiment"]["counts"] if "counts" in kpis["sentiment"] else kpis["sentiment"]
    assert now[new_sentiment] == count[new_sentiment] + 1
    assert now[before["sentiment"]] == count[before["sentiment"]] - 1
    rows = t.client.get(f"/v1/batches/{t.batch['acme']}/rows", params={"sentiment": new_sentiment},
                        headers=t.h("acme")).json()
    assert 5 in [x["row"] for x in rows["rows"]]

    # revert: kept in the history, no longer applied
    r = t.client.delete(f"{_url(t, row=5)}/{c['id']}", headers=t.h("acme"))
    assert r.status_code == 200, r.text
    assert r.json()["corrected"]["sentiment"] == before["sentiment"]
    assert r.json()["corrections"][0]["active"] is False and r.json()["corrections"][0]["reverted_by"] == "Giulia"
    kpis = t.client.get(f"/v1/batches/{t.batch['acme']}/kpis", headers=t.h("acme")).json()
    assert kpis["sentiment"] == kpis_before["sentiment"]
    again = t.client.delete(f"{_url(t, row=5)}/{c['id']}", headers=t.h("acme"))
    assert again.status_code == 404 and again.json()["error"]["code"] == "NotFound"


def test_topics_and_touchpoints_added_and_removed(team: Team) -> None:
    t = team
    tax = t.client.get("/v1/taxonomy", headers=t.h("acme")).json()
    topic_ids = [e["id"] for e in tax["topics"]]
    touchpoint_ids = [e["id"] for e in tax["touchpoints"]]
    row = _row(t, 0)
    on_row = [x["id"] for x in row["topics"]]
    add = next(i for i in topic_ids if i not in on_row)
    body: dict[str, Any] = {"topics_add": [{"id": add, "sentiment": "negative"}],
                            "touchpoints_add": [next(i for i in touchpoint_ids
                                                     if i not in [x["id"] for x in row["touchpoints"]])]}
    if on_row:
        body["topics_remove"] = [on_row[0]]
    r = t.client.post(_url(t, row=0), json=body, headers=t.h("acme"))
    assert r.status_code == 201, r.text
    fixed = r.json()["corrected"]
    assert {"id": add, "sentiment": "negative"} in fixed["topics"]
    assert body["touchpoints_add"][0] in fixed["touchpoints"]
    if on_row:
        assert on_row[0] not in [x["id"] for x in fixed["topics"]]
    kpis = t.client.get(f"/v1/batches/{t.batch['acme']}/kpis", headers=t.h("acme")).json()
    assert add in str(kpis)
    # a second correction builds on the first one
    r = t.client.post(_url(t, row=0), json={"topics_remove": [add]}, headers=t.h("acme"))
    assert r.status_code == 201 and add not in [x["id"] for x in r.json()["corrected"]["topics"]]


def test_validation_errors_are_422_with_codes(team: Team) -> None:
    t = team
    cases: list[tuple[dict[str, Any], str | None]] = [
        ({}, None),  # nothing changes
        ({"sentiment": "happy"}, None),
        ({"topics_add": [{"id": "not_a_topic_of_ours"}]}, "correction.unknown_topic"),
        ({"touchpoints_add": ["nowhere_land"]}, "correction.unknown_touchpoint"),
        ({"topics_remove": ["not_on_this_row_x"]}, "correction.topic_not_on_row"),
        ({"topics_add": [{"id": "Bad Id"}]}, None),
        ({"sentiment": "positive", "note": "x" * 501}, None),
        ({"sentiment": "positive", "extra": 1}, None),
        ({"topics_add": [{"id": f"t{i}"} for i in range(33)]}, None),
    ]
    for body, code in cases:
        r = t.client.post(_url(t, row=1), json=body, headers=t.h("acme"))
        assert r.status_code == 422, (body, r.text)
        err = r.json()["error"]
        assert err["code"] == "InvalidInput"
        if code:
            assert err["details"][0]["code"] == code, err
    assert t.client.post(_url(t, row=999), json={"sentiment": "positive"}, headers=t.h("acme")).status_code == 404
    assert t.client.post(_url(t, row=-1), json={"sentiment": "positive"}, headers=t.h("acme")).status_code == 422
    # row 10 has an empty comment: an error row has no prediction to correct
    r = t.client.post(_url(t, row=10), json={"sentiment": "positive"}, headers=t.h("acme"))
    assert r.status_code == 422 and r.json()["error"]["details"][0]["code"] == "correction.error_row"
    assert t.client.get(_url(t, row=1), headers=t.h("acme")).json()["corrections"] == []


def test_scopes_and_tenants(team: Team) -> None:
    t = team
    r = t.client.post(_url(t, row=2), json={"sentiment": "negative"}, headers=t.h("acme-reader"))
    assert r.status_code == 403
    made = t.client.post(_url(t, row=2), json={"sentiment": "negative"}, headers=t.h("acme"))
    assert made.status_code == 201
    cid = made.json()["corrections"][0]["id"]
    # beta can neither see nor write acme's corrections
    for method, url, kw in (
        ("GET", _url(t, row=None), {}), ("GET", _url(t, row=2), {}),
        ("POST", _url(t, row=2), {"json": {"sentiment": "positive"}}), ("DELETE", f"{_url(t, row=2)}/{cid}", {}),
    ):
        r = t.client.request(method, url, headers=t.h("beta"), **kw)
        assert r.status_code == 404 and r.json()["error"]["message"] == f"no batch {t.batch['acme']!r}", r.text
    # and beta's own batch does not show acme's correction (nor can acme revert it through beta's batch)
    assert t.client.get(_url(t, "beta", row=None), headers=t.h("beta")).json()["rows"] == []
    assert t.client.delete(f"{_url(t, 'beta', row=2)}/{cid}", headers=t.h("beta")).status_code == 404
    assert t.client.get(_url(t, row=2), headers=t.h("acme")).json()["corrections"][0]["active"] is True
