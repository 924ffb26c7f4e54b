"""``/v1/batches/{id}/compare``: one batch (or one period of it) against another batch or period, with significance.

A thin adapter: the rows come from :class:`~voce.service.batches.service.BatchService` (scoped to the caller's
tenant, so another tenant's batch on either side is a 404), the statistics from :func:`voce.service.analytics.compare`.
"""
from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import ValidationError

from voce.service.analytics import Comparison, Filters, compare
from voce.service.batches.errors import InvalidFilter
from voce.service.deps import AUTH_RESPONSES, FiltersDep, ReadBatchesDep

router = APIRouter(prefix="/v1", tags=["batches"], responses=AUTH_RESPONSES)

PeriodParam = Annotated[
    str | None, Query(max_length=16, description="2026-03, 2026-W09 or 2026-03-05; replaces the shared period")
]


class ComparisonResponse(Comparison):
    batch_a: str
    batch_b: str


def _side(filters: Filters, period: str | None) -> Filters:
    if period is None or not period.strip():
        return filters
    try:
        return Filters.model_validate({**filters.model_dump(), "period": period})
    except ValidationError as exc:
        raise InvalidFilter(f"invalid filter: {exc}") from exc


@router.get("/batches/{batch_id}/compare", response_model=ComparisonResponse, operation_id="compare_batches")
def compare_batches(
    batch_id: str,
    batches: ReadBatchesDep,
    filters: FiltersDep,
    b_batch: Annotated[
        str | None, Query(max_length=64, description="side B's batch (another upload); default: this batch")
    ] = None,
    a_period: PeriodParam = None,
    b_period: PeriodParam = None,
) -> ComparisonResponse:
    """Side B against side A (``diff`` = B - A): NPS, net sentiment, CSAT, and per topic and touchpoint the share
    of comments, net sentiment and NPS, each with a 95% interval, a raw p-value and a Benjamini-Hochberg
    significance flag across every test. Side A is this batch (``a_period`` narrows it to a period), side B is
    ``b_batch`` (default: this batch) in ``b_period``; the other filters apply to both sides. Compare this month
    with last month (``a_period=2026-03&b_period=2026-04``) or two uploads (``b_batch=...``)."""
    a = batches.get(batch_id)
    b = batches.get(b_batch) if b_batch and b_batch != batch_id else a
    fa, fb = _side(filters, a_period), _side(filters, b_period)
    labels = batches.labels()
    result = compare(
        batches.facts(a), batches.facts(b), fa, fb, labels=labels,
        label_a=" · ".join(x for x in (a.name, fa.period) if x), label_b=" · ".join(x for x in (b.name, fb.period) if x),
    )
    return ComparisonResponse(batch_a=a.id, batch_b=b.id, **result.model_dump())
