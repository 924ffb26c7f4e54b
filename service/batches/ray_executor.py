"""Batches on a Ray cluster: the same runner, store and results, the model work spread over analyzer actors.

``VOCE_EXECUTOR=ray`` swaps the :class:`~voce.service.batches.executor.LocalExecutor`'s chunk analysis for
:class:`RayChunks`: a pool of analyzer actors (Ray's stateful-actor pattern for batch inference: the model is
loaded once per actor, from the same :class:`~voce.models.spec.AnalyzerSpec` the API loads), each sized by
``VOCE_RAY_CPUS_PER_ACTOR``.  Everything else stays where it is:

* the claiming worker (a thread of the API or of ``voce worker``) is the Ray *driver*: it reads the upload and
  prepares its rows (cheap next to the encoder: millions of rows a minute), keeps ``2 × actors`` chunks in
  flight, and stores what comes back **in file order**, each chunk with the batch's progress in one transaction;
  so ``rows_done`` stays a prefix of the file, writes are keyed by (batch, row), and a resumed or retried run
  starts where the stored rows end — a chunk is never stored twice;
* an actor that dies (its process killed, its node lost) is restarted by Ray and the chunks it held are run again
  (``max_restarts=-1``, ``max_task_retries=-1``): the batch ends with exactly one result per input row
  (``tests/service/batches/test_ray_executor.py`` kills an actor with SIGKILL mid-batch);
* the driver dying is the local executor's case: the lease runs out and another worker resumes the batch;
* topic discovery runs at the end on the stored embeddings, as on one machine.

Ray is optional (``pip install voce[ray]``); nothing imports it unless the setting asks for it.
"""
from __future__ import annotations

import hashlib
import logging
import os
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from typing import Any

from voce.models.analyzer import Analyzer
from voce.models.spec import AnalyzerSpec
from voce.models.taxonomy import Taxonomy
from voce.service.batches.runner import BATCH_MAX_CHARS, ChunkAnalysis, ExecutorUnavailable, analyze_chunk
from voce.service.privacy import PiiMode, Redactor
from voce.service.uploads import PreparedRow

log = logging.getLogger("voce.jobs")

#: taxonomies an actor keeps a scoring analyzer for (tenants with their own version, batches being re-scored)
_TAXONOMIES_PER_ACTOR = 8


class RayUnavailable(ExecutorUnavailable):
    """``VOCE_EXECUTOR=ray`` without Ray installed, or a cluster that cannot be joined."""


class ModelMismatch(RuntimeError):
    """An actor answered with a model version other than the batch's (the pool is rebuilt for the next claim)."""


@dataclass(frozen=True)
class RayConfig:
    # "local" starts Ray in this process (trying it on a laptop); "auto" joins the cluster of `ray start` on this
    # node; "ray://host:10001" joins a remote cluster through Ray Client
    address: str = "local"
    # analyzer actors; 0 = as many as the cluster's CPUs allow at `cpus_per_actor` each (at least one)
    actors: int = 0
    # CPUs each actor reserves (and the encoder's threads)
    cpus_per_actor: int = 1
    # GPUs each actor reserves (0 = CPU actors); the encoder runs on whatever the spec's backend picks there
    gpus_per_actor: float = 0.0
    # chunks in flight per actor: 2 keeps an actor busy while the driver stores the previous chunk
    in_flight_per_actor: int = 2
    # CPUs of an in-process Ray started by address="local" (None = all of this machine's)
    local_cpus: int | None = None


def ray_module() -> Any:
    try:
        import ray
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise RayUnavailable(
            "VOCE_EXECUTOR=ray needs Ray: pip install 'voce[ray]' (or set VOCE_EXECUTOR=local)"
        ) from exc
    return ray


_connect_lock = threading.Lock()


def connect(config: RayConfig) -> Any:
    """Join (or start, for ``local``) the Ray cluster once per process; returns the ``ray`` module."""
    ray = ray_module()
    with _connect_lock:
        if ray.is_initialized():
            return ray
        # actors get the driver's offline switches and VOCE_ settings
        kwargs: dict[str, Any] = {"runtime_env": {"env_vars": _actor_env()}}
        if not config.address.startswith("ray://"):  # Ray Client takes fewer options
            kwargs |= {"include_dashboard": False, "log_to_driver": False, "configure_logging": False}
        if config.address == "local":
            kwargs["num_cpus"] = config.local_cpus or os.cpu_count() or 1
        else:
            kwargs["address"] = config.address
        try:
            ray.init(**kwargs)
        except Exception as exc:  # ConnectionError and Ray's own; say what to check
            raise RayUnavailable(
                f"could not join the Ray cluster at {config.address!r} (VOCE_RAY_ADDRESS): {exc}"
            ) from exc
        log.info("ray: connected (%s), resources %s", config.address, ray.cluster_resources())
        return ray


def _actor_env() -> dict[str, str]:
    """What actors need from the driver's environment: offline switches and Voce's own settings."""
    keep = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "PYTHONPATH")
    return {k: v for k, v in os.environ.items() if k in keep or k.startswith("VOCE_")}


class _AnalyzerActor:
    """One analyzer per actor process, loaded once; analyses a chunk exactly as the local executor does."""

    def __init__(self, spec: AnalyzerSpec) -> None:
        from voce.models.spec import load_analyzer

        analyzer = load_analyzer(spec)
        self.analyzer = analyzer.with_config(replace(analyzer.config, max_chars=BATCH_MAX_CHARS))
        self.redactors: dict[str, Redactor] = {}
        # the same model scoring with the taxonomies batches brought (a tenant's stored version), newest last
        self.by_taxonomy: dict[str, Analyzer] = {}

    def describe(self) -> dict[str, Any]:
        return {"pid": os.getpid(), "model_version": self.analyzer.bundle.version}

    def analyze(
        self, prepared: list[PreparedRow], pii_mode: PiiMode, taxonomy_key: str, taxonomy: Taxonomy
    ) -> tuple[str, list[dict[str, Any]]]:
        redactor = self.redactors.get(pii_mode)
        if redactor is None:
            redactor = self.redactors[pii_mode] = Redactor(pii_mode)
        return self.analyzer.bundle.version, analyze_chunk(self._scoring_with(taxonomy_key, taxonomy), prepared, redactor)

    def _scoring_with(self, key: str, taxonomy: Taxonomy) -> Analyzer:
        """This actor's model scoring with the batch's taxonomy (its zero-shot prototypes encoded once per actor)."""
        found = self.by_taxonomy.pop(key, None)
        if found is None:
            from voce.service.learning.taxonomies import with_taxonomy

            found = with_taxonomy(self.analyzer, taxonomy)
        self.by_taxonomy[key] = found
        while len(self.by_taxonomy) > _TAXONOMIES_PER_ACTOR:
            self.by_taxonomy.pop(next(iter(self.by_taxonomy)))
        return found


class ActorPool:
    """The analyzer actors of one model version."""

    def __init__(self, spec: AnalyzerSpec, config: RayConfig) -> None:
        ray = connect(config)
        n = config.actors or max(1, int(ray.cluster_resources().get("CPU", 1) // config.cpus_per_actor))
        spec = spec.model_copy(update={"threads": config.cpus_per_actor})
        remote = ray.remote(
            num_cpus=config.cpus_per_actor, num_gpus=config.gpus_per_actor or None,
            # a dead actor (killed process, lost node) is restarted and the chunks it held are run again
            max_restarts=-1, max_task_retries=-1,
        )(_AnalyzerActor)
        self.ray = ray
        self.actors = [remote.remote(spec) for _ in range(n)]
        self.config = config
        described = ray.get([a.describe.remote() for a in self.actors])
        self.model_version: str = described[0]["model_version"]
        log.info("ray: %d analyzer actor(s) ready (model %s)", n, self.model_version)

    def describe(self) -> list[dict[str, Any]]:
        """Each actor's process id and model version (the fault test kills one by its pid)."""
        return list(self.ray.get([a.describe.remote() for a in self.actors]))

    def close(self) -> None:
        for a in self.actors:
            self.ray.kill(a)
        self.actors = []


class RayChunks:
    """Chunks analysed by the pool's actors, ``in_flight_per_actor`` each at a time, handed back in order, scored
    with the claiming worker's taxonomy (the batch tenant's stored version: shipped once to the object store)."""

    def __init__(self, pool: ActorPool, expected_version: str, taxonomy: Taxonomy) -> None:
        self.pool = pool
        self.expected_version = expected_version
        self.taxonomy_key = hashlib.sha256(taxonomy.model_dump_json().encode()).hexdigest()
        self.taxonomy_ref = pool.ray.put(taxonomy)

    def map(
        self, chunks: Iterable[list[PreparedRow]], redactor: Redactor
    ) -> Iterator[tuple[list[PreparedRow], list[dict[str, Any]]]]:
        ray, actors = self.pool.ray, self.pool.actors
        window = max(1, len(actors) * self.pool.config.in_flight_per_actor)
        pending: deque[tuple[list[PreparedRow], Any]] = deque()
        k = 0
        try:
            for chunk in chunks:
                actor = actors[k % len(actors)]
                pending.append((chunk, actor.analyze.remote(chunk, redactor.mode, self.taxonomy_key, self.taxonomy_ref)))
                k += 1
                if len(pending) >= window:
                    yield self._result(*pending.popleft())
            while pending:
                yield self._result(*pending.popleft())
        finally:
            for _, ref in pending:  # stopped early (paused, failed): what is in flight is not stored
                ray.cancel(ref)

    def _result(self, chunk: list[PreparedRow], ref: Any) -> tuple[list[PreparedRow], list[dict[str, Any]]]:
        version, records = self.pool.ray.get(ref)
        if version != self.expected_version:
            raise ModelMismatch(
                f"a Ray actor answered with model {version}, the batch is analysed with {self.expected_version}"
            )
        return chunk, records


class RayChunkSource:
    """Builds :class:`RayChunks` for the claiming worker's analyzer; one actor pool per model version."""

    def __init__(self, config: RayConfig, spec: Callable[[], AnalyzerSpec]) -> None:
        self.config = config
        self.spec = spec
        self._pool: ActorPool | None = None
        self._lock = threading.Lock()

    def pool(self, version: str) -> ActorPool:
        with self._lock:
            if self._pool is None or self._pool.model_version != version:
                if self._pool is not None:
                    log.info("ray: model %s -> %s; new actors", self._pool.model_version, version)
                    self._pool.close()
                self._pool = ActorPool(self.spec(), self.config)
                if self._pool.model_version != version:
                    raise ModelMismatch(
                        f"the Ray actors load model {self._pool.model_version}, this worker serves {version}"
                    )
            return self._pool

    def __call__(self, analyzer: Analyzer) -> ChunkAnalysis:
        return RayChunks(self.pool(analyzer.bundle.version), analyzer.bundle.version, analyzer.taxonomy)

    def close(self) -> None:
        with self._lock:
            if self._pool is not None:
                self._pool.close()
                self._pool = None
