"""Taxonomy versions without the API: edits, diffs, and the analyzer a tenant's requests share."""
from __future__ import annotations

from pathlib import Path

import pytest

from voce.models.taxonomy import default_taxonomy
from voce.service.db import open_database
from voce.service.learning.taxonomies import (
    AddEntry,
    MergeEntry,
    RenameEntry,
    RetireEntry,
    TaxonomyEditError,
    TaxonomyStore,
    apply_edits,
    diff,
    from_yaml,
    to_yaml,
)


def test_edits_and_their_diff() -> None:
    base = default_taxonomy()
    a, b = base.topics.ids[:2]
    edited = apply_edits(base, [
        AddEntry(op="add", section="topics", entry={"id": "parking", "names": {"en": "Parking"}}),
        RenameEntry(op="rename", section="topics", id="parking", new_id="car_park", names={"it": "Parcheggio"}),
        MergeEntry(op="merge", section="topics", id=b, into=a, examples=["un esempio nuovo"]),
        RetireEntry(op="retire", section="touchpoints", id=base.touchpoints.ids[0]),
    ])
    assert "car_park" in edited.topics.ids and b not in edited.topics.ids
    merged = edited.topics.get(a)
    assert merged is not None and "un esempio nuovo" in merged.examples
    assert set(base.topics.get(b).examples) <= set(merged.examples)  # type: ignore[union-attr]
    kinds = {(c.kind, c.id) for c in diff(base, edited)}
    assert {("added", "car_park"), ("removed", b), ("changed", a), ("removed", base.touchpoints.ids[0])} <= kinds
    assert diff(edited, edited) == []
    assert from_yaml(to_yaml(edited), base=base) == edited  # YAML round trip
    with pytest.raises(TaxonomyEditError):
        apply_edits(base, [RenameEntry(op="rename", section="topics", id=a, new_id=b)])


def test_a_tenant_version_is_one_analyzer_object(fake_analyzer, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    store = TaxonomyStore(open_database(f"sqlite:///{tmp_path / 'v.db'}"))
    assert store.analyzer_for(fake_analyzer, "acme") is fake_analyzer  # nothing saved: the configured one
    base = fake_analyzer.taxonomy
    v1 = apply_edits(base, [AddEntry(op="add", section="topics", entry={"id": "parking", "names": {"en": "Parking"}})])
    store.save("acme", v1, author="t", message=None, base=base)
    first = store.analyzer_for(fake_analyzer, "acme")
    assert first is not fake_analyzer and "parking" in first.taxonomy.topics.ids
    assert store.analyzer_for(fake_analyzer, "acme") is first  # the micro-batcher joins requests of one analyzer
    assert store.analyzer_for(fake_analyzer, "beta") is fake_analyzer
    store.save("acme", base, author="t", message=None, base=base)
    second = store.analyzer_for(fake_analyzer, "acme")
    assert second is not first and "parking" not in second.taxonomy.topics.ids
