"""The micro-batcher answers concurrent requests together, each with exactly what it would get alone."""
from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from voce.models.analyzer import Analyzer
from voce.models.taxonomy import parse_taxonomy
from voce.models.types import DocumentInput
from voce.service.microbatch import MicroBatcher

TEXTS = [
    "Il corriere è arrivato in ritardo e il pacco era rotto.",
    "Great staff at the store, very helpful. The app keeps crashing though!",
    "Servizio clienti irraggiungibile. Ho aspettato 40 minuti al telefono.",
    "ok",
    "Fattura sbagliata per la seconda volta. Nessuno risponde alle email.",
    "",  # an error, handed back to its own request
]


class Gated:
    """An analyzer stand-in whose first call waits for a signal, so later requests queue behind it."""

    def __init__(self, inner: Analyzer) -> None:
        self.inner = inner
        self.release = threading.Event()
        self.calls: list[int] = []
        self.taxonomy = inner.taxonomy

    def analyze(self, docs: list[DocumentInput], taxonomy: Any = None) -> Any:
        if not self.calls:
            self.release.wait(10)
        self.calls.append(len(docs))
        if any(d.text == "boom" for d in docs):
            raise RuntimeError("boom")
        return self.inner.analyze(docs, taxonomy=taxonomy)


def _requests() -> list[list[DocumentInput]]:
    # the same ids in every request: unique within a request, not across requests
    return [[DocumentInput(id=str(i), text=t) for i, t in enumerate(TEXTS[k:] + TEXTS[:k])] for k in range(len(TEXTS))]


def _dump(answer: Any) -> Any:
    results, errors = answer
    return [r.model_dump() for r in results], [e.model_dump() for e in errors]


def _run_queued(batcher: MicroBatcher, gated: Gated, batches: list[Any], taxonomy: Any = None) -> list[Any]:
    """Submit the first request, wait until the worker holds it, queue the rest, then let it go."""
    with ThreadPoolExecutor(len(batches)) as pool:
        first = pool.submit(batcher.analyze, gated, batches[0])  # type: ignore[arg-type]
        _until(lambda: _worker_busy(batcher))
        rest = [pool.submit(batcher.analyze, gated, b, taxonomy) for b in batches[1:]]  # type: ignore[arg-type]
        _until(lambda: len(batcher._queue) == len(rest))  # all queued behind the held call
        gated.release.set()
        return [f.result(timeout=60) for f in [first, *rest]]


def _worker_busy(batcher: MicroBatcher) -> bool:
    """The worker has taken the first request (and is held in it)."""
    return batcher._thread is not None and not batcher._queue


def _until(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 30
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting for the micro-batcher"
        time.sleep(0.001)


def test_concurrent_requests_share_one_call_and_get_their_own_answers(fake_analyzer: Analyzer) -> None:
    batcher, gated = MicroBatcher(max_documents=64), Gated(fake_analyzer)
    requests = _requests()
    answers = _run_queued(batcher, gated, requests)
    batcher.close()
    assert gated.calls == [len(TEXTS), len(TEXTS) * (len(requests) - 1)]  # the held one, then all the rest at once
    for docs, answer in zip(requests, answers, strict=True):
        assert _dump(answer) == _dump(fake_analyzer.analyze(docs))
        assert [e.id for e in answer[1]] == [d.id for d in docs if not d.text]
    stats = batcher.stats()
    assert (stats.calls, stats.requests, stats.documents) == (2, len(requests), len(TEXTS) * len(requests))


def test_joint_calls_respect_the_document_bound(fake_analyzer: Analyzer) -> None:
    batcher, gated = MicroBatcher(max_documents=2 * len(TEXTS)), Gated(fake_analyzer)
    answers = _run_queued(batcher, gated, _requests())
    batcher.close()
    assert gated.calls[0] == len(TEXTS) and all(n <= 2 * len(TEXTS) for n in gated.calls[1:])
    assert len(gated.calls) == 1 + 3  # five queued requests of six documents, two per call
    assert all(len(a[0]) + len(a[1]) == len(TEXTS) for a in answers)


def test_a_request_with_its_own_taxonomy_runs_alone(fake_analyzer: Analyzer) -> None:
    tax = parse_taxonomy(
        {"version": "t1", "touchpoints": [{"id": "shop", "names": {"en": "Shop"}, "descriptions": {"en": "the physical store"}}]},
        base=fake_analyzer.taxonomy,
    )
    batcher, gated = MicroBatcher(), Gated(fake_analyzer)
    requests = _requests()[:3]
    answers = _run_queued(batcher, gated, requests, taxonomy=tax)
    batcher.close()
    assert gated.calls == [len(TEXTS)] * 3
    assert _dump(answers[1]) == _dump(fake_analyzer.analyze(requests[1], taxonomy=tax))
    assert all(t.id == "shop" for r in answers[1][0] for t in r.touchpoints)


def test_one_failing_request_does_not_fail_the_others(fake_analyzer: Analyzer) -> None:
    batcher, gated = MicroBatcher(), Gated(fake_analyzer)
    requests = _requests()[:3]
    requests[2] = [DocumentInput(id="x", text="boom")]
    with ThreadPoolExecutor(3) as pool:
        first = pool.submit(batcher.analyze, gated, requests[0])  # type: ignore[arg-type]
        _until(lambda: _worker_busy(batcher))
        rest = [pool.submit(batcher.analyze, gated, r) for r in requests[1:]]  # type: ignore[arg-type]
        _until(lambda: len(batcher._queue) == 2)
        gated.release.set()
        assert _dump(first.result(60)) == _dump(fake_analyzer.analyze(requests[0]))
        assert _dump(rest[0].result(60)) == _dump(fake_analyzer.analyze(requests[1]))
        with pytest.raises(RuntimeError, match="boom"):
            rest[1].result(60)
    batcher.close()
    # the joint call failed, then each request ran alone
    assert gated.calls == [len(TEXTS), len(TEXTS) + 1, len(TEXTS), 1]


def test_closed_batcher_refuses_new_work(fake_analyzer: Analyzer) -> None:
    batcher = MicroBatcher()
    assert _dump(batcher.analyze(fake_analyzer, _requests()[0])) == _dump(fake_analyzer.analyze(_requests()[0]))
    batcher.close()
    with pytest.raises(RuntimeError, match="closed"):
        batcher.analyze(fake_analyzer, _requests()[0])


class Versioned:
    """An analyzer stand-in of one model version: records which requests' documents each of its calls held."""

    def __init__(self, version: str, gate: threading.Event | None = None) -> None:
        self.version, self.gate = version, gate
        self.calls: list[list[str]] = []
        self.taxonomy = None

    def analyze(self, docs: list[DocumentInput], taxonomy: Any = None) -> Any:
        if self.gate is not None and not self.calls:
            self.gate.wait(10)
        self.calls.append([d.id for d in docs])
        return [type("R", (), {"id": d.id, "model_copy": lambda s, update: update})() for d in docs], []


def test_requests_of_two_model_versions_are_never_answered_together() -> None:
    """A promotion swaps the analyzer while requests queue: those holding the old one and those holding the new one
    are interleaved in the queue, yet every joint call holds requests of one version only (hot swap)."""
    gate = threading.Event()
    old, new = Versioned("old", gate), Versioned("new")
    batcher = MicroBatcher(max_documents=64)
    first = threading.Thread(target=batcher.analyze, args=(old, [DocumentInput(id="first", text="x")]))
    first.start()
    time.sleep(0.2)  # the worker is inside old's first call; what follows queues
    holders = [old if k % 2 else new for k in range(10)]
    with ThreadPoolExecutor(10) as pool:
        futures = [pool.submit(batcher.analyze, a, [DocumentInput(id=f"{a.version}-{k}", text="x")])
                   for k, a in enumerate(holders)]
        time.sleep(0.2)
        gate.set()
        answers = [f.result(timeout=30) for f in futures]
    first.join(10)
    batcher.close()
    assert all(len(results) == 1 for results, _ in answers)  # every request answered
    for analyzer in (old, new):
        calls = analyzer.calls[1:] if analyzer is old else analyzer.calls
        ids = [i.partition(":")[2] or i for call in calls for i in call]
        assert ids and all(i.startswith(analyzer.version) for i in ids), (analyzer.version, calls)
    assert any(len(call) > 1 for call in old.calls + new.calls)  # and they were still batched, per version
