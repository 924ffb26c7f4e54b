"""The touchpoint metrics on hand-made results: the numbers are what their definitions say."""
from __future__ import annotations

import pytest

from voce.data.realcx import CXText
from voce.eval.realcx import primary_topic_metrics, touchpoint_metrics
from voce.models.types import DocumentResult, Sentiment, SentimentScores, TopicResult, TouchpointResult

NEUTRAL = Sentiment(label="neutral", scores=SentimentScores(positive=0.2, neutral=0.6, negative=0.2))


def _row(uid: str, tps: tuple[str, ...], primary: str, lang: str = "it", topics: tuple[str, ...] = ()) -> CXText:
    return CXText(uid=uid, source="s", group=uid, language=lang, text="x", stratum="random", touchpoints=tps,
                  primary=primary, topics=topics, journey="", stage="", double=False)  # fmt: skip


def _res(uid: str, tps: list[str], topics: list[str] = ()) -> DocumentResult:  # type: ignore[assignment]
    return DocumentResult(
        id=uid, language="it", warnings=[], sentiment=NEUTRAL, sentences=[], detractor={"probability": 0.1},
        topics=[TopicResult(id=t, score=0.9, sentiment=NEUTRAL, evidence=[], source="learned") for t in topics],
        touchpoints=[TouchpointResult(id=t, score=0.9, evidence=[], primary=k == 0, from_channel=False)
                     for k, t in enumerate(tps)],
    )  # fmt: skip


def test_top1_hit_and_none_follow_their_definitions() -> None:
    rows = [
        _row("1", ("delivery",), "delivery"),  # right
        _row("2", ("billing", "call_center"), "billing"),  # top-1 is the secondary: a hit, not top-1
        _row("3", (), "none"),  # nothing reported: right
        _row("4", ("store",), "store"),  # nothing reported: a wrong "none"
        _row("5", (), "none"),  # something reported for a "none" text
    ]
    res = {r.uid: _res(r.uid, p) for r, p in zip(rows, [["delivery"], ["call_center", "billing"], [], [], ["website"]],
                                                   strict=True)}  # fmt: skip
    m = touchpoint_metrics(rows, res, majority="delivery")
    assert m["top1_accuracy"] == pytest.approx(2 / 5)
    assert m["hit_primary_or_secondary"] == pytest.approx(3 / 5)
    assert m["none_rate"] == pytest.approx(2 / 5) and m["none_precision"] == pytest.approx(1 / 2)
    assert m["none_recall"] == pytest.approx(1 / 2)
    assert m["baseline_always_none"] == pytest.approx(2 / 5)
    assert m["baseline_majority"]["top1_accuracy"] == pytest.approx(1 / 5)
    assert m["per_touchpoint"]["billing"] == {"support": 1, "precision": 1.0, "recall": 1.0, "f1": 1.0}
    assert m["per_touchpoint"]["store"]["recall"] == 0.0
    lo, hi = m["top1_interval"]
    assert 0.0 <= lo <= m["top1_accuracy"] <= hi <= 1.0


def test_primary_topic_is_the_highest_scoring_one() -> None:
    rows = [_row("1", ("product_service",), "product_service", topics=("delivery", "product_quality")),
            _row("2", (), "none")]  # fmt: skip
    res = {"1": _res("1", ["product_service"], ["product_quality", "delivery"]), "2": _res("2", [], [])}
    m = primary_topic_metrics(rows, res)
    assert m["primary_topic_accuracy"] == pytest.approx(1 / 2)  # "none" predicted for "none" counts
    assert m["top_topic_among_annotated"] == pytest.approx(1.0)
