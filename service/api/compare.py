"""``/v1/batches/{id}/compare``: one batch (or one period of it) against another batch or period, with significance.

A thin adapter over :meth:`~voce.service.batches.service.BatchService.compare` (scoped to the caller's tenant, so
another tenant's batch on either side is a 404; ``voce batch compare`` is the same call), whose statistics are
:func:`voce.service.analytics.compare`.
"""
from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from voce.service.analytics import Comparison
from voce.service.deps import AUTH_RESPONSES, FiltersDep, ReadBatchesDep

router = APIRouter(prefix="/v1", tags=["batches"], responses=AUTH_RESPONSES)

PeriodParam = Annotated[
    str | None, Query(max_length=16, description="2026-03, 2026-W09 or 2026-03-05; replaces the shared period")
]


class ComparisonResponse(Comparison):
    batch_a: str
    batch_b: str


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
    return ComparisonResponse.model_validate(
        batches.compare(batch_id, filters, b_batch=b_batch, a_period=a_period, b_period=b_period)
    )
