"""Batches through VOCE_EXECUTOR=ray on a local Ray (2 CPUs): same rows and labels as the local executor, an actor
killed with SIGKILL mid-batch loses and doubles nothing, a batch records who ran it."""
from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.service.batch_data import batch_settings, queue, rows_file
from voce.service.batches.executor import LocalExecutor, build_executor
from voce.service.batches.runner import RunnerConfig
from voce.service.batches.store import BatchStore

ray = pytest.importorskip("ray")

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def local_ray() -> Iterator[Any]:
    """One in-process Ray for the module (starting one takes seconds); actors import this checkout's `voce`."""
    if ray.is_initialized():
        ray.shutdown()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield ray
    ray.shutdown()


def _rows(store: BatchStore, bid: str) -> list[tuple[Any, ...]]:
    cols = ("row", "doc_id", "ok", "result", "sentiment", "topics")
    return [tuple(getattr(r, c) for c in cols) for r in store.iter_rows(bid, columns=cols)]


def test_without_a_cluster_the_batch_fails_with_a_clear_reason(fake_analyzer: Any, tiny_bundle_dir: Path, tmp_path: Path) -> None:
    if ray.is_initialized():
        pytest.skip("a Ray is already running in this process")
    settings = batch_settings(
        tmp_path, tiny_bundle_dir, discovery=False, executor="ray", ray_address="auto", ray_actors=1
    )
    store = BatchStore.open(settings.resolved_database_url())
    queue(store, settings, rows_file(tmp_path, 5), "nocluster")
    ex = build_executor(settings, store, lambda: fake_analyzer, threads=1, name="ray")
    ex.run_until_idle()
    b = store.get("nocluster")
    assert b is not None and b.status == "failed"
    assert "Ray cluster" in (b.error or "") and b.rows_done == 0


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_ray_gives_the_local_executors_results(
    backend: str, request: pytest.FixtureRequest, local_ray: Any, fake_analyzer: Any, tiny_bundle_dir: Path,
    tmp_path: Path,
) -> None:
    url = request.getfixturevalue("postgres_url") if backend == "postgres" else None
    settings = batch_settings(tmp_path, tiny_bundle_dir, database_url=url, discovery=False, executor="ray", ray_actors=2)
    store = BatchStore.open(settings.resolved_database_url())
    src = rows_file(tmp_path, 90)
    queue(store, settings, src, f"local{backend}")
    LocalExecutor(store, lambda: fake_analyzer, RunnerConfig.from_settings(settings), name="local").run_until_idle()
    queue(store, settings, src, f"ray{backend}")
    ex = build_executor(settings, store, lambda: fake_analyzer, threads=1, name="ray")
    try:
        assert ex.run_until_idle() == 1
    finally:
        ex.stop()
    local, remote = store.get(f"local{backend}"), store.get(f"ray{backend}")
    assert local is not None and remote is not None
    assert (remote.status, remote.rows_done, remote.executor) == ("done", 90, "ray")
    assert local.executor == "local"
    got, want = _rows(store, f"ray{backend}"), _rows(store, f"local{backend}")
    assert [g[0] for g in got] == list(range(90))  # every row once, in file order
    assert got == want  # same documents, results, labels and topics


def test_an_actor_killed_mid_batch_loses_and_doubles_nothing(
    local_ray: Any, fake_analyzer: Any, tiny_bundle_dir: Path, tmp_path: Path
) -> None:
    settings = batch_settings(tmp_path, tiny_bundle_dir, discovery=False, executor="ray", ray_actors=2)
    store = BatchStore.open(settings.resolved_database_url())
    src = rows_file(tmp_path, 400)
    queue(store, settings, src, "reference")
    LocalExecutor(store, lambda: fake_analyzer, RunnerConfig.from_settings(settings), name="local").run_until_idle()
    queue(store, settings, src, "killed")

    ex = build_executor(settings, store, lambda: fake_analyzer, threads=1, name="ray")
    source = ex.chunks
    killed: list[int] = []

    def kill_one_actor_mid_batch() -> None:
        # wait until the batch is part done, then SIGKILL one actor's process (as the OOM killer or a lost node would)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            b = store.get("killed")
            pool = getattr(source, "_pool", None)
            if b is not None and pool is not None and 40 <= b.rows_done < 300:
                pid = pool.describe()[0]["pid"]
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
                return
            time.sleep(0.01)

    killer = threading.Thread(target=kill_one_actor_mid_batch)
    killer.start()
    try:
        assert ex.run_until_idle() == 1
    finally:
        killer.join()
        ex.stop()
    b = store.get("killed")
    assert b is not None and (b.status, b.rows_done, b.rows_error) == ("done", 400, 0)
    got = _rows(store, "killed")
    assert [g[0] for g in got] == list(range(400))  # exactly one result per input row
    assert got == _rows(store, "reference")
    assert killed, "the batch finished before an actor could be killed; the test proved nothing"


def test_the_api_on_ray_same_results_and_the_same_tenant_walls(
    local_ray: Any, tiny_bundle_dir: Path, tmp_path: Path
) -> None:
    """VOCE_EXECUTOR=ray flipped on `voce serve`: an upload runs on the actors, records its executor, gives the
    rows the local executor gives, and another tenant neither sees it nor reads its rows."""
    import json

    from tests.service.api.helpers import bearer, local_client, new_key, wait_batch
    from tests.service.batch_data import MAPPING, ROWS, csv_bytes
    from voce.service.app import create_app

    def run(executor: str) -> tuple[dict[str, Any], list[dict[str, Any]], int, int]:
        settings = batch_settings(tmp_path / executor, tiny_bundle_dir, executor=executor, ray_actors=2)
        with local_client(create_app(settings), raise_server_exceptions=False) as c:
            while c.get("/ready").status_code != 200:
                time.sleep(0.05)
            acme, other = (new_key(c, t, ["batches:read", "batches:write"]) for t in ("acme", "globex"))
            r = c.post("/v1/batches", files={"file": ("survey.csv", csv_bytes(ROWS))},
                       data={"mapping": json.dumps(MAPPING)}, headers=bearer(acme))
            assert r.status_code == 202, r.text
            bid = r.json()["id"]
            st = wait_batch(c, bid, headers=bearer(acme))
            rows = c.get(f"/v1/batches/{bid}/rows", params={"limit": 100}, headers=bearer(acme)).json()["rows"]
            seen = c.get(f"/v1/batches/{bid}", headers=bearer(other)).status_code
            read = c.get(f"/v1/batches/{bid}/rows", headers=bearer(other)).status_code
            return st, rows, seen, read

    ray_status, ray_rows, seen, read = run("ray")
    local_status, local_rows, _, _ = run("local")
    assert (ray_status["status"], ray_status["executor"], local_status["executor"]) == ("done", "ray", "local")
    assert (seen, read) == (404, 404)  # another tenant's batch is not found, as on one machine
    assert ray_rows == local_rows and len(ray_rows) == len(ROWS)


@pytest.mark.real_model
def test_the_real_model_on_a_ray_actor_labels_rows_as_the_local_executor_does(
    local_ray: Any, real_analyzer: Any, voce_cache_dir: Path, tmp_path: Path
) -> None:
    """One actor loads the shipped bundle over the real ONNX encoder (as `voce serve` would) and analyses the
    12 survey rows; labels match the local executor's (probabilities to 1e-4: one encoder thread vs all)."""
    from tests.service.batch_data import MAPPING, ROWS, csv_bytes
    from voce.service.settings import Settings
    from voce.service.uploads import ColumnMapping

    (tmp_path / "survey.csv").write_bytes(csv_bytes(ROWS))
    settings = Settings(cache_dir=voce_cache_dir, data_dir=tmp_path / "data", discovery=False, executor="ray",
                        ray_actors=1, batch_chunk_rows=4)
    store = BatchStore.open(settings.resolved_database_url())
    from voce.service.batches.service import BatchService

    service = BatchService.from_settings(settings, store=store, labels=lambda: {})
    ids = {}
    for kind in ("local", "ray"):
        ids[kind] = service.submit_file(tmp_path / "survey.csv", mapping=ColumnMapping(**MAPPING)).id
        ex = (LocalExecutor(store, lambda: real_analyzer, RunnerConfig.from_settings(settings), name="local")
              if kind == "local" else build_executor(settings, store, lambda: real_analyzer, threads=1, name="ray"))
        try:
            assert ex.run_until_idle() == 1
        finally:
            ex.stop()
    cols = ("row", "ok", "sentiment", "topics", "result")
    got = list(store.iter_rows(ids["ray"], columns=cols))
    want = list(store.iter_rows(ids["local"], columns=cols))
    assert store.get(ids["ray"]).executor == "ray"  # type: ignore[union-attr]
    assert [(r.row, r.ok, r.sentiment, r.topics) for r in got] == [(r.row, r.ok, r.sentiment, r.topics) for r in want]
    for g, w in zip(got, want, strict=True):
        if g.ok:
            assert g.result["sentiment"]["label"] == w.result["sentiment"]["label"]
            for k, v in w.result["sentiment"]["scores"].items():
                assert abs(g.result["sentiment"]["scores"][k] - v) < 1e-4


def test_actors_score_with_the_batchs_taxonomy(local_ray: Any, fake_analyzer: Any, tiny_bundle_dir: Path, tmp_path: Path) -> None:
    """A tenant's stored taxonomy reaches the actors: chunks scored on Ray with a taxonomy that lost a topic give the
    records the local path gives with it, and differ from the configured taxonomy's."""
    from tests.service.batch_data import ROWS, csv_bytes
    from voce.service.batches.ray_executor import RayChunkSource, RayConfig
    from voce.service.batches.runner import LocalChunks
    from voce.service.learning.taxonomies import with_taxonomy
    from voce.service.privacy import Redactor
    from voce.service.uploads import ColumnMapping, open_table, prepare_row

    (tmp_path / "survey.csv").write_bytes(csv_bytes(ROWS + ROWS))
    table = open_table(tmp_path / "survey.csv", "csv")
    mapping = ColumnMapping(text="commento", id="id")
    prepared = [prepare_row(i, rec, mapping) for i, rec in enumerate(table.records())]
    chunks = [prepared[i:i + 8] for i in range(0, 24, 8)]
    configured = [r for _, recs in LocalChunks(fake_analyzer).map(chunks, Redactor("keep")) for r in recs]
    found = [t[0] for r in configured for t in (r["topics"] or [])]
    tax = fake_analyzer.taxonomy
    dropped = max(set(found) & {e.id for e in tax.topics.entries}, key=found.count)  # the configured taxonomy's commonest
    smaller = tax.model_copy(update={
        "version": f"{tax.version}+test",
        "topics": tax.topics.model_copy(update={"entries": [e for e in tax.topics.entries if e.id != dropped]}),
    })
    tenant_analyzer = with_taxonomy(fake_analyzer, smaller)
    settings = batch_settings(tmp_path, tiny_bundle_dir)
    source = RayChunkSource(RayConfig(actors=1), settings.analyzer_spec)
    try:
        on_ray = [r for _, recs in source(tenant_analyzer).map(chunks, Redactor("keep")) for r in recs]
    finally:
        source.close()
    local = [r for _, recs in LocalChunks(tenant_analyzer).map(chunks, Redactor("keep")) for r in recs]

    def labels(records: list[dict[str, Any]]) -> list[Any]:
        return [(r["row"], r["topics"], r["sentiment"]) for r in records]

    assert labels(on_ray) == labels(local)
    assert all(dropped not in [t[0] for t in (r["topics"] or [])] for r in on_ray)  # present with the configured one


def test_cancelling_a_batch_on_ray_stops_it_and_keeps_a_prefix(
    local_ray: Any, fake_analyzer: Any, tiny_bundle_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from voce.service.batches import runner

    monkeypatch.setattr(runner, "CANCEL_CHECK_SECONDS", 0.0)  # look after every chunk (1 s apart otherwise)
    settings = batch_settings(tmp_path, tiny_bundle_dir, executor="ray", ray_actors=2)
    store = BatchStore.open(settings.resolved_database_url())
    queue(store, settings, rows_file(tmp_path, 400), "cancel")
    ex = build_executor(settings, store, lambda: fake_analyzer, threads=1, name="ray")
    asked: list[int] = []

    def cancel_mid_batch() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            b = store.get("cancel")
            if b is not None and b.rows_done >= 40:
                assert store.cancel("cancel") in ("cancelling", "cancelled")
                asked.append(b.rows_done)
                return
            time.sleep(0.01)

    canceller = threading.Thread(target=cancel_mid_batch)
    canceller.start()
    try:
        ex.run_until_idle()
    finally:
        canceller.join()
        ex.stop()
    b = store.get("cancel")
    assert asked and b is not None
    if b.status == "done":
        pytest.skip("the batch finished before the cancellation reached it")
    assert b.status == "cancelled" and b.rows_done < 400 and b.discovery is None
    assert [r.row for r in store.iter_rows("cancel", columns=("row",))] == list(range(b.rows_done))
