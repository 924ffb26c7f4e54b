"""Dynamic micro-batching of concurrent ``/v1/analyze`` requests.

Why: an encoder forward pass over 32 comments costs little more per comment than over 8, and much less than
32 passes of one, while two analyses running side by side on a 2-core machine only fight over the cores (each
ONNX Runtime session already uses them all).  So requests do not run the analyzer themselves: they queue their
documents here and one worker thread runs whatever is waiting as one ``Analyzer.analyze`` call, then hands each
request its own results.  Under load, requests that arrive while a batch runs form the next one; with one
client, a request runs as soon as it arrives (no waiting for company unless ``wait_ms`` asks for it).

Each request is answered from exactly one analyzer call, so from one model version.  A request with an inline
taxonomy runs on its own (its taxonomy is its own).  If a joint call raises, each request is re-run alone so
that one request's failure never fails the others.  The queue is bounded upstream by the admission gate
(:class:`voce.service.state.Admission`: requests in flight beyond the limit get 429).
"""
from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field

from voce.models.analyzer import Analyzer
from voce.models.taxonomy import Taxonomy
from voce.models.types import DocumentError, DocumentInput, DocumentResult

Answer = tuple[list[DocumentResult], list[DocumentError]]


@dataclass
class _Request:
    analyzer: Analyzer
    docs: list[DocumentInput]
    taxonomy: Taxonomy | None
    tokens: int
    future: Future[Answer] = field(default_factory=Future)

    def joins(self, other: _Request) -> bool:
        """Whether this request may share an analyzer call with ``other`` (same model, default taxonomy)."""
        return self.taxonomy is None and other.taxonomy is None and self.analyzer is other.analyzer


@dataclass(frozen=True)
class BatchStats:
    """What the worker has done: analyzer calls, requests and documents (for /metrics and the benchmark)."""

    calls: int
    requests: int
    documents: int


class MicroBatcher:
    """One worker thread answering queued analyze requests in joint analyzer calls."""

    def __init__(
        self,
        max_documents: int = 64,
        max_tokens: int = 40_000,
        wait_ms: float = 0.0,
        observe: Callable[[int, int], None] | None = None,
    ) -> None:
        self.max_documents = max_documents  # documents per joint call (a larger request still runs, alone)
        self.max_tokens = max_tokens  # tokens per joint call, same rule
        self.wait_ms = wait_ms  # how long a lone request waits for others to join it
        self.observe = observe  # called with (requests, documents) of every analyzer call (Prometheus)
        self._queue: deque[_Request] = deque()
        self._cv = threading.Condition()
        self._thread: threading.Thread | None = None
        self._closed = False
        self._calls = self._requests = self._documents = 0

    def analyze(
        self, analyzer: Analyzer, docs: list[DocumentInput], taxonomy: Taxonomy | None = None, tokens: int = 0
    ) -> Answer:
        """Results and errors for ``docs`` exactly as ``analyzer.analyze(docs, taxonomy)`` would give them."""
        request = _Request(analyzer, docs, taxonomy, tokens)
        with self._cv:
            if self._closed:
                raise RuntimeError("the micro-batcher is closed")
            self._queue.append(request)
            if self._thread is None:
                self._thread = threading.Thread(target=self._work, name="voce-microbatch", daemon=True)
                self._thread.start()
            self._cv.notify()
        return request.future.result()

    def stats(self) -> BatchStats:
        with self._cv:
            return BatchStats(self._calls, self._requests, self._documents)

    def close(self) -> None:
        """Stop the worker after the requests already queued."""
        with self._cv:
            self._closed = True
            self._cv.notify()
            thread = self._thread
        if thread is not None:
            thread.join(timeout=30)

    # ------------------------------------------------------------------ worker
    def _work(self) -> None:
        while True:
            group = self._next_group()
            if group is None:
                return
            self._run(group)

    def _next_group(self) -> list[_Request] | None:
        """The first queued request and every later one that may join it, within the call's bounds."""
        with self._cv:
            while not self._queue:
                if self._closed:
                    return None
                self._cv.wait()
            if self.wait_ms > 0 and len(self._queue) == 1 and self._queue[0].taxonomy is None:
                self._cv.wait(self.wait_ms / 1000)
            first = self._queue.popleft()
            group, docs, tokens = [first], len(first.docs), first.tokens
            for other in list(self._queue):
                if not other.joins(first):
                    continue
                if docs + len(other.docs) > self.max_documents or tokens + other.tokens > self.max_tokens:
                    break
                self._queue.remove(other)
                group.append(other)
                docs += len(other.docs)
                tokens += other.tokens
            return group

    def _run(self, group: list[_Request]) -> None:
        if len(group) == 1:
            self._answer_alone(group[0])
            return
        try:
            answers = _split(group, group[0].analyzer.analyze(_tagged(group)))
        except Exception:  # one request's fault must not fail the rest: each runs alone, keeping its own error
            for request in group:
                self._answer_alone(request)
            return
        self._count(1, group)
        for request, answer in zip(group, answers, strict=True):
            request.future.set_result(answer)

    def _answer_alone(self, request: _Request) -> None:
        try:
            answer = request.analyzer.analyze(request.docs, taxonomy=request.taxonomy)
        except BaseException as exc:  # handed to the waiting request, which raises it in its own thread
            request.future.set_exception(exc)
            return
        self._count(1, [request])
        request.future.set_result(answer)

    def _count(self, calls: int, group: list[_Request]) -> None:
        documents = sum(len(r.docs) for r in group)
        with self._cv:
            self._calls += calls
            self._requests += len(group)
            self._documents += documents
        if self.observe is not None:
            self.observe(len(group), documents)


def _tagged(group: list[_Request]) -> list[DocumentInput]:
    """The group's documents with ids made unique across requests (``<request>:<id>``)."""
    return [d.model_copy(update={"id": f"{k}:{d.id}"}) for k, r in enumerate(group) for d in r.docs]


def _split(group: list[_Request], answer: Answer) -> list[Answer]:
    """A joint call's results and errors handed back to their requests, in each request's own order."""
    results, errors = answer
    out: list[Answer] = [([], []) for _ in group]
    for res in results:
        k, _, original = res.id.partition(":")
        out[int(k)][0].append(res.model_copy(update={"id": original}))
    for err in errors:
        k, _, original = err.id.partition(":")
        out[int(k)][1].append(err.model_copy(update={"id": original}))
    return out
