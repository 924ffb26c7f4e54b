"""The batch service without HTTP: the domain errors every entry point relies on, the facts cache, topic labels."""
from __future__ import annotations

import asyncio
import types
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update

from tests.service.batch_data import batch_settings, queue, rows_file
from voce.service.batches import rows
from voce.service.batches.errors import (
    BatchBusy,
    BatchNotFound,
    InvalidFilter,
    InvalidUpload,
    TopicNotFound,
    UploadTooLarge,
)
from voce.service.batches.executor import LocalExecutor
from voce.service.batches.runner import RunnerConfig
from voce.service.batches.service import BatchService, make_filters, parse_mapping
from voce.service.db import BatchRow

CUSTOM_TAXONOMY = """\
version: "crew-1"
topics:
  - id: staff
    names: {it: "Equipaggio (custom)", en: "Crew (custom)"}
"""


@pytest.fixture()
def service(tiny_bundle_dir: Path, tmp_path: Path) -> BatchService:
    settings = batch_settings(tmp_path, tiny_bundle_dir, discovery=False, max_upload_bytes=1024)
    return BatchService.from_settings(settings, labels=lambda: {})


def _reader(*chunks: bytes) -> Any:
    parts = list(chunks)

    async def read(_size: int) -> bytes:
        return parts.pop(0) if parts else b""

    return read


def test_domain_errors(service: BatchService, tmp_path: Path) -> None:
    with pytest.raises(BatchNotFound, match="no batch 'nope'"):
        service.status("nope")
    with pytest.raises(BatchNotFound):
        service.kpis("nope")
    with pytest.raises(InvalidUpload, match="does not exist"):
        service.submit_file(tmp_path / "missing.csv", mapping=None)
    with pytest.raises(InvalidUpload, match="mapping: not valid JSON"):
        parse_mapping("{not json")
    with pytest.raises(InvalidUpload, match="mapping.text"):
        parse_mapping('{"nps": "score"}')
    with pytest.raises(InvalidFilter, match="invalid filter"):
        make_filters(period="March")
    with pytest.raises(InvalidFilter):
        make_filters(segment=["no-colon"])
    with pytest.raises(InvalidFilter, match="channel"):
        make_filters(channel="x" * 65)
    assert make_filters(channel=" App ").channel == ["app"]
    dest = tmp_path / "upload"
    with pytest.raises(UploadTooLarge, match="1024 bytes"):
        asyncio.run(service.receive(_reader(b"x" * 1000, b"x" * 1000), dest))
    assert not dest.exists()  # nothing half-written stays behind
    with pytest.raises(InvalidUpload, match="empty"):
        asyncio.run(service.receive(_reader(), dest))

    queued = service.submit_file(rows_file(tmp_path, 3), mapping=parse_mapping('{"text": "commento"}'))
    with pytest.raises(BatchBusy):
        service.delete(queued.id)  # still queued
    with pytest.raises(TopicNotFound):
        service.discovered_topic_entry(queued.id, 0)
    with pytest.raises(InvalidUpload, match="not in the file"):
        service.submit_file(rows_file(tmp_path, 3), mapping=parse_mapping('{"text": "nope"}'))
    assert [b.id for b in service.list_batches().batches] == [queued.id]  # the refused upload left no batch


def test_facts_cache_rereads_only_when_the_batch_moves(monkeypatch: pytest.MonkeyPatch) -> None:
    from voce.service.learning import corrections

    calls: list[str] = []
    monkeypatch.setattr(rows, "load_facts", lambda store, bid: calls.append(bid) or [bid])
    # no database here: no corrections (the cache key includes their stamp)
    monkeypatch.setattr(corrections, "stamp", lambda sessions, bid: (0, None, None))
    monkeypatch.setattr(corrections, "active_changes", lambda sessions, bid: {})
    store = types.SimpleNamespace(sessions=None)
    service = BatchService(store, data_dir=Path("unused"), max_upload_bytes=1, labels=dict, facts_cache_size=2)  # type: ignore[arg-type]

    def batch(bid: str, done: int, status: str = "running") -> Any:
        return types.SimpleNamespace(id=bid, status=status, rows_done=done, rows_error=0, finished_at=None,
                                     taxonomy_version=None)

    assert service.facts(batch("a", 10)) == ["a"] and service.facts(batch("a", 10)) == ["a"]
    assert calls == ["a"]  # same progress: served from memory
    service.facts(batch("a", 20))  # rows arrived: read again
    service.facts(batch("b", 5))
    service.facts(batch("c", 5))  # "a" is evicted (size 2)
    service.facts(batch("a", 20))
    assert calls == ["a", "a", "b", "c", "a"]


def test_kpis_name_topics_with_the_configured_taxonomy(
    fake_analyzer: Any, tiny_bundle_dir: Path, tmp_path: Path
) -> None:
    """Without labels from a loaded analyzer (the CLI), topics are named by the configured taxonomy, not the default."""
    taxonomy = tmp_path / "crew.yaml"
    taxonomy.write_text(CUSTOM_TAXONOMY, encoding="utf-8")
    settings = batch_settings(tmp_path, tiny_bundle_dir, discovery=False, taxonomy=taxonomy)
    service = BatchService.from_settings(settings)
    assert service.labels()["staff"] == "Crew (custom)"

    queue(service.store, settings, rows_file(tmp_path, 6), "crew")
    LocalExecutor(service.store, lambda: fake_analyzer, RunnerConfig.from_settings(settings)).run_until_idle()
    with service.store.sessions() as s, s.begin():  # every row mentions the staff topic
        s.execute(update(BatchRow).where(BatchRow.batch_id == "crew").values(topics=[["staff", "negative"]]))
        s.execute(update(BatchRow).where(BatchRow.batch_id == "crew", BatchRow.row < 2).values(channel="store"))
        s.execute(update(BatchRow).where(BatchRow.batch_id == "crew", BatchRow.row >= 2).values(channel="staff"))
    kpis = service.kpis("crew")
    assert [(t["id"], t["label"], t["count"]) for t in kpis["topics"]] == [("staff", "Crew (custom)", 6)]
    # a channel that is a touchpoint id is named like the touchpoint; a raw channel value is never a topic's name
    assert [(c["id"], c["label"], c["count"]) for c in kpis["by_channel"]] == [("staff", "staff", 4), ("store", "Store", 2)]
