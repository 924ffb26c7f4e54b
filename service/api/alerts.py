"""``/v1/alerts``: alert rules of the caller's tenant and the feed of their events (see
:mod:`voce.service.insights.alerts`).

Rules and events are read with ``batches:read``; rules are created, changed and deleted with ``batches:write``.
Rules are evaluated when a batch of the tenant finishes; a fired rule is an event in ``GET /v1/alerts/events`` and,
with a webhook, a signed POST.
"""
from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Response

from voce.service.deps import AUTH_RESPONSES, ReadAlertsDep, WriteAlertsDep
from voce.service.errors import ErrorEnvelope
from voce.service.insights.alerts import MAX_EVENTS_PAGE, EventPage, RuleIn, RuleList, RuleOut, RulePatch

router = APIRouter(prefix="/v1/alerts", tags=["alerts"], responses=AUTH_RESPONSES)

RuleId = Annotated[int, Path(ge=1, le=2**62)]
Cursor = Annotated[int | None, Query(ge=0, le=2**62)]
_INVALID: dict[int | str, dict[str, Any]] = {
    422: {"model": ErrorEnvelope, "description": "a rule that cannot be evaluated, or a webhook this service "
                                      "may not call (details: a code and its parameters)"},
}


@router.get("/rules", response_model=RuleList, operation_id="list_alert_rules")
def list_rules(alerts: ReadAlertsDep) -> RuleList:
    return alerts.list()


@router.post("/rules", response_model=RuleOut, status_code=201, operation_id="create_alert_rule", responses=_INVALID)
def create_rule(body: RuleIn, alerts: WriteAlertsDep) -> RuleOut:
    """A rule, checked on every batch of the tenant that finishes: a metric of the whole selection, a topic,
    touchpoint, channel or segment above or below a threshold, or significantly changed against the previous batch
    or period.  With ``webhook_url`` (allowed by the operator) the answer carries ``webhook_secret`` once."""
    return alerts.create(body)


@router.get("/rules/{rule_id}", response_model=RuleOut, operation_id="get_alert_rule")
def get_rule(rule_id: RuleId, alerts: ReadAlertsDep) -> RuleOut:
    return alerts.get(rule_id)


@router.patch("/rules/{rule_id}", response_model=RuleOut, operation_id="update_alert_rule", responses=_INVALID)
def update_rule(rule_id: RuleId, body: RulePatch, alerts: WriteAlertsDep) -> RuleOut:
    """Rename, enable or disable, change the threshold, direction, minimum rows, filters or webhook."""
    return alerts.update(rule_id, body)


@router.delete("/rules/{rule_id}", status_code=204, operation_id="delete_alert_rule")
def delete_rule(rule_id: RuleId, alerts: WriteAlertsDep) -> Response:
    """The rule goes; its past events stay in the feed."""
    alerts.delete(rule_id)
    return Response(status_code=204)


@router.get("/events", response_model=EventPage, operation_id="list_alert_events")
def list_events(
    alerts: ReadAlertsDep,
    since: Annotated[dt.datetime | None, Query(description="only events recorded at or after this time (ISO 8601)")] = None,
    after: Annotated[Cursor, Query(description="order=asc: events after this id (the previous page's next_cursor)")] = None,
    before: Annotated[Cursor, Query(description="order=desc: events before this id")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_EVENTS_PAGE)] = 50,
    order: Annotated[Literal["asc", "desc"], Query(description="asc: a feed to poll; desc: newest first")] = "asc",
    rule_id: Annotated[int | None, Query(ge=1, le=2**62)] = None,
    batch_id: Annotated[str | None, Query(max_length=64)] = None,
) -> EventPage:
    """Fired alerts (and rules that could not be evaluated), with their webhook delivery state."""
    return alerts.events(since=since, after=after, before=before, limit=limit, order=order, rule_id=rule_id,
                         batch_id=batch_id)
