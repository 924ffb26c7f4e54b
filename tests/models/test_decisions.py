"""Decision rules a bundle stores after training: when a document is mixed, when a topic is reported."""
from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from voce.models.analyzer import Analyzer
from voce.models.bundle import VoceBundle
from voce.models.labels import MixedRule
from voce.models.types import DocumentInput

POS, NEU, NEG, MIX = (np.eye(4)[i] * 0.7 + 0.075 for i in range(4))


def test_the_default_rule_is_the_one_before_calibration() -> None:
    rule = MixedRule()
    assert rule.label(MIX) == "mixed"
    assert rule.label(POS) == "positive"
    # a clearly positive and a clearly negative sentence make a positive document mixed ...
    assert rule.label(POS, [POS, NEG]) == "mixed"
    # ... but not a single sentence, nor a neutral document
    assert rule.label(POS, [POS]) == "positive"
    assert rule.label(NEU, [POS, NEG]) == "neutral"
    assert MixedRule.from_config(None) == rule
    assert MixedRule.from_config({}) == rule


def test_a_minor_caveat_does_not_make_a_positive_review_mixed() -> None:
    doc = np.array([0.9, 0.03, 0.05, 0.02])  # the whole review reads positive; one sentence complains
    rule = MixedRule(minor_share=0.15)
    assert rule.label(doc, [POS, POS, NEG]) == "positive"
    balanced = np.array([0.45, 0.05, 0.4, 0.1])
    assert rule.label(balanced, [POS, NEG]) == "mixed"
    assert MixedRule(sentence_threshold=None).label(POS, [POS, NEG]) == "positive"


def test_the_mixed_bias_moves_only_the_mixed_class() -> None:
    doc = np.array([0.35, 0.05, 0.2, 0.4])
    assert MixedRule().label(doc) == "mixed"
    assert MixedRule(bias=-1.0).label(doc) == "positive"
    assert MixedRule(bias=1.0).label(np.array([0.5, 0.1, 0.1, 0.3])) == "mixed"
    assert MixedRule.from_config(MixedRule(bias=-1.5, sentence_threshold=None).config()) == MixedRule(
        bias=-1.5, sentence_threshold=None
    )


def test_decisions_survive_save_and_load_and_old_bundles_have_none(tiny_bundle_dir: Path, tmp_path: Path) -> None:
    old = VoceBundle.load(tiny_bundle_dir)
    assert old.decisions == {}
    decisions = {"mixed": MixedRule(bias=-0.5, minor_share=0.2).config(), "topics": {"report_thresholds": {"staff": 0.8}}}
    path = replace(old, decisions=decisions).save(tmp_path / "b")
    loaded = VoceBundle.load(path)
    assert loaded.decisions == decisions
    assert "decisions" not in loaded.manifest_extra
    # a manifest edited by the calibration script (tensors untouched) still loads
    copy = tmp_path / "c"
    shutil.copytree(tiny_bundle_dir, copy)
    from voce.training.calibrate_decisions import write_decisions

    write_decisions(copy, decisions)
    assert VoceBundle.load(copy).decisions == decisions


def _analyzer(fake_analyzer, decisions) -> Analyzer:  # type: ignore[no-untyped-def]
    bundle = replace(fake_analyzer.bundle, decisions=decisions)
    return Analyzer(fake_analyzer.encoder, bundle, fake_analyzer.language_detector)


def test_the_analyzer_reads_the_bundles_mixed_rule(fake_analyzer) -> None:  # type: ignore[no-untyped-def]
    analyzer = _analyzer(fake_analyzer, {"mixed": {"bias": -0.5, "sentence_threshold": 0.8, "minor_share": 0.1}})
    assert analyzer.mixed_rule == MixedRule(bias=-0.5, sentence_threshold=0.8, minor_share=0.1)
    from voce.models.analyzer import AnalyzerConfig

    # an explicit config value still wins over the bundle's sentence threshold
    assert analyzer.with_config(AnalyzerConfig(mixed_sentence_threshold=0.65)).mixed_rule.sentence_threshold == 0.65
    assert fake_analyzer.mixed_rule == MixedRule()


@pytest.mark.parametrize("inside", [True, False])
def test_a_learned_topic_needs_a_strong_signal_only_outside_the_heads_domains(fake_analyzer, inside: bool) -> None:  # type: ignore[no-untyped-def]
    doc = DocumentInput(id="d", text="Personale scortese e maleducato alla reception.", language="it")
    (before,), _ = fake_analyzer.analyze([doc])
    learned = [t for t in before.topics if t.source == "learned"]
    assert learned, "the tiny bundle's staff head should fire on its own training sentence"
    tid = learned[0].id
    centroid = np.zeros((1, fake_analyzer.bundle.dim), np.float32)
    centroid[0, 0] = 1.0
    rule = {"report_thresholds": {tid: 0.99999}, "domain_centroids": centroid.tolist(),
            "domain_min_similarity": -2.0 if inside else 2.0}  # fmt: skip
    (after,), _ = _analyzer(fake_analyzer, {"topics": rule}).analyze([doc])
    assert (tid in [t.id for t in after.topics]) is inside
    # every other topic is untouched
    assert [t.id for t in after.topics if t.id != tid] == [t.id for t in before.topics if t.id != tid]


def _always(p: float):  # type: ignore[no-untyped-def]
    return lambda centred, section: np.full((len(centred), len(section.ids)), p, np.float32)


def test_zero_shot_topics_always_need_their_report_threshold(fake_analyzer, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    docs = [DocumentInput(id="d", text="The app crashes when I log in.", language="en")]
    analyzer = _analyzer(fake_analyzer, {"topics": {"report_thresholds": {"account_access": 0.7, "security_privacy": 0.5},
                                                    "domain_min_similarity": -2.0}})  # fmt: skip
    plain = _analyzer(fake_analyzer, {})
    for a in (analyzer, plain):  # every zero-shot entry at 0.6: above the heads' 0.5
        monkeypatch.setattr(a.zero_shot, "probability", _always(0.6))
    (before,), _ = plain.analyze(docs)
    (after,), _ = analyzer.analyze(docs)
    zero_before = {t.id for t in before.topics if t.source == "zero_shot"}
    assert {"account_access", "security_privacy"} <= zero_before
    zero_after = {t.id for t in after.topics if t.source == "zero_shot"}
    assert zero_after == zero_before - {"account_access"}  # 0.6 < 0.7; 0.6 >= 0.5 stays
