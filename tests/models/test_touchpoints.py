"""The touchpoint decision: text first, the channel only settles what the text leaves open."""
from __future__ import annotations

import numpy as np
import pytest

from voce.models.segment import Span
from voce.models.taxonomy import TaxonomyEntry, TaxonomySection
from voce.models.touchpoints import DocUnits, SectionScores, TouchpointLinker, fit_softmax_rows

IDS = ["product_service", "call_center", "mobile_app", "trade_fair"]


def _section() -> TaxonomySection:
    return TaxonomySection(entries=[TaxonomyEntry(id=i, names={"en": i}) for i in IDS])


def _scores(presence: list[float], primary: list[float], learned: tuple[bool, ...] = (True, True, True, False)) -> SectionScores:
    """One document, one window, one sentence (both units score the same)."""
    p = np.asarray([presence, presence], np.float32)
    q = np.asarray([primary, primary], np.float32)
    return SectionScores(
        section=_section(), presence=p, thresholds=np.full(len(IDS), 0.5, np.float32), learned=list(learned),
        primary=q, primary_labels=("product_service", "call_center", "mobile_app", "none"),
    )


DOC = DocUnits(windows=[0], weights=np.ones(1, np.float32), sentences=[1], spans=[Span(0, 10, "0123456789")])


def _linker() -> TouchpointLinker:
    return TouchpointLinker(bundle=None, zero_shot=None, channel_prior_logit=1.5)  # type: ignore[arg-type]


def test_the_primary_comes_first_and_secondaries_follow_by_score() -> None:
    out = _linker().link(_scores([0.9, 0.7, 0.1, 0.0], [0.6, 0.3, 0.05, 0.05]), DOC, channel=None)
    assert [(t.id, t.primary, t.from_channel) for t in out] == [
        ("product_service", True, False), ("call_center", False, False)]
    assert out[0].score == pytest.approx(0.9) and out[0].source == "learned"


def test_none_means_no_touchpoint_even_with_a_channel_the_text_does_not_support() -> None:
    """'Un ascensore era fuori servizio' sent through the app is not about the app."""
    out = _linker().link(_scores([0.2, 0.05, 0.05, 0.0], [0.2, 0.05, 0.05, 0.7]), DOC, channel="mobile_app")
    assert out == []


def test_a_channel_never_creates_a_touchpoint_the_text_does_not_support() -> None:
    out = _linker().link(_scores([0.9, 0.05, 0.02, 0.0], [0.9, 0.05, 0.01, 0.04]), DOC, channel="mobile_app")
    assert [t.id for t in out] == ["product_service"]


def test_a_channel_raises_a_touchpoint_the_text_supports() -> None:
    # call_center at 0.3: below its 0.5 threshold, above half of it; the phone channel lifts it into the list
    without = _linker().link(_scores([0.9, 0.3, 0.0, 0.0], [0.8, 0.15, 0.0, 0.05]), DOC, channel=None)
    with_channel = _linker().link(_scores([0.9, 0.3, 0.0, 0.0], [0.8, 0.15, 0.0, 0.05]), DOC, channel="call_center")
    assert [t.id for t in without] == ["product_service"]
    assert [(t.id, t.from_channel) for t in with_channel] == [("product_service", False), ("call_center", True)]


def test_a_channel_settles_a_close_call_for_the_primary() -> None:
    scores = _scores([0.7, 0.65, 0.0, 0.0], [0.45, 0.42, 0.0, 0.13])
    assert _linker().link(scores, DOC, channel=None)[0].id == "product_service"
    settled = _linker().link(scores, DOC, channel="call_center")
    assert settled[0].id == "call_center" and settled[0].primary and settled[0].from_channel


def test_an_entry_without_a_learned_head_wins_only_on_a_confident_zero_shot_score() -> None:
    weak = _linker().link(_scores([0.8, 0.0, 0.0, 0.55], [0.7, 0.1, 0.1, 0.1]), DOC, channel=None)
    assert [t.id for t in weak] == ["product_service", "trade_fair"]  # listed, not primary
    strong = _linker().link(_scores([0.4, 0.0, 0.0, 0.9], [0.5, 0.1, 0.1, 0.3]), DOC, channel=None)
    assert strong[0].id == "trade_fair" and strong[0].source == "zero_shot"


def test_few_shot_head_separates_the_examples_it_was_given() -> None:
    rng = np.random.default_rng(0)
    a = rng.normal(0, 0.1, (6, 8)) + np.eye(8)[0]
    b = rng.normal(0, 0.1, (6, 8)) + np.eye(8)[1]
    w, bias = fit_softmax_rows(np.vstack([a, b]).astype(np.float32), np.asarray([0] * 6 + [1] * 6), 3)
    probe = np.stack([np.eye(8)[0], np.eye(8)[1]]).astype(np.float32)
    assert ((probe @ w.T + bias).argmax(axis=1) == [0, 1]).all()
    assert (bias[2] < -10) and not w[2].any()  # a class without examples is never chosen
