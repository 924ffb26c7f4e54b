"""The annotated real-text corpus: labels only in the repository, consistent, reproducible from the passes."""
from __future__ import annotations

import json

import pytest

from voce.data.realcx import (
    JOURNEYS,
    NONE,
    TOUCHPOINTS,
    agreement,
    journey_path,
    labels_dir,
    load_realcx,
    merge_passes,
    read_jsonl,
    split_realcx,
)
from voce.models.taxonomy import default_taxonomy, load_taxonomy

FOLDER = labels_dir()


def test_no_text_is_committed() -> None:
    for path in sorted(FOLDER.rglob("*.jsonl")):
        for row in read_jsonl(path):
            assert "text" not in row and "note" not in row, f"{path.name} carries text"


def test_gold_labels_are_the_merge_of_the_committed_passes() -> None:
    assert merge_passes() == read_jsonl(FOLDER / "labels.jsonl")


def test_labels_follow_the_guideline_rules() -> None:
    rows = read_jsonl(FOLDER / "labels.jsonl")
    stages = {name: set(load_taxonomy(journey_path(name)).touchpoints.ids) for name in JOURNEYS}
    topics = set(default_taxonomy().topics.ids)
    assert set(TOUCHPOINTS) == set(default_taxonomy().touchpoints.ids)
    assert len({r["uid"] for r in rows}) == len(rows) >= 3000
    assert sum(r["lang"] == "it" for r in rows) >= len(rows) / 2
    for r in rows:
        assert set(r["touchpoints"]) <= set(TOUCHPOINTS)
        assert (r["primary"] == NONE) == (not r["touchpoints"])
        assert r["primary"] == NONE or r["primary"] in r["touchpoints"]
        assert set(r["topics"]) <= topics and (r["topics"] or r["primary"] == NONE)
        if r["journey"]:
            assert r["stage"] == NONE or r["stage"] in stages[r["journey"]]
        else:
            assert r["stage"] == ""


def test_agreement_report_matches_the_passes() -> None:
    a = agreement()
    assert a["double_labelled"] >= 300
    text = (FOLDER / "AGREEMENT.md").read_text("utf-8")
    assert f"| primary touchpoint | {a['primary_touchpoint']['n']} | {a['primary_touchpoint']['agreement']} |" in text


def test_the_sample_is_reproducible_from_the_shared_data() -> None:
    from voce.data.sample_realcx import draw_sample

    try:
        drawn = draw_sample()
    except FileNotFoundError:
        pytest.skip("the shared data folder is not here")
    committed = read_jsonl(FOLDER / "sample.jsonl")
    assert [r["uid"] for r in drawn] == [r["uid"] for r in committed]
    assert [r["stratum"] for r in drawn] == [r["stratum"] for r in committed]


def test_texts_are_joined_and_the_split_is_by_group() -> None:
    try:
        rows = load_realcx()
    except FileNotFoundError:
        pytest.skip("the shared data folder is not here")
    assert all(r.text.strip() for r in rows)
    train, dev = split_realcx(rows)
    assert 0.15 < len(dev) / len(rows) < 0.25
    assert not {(r.source, r.group) for r in train} & {(r.source, r.group) for r in dev}
    # a public-dataset sentence in the public dev split is in this dev split too (same rule and seed)
    from voce.data.datasets import load_absita
    from voce.data.splits import split_examples

    _, public_dev = split_examples(load_absita())
    ours = {r.uid for r in dev if r.source == "absita2018"}
    assert ours and ours <= {e.uid for e in public_dev}
    json.dumps([r.primary for r in dev])  # plain values
