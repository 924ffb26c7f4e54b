"""A worker follows promotions the way ``voce worker`` does (``Engine`` + ``ModelFollower`` over the registry): a
batch running when a version is promoted finishes whole on the version it started with (one batch, one model: every
chunk), the next batch is analysed by the promoted version, and a rollback is followed the same way.  On SQLite and
the real PostgreSQL."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.service.batch_data import batch_settings, queue, rows_file
from tests.service.models_data import train_second_bundle
from voce.models.spec import load_analyzer
from voce.models.types import DocumentInput
from voce.service.batches.runner import BatchRunner, RunnerConfig
from voce.service.batches.store import BatchStore
from voce.service.state import Engine, ModelFollower


@pytest.fixture(scope="module")
def second_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_second_bundle(tmp_path_factory.mktemp("tiny-v2") / "bundle")


def _sentiments(store: BatchStore, bid: str) -> dict[int, Any]:
    """Each stored row's sentiment (label and probabilities)."""
    return {r.row: r.result["sentiment"] for r in store.iter_rows(bid) if r.ok}


def _alone(follower: ModelFollower, version: str, texts: dict[int, str]) -> dict[int, Any]:
    """What ``version`` answers for each row's text on its own."""
    analyzer = load_analyzer(follower.spec_for(version))
    results, _ = analyzer.analyze([DocumentInput(id=str(k), text=t) for k, t in texts.items()])
    return {int(r.id): r.sentiment.model_dump(mode="json") for r in results}


@pytest.mark.parametrize("database", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_a_batch_keeps_its_version_and_the_next_one_follows(
    database: str, tiny_bundle_dir: Path, second_bundle: Path, tmp_path: Path, request: pytest.FixtureRequest,
) -> None:
    url = request.getfixturevalue("fresh_postgres_url") if database == "postgres" else None
    settings = batch_settings(tmp_path, tiny_bundle_dir, discovery=False, database_url=url, registry_poll_seconds=0)
    store = BatchStore.open(settings.resolved_database_url())
    engine = Engine()
    follower = ModelFollower.from_settings(engine, settings, by="test worker")
    follower.load_first()
    assert engine.version == "tiny-test"
    follower.registry.register(second_bundle, by="ana")
    config = RunnerConfig.from_settings(settings)
    src = rows_file(tmp_path, 24)  # 6 chunks of 4 rows
    swapped: list[int] = []

    def promote_mid_batch(done: int) -> None:
        if not swapped:  # after the first chunk: promoted, and this worker swaps at once
            follower.registry.promote("tiny-v2", by="ana")
            assert follower.sync()
            swapped.append(done)

    def run(bid: str, on_chunk: Any = None) -> str:
        queue(store, settings, src, bid)
        batch = store.claim("w1", config.lease_seconds)
        assert batch is not None and batch.id == bid
        assert engine.analyzer is not None
        return BatchRunner(store, engine.analyzer, "w1", config, on_chunk=on_chunk).run(batch)

    assert run("b1", promote_mid_batch) == "done"
    assert swapped == [4] and engine.version == "tiny-v2"
    assert run("b2") == "done"
    follower.registry.rollback(by="ana")
    assert follower.sync() and engine.version == "tiny-test"
    assert run("b3") == "done"

    b1, b2, b3 = (store.get(b) for b in ("b1", "b2", "b3"))
    assert b1 is not None and b2 is not None and b3 is not None
    assert (b1.model_version, b2.model_version, b3.model_version) == ("tiny-test", "tiny-v2", "tiny-test")
    texts = {r.row: r.text for r in store.iter_rows("b1")}
    old, new = _alone(follower, "tiny-test", texts), _alone(follower, "tiny-v2", texts)
    assert old != new  # the versions disagree on some rows, so a chunk from the wrong one would show
    assert _sentiments(store, "b1") == old  # every chunk, before and after the promotion: the version it started with
    assert _sentiments(store, "b2") == new
    assert _sentiments(store, "b3") == old
    store.sessions.kw["bind"].dispose()  # the fresh PostgreSQL database is dropped after the test
