"""``POST /v1/analyze`` (and ``/analyze``) through the real app: shapes, invariants, per-document errors, limits."""
from __future__ import annotations

import pytest
from fastapi.testclient import TestClient


def test_analyze_shape_and_invariants(client: TestClient) -> None:
    body = {
        "documents": [
            {"id": "a", "text": "Il personale era scortese. La camera era sporca!", "language": "it"},
            {"id": "b", "text": "Great value for money.", "channel": "web"},
            {"id": "c", "kind": "chat", "turns": [
                {"speaker": "Cliente", "text": "Ho già chiamato tre volte, il pacco non arriva"},
                {"speaker": "Operatore", "text": "La trasferisco a un collega"},
            ]},
        ]
    }
    for path in ("/v1/analyze", "/analyze"):
        r = client.post(path, json=body)
        assert r.status_code == 200, r.text
        out = r.json()
        assert out["model_version"] == "tiny-test" and out["errors"] == []
        docs = {d["id"]: d for d in out["documents"]}
        assert set(docs) == {"a", "b", "c"}
        for d in docs.values():
            s = d["sentiment"]["scores"]
            assert abs(s["positive"] + s["neutral"] + s["negative"] - 1) < 1e-5
            assert 0 <= d["detractor"]["probability"] <= 1
            text = d.get("text") or next(x["text"] for x in body["documents"] if x["id"] == d["id"])
            for sent in d["sentences"]:
                assert text[sent["offset"] : sent["offset"] + sent["length"]] == sent["text"]
            for item in d["topics"] + d["touchpoints"]:
                assert item["evidence"] and 0 <= item["score"] <= 1
                for ev in item["evidence"]:
                    assert ev["offset"] >= 0 and ev["offset"] + ev["length"] <= len(text)
        assert docs["a"]["language"] == "it"
        chat = docs["c"]["chat"]
        assert [t["role"] for t in chat["turns"]] == ["customer", "agent"]
        assert {e["kind"] for e in chat["effort_signals"]} >= {"repeat_contact", "transfer"}


def test_per_document_errors_do_not_fail_the_request(client: TestClient) -> None:
    r = client.post("/v1/analyze", json={"documents": [
        {"id": "ok", "text": "Tutto bene"}, {"id": "empty", "text": "   "}, {"id": "long", "text": "x " * 200},
    ]})
    assert r.status_code == 200
    errors = {e["id"]: e["error"]["code"] for e in r.json()["errors"]}
    assert errors == {"empty": "EmptyText", "long": "TextTooLong"}
    assert [d["id"] for d in r.json()["documents"]] == ["ok"]


@pytest.mark.parametrize(
    ("payload", "status", "code"),
    [
        ({"documents": []}, 422, "InvalidInput"),
        ({"documents": [{"id": str(i), "text": "x"} for i in range(6)]}, 413, "PayloadTooLarge"),
        ({"documents": [{"id": "1", "text": 5}]}, 422, "InvalidInput"),
        ({"documents": [{"text": "no id"}]}, 422, "InvalidInput"),
        ({"documents": [{"id": "1", "text": "x", "kind": "letter"}]}, 422, "InvalidInput"),
        ({"documents": [{"id": "1", "text": "x"}, {"id": "1", "text": "y"}]}, 422, "InvalidInput"),
        ({"documents": [{"id": "1", "text": "x"}], "taxonomy": {"version": "1"}}, 422, "InvalidInput"),
        ({"documents": [{"id": "1", "text": "x"}], "extra": 1}, 422, "InvalidInput"),
        ("not json", 422, "InvalidInput"),
    ],
)
def test_bad_input_gets_a_clear_4xx(client: TestClient, payload: object, status: int, code: str) -> None:
    if isinstance(payload, str):
        r = client.post("/v1/analyze", content=payload, headers={"content-type": "application/json"})
    else:
        r = client.post("/v1/analyze", json=payload)
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert err["code"] == code and err["message"]


def test_body_over_the_byte_limit_is_413(client: TestClient) -> None:
    r = client.post("/v1/analyze", content=b"{" + b" " * 30_000 + b"}", headers={"content-type": "application/json"})
    assert r.status_code == 413 and r.json()["error"]["code"] == "PayloadTooLarge"


def test_inline_custom_taxonomy_replaces_topics(client: TestClient) -> None:
    tax = {"version": "custom-1", "topics": [
        {"id": "parcel", "names": {"it": "Pacco", "en": "Parcel"}, "examples": ["il pacco non arriva", "parcel lost"]},
        {"id": "weather", "names": {"it": "Meteo", "en": "Weather"}, "examples": ["piove sempre", "sunny day"]},
    ]}
    r = client.post("/v1/analyze", json={"documents": [{"id": "1", "text": "il pacco non arriva mai"}], "taxonomy": tax})
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["taxonomy_version"] == "custom-1"
    assert {t["id"] for t in out["documents"][0]["topics"]} <= {"parcel", "weather"}
    assert all(t["source"] == "zero_shot" for t in out["documents"][0]["topics"])
