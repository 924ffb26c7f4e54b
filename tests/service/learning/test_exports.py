"""Exports for people show the prediction and, beside it, the analysts' corrected value (issue 15)."""
from __future__ import annotations

import csv
import io
import json

from tests.service.learning.conftest import Team


def _csv(t: Team, lang: str) -> list[dict[str, str]]:
    r = t.client.get(f"/v1/batches/{t.batch['acme']}/export", params={"format": "csv", "lang": lang,
                                                                       "delimiter": "comma", "encoding": "utf-8"},
                     headers=t.h("acme"))
    assert r.status_code == 200, r.text
    return list(csv.DictReader(io.StringIO(r.content.decode("utf-8-sig"))))


def test_export_has_predicted_and_corrected_columns(team: Team) -> None:
    t = team
    rows = _csv(t, "en")
    assert "Corrected sentiment" not in rows[0]  # nobody corrected anything yet: no empty columns
    predicted = rows[7]["Sentiment (id)"]
    new = "positive" if predicted != "positive" else "negative"
    r = t.client.post(f"/v1/batches/{t.batch['acme']}/rows/7/corrections", json={"sentiment": new, "detractor": False},
                      headers=t.h("acme"))
    assert r.status_code == 201, r.text
    rows = _csv(t, "en")
    fixed = rows[7]
    assert fixed["Sentiment (id)"] == predicted  # the prediction stays
    assert (fixed["Corrected"], fixed["Corrected sentiment (id)"], fixed["Detractor (corrected)"]) == ("yes", new, "no")
    assert fixed["Corrected by"] == "Giulia" and fixed["Corrected topics (id)"] == fixed["Topics (id)"]
    assert rows[6]["Corrected"] == "" and rows[6]["Corrected sentiment (id)"] == ""
    italian = _csv(t, "it")[7]
    assert italian["Corretto"] == "sì" and italian["Sentiment corretto (id)"] == new
    # reverted: the columns go away again
    cid = r.json()["corrections"][0]["id"]
    assert t.client.delete(f"/v1/batches/{t.batch['acme']}/rows/7/corrections/{cid}", headers=t.h("acme")).status_code == 200
    assert "Corrected" not in _csv(t, "en")[7]


def test_jsonl_results_carry_the_correction(team: Team) -> None:
    t = team
    r = t.client.post(f"/v1/batches/{t.batch['acme']}/rows/8/corrections", json={"sentiment": "mixed"},
                      headers=t.h("acme"))
    assert r.status_code == 201, r.text
    lines = t.client.get(f"/v1/batches/{t.batch['acme']}/results", headers=t.h("acme")).text.splitlines()
    items = {i["row"]: i for i in map(json.loads, lines)}
    assert items[8]["correction"]["sentiment"] == "mixed" and items[8]["correction"]["by"] == ["Giulia"]
    assert items[8]["sentiment"]["label"] == r.json()["original"]["sentiment"]  # the prediction stays
    assert "correction" not in items[9]
