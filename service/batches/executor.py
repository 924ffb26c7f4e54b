"""Who runs queued batches.

:class:`BatchExecutor` is the seam a distributed engine takes over: a Ray executor would implement its three
methods and ship :func:`~voce.service.batches.runner.analyze_chunk` calls to its cluster, while the store and the
pipeline stay as they are.  :class:`LocalExecutor` is the one we ship: N threads polling the store, in-process
inside the API (the embedded default) or in ``voce worker`` processes beside it.
"""
from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from voce.models.analyzer import Analyzer
from voce.models.caches import release_heap
from voce.service.batches.runner import DB_OUTAGE_ERRORS, BatchRunner, ChunkAnalysis, RunnerConfig
from voce.service.batches.store import BatchStore

if TYPE_CHECKING:
    from voce.models.spec import AnalyzerSpec
    from voce.service.settings import Settings

log = logging.getLogger("voce.jobs")


class BatchExecutor(Protocol):
    """Runs queued batches: started with the API (or a worker process), told when a batch arrives, stopped."""

    def start(self) -> None: ...

    def notify(self) -> None: ...

    def stop(self, timeout: float = 30.0) -> None: ...


def new_worker_name() -> str:
    """A worker id for a one-off run in the calling process (``voce batch submit --wait``)."""
    return f"worker-{uuid.uuid4().hex[:8]}"


class LocalExecutor:
    """``threads`` workers in this process, polling the store (woken at once by :meth:`notify`)."""

    def __init__(
        self,
        store: BatchStore,
        analyzer: Callable[[], Analyzer | None],
        config: RunnerConfig,
        threads: int = 1,
        poll_seconds: float = 2.0,
        name: str = "api",
        chunks: Callable[[Analyzer], ChunkAnalysis] | None = None,
        kind: str = "local",
    ) -> None:
        self.store = store
        # who analyses the chunks (None: this process; ray_executor.RayChunkSource: a Ray cluster's actors)
        self.chunks = chunks
        self.kind = kind
        self.analyzer = analyzer
        self.config = config
        self.threads = threads
        self.poll_seconds = poll_seconds
        self.worker_prefix = f"{name}-{uuid.uuid4().hex[:8]}"
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        for i in range(self.threads):
            t = threading.Thread(target=self._loop, args=(f"{self.worker_prefix}-{i}",), daemon=True, name=f"voce-worker-{i}")
            t.start()
            self._threads.append(t)

    def notify(self) -> None:
        self._wake.set()

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        self._wake.set()
        for t in self._threads:
            t.join(timeout=timeout)
        close = getattr(self.chunks, "close", None)
        if close is not None:  # a Ray executor's actors
            close()

    def run_until_idle(self, worker_id: str | None = None) -> int:
        """Process batches in the calling thread until none is claimable (CLI, tests); returns how many ran."""
        n = 0
        wid = worker_id or f"{self.worker_prefix}-fg"
        while not self._stop.is_set() and self._once(wid):
            n += 1
        return n

    def _once(self, wid: str) -> bool:
        analyzer = self.analyzer()
        if analyzer is None:
            return False
        batch = self.store.claim(wid, self.config.lease_seconds)
        if batch is None:
            return False
        log.info("worker %s: batch %s (%s), from row %d", wid, batch.id, batch.name, batch.rows_done)
        runner = BatchRunner(self.store, analyzer, wid, self.config, stop=self._stop, chunks=self.chunks, executor=self.kind)
        try:
            status = runner.run(batch)
        finally:
            del runner
            release_heap()  # a batch's chunks, discovery and its vectors leave hundreds of MB the allocator would keep
        log.info("worker %s: batch %s -> %s", wid, batch.id, status)
        return True

    def _loop(self, wid: str) -> None:
        while not self._stop.is_set():
            try:
                worked = self._once(wid)
            except Exception as exc:  # a database hiccup must not kill the worker thread
                if isinstance(exc, DB_OUTAGE_ERRORS):  # said once per poll, without a traceback each time
                    log.warning("worker %s: the database is unreachable (%s); polling again in %.0f s",
                                wid, type(exc).__name__, self.poll_seconds)
                else:
                    log.exception("worker %s: polling failed", wid)
                worked = False
            if not worked:
                self._wake.wait(self.poll_seconds)
                self._wake.clear()


def build_executor(
    settings: Settings,
    store: BatchStore,
    analyzer: Callable[[], Analyzer | None],
    threads: int,
    name: str = "api",
    spec: Callable[[], AnalyzerSpec] | None = None,
) -> LocalExecutor:
    """The executor ``VOCE_EXECUTOR`` asks for: ``local`` analyses in this process, ``ray`` on a Ray cluster's
    analyzer actors (this process still claims batches, reads uploads and stores the rows in order).  ``spec``: what
    the serving analyzer was loaded from (the registry's active version), so Ray actors load the same."""
    config = RunnerConfig.from_settings(settings)
    if settings.executor == "local":
        return LocalExecutor(store, analyzer, config, threads=threads, name=name)
    from voce.service.batches.ray_executor import RayChunkSource, RayConfig

    ray_config = RayConfig(
        address=settings.ray_address, actors=settings.ray_actors, cpus_per_actor=settings.ray_cpus_per_actor,
        gpus_per_actor=settings.ray_gpus_per_actor,
    )
    source = RayChunkSource(ray_config, spec or settings.analyzer_spec)
    return LocalExecutor(store, analyzer, config, threads=threads, name=name, chunks=source, kind="ray")
