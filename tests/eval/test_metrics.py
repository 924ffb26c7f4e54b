"""Every metric against a small example worked out by hand (the arithmetic is in the comments)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from voce.data import datasets as data
from voce.eval import metrics

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "data"


# -------------------------------------------------------------------------- SENTIPOLC


def test_sentiment_flags() -> None:
    assert metrics.sentiment_to_flags("positive") == (1, 0)
    assert metrics.sentiment_to_flags("negative") == (0, 1)
    assert metrics.sentiment_to_flags("neutral") == (0, 0)
    assert metrics.sentiment_to_flags("mixed") == (1, 1)
    pos, neg = metrics.sentiments_to_flags(["mixed", "neutral", "negative"])
    assert pos.tolist() == [1, 0, 0] and neg.tolist() == [1, 0, 1]
    with pytest.raises(ValueError):
        metrics.sentiment_to_flags("meh")


def test_sentipolc_polarity_f_by_hand() -> None:
    # gold: pos, neg, neutral, mixed, neg  -> opos 1 0 0 1 0 | oneg 0 1 0 1 1
    # pred: pos, pos, neutral, pos,   neg  -> opos 1 1 0 1 0 | oneg 0 0 0 0 1
    #
    # opos, class 1: gold {0,3}, pred {0,1,3}: tp 2 fp 1 fn 0 -> P 2/3 R 1   -> F 0.8
    # opos, class 0: gold {1,2,4}, pred {2,4}: tp 2 fp 0 fn 1 -> P 1   R 2/3 -> F 0.8
    # F_pos = (0.8 + 0.8) / 2 = 0.8
    # oneg, class 1: gold {1,3,4}, pred {4}:   tp 1 fp 0 fn 2 -> P 1   R 1/3 -> F 0.5
    # oneg, class 0: gold {0,2}, pred {0,1,2,3}: tp 2 fp 2 fn 0 -> P 1/2 R 1 -> F 2/3
    # F_neg = (0.5 + 2/3) / 2 = 7/12
    # F = (0.8 + 7/12) / 2 = 83/120 = 0.691666...
    gold_pos, gold_neg = metrics.sentiments_to_flags(["positive", "negative", "neutral", "mixed", "negative"])
    pred_pos, pred_neg = metrics.sentiments_to_flags(["positive", "positive", "neutral", "positive", "negative"])
    out = metrics.sentipolc_polarity_f(gold_pos, gold_neg, pred_pos, pred_neg)
    assert out["f_pos_1"] == pytest.approx(0.8)
    assert out["f_pos_0"] == pytest.approx(0.8)
    assert out["f_pos"] == pytest.approx(0.8)
    assert out["f_neg_1"] == pytest.approx(0.5)
    assert out["f_neg_0"] == pytest.approx(2 / 3)
    assert out["f_neg"] == pytest.approx(7 / 12)
    assert out["f"] == pytest.approx(83 / 120)


def test_sentipolc_perfect_and_invalid() -> None:
    pos, neg = [1, 0, 1, 0], [0, 1, 1, 0]
    assert metrics.sentipolc_polarity_f(pos, neg, pos, neg)["f"] == pytest.approx(1.0)
    with pytest.raises(ValueError):
        metrics.sentipolc_polarity_f([1, 2], [0, 0], [1, 0], [0, 0])
    with pytest.raises(ValueError):
        metrics.sentipolc_polarity_f([1, 0], [0, 0], [1], [0])


# ----------------------------------------------------------------------------- ABSITA

# two aspects (A, B), three sentences; cells are (presence, positive, negative)
ABSITA_GOLD = [
    [[1, 1, 0], [0, 0, 0]],  # s0: A positive
    [[1, 1, 1], [1, 0, 1]],  # s1: A mixed, B negative
    [[0, 0, 0], [0, 0, 0]],  # s2: nothing
]
ABSITA_PRED = [
    [[1, 1, 0], [1, 1, 0]],  # s0: A positive, B positive
    [[1, 1, 0], [0, 0, 1]],  # s1: A positive; B's negative flag without presence (ignored)
    [[0, 0, 0], [1, 0, 1]],  # s2: B negative
]


def test_absita_detection_by_hand() -> None:
    # gold {s0A, s1A, s1B}; pred {s0A, s0B, s1A, s2B}: tp 2 (s0A, s1A), fp 2 (s0B, s2B), fn 1 (s1B)
    # P = 2/4, R = 2/3, F1 = 2 * 1/2 * 2/3 / (1/2 + 2/3) = 4/7
    gold = np.asarray(ABSITA_GOLD)[..., 0]
    pred = np.asarray(ABSITA_PRED)[..., 0]
    out = metrics.absita_aspect_detection_f1(gold, pred)
    assert (out["tp"], out["fp"], out["fn"]) == (2, 2, 1)
    assert out["precision"] == pytest.approx(0.5)
    assert out["recall"] == pytest.approx(2 / 3)
    assert out["f1"] == pytest.approx(4 / 7)


def test_absita_polarity_by_hand() -> None:
    # gold pairs {s0A+, s1A+, s1A-, s1B-}; pred pairs {s0A+, s0B+, s1A+, s2B-} (s1B- has no presence)
    # tp 2 (s0A+, s1A+), fp 2 (s0B+, s2B-), fn 2 (s1A-, s1B-) -> P = R = F1 = 0.5
    out = metrics.absita_aspect_polarity_f1(ABSITA_GOLD, ABSITA_PRED)
    assert (out["tp"], out["fp"], out["fn"]) == (2, 2, 2)
    assert out["f1"] == pytest.approx(0.5)


def test_absita_shapes_are_checked() -> None:
    with pytest.raises(ValueError):
        metrics.absita_aspect_detection_f1([[1, 0]], [[1, 0, 0]])
    with pytest.raises(ValueError):
        metrics.absita_aspect_polarity_f1([[1, 0]], [[1, 0]])


def test_absita_metrics_on_fixture_gold_are_perfect() -> None:
    flags = np.asarray(data.absita_flag_matrix(data.load_absita(FIXTURES)))
    assert metrics.absita_aspect_detection_f1(flags[..., 0], flags[..., 0])["f1"] == 1.0
    assert metrics.absita_aspect_polarity_f1(flags, flags)["f1"] == 1.0


# ---------------------------------------------------------------------------- SemEval


def test_semeval_category_f1_by_hand() -> None:
    # s0 gold {FQ, SG} pred {FQ} (listed twice, counts once): tp 1, fn 1
    # s1 gold {} pred {RG}: fp 1 (sentences without opinions still count)
    # s2 gold {AG} pred {AG, FQ}: tp 1, fp 1
    # tp 2 fp 2 fn 1 -> P 1/2, R 2/3, F1 4/7
    gold = [{"FOOD#QUALITY", "SERVICE#GENERAL"}, set(), {"AMBIENCE#GENERAL"}]
    pred = [["FOOD#QUALITY", "FOOD#QUALITY"], {"RESTAURANT#GENERAL"}, {"AMBIENCE#GENERAL", "FOOD#QUALITY"}]
    out = metrics.semeval_category_f1(gold, pred)
    assert (out["tp"], out["fp"], out["fn"]) == (2, 2, 1)
    assert out["f1"] == pytest.approx(4 / 7)


def test_semeval_polarity_accuracy_by_hand() -> None:
    gold = ["positive", "negative", "neutral", "positive"]
    pred = ["positive", "positive", "neutral", "positive"]
    assert metrics.semeval_polarity_accuracy(gold, pred) == pytest.approx(0.75)
    with pytest.raises(ValueError):
        metrics.semeval_polarity_accuracy(gold, pred[:3])


# --------------------------------------------------------------------------- general

GOLD = ["a", "a", "b", "c"]
PRED = ["a", "b", "b", "c"]


def test_accuracy_and_macro_f1_by_hand() -> None:
    # a: tp 1 fp 0 fn 1 -> F 2/3; b: tp 1 fp 1 fn 0 -> F 2/3; c: F 1
    assert metrics.accuracy(GOLD, PRED) == pytest.approx(0.75)
    assert metrics.macro_f1(GOLD, PRED) == pytest.approx((2 / 3 + 2 / 3 + 1) / 3)
    # an extra listed class that never occurs scores 0 and is averaged in
    assert metrics.macro_f1(GOLD, PRED, labels=["a", "b", "c", "d"]) == pytest.approx((2 / 3 + 2 / 3 + 1) / 4)
    with pytest.raises(ValueError):
        metrics.accuracy([], [])


def test_per_class_report_by_hand() -> None:
    report = metrics.per_class_report(GOLD, PRED, ["a", "b", "c"])
    assert report["a"] == pytest.approx({"precision": 1.0, "recall": 0.5, "f1": 2 / 3, "support": 2.0})
    assert report["b"] == pytest.approx({"precision": 0.5, "recall": 1.0, "f1": 2 / 3, "support": 1.0})
    assert report["c"]["f1"] == pytest.approx(1.0)


def test_confusion_matrix_dict() -> None:
    cm = metrics.confusion_matrix_dict(GOLD, PRED, ["a", "b", "c"])
    assert cm == {"a": {"a": 1, "b": 1, "c": 0}, "b": {"a": 0, "b": 1, "c": 0}, "c": {"a": 0, "b": 0, "c": 1}}
    assert metrics.confusion_matrix_dict([0, 1], [1, 1], [0, 1]) == {"0": {"0": 0, "1": 1}, "1": {"0": 0, "1": 1}}
    with pytest.raises(ValueError, match="outside"):
        metrics.confusion_matrix_dict(GOLD, PRED, ["a", "b"])


def test_roc_auc_by_hand() -> None:
    # positives score 0.35 and 0.8, negatives 0.1 and 0.4: 3 of the 4 (pos, neg) pairs are ordered right
    assert metrics.roc_auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == pytest.approx(0.75)


def test_roc_auc_single_class_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="undefined"):
        metrics.roc_auc([1, 1, 1], [0.2, 0.5, 0.9])
    with pytest.raises(ValueError, match="0/1"):
        metrics.roc_auc([0, 2], [0.2, 0.5])


def test_ece_of_perfectly_calibrated_toy_is_zero() -> None:
    # five rows at P(1)=0.8 with 4 positives (accuracy 0.8 = confidence 0.8) and five rows at
    # P(1)=0.4, i.e. top label 0 with confidence 0.6, with 3 negatives (accuracy 0.6)
    probs = [0.8] * 5 + [0.4] * 5
    labels = [1, 1, 1, 1, 0] + [0, 0, 0, 1, 1]
    assert metrics.expected_calibration_error(probs, labels) == pytest.approx(0.0, abs=1e-12)
    two_col = np.stack([1 - np.asarray(probs), np.asarray(probs)], axis=1)
    assert metrics.expected_calibration_error(two_col, labels) == pytest.approx(0.0, abs=1e-12)


def test_ece_and_reliability_bins_by_hand() -> None:
    # confidences 0.85 (right), 0.85 (wrong), 0.55 (right), 0.75 (right), 10 bins:
    # bin (0.8, 0.9]: acc 0.5 conf 0.85 -> 2/4 * 0.35 = 0.175
    # bin (0.5, 0.6]: acc 1 conf 0.55   -> 1/4 * 0.45 = 0.1125
    # bin (0.7, 0.8]: acc 1 conf 0.75   -> 1/4 * 0.25 = 0.0625      ECE = 0.35
    probs = [[0.85, 0.15], [0.85, 0.15], [0.55, 0.45], [0.25, 0.75]]
    labels = [0, 1, 0, 1]
    assert metrics.expected_calibration_error(probs, labels, n_bins=10) == pytest.approx(0.35)
    bins = metrics.reliability_bins(probs, labels, n_bins=10)
    assert bins["count"] == [0, 0, 0, 0, 0, 1, 0, 1, 2, 0]
    assert bins["confidence"][8] == pytest.approx(0.85) and bins["accuracy"][8] == pytest.approx(0.5)
    assert bins["confidence"][0] is None and bins["accuracy"][0] is None
    assert bins["bin_lower"][5] == pytest.approx(0.5) and bins["bin_upper"][5] == pytest.approx(0.6)
    assert bins["n"] == 4 and bins["ece"] == pytest.approx(0.35)


def test_ece_rejects_bad_input() -> None:
    with pytest.raises(ValueError):
        metrics.expected_calibration_error([1.2, 0.3], [1, 0])
    with pytest.raises(ValueError):
        metrics.expected_calibration_error([[0.5, 0.5]], [2])
    with pytest.raises(ValueError):
        metrics.expected_calibration_error([0.5], [1, 0])


def test_mean_std() -> None:
    mean, std = metrics.mean_std([1.0, 2.0, 3.0, 4.0])
    # sample variance: ((1.5^2 + 0.5^2) * 2) / 3 = 5/3
    assert mean == pytest.approx(2.5) and std == pytest.approx(math.sqrt(5 / 3))
    assert metrics.mean_std([0.7]) == (0.7, 0.0)
    with pytest.raises(ValueError):
        metrics.mean_std([])
