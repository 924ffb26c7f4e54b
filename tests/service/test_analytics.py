"""CX KPIs against hand computations: the numbers users see must be the ones the docstring defines."""
from __future__ import annotations

import json
import math
from collections.abc import Sequence
from datetime import date, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from voce.service.analytics import (
    Filters,
    RowFacts,
    apply_filters,
    batch_kpis,
    benjamini_hochberg,
    choose_granularity,
    compare,
    parse_period,
    parse_segment,
)

Z = 1.959963984540054  # standard normal 97.5% quantile


def _row(
    i: int,
    day: date | None = None,
    *,
    language: str | None = "it",
    region: str | None = None,
    nps: int | None = None,
    csat: int | None = None,
    ces: int | None = None,
    sentiment: str | None = "neutral",
    detractor: float | None = 0.3,
    topics: tuple[tuple[str, str], ...] = (),
    touchpoints: tuple[str, ...] = (),
    ok: bool = True,
    channel: str | None = "email",
) -> RowFacts:
    return RowFacts(
        row=i, date=day, language=language, channel=channel, segments={"region": region} if region else {},
        nps=nps, csat=csat, ces=ces, sentiment=sentiment if ok else None,
        positive=0.5 if ok else 0.0, negative=0.2 if ok else 0.0, detractor=detractor if ok else None,
        topics=topics, touchpoints=touchpoints, ok=ok,
    )


def _hand_rows() -> list[RowFacts]:
    """12 rows; row 10 is an error row (with an NPS answer), row 11 has no date, rows 8-9 have no NPS answer."""
    d = date
    return [
        _row(0, d(2026, 3, 2), region="north", nps=10, csat=5, ces=2, sentiment="positive", detractor=0.05,
             topics=(("price", "positive"), ("staff", "positive")), touchpoints=("store",)),
        _row(1, d(2026, 3, 3), region="north", nps=9, csat=4, ces=3, sentiment="positive", detractor=0.1,
             topics=(("staff", "positive"),), touchpoints=("store",)),
        _row(2, d(2026, 3, 5), language="en", region="south", nps=3, csat=1, ces=6, sentiment="negative", detractor=0.9,
             topics=(("price", "negative"), ("delivery", "negative")), touchpoints=("app",)),
        _row(3, d(2026, 3, 10), language="en", region="north", nps=6, csat=2, ces=5, sentiment="negative", detractor=0.6,
             topics=(("price", "negative"),)),
        _row(4, d(2026, 3, 15), region="south", nps=9, csat=4, ces=4, sentiment="neutral", detractor=0.2,
             topics=(("delivery", "neutral"),)),
        _row(5, d(2026, 3, 20), region="north", nps=10, csat=5, ces=1, sentiment="positive", detractor=0.05,
             topics=(("staff", "positive"),)),
        _row(6, d(2026, 4, 2), language="en", region="south", nps=0, csat=1, ces=7, sentiment="negative", detractor=0.95,
             topics=(("price", "negative"),)),
        _row(7, d(2026, 4, 5), region="north", nps=7, csat=3, ces=4, sentiment="mixed", detractor=0.4,
             topics=(("price", "mixed"), ("staff", "positive"))),
        _row(8, d(2026, 4, 8), region="south", sentiment="negative", detractor=0.8, topics=(("price", "negative"),)),
        _row(9, d(2026, 4, 9), language="en", region="north", sentiment="positive", detractor=0.1,
             topics=(("staff", "positive"),)),
        _row(10, d(2026, 4, 12), language=None, nps=9, csat=5, ces=2, ok=False),
        _row(11, None, region="north", nps=5, csat=3, sentiment="negative", detractor=0.7, topics=(("price", "negative"),)),
    ]


def _theme(report: Any, theme_id: str, kind: str = "topics") -> Any:
    return next(t for t in getattr(report, kind) if t.id == theme_id)


def _no_nan(value: Any) -> None:
    if isinstance(value, float):
        assert math.isfinite(value)
    elif isinstance(value, dict):
        for v in value.values():
            _no_nan(v)
    elif isinstance(value, list):
        for v in value:
            _no_nan(v)


# --------------------------------------------------------------------------------------------------- headline KPIs


def test_counts_nps_and_ci_by_hand() -> None:
    r = batch_kpis(_hand_rows(), None)
    assert (r.count, r.analysed) == (12, 11)  # the error row is counted but not analysed
    # scored rows: 0,1,2,3,4,5,6,7,10,11 (the error row's answer is a survey answer, so it counts)
    # promoters 0,1,4,5,10 = 5; passives 7 = 1; detractors 2,3,6,11 = 4
    assert (r.nps.promoters, r.nps.passives, r.nps.detractors, r.nps.responses) == (5, 1, 4, 10)
    assert r.nps.value == 10.0  # 100 * (5 - 4) / 10
    # var = (0.5 + 0.4 - (0.5 - 0.4)^2) / 10 = 0.89 / 10; half width = 100 * 1.96 * sqrt(0.089) = 58.47
    half = 100 * Z * math.sqrt((0.5 + 0.4 - 0.1**2) / 10)
    assert round(half, 2) == 58.47
    assert r.nps.ci_low == pytest.approx(10 - 58.47, abs=0.01)
    assert r.nps.ci_high == pytest.approx(10 + 58.47, abs=0.01)


def test_csat_ces_sentiment_by_hand() -> None:
    r = batch_kpis(_hand_rows(), None)
    # CSAT answers 5,4,1,2,4,5,1,3,5,3 (n=10); 4-5 answers: 5 -> 50%
    assert r.csat is not None and (r.csat.value, r.csat.responses) == (50.0, 10)
    # Wilson, p=0.5, n=10: centre 0.5, half = 1.96 * sqrt(0.025 + 1.96^2/400) / (1 + 1.96^2/10) = 0.2634
    half = Z * math.sqrt(0.5 * 0.5 / 10 + Z**2 / 400) / (1 + Z**2 / 10)
    assert round(half, 4) == 0.2634
    assert r.csat.ci_low == pytest.approx(100 * (0.5 - half), abs=0.01)  # 23.66
    assert r.csat.ci_high == pytest.approx(100 * (0.5 + half), abs=0.01)  # 76.34
    # CES answers 2,3,6,5,4,1,7,4,2 (n=9): mean 34/9 = 3.78; s^2 = (160 - 34^2/9) / 8 = 3.9444; t(0.975, 8) = 2.306004
    assert r.ces is not None and (r.ces.mean, r.ces.responses) == (3.78, 9)
    ces_half = 2.306004 * math.sqrt((160 - 34**2 / 9) / 8) / 3
    assert r.ces.ci_low == pytest.approx(34 / 9 - ces_half, abs=0.01)  # 2.25
    assert r.ces.ci_high == pytest.approx(34 / 9 + ces_half, abs=0.01)  # 5.30
    # analysed rows: positive 0,1,5,9; neutral 4; negative 2,3,6,8,11; mixed 7 -> net 100 * (4 - 5) / 11
    s = r.sentiment
    assert (s.positive, s.neutral, s.negative, s.mixed) == (4, 1, 5, 1)
    assert s.net == round(100 * (4 - 5) / 11, 2) == -9.09


def test_missing_nps_estimate_over_unscored_rows() -> None:
    r = batch_kpis(_hand_rows(), None)
    est = r.nps_estimate
    assert est is not None and est.estimated is True and "predicted" in est.method
    # analysed rows without an NPS answer: 8 (0.8) and 9 (0.1) -> mean 0.45 over 2 rows
    assert (est.detractor_share, est.rows) == (0.45, 2)
    p, n = 0.45, 2  # Wilson interval of the mean treated as a proportion
    centre = (p + Z**2 / (2 * n)) / (1 + Z**2 / n)
    half = Z * math.sqrt(p * (1 - p) / n + Z**2 / (4 * n * n)) / (1 + Z**2 / n)
    assert (est.ci_low, est.ci_high) == (round(centre - half, 4), round(centre + half, 4))  # (0.0781, 0.8877)

    every_row_scored = [row for row in _hand_rows() if row.nps is not None]
    assert batch_kpis(every_row_scored, None).nps_estimate is None


def test_no_nps_at_all_keeps_impact_null_but_fills_estimates() -> None:
    rows = [_row(i, nps=None, detractor=0.2 + 0.1 * (i % 2), topics=(("price", "negative"),)) for i in range(10)]
    r = batch_kpis(rows, None, min_theme_count=1)
    assert r.nps.value is None and r.nps.ci_low is None and r.nps.responses == 0
    price = _theme(r, "price")
    assert (price.nps, price.impact, price.p_value, price.significant) == (None, None, None, False)
    assert price.detractor_estimate == 0.25  # five rows at 0.2, five at 0.3
    assert r.nps_estimate is not None and (r.nps_estimate.detractor_share, r.nps_estimate.rows) == (0.25, 10)
    assert r.csat is None and r.ces is None


# --------------------------------------------------------------------------------------------------- themes


def test_theme_nps_impact_and_significance_by_hand() -> None:
    r = batch_kpis(_hand_rows(), None, labels={"price": "Prezzo"})
    price = _theme(r, "price")
    assert (price.label, price.count, price.share) == ("Prezzo", 7, round(7 / 11, 4))  # rows 0,2,3,6,7,8,11
    assert price.sentiment.model_dump() == {"positive": 1, "neutral": 0, "negative": 5, "mixed": 1}  # its own labels
    assert price.net_sentiment == round(100 * (1 - 5) / 7, 2)
    # scored rows mentioning price: 0 (P), 2 3 6 11 (D), 7 (passive) -> NPS = 100 * (1 - 4) / 6 = -50
    assert (price.nps, price.nps_responses) == (-50.0, 6)
    # scored rows NOT mentioning it: 1, 4, 5, 10, all promoters -> NPS 100; impact = 10 - 100 = -90 (drags the score down)
    assert price.impact == -90.0
    # delta method: w = 6/10; var_T = 1/6 + 4/6 - (1/6 - 4/6)^2 = 7/12; var_notT = 0 -> half = 100 * 1.96 * 0.6 * sqrt(7/12/6)
    half = 100 * Z * 0.6 * math.sqrt(7 / 12 / 6)
    assert round(half, 2) == 36.67
    assert price.impact_ci_low == pytest.approx(-90 - half, abs=0.01)  # -126.67 (impact ranges over -200..200)
    assert price.impact_ci_high == pytest.approx(-90 + half, abs=0.01)  # -53.33
    # var_notT = 0 is degenerate, so the z-test uses the pooled per-answer variance of all 10 answers, 0.89:
    # z = (-0.5 - 1.0) / sqrt(0.89 * (1/6 + 1/4)) = -2.46 -> two-sided p = 0.0138
    assert price.p_value == round(math.erfc(1.5 / math.sqrt(0.89 * (1 / 6 + 1 / 4)) / math.sqrt(2)), 4) == 0.0138
    assert price.significant is True  # the only tested topic, so BH keeps p < 0.05
    assert price.detractor_estimate == round((0.05 + 0.9 + 0.6 + 0.95 + 0.4 + 0.8 + 0.7) / 7, 4)  # 0.6286

    staff = _theme(r, "staff")  # 4 scored rows < min_theme_count=5: not tested
    assert (staff.label, staff.count, staff.nps, staff.nps_responses) == ("staff", 5, 75.0, 4)  # 100 * (3 - 0) / 4
    assert (staff.impact, staff.impact_ci_low, staff.p_value, staff.significant) == (None, None, None, False)
    assert [t.id for t in r.topics] == ["price", "staff", "delivery"]  # by count: 7, 5, 2

    store = _theme(r, "store", "touchpoints")  # touchpoints use the row sentiment
    assert (store.count, store.sentiment.positive, store.net_sentiment, store.nps) == (2, 2, 100.0, 100.0)


def test_positive_driver_has_positive_impact() -> None:
    staff = _theme(batch_kpis(_hand_rows(), None, min_theme_count=4), "staff")
    # not mentioning staff: 2 3 6 11 (D), 4 10 (P) -> NPS = 100 * (2 - 4) / 6 = -33.33; impact = 10 - (-33.33)
    assert staff.impact == round(10 + 100 * 2 / 6, 2) == 43.33


def test_benjamini_hochberg_function() -> None:
    # m = 4, thresholds 0.0125, 0.025, 0.0375, 0.05: only 0.001 passes although three raw p are below 0.05
    assert benjamini_hochberg([0.04, 0.001, 0.5, 0.045]) == [False, True, False, False]
    # step-up: the largest passing rank takes every smaller p with it (0.03 > 0.025 but 0.035 <= 0.0375)
    assert benjamini_hochberg([0.001, 0.03, 0.035, 0.9]) == [True, True, True, False]
    assert benjamini_hochberg([]) == []


def _nps_rows(scores: list[int], topic: str | None, start: int) -> list[RowFacts]:
    return [_row(start + k, nps=s, topics=((topic, "neutral"),) if topic else ()) for k, s in enumerate(scores)]


def test_bh_correction_in_report() -> None:
    rows = (
        _nps_rows([10] * 10 + [7] * 5 + [3] * 5, None, 0)
        + _nps_rows([2] * 10, "A", 100)  # all detractors: a strong driver
        + _nps_rows([3] * 7 + [10] + [8] * 2, "B", 200)  # weaker
        + _nps_rows([10, 9, 8, 7, 3, 2, 10, 8, 5, 10], "C", 300)  # close to the rest
    )
    r = batch_kpis(rows, None)
    a, b, c = (_theme(r, t) for t in "ABC")
    # overall: 50 answers, 15 P, 25 D -> NPS -20; without A: 40 answers, 15 P, 15 D -> 0; impact(A) = -20 - 0
    assert a.impact == -20.0
    assert a.p_value is not None and a.p_value < 0.05 / 3 and a.significant
    # B would pass a plain p < 0.05, but it ranks 2nd of 3 tested themes: BH threshold 2 * 0.05 / 3 = 0.0333
    assert b.p_value is not None and 0.05 * 2 / 3 < b.p_value < 0.05 and not b.significant
    assert c.p_value is not None and c.p_value > 0.05 and not c.significant


# --------------------------------------------------------------------------------------------------- filters


@pytest.mark.parametrize(
    ("filters", "expected_rows"),
    [
        (Filters(topic="price"), [0, 2, 3, 6, 7, 8, 11]),
        (Filters(touchpoint="store"), [0, 1]),
        (Filters(language="EN"), [2, 3, 6, 9]),
        (Filters(language="unknown"), [10]),
        (Filters.model_validate({"segment": "region:north"}), [0, 1, 3, 5, 7, 9, 11]),
        (Filters(segment={"region": "unknown"}), [10]),
        (Filters(period="2026-03"), [0, 1, 2, 3, 4, 5]),
        (Filters(period="2026-W10"), [0, 1, 2]),  # Monday 2026-03-02 .. Sunday 03-08
        (Filters(period="2026-03-05"), [2]),
        (Filters(date_from=date(2026, 3, 5), date_to=date(2026, 4, 5)), [2, 3, 4, 5, 6, 7]),  # inclusive bounds
        (Filters(period="2026-04", date_to=date(2026, 4, 8)), [6, 7, 8]),  # period and range intersect
        (Filters.model_validate({"topic": "price", "segment": "region:south", "language": "it"}), [8]),
        (Filters(), list(range(12))),
    ],
)
def test_filters(filters: Filters, expected_rows: list[int]) -> None:
    assert [r.row for r in apply_filters(_hand_rows(), filters)] == expected_rows


def test_filtered_report_recomputes_kpis() -> None:
    r = batch_kpis(_hand_rows(), Filters.model_validate({"segment": "region:north"}))
    # rows 0,1,3,5,7,9,11; scored: 0 1 5 (P), 7 (passive), 3 11 (D) -> 100 * (3 - 2) / 6
    assert (r.count, r.analysed, r.nps.responses, r.nps.value) == (7, 7, 6, round(100 / 6, 2))
    assert r.filters.segment == {"region": ["north"]}
    assert r.model_dump(mode="json")["filters"]["segment"] == {"region": ["north"]}


def test_filter_parsing_and_validation() -> None:
    assert parse_segment("region: north") == {"region": "north"}
    assert parse_segment("slot:10:30") == {"slot": "10:30"}
    assert parse_period("2026-W09") == ("week", date(2026, 2, 23), date(2026, 3, 2))
    assert parse_period("2026-12") == ("month", date(2026, 12, 1), date(2027, 1, 1))
    for bad in ("region", ":north", "region:"):
        with pytest.raises(ValueError):
            parse_segment(bad)
    for bad_period in ("2026-13", "2026-W54", "March", "2026-02-30"):
        with pytest.raises(ValidationError):
            Filters(period=bad_period)
    with pytest.raises(ValidationError):
        Filters(date_from=date(2026, 4, 1), date_to=date(2026, 3, 1))
    with pytest.raises(ValidationError):
        Filters(colour="red")  # type: ignore[call-arg]


# --------------------------------------------------------------------------------------------------- trend


def _spread(days: int, per_day: int, first: date = date(2026, 3, 2)) -> list[RowFacts]:
    return [_row(d * per_day + k, first + timedelta(days=d), nps=10) for d in range(days) for k in range(per_day)]


def test_trend_granularity_selection() -> None:
    assert choose_granularity(date(2026, 3, 1), date(2026, 3, 10), 250) == "day"  # 25 rows per day
    assert choose_granularity(date(2026, 3, 2), date(2026, 3, 11), 50) == "week"  # 5/day is too thin; 2 weeks -> 25/week
    assert choose_granularity(date(2026, 1, 1), date(2026, 4, 10), 100) == "month"  # 99 days -> weeks, 15 weeks too thin
    assert choose_granularity(date(2025, 1, 1), date(2026, 1, 1), 100_000) == "month"  # span > 40 weeks
    assert choose_granularity(date(2026, 1, 1), date(2026, 6, 1), 10_000) == "week"  # 151 days, ~22 weeks of ~450 rows

    day = batch_kpis(_spread(10, 25), None).trend
    assert day.granularity == "day" and [p.period for p in day.periods][:2] == ["2026-03-02", "2026-03-03"]
    assert len(day.periods) == 10 and all(p.count == 25 for p in day.periods)

    week = batch_kpis(_spread(10, 5), None).trend
    assert week.granularity == "week"
    assert [(p.period, p.start, p.count) for p in week.periods] == [
        ("2026-W10", date(2026, 3, 2), 35), ("2026-W11", date(2026, 3, 9), 15)
    ]

    hand = batch_kpis(_hand_rows(), None).trend  # 41 days, 11 dated rows: day -> week -> month
    assert hand.granularity == "month"
    march, april = hand.periods
    # March: rows 0-5, scored 0 1 4 5 (P), 2 3 (D) -> 100 * 2 / 6; April: rows 6-10, scored 6 (D), 7 (passive), 10 (P) -> 0
    assert (march.period, march.count, march.nps) == ("2026-03", 6, 33.33)
    assert (april.period, april.count, april.nps) == ("2026-04", 5, 0.0)
    assert (april.change, april.change_metric, april.significant) == (-33.33, "nps", False)
    assert (march.change, march.change_metric, march.p_value) == (None, None, None)


def test_trend_forced_granularity_empty_periods_and_iso_year() -> None:
    rows = [_row(0, date(2026, 3, 2), nps=10), _row(1, date(2026, 3, 5), nps=0)]
    trend = batch_kpis(rows, None, granularity="day").trend
    assert [(p.period, p.count, p.nps) for p in trend.periods] == [
        ("2026-03-02", 1, 100.0), ("2026-03-03", 0, None), ("2026-03-04", 0, None), ("2026-03-05", 1, -100.0)
    ]
    assert trend.periods[3].change is None  # the previous (empty) period has nothing to compare with

    boundary = [_row(0, date(2025, 12, 29)), _row(1, date(2026, 1, 4)), _row(2, date(2026, 1, 5))]
    weeks = batch_kpis(boundary, None, granularity="week").trend.periods
    assert [(p.period, p.start, p.count) for p in weeks] == [
        ("2026-W01", date(2025, 12, 29), 2), ("2026-W02", date(2026, 1, 5), 1)
    ]


def _month_rows(first: date, nps_or_sentiment: Sequence[int | str], start: int) -> list[RowFacts]:
    return [
        _row(start + k, first + timedelta(days=k % 28), nps=v if isinstance(v, int) else None,
             sentiment=v if isinstance(v, str) else "neutral")
        for k, v in enumerate(nps_or_sentiment)
    ]


def test_trend_change_significance_on_nps() -> None:
    march = _month_rows(date(2026, 3, 1), [10] * 30 + [2] * 10, 0)  # NPS 50
    april = _month_rows(date(2026, 4, 1), [10] * 10 + [2] * 30, 100)  # NPS -50
    p = batch_kpis(march + april, None, granularity="month").trend.periods[1]
    assert (p.change, p.change_metric, p.significant) == (-100.0, "nps", True)
    # per-answer variance in both months: 0.75 + 0.25 - 0.5^2 = 0.75; diff = -1.0; se = sqrt(0.75/40 + 0.75/40)
    assert p.p_value == round(math.erfc(1.0 / math.sqrt(2 * 0.75 / 40) / math.sqrt(2)), 4)

    same = _month_rows(date(2026, 4, 1), [10] * 30 + [2] * 10, 100)
    q = batch_kpis(march + same, None, granularity="month").trend.periods[1]
    assert (q.change, q.change_metric, q.p_value, q.significant) == (0.0, "nps", 1.0, False)


def test_trend_change_falls_back_to_net_sentiment() -> None:
    march = _month_rows(date(2026, 3, 1), ["positive"] * 30 + ["negative"] * 10, 0)  # net +50
    april = _month_rows(date(2026, 4, 1), ["positive"] * 10 + ["negative"] * 30, 100)  # net -50
    p = batch_kpis(march + april, None, granularity="month").trend.periods[1]
    assert (p.nps_responses, p.change, p.change_metric, p.significant) == (0, -100.0, "net_sentiment", True)
    # x = +1/-1, mean 0.5, sample variance (40 - 40 * 0.25) / 39 = 30/39 in each month; se = sqrt(2 * (30/39) / 40)
    assert p.p_value == round(math.erfc(1.0 / math.sqrt(2 * (30 / 39) / 40) / math.sqrt(2)), 4)

    same = _month_rows(date(2026, 4, 1), ["positive"] * 30 + ["negative"] * 10, 100)
    q = batch_kpis(march + same, None, granularity="month").trend.periods[1]
    assert (q.change, q.change_metric, q.significant) == (0.0, "net_sentiment", False)


def test_single_answers_are_never_a_significant_change() -> None:
    rows = [_row(0, date(2026, 3, 2), nps=10), _row(1, date(2026, 3, 3), nps=0)]
    p = batch_kpis(rows, None, granularity="day").trend.periods[1]
    # both variances are 0 (one answer each) -> pooled variance 1: z = 2 / sqrt(1 * 2) = 1.41, p = 0.157
    assert (p.change, p.p_value, p.significant) == (-200.0, round(math.erfc(1.0), 4), False)


# --------------------------------------------------------------------------------------------------- groups and JSON


def test_by_language_and_segment() -> None:
    r = batch_kpis(_hand_rows(), None)
    assert [(g.key, g.count) for g in r.by_language] == [("it", 7), ("en", 4), ("unknown", 1)]
    it = r.by_language[0]
    # it rows 0 1 4 5 (P), 7 (passive), 11 (D), 8 unscored -> 100 * (4 - 1) / 6; detractor mean over 7 analysed rows
    assert (it.nps, it.nps_responses) == (50.0, 6)
    assert it.detractor_estimate == round((0.05 + 0.1 + 0.2 + 0.05 + 0.4 + 0.8 + 0.7) / 7, 4)
    assert list(r.by_segment) == ["region"]
    assert [(g.key, g.count) for g in r.by_segment["region"]] == [("north", 7), ("south", 4), ("unknown", 1)]
    unknown = r.by_segment["region"][2]  # the error row: an NPS answer but no text results
    assert (unknown.nps, unknown.net_sentiment, unknown.detractor_estimate) == (100.0, None, None)


def test_report_is_json_safe_without_nan() -> None:
    for rows in (_hand_rows(), [], [_row(0, ok=False)], [_row(0, date(2026, 3, 1), nps=7, csat=4, ces=3)]):
        dumped = batch_kpis(rows, Filters(date_from=date(2020, 1, 1)) if not rows else None).model_dump(mode="json")
        _no_nan(dumped)
        text = json.dumps(dumped, allow_nan=False)
        assert set(json.loads(text)) == {
            "filters", "count", "analysed", "nps", "nps_estimate", "csat", "ces", "sentiment",
            "topics", "touchpoints", "trend", "by_language", "by_segment", "matrix", "by_channel", "touchpoint_channel",
            "unclassified", "min_driver_support", "small_group",
        }
    empty = batch_kpis([], None)
    assert (empty.count, empty.nps.value, empty.sentiment.net, empty.trend.periods) == (0, None, None, [])
    one = batch_kpis([_row(0, date(2026, 3, 1), nps=7, csat=4, ces=3)], None)
    assert (one.nps.value, one.nps.ci_low, one.ces is not None and one.ces.ci_low) == (0.0, None, None)

    dumped = batch_kpis(_hand_rows(), None).model_dump(mode="json")
    assert set(dumped["topics"][0]) == {
        "id", "label", "count", "share", "sentiment", "net_sentiment", "nps", "nps_responses", "impact",
        "impact_ci_low", "impact_ci_high", "p_value", "significant", "detractor_estimate", "nps_ci_low", "nps_ci_high",
        "net_ci_low", "net_ci_high", "sentiment_rows", "nps_small", "net_small", "driver", "driver_notes",
        "concentration",
    }
    assert set(dumped["trend"]["periods"][0]) == {
        "period", "start", "count", "nps", "nps_ci_low", "nps_ci_high", "nps_responses", "net_sentiment",
        "detractor_estimate", "change", "change_metric", "p_value", "significant",
    }
    assert dumped["trend"]["periods"][0]["start"] == "2026-03-01"
    assert batch_kpis(_hand_rows(), None).model_dump() == batch_kpis(_hand_rows(), None).model_dump()  # deterministic


def test_topic_touchpoint_matrix_counts_co_mentions() -> None:
    from voce.service.analytics import topic_touchpoint_matrix

    def fact(i: int, topics: tuple[tuple[str, str], ...], tps: tuple[str, ...], ok: bool = True) -> RowFacts:
        return RowFacts(row=i, date=None, language="it", channel=None, segments={}, nps=None, csat=None, ces=None,
                        sentiment="negative", positive=0.1, negative=0.8, detractor=0.5 + 0.1 * i, topics=topics,
                        touchpoints=tps, ok=ok)

    cells = topic_touchpoint_matrix([
        fact(0, (("delivery", "negative"),), ("web", "delivery")),
        fact(1, (("delivery", "positive"), ("price", "negative")), ("web",)),
        fact(2, (("delivery", "negative"),), ("web",), ok=False),  # error rows never count
        fact(3, (("price", "neutral"),), ()),  # no touchpoint: no cell
    ])
    by = {(c.topic, c.touchpoint): c for c in cells}
    assert set(by) == {("delivery", "web"), ("delivery", "delivery"), ("price", "web")}
    web = by[("delivery", "web")]
    assert web.count == 2 and web.net_sentiment == 0.0 and web.detractor_estimate == 0.55  # (+1 - 1) / 2; (0.5 + 0.6) / 2
    assert by[("price", "web")].net_sentiment == -100.0 and cells[0].topic == "delivery" and cells[0].touchpoint == "web"


# --------------------------------------------------------------------------------------------------- channels


def _channel_rows() -> list[RowFacts]:
    """8 rows: where the feedback was collected (channel) apart from what the text is about (touchpoints).

    Row 6 has no channel; row 7 is an error row collected through the app (its NPS answer still counts there).
    """
    return [
        _row(0, channel="mobile_app", touchpoints=("store",), sentiment="negative", nps=2, detractor=0.8),
        _row(1, channel="mobile_app", touchpoints=("store", "mobile_app"), sentiment="positive", nps=10, detractor=0.1),
        _row(2, channel="mobile_app", sentiment="negative", nps=4, detractor=0.7),
        _row(3, channel="store", touchpoints=("store",), sentiment="positive", nps=9, detractor=0.2),
        _row(4, channel="store", touchpoints=("store",), sentiment="neutral", nps=7, detractor=0.4),
        _row(5, channel="fax", touchpoints=("billing",), sentiment="negative", detractor=0.9),
        _row(6, channel=None, touchpoints=("store",), sentiment="mixed", nps=8, detractor=0.5),
        _row(7, channel="mobile_app", nps=0, ok=False),
    ]


CHANNEL_NAMES = {"mobile_app": "Mobile app", "store": "Store"}


def test_by_channel_by_hand() -> None:
    r = batch_kpis(_channel_rows(), None, labels={"fax": "Fax (a topic id)"}, channel_labels=CHANNEL_NAMES,
                   min_theme_count=2)
    # a channel that is a touchpoint id is named like it; any other by its own value (never by a topic's name)
    assert [(c.id, c.label, c.count) for c in r.by_channel] == [
        ("mobile_app", "Mobile app", 4), ("store", "Store", 2), ("fax", "fax", 1)
    ]
    app, store, fax = r.by_channel
    # mobile_app: rows 0 1 2 7 (the error row counts: the channel is an input); sentiment of analysed rows 0 1 2
    assert (app.share, app.sentiment.positive, app.sentiment.negative, app.net_sentiment) == (0.5, 1, 2, -33.33)
    # answers 2 10 4 0 -> 1 promoter, 3 detractors of 4
    assert (app.nps, app.nps_responses, app.detractor_estimate) == (-50.0, 4, round((0.8 + 0.1 + 0.7) / 3, 4))
    # overall: 2 10 4 9 7 8 0 -> 100 * (2 - 3) / 7; without the app: 9 7 8 -> 100 * 1 / 3
    assert app.impact == round(100 * (2 - 3) / 7 - 100 / 3, 2)
    # store: rows 3 4, positive + neutral -> net +50; answers 9 7 -> 50; without it: 2 10 4 8 0 -> 100 * (1 - 3) / 5
    assert (store.net_sentiment, store.nps, store.impact) == (50.0, 50.0, round(100 * (2 - 3) / 7 + 40, 2))
    assert (fax.net_sentiment, fax.nps, fax.nps_responses, fax.impact, fax.significant) == (-100.0, None, 0, None, False)
    # the text-derived touchpoints are their own breakdown: row 6 has no channel, yet it is about the store
    assert [(t.id, t.count) for t in r.touchpoints] == [("store", 5), ("billing", 1), ("mobile_app", 1)]

    assert batch_kpis(_channel_rows(), None, labels={"store": "Store"}).by_channel[1].label == "Store"  # default
    assert batch_kpis([_row(0, channel=None)], None).by_channel == []  # no channel column: no breakdown


def test_touchpoint_channel_matrix_by_hand() -> None:
    cells = batch_kpis(_channel_rows(), None).touchpoint_channel
    # analysed rows with a touchpoint and a channel: row 2 (no touchpoint), 6 (no channel) and 7 (error) are out
    assert [(c.touchpoint, c.channel, c.count, c.net_sentiment, c.detractor_estimate) for c in cells] == [
        ("store", "mobile_app", 2, 0.0, 0.45),  # "the store, written in the app": one negative, one positive
        ("store", "store", 2, 50.0, 0.3),  # positive + neutral
        ("billing", "fax", 1, -100.0, 0.9),
        ("mobile_app", "mobile_app", 1, 100.0, 0.1),
    ]


def test_channel_filter_equals_its_breakdown_entry() -> None:
    rows = _channel_rows()
    assert [r.row for r in apply_filters(rows, Filters(channel=" Mobile_App "))] == [0, 1, 2, 7]
    assert [r.row for r in apply_filters(rows, Filters(channel="unknown"))] == [6]
    assert [r.row for r in apply_filters(rows, Filters(channel="fax", touchpoint="billing"))] == [5]
    legacy = [_row(0, channel="App"), _row(1, channel=" app")]  # stored before channels were lower-cased
    assert [r.row for r in apply_filters(legacy, Filters(channel="app"))] == [0, 1]

    full = batch_kpis(rows, None, min_theme_count=2)
    for entry in full.by_channel:
        one = batch_kpis(rows, Filters(channel=entry.id))
        assert (one.count, one.nps.value, one.nps.responses, one.sentiment.net) == (
            entry.count, entry.nps, entry.nps_responses, entry.net_sentiment
        )
        assert [c.id for c in one.by_channel] == [entry.id]
    assert batch_kpis(rows, Filters(channel="mobile_app")).filters.channel == ["mobile_app"]


def test_channel_filter_validation() -> None:
    assert Filters(channel="  ").channel is None  # a blank query parameter filters nothing
    assert Filters(channel=" Negozio ").channel == ["negozio"]
    with pytest.raises(ValidationError, match="at most 64"):
        Filters(channel="x" * 65)


# --------------------------------------------------------------------------------------------------- multi-select


@pytest.mark.parametrize(
    ("filters", "expected_rows"),
    [
        (Filters(topic=["delivery", "staff"]), [0, 1, 2, 4, 5, 7, 9]),  # any of them
        (Filters(language=["EN", "unknown"]), [2, 3, 6, 9, 10]),
        (Filters.model_validate({"segment": ["region:north", "region:unknown"]}), [0, 1, 3, 5, 7, 9, 10, 11]),
        (Filters(segment={"region": ["south"]}, topic=["price", "delivery"]), [2, 4, 6, 8]),  # AND across fields
        (Filters(topic=["price", " price ", ""]), [0, 2, 3, 6, 7, 8, 11]),  # duplicates and blanks dropped
    ],
)
def test_multi_select_filters(filters: Filters, expected_rows: list[int]) -> None:
    assert [r.row for r in apply_filters(_hand_rows(), filters)] == expected_rows


def test_multi_select_parsing_round_trips_through_query_params() -> None:
    f = Filters.model_validate(
        {"topic": ["price", "staff"], "channel": [" App ", "app", "Negozio"], "language": "IT",
         "segment": ["region:north", "region:south", "tier:gold"], "period": "2026-03"}
    )
    assert f.topic == ["price", "staff"] and f.channel == ["app", "negozio"] and f.language == ["it"]
    assert f.segment == {"region": ["north", "south"], "tier": ["gold"]}
    pairs = f.query_params()
    assert ("segment", "region:south") in pairs and pairs.count(("topic", "price")) == 1
    grouped: dict[str, list[str]] = {}
    for key, value in pairs:
        grouped.setdefault(key, []).append(value)
    again = Filters.model_validate({k: v if k in ("topic", "channel", "language", "segment", "touchpoint") else v[0]
                                    for k, v in grouped.items()})
    assert again == f
    assert Filters(topic=[" ", ""]).topic is None and Filters().is_empty() and not f.is_empty()
    with pytest.raises(ValidationError):
        Filters(topic=["x"] * 1 + [str(i) for i in range(60)])
    with pytest.raises(ValidationError):
        Filters.model_validate({"segment": ["region:north", "no-colon"]})


# --------------------------------------------------------------------------------------------------- drivers


def _driver_rows() -> list[RowFacts]:
    """200 scored rows. 185 through the web: rows 0-59 mention price with a detractor score (a real driver, 60
    answers across both regions); rows 60-184 promoters and passives, 100-184 also the catch-all "other" (promoters:
    it would be the top positive driver). 15 through twitter (rows 185-199): security (significant on
    its own, but 15 answers from one source; rows 190-192 promoters, the rest detractors). Region "tiny" = rows
    190-199 (10 rows, 3 promoters, 7 detractors)."""
    rows = []
    topics: tuple[tuple[str, str], ...]
    for i in range(200):
        if i < 60:
            nps, topics, channel = 2, (("price", "negative"),), "web"
        elif i < 100:
            nps, topics, channel = (9 if i % 2 else 7), (), "web"
        elif i < 185:
            nps, topics, channel = 10, (("other", "positive"),), "web"
        else:
            nps, topics, channel = (10 if i in (190, 191, 192) else 0), (("security_privacy", "negative"),), "twitter"
        rows.append(_row(i, region="tiny" if i >= 190 else ("north" if i % 2 else "south"), nps=nps,
                         sentiment="negative" if nps <= 6 else "positive", topics=topics, channel=channel))
    return rows


def test_catch_all_is_never_a_driver_and_is_reported_apart() -> None:
    r = batch_kpis(_driver_rows(), None)
    assert "other" not in [t.id for t in r.topics]
    other = r.unclassified
    assert other is not None and other.id == "other" and other.count == 85
    assert other.impact is not None and other.impact > 0  # it does move the score ...
    assert (other.driver, other.significant, other.p_value, other.driver_notes) == (False, False, None, ["catch_all"])
    # ... but it is not tested, so it does not take part in the others' BH correction either
    tested = [t for t in r.topics if t.p_value is not None]
    assert [t.significant for t in tested] == benjamini_hochberg([t.p_value for t in tested])  # type: ignore[misc]
    assert batch_kpis(_driver_rows(), None, catch_all=()).unclassified is None  # no catch-all configured


def test_driver_needs_support_and_says_when_it_rests_on_one_source() -> None:
    r = batch_kpis(_driver_rows(), None)
    price, security = _theme(r, "price"), _theme(r, "security_privacy")
    assert price.driver and price.significant and price.driver_notes == [] and price.concentration is None
    assert price.impact is not None and price.impact < 0
    # significant on 15 answers, all of them tweets: impact shown, not a driver, and the page is told why
    assert security.significant and security.nps_responses == 15 and not security.driver
    assert security.driver_notes == ["low_support"]
    conc = security.concentration
    assert conc is not None and (conc.dimension, conc.column, conc.value, conc.share) == ("channel", None, "twitter", 1.0)
    assert conc.base_share == pytest.approx(15 / 200)
    # with the support lowered it becomes a driver, and still says where it comes from
    low = _theme(batch_kpis(_driver_rows(), None, min_driver_support=10), "security_privacy")
    assert low.driver and low.concentration is not None
    # a segment value can be the single source too; "unknown" never is
    seg = batch_kpis(_driver_rows(), Filters(channel="twitter"), min_theme_count=2, min_driver_support=1)
    only = _theme(seg, "security_privacy")
    assert only.concentration is None  # every row of the selection is a tweet: not concentrated relative to it
    no_source = [_row(i, nps=0 if i < 5 else 9, topics=(("price", "negative"),) if i < 5 else (), channel=None)
                 for i in range(40)]
    assert _theme(batch_kpis(no_source, None), "price").concentration is None


def test_small_groups_are_marked_with_their_interval() -> None:
    r = batch_kpis(_driver_rows(), None)
    tiny = next(g for g in r.by_segment["region"] if g.key == "tiny")
    # 3 promoters, 7 detractors of 10: NPS -40, var = 0.3 + 0.7 - 0.16 = 0.84 -> +/- 1.96 sqrt(0.084) = 56.8 points
    assert (tiny.count, tiny.nps, tiny.nps_responses, tiny.nps_small) == (10, -40.0, 10, True)
    half = 100 * Z * math.sqrt(0.84 / 10)
    assert tiny.nps_ci_low == pytest.approx(-40 - half, abs=0.01) and tiny.nps_ci_high == pytest.approx(-40 + half, abs=0.01)
    assert tiny.net_small and tiny.sentiment_rows == 10 and tiny.net_ci_high - tiny.net_ci_low > 100  # type: ignore[operator]
    big = next(g for g in r.by_segment["region"] if g.key == "north")
    assert not big.nps_small and not big.net_small and big.nps_ci_low is not None
    price = _theme(r, "price")
    assert not price.nps_small and price.nps_ci_low == price.nps_ci_high == -100.0  # 60 detractors: a zero-width CI
    assert _theme(r, "security_privacy").nps_small
    lang = r.by_language[0]
    assert lang.nps_ci_low is not None and lang.nps_ci_low <= lang.nps <= lang.nps_ci_high  # type: ignore[operator]


# --------------------------------------------------------------------------------------------------- comparison


def test_compare_two_periods_by_hand() -> None:
    """March vs April of the hand rows. March (rows 0-5): NPS answers 10 9 3 6 9 10 -> P4 D2 n6 -> +33.33;
    April (rows 6-10): 0 7 9 (row 10 is an error row with an answer) -> P1 D1 n3 -> 0."""
    c = compare(_hand_rows(), _hand_rows(), Filters(period="2026-03"), Filters(period="2026-04"),
                label_a="marzo", label_b="aprile")
    assert (c.a.label, c.a.count, c.b.count, c.b.analysed) == ("marzo", 6, 5, 4)
    nps = c.kpis["nps"]
    assert (nps.a, nps.b, nps.n_a, nps.n_b, nps.diff) == (round(100 * 2 / 6, 2), 0.0, 6, 3, round(-100 * 2 / 6, 2))
    var_a, var_b = 6 / 6 - (2 / 6) ** 2, 2 / 3 - 0.0
    half = 100 * Z * math.sqrt(var_a / 6 + var_b / 3)
    assert nps.ci_low == pytest.approx(nps.diff - half, abs=0.01) and nps.ci_high == pytest.approx(nps.diff + half, abs=0.01)
    z = (-2 / 6) / math.sqrt(var_a / 6 + var_b / 3)
    assert nps.p_value == pytest.approx(math.erfc(abs(z) / math.sqrt(2)), abs=1e-4) and nps.small
    assert c.kpis["count"].diff == -1.0 and c.kpis["count"].p_value is None
    # price: March rows 0 2 3 of 6 analysed; April rows 6 7 8 of 4 analysed
    price = next(t for t in c.topics if t.id == "price")
    assert (price.count_a, price.count_b, price.share.a, price.share.b) == (3, 3, 0.5, 0.75)
    pooled = 6 / 10
    z_share = 0.25 / math.sqrt(pooled * (1 - pooled) * (1 / 6 + 1 / 4))
    assert price.share.p_value == pytest.approx(math.erfc(z_share / math.sqrt(2)), abs=1e-4)
    # one BH correction over every p-value that was computed
    deltas = [c.kpis[k] for k in ("nps", "net_sentiment", "csat")]
    deltas += [d for t in c.topics + c.touchpoints for d in (t.share, t.net_sentiment, t.nps)]
    tested = [d for d in deltas if d.p_value is not None]
    assert len(tested) == c.tests
    json.dumps(c.model_dump(mode="json"), allow_nan=False)


def test_compare_flags_a_real_change_and_keeps_the_catch_all_apart() -> None:
    before = [_row(i, nps=9 if i % 4 else 3, sentiment="positive", topics=(("other", "positive"),) if i < 20 else (
        ("delivery", "positive"),)) for i in range(120)]
    after = [_row(i, nps=2 if i % 2 else 9, sentiment="negative" if i % 2 else "positive",
                  topics=(("delivery", "negative"),) if i % 2 else (("other", "positive"),)) for i in range(120)]
    c = compare(before, after)
    assert c.kpis["nps"].significant and c.kpis["nps"].diff is not None and c.kpis["nps"].diff < -40
    assert not c.kpis["nps"].small
    assert "other" not in [t.id for t in c.topics] and c.unclassified is not None
    delivery = next(t for t in c.topics if t.id == "delivery")
    assert delivery.net_sentiment.significant and delivery.net_sentiment.diff == -200.0  # +100 -> -100
    same = compare(before, before)
    assert not any(d.significant for d in same.kpis.values()) and same.kpis["nps"].p_value == 1.0
    empty = compare([], before)
    assert empty.kpis["nps"].diff is None and empty.kpis["nps"].p_value is None and empty.a.count == 0
