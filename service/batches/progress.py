"""How a running batch is doing, as its status reports it: a remaining-time estimate that does not climb before it
falls, and the warnings and errors its rows got, counted by kind.

Both are kept in the API process per batch (:class:`~voce.service.batches.service.BatchService` holds them) and
fed from what the database already says: the rows done and when the last chunk landed (``heartbeat_at``), and the
stored rows' warnings.  No worker writes anything more for them.
"""
from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, Field

from voce.service.uploads import classify_warning, error_params


class ChunkRate:
    """Rows per second as an exponentially weighted average over chunks, and the remaining time from it.

    Why: the ETA used to be ``remaining * elapsed / done`` since the run began.  Between two chunk commits
    ``elapsed`` grows while ``done`` stands still, so every poll in between showed a longer ETA (a sawtooth that
    climbed before each fall), and the first chunks, slowed by the model's warm-up, weighed on it for the whole run.
    Here the rate is measured chunk by chunk; no ETA is given until ``warmup`` chunks are measured (then the median
    of those starts the average, so one slow first chunk does not); between commits the ETA counts down from the last
    one shown and moves part of the way (``follow``) towards each new estimate, never above the last ETA shown (a
    slower estimate pauses the countdown instead of lifting it); only an estimate past the last ETA by more than
    ``slack`` (a real slowdown) is shown as it is.  On synthetic runs of 60 chunks with chunk times +-20% and a
    3x slower first chunk (tests/service/batches/test_progress.py), 60 of 60 seeds never climbed and halfway through
    every ETA was within 12% of the time really left.
    """

    def __init__(
        self, alpha: float = 0.2, warmup: int = 3, slack: float = 0.2, min_slack_s: float = 5.0, follow: float = 0.3
    ) -> None:
        self.alpha = alpha  # weight of the newest chunk's rate
        self.follow = follow  # share of a fall below the countdown taken at once
        self.warmup = warmup  # chunks measured before an ETA is given
        self.slack = slack  # relative rise of the estimate over the countdown taken as a real slowdown
        self.min_slack_s = min_slack_s  # ... and at least this many seconds
        self._reset()

    def _reset(self) -> None:
        self.rate: float | None = None  # rows per second
        self._first: list[float] = []  # the warm-up chunks' rates
        self._rows: int | None = None  # rows stored at the last observed change ...
        self._at = 0.0  # ... and when
        self._shown: float | None = None  # the last ETA given ...
        self._shown_at = 0.0  # ... and when

    def observe(self, rows_done: int, at: float) -> None:
        """``rows_done`` rows were stored by time ``at`` (seconds); the same or an older observation is ignored."""
        if self._rows is None or rows_done < self._rows:  # the first look, or the batch restarted from the top
            self._reset()
            self._rows, self._at = rows_done, at
            return
        if rows_done == self._rows or at <= self._at:
            return
        measured = (rows_done - self._rows) / (at - self._at)
        self._rows, self._at = rows_done, at
        if self.rate is None:
            self._first.append(measured)
            if len(self._first) >= self.warmup:
                self.rate = statistics.median(self._first)
        else:
            self.rate = self.alpha * measured + (1 - self.alpha) * self.rate

    def eta(self, total: int, now: float) -> float | None:
        """Seconds left for ``total`` rows at ``now``; None while warming up."""
        if self.rate is None or self.rate <= 0 or self._rows is None:
            return None
        left = max(total - self._rows, 0)
        if left == 0:
            return 0.0
        estimate = max(left / self.rate - max(now - self._at, 0.0), 1.0)
        if self._shown is not None:
            countdown = max(self._shown - max(now - self._shown_at, 0.0), 1.0)
            if estimate <= self._shown + max(self.slack * self._shown, self.min_slack_s):
                # within the noise: move from the countdown part of the way to the estimate, never above the last
                # ETA shown (a slower estimate makes the countdown pause, not climb)
                estimate = min(self._shown, countdown + self.follow * (estimate - countdown))
        self._shown, self._shown_at = estimate, now
        return round(estimate, 1)


class NoteExample(BaseModel):
    row: int = Field(description="The row's number in the file (1 = the first row under the header).")
    id: str
    params: dict[str, Any]
    message: str


class NoteCount(BaseModel):
    code: str = Field(description="What happened (warn.* / rowerr.* keys of the page's labels).")
    params: dict[str, Any] = Field(description="What the rows of this count share (the score's role).")
    count: int
    message: str = Field(description="The same in English.")
    examples: list[NoteExample]


class RowNotes(BaseModel):
    """The rows' warnings (a value ignored, a quote read as a character) and errors (an empty comment), by kind."""

    rows_checked: int = Field(description="Rows stored so far that these counts cover.")
    rows_with_warnings: int
    warnings: list[NoteCount]
    errors: list[NoteCount]


#: examples kept per kind of warning or error
EXAMPLES = 3


@dataclass
class NotesTally:
    """Counts kept as the rows are stored (each row read once: ``upto`` is where the next read starts)."""

    upto: int = 0
    with_warnings: int = 0
    warnings: dict[tuple[str, str], NoteCount] = field(default_factory=dict)
    errors: dict[tuple[str, str], NoteCount] = field(default_factory=dict)

    def add_warnings(self, row: int, doc_id: str, messages: list[str]) -> None:
        if messages:
            self.with_warnings += 1
        for message in messages:
            code, params = classify_warning(message)
            self._count(self.warnings, code, params, row, doc_id, message)

    def add_error(self, row: int, doc_id: str, code: str, message: str) -> None:
        self._count(self.errors, code, error_params(code, message), row, doc_id, message)

    @staticmethod
    def _count(into: dict[tuple[str, str], NoteCount], code: str, params: dict[str, Any], row: int, doc_id: str,
               message: str) -> None:
        shared = {"role": params["role"]} if "role" in params else {}
        key = (code, shared.get("role", ""))
        found = into.get(key)
        if found is None:
            found = into[key] = NoteCount(code=code, params=shared, count=0, message="", examples=[])
        found.count += 1
        if len(found.examples) < EXAMPLES:
            found.examples.append(NoteExample(row=row + 1, id=doc_id, params=params, message=message))
        first = found.examples[0]
        found.message = f"{found.count} row(s); e.g. row {first.row}: {first.message}"

    def notes(self) -> RowNotes:
        def ordered(d: dict[tuple[str, str], NoteCount]) -> list[NoteCount]:
            return sorted((n.model_copy(deep=True) for n in d.values()), key=lambda n: -n.count)

        return RowNotes(rows_checked=self.upto, rows_with_warnings=self.with_warnings,
                        warnings=ordered(self.warnings), errors=ordered(self.errors))
