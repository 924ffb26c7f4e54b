from __future__ import annotations

from pathlib import Path

import pytest

from voce.models.taxonomy import TaxonomyError, default_taxonomy, load_taxonomy, parse_taxonomy

REQUIRED_TOPICS = {
    "staff", "customer_service", "price_value", "product_quality", "product_range", "cleanliness", "comfort",
    "amenities", "connectivity", "location", "ambience", "waiting_time", "delays_cancellations", "delivery",
    "ordering_booking", "billing_payment", "digital_experience", "communication", "personalization", "other",
}
REQUIRED_TOUCHPOINTS = {
    "product_service", "website", "mobile_app", "store", "store_staff", "call_center", "chat_chatbot", "email",
    "social_media", "advertising", "brochure", "trade_fair", "in_store_promoter", "delivery", "packaging", "billing",
}


def test_default_taxonomy_has_required_entries_in_both_languages() -> None:
    t = default_taxonomy()
    assert set(t.topics.ids) >= REQUIRED_TOPICS
    assert set(t.touchpoints.ids) >= REQUIRED_TOUCHPOINTS
    for e in t.topics.entries + t.touchpoints.entries:
        assert e.names.get("it") and e.names.get("en"), e.id
        assert e.descriptions.get("it") and e.descriptions.get("en"), e.id
    assert t.channel_map()["phone"] == "call_center"
    assert t.channel_map()["app"] == "mobile_app"


def test_partial_custom_taxonomy_falls_back_to_default(tmp_path: Path) -> None:
    f = tmp_path / "t.yaml"
    f.write_text(
        'version: "7"\ntouchpoints:\n  - id: kiosk\n    names: {it: "Totem", en: "Kiosk"}\n'
        '    descriptions: {en: "Self-service kiosk in the store"}\n    examples: ["il totem non accetta la carta"]\n',
        "utf-8",
    )
    t = load_taxonomy(f)
    assert t.version == "7" and t.touchpoints.ids == ["kiosk"]
    assert t.topics.ids == default_taxonomy().topics.ids


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"version": "1"}, "topics' and/or 'touchpoints"),
        ({"version": "1", "topics": [{"id": "Bad Id", "names": {"en": "x"}}]}, "snake_case"),
        ({"version": "1", "topics": [{"id": "a", "names": {"fr": "x"}}]}, "'it' or 'en'"),
        ({"version": "1", "topics": [{"id": "a", "names": {"en": "x"}}, {"id": "a", "names": {"en": "y"}}]}, "duplicate"),
        ({"version": "1", "topics": [{"id": "a", "names": {"en": "x"}, "colour": "red"}]}, "colour"),
        ({"topics": [{"id": "a", "names": {"en": "x"}}]}, "version"),
        ({"version": "1", "topics": []}, "at least one"),
    ],
)
def test_invalid_taxonomies_say_why(data: dict, message: str) -> None:
    with pytest.raises(TaxonomyError, match=message):
        parse_taxonomy(data)


def test_unreadable_and_invalid_yaml_files(tmp_path: Path) -> None:
    with pytest.raises(TaxonomyError, match="cannot read"):
        load_taxonomy(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: [1\n", "utf-8")
    with pytest.raises(TaxonomyError, match="not valid YAML"):
        load_taxonomy(bad)
