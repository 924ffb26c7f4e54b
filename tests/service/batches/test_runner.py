"""The batch pipeline without HTTP: leases, restart-resume, concurrent workers, failures that must stay clear."""
from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tests.service.api.helpers import wait_for
from tests.service.batch_data import batch_settings, queue, rows_file
from voce.service.batches.executor import LocalExecutor
from voce.service.batches.runner import BatchRunner, RunnerConfig
from voce.service.batches.store import BatchStore, LeaseLost


class _Crash(BaseException):
    """Stands for the process dying mid-batch (not an Exception: nothing marks the job failed)."""


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_restart_resumes_without_losing_or_repeating_rows(
    backend: str, request: pytest.FixtureRequest, fake_analyzer: Any, tiny_bundle_dir: Path, tmp_path: Path
) -> None:
    url = request.getfixturevalue("postgres_url") if backend == "postgres" else None
    settings = batch_settings(tmp_path, tiny_bundle_dir, database_url=url, worker_lease_seconds=1, discovery=False)
    store = BatchStore.open(settings.resolved_database_url())
    src = rows_file(tmp_path, 50)
    queue(store, settings, src, f"crash{backend}")
    queue(store, settings, src, f"clean{backend}")

    def die_after_three_chunks(done: int) -> None:
        if done >= 12:
            raise _Crash

    batch = store.claim("worker-a", 1, batch_id=f"crash{backend}")
    assert batch is not None
    config = RunnerConfig.from_settings(settings)
    with pytest.raises(_Crash):
        BatchRunner(store, fake_analyzer, "worker-a", config, on_chunk=die_after_three_chunks).run(batch)
    crashed = store.get(f"crash{backend}")
    assert crashed is not None and crashed.status == "running" and crashed.rows_done == 12
    assert store.claim("worker-b", 1, batch_id=f"crash{backend}") is None  # the lease is still fresh
    time.sleep(1.2)  # ... until the dead worker's lease runs out

    ex = LocalExecutor(store, lambda: fake_analyzer, config, name="restarted")
    ex.run_until_idle()  # resumes the crashed batch and runs the clean one (an API worker on the same database may help)
    assert wait_for(lambda: all(store.get(f"{k}{backend}").status == "done" for k in ("crash", "clean")), 60)  # type: ignore[union-attr]
    resumed, clean = store.get(f"crash{backend}"), store.get(f"clean{backend}")
    assert resumed is not None and clean is not None
    assert (resumed.status, resumed.rows_done, resumed.attempts) == ("done", 50, 2)
    got = [(r.row, r.doc_id, r.result) for r in store.iter_rows(f"crash{backend}", columns=("row", "doc_id", "result"))]
    want = [(r.row, r.doc_id, r.result) for r in store.iter_rows(f"clean{backend}", columns=("row", "doc_id", "result"))]
    assert [g[0] for g in got] == list(range(50))  # every row exactly once
    assert got == want  # and identical to an uninterrupted run


def test_a_worker_that_lost_its_lease_cannot_write(fake_analyzer: Any, tiny_bundle_dir: Path, tmp_path: Path) -> None:
    settings = batch_settings(tmp_path, tiny_bundle_dir, worker_lease_seconds=1)
    store = BatchStore.open(settings.resolved_database_url())
    queue(store, settings, rows_file(tmp_path, 8), "lease")
    assert store.claim("slow", 1) is not None
    time.sleep(1.1)
    assert store.claim("fast", 1) is not None  # "slow" looks dead; "fast" takes over
    with pytest.raises(LeaseLost):
        store.commit_chunk("lease", "slow", [], next_row=4)
    store.commit_chunk("lease", "fast", [], next_row=4)
    b = store.get("lease")
    assert b is not None and b.worker_id == "fast" and b.rows_done == 4


def test_concurrent_workers_share_the_queue(fake_analyzer: Any, tiny_bundle_dir: Path, tmp_path: Path) -> None:
    """Three workers, six batches: each batch is run once and completely."""
    settings = batch_settings(tmp_path, tiny_bundle_dir, discovery=False)
    store = BatchStore.open(settings.resolved_database_url())
    src = rows_file(tmp_path, 20)
    for i in range(6):
        queue(store, settings, src, f"q{i}")
    config = RunnerConfig.from_settings(settings)
    executors = [LocalExecutor(store, lambda: fake_analyzer, config, name=f"w{i}") for i in range(3)]
    threads = [threading.Thread(target=e.run_until_idle) for e in executors]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    for i in range(6):
        b = store.get(f"q{i}")
        assert b is not None and (b.status, b.rows_done, b.attempts) == ("done", 20, 1)
        assert [r.row for r in store.iter_rows(f"q{i}", columns=("row",))] == list(range(20))


def test_missing_upload_fails_clearly_without_internals(
    fake_analyzer: Any, tiny_bundle_dir: Path, tmp_path: Path
) -> None:
    settings = batch_settings(tmp_path, tiny_bundle_dir, discovery=False)
    store = BatchStore.open(settings.resolved_database_url())
    queue(store, settings, rows_file(tmp_path, 8), "gone")
    b = store.get("gone")
    assert b is not None
    Path(b.file_path).unlink()
    LocalExecutor(store, lambda: fake_analyzer, RunnerConfig.from_settings(settings)).run_until_idle()
    b = store.get("gone")
    assert b is not None and b.status == "failed" and "no longer in the data folder" in (b.error or "")
    assert str(tmp_path) not in (b.error or "")


def test_a_batch_that_keeps_killing_its_worker_stops_being_retried(
    fake_analyzer: Any, tiny_bundle_dir: Path, tmp_path: Path
) -> None:
    settings = batch_settings(tmp_path, tiny_bundle_dir, discovery=False, worker_lease_seconds=1)
    store = BatchStore.open(settings.resolved_database_url())
    queue(store, settings, rows_file(tmp_path, 8), "poison")
    for i in range(3):  # three workers die holding it
        assert store.claim(f"dead-{i}", 1) is not None
        time.sleep(1.1)
    LocalExecutor(store, lambda: fake_analyzer, RunnerConfig.from_settings(settings)).run_until_idle()
    b = store.get("poison")
    assert b is not None and b.status == "failed" and "3 times" in (b.error or "") and b.attempts == 4


class _SlowAnalyzer:
    """Each chunk takes longer than the lease: only the heartbeat keeps the batch with its worker."""

    def __init__(self, inner: Any, seconds: float) -> None:
        self.inner, self.seconds = inner, seconds
        self.bundle, self.taxonomy, self.encoder, self.config = inner.bundle, inner.taxonomy, inner.encoder, inner.config

    def with_config(self, config: Any) -> _SlowAnalyzer:
        return _SlowAnalyzer(self.inner.with_config(config), self.seconds)

    def analyze_with_embeddings(self, docs: Any) -> Any:
        time.sleep(self.seconds)
        return self.inner.analyze_with_embeddings(docs)


def test_slow_chunks_keep_their_lease_with_two_workers(fake_analyzer: Any, tiny_bundle_dir: Path, tmp_path: Path) -> None:
    settings = batch_settings(tmp_path, tiny_bundle_dir, discovery=False, worker_lease_seconds=1, batch_chunk_rows=4)
    store = BatchStore.open(settings.resolved_database_url())
    queue(store, settings, rows_file(tmp_path, 12), "slow")
    slow = _SlowAnalyzer(fake_analyzer, 1.5)
    executors = [LocalExecutor(store, lambda: slow, RunnerConfig.from_settings(settings), name=f"w{i}") for i in range(2)]  # type: ignore[arg-type,return-value]
    threads = [threading.Thread(target=e.run_until_idle) for e in executors]
    for t in threads:
        t.start()
        time.sleep(0.2)
    for t in threads:
        t.join(timeout=60)
    b = store.get("slow")
    assert b is not None and (b.status, b.rows_done, b.attempts) == ("done", 12, 1)


def test_a_batch_resumed_by_another_model_version_starts_over(
    fake_analyzer: Any, tiny_bundle_dir: Path, tmp_path: Path
) -> None:
    settings = batch_settings(tmp_path, tiny_bundle_dir, discovery=False, worker_lease_seconds=1)
    store = BatchStore.open(settings.resolved_database_url())
    queue(store, settings, rows_file(tmp_path, 12), "upgrade")
    batch = store.claim("old", 1)
    assert batch is not None

    def die(done: int) -> None:
        if done >= 4:
            raise _Crash

    with pytest.raises(_Crash):
        BatchRunner(store, fake_analyzer, "old", RunnerConfig.from_settings(settings), on_chunk=die).run(batch)
    store.heartbeat("upgrade", "old", model_version="an-older-model")
    time.sleep(1.1)
    LocalExecutor(store, lambda: fake_analyzer, RunnerConfig.from_settings(settings)).run_until_idle()
    b = store.get("upgrade")
    assert b is not None and (b.status, b.rows_done, b.model_version) == ("done", 12, "tiny-test")
    assert [r.row for r in store.iter_rows("upgrade", columns=("row",))] == list(range(12))


def test_a_finish_whose_answer_was_lost_is_done_not_a_lost_lease(
    fake_analyzer: Any, tiny_bundle_dir: Path, tmp_path: Path
) -> None:
    """The database commits the batch's 'done' and the connection dies before the answer (a backend terminated at
    that moment): the retry finds the batch done; the run reports done, with the outage noted on the batch."""
    from sqlalchemy.exc import OperationalError

    from tests.service.batch_data import batch_settings, queue, rows_file

    settings = batch_settings(tmp_path, tiny_bundle_dir, discovery=False)
    store = BatchStore.open(settings.resolved_database_url())
    queue(store, settings, rows_file(tmp_path, 10), "lostanswer")
    real_finish, calls = store.finish, []

    def finish_then_lose_the_answer(*args: Any, **kwargs: Any) -> None:
        calls.append(args)
        real_finish(*args, **kwargs)
        if len(calls) == 1:
            raise OperationalError("COMMIT", {}, ConnectionResetError("server closed the connection"),
                                   connection_invalidated=True)

    store.finish = finish_then_lose_the_answer  # type: ignore[method-assign]
    batch = store.claim("worker-l", 30, batch_id="lostanswer")
    assert batch is not None
    status = BatchRunner(store, fake_analyzer, "worker-l", RunnerConfig(chunk_rows=4, discovery=False)).run(batch)
    b = store.get("lostanswer")
    assert b is not None and (status, b.status, b.rows_done, len(calls)) == ("done", "done", 10, 1)
    assert b.error and "while finishing" in b.error and "nothing lost" in b.error


def test_connection_lost_tells_a_dead_connection_from_a_refused_statement() -> None:
    """What psycopg raises when a backend is terminated mid-``executemany`` is a lost connection even when SQLAlchemy
    has not invalidated it and the database answers again; statement errors and SQLite's errors are not."""
    import sqlite3

    import psycopg
    from psycopg import errors as pg
    from sqlalchemy.exc import IntegrityError, OperationalError

    from voce.service.db import connection_lost

    def op(orig: Exception, invalidated: bool = False) -> OperationalError:
        return OperationalError("INSERT", {}, orig, connection_invalidated=invalidated)

    assert connection_lost(op(pg.AdminShutdown("terminating connection due to administrator command")))
    assert connection_lost(op(psycopg.OperationalError("sending query failed: cannot exit pipeline mode while busy")))
    assert connection_lost(op(pg.ConnectionFailure("connection failure")))  # SQLSTATE 08006
    assert connection_lost(op(ConnectionResetError("reset"), invalidated=True))
    assert not connection_lost(op(pg.QueryCanceled("canceling statement due to statement timeout")))  # 57014
    assert not connection_lost(op(pg.DiskFull("could not extend file")))  # 53100: the server answers, and refuses
    assert not connection_lost(op(sqlite3.OperationalError("database is locked")))
    assert not connection_lost(IntegrityError("INSERT", {}, pg.UniqueViolation("duplicate key")))
    assert not connection_lost(ValueError("not a database error"))


@pytest.mark.parametrize("times", [3, 1000])
def test_a_connection_lost_while_the_database_answers_is_retried_a_few_times(
    times: int, fake_analyzer: Any, tiny_bundle_dir: Path, tmp_path: Path
) -> None:
    """A backend terminated under a chunk's commit (not flagged invalidated, the database answering at once) is
    retried: 3 losses in a row and the batch is done, each row once, in one attempt.  The same client-side error on
    every try is not a flaky connection: past ``LOST_CONNECTION_RETRIES`` the batch fails with a reference."""
    from psycopg import errors as pg
    from sqlalchemy.exc import OperationalError

    from voce.service.batches.runner import LOST_CONNECTION_RETRIES

    settings = batch_settings(tmp_path, tiny_bundle_dir, discovery=False)
    store = BatchStore.open(settings.resolved_database_url())
    queue(store, settings, rows_file(tmp_path, 10), "killed")
    real_commit, lost = store.commit_chunk, []

    def commit_or_lose_the_connection(*args: Any, **kwargs: Any) -> None:
        if len(lost) < times and kwargs.get("next_row") == 8:
            lost.append(1)
            raise OperationalError("INSERT", {}, pg.AdminShutdown("terminating connection due to administrator command"))
        real_commit(*args, **kwargs)

    store.commit_chunk = commit_or_lose_the_connection  # type: ignore[method-assign]
    batch = store.claim("worker-k", 30, batch_id="killed")
    assert batch is not None
    status = BatchRunner(store, fake_analyzer, "worker-k", RunnerConfig(chunk_rows=4, discovery=False)).run(batch)
    b = store.get("killed")
    assert b is not None
    if times == 3:
        assert (status, b.status, b.rows_done, b.attempts, len(lost)) == ("done", "done", 10, 1, 3)
        assert [r.row for r in store.iter_rows("killed", columns=("row",))] == list(range(10))
        assert b.error and "while storing rows 5-8" in b.error and "nothing lost" in b.error
    else:
        assert (status, b.status, b.rows_done, len(lost)) == ("failed", "failed", 4, LOST_CONNECTION_RETRIES + 1)
        said = f"lost its connection {LOST_CONNECTION_RETRIES + 1} times in a row (AdminShutdown)"
        assert b.error and said in b.error and "reference" in b.error


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_cancel_a_queued_and_a_running_batch(
    backend: str, request: pytest.FixtureRequest, fake_analyzer: Any, tiny_bundle_dir: Path, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Queued: cancelled at once, never claimed.  Running: stops at the next chunk, keeps its stored rows (a prefix
    of the file), no discovery, upload deleted; cancelling a finished batch changes nothing."""
    from voce.service.batches import runner

    monkeypatch.setattr(runner, "CANCEL_CHECK_SECONDS", 0.0)  # look after every chunk (1 s apart otherwise)
    url = request.getfixturevalue("postgres_url") if backend == "postgres" else None
    settings = batch_settings(tmp_path, tiny_bundle_dir, database_url=url)
    store = BatchStore.open(settings.resolved_database_url())
    src = rows_file(tmp_path, 40)
    queue(store, settings, src, f"queued{backend}")
    queue(store, settings, src, f"running{backend}")
    assert store.cancel(f"queued{backend}") == "cancelled"
    config = RunnerConfig.from_settings(settings)

    def cancel_after_two_chunks(done: int) -> None:
        if done == 8:
            assert store.cancel(f"running{backend}") == "cancelling"

    batch = store.claim("w", 30)
    assert batch is not None and batch.id == f"running{backend}"  # the cancelled one is not claimable
    status = BatchRunner(store, fake_analyzer, "w", config, on_chunk=cancel_after_two_chunks).run(batch)
    b = store.get(f"running{backend}")
    assert status == "cancelled" and b is not None
    assert (b.status, b.rows_done, b.discovery, b.worker_id) == ("cancelled", 8, None, None)
    assert [r.row for r in store.iter_rows(b.id, columns=("row",))] == list(range(8))
    assert b.file_deleted_at is not None and not Path(b.file_path).exists()
    q = store.get(f"queued{backend}")
    assert q is not None and (q.status, q.rows_done, q.attempts) == ("cancelled", 0, 0)
    assert store.claim("w2", 30) is None
    assert store.cancel(f"running{backend}") == "cancelled"  # already finished: unchanged


def test_discovery_on_a_sample_assigns_every_other_row(fake_analyzer: Any, tiny_bundle_dir: Path, tmp_path: Path) -> None:
    """VOCE_DISCOVERY_SAMPLE: themes fitted on a seeded sample, every other analysed row assigned afterwards; the
    themes' sizes and the outlier share count the whole batch; the same seed gives the same result, in the worker's
    process or in a child process (VOCE_DISCOVERY_PROCESS=child, the service's default)."""
    from collections import Counter

    from tests.service.batch_data import ROWS, csv_bytes

    themes = [r for r in ROWS if r["id"] in ("r1", "r7", "r8")]  # delivery, call centre, staff: three themes
    rows = [dict(r, id=f"{r['id']}-{k}", commento=f"{r['commento']} {k % 5}") for k in range(50) for r in themes]
    src = tmp_path / "many.csv"
    src.write_bytes(csv_bytes(rows))
    results = []
    for run, where in (("a", "inline"), ("b", "child")):
        settings = batch_settings(tmp_path / run, tiny_bundle_dir, discovery_sample=60, discovery_process=where)
        store = BatchStore.open(settings.resolved_database_url())
        queue(store, settings, src, f"sample{run}")
        LocalExecutor(store, lambda: fake_analyzer, RunnerConfig.from_settings(settings), name=run).run_until_idle()
        b = store.get(f"sample{run}")
        assert b is not None and b.status == "done" and b.discovery_error is None, b.discovery_error
        found = {r.row: r.discovered for r in store.iter_rows(b.id, columns=("ok", "discovered")) if r.ok}
        results.append((b.discovery, found))
    (payload, found), (payload_b, found_b) = results
    assert {**payload, "seconds": 0} == {**payload_b, "seconds": 0} and found == found_b  # reproducible
    assert payload["topics"], payload.get("note")
    ok_rows = len(found)
    assert payload["fitted_on"] == 60 and payload["n_docs"] == ok_rows > 60
    assert all(v is not None for v in found.values())  # every analysed row has a theme or -1
    sizes = Counter(found.values())
    assert {t["id"]: t["size"] for t in payload["topics"]} == {t: n for t, n in sizes.items() if t >= 0}
    assert payload["outlier_share"] == round(sizes.get(-1, 0) / ok_rows, 4)
    assert "seeded sample of 60" in payload["note"]
