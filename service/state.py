"""What the running app holds on ``app.state``: the model as it loads, the admission gate and the metrics.

Built by :func:`voce.service.app.create_app`, read by the dependencies in :mod:`voce.service.deps`.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Histogram

from voce.models.analyzer import Analyzer
from voce.models.spec import AnalyzerSpec, load_analyzer
from voce.service.batches.service import touchpoint_names
from voce.service.errors import Overloaded

log = logging.getLogger("voce.service")


class Admission:
    """At most ``concurrency + waiting`` requests in flight; the rest get 429.

    The analyses themselves are serialised by the micro-batcher (:mod:`voce.service.microbatch`), which answers
    the requests in flight together: this gate is what bounds its queue.
    """

    def __init__(self, concurrency: int, waiting: int) -> None:
        self._lock = threading.Lock()
        self._inside = 0
        self._limit = concurrency + waiting

    @contextmanager
    def slot(self) -> Iterator[None]:
        with self._lock:
            if self._inside >= self._limit:
                raise Overloaded("the service is busy; retry shortly")
            self._inside += 1
        try:
            yield
        finally:
            with self._lock:
                self._inside -= 1


@dataclass
class Engine:
    """The analyzer once loaded (``/ready`` turns 200), or why it failed to load."""

    analyzer: Analyzer | None = None
    error: str | None = None
    loaded: threading.Event = field(default_factory=threading.Event)

    def load(self, spec: AnalyzerSpec) -> None:
        """Load and warm up the analyzer (run in a background thread); a failure is kept, not raised."""
        try:
            t0 = time.time()
            analyzer = load_analyzer(spec, progress=lambda m: log.info("%s", m))
            analyzer.warm_up()
            self.analyzer = analyzer
            log.info("model ready in %.1fs (%s, %s)", time.time() - t0, analyzer.bundle.version, analyzer.encoder.name)
        except Exception as exc:  # the service stays up and reports why it is not ready
            log.exception("model failed to load")
            self.error = f"{type(exc).__name__}: {exc}"
        finally:
            self.loaded.set()

    def labels(self) -> dict[str, str]:
        """Topic and touchpoint names of the taxonomy in use (ids only while the model is loading)."""
        return self.analyzer.taxonomy.labels() if self.analyzer is not None else {}

    def touchpoint_labels(self) -> dict[str, str]:
        """Touchpoint names alone: what names a channel that is a touchpoint id (empty while the model is loading)."""
        return touchpoint_names(self.analyzer.taxonomy) if self.analyzer is not None else {}


@dataclass
class Metrics:
    """Prometheus series of the app.  ``route`` labels are route templates (``/v1/batches/{batch_id}``, or
    ``<unmatched>``: see :class:`voce.service.protocol.RouteLabels`), never raw paths, so the number of series is
    bounded by the routes times the statuses whatever clients ask for."""

    registry: CollectorRegistry
    requests: Counter
    documents: Counter
    latency: Histogram
    batch_requests: Histogram
    batch_documents: Histogram

    @classmethod
    def create(cls) -> Metrics:
        reg = CollectorRegistry()
        return cls(
            registry=reg,
            requests=Counter("voce_requests", "HTTP requests", ["route", "status"], registry=reg),
            documents=Counter("voce_documents", "Documents processed", ["outcome"], registry=reg),
            latency=Histogram("voce_request_seconds", "Request latency", ["route"], registry=reg),
            batch_requests=Histogram(
                "voce_microbatch_requests", "/v1/analyze requests answered by one analyzer call (micro-batching)",
                buckets=(1, 2, 4, 8, 16, 32, 64), registry=reg,
            ),
            batch_documents=Histogram(
                "voce_microbatch_documents", "Documents analysed by one /v1/analyze analyzer call",
                buckets=(1, 2, 4, 8, 16, 25, 32, 64, 128, 256), registry=reg,
            ),
        )

    def microbatch(self, requests: int, documents: int) -> None:
        """One analyzer call of the micro-batcher: how many requests and documents it answered together."""
        self.batch_requests.observe(requests)
        self.batch_documents.observe(documents)

    def count(self, route: str, status: int, seconds: float | None = None) -> None:
        """One request to the route template ``route``, answered with ``status`` (and how long it took)."""
        self.requests.labels(route, str(status)).inc()
        if seconds is not None:
            self.latency.labels(route).observe(seconds)
