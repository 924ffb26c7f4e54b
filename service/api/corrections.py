"""``/v1/batches/{id}/corrections`` and ``/v1/batches/{id}/rows/{row}/corrections``: an analyst's fixes of a row's
sentiment, topics, touchpoints and detractor flag (see :mod:`voce.service.learning.corrections`).

Listing needs ``batches:read``; making and reverting a correction ``batches:write``.  Another tenant's batch is a 404.
"""
from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path

from voce.service.deps import AUTH_RESPONSES, AuthorDep, ReadCorrectionsDep, WriteCorrectionsDep
from voce.service.errors import ErrorEnvelope
from voce.service.learning.corrections import BatchCorrections, CorrectionIn, RowCorrection

router = APIRouter(prefix="/v1", tags=["corrections"], responses=AUTH_RESPONSES)

RowIndex = Annotated[int, Path(ge=0, le=100_000_000, description="the row's index in the upload (0 = first)")]
CorrectionId = Annotated[int, Path(ge=1, le=2**62)]
_INVALID: dict[int | str, dict[str, Any]] = {
    422: {"model": ErrorEnvelope, "description": "the correction does not fit the row or the batch's taxonomy "
                                                 "(details: a code and its parameters)"},
}


@router.get("/batches/{batch_id}/corrections", response_model=BatchCorrections, operation_id="list_batch_corrections")
def batch_corrections(batch_id: str, corrections: ReadCorrectionsDep) -> BatchCorrections:
    """Every corrected row of the batch: prediction and corrected value side by side, with the corrections."""
    return corrections.batch(batch_id)


@router.get("/batches/{batch_id}/rows/{row}/corrections", response_model=RowCorrection,
            operation_id="get_row_corrections")
def row_corrections(batch_id: str, row: RowIndex, corrections: ReadCorrectionsDep) -> RowCorrection:
    """One row's prediction, its corrected value and its corrections (reverted ones included)."""
    return corrections.row(batch_id, row)


@router.post("/batches/{batch_id}/rows/{row}/corrections", response_model=RowCorrection, status_code=201,
             operation_id="create_row_correction", responses=_INVALID)
def create_correction(
    batch_id: str, row: RowIndex, body: CorrectionIn, corrections: WriteCorrectionsDep, author: AuthorDep
) -> RowCorrection:
    """Correct a row: its sentiment, topics to add (with their polarity) or remove, touchpoints to add or remove,
    the detractor flag.  Recorded with the key's name, the time and the model version corrected; the dashboard
    counts the corrected value from now on."""
    return corrections.create(batch_id, row, body, author)


@router.delete("/batches/{batch_id}/rows/{row}/corrections/{correction_id}", response_model=RowCorrection,
               operation_id="revert_row_correction")
def revert_correction(
    batch_id: str, row: RowIndex, correction_id: CorrectionId, corrections: WriteCorrectionsDep, author: AuthorDep
) -> RowCorrection:
    """Revert a correction: it stays in the row's history and no longer applies."""
    return corrections.revert(batch_id, row, correction_id, author)
