"""The decision-rule fits on small score tables with known answers (no model, no data folder)."""
from __future__ import annotations

import numpy as np

from voce.eval.quality_dump import DocScores
from voce.models.labels import MixedRule
from voce.training.calibrate_decisions import (
    _reported,
    fit_mixed,
    fit_topic_thresholds,
    star_gold,
    star_report,
    topic_report,
)

IDS = ["staff", "security_privacy"]
LEARNED = [True, False]


def _doc(uid: str, p4: list[float], topic: list[float] | None = None, sentences: int = 1) -> DocScores:
    p = np.asarray(p4, np.float32)
    return DocScores(
        uid=uid, language="it", doc_p4=p, sent_p4=np.tile(p, (sentences, 1)), sent_len=np.full(sentences, 10, np.int32),
        topic_score=np.asarray(topic or [0.0, 0.0], np.float32), topic_threshold=np.asarray([0.5, 0.5], np.float32),
        label="", reported=(),
    )  # fmt: skip


def test_star_gold() -> None:
    assert star_gold(5) == {"positive"} and star_gold(4) == {"positive", "mixed"} and star_gold(1) == {"negative"}
    assert star_gold(3) is None


def test_fit_mixed_lowers_the_mixed_class_when_glowing_reviews_come_out_mixed() -> None:
    # five-star reviews whose head leans mixed, tweets whose gold agrees with the head
    glowing = [(_doc(f"r{i}", [0.40, 0.02, 0.08, 0.50]), 5) for i in range(30)]
    labelled = [(_doc(f"t{i}", [0.8, 0.1, 0.05, 0.05]), "positive") for i in range(10)]
    labelled += [(_doc(f"n{i}", [0.05, 0.1, 0.8, 0.05]), "negative") for i in range(10)]
    rule, top = fit_mixed(labelled, glowing)
    assert rule.bias < 0
    assert rule.label(glowing[0][0].doc_p4) == "positive"
    assert top[0]["objective"] >= top[-1]["objective"]


def test_fit_mixed_keeps_the_defaults_when_they_are_right() -> None:
    labelled = [(_doc(f"m{i}", [0.3, 0.05, 0.25, 0.4]), "mixed") for i in range(10)]
    labelled += [(_doc(f"p{i}", [0.8, 0.1, 0.05, 0.05]), "positive") for i in range(10)]
    starred = [(_doc(f"s{i}", [0.9, 0.03, 0.03, 0.04]), 5) for i in range(10)]
    rule, _ = fit_mixed(labelled, starred)
    assert rule.bias == 0.0


def test_star_report_counts_the_wrong_calls() -> None:
    out = star_report([5, 5, 4, 1, 2], ["mixed", "positive", "mixed", "positive", "negative"])
    assert out["stars_4_5_called_mixed"]["share"] == round(2 / 3, 4)
    assert out["stars_5_called_mixed"]["share"] == 0.5
    assert out["stars_1_2_called_positive"]["share"] == 0.5


def test_topic_thresholds_rise_where_weak_scores_are_wrong_and_learned_heads_keep_theirs_in_domain() -> None:
    rows = []
    for i in range(20):  # strong scores are right, weak ones (0.55) are wrong, out of domain
        rows.append((_doc(f"a{i}", [1, 0, 0, 0], [0.9, 0.9]), {"staff", "security_privacy"}, False))
        rows.append((_doc(f"b{i}", [1, 0, 0, 0], [0.55, 0.55]), set(), False))
    thresholds, detail = fit_topic_thresholds(IDS, LEARNED, rows)
    assert 0.55 < thresholds["staff"] <= 0.9 and 0.55 < thresholds["security_privacy"] <= 0.9
    assert detail["staff"]["tp_fp_fn_chosen"] == (20, 0, 0)
    weak = rows[1][0]
    # out of domain both need the new threshold; in domain only the zero-shot one does
    assert _reported(weak, IDS, LEARNED, thresholds, inside=False) == set()
    assert _reported(weak, IDS, LEARNED, thresholds, inside=True) == {"staff"}
    report = topic_report(IDS, LEARNED, [(s, g, "src", inside) for s, g, inside in rows], thresholds)
    assert report["all"]["precision"] == 1.0 and report["src"]["recall"] == 1.0
    assert topic_report(IDS, LEARNED, [(s, g, "src", True) for s, g, _ in rows], {})["all"]["precision"] == 0.5


def test_a_topic_keeps_its_threshold_without_a_clear_gain() -> None:
    rows = [(_doc(f"a{i}", [1, 0, 0, 0], [0.9, 0.9]), {"staff", "security_privacy"}, False) for i in range(10)]
    thresholds, _ = fit_topic_thresholds(IDS, LEARNED, rows)
    assert thresholds == {}
    assert MixedRule() == MixedRule.from_config(MixedRule().config())
