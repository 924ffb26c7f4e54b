"""The app as ``voce serve`` builds it (real factory and lifespan), over the fake encoder and the tiny bundle."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.service.api.helpers import local_client, sign_in, wait_ready
from voce.service.app import create_app
from voce.service.settings import Settings


@pytest.fixture(scope="module")
def client(tiny_bundle_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    """Small request limits (5 documents, 300 characters, 20 kB), so the limit tests stay small; signed in with the
    first admin key (tenant 'default', every scope)."""
    tmp = tmp_path_factory.mktemp("api")
    settings = Settings(
        encoder_backend="fake", encoder="fake", bundle=tiny_bundle_dir, cache_dir=tmp / "cache", data_dir=tmp / "data",
        max_documents=5, max_chars=300, max_request_bytes=20_000,
    )
    with local_client(create_app(settings), raise_server_exceptions=False) as c:
        wait_ready(c)
        sign_in(c)
        yield c
