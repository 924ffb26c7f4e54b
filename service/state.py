"""What the running app holds on ``app.state``: the model as it loads (and as it is swapped for a promoted version),
the admission gate and the metrics.

Built by :func:`voce.service.app.create_app`, read by the dependencies in :mod:`voce.service.deps`.  ``voce worker``
holds the same :class:`Engine` and :class:`ModelFollower`, so workers follow promotions the way the API does.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Histogram

from voce.models.analyzer import Analyzer
from voce.models.registry import ModelRegistry
from voce.models.spec import AnalyzerSpec, load_analyzer
from voce.service.batches.service import touchpoint_names
from voce.service.errors import Overloaded

if TYPE_CHECKING:
    from voce.service.settings import Settings

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
    """The analyzer once loaded (``/ready`` turns 200), or why it failed to load; swapped whole for another version.

    Hot swap: :meth:`swap` loads and warms the new analyzer while the current one keeps answering, then replaces it
    with one attribute assignment.  A request takes ``engine.analyzer`` once (``deps.get_analyzer``) and keeps that
    object to the end, so it is answered by one version; the micro-batcher only joins requests holding the same
    object, and a batch run keeps the analyzer it started with.  The old analyzer is freed when the last request or
    batch holding it lets go (nothing else keeps a reference).
    """

    analyzer: Analyzer | None = None
    error: str | None = None
    loaded: threading.Event = field(default_factory=threading.Event)
    # the spec the analyzer serving now was loaded from (Ray actors load the same)
    spec: AnalyzerSpec | None = None
    # the version being loaded to replace the one serving, and why the last swap failed (the old one kept serving)
    loading: str | None = None
    swap_error: str | None = None
    swaps: int = 0
    _swap_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def version(self) -> str | None:
        """The model version answering now (None while nothing is loaded)."""
        analyzer = self.analyzer
        return analyzer.bundle.version if analyzer is not None else None

    def load(self, spec: AnalyzerSpec) -> None:
        """Load and warm up the analyzer (run in a background thread); a failure is kept, not raised."""
        try:
            t0 = time.time()
            analyzer = load_analyzer(spec, progress=lambda m: log.info("%s", m))
            analyzer.warm_up()
            self.analyzer, self.spec = analyzer, spec
            log.info("model ready in %.1fs (%s, %s)", time.time() - t0, analyzer.bundle.version, analyzer.encoder.name)
        except Exception as exc:  # the service stays up and reports why it is not ready
            log.exception("model failed to load")
            self.error = f"{type(exc).__name__}: {exc}"
        finally:
            self.loaded.set()

    def swap(self, spec: AnalyzerSpec, version: str) -> Analyzer:
        """Load and warm ``version`` from ``spec`` beside the analyzer serving now, then put it in its place.

        A failure raises and leaves the serving analyzer as it was (``swap_error`` says why)."""
        with self._swap_lock:
            self.loading = version
            try:
                t0 = time.time()
                new = load_analyzer(spec, progress=lambda m: log.info("%s", m))
                new.warm_up()
            except Exception as exc:
                self.swap_error = f"{version}: {type(exc).__name__}: {exc}"
                raise
            finally:
                self.loading = None
            old = self.version
            # one assignment: a request sees the old analyzer or the new one, never a mix
            self.analyzer, self.spec = new, spec
            self.error = self.swap_error = None
            self.swaps += 1
            self.loaded.set()
            log.info("model %s -> %s: loaded and warmed in %.1fs, now answering", old, new.bundle.version,
                     time.time() - t0)
            return new

    def labels(self) -> dict[str, str]:
        """Topic and touchpoint names of the taxonomy in use (ids only while the model is loading)."""
        return self.analyzer.taxonomy.labels() if self.analyzer is not None else {}

    def touchpoint_labels(self) -> dict[str, str]:
        """Touchpoint names alone: what names a channel that is a touchpoint id (empty while the model is loading)."""
        return touchpoint_names(self.analyzer.taxonomy) if self.analyzer is not None else {}


def configured_bundle(settings: Settings) -> str:
    """The bundle folder the settings name (VOCE_BUNDLE, else the shipped one)."""
    return str(settings.analyzer_spec().bundle_path())


class ModelFollower:
    """Keeps an :class:`Engine` on the registry's active version (``models/registry.py``).

    At start it registers the configured bundle if it is new (the first start, a new VOCE_BUNDLE) and loads the
    active version; then it looks at the registry's active pointer every ``poll_seconds`` (and at once when this
    process's API promotes) and swaps the engine to a promoted or rolled-back version.  The API process and every
    ``voce worker`` run one, so they all follow the same pointer.  A version that fails to load is not retried
    until the pointer moves again; the version serving stays.
    """

    def __init__(
        self, engine: Engine, registry: ModelRegistry, settings: Settings, poll_seconds: float | None = None,
        by: str = "voce (start-up)",
    ) -> None:
        self.engine = engine
        self.registry = registry
        self.settings = settings
        self.poll_seconds = settings.registry_poll_seconds if poll_seconds is None else poll_seconds
        self.by = by
        # the version that failed to load and the registry's history length then: it is tried again only when it is
        # promoted again (a new event), not at every poll
        self._failed: str | None = None
        self._failed_at = 0
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._sync_lock = threading.Lock()

    @classmethod
    def from_settings(cls, engine: Engine, settings: Settings, by: str = "voce (start-up)") -> ModelFollower:
        return cls(engine, settings.model_registry(), settings, by=by)

    def spec_for(self, version: str) -> AnalyzerSpec:
        """The one assembly point (``Settings.analyzer_spec``) with the registered copy of ``version``."""
        return self.settings.analyzer_spec(bundle=self.registry.bundle_path(version))

    def load_first(self) -> None:
        """Adopt the configured bundle and load the active version into the engine (a failure is kept on it)."""
        try:
            version = self.registry.adopt(configured_bundle(self.settings), by=self.by)
            spec = self.spec_for(version)
        except Exception as exc:  # an unreadable registry or bundle: reported by /ready like a failed load
            log.exception("the model registry could not be read")
            self.engine.error = f"{type(exc).__name__}: {exc}"
            self.engine.loaded.set()
            return
        self.engine.load(spec)
        if self.engine.analyzer is None:
            self._failed, self._failed_at = version, len(self.registry.index().history)

    def sync(self) -> bool:
        """Swap to the registry's active version if it is not the one serving; whether a swap happened."""
        with self._sync_lock:
            index = self.registry.index()
            active = index.active
            if active is None or active == self.engine.version:
                return False
            if active == self._failed and len(index.history) == self._failed_at:
                return False
            try:
                self.engine.swap(self.spec_for(active), active)
            except Exception:
                log.exception("model %s could not be loaded; %s keeps answering", active, self.engine.version)
                self._failed, self._failed_at = active, len(index.history)
                return False
            self._failed = None
            return True

    def start(self) -> None:
        """Load in the background (``/health`` answers meanwhile), then follow the registry."""
        self._thread = threading.Thread(target=self._run, args=(True,), name="voce-model-loader", daemon=True)
        self._thread.start()

    def start_following(self) -> None:
        """Follow the registry in the background, the engine already loaded (:meth:`load_first`: ``voce worker``)."""
        self._thread = threading.Thread(target=self._run, args=(False,), name="voce-model-follower", daemon=True)
        self._thread.start()

    def nudge(self) -> None:
        """Look at the registry now (after a promotion through this process's API)."""
        self._wake.set()

    def wait_serving(self, version: str, timeout: float) -> bool:
        """Wait until ``version`` answers (True), its load failed after the registry's latest change, or
        ``timeout`` passed (False)."""
        deadline = time.monotonic() + timeout
        changes = len(self.registry.index().history)
        while time.monotonic() < deadline:
            if self.engine.version == version:
                return True
            if self._failed == version and self._failed_at >= changes and self.engine.loading is None:
                return False
            time.sleep(0.02)
        return self.engine.version == version

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def _run(self, load_first: bool) -> None:
        if load_first:
            self.load_first()
        while not self._stop.is_set():
            self._wake.wait(self.poll_seconds if self.poll_seconds > 0 else None)
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                self.sync()
            except Exception:  # the registry file being replaced by hand, a full disk: try again next time
                log.exception("reading the model registry failed")


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
