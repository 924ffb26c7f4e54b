"""CX KPIs, NPS drivers and trends for one analysed batch: pure functions, no HTTP, no database.

The API and the batch web page show these numbers to people who make decisions with them, so every figure is
defined here once, in words, and the report says when a number is an estimate.

Definitions
-----------
* **Survey scores are answers, not model output.** NPS, CSAT and CES use every row that matches the filters and
  carries a score, including rows whose text could not be analysed (error rows). Out-of-range answers (NPS outside
  0-10, CSAT outside 1-5, CES outside 1-7) are treated as missing. Sentiment, topics, touchpoints and detractor
  probabilities come from the text and use analysed rows only (``ok``).
* **NPS** = 100 x (share of promoters, 9-10, minus share of detractors, 0-6) over rows with a score, in points
  (-100..100). 95% CI: normal approximation with the multinomial variance
  ``var = (p_p + p_d - (p_p - p_d)^2) / n``, clipped to [-100, 100]. With fewer than 2 answers the CI is null;
  when every answer falls in one category the variance is 0 and the interval has zero width (a known limit of the
  normal approximation on tiny samples).
* **NPS estimate** (``nps_estimate``): for analysed rows *without* an NPS answer, the mean text-predicted
  probability of being a detractor (0-6). It is an estimate from a calibrated model, never mixed into the NPS.
  95% CI: Wilson interval treating the mean as a proportion over those rows; it assumes the probabilities are
  calibrated and does not include the model's own error.
* **CSAT** = % of 4-5 answers on the 1-5 scale, Wilson 95% CI. **CES** = mean answer (1-7), t-based 95% CI.
* **Net sentiment** = % positive - % negative in points (-100..100) over analysed rows with a sentiment label;
  neutral and mixed count in the denominator only. For a topic it uses that topic's own sentiment label in each
  row; for a touchpoint or a channel, the row's sentiment.
* **Shares and probabilities** (``share``, ``detractor_share``, ``detractor_estimate``, ``p_value``) are
  fractions 0..1 rounded to 4 decimals; percent-like values (NPS, CSAT, net sentiment, impact, change) are points
  rounded to 2 decimals. Nothing is ever NaN: a value that cannot be computed is null.
* **Impact** of a theme T (the Thematic/Kapiche driver method) = NPS(all scored rows) - NPS(scored rows not
  mentioning T): how much the overall NPS would move if T's comments were removed. A theme that pulls the score
  down has a negative impact. Since NPS(all) is the response-weighted mean of the two groups,
  ``impact = w x (NPS_T - NPS_notT)`` with ``w = n_T / n``; its 95% CI is the delta-method interval
  ``impact +/- 1.96 x w x sqrt(var_T / n_T + var_notT / n_notT)`` (w held fixed, variances from the NPS formula),
  clipped to [-200, 200]. Significance: a two-sided z-test of NPS_T vs NPS_notT with the same per-group variances,
  then Benjamini-Hochberg at q = 0.05 across the tested topics (and, separately, across the tested touchpoints and
  across the tested channels):
  ``significant`` is the BH decision, ``p_value`` the raw p. Themes with fewer than ``min_theme_count`` scored rows,
  or mentioned by every scored row, are not tested: impact, CI and p-value are null and ``significant`` is false.
  Without any NPS answer, impact and theme NPS are null; ``detractor_estimate`` (mean predicted probability over
  the rows mentioning the theme) is still filled.
* **Drivers.** A topic, touchpoint or channel is a *driver* (``driver``) when its impact is BH-significant, it
  rests on at least ``min_driver_support`` (20) scored rows, and it is not the taxonomy's catch-all topic;
  ``driver_notes`` says why not otherwise (codes: ``catch_all``, ``low_support``, ``not_tested``,
  ``not_significant``). Below that support the impact and its interval are still reported: 15 tweets can be
  "significant" and still be no basis for a decision. The catch-all topic (``other``, "Impressione generale")
  collects comments with no specific theme; it is never tested, never a driver, and is reported apart as
  ``unclassified`` ("not otherwise classified"), not in ``topics``.
* **One source.** ``concentration`` is set when at least 80% of a theme's rows come from one channel or one value
  of a segment column that holds at most 50% of the rows the theme could come from (analysed rows; all rows for a
  channel): the theme then says which source it rests on. Rows without a channel or value are never a source; a
  selection filtered to one source is therefore never "concentrated" in it.
* **Intervals and small groups.** Every group and theme figure carries its 95% interval: NPS with the formula
  above, net sentiment with the same +1/0/-1 variance (``net_ci_low``/``net_ci_high`` over ``sentiment_rows``).
  A figure resting on 1..29 rows is marked small (``nps_small``, ``net_small``): read its interval, not its value.
* **Degenerate variances.** When a group's variance estimate is 0 (one answer, or all answers in one category)
  the unpooled standard error understates the uncertainty (one promoter vs one detractor would look "certain"),
  so z-tests then use the pooled variance of both groups, as under the null hypothesis.
* **Trend.** Rows without a date are left out of the trend. Granularity "auto": date span <= 45 days -> day,
  <= 40 weeks -> week, else month; then coarser (day -> week -> month) while the average number of dated rows per
  period is below 20. Weeks are ISO weeks ("2026-W09", starting Monday, ISO year); months "2026-03"; days
  "2026-03-05". Periods are chronological and empty periods inside the span are listed with count 0 and null stats.
  ``change`` compares each period with the one before it: on NPS when both have at least one NPS answer (z-test
  on the difference, NPS variance formula), otherwise on net sentiment (z-test on the difference of means of a
  +1/0/-1 variable, sample variances). p < 0.05 -> ``significant``; there is NO multiple-testing correction across
  periods, so on a long trend some flags are expected by chance.
* **Groups.** ``by_language`` has one entry per language code (lower-cased; "unknown" when missing);
  ``by_segment`` one list per segment column present in any row, rows without that column under "unknown".
  The filters ``language="unknown"`` and ``segment="col:unknown"`` select those rows.
* **Comparison** (:func:`compare`): side B against side A (two periods, two uploads, any two selections),
  ``diff`` = B - A. NPS and net sentiment: the difference with its 95% interval from the per-side variances above
  and the z-tests used for trend changes; shares of comments and CSAT: two-proportion z-test (pooled under H0),
  unpooled interval. Benjamini-Hochberg at q = 0.05 within each section (KPIs; every topic test; every touchpoint
  test); a side with fewer than 2 rows is not tested; a side with 1..29 rows is marked small.
* **Filters** are multi-select: within a field any value matches, across fields every field must match; segment
  values of one column are alternatives, different columns all apply. :class:`Filters` is the one parser of the
  filter query parameters (API, page links, CLI, saved views).
* **Channel and touchpoint are different facts.** The *channel* is where the feedback was collected (the upload's
  channel column, stored as the taxonomy's touchpoint id when it names one, else as the value itself, lower-cased);
  *touchpoints* are what the text talks about. ``by_channel`` has the shape of ``touchpoints`` (sentiment, NPS
  impact where answers exist), over the rows with a channel; since the channel is an input like the survey answers,
  a channel's ``count`` and NPS include its error rows and its ``share`` is of all rows in the selection, so an
  entry always equals the report filtered by that channel. A channel that is a touchpoint id is named like that
  touchpoint, any other channel by its own value. The filter ``channel="unknown"`` selects the rows without one.
  ``touchpoint_channel`` crosses the two ("complaints about the store, written in the app"): analysed rows per
  (touchpoint found in the text, channel), with the net sentiment of those rows.
"""
from __future__ import annotations

import datetime
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from scipy.special import stdtrit

from voce.models.labels import SENTIMENT_LABELS as LABELS_4

Granularity = Literal["day", "week", "month"]
SENTIMENT_LABELS: tuple[str, ...] = tuple(LABELS_4)
UNKNOWN = "unknown"
CHANNEL_MAX_CHARS = 64  # the stored channel column's width
SIGNIFICANCE_LEVEL = 0.05  # BH q for themes, plain alpha for trend changes
#: the taxonomy's catch-all topic ("Impressione generale"): never a driver, reported apart as not otherwise classified
CATCH_ALL_TOPICS: tuple[str, ...] = ("other",)
#: a driver needs at least this many scored rows mentioning it (below: impact shown, never called a driver)
MIN_DRIVER_SUPPORT = 20
#: a figure resting on fewer rows than this is marked small (its interval is wide; the page says so)
SMALL_GROUP = 30
#: "rests on one source": at least this share of a theme's rows come from one channel or segment value ...
CONCENTRATION_SHARE = 0.8
#: ... that holds at most this share of all the rows the theme could have come from
CONCENTRATION_BASE_MAX = 0.5
_Z95 = 1.959963984540054  # standard normal 97.5% quantile
_SENT_CODE = {label: i for i, label in enumerate(SENTIMENT_LABELS)}
_POS, _NEU, _NEG, _MIX = range(4)
_DAY_SPAN_MAX = 45  # days
_WEEK_SPAN_MAX = 40 * 7  # days
_MIN_ROWS_PER_PERIOD = 20
_NPS_METHOD = (
    "mean calibrated P(detractor, NPS 0-6) predicted from the text over analysed rows without an NPS answer; "
    "95% Wilson interval over those rows, assuming calibrated probabilities (model error not included)"
)


@dataclass(frozen=True, slots=True)
class RowFacts:
    """What analytics needs from one analysed upload row; built from a stored row by :func:`voce.service.batches.rows.facts`."""

    row: int  # row index in the upload
    date: datetime.date | None
    language: str | None  # 'it', 'en', ...
    channel: str | None  # where the feedback was collected: a touchpoint id, else the raw value lower-cased
    segments: dict[str, str]  # segment column -> value
    nps: int | None  # 0..10 answer, None if missing
    csat: int | None  # 1..5
    ces: int | None  # 1..7
    sentiment: str | None  # 'positive'|'neutral'|'negative'|'mixed'; None for error rows
    positive: float  # calibrated P(positive) (0 for error rows)
    negative: float  # calibrated P(negative)
    detractor: float | None  # predicted P(NPS 0-6) from text; None for error rows
    topics: tuple[tuple[str, str], ...]  # (topic id, that topic's sentiment label) for topics found in the row
    touchpoints: tuple[str, ...]  # touchpoint ids found in the text, primary first
    ok: bool  # False when the row could not be analysed (error row)


# --------------------------------------------------------------------------------------------------- filters


def parse_segment(value: str) -> dict[str, str]:
    """``"region:north"`` -> ``{"region": "north"}``: the query-string form of a segment filter.

    Split on the first colon so values may contain colons ("slot:10:30"); both sides are stripped.
    """
    col, sep, val = value.partition(":")
    col, val = col.strip(), val.strip()
    if not sep or not col or not val:
        raise ValueError(f"segment filter must look like 'column:value', got {value!r}")
    return {col: val}


_MONTH_RE = re.compile(r"^(\d{4})-(\d{2})$")
_WEEK_RE = re.compile(r"^(\d{4})-[Ww](\d{2})$")
_DAY_RE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})$")


def parse_period(value: str) -> tuple[Granularity, datetime.date, datetime.date]:
    """A period label as shown in the trend -> (granularity, first day, day after the last).

    Accepts exactly the labels the trend emits ("2026-03", "2026-W09", "2026-03-05"), so clicking a trend point
    filters to it.
    """
    text = value.strip()
    try:
        if m := _MONTH_RE.match(text):
            start = datetime.date(int(m[1]), int(m[2]), 1)
            return "month", start, _next_start(start, "month")
        if m := _WEEK_RE.match(text):
            start = datetime.date.fromisocalendar(int(m[1]), int(m[2]), 1)
            return "week", start, start + datetime.timedelta(days=7)
        if m := _DAY_RE.match(text):
            start = datetime.date(int(m[1]), int(m[2]), int(m[3]))
            return "day", start, start + datetime.timedelta(days=1)
    except ValueError as exc:
        raise ValueError(f"invalid period {value!r}: {exc}") from None
    raise ValueError(f"period must look like 2026-03, 2026-W09 or 2026-03-05, got {value!r}")


FilterValues = list[str]
#: at most this many values per filter field (a URL with more is not a selection a person made)
MAX_FILTER_VALUES = 50


def _values(value: Any, *, lower: bool = False, max_chars: int | None = None, name: str = "value") -> list[str] | None:
    """One string or a list of strings -> the distinct non-blank values in order; None when nothing is left.

    A blank query parameter filters nothing (``?channel=`` is "all"), like a blank segment."""
    if value is None:
        return None
    items = [value] if isinstance(value, str) else list(value)
    out: list[str] = []
    for item in items:
        if not isinstance(item, str):
            raise ValueError(f"{name} values must be strings, got {type(item).__name__}")
        key = item.strip().lower() if lower else item.strip()
        if not key or key in out:
            continue
        if max_chars is not None and len(key) > max_chars:
            raise ValueError(f"{name} is at most {max_chars} characters, got {len(key)}")
        out.append(key)
    if len(out) > MAX_FILTER_VALUES:
        raise ValueError(f"at most {MAX_FILTER_VALUES} {name} values, got {len(out)}")
    return out or None


class Filters(BaseModel):
    """Which rows of a batch a report covers: the one parser of the filter query parameters (API, page, CLI).

    Every field is multi-select: a row matches a field when it matches ANY of its values (OR), and it must match
    every set field (AND). Segments: OR over the values of one column, AND across columns
    (``segment=region:north&segment=region:south&segment=tier:gold`` = (north or south) and gold). A single string
    is accepted wherever a list is. Echoed back in the report, always as lists."""

    model_config = ConfigDict(extra="forbid")

    touchpoint: FilterValues | None = None  # rows where any of these touchpoint ids was found in the text
    channel: FilterValues | None = None  # collected through any of these channels (as in by_channel); "unknown" = none
    topic: FilterValues | None = None  # rows where any of these topic ids was found
    language: FilterValues | None = None  # language codes (case-insensitive); "unknown" = rows without a language
    segment: dict[str, FilterValues] | None = None  # column -> values; "col:value" strings (or a list) are accepted
    period: str | None = None  # "2026-03" (month), "2026-W09" (ISO week) or "2026-03-05" (day)
    date_from: datetime.date | None = None  # inclusive
    date_to: datetime.date | None = None  # inclusive

    @field_validator("touchpoint", "topic", mode="before")
    @classmethod
    def _plain_values(cls, value: Any, info: Any) -> Any:
        return _values(value, name=info.field_name)

    @field_validator("language", mode="before")
    @classmethod
    def _language_values(cls, value: Any) -> Any:
        return _values(value, lower=True, name="language")

    @field_validator("channel", mode="before")
    @classmethod
    def _channel_values(cls, value: Any) -> Any:
        return _values(value, lower=True, max_chars=CHANNEL_MAX_CHARS, name="channel")

    @field_validator("segment", mode="before")
    @classmethod
    def _segment_values(cls, value: Any) -> Any:
        if value is None:
            return None
        pairs: list[tuple[str, Any]] = []
        if isinstance(value, dict):
            pairs = list(value.items())
        else:
            for item in [value] if isinstance(value, str) else list(value):
                if not isinstance(item, str):
                    raise ValueError(f"segment values must be 'column:value' strings, got {type(item).__name__}")
                if item.strip():
                    pairs.extend(parse_segment(item).items())
        out: dict[str, list[str]] = {}
        for col, vals in pairs:
            col = str(col).strip()
            found = _values(vals, name=f"segment {col!r}")
            if not col or not found:
                continue
            merged = out.setdefault(col, [])
            merged.extend(v for v in found if v not in merged)
        return out or None

    @field_validator("period")
    @classmethod
    def _period_valid(cls, value: str | None) -> str | None:
        if value is not None:
            if not value.strip():
                return None
            parse_period(value)
            return value.strip()
        return value

    @model_validator(mode="after")
    def _range_ordered(self) -> Filters:
        if self.date_from and self.date_to and self.date_from > self.date_to:
            raise ValueError(f"date_from {self.date_from} is after date_to {self.date_to}")
        return self

    def query_params(self) -> list[tuple[str, str]]:
        """The filters as query-string pairs (repeated keys for several values): ``Filters(**parsed)`` gives them
        back, so a saved view or a shared link round-trips through the same parser."""
        out: list[tuple[str, str]] = []
        for key in ("topic", "touchpoint", "channel", "language"):
            out.extend((key, v) for v in getattr(self, key) or [])
        for col, vals in (self.segment or {}).items():
            out.extend(("segment", f"{col}:{v}") for v in vals)
        if self.period:
            out.append(("period", self.period))
        if self.date_from:
            out.append(("date_from", self.date_from.isoformat()))
        if self.date_to:
            out.append(("date_to", self.date_to.isoformat()))
        return out

    def is_empty(self) -> bool:
        return not self.query_params()


def _language_key(row: RowFacts) -> str:
    return (row.language or "").strip().lower() or UNKNOWN


def _channel_key(row: RowFacts) -> str:
    return (row.channel or "").strip().lower() or UNKNOWN


def _segment_key(row: RowFacts, column: str) -> str:
    value = row.segments.get(column)
    return value if value not in (None, "") else UNKNOWN


def apply_filters(rows: Iterable[RowFacts], filters: Filters | None) -> list[RowFacts]:
    """The rows a report covers, in input order. Error rows stay in unless a filter needs text results."""
    rows = list(rows)
    if filters is None:
        return rows
    checks: list[Any] = []
    if filters.topic:
        topics = frozenset(filters.topic)
        checks.append(lambda r: any(t in topics for t, _ in r.topics))
    if filters.touchpoint:
        touchpoints = frozenset(filters.touchpoint)
        checks.append(lambda r: any(t in touchpoints for t in r.touchpoints))
    if filters.channel:
        channels = frozenset(filters.channel)
        checks.append(lambda r: _channel_key(r) in channels)
    if filters.language:
        languages = frozenset(filters.language)
        checks.append(lambda r: _language_key(r) in languages)
    if filters.segment:
        wanted = {c: frozenset(v) for c, v in filters.segment.items()}
        checks.append(lambda r: all(_segment_key(r, c) in v for c, v in wanted.items()))
    lo: datetime.date | None = filters.date_from
    hi: datetime.date | None = filters.date_to + datetime.timedelta(days=1) if filters.date_to else None  # exclusive
    if filters.period is not None:
        _, start, end = parse_period(filters.period)
        lo = max(lo, start) if lo else start
        hi = min(hi, end) if hi else end
    if lo is not None or hi is not None:
        lo_, hi_ = lo, hi
        checks.append(lambda r: r.date is not None and (lo_ is None or r.date >= lo_) and (hi_ is None or r.date < hi_))
    return [r for r in rows if all(check(r) for check in checks)]


# --------------------------------------------------------------------------------------------------- report shapes


class NpsStat(BaseModel):
    """Measured NPS from survey answers (never from predictions)."""

    value: float | None
    ci_low: float | None
    ci_high: float | None
    promoters: int
    passives: int
    detractors: int
    responses: int


class NpsEstimate(BaseModel):
    """Predicted detractor share where no NPS answer exists; labelled so no one mistakes it for a measured NPS."""

    detractor_share: float
    ci_low: float
    ci_high: float
    rows: int
    estimated: Literal[True] = True
    method: str = _NPS_METHOD


class CsatStat(BaseModel):
    value: float  # % of 4-5 answers
    ci_low: float
    ci_high: float
    responses: int


class CesStat(BaseModel):
    mean: float
    ci_low: float | None  # null with a single answer (no variance)
    ci_high: float | None
    responses: int


class SentimentStat(BaseModel):
    positive: int
    neutral: int
    negative: int
    mixed: int
    net: float | None  # null only when no row was analysed


class SentimentCounts(BaseModel):
    positive: int
    neutral: int
    negative: int
    mixed: int


DriverNote = Literal["catch_all", "low_support", "not_tested", "not_significant"]


class Concentration(BaseModel):
    """Most of a theme's rows come from one source: a channel or one value of a segment column."""

    dimension: Literal["channel", "segment"]
    column: str | None  # the segment column; None for the channel
    value: str
    share: float  # of the theme's rows, 0..1
    base_share: float  # of all the rows in the selection (analysed rows for text themes), 0..1


class ThemeStat(BaseModel):
    """One topic, touchpoint or channel: how often, how people feel, and how much it moves NPS."""

    id: str
    label: str
    count: int  # analysed rows mentioning it (a channel: every row collected through it, error rows included)
    share: float  # count / analysed rows (a channel: / all rows), 0..1
    sentiment: SentimentCounts
    net_sentiment: float | None
    nps: float | None
    nps_responses: int
    impact: float | None
    impact_ci_low: float | None
    impact_ci_high: float | None
    p_value: float | None  # raw two-sided p; `significant` is after Benjamini-Hochberg
    significant: bool
    detractor_estimate: float | None
    nps_ci_low: float | None = None  # the theme's own NPS, 95% CI (null under 2 answers)
    nps_ci_high: float | None = None
    net_ci_low: float | None = None  # net sentiment, 95% CI (same variance formula as NPS)
    net_ci_high: float | None = None
    sentiment_rows: int = 0  # rows with a sentiment label behind net_sentiment
    nps_small: bool = False  # 1..SMALL_GROUP-1 NPS answers: read the interval, not the number
    net_small: bool = False  # 1..SMALL_GROUP-1 rows behind net_sentiment
    driver: bool = False  # significant, enough support, not the catch-all: what the page calls a driver
    driver_notes: list[DriverNote] = Field(default_factory=list, description="Why it is not a driver (codes).")
    concentration: Concentration | None = Field(
        default=None, description="Set when the theme rests on one source (channel or segment value)."
    )


class PeriodStat(BaseModel):
    period: str
    start: datetime.date
    count: int
    nps: float | None
    nps_ci_low: float | None
    nps_ci_high: float | None
    nps_responses: int
    net_sentiment: float | None
    detractor_estimate: float | None
    change: float | None
    change_metric: Literal["nps", "net_sentiment"] | None
    p_value: float | None
    significant: bool


class TrendReport(BaseModel):
    granularity: Granularity
    periods: list[PeriodStat]


class GroupStat(BaseModel):
    """One language or segment value; every figure with its 95% interval and a mark when it rests on few rows."""

    key: str
    count: int
    nps: float | None
    nps_responses: int
    net_sentiment: float | None
    detractor_estimate: float | None
    nps_ci_low: float | None = None
    nps_ci_high: float | None = None
    net_ci_low: float | None = None
    net_ci_high: float | None = None
    sentiment_rows: int = 0
    nps_small: bool = False
    net_small: bool = False


class MatrixCell(BaseModel):
    """Analysed rows mentioning both a topic and a touchpoint; net sentiment uses the topic's own label."""

    topic: str
    touchpoint: str
    count: int
    net_sentiment: float | None
    detractor_estimate: float | None


def topic_touchpoint_matrix(rows: Iterable[RowFacts]) -> list[MatrixCell]:
    acc: dict[tuple[str, str], list[float]] = {}
    for r in rows:
        if not r.ok or not r.topics or not r.touchpoints:
            continue
        for topic, label in dict(r.topics).items():
            tone = 1.0 if label == "positive" else -1.0 if label == "negative" else 0.0
            for tp in set(r.touchpoints):
                a = acc.setdefault((topic, tp), [0.0, 0.0, 0.0, 0.0])  # count, tone sum, detractor sum, detractor n
                a[0] += 1
                a[1] += tone
                if r.detractor is not None:
                    a[2] += r.detractor
                    a[3] += 1
    return [
        MatrixCell(
            topic=t, touchpoint=tp, count=int(a[0]), net_sentiment=round(100.0 * a[1] / a[0], 2),
            detractor_estimate=round(a[2] / a[3], 4) if a[3] else None,
        )
        for (t, tp), a in sorted(acc.items(), key=lambda kv: (-kv[1][0], kv[0]))
    ]


class ChannelCell(BaseModel):
    """Analysed rows whose text is about a touchpoint and that came through a channel; net sentiment of those rows."""

    touchpoint: str
    channel: str
    count: int
    net_sentiment: float | None
    detractor_estimate: float | None


def touchpoint_channel_matrix(rows: Iterable[RowFacts]) -> list[ChannelCell]:
    """Touchpoint (from the text) x channel (where it was collected) over analysed rows with both; biggest first."""
    acc: dict[tuple[str, str], list[float]] = {}
    for r in rows:
        channel = _channel_key(r)
        if not r.ok or not r.touchpoints or channel == UNKNOWN:
            continue
        code = _SENT_CODE.get(r.sentiment or "", -1)
        for tp in dict.fromkeys(r.touchpoints):
            # count, rows with a sentiment, positive - negative, detractor sum, detractor n
            a = acc.setdefault((tp, channel), [0.0, 0.0, 0.0, 0.0, 0.0])
            a[0] += 1
            if code >= 0:
                a[1] += 1
                a[2] += 1.0 if code == _POS else -1.0 if code == _NEG else 0.0
            if r.detractor is not None:
                a[3] += r.detractor
                a[4] += 1
    return [
        ChannelCell(
            touchpoint=tp, channel=ch, count=int(a[0]), net_sentiment=_pts(100.0 * a[2] / a[1]) if a[1] else None,
            detractor_estimate=_prob(a[3] / a[4]) if a[4] else None,
        )
        for (tp, ch), a in sorted(acc.items(), key=lambda kv: (-kv[1][0], kv[0]))
    ]


class KpiReport(BaseModel):
    """Everything the batch dashboard shows for one filter selection; ``model_dump(mode="json")`` is NaN-free."""

    filters: Filters
    count: int  # rows matching the filters, error rows included
    analysed: int  # rows whose text was analysed
    nps: NpsStat
    nps_estimate: NpsEstimate | None
    csat: CsatStat | None
    ces: CesStat | None
    sentiment: SentimentStat
    topics: list[ThemeStat]
    touchpoints: list[ThemeStat]
    trend: TrendReport
    by_language: list[GroupStat]
    by_segment: dict[str, list[GroupStat]]
    matrix: list[MatrixCell] = Field(default_factory=list, description="Topic x touchpoint co-mentions (heat map).")
    by_channel: list[ThemeStat] = Field(
        default_factory=list, description="Where the feedback was collected (the upload's channel), like touchpoints."
    )
    touchpoint_channel: list[ChannelCell] = Field(
        default_factory=list, description="Touchpoint found in the text x channel it came through (heat map)."
    )
    unclassified: ThemeStat | None = Field(
        default=None,
        description="The catch-all topic (not otherwise classified): apart from `topics`, never a driver.",
    )
    min_driver_support: int = MIN_DRIVER_SUPPORT
    small_group: int = SMALL_GROUP


# --------------------------------------------------------------------------------------------------- statistics


def _finite(x: float | np.floating | None) -> float | None:
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def _pts(x: float | np.floating | None) -> float | None:
    """Percent-like value, 2 decimals; null for anything not finite."""
    v = _finite(x)
    return None if v is None else round(v, 2) + 0.0  # + 0.0 turns -0.0 into 0.0


def _prob(x: float | np.floating | None) -> float | None:
    """Probability, share or p-value, 4 decimals; null for anything not finite."""
    v = _finite(x)
    return None if v is None else round(v, 4) + 0.0


def _pts_f(x: float) -> float:
    """``_pts`` for a value known to be finite (the field is not nullable)."""
    return round(float(x), 2) + 0.0


def _prob_f(x: float) -> float:
    return round(float(x), 4) + 0.0


def _p_two_sided(z: float) -> float:
    return math.erfc(abs(z) / math.sqrt(2.0))


def _nps_var(promoters: float, detractors: float, n: float) -> float:
    """Per-answer variance of the +1/0/-1 NPS variable (proportion units); NPS variance is this / n."""
    pp, pd = promoters / n, detractors / n
    return max(pp + pd - (pp - pd) ** 2, 0.0)


def _nps_ci(promoters: int, detractors: int, n: int) -> tuple[float | None, float | None]:
    if n < 2:
        return None, None
    value = 100.0 * (promoters - detractors) / n
    half = 100.0 * _Z95 * math.sqrt(_nps_var(promoters, detractors, n) / n)
    return max(value - half, -100.0), min(value + half, 100.0)


def _nps_test(a: tuple[int, int, int], b: tuple[int, int, int]) -> tuple[float, float]:
    """(difference in proportion units, two-sided p) for NPS(a) - NPS(b); a and b are (promoters, detractors, n)."""
    (pa, da, na), (pb, db, nb) = a, b
    diff = (pa - da) / na - (pb - db) / nb
    var_a, var_b = _nps_var(pa, da, na), _nps_var(pb, db, nb)
    if var_a > 0 and var_b > 0:
        se = math.sqrt(var_a / na + var_b / nb)
    else:  # degenerate group: pooled variance under H0
        se = math.sqrt(_nps_var(pa + pb, da + db, na + nb) * (1 / na + 1 / nb))
    if se == 0:
        return diff, 1.0 if diff == 0 else 0.0
    return diff, _p_two_sided(diff / se)


def _net_test(a: tuple[int, int, int], b: tuple[int, int, int]) -> float:
    """Two-sided p for mean(a) - mean(b) of a +1/0/-1 sentiment variable; a, b are (positive, negative, n)."""

    def sample_var(pos: int, neg: int, n: int) -> float:
        if n < 2:
            return 0.0
        s1, s2 = pos - neg, pos + neg  # sum of x and of x^2
        return max((s2 - s1 * s1 / n) / (n - 1), 0.0)

    (pa, ga, na), (pb, gb, nb) = a, b
    diff = (pa - ga) / na - (pb - gb) / nb
    var_a, var_b = sample_var(pa, ga, na), sample_var(pb, gb, nb)
    if var_a > 0 and var_b > 0:
        se = math.sqrt(var_a / na + var_b / nb)
    else:
        se = math.sqrt(sample_var(pa + pb, ga + gb, na + nb) * (1 / na + 1 / nb))
    if se == 0:
        return 1.0 if diff == 0 else 0.0
    return _p_two_sided(diff / se)


def _wilson(successes: float, n: int) -> tuple[float, float]:
    p = successes / n
    z2 = _Z95 * _Z95
    denom = 1 + z2 / n
    centre = (p + z2 / (2 * n)) / denom
    half = _Z95 * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / denom
    return max(centre - half, 0.0), min(centre + half, 1.0)


def benjamini_hochberg(p_values: Sequence[float], q: float = SIGNIFICANCE_LEVEL) -> list[bool]:
    """Step-up BH decisions: reject the k smallest p where k is the largest rank with p_(k) <= k q / m.

    Controls the false discovery rate across themes, so a long topic list does not produce "drivers" by chance.
    """
    m = len(p_values)
    if m == 0:
        return []
    p = np.asarray(p_values, dtype=float)
    order = np.argsort(p, kind="stable")
    passed = p[order] <= q * np.arange(1, m + 1) / m
    reject = np.zeros(m, dtype=bool)
    if passed.any():
        k = int(np.flatnonzero(passed)[-1])
        reject[order[: k + 1]] = True
    return reject.tolist()


# --------------------------------------------------------------------------------------------------- columns


@dataclass(frozen=True, slots=True)
class _Columns:
    """The filtered rows as numpy arrays, built once so every breakdown is a few ``bincount`` calls."""

    n: int
    ok: np.ndarray  # bool
    nps_cat: np.ndarray  # -1 missing, 0 detractor, 1 passive, 2 promoter
    csat: np.ndarray  # float, nan = missing
    ces: np.ndarray
    sent: np.ndarray  # sentiment code 0..3 for analysed rows, -1 otherwise
    det: np.ndarray  # detractor probability of analysed rows, nan otherwise
    ordinal: np.ndarray  # date.toordinal(), -1 without a date


def _in_range(value: int | None, lo: int, hi: int) -> float:
    return float(value) if value is not None and lo <= value <= hi else math.nan


def _columns(rows: list[RowFacts]) -> _Columns:
    n = len(rows)
    nps = np.fromiter((_in_range(r.nps, 0, 10) for r in rows), dtype=float, count=n)
    nps_cat = np.full(n, -1, dtype=np.int8)
    nps_cat[nps <= 6] = 0
    nps_cat[(nps >= 7) & (nps <= 8)] = 1
    nps_cat[nps >= 9] = 2
    det = np.fromiter(
        (r.detractor if r.ok and r.detractor is not None else math.nan for r in rows), dtype=float, count=n
    )
    return _Columns(
        n=n,
        ok=np.fromiter((r.ok for r in rows), dtype=bool, count=n),
        nps_cat=nps_cat,
        csat=np.fromiter((_in_range(r.csat, 1, 5) for r in rows), dtype=float, count=n),
        ces=np.fromiter((_in_range(r.ces, 1, 7) for r in rows), dtype=float, count=n),
        sent=np.fromiter((_SENT_CODE.get(r.sentiment or "", -1) if r.ok else -1 for r in rows), dtype=np.int8, count=n),
        det=det,
        ordinal=np.fromiter((r.date.toordinal() if r.date else -1 for r in rows), dtype=np.int64, count=n),
    )


@dataclass(frozen=True, slots=True)
class _Agg:
    """Per-group sums; a group is a period, a language, a segment value or a theme."""

    count: np.ndarray
    promoters: np.ndarray
    passives: np.ndarray
    detractors: np.ndarray
    sent: np.ndarray  # (groups, 4) counts
    det_sum: np.ndarray
    det_n: np.ndarray

    @property
    def responses(self) -> np.ndarray:
        return self.promoters + self.passives + self.detractors

    def nps(self, g: int) -> float | None:
        n = int(self.responses[g])
        return 100.0 * (int(self.promoters[g]) - int(self.detractors[g])) / n if n else None

    def net(self, g: int) -> float | None:
        n = int(self.sent[g].sum())
        return 100.0 * (int(self.sent[g, _POS]) - int(self.sent[g, _NEG])) / n if n else None

    def detractor(self, g: int) -> float | None:
        return float(self.det_sum[g] / self.det_n[g]) if self.det_n[g] else None


def _aggregate(groups: np.ndarray, rows: np.ndarray, n_groups: int, cols: _Columns, sent: np.ndarray | None = None) -> _Agg:
    """Sum row facts into groups; (groups[i], rows[i]) are membership pairs, so a row may be in several groups."""
    cat = cols.nps_cat[rows]
    codes = cols.sent[rows] if sent is None else sent
    known = codes >= 0
    det = cols.det[rows]
    has_det = ~np.isnan(det)

    def count(mask: np.ndarray | None = None) -> np.ndarray:
        return np.bincount(groups if mask is None else groups[mask], minlength=n_groups).astype(np.int64)

    sent_counts = np.bincount(groups[known] * 4 + codes[known].astype(np.int64), minlength=n_groups * 4)
    return _Agg(
        count=count(),
        promoters=count(cat == 2),
        passives=count(cat == 1),
        detractors=count(cat == 0),
        sent=sent_counts.reshape(n_groups, 4).astype(np.int64),
        det_sum=np.bincount(groups[has_det], weights=det[has_det], minlength=n_groups),
        det_n=count(has_det),
    )


# --------------------------------------------------------------------------------------------------- themes


def _combine_labels(codes: set[int]) -> int:
    """One sentiment for a theme found twice in a row: the common label, else the non-neutral one, else mixed."""
    codes.discard(-1)
    if len(codes) > 1:
        codes.discard(_NEU)
    if not codes:
        return -1
    return codes.pop() if len(codes) == 1 else _MIX


def _topic_pairs(rows: list[RowFacts]) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
    ids: dict[str, int] = {}
    t_idx: list[int] = []
    r_idx: list[int] = []
    codes: list[int] = []
    for i, r in enumerate(rows):
        if not r.ok or not r.topics:
            continue
        found: dict[str, set[int]] = {}
        for tid, label in r.topics:
            found.setdefault(tid, set()).add(_SENT_CODE.get(label, -1))
        for tid, labels in found.items():
            t_idx.append(ids.setdefault(tid, len(ids)))
            r_idx.append(i)
            codes.append(labels.pop() if len(labels) == 1 else _combine_labels(labels))
    return list(ids), np.asarray(t_idx, dtype=np.int64), np.asarray(r_idx, dtype=np.int64), np.asarray(codes, dtype=np.int8)


def _touchpoint_pairs(rows: list[RowFacts]) -> tuple[list[str], np.ndarray, np.ndarray]:
    ids: dict[str, int] = {}
    t_idx: list[int] = []
    r_idx: list[int] = []
    for i, r in enumerate(rows):
        if not r.ok:
            continue
        for tid in dict.fromkeys(r.touchpoints):
            t_idx.append(ids.setdefault(tid, len(ids)))
            r_idx.append(i)
    return list(ids), np.asarray(t_idx, dtype=np.int64), np.asarray(r_idx, dtype=np.int64)


def _channel_pairs(rows: list[RowFacts]) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Every row with a channel, error rows included (the channel is an input, not a text result)."""
    ids: dict[str, int] = {}
    c_idx: list[int] = []
    r_idx: list[int] = []
    for i, r in enumerate(rows):
        channel = _channel_key(r)
        if channel == UNKNOWN:
            continue
        c_idx.append(ids.setdefault(channel, len(ids)))
        r_idx.append(i)
    return list(ids), np.asarray(c_idx, dtype=np.int64), np.asarray(r_idx, dtype=np.int64)


def _small(n: int) -> bool:
    return 0 < n < SMALL_GROUP


def _intervals(agg: _Agg, g: int) -> dict[str, Any]:
    """A group's NPS and net-sentiment intervals, their bases and small-group marks (shared by themes and groups)."""
    p, d, n = int(agg.promoters[g]), int(agg.detractors[g]), int(agg.responses[g])
    n_lo, n_hi = _nps_ci(p, d, n)
    k = int(agg.sent[g].sum())
    s_lo, s_hi = _nps_ci(int(agg.sent[g, _POS]), int(agg.sent[g, _NEG]), k)  # same +1/0/-1 variance formula
    return {
        "nps_ci_low": _pts(n_lo), "nps_ci_high": _pts(n_hi), "net_ci_low": _pts(s_lo), "net_ci_high": _pts(s_hi),
        "sentiment_rows": k, "nps_small": _small(n), "net_small": _small(k),
    }


_Dim = tuple[Literal["channel", "segment"], str | None, list[str], np.ndarray]  # kind, column, values, row codes


def _sources(rows: list[RowFacts], segment_columns: list[str], *, channel: bool) -> list[_Dim]:
    """Where each selected row came from, per dimension (the channel, each segment column), as integer codes."""

    def encode(keys: list[str]) -> tuple[list[str], np.ndarray]:
        ids: dict[str, int] = {}
        codes = np.fromiter((ids.setdefault(k, len(ids)) for k in keys), dtype=np.int64, count=len(keys))
        return list(ids), codes

    dims: list[_Dim] = []
    if channel:
        dims.append(("channel", None, *encode([_channel_key(r) for r in rows])))
    for col in segment_columns:
        dims.append(("segment", col, *encode([_segment_key(r, col) for r in rows])))
    return dims


def _concentrations(
    dims: list[_Dim], groups: np.ndarray, rows: np.ndarray, n_groups: int, base: np.ndarray
) -> list[Concentration | None]:
    """Per theme, the source (channel or segment value) holding >= CONCENTRATION_SHARE of its rows when that source
    holds <= CONCENTRATION_BASE_MAX of the ``base`` rows (the rows the theme could come from); the strongest one.

    "unknown" (no channel, no value) is never a source."""
    best: list[Concentration | None] = [None] * n_groups
    n_base = int(base.size)
    if not n_groups or not rows.size or not n_base:
        return best
    size = np.bincount(groups, minlength=n_groups)
    for kind, column, values, codes in dims:
        k = len(values)
        if k < 2:
            continue
        table = np.bincount(groups * k + codes[rows], minlength=n_groups * k).reshape(n_groups, k)
        base_share = np.bincount(codes[base], minlength=k) / n_base
        known = np.asarray([v != UNKNOWN for v in values])
        masked = np.where(known[None, :], table, -1)
        top = masked.argmax(axis=1)
        for g in range(n_groups):
            v = int(top[g])
            if size[g] < 2 or masked[g, v] <= 0:
                continue
            share = float(table[g, v] / size[g])
            if share >= CONCENTRATION_SHARE and base_share[v] <= CONCENTRATION_BASE_MAX:
                current = best[g]
                if current is None or share > current.share:
                    best[g] = Concentration(
                        dimension=kind, column=column, value=values[v], share=_prob_f(share),
                        base_share=_prob_f(float(base_share[v])),
                    )
    return best


def _theme_stats(
    ids: list[str],
    agg: _Agg,
    overall: tuple[int, int, int],
    analysed: int,
    labels: dict[str, str],
    min_theme_count: int,
    *,
    concentration: list[Concentration | None] | None = None,
    catch_all: frozenset[str] = frozenset(),
    min_driver_support: int = MIN_DRIVER_SUPPORT,
) -> list[ThemeStat]:
    """Theme rows with impact; BH runs over the themes that were tested (enough scored rows on both sides), the
    catch-all excluded (never tested: it is never a driver and does not dilute the others' correction).

    ``analysed`` is the denominator of ``share``: analysed rows for text results, all rows for channels."""
    p_all, d_all, n_all = overall
    nps_all = 100.0 * (p_all - d_all) / n_all if n_all else None
    tested: list[int] = []
    p_values: list[float] = []
    stats: list[dict[str, Any]] = []
    for g, tid in enumerate(ids):
        p_t, d_t, n_t = int(agg.promoters[g]), int(agg.detractors[g]), int(agg.responses[g])
        p_n, d_n, n_n = p_all - p_t, d_all - d_t, n_all - n_t
        impact = lo = hi = p_value = None
        if nps_all is not None and n_t >= max(min_theme_count, 1) and n_n >= 1:
            w = n_t / n_all
            impact = nps_all - 100.0 * (p_n - d_n) / n_n  # == 100 w (NPS_T - NPS_notT) in proportion units
            half = 100.0 * _Z95 * w * math.sqrt(_nps_var(p_t, d_t, n_t) / n_t + _nps_var(p_n, d_n, n_n) / n_n)
            lo, hi = max(impact - half, -200.0), min(impact + half, 200.0)
            if tid not in catch_all:
                _, p_value = _nps_test((p_t, d_t, n_t), (p_n, d_n, n_n))
                tested.append(g)
                p_values.append(p_value)
        sent = agg.sent[g]
        stats.append(
            {
                "id": tid,
                "label": labels.get(tid, tid),
                "count": int(agg.count[g]),
                "share": _prob(agg.count[g] / analysed) if analysed else 0.0,
                "sentiment": SentimentCounts(**{lab: int(sent[i]) for i, lab in enumerate(SENTIMENT_LABELS)}),
                "net_sentiment": _pts(agg.net(g)),
                "nps": _pts(agg.nps(g)),
                "nps_responses": n_t,
                "impact": _pts(impact),
                "impact_ci_low": _pts(lo),
                "impact_ci_high": _pts(hi),
                "p_value": _prob(p_value),
                "significant": False,
                "detractor_estimate": _prob(agg.detractor(g)),
                "concentration": concentration[g] if concentration else None,
                **_intervals(agg, g),
            }
        )
    for g, reject in zip(tested, benjamini_hochberg(p_values), strict=True):
        stats[g]["significant"] = reject
    for st in stats:
        notes: list[DriverNote] = []
        if st["id"] in catch_all:
            notes.append("catch_all")
        elif st["p_value"] is None:
            notes.append("not_tested")
        if st["nps_responses"] < min_driver_support:
            notes.append("low_support")
        if st["p_value"] is not None and not st["significant"]:
            notes.append("not_significant")
        st["driver_notes"] = notes
        st["driver"] = not notes
    stats.sort(key=lambda s: (-s["count"], s["id"]))
    return [ThemeStat(**s) for s in stats]


# --------------------------------------------------------------------------------------------------- trend


def _period_start(d: datetime.date, granularity: Granularity) -> datetime.date:
    if granularity == "day":
        return d
    if granularity == "week":
        return d - datetime.timedelta(days=d.weekday())
    return d.replace(day=1)


def _next_start(start: datetime.date, granularity: Granularity) -> datetime.date:
    if granularity == "day":
        return start + datetime.timedelta(days=1)
    if granularity == "week":
        return start + datetime.timedelta(days=7)
    return datetime.date(start.year + start.month // 12, start.month % 12 + 1, 1)


def _period_label(start: datetime.date, granularity: Granularity) -> str:
    if granularity == "day":
        return start.isoformat()
    if granularity == "week":
        iso = start.isocalendar()
        return f"{iso.year}-W{iso.week:02d}"
    return f"{start.year}-{start.month:02d}"


def _period_count(first: datetime.date, last: datetime.date, granularity: Granularity) -> int:
    if granularity == "day":
        return (last - first).days + 1
    if granularity == "week":
        return (_period_start(last, "week") - _period_start(first, "week")).days // 7 + 1
    return (last.year - first.year) * 12 + last.month - first.month + 1


def choose_granularity(first: datetime.date, last: datetime.date, n_rows: int) -> Granularity:
    """Auto granularity: by date span, then coarser while periods average fewer than 20 rows (noisy points)."""
    span = (last - first).days
    order: tuple[Granularity, ...] = ("day", "week", "month")
    level = 0 if span <= _DAY_SPAN_MAX else 1 if span <= _WEEK_SPAN_MAX else 2
    while level < 2 and n_rows / _period_count(first, last, order[level]) < _MIN_ROWS_PER_PERIOD:
        level += 1
    return order[level]


def _trend(cols: _Columns, granularity: Granularity | Literal["auto"]) -> TrendReport:
    dated = np.flatnonzero(cols.ordinal >= 0)
    if dated.size == 0:
        return TrendReport(granularity="month" if granularity == "auto" else granularity, periods=[])
    uniq, inverse = np.unique(cols.ordinal[dated], return_inverse=True)
    days = [datetime.date.fromordinal(int(o)) for o in uniq]
    g: Granularity = choose_granularity(days[0], days[-1], int(dated.size)) if granularity == "auto" else granularity
    starts = [_period_start(days[0], g)]
    last = _period_start(days[-1], g)
    while starts[-1] < last:
        starts.append(_next_start(starts[-1], g))
    index = {s: i for i, s in enumerate(starts)}
    period_of_day = np.asarray([index[_period_start(d, g)] for d in days], dtype=np.int64)
    agg = _aggregate(period_of_day[inverse.ravel()], dated, len(starts), cols)

    periods: list[PeriodStat] = []
    for i, start in enumerate(starts):
        n = int(agg.responses[i])
        p, d = int(agg.promoters[i]), int(agg.detractors[i])
        lo, hi = _nps_ci(p, d, n)
        change = p_value = None
        metric: Literal["nps", "net_sentiment"] | None = None
        if i > 0:
            prev_n = int(agg.responses[i - 1])
            now_s, prev_s = int(agg.sent[i].sum()), int(agg.sent[i - 1].sum())
            if n >= 1 and prev_n >= 1:
                metric = "nps"
                diff, p_value = _nps_test((p, d, n), (int(agg.promoters[i - 1]), int(agg.detractors[i - 1]), prev_n))
                change = 100.0 * diff
            elif now_s >= 1 and prev_s >= 1:
                metric = "net_sentiment"
                change = (agg.net(i) or 0.0) - (agg.net(i - 1) or 0.0)
                p_value = _net_test(
                    (int(agg.sent[i, _POS]), int(agg.sent[i, _NEG]), now_s),
                    (int(agg.sent[i - 1, _POS]), int(agg.sent[i - 1, _NEG]), prev_s),
                )
        periods.append(
            PeriodStat(
                period=_period_label(start, g),
                start=start,
                count=int(agg.count[i]),
                nps=_pts(agg.nps(i)),
                nps_ci_low=_pts(lo),
                nps_ci_high=_pts(hi),
                nps_responses=n,
                net_sentiment=_pts(agg.net(i)),
                detractor_estimate=_prob(agg.detractor(i)),
                change=_pts(change),
                change_metric=metric,
                p_value=_prob(p_value),
                significant=p_value is not None and p_value < SIGNIFICANCE_LEVEL,
            )
        )
    return TrendReport(granularity=g, periods=periods)


# --------------------------------------------------------------------------------------------------- groups


def _group_stats(keys: list[str], cols: _Columns) -> list[GroupStat]:
    ids: dict[str, int] = {}
    groups = np.fromiter((ids.setdefault(k, len(ids)) for k in keys), dtype=np.int64, count=len(keys))
    agg = _aggregate(groups, np.arange(cols.n), len(ids), cols)
    out = [
        GroupStat(
            key=key,
            count=int(agg.count[g]),
            nps=_pts(agg.nps(g)),
            nps_responses=int(agg.responses[g]),
            net_sentiment=_pts(agg.net(g)),
            detractor_estimate=_prob(agg.detractor(g)),
            **_intervals(agg, g),
        )
        for key, g in ids.items()
    ]
    out.sort(key=lambda s: (-s.count, s.key))
    return out


# --------------------------------------------------------------------------------------------------- report


def _nps_stat(cols: _Columns) -> NpsStat:
    """NPS from the answers."""
    promoters, passives, detractors = (int((cols.nps_cat == c).sum()) for c in (2, 1, 0))
    responses = promoters + passives + detractors
    lo, hi = _nps_ci(promoters, detractors, responses)
    return NpsStat(
        value=_pts(100.0 * (promoters - detractors) / responses) if responses else None,
        ci_low=_pts(lo),
        ci_high=_pts(hi),
        promoters=promoters,
        passives=passives,
        detractors=detractors,
        responses=responses,
    )


def _nps_estimate(cols: _Columns) -> NpsEstimate | None:
    """The predicted detractor share where no answer exists."""
    unscored = cols.ok & (cols.nps_cat < 0) & ~np.isnan(cols.det)
    if not unscored.any():
        return None
    k = int(unscored.sum())
    share = float(cols.det[unscored].mean())
    e_lo, e_hi = _wilson(share * k, k)
    return NpsEstimate(detractor_share=_prob_f(share), ci_low=_prob_f(e_lo), ci_high=_prob_f(e_hi), rows=k)


def _csat_stat(cols: _Columns) -> CsatStat | None:
    answers = cols.csat[~np.isnan(cols.csat)]
    if not answers.size:
        return None
    n = int(answers.size)
    satisfied = int((answers >= 4).sum())
    c_lo, c_hi = _wilson(satisfied, n)
    return CsatStat(value=_pts_f(100.0 * satisfied / n), ci_low=_pts_f(100 * c_lo), ci_high=_pts_f(100 * c_hi), responses=n)


def _ces_stat(cols: _Columns) -> CesStat | None:
    answers = cols.ces[~np.isnan(cols.ces)]
    if not answers.size:
        return None
    n = int(answers.size)
    mean = float(answers.mean())
    t_lo = t_hi = None
    if n >= 2:
        half = float(stdtrit(n - 1, 0.975)) * float(answers.std(ddof=1)) / math.sqrt(n)
        t_lo, t_hi = mean - half, mean + half
    return CesStat(mean=_pts_f(mean), ci_low=_pts(t_lo), ci_high=_pts(t_hi), responses=n)


def _sentiment_stat(cols: _Columns) -> SentimentStat:
    known = cols.sent[cols.sent >= 0]
    counts = np.bincount(known.astype(np.int64), minlength=4)
    return SentimentStat(
        **{label: int(counts[i]) for i, label in enumerate(SENTIMENT_LABELS)},
        net=_pts(100.0 * (counts[_POS] - counts[_NEG]) / known.size) if known.size else None,
    )


def batch_kpis(
    rows: Iterable[RowFacts],
    filters: Filters | None = None,
    *,
    labels: dict[str, str] | None = None,
    channel_labels: dict[str, str] | None = None,
    min_theme_count: int = 5,
    granularity: Granularity | Literal["auto"] = "auto",
    catch_all: Iterable[str] = CATCH_ALL_TOPICS,
    min_driver_support: int = MIN_DRIVER_SUPPORT,
) -> KpiReport:
    """The full KPI report for the rows of a batch that match ``filters`` (see the module docstring for definitions).

    ``labels`` names topics and touchpoints by id; ``channel_labels`` (default: ``labels``) names the channels that
    are touchpoint ids, so pass the touchpoint names alone when a topic may share an id with a raw channel value.
    Deterministic (no sampling) and vectorised over rows, so a 100k-row batch is summarised in about a second.
    """
    if granularity not in ("auto", "day", "week", "month"):
        raise ValueError(f"granularity must be auto, day, week or month, got {granularity!r}")
    filters = filters or Filters()
    labels = labels or {}
    selected = apply_filters(rows, filters)
    cols = _columns(selected)
    analysed = int(cols.ok.sum())
    nps = _nps_stat(cols)

    overall = (nps.promoters, nps.detractors, nps.responses)
    segment_columns = sorted({c for r in selected for c in r.segments})
    catch = frozenset(catch_all)
    text_sources = _sources(selected, segment_columns, channel=True)
    analysed_rows = np.flatnonzero(cols.ok)

    topic_ids, t_idx, t_rows, t_codes = _topic_pairs(selected)
    all_topics = _theme_stats(
        topic_ids, _aggregate(t_idx, t_rows, len(topic_ids), cols, sent=t_codes), overall, analysed, labels,
        min_theme_count, concentration=_concentrations(text_sources, t_idx, t_rows, len(topic_ids), analysed_rows),
        catch_all=catch, min_driver_support=min_driver_support,
    )
    topics = [t for t in all_topics if t.id not in catch]
    unclassified = next((t for t in all_topics if t.id in catch), None)
    tp_ids, tp_idx, tp_rows = _touchpoint_pairs(selected)
    touchpoints = _theme_stats(
        tp_ids, _aggregate(tp_idx, tp_rows, len(tp_ids), cols), overall, analysed, labels, min_theme_count,
        concentration=_concentrations(text_sources, tp_idx, tp_rows, len(tp_ids), analysed_rows),
        min_driver_support=min_driver_support,
    )
    ch_ids, ch_idx, ch_rows = _channel_pairs(selected)
    by_channel = _theme_stats(
        ch_ids, _aggregate(ch_idx, ch_rows, len(ch_ids), cols), overall, cols.n,
        labels if channel_labels is None else channel_labels, min_theme_count,
        concentration=_concentrations(
            _sources(selected, segment_columns, channel=False), ch_idx, ch_rows, len(ch_ids), np.arange(cols.n)
        ),
        min_driver_support=min_driver_support,
    )

    return KpiReport(
        filters=filters,
        count=len(selected),
        analysed=analysed,
        nps=nps,
        nps_estimate=_nps_estimate(cols),
        csat=_csat_stat(cols),
        ces=_ces_stat(cols),
        sentiment=_sentiment_stat(cols),
        topics=topics,
        touchpoints=touchpoints,
        trend=_trend(cols, granularity),
        by_language=_group_stats([_language_key(r) for r in selected], cols),
        by_segment={c: _group_stats([_segment_key(r, c) for r in selected], cols) for c in segment_columns},
        matrix=topic_touchpoint_matrix(selected),
        by_channel=by_channel,
        touchpoint_channel=touchpoint_channel_matrix(selected),
        unclassified=unclassified,
        min_driver_support=min_driver_support,
    )


# --------------------------------------------------------------------------------------------------- comparison


class Delta(BaseModel):
    """One figure on two sides and how it moved from A to B (``diff`` = B - A), with a 95% interval of the
    difference, the raw two-sided p and the Benjamini-Hochberg decision within its section."""

    a: float | None
    b: float | None
    n_a: int  # rows behind the figure on side A
    n_b: int
    diff: float | None
    ci_low: float | None
    ci_high: float | None
    p_value: float | None
    significant: bool = False
    small: bool = False  # a side with 1..SMALL_GROUP-1 rows: read the interval


class ThemeDelta(BaseModel):
    """A topic or touchpoint on both sides: how often it is mentioned (share of analysed rows, 0..1), how people
    feel about it (net sentiment, points) and the NPS of the rows mentioning it (points)."""

    id: str
    label: str
    count_a: int
    count_b: int
    share: Delta
    net_sentiment: Delta
    nps: Delta


class ComparisonSide(BaseModel):
    label: str  # what the caller named the side (a batch name, a period)
    count: int
    analysed: int
    filters: Filters


class Comparison(BaseModel):
    """Side B against side A: KPIs, topics and touchpoints; ``model_dump(mode="json")`` is NaN-free."""

    a: ComparisonSide
    b: ComparisonSide
    kpis: dict[str, Delta]  # nps, net_sentiment (points), csat (points, % satisfied), count (rows; no test)
    topics: list[ThemeDelta]
    touchpoints: list[ThemeDelta]
    unclassified: ThemeDelta | None
    tests: int  # how many p-values were computed (BH runs per section: KPIs, topics, touchpoints)
    method: str = (
        "diff = B - A. NPS and net sentiment: z-test of the difference (multinomial variance of the +1/0/-1 "
        "variable; pooled under H0 when a side is degenerate); shares and CSAT: two-proportion z-test (pooled under "
        "H0), unpooled 95% interval; Benjamini-Hochberg at q = 0.05 within each section (the KPIs; every topic test; "
        "every touchpoint test). Sides with fewer than 2 rows are not tested."
    )


def _share_delta(k_a: int, n_a: int, k_b: int, n_b: int, *, scale: float) -> tuple[Delta, float | None]:
    """Two proportions (k of n); ``scale`` 1 for shares (0..1), 100 for percent points."""
    a = k_a / n_a if n_a else None
    b = k_b / n_b if n_b else None
    fmt = _prob if scale == 1 else _pts
    diff = lo = hi = p = None
    if a is not None and b is not None:
        diff = b - a
        if n_a >= 2 and n_b >= 2:
            half = _Z95 * math.sqrt(a * (1 - a) / n_a + b * (1 - b) / n_b)
            lo, hi = diff - half, diff + half
            pooled = (k_a + k_b) / (n_a + n_b)
            se = math.sqrt(pooled * (1 - pooled) * (1 / n_a + 1 / n_b))
            p = (1.0 if diff == 0 else 0.0) if se == 0 else _p_two_sided(diff / se)
    return Delta(
        a=fmt(None if a is None else a * scale), b=fmt(None if b is None else b * scale), n_a=n_a, n_b=n_b,
        diff=fmt(None if diff is None else diff * scale), ci_low=fmt(None if lo is None else lo * scale),
        ci_high=fmt(None if hi is None else hi * scale), p_value=_prob(p), small=_small(n_a) or _small(n_b),
    ), p


def _net_delta(a: tuple[int, int, int], b: tuple[int, int, int], *, nps: bool) -> tuple[Delta, float | None]:
    """NPS (promoters, detractors, n) or net sentiment (positive, negative, n) on both sides, in points."""
    (pa, ga, na), (pb, gb, nb) = a, b
    va = 100.0 * (pa - ga) / na if na else None
    vb = 100.0 * (pb - gb) / nb if nb else None
    diff = lo = hi = p = None
    if va is not None and vb is not None:
        diff = vb - va
        if na >= 2 and nb >= 2:
            half = 100.0 * _Z95 * math.sqrt(_nps_var(pa, ga, na) / na + _nps_var(pb, gb, nb) / nb)
            lo, hi = max(diff - half, -200.0), min(diff + half, 200.0)
            p = _nps_test(b, a)[1] if nps else _net_test(b, a)
    return Delta(
        a=_pts(va), b=_pts(vb), n_a=na, n_b=nb, diff=_pts(diff), ci_low=_pts(lo), ci_high=_pts(hi), p_value=_prob(p),
        small=_small(na) or _small(nb),
    ), p


@dataclass(frozen=True, slots=True)
class _Side:
    rows: list[RowFacts]
    cols: _Columns
    themes: dict[str, dict[str, tuple[int, ...]]]  # kind -> id -> (count, pos, neg, sent_n, promoters, detractors, n)


def _side(rows: list[RowFacts]) -> _Side:
    cols = _columns(rows)
    themes: dict[str, dict[str, tuple[int, ...]]] = {}
    t_ids, t_idx, t_rows, t_codes = _topic_pairs(rows)
    tp_ids, tp_idx, tp_rows = _touchpoint_pairs(rows)
    for kind, ids, agg in (
        ("topics", t_ids, _aggregate(t_idx, t_rows, len(t_ids), cols, sent=t_codes)),
        ("touchpoints", tp_ids, _aggregate(tp_idx, tp_rows, len(tp_ids), cols)),
    ):
        themes[kind] = {
            tid: (int(agg.count[g]), int(agg.sent[g, _POS]), int(agg.sent[g, _NEG]), int(agg.sent[g].sum()),
                  int(agg.promoters[g]), int(agg.detractors[g]), int(agg.responses[g]))
            for g, tid in enumerate(ids)
        }
    return _Side(rows, cols, themes)


def compare(
    rows_a: Iterable[RowFacts],
    rows_b: Iterable[RowFacts],
    filters_a: Filters | None = None,
    filters_b: Filters | None = None,
    *,
    label_a: str = "A",
    label_b: str = "B",
    labels: dict[str, str] | None = None,
    catch_all: Iterable[str] = CATCH_ALL_TOPICS,
) -> Comparison:
    """Side B against side A (two periods of one batch, two uploads, or any two filter selections): every KPI,
    topic and touchpoint as a :class:`Delta`, significance after a BH correction within each section (KPIs, topics,
    touchpoints, as in the KPI report), so a long topic list neither lights up by chance nor hides a KPI change.
    The catch-all topic is compared apart (``unclassified``) but tested with the topics."""
    labels = labels or {}
    fa, fb = filters_a or Filters(), filters_b or Filters()
    a, b = _side(apply_filters(rows_a, fa)), _side(apply_filters(rows_b, fb))
    families: dict[str, list[tuple[Delta, float]]] = {"kpis": [], "topics": [], "touchpoints": []}
    family = "kpis"

    def keep(pair: tuple[Delta, float | None]) -> Delta:
        delta, p = pair
        if p is not None:
            families[family].append((delta, p))
        return delta

    def nps_counts(s: _Side) -> tuple[int, int, int]:
        promoters, detractors = int((s.cols.nps_cat == 2).sum()), int((s.cols.nps_cat == 0).sum())
        return promoters, detractors, int((s.cols.nps_cat >= 0).sum())

    def sent_counts(s: _Side) -> tuple[int, int, int]:
        known = s.cols.sent[s.cols.sent >= 0]
        return int((known == _POS).sum()), int((known == _NEG).sum()), int(known.size)

    def csat_counts(s: _Side) -> tuple[int, int]:
        answers = s.cols.csat[~np.isnan(s.cols.csat)]
        return int((answers >= 4).sum()), int(answers.size)

    kpis = {
        "nps": keep(_net_delta(nps_counts(a), nps_counts(b), nps=True)),
        "net_sentiment": keep(_net_delta(sent_counts(a), sent_counts(b), nps=False)),
    }
    (ca, na), (cb, nb) = csat_counts(a), csat_counts(b)
    if na or nb:
        kpis["csat"] = keep(_share_delta(ca, na, cb, nb, scale=100.0))
    kpis["count"] = Delta(a=float(a.cols.n), b=float(b.cols.n), n_a=a.cols.n, n_b=b.cols.n,
                          diff=float(b.cols.n - a.cols.n), ci_low=None, ci_high=None, p_value=None)

    def themes(kind: str) -> list[ThemeDelta]:
        ta, tb = a.themes[kind], b.themes[kind]
        ok_a, ok_b = int(a.cols.ok.sum()), int(b.cols.ok.sum())
        empty = (0, 0, 0, 0, 0, 0, 0)
        out = []
        for tid in sorted(set(ta) | set(tb), key=lambda t: (-max(ta.get(t, empty)[0], tb.get(t, empty)[0]), t)):
            xa, xb = ta.get(tid, empty), tb.get(tid, empty)
            out.append(ThemeDelta(
                id=tid, label=labels.get(tid, tid), count_a=xa[0], count_b=xb[0],
                share=keep(_share_delta(xa[0], ok_a, xb[0], ok_b, scale=1.0)),
                net_sentiment=keep(_net_delta((xa[1], xa[2], xa[3]), (xb[1], xb[2], xb[3]), nps=False)),
                nps=keep(_net_delta((xa[4], xa[5], xa[6]), (xb[4], xb[5], xb[6]), nps=True)),
            ))
        return out

    catch = frozenset(catch_all)
    family = "topics"
    all_topics = themes("topics")
    family = "touchpoints"
    touchpoints = themes("touchpoints")
    for tests in families.values():
        for (delta, _), reject in zip(tests, benjamini_hochberg([p for _, p in tests]), strict=True):
            delta.significant = reject
    return Comparison(
        a=ComparisonSide(label=label_a, count=a.cols.n, analysed=int(a.cols.ok.sum()), filters=fa),
        b=ComparisonSide(label=label_b, count=b.cols.n, analysed=int(b.cols.ok.sum()), filters=fb),
        kpis=kpis,
        topics=[t for t in all_topics if t.id not in catch],
        touchpoints=touchpoints,
        unclassified=next((t for t in all_topics if t.id in catch), None),
        tests=sum(len(t) for t in families.values()),
    )
