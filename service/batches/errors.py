"""What can go wrong with a batch, in the batch layer's own words (no HTTP here).

The routers, the page and the CLI all call :mod:`voce.service.batches.service`; each turns these errors into its
own answer: the API through the one exception -> status map in :mod:`voce.service.errors`, the CLI as ``error: ...``.
"""
from __future__ import annotations


class BatchError(Exception):
    """Base of the batch layer's errors; the message is ours and safe to show to whoever asked."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BatchNotFound(BatchError):
    """No batch has this id."""


class TopicNotFound(BatchError):
    """The batch has no discovered topic with this id."""


class BatchBusy(BatchError):
    """The batch is still queued or being analysed."""


class InvalidUpload(BatchError):
    """The file (or its column mapping) cannot become a batch: wrong type, no header, unknown column, empty."""


class UploadTooLarge(BatchError):
    """The file is larger than the configured upload limit."""


class UploadStoreUnavailable(BatchError):
    """The object store uploads are kept in (VOCE_UPLOAD_STORE) refused the file or could not be reached."""


class InvalidFilter(BatchError):
    """A KPI or row filter that cannot be read (bad period, segment without a colon, dates out of order)."""
