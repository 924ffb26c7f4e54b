"""The batch ETA (service/batches/progress.py ChunkRate) on synthetic chunk timelines: no estimate during the warm-up,
then one that never climbs on jitter, counts down between chunks, lands near the real remaining time, still shows a
real slowdown, and starts over when the batch does; and the warnings tally."""
from __future__ import annotations

import random

from voce.service.batches.progress import ChunkRate, NotesTally
from voce.service.uploads import row_warning


def _timeline(chunk_times: list[float], chunk_rows: int, poll: float) -> list[tuple[float, int]]:
    """(poll time, rows stored by then) for a page polling every ``poll`` s while chunks land."""
    landed, t = [], 0.0
    for d in chunk_times:
        t += d
        landed.append(t)
    out, now = [], 0.0
    while now <= landed[-1] + poll:
        out.append((now, chunk_rows * sum(1 for x in landed if x <= now)))
        now += poll
    return out


def _run(rate: ChunkRate, chunk_times: list[float], chunk_rows: int, total: int, poll: float = 0.7
         ) -> list[tuple[float, float | None, int]]:
    """Feed the estimator as the status route does: the rows stored, when the last chunk landed; ETA at each poll."""
    landed_at = [sum(chunk_times[: i + 1]) for i in range(len(chunk_times))]
    seen = []
    for now, done in _timeline(chunk_times, chunk_rows, poll):
        k = done // chunk_rows
        rate.observe(done, landed_at[k - 1] if k else 0.0)
        seen.append((now, rate.eta(total, now), done))
    return seen


def test_no_eta_during_warm_up_then_one_that_never_climbs_on_jitter() -> None:
    rng = random.Random(7)
    chunks, rows = 60, 64
    times = [6.0] + [2.0 * rng.uniform(0.8, 1.2) for _ in range(chunks - 1)]  # a slow first chunk (model warm-up)
    seen = _run(ChunkRate(), times, rows, chunks * rows)
    etas = [(now, eta) for now, eta, done in seen if done < chunks * rows]
    assert all(eta is None for now, eta in etas if now < sum(times[:3]))  # fewer than three chunks measured
    shown = [(now, eta) for now, eta in etas if eta is not None]
    assert len(shown) > 100
    assert all(b <= a for (_, a), (_, b) in zip(shown, shown[1:], strict=False))  # never climbs
    # and it is right: halfway, within 20% of the time really left
    end = sum(times)
    mid_now, mid_eta = shown[len(shown) // 2]
    assert abs(mid_eta - (end - mid_now)) <= 0.2 * (end - mid_now)


def test_the_old_estimate_climbed_between_chunks() -> None:
    """What this replaces: rows * elapsed / done rises at every poll between two commits (the issue's complaint)."""
    times = [2.0] * 20
    polls = _timeline(times, 64, 0.7)
    old = [(20 * 64 - done) * now / done for now, done in polls if 0 < done < 20 * 64]
    assert any(b > a for a, b in zip(old, old[1:], strict=False))


def test_a_real_slowdown_still_shows() -> None:
    times = [2.0] * 20 + [6.0] * 30  # three times slower from chunk 21 on (long transcripts)
    seen = _run(ChunkRate(), times, 64, 50 * 64)
    end = sum(times)
    etas = [(now, eta) for now, eta, done in seen if eta is not None and done < 50 * 64]
    assert any(b > a for (_, a), (_, b) in zip(etas, etas[1:], strict=False))  # the rise is shown, not hidden
    late = [(now, eta) for now, eta in etas if now >= end - 60]
    assert abs(late[0][1] - (end - late[0][0])) <= 0.3 * (end - late[0][0])  # and caught up with


def test_restart_from_the_top_warms_up_again() -> None:
    rate = ChunkRate()
    for k in range(1, 6):
        rate.observe(64 * k, 2.0 * k)
    assert rate.eta(640, 10.5) is not None
    rate.observe(0, 11.0)  # the model changed: the batch is analysed again from the first row
    assert rate.eta(640, 11.5) is None
    assert rate.eta(0, 12.0) is None or rate.eta(0, 12.0) == 0.0


def test_notes_tally_counts_by_kind_with_examples() -> None:
    tally = NotesTally()
    for row in range(10):
        warnings = [row_warning("value.kind", value="Fidelity")]
        if row % 3 == 0:
            warnings.append(row_warning("value.score", role="nps", value="12", lo=0, hi=10))
        if row == 4:
            warnings.append(row_warning("value.score", role="csat", value="9", lo=1, hi=5))
        tally.add_warnings(row, f"r{row}", warnings)
    tally.add_error(2, "r2", "EmptyText", "column 'Commento' is empty")
    tally.upto = 10
    notes = tally.notes()
    assert notes.rows_with_warnings == 10 and notes.rows_checked == 10
    counts = [(n.code, n.params.get("role"), n.count) for n in notes.warnings]
    assert counts == [("value.kind", None, 10), ("value.score", "nps", 4), ("value.score", "csat", 1)]
    assert [e.row for e in notes.warnings[0].examples] == [1, 2, 3]  # three examples, rows numbered from 1
    assert notes.errors[0].examples[0].params == {"column": "Commento"}
