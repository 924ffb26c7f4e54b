"""Alert rules and their events: something moved in a batch that has just finished.

A rule watches one **subject** (the whole selection, a topic, a touchpoint, a channel or a segment value
``column:value``) of the rows its filters select (``query``, read by :class:`~voce.service.analytics.Filters`), on
one **metric**:

* ``negative_share``: share (0..1) of the subject's comments that are negative (for a topic, its own polarity);
* ``share``: share (0..1) of analysed comments that mention the topic or touchpoint;
* ``nps``, ``net_sentiment``: points, as the KPI report defines them;
* ``nps_impact``: a topic's, touchpoint's or channel's impact on NPS (points; the driver method).

and one **condition**:

* ``above`` / ``below`` a ``threshold``, resting on at least ``min_rows`` rows (NPS answers for NPS and impact,
  comments with a sentiment for the others): a figure on fewer rows never fires;
* ``change``: a significant change against the **previous batch** of the tenant (the latest finished one created
  before it) or the **previous period** of the same batch (the last two periods of its trend with rows), in the
  chosen ``direction`` (``up``, ``down``, ``any``) and at least ``threshold`` in size when one is set.  The test is the
  KPI report's own (:func:`voce.service.analytics.compare`: NPS and net sentiment z-tests; the two-proportion test for
  shares), both sides need ``min_rows`` rows, and significance is Benjamini-Hochberg at q = 0.05 across every change
  rule of the tenant evaluated on that batch, so many rules do not fire by chance.

Every figure comes from :func:`voce.service.analytics.batch_kpis` or :func:`~voce.service.analytics.compare` over the
batch's facts with analysts' corrections applied (what the dashboard shows); nothing here recomputes a KPI.

Rules are evaluated once per finished batch (:func:`evaluate_batch`, called by the runner after the batch is done).
An evaluation never fails the batch: a rule that cannot be evaluated is logged and recorded as an ``error`` event
with a reference, the others still run.  A fired rule with a webhook is delivered by :mod:`.webhooks`.
"""
from __future__ import annotations

import datetime as dt
import logging
import secrets
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from sqlalchemy import func, select
from sqlalchemy.orm import sessionmaker

from voce.service import analytics
from voce.service.analytics import Delta, Filters, KpiReport, RowFacts, ThemeStat
from voce.service.db import Batch, utcnow
from voce.service.errors import NotFound
from voce.service.insights.tables import AlertEvent, AlertRule
from voce.service.insights.views import InsightError, Owner, UtcDatetime, filters_query, parse_filters
from voce.service.insights.webhooks import Delivery, WebhookPolicy, WebhookRefused, WebhookSender, deliveries_for, payload

if TYPE_CHECKING:
    import threading

    from voce.service.batches.store import BatchStore

log = logging.getLogger("voce.alerts")

Subject = Literal["overall", "topic", "touchpoint", "channel", "segment"]
Metric = Literal["negative_share", "share", "nps", "nps_impact", "net_sentiment"]
Condition = Literal["above", "below", "change"]
CompareTo = Literal["previous_batch", "previous_period"]
Direction = Literal["any", "up", "down"]
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=128)]
#: a figure on fewer rows than this never fires a rule, unless the rule says otherwise
DEFAULT_MIN_ROWS = analytics.MIN_DRIVER_SUPPORT
MAX_RULES = 200
MAX_EVENTS_PAGE = 500
#: the range of a threshold (or of a change's minimum size) per metric
_RANGES: dict[str, tuple[float, float]] = {
    "negative_share": (0.0, 1.0), "share": (0.0, 1.0), "nps": (-100.0, 100.0), "net_sentiment": (-100.0, 100.0),
    "nps_impact": (-200.0, 200.0),
}
_THEMES = ("topic", "touchpoint")


class RuleNotFound(NotFound):
    """No such alert rule in the caller's tenant."""


# ------------------------------------------------------------------ shapes
class RuleIn(BaseModel):
    """An alert rule (see the module docstring for what each field means)."""

    model_config = ConfigDict(extra="forbid")

    name: Name
    enabled: bool = True
    subject: Subject = "overall"
    subject_id: str | None = Field(default=None, max_length=256,
                                   description="topic/touchpoint/channel id, or 'column:value' for a segment")
    metric: Metric
    condition: Condition
    threshold: float | None = Field(default=None, description="above/below: the threshold; change: the minimum size "
                                                              "of the change (optional). Shares are 0..1, others points.")
    compare_to: CompareTo | None = Field(default=None, description="change rules: previous_batch | previous_period")
    direction: Direction = "any"
    min_rows: int = Field(default=DEFAULT_MIN_ROWS, ge=1, le=10_000_000)
    query: str = Field(default="", max_length=4000, description="filters of the rows watched, as the dashboard's URL")
    webhook_url: str | None = Field(default=None, max_length=2000,
                                    description="POST each event here (signed); needs VOCE_WEBHOOK_ALLOWED_HOSTS")


class RulePatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Name | None = None
    enabled: bool | None = None
    threshold: float | None = None
    direction: Direction | None = None
    min_rows: int | None = Field(default=None, ge=1, le=10_000_000)
    query: str | None = Field(default=None, max_length=4000)
    webhook_url: str | None = Field(default=None, max_length=2000, description="'' removes the webhook")


class RuleOut(BaseModel):
    id: int
    name: str
    owner: str
    enabled: bool
    subject: Subject
    subject_id: str | None
    metric: Metric
    condition: Condition
    threshold: float | None
    compare_to: CompareTo | None
    direction: Direction | None
    min_rows: int
    query: str
    webhook_url: str | None
    created_at: UtcDatetime
    updated_at: UtcDatetime
    webhook_secret: str | None = Field(default=None, description="Only when the rule (or its webhook) is created: "
                                                                 "the HMAC key of X-Voce-Signature. Keep it.")


class RuleList(BaseModel):
    rules: list[RuleOut]


class WebhookState(BaseModel):
    status: Literal["none", "pending", "delivered", "failed", "refused"]
    attempts: int
    error: str | None
    delivered_at: UtcDatetime | None


class EventOut(BaseModel):
    id: int
    rule_id: int | None
    rule_name: str
    batch_id: str
    created_at: UtcDatetime
    status: Literal["fired", "error"]
    code: str = Field(description="alert.threshold | alert.change | alert.error (the page translates it)")
    params: dict[str, Any]
    value: float | None
    previous: float | None
    p_value: float | None
    rows: int | None
    webhook: WebhookState


class EventPage(BaseModel):
    events: list[EventOut]
    next_cursor: int | None = Field(description="Pass as `after` (order=asc) or `before` (order=desc) for the next page")
    has_more: bool


def _rule_out(r: AlertRule, secret: str | None = None) -> RuleOut:
    return RuleOut(
        id=r.id, name=r.name, owner=r.owner, enabled=r.enabled, subject=r.subject, subject_id=r.subject_id,  # type: ignore[arg-type]
        metric=r.metric, condition=r.condition, threshold=r.threshold, compare_to=r.compare_to,  # type: ignore[arg-type]
        direction=r.direction, min_rows=r.min_rows, query=r.query, webhook_url=r.webhook_url,  # type: ignore[arg-type]
        created_at=r.created_at, updated_at=r.updated_at, webhook_secret=secret,
    )


def event_out(e: AlertEvent) -> EventOut:
    return EventOut(
        id=e.id, rule_id=e.rule_id, rule_name=e.rule_name, batch_id=e.batch_id, created_at=e.created_at,
        status=e.status, code=e.code, params=e.params, value=e.value, previous=e.previous,  # type: ignore[arg-type]
        p_value=e.p_value, rows=e.rows,
        webhook=WebhookState(status=e.webhook_status, attempts=e.webhook_attempts, error=e.webhook_error,  # type: ignore[arg-type]
                             delivered_at=e.delivered_at),
    )


# ------------------------------------------------------------------ validation
def _check(body: RuleIn, policy: WebhookPolicy) -> tuple[str, str | None]:
    """Refuse a rule that cannot be evaluated (422 with a code); its canonical query and subject id."""
    sid = (body.subject_id or "").strip() or None
    if body.subject == "overall":
        sid = None
    elif sid is None:
        raise InsightError(f"a {body.subject} rule names its {body.subject}", "alerts.subject_missing",
                           subject=body.subject)
    elif body.subject == "segment":
        try:
            col, val = next(iter(analytics.parse_segment(sid).items()))
        except ValueError as exc:
            raise InsightError(str(exc), "alerts.segment_invalid", value=sid[:64]) from exc
        sid = f"{col}:{val}"
    elif body.subject == "channel":
        sid = sid.lower()
        if len(sid) > analytics.CHANNEL_MAX_CHARS:
            raise InsightError("a channel is at most 64 characters", "alerts.subject_invalid", subject="channel")
    if body.metric == "nps_impact" and body.subject not in (*_THEMES, "channel"):
        raise InsightError("NPS impact is a topic's, touchpoint's or channel's", "alerts.metric_subject",
                           metric=body.metric, subject=body.subject)
    if body.metric == "share" and body.subject not in _THEMES:
        raise InsightError("a share of comments is a topic's or touchpoint's", "alerts.metric_subject",
                           metric=body.metric, subject=body.subject)
    lo, hi = _RANGES[body.metric]
    if body.condition == "change":
        if body.compare_to is None:
            raise InsightError("a change rule compares with previous_batch or previous_period",
                               "alerts.compare_to_missing")
        if body.metric == "nps_impact":
            raise InsightError("a change of NPS impact is not tested; use a threshold", "alerts.metric_condition",
                               metric=body.metric)
        if body.threshold is not None and not 0 <= body.threshold <= hi - lo:
            raise InsightError(f"the minimum change is 0..{hi - lo:g}", "alerts.threshold_range", low=0, high=hi - lo)
    else:
        if body.threshold is None:
            raise InsightError("an above/below rule needs a threshold", "alerts.threshold_missing")
        if not lo <= body.threshold <= hi:
            raise InsightError(f"the threshold of {body.metric} is {lo:g}..{hi:g}", "alerts.threshold_range",
                               low=lo, high=hi)
    filters, _ = parse_filters(body.query)
    if body.webhook_url:
        try:
            policy.check(body.webhook_url, resolve=False)
        except WebhookRefused as exc:
            raise InsightError(str(exc), exc.code, **exc.params) from exc
    return filters_query(filters), sid


# ------------------------------------------------------------------ rules and events
class AlertService:
    """One tenant's alert rules and events."""

    def __init__(self, sessions: sessionmaker, owner: Owner, policy: WebhookPolicy | None = None) -> None:
        self.sessions = sessions
        self.owner = owner
        self.policy = policy or WebhookPolicy()

    def _find(self, s: Any, rule_id: int) -> AlertRule:
        rule = s.get(AlertRule, rule_id)
        if rule is None or rule.tenant != self.owner.tenant:
            raise RuleNotFound(f"no alert rule {rule_id}")
        return rule

    def list(self) -> RuleList:
        with self.sessions() as s:
            found = s.scalars(select(AlertRule).where(AlertRule.tenant == self.owner.tenant).order_by(AlertRule.id))
            return RuleList(rules=[_rule_out(r) for r in found])

    def get(self, rule_id: int) -> RuleOut:
        with self.sessions() as s:
            return _rule_out(self._find(s, rule_id))

    def create(self, body: RuleIn) -> RuleOut:
        query, sid = _check(body, self.policy)
        secret = secrets.token_urlsafe(32) if body.webhook_url else None
        now = utcnow()
        rule = AlertRule(
            tenant=self.owner.tenant, name=body.name, owner=self.owner.name, enabled=body.enabled,
            subject=body.subject, subject_id=sid, metric=body.metric, condition=body.condition,
            threshold=body.threshold, compare_to=body.compare_to if body.condition == "change" else None,
            direction=body.direction, min_rows=body.min_rows, query=query, webhook_url=body.webhook_url or None,
            webhook_secret=secret, created_at=now, updated_at=now,
        )
        with self.sessions() as s, s.begin():
            count = s.scalar(select(func.count()).select_from(AlertRule).where(AlertRule.tenant == self.owner.tenant))
            if (count or 0) >= MAX_RULES:
                raise InsightError(f"a tenant keeps at most {MAX_RULES} alert rules", "alerts.too_many", max=MAX_RULES)
            s.add(rule)
        return _rule_out(rule, secret)

    def update(self, rule_id: int, patch: RulePatch) -> RuleOut:
        with self.sessions() as s, s.begin():
            rule = self._find(s, rule_id)
            body = RuleIn(
                name=patch.name or rule.name, enabled=rule.enabled if patch.enabled is None else patch.enabled,
                subject=rule.subject, subject_id=rule.subject_id, metric=rule.metric,  # type: ignore[arg-type]
                condition=rule.condition, compare_to=rule.compare_to,  # type: ignore[arg-type]
                threshold=rule.threshold if patch.threshold is None else patch.threshold,
                direction=patch.direction or rule.direction or "any",  # type: ignore[arg-type]
                min_rows=patch.min_rows or rule.min_rows, query=rule.query if patch.query is None else patch.query,
                webhook_url=rule.webhook_url if patch.webhook_url is None else (patch.webhook_url or None),
            )
            query, _ = _check(body, self.policy)
            secret = None
            if body.webhook_url and body.webhook_url != rule.webhook_url:
                secret = rule.webhook_secret = secrets.token_urlsafe(32)  # a new receiver gets a new key
            elif not body.webhook_url:
                rule.webhook_secret = None
            rule.name, rule.enabled, rule.threshold = body.name, body.enabled, body.threshold
            rule.direction, rule.min_rows, rule.query, rule.webhook_url = body.direction, body.min_rows, query, body.webhook_url
            rule.updated_at = utcnow()
            s.flush()
            return _rule_out(rule, secret)

    def delete(self, rule_id: int) -> None:
        """The rule goes; its events stay in the feed (named, without a rule id)."""
        with self.sessions() as s, s.begin():
            s.delete(self._find(s, rule_id))

    def events(
        self, *, since: dt.datetime | None = None, after: int | None = None, before: int | None = None,
        limit: int = 50, order: Literal["asc", "desc"] = "asc", rule_id: int | None = None, batch_id: str | None = None,
    ) -> EventPage:
        """The tenant's events, oldest first (a feed polled with ``after``) or newest first (the page)."""
        q = select(AlertEvent).where(AlertEvent.tenant == self.owner.tenant)
        if since is not None:
            naive = since.astimezone(dt.UTC).replace(tzinfo=None) if since.tzinfo else since  # stored as naive UTC
            q = q.where(AlertEvent.created_at >= naive)
        if after is not None:
            q = q.where(AlertEvent.id > after)
        if before is not None:
            q = q.where(AlertEvent.id < before)
        if rule_id is not None:
            q = q.where(AlertEvent.rule_id == rule_id)
        if batch_id is not None:
            q = q.where(AlertEvent.batch_id == batch_id)
        q = q.order_by(AlertEvent.id.asc() if order == "asc" else AlertEvent.id.desc()).limit(limit + 1)
        with self.sessions() as s:
            found = list(s.scalars(q))
        more = len(found) > limit
        page = [event_out(e) for e in found[:limit]]
        return EventPage(events=page, next_cursor=page[-1].id if page and more else None, has_more=more)


# ------------------------------------------------------------------ evaluation
@dataclass
class Outcome:
    """One rule on one batch: fired or not, the figures, and for a change rule its raw p (BH decides later)."""

    rule: AlertRule
    fired: bool = False
    code: str = "alert.threshold"
    params: dict[str, Any] = field(default_factory=dict)
    value: float | None = None
    previous: float | None = None
    p_value: float | None = None
    rows: int | None = None
    error: str | None = None
    # change rules: whether direction and size hold (significance is decided across rules)
    candidate: bool = False


@dataclass
class Evaluation:
    """What :func:`evaluate_batch` did: the events it recorded and the webhook thread (None: nothing to send)."""

    events: list[int] = field(default_factory=list)
    deliveries: threading.Thread | None = None


def batch_facts(store: BatchStore, batch_id: str) -> list[RowFacts]:
    """A batch's facts with analysts' corrections applied: what its dashboard counts."""
    from voce.service.batches import rows
    from voce.service.learning import corrections

    return corrections.corrected_facts(rows.load_facts(store, batch_id),
                                       corrections.active_changes(store.sessions, batch_id))


def _population(rule: AlertRule, *, subject_filter: bool) -> Filters:
    """The rule's filters, narrowed to its segment or channel when the figure is read off the whole selection."""
    filters, _ = parse_filters(rule.query)
    if not subject_filter or rule.subject_id is None:
        return filters
    data = filters.model_dump()
    if rule.subject == "segment":
        col, val = next(iter(analytics.parse_segment(rule.subject_id).items()))
        data["segment"] = {**(data.get("segment") or {}), col: [val]}
    elif rule.subject == "channel":
        data["channel"] = [rule.subject_id]
    return Filters.model_validate(data)


def _theme_lookup(rule: AlertRule) -> bool:
    """Whether the figure is one theme's entry of the report (topics, touchpoints; a channel's NPS impact)."""
    return rule.subject in _THEMES or (rule.subject == "channel" and rule.metric == "nps_impact")


def _theme(report: KpiReport, rule: AlertRule) -> ThemeStat | None:
    if rule.subject == "topic":
        items = [*report.topics, *([report.unclassified] if report.unclassified else [])]
    elif rule.subject == "touchpoint":
        items = report.touchpoints
    else:
        items = report.by_channel
    return next((t for t in items if t.id == rule.subject_id), None)


def _negatives(report: KpiReport, rule: AlertRule) -> tuple[int, int]:
    """(negative comments, comments with a sentiment) of the subject."""
    if _theme_lookup(rule):
        t = _theme(report, rule)
        if t is None:
            return 0, 0
        c = t.sentiment
    else:
        c = report.sentiment  # type: ignore[assignment]
    return c.negative, c.positive + c.neutral + c.negative + c.mixed


def measure(report: KpiReport, rule: AlertRule) -> tuple[float | None, int]:
    """(the rule's figure, the rows it rests on) in ``report`` (already narrowed to a segment or channel)."""
    if rule.metric == "negative_share":
        k, n = _negatives(report, rule)
        return (k / n if n else None), n
    if _theme_lookup(rule):
        t = _theme(report, rule)
        if t is None:
            return None, 0
        return {
            "share": (t.share, t.count), "nps": (t.nps, t.nps_responses), "nps_impact": (t.impact, t.nps_responses),
            "net_sentiment": (t.net_sentiment, t.sentiment_rows),
        }[rule.metric]
    counts = report.sentiment
    if rule.metric == "nps":
        return report.nps.value, report.nps.responses
    return counts.net, counts.positive + counts.neutral + counts.negative + counts.mixed


@dataclass
class _Memo:
    """One evaluation's reports and facts, so rules watching the same selection or batch compute it once."""

    store: BatchStore
    reports: dict[tuple[int, str], KpiReport] = field(default_factory=dict)
    facts: dict[str, list[RowFacts]] = field(default_factory=dict)

    def kpis(self, rows: list[RowFacts], filters: Filters) -> KpiReport:
        key = (id(rows), filters.model_dump_json())  # rows lists live as long as the memo (held in .facts)
        if key not in self.reports:
            self.reports[key] = analytics.batch_kpis(rows, filters)
        return self.reports[key]

    def batch(self, batch_id: str) -> list[RowFacts]:
        if batch_id not in self.facts:
            self.facts[batch_id] = batch_facts(self.store, batch_id)
        return self.facts[batch_id]


def _threshold(rule: AlertRule, rows: list[RowFacts], memo: _Memo) -> Outcome:
    report = memo.kpis(rows, _population(rule, subject_filter=not _theme_lookup(rule)))
    value, n = measure(report, rule)
    out = Outcome(rule, value=value, rows=n)
    assert rule.threshold is not None
    hit = value is not None and (value > rule.threshold if rule.condition == "above" else value < rule.threshold)
    out.fired = bool(hit and n >= rule.min_rows)
    out.params = {"metric": rule.metric, "subject": rule.subject, "subject_id": rule.subject_id,
                  "condition": rule.condition, "threshold": rule.threshold, "value": value, "rows": n,
                  "min_rows": rule.min_rows, "query": rule.query}
    return out


def _change_delta(
    rule: AlertRule, rows_a: list[RowFacts], rows_b: list[RowFacts], fa: Filters, fb: Filters, memo: _Memo
) -> Delta | None:
    """B against A on the rule's figure, through the KPI report's own tests."""
    if rule.metric == "negative_share":
        (ka, na), (kb, nb) = _negatives(memo.kpis(rows_a, fa), rule), _negatives(memo.kpis(rows_b, fb), rule)
        return analytics._share_delta(ka, na, kb, nb, scale=1.0)[0]  # the two-proportion z-test of the report
    comparison = analytics.compare(rows_a, rows_b, fa, fb)
    if rule.subject in _THEMES:
        items = (comparison.topics + ([comparison.unclassified] if comparison.unclassified else [])
                 if rule.subject == "topic" else comparison.touchpoints)
        found = next((t for t in items if t.id == rule.subject_id), None)
        if found is None:
            return None
        return {"share": found.share, "nps": found.nps, "net_sentiment": found.net_sentiment}[rule.metric]
    return comparison.kpis.get(rule.metric)


def _with_period(filters: Filters, period: str) -> Filters:
    return Filters.model_validate({**filters.model_dump(), "period": period})


def _previous_batch(store: BatchStore, batch: Batch) -> Batch | None:
    with store.sessions() as s:
        return s.scalars(
            select(Batch).where(Batch.tenant == batch.tenant, Batch.status == "done", Batch.id != batch.id,
                                Batch.created_at <= batch.created_at)
            .order_by(Batch.created_at.desc(), Batch.id.desc()).limit(1)
        ).first()


def _change(rule: AlertRule, store: BatchStore, batch: Batch, rows: list[RowFacts], memo: _Memo) -> Outcome:
    base = _population(rule, subject_filter=not _theme_lookup(rule))
    params: dict[str, Any] = {"metric": rule.metric, "subject": rule.subject, "subject_id": rule.subject_id,
                              "compare_to": rule.compare_to, "direction": rule.direction, "threshold": rule.threshold,
                              "min_rows": rule.min_rows, "query": rule.query}
    out = Outcome(rule, code="alert.change", params=params)
    if rule.compare_to == "previous_batch":
        prev = _previous_batch(store, batch)
        if prev is None:
            return out
        rows_a, fa, fb = memo.batch(prev.id), base, base
        params.update(previous_batch_id=prev.id, previous_batch_name=prev.name)
    else:
        periods = [p.period for p in memo.kpis(rows, base).trend.periods if p.count > 0]
        if len(periods) < 2:
            return out
        rows_a, fa, fb = rows, _with_period(base, periods[-2]), _with_period(base, periods[-1])
        params.update(previous_period=periods[-2], period=periods[-1])
    delta = _change_delta(rule, rows_a, rows, fa, fb, memo)
    if delta is None:
        return out
    out.value, out.previous, out.p_value, out.rows = delta.b, delta.a, delta.p_value, min(delta.n_a, delta.n_b)
    params.update(value=delta.b, previous=delta.a, diff=delta.diff, ci_low=delta.ci_low, ci_high=delta.ci_high,
                  p_value=delta.p_value, rows=delta.n_b, previous_rows=delta.n_a)
    diff = delta.diff
    out.candidate = bool(
        diff is not None and delta.p_value is not None and min(delta.n_a, delta.n_b) >= rule.min_rows
        and (rule.direction in (None, "any") or (diff > 0 if rule.direction == "up" else diff < 0))
        and (rule.threshold is None or abs(diff) >= rule.threshold)
    )
    return out


def evaluate_rules(store: BatchStore, batch: Batch, rules: list[AlertRule]) -> list[Outcome]:
    """Every rule on the finished batch; a rule that fails is an ``error`` outcome, the others still run.
    Change rules are significant by Benjamini-Hochberg across the batch's change tests."""
    memo = _Memo(store)
    rows = memo.batch(batch.id)
    outcomes: list[Outcome] = []
    for rule in rules:
        try:
            outcomes.append(_change(rule, store, batch, rows, memo) if rule.condition == "change"
                            else _threshold(rule, rows, memo))
        except Exception:
            ref = uuid.uuid4().hex[:12]
            log.exception("alert rule %s on batch %s could not be evaluated (reference %s)", rule.id, batch.id, ref)
            outcomes.append(Outcome(rule, code="alert.error", params={"reference": ref}, error=ref))
    tested = [o for o in outcomes if o.rule.condition == "change" and o.p_value is not None and o.error is None]
    for o, reject in zip(tested, analytics.benjamini_hochberg([o.p_value or 0.0 for o in tested]), strict=True):
        o.params["significant"] = reject
        o.fired = bool(reject and o.candidate)
    return outcomes


def _record(store: BatchStore, batch: Batch, outcomes: list[Outcome], webhooks: bool) -> list[int]:
    """Fired and failed outcomes as events (once per rule and batch: a second evaluation adds nothing)."""
    ids: list[int] = []
    with store.sessions() as s, s.begin():
        seen = set(s.scalars(select(AlertEvent.rule_id).where(AlertEvent.batch_id == batch.id)))
        for o in outcomes:
            if not (o.fired or o.error) or o.rule.id in seen:
                continue
            hook = o.fired and bool(o.rule.webhook_url)
            event = AlertEvent(
                tenant=batch.tenant, rule_id=o.rule.id, rule_name=o.rule.name, batch_id=batch.id, created_at=utcnow(),
                status="error" if o.error else "fired", code=o.code, params=o.params, value=o.value,
                previous=o.previous, p_value=o.p_value, rows=o.rows,
                webhook_status=("pending" if webhooks else "refused") if hook else "none", webhook_attempts=0,
                webhook_error=None if webhooks or not hook else "webhook.off: VOCE_WEBHOOK_ALLOWED_HOSTS is empty",
            )
            s.add(event)
            s.flush()
            ids.append(event.id)
    return ids


def _webhook_body(store: BatchStore, batch: Batch) -> Any:
    def body(event: AlertEvent, rule: AlertRule) -> bytes:
        return payload(event_out(event).model_dump(mode="json", exclude={"webhook"}),
                       {"id": rule.id, "name": rule.name, "subject": rule.subject, "subject_id": rule.subject_id,
                        "metric": rule.metric, "condition": rule.condition},
                       {"id": batch.id, "name": batch.name, "tenant": batch.tenant})
    return body


def evaluate_batch(store: BatchStore, batch_id: str, policy: WebhookPolicy | None = None) -> Evaluation:
    """The tenant's enabled rules on a batch that has just finished: events recorded, webhooks started in the
    background.  Never raises: whatever goes wrong is logged (and recorded per rule where it can be)."""
    policy = policy or WebhookPolicy()
    try:
        batch = store.get(batch_id)
        if batch is None or batch.status != "done":
            return Evaluation()
        with store.sessions() as s:
            rules = list(s.scalars(select(AlertRule).where(AlertRule.tenant == batch.tenant,
                                                           AlertRule.enabled.is_(True)).order_by(AlertRule.id)))
        if not rules:
            return Evaluation()
        outcomes = evaluate_rules(store, batch, rules)
        ids = _record(store, batch, outcomes, policy.enabled)
        thread = None
        if policy.enabled and ids:
            sender = WebhookSender(store.sessions, policy)
            thread = sender.start(deliveries_for(store.sessions, ids, _webhook_body(store, batch)))
        fired = sum(o.fired for o in outcomes)
        if fired:
            log.info("batch %s: %d alert rule(s) fired", batch_id, fired)
        return Evaluation(events=ids, deliveries=thread)
    except Exception:
        ref = uuid.uuid4().hex[:12]
        log.exception("alerts for batch %s could not be evaluated (reference %s); the batch is unaffected", batch_id, ref)
        return Evaluation()


def resume_pending(store: BatchStore, policy: WebhookPolicy, *, older_than: dt.timedelta | None = None,
                   now: dt.datetime | None = None) -> threading.Thread | None:
    """Send again the deliveries a stopped service left ``pending`` (called when the service starts).  Only events
    older than every try and wait of a delivery (``older_than``, default: the policy's longest delivery) are taken,
    so a delivery still under way in another process is not doubled; receivers dedupe by ``X-Voce-Delivery``."""
    if not policy.enabled:
        return None
    span = older_than if older_than is not None else dt.timedelta(seconds=policy.longest_seconds())
    cutoff = (now or utcnow()) - span
    try:
        with store.sessions() as s:
            found = list(s.scalars(select(AlertEvent).where(AlertEvent.webhook_status == "pending",
                                                            AlertEvent.created_at < cutoff).order_by(AlertEvent.id)))
            batches = {b.id: b for b in s.scalars(select(Batch).where(Batch.id.in_({e.batch_id for e in found})))}
        deliveries: list[Delivery] = []
        for event in found:
            batch = batches.get(event.batch_id)
            if batch is not None:
                deliveries += deliveries_for(store.sessions, [event.id], _webhook_body(store, batch))
        if deliveries:
            log.info("resending %d alert webhook(s) left pending", len(deliveries))
        return WebhookSender(store.sessions, policy).start(deliveries)
    except Exception:
        log.exception("pending alert webhooks could not be resumed")
        return None


__all__ = ["AlertService", "Delivery", "Evaluation", "RuleIn", "RulePatch", "evaluate_batch"]
