"""The tenant's taxonomy through the API: edits as versions with diffs, rollback, YAML round trip, another tenant
unaffected, and the analyzer (``/v1/analyze`` and batches) scoring with the active version."""
from __future__ import annotations

from typing import Any

import yaml

from tests.service.api.helpers import wait_batch
from tests.service.auth.conftest import upload
from tests.service.learning.conftest import Team


def _patch(t: Team, edits: list[dict[str, Any]], who: str = "acme", **kw: Any) -> Any:
    return t.client.patch("/v1/taxonomy", json={"edits": edits, **kw}, headers=t.h(who))


def test_edits_versions_diff_and_rollback(team: Team) -> None:
    t = team
    start = t.client.get("/v1/taxonomy", headers=t.h("acme")).json()
    assert start["stored"] is False and start["number"] is None
    configured = start["version"]
    topic_ids = [e["id"] for e in start["topics"]]
    a, b = topic_ids[0], topic_ids[1]

    r = _patch(t, [{"op": "add", "section": "topics", "entry": {
        "id": "parking", "names": {"it": "Parcheggio", "en": "Parking"},
        "descriptions": {"it": "Posti auto"}, "examples": ["Non c'era posto per l'auto"]}}],
        message="parking comes up a lot", expect_version=0)
    assert r.status_code == 200, r.text
    v1 = r.json()
    assert v1["version"] == 1 and v1["author"] == "Giulia" and v1["label"] == f"{configured}+v1"
    assert [c["kind"] for c in v1["changes"]] == ["added"] and v1["changes"][0]["id"] == "parking"

    r = _patch(t, [
        {"op": "rename", "section": "topics", "id": "parking", "names": {"en": "Car park"}},
        {"op": "update", "section": "topics", "id": "parking", "patch": {"examples": ["Parcheggio pieno", "x"]}},
        {"op": "merge", "section": "topics", "id": b, "into": a},
    ], expect_version=1)
    assert r.status_code == 200, r.text
    v2 = r.json()
    texts = " | ".join(c["text"] for c in v2["changes"])
    assert "names.en 'Parking' -> 'Car park'" in texts and f"removed topic {b}" in texts, texts
    assert any(c["field"] == "examples" and c["id"] == a for c in v2["changes"])
    # an edit made on an older version is refused rather than overwriting
    stale = _patch(t, [{"op": "retire", "section": "topics", "id": "parking"}], expect_version=1)
    assert stale.status_code == 422 and stale.json()["error"]["details"][0]["code"] == "taxonomy.stale"

    now = t.client.get("/v1/taxonomy", headers=t.h("acme")).json()
    assert now["number"] == 2 and b not in [e["id"] for e in now["topics"]]
    parking = next(e for e in now["topics"] if e["id"] == "parking")
    assert parking["names"] == {"it": "Parcheggio", "en": "Car park"} and parking["examples"] == ["Parcheggio pieno", "x"]

    diff = t.client.get("/v1/taxonomy/diff", params={"from": 1, "to": 2}, headers=t.h("acme")).json()
    assert diff["changes"] == v2["changes"]

    r = t.client.post("/v1/taxonomy/versions/1/rollback", headers=t.h("acme"))
    assert r.status_code == 201, r.text
    v3 = r.json()
    assert v3["version"] == 3 and v3["restored_from"] == 1
    assert t.client.get("/v1/taxonomy/diff", params={"from": 1, "to": 3}, headers=t.h("acme")).json()["changes"] == []
    back = t.client.get("/v1/taxonomy", headers=t.h("acme")).json()
    assert b in [e["id"] for e in back["topics"]]
    history = t.client.get("/v1/taxonomy/versions", headers=t.h("acme-reader")).json()["versions"]
    assert [v["version"] for v in history] == [3, 2, 1]
    assert t.client.get("/v1/taxonomy/versions/2", headers=t.h("acme")).json()["number"] == 2

    # another tenant: still the configured taxonomy, no versions, and acme's versions are not found
    beta = t.client.get("/v1/taxonomy", headers=t.h("beta")).json()
    assert beta["stored"] is False and "parking" not in [e["id"] for e in beta["topics"]]
    assert t.client.get("/v1/taxonomy/versions", headers=t.h("beta")).json()["versions"] == []
    assert t.client.get("/v1/taxonomy/versions/1", headers=t.h("beta")).status_code == 404
    assert t.client.post("/v1/taxonomy/versions/1/rollback", headers=t.h("beta")).status_code == 404


def test_bad_edits_are_refused_with_codes(team: Team) -> None:
    t = team
    cases = [
        ([{"op": "retire", "section": "topics", "id": "no_such_topic"}], "taxonomy.no_entry"),
        ([{"op": "add", "section": "topics", "entry": {"id": "other", "names": {"en": "x"}}}], "taxonomy.duplicate"),
        ([{"op": "merge", "section": "topics", "id": "other", "into": "other"}], "taxonomy.merge_self"),
        ([{"op": "retire", "section": "touchpoints", "id": t_id} for t_id in ["no_such_a"]], "taxonomy.no_entry"),
        ([{"op": "add", "section": "topics", "entry": {"id": "Bad Id", "names": {"en": "x"}}}], None),
        ([{"op": "explode", "section": "topics", "id": "other"}], None),
    ]
    for edits, code in cases:
        r = _patch(t, edits)
        assert r.status_code == 422, (edits, r.text)
        if code:
            assert r.json()["error"]["details"][0]["code"] == code, r.text
    many = [f"esempio {i}" for i in range(101)]
    r = _patch(t, [{"op": "update", "section": "topics", "id": "other", "patch": {"examples": many}}])
    assert r.status_code == 413 and r.json()["error"]["details"][0]["code"] == "taxonomy.too_many_examples"
    assert t.client.put("/v1/taxonomy", json={"yaml": "topics: [unclosed"}, headers=t.h("acme")).status_code == 422
    assert t.client.put("/v1/taxonomy", json={}, headers=t.h("acme")).status_code == 422
    r = _patch(t, [{"op": "retire", "section": "topics", "id": "other"}], who="acme-reader")
    assert r.status_code == 403


def test_yaml_round_trip(team: Team) -> None:
    t = team
    exported = t.client.get("/v1/taxonomy", params={"format": "yaml"}, headers=t.h("beta"))
    assert exported.status_code == 200 and exported.headers["content-type"].startswith("application/yaml")
    data = yaml.safe_load(exported.text)
    data["touchpoints"].append({"id": "kiosk", "names": {"it": "Totem", "en": "Kiosk"}, "channels": ["totem"]})
    r = t.client.put("/v1/taxonomy", json={"yaml": yaml.safe_dump(data, allow_unicode=True)}, headers=t.h("beta"))
    assert r.status_code == 200, r.text
    assert [(c["kind"], c["id"]) for c in r.json()["changes"]] == [("added", "kiosk")]
    again = yaml.safe_load(t.client.get("/v1/taxonomy", params={"format": "yaml"}, headers=t.h("beta")).text)
    assert again["topics"] == data["topics"] and again["touchpoints"] == data["touchpoints"]
    # the same file again changes nothing: refused, no empty version
    same = t.client.put("/v1/taxonomy", json={"yaml": yaml.safe_dump(again)}, headers=t.h("beta"))
    assert same.status_code == 422 and same.json()["error"]["details"][0]["code"] == "taxonomy.no_change"


def test_the_analyzer_scores_with_the_active_version(team: Team) -> None:
    t = team
    text = "Il parcheggio del centro commerciale era sempre pieno"
    r = t.client.put("/v1/taxonomy", headers=t.h("acme"), json={"taxonomy": {"version": "acme-cx", "topics": [
        {"id": "parcheggio", "names": {"it": "Parcheggio", "en": "Parking"}, "examples": [text]},
        {"id": "casse", "names": {"it": "Casse", "en": "Checkout"}, "examples": ["Coda lunghissima alle casse"]},
    ]}})
    assert r.status_code == 200, r.text
    label = r.json()["label"]
    assert label.startswith("acme-cx+v")
    doc = {"documents": [{"id": "1", "text": text}]}
    acme = t.client.post("/v1/analyze", json=doc, headers=t.h("acme")).json()
    assert acme["taxonomy_version"] == label
    found = [x["id"] for x in acme["documents"][0]["topics"]]
    assert set(found) <= {"parcheggio", "casse"} and "parcheggio" in found, acme["documents"][0]["topics"]
    beta = t.client.post("/v1/analyze", json=doc, headers=t.h("beta")).json()
    assert beta["taxonomy_version"] != label and "parcheggio" not in [x["id"] for x in beta["documents"][0]["topics"]]
    # a batch records the version it was scored with and uses only its topics
    bid = upload(t.client, t.keys["acme"], "after-edit.csv")
    status = wait_batch(t.client, bid, headers=t.h("acme"))
    assert status["status"] == "done" and status["taxonomy_version"] == label
    rows = t.client.get(f"/v1/batches/{bid}/rows", params={"limit": 50}, headers=t.h("acme")).json()["rows"]
    assert {x["id"] for r in rows for x in r["topics"]} <= {"parcheggio", "casse"}
    # corrections on that batch are validated against its version
    ok = t.client.post(f"/v1/batches/{bid}/rows/0/corrections", json={"topics_add": [{"id": "casse"}]},
                       headers=t.h("acme"))
    assert ok.status_code == 201, ok.text
    bad = t.client.post(f"/v1/batches/{bid}/rows/0/corrections", json={"topics_add": [{"id": "other"}]},
                        headers=t.h("acme"))
    assert bad.status_code == 422 and bad.json()["error"]["details"][0]["code"] == "correction.unknown_topic"


def test_a_batch_is_rescored_with_a_newer_version(team: Team) -> None:
    t = team
    bid = t.batch["beta"]
    before = t.client.get(f"/v1/batches/{bid}", headers=t.h("beta")).json()["taxonomy_version"]
    rows_before = t.client.get(f"/v1/batches/{bid}/rows", params={"limit": 50}, headers=t.h("beta")).json()["rows"]
    corrected = t.client.post(f"/v1/batches/{bid}/rows/3/corrections", json={"detractor": True}, headers=t.h("beta"))
    assert corrected.status_code == 201
    assert t.client.get(f"/v1/batches/{bid}/rescore", headers=t.h("beta")).json()["state"] == "none"
    r = t.client.put("/v1/taxonomy", headers=t.h("beta"), json={"taxonomy": {"version": "beta-2", "topics": [
        {"id": "velocita", "names": {"it": "Velocità", "en": "Speed"}, "examples": ["Consegna velocissima!"]},
        {"id": "cortesia", "names": {"it": "Cortesia", "en": "Kindness"}, "examples": ["Staff very kind"]}]}})
    assert r.status_code == 200, r.text
    label = r.json()["label"]
    started = t.client.post(f"/v1/batches/{bid}/rescore", headers=t.h("beta"))
    assert started.status_code == 202 and started.json()["taxonomy_version"] == label, started.text
    t.client.app.state.rescorer.wait(bid, 60)  # type: ignore[attr-defined]
    state = t.client.get(f"/v1/batches/{bid}/rescore", headers=t.h("beta")).json()
    assert state["state"] == "done" and state["done"] == state["total"] == 11  # 12 rows, one empty
    after = t.client.get(f"/v1/batches/{bid}", headers=t.h("beta")).json()
    assert after["taxonomy_version"] == label != before
    rows_after = t.client.get(f"/v1/batches/{bid}/rows", params={"limit": 50}, headers=t.h("beta")).json()["rows"]
    assert {x["id"] for r in rows_after for x in r["topics"]} <= {"velocita", "cortesia"}
    assert [(r["row"], r["nps"], r["text"]) for r in rows_after] == [(r["row"], r["nps"], r["text"]) for r in rows_before]
    # the correction stays and still counts
    assert t.client.get(f"/v1/batches/{bid}/rows/3/corrections", headers=t.h("beta")).json()["corrected"]["detractor"]
    again = t.client.post(f"/v1/batches/{bid}/rescore", headers=t.h("beta"))
    assert again.status_code == 422 and again.json()["error"]["details"][0]["code"] == "rescore.same_version"
    assert t.client.post(f"/v1/batches/{bid}/rescore", headers=t.h("acme")).status_code == 404
