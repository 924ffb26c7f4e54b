"""Side-by-side performance benchmark (issue 14): Voce against what a user would write instead, in one run.

Why one run: on a small, shared machine absolute numbers move by tens of percent from one minute to the next, so
only ratios measured together mean anything.  Every contender reads the same real texts with the same encoder
weights (the bundle's fine-tuned checkpoint), and the contenders take turns: the texts are cut into interleaved
rounds and each round runs every contender, in a rotated order, so background noise hits all of them alike.

  a  ``naive``: sentence-transformers ``encode([text])`` one comment at a time + the bundle's heads on each vector
  b  ``raw encoder``: the service's encoder ``encode(texts, batch_size=32)`` over a round at once (length-sorted
     batches, one pass per comment, no heads): what one encoder pass costs
  c  Voce in process: ``Analyzer.analyze`` with 25 documents per call, and with 1
  d  ``/v1/analyze`` over HTTP against the real ``voce serve`` in a subprocess (temporary data folder and database,
     the first admin key): 1 document per request with 1 and 8 concurrent keep-alive clients, 25 with 2
  e  the batch path: a CSV upload (``POST /v1/batches``, as the README documents it) polled until done

The report (JSON + a Markdown table next to it) holds throughput, per-request p50/p95/p99, the service's RSS after
warm-up, after the run and its peak, and the ratios c/a, d/a, d/b, e/a, e/b computed from the measured numbers.
``voce bench`` is the command (it builds the analyzer spec from the service settings, exactly as ``voce serve``
does); ``python -m voce.eval.bench`` hands over to it.  The model settings come from the ``VOCE_*`` environment,
which the service subprocess inherits; its ``/info`` must name the same encoder and bundle as the in-process one.
The analyzer's repeated-text cache is off unless ``--repeat-cache`` (in process, and ``VOCE_REPEAT_CACHE=0`` for the
service): the contenders read the same texts in turn, and a shared cache would hand one the vectors another computed.
"""
from __future__ import annotations

import contextlib
import csv
import dataclasses
import http.client
import io
import json
import os
import platform
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from importlib import metadata
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from voce.data.datasets import ABSITA, SENTIPOLC, load_dataset, repo_root, resolve_data_dir
from voce.data.unlabelled import AMAZON_IT, BA_REVIEWS, BRAND_TWEETS, PA_TWEETS, UNLABELLED, load_unlabelled
from voce.models.analyzer import Analyzer
from voce.models.bundle import VoceBundle
from voce.models.encoders.base import Encoder
from voce.models.encoders.factory import load_encoder, resolve_checkpoint
from voce.models.spec import AnalyzerSpec, load_analyzer
from voce.models.types import DocumentInput

Progress = Callable[[str], None]
Vector = npt.NDArray[np.float32]

#: the stages ``--skip`` can leave out
STAGES: tuple[str, ...] = ("naive", "raw", "inprocess", "http", "batch")
#: real sources, an equal share each: IT public-service tweets and Amazon reviews, EN brand-complaint tweets and
#: British Airways reviews (the long ones), SENTIPOLC tweets and ABSITA hotel-review sentences
SOURCES: tuple[str, ...] = (PA_TWEETS, AMAZON_IT, BRAND_TWEETS, BA_REVIEWS, SENTIPOLC, ABSITA)
#: the contenders, in report order; a key's first letter is its column in the issue (a..e)
NAIVE, RAW = "a_naive", "b_raw_encoder"
#: the raw encoder of the analyzer's own profile, when that is not the fp32 full encoder (int8 and/or the distilled
#: student): (b) stays the fp32 encoder, the issue's reference, and this row shows what the profile's encoder does
RAW_PROFILE = "b_raw_encoder_profile"
C25, C1 = "c_inprocess_25docs", "c_inprocess_1doc"
D1X1, D1X8, D25X2 = "d_http_1doc_1client", "d_http_1doc_8clients", "d_http_25docs_2clients"
BATCH = "e_batch"
#: the headline ratios: (name, numerator, denominator)
HEADLINE: tuple[tuple[str, str, str], ...] = (
    ("c/a", C25, NAIVE), ("c/b", C25, RAW), ("d/a", D25X2, NAIVE), ("d/b", D25X2, RAW),
    ("d1x8/b", D1X8, RAW), ("e/a", BATCH, NAIVE), ("e/b", BATCH, RAW),
)


class BenchError(RuntimeError):
    """The benchmark cannot go on; the message says why."""


class BenchDataError(BenchError):
    """The real texts are missing or unreadable."""


@dataclass(frozen=True)
class BenchConfig:
    """What one benchmark run does."""

    n: int = 400  # texts every contender analyses
    seed: int = 13  # drawing of the texts (the batch CSV uses seed + 1)
    rounds: int = 4  # interleaved slices of the texts; each round runs every contender in a rotated order
    batch_rows: int = 20_000  # rows of the uploaded CSV
    batch_timeout_s: float | None = None  # None: rows / 5 + 600 s
    skip: frozenset[str] = frozenset()  # stages left out (STAGES)
    soak_minutes: float = 0.0  # > 0: 8 clients keep hitting /v1/analyze, the service's RSS sampled every 10 s
    out: Path = Path("reports/bench/bench.json")  # bench.md is written next to it
    data_dir: Path | None = None  # the shared data folder (None: VOCE_TRAIN_DATA_DIR, else ../shared/data)
    max_chars: int = 1500  # longer real texts are left out of the draw (tweets to ~1,500-character reviews)
    ready_timeout_s: float = 900.0  # the service may convert and export the encoder on a cold cache
    # the analyzer's cache of repeated short texts; off by default here: the contenders read the same texts one
    # after the other, and a shared cache would hand a later contender the vectors an earlier one computed
    repeat_cache: bool = False
    command: str = ""  # recorded in the report

    def runs(self, stage: str) -> bool:
        return stage not in self.skip


def parse_skip(value: str) -> frozenset[str]:
    """``"http,batch"`` -> the stages; unknown names are refused (a typo must not silently run a stage)."""
    names = frozenset(s.strip() for s in value.split(",") if s.strip())
    unknown = names - set(STAGES)
    if unknown:
        raise BenchError(f"unknown stage(s) {', '.join(sorted(unknown))}; known: {', '.join(STAGES)}")
    return names


# ------------------------------------------------------------------------------------------------ texts
@dataclass(frozen=True, slots=True)
class BenchText:
    text: str
    source: str
    language: str


def load_pool(data_dir: Path | None = None, max_chars: int = 1500) -> dict[str, list[BenchText]]:
    """Every distinct non-empty text of each source up to ``max_chars``, in file order."""
    root = resolve_data_dir(data_dir)
    if not root.is_dir():
        raise BenchDataError(
            f"the shared data folder {root} does not exist: the benchmark reads real texts from it"
            " (pass --data-dir or set VOCE_TRAIN_DATA_DIR)"
        )
    pool: dict[str, list[BenchText]] = {}
    for name in SOURCES:
        try:
            rows = _read_source(name, root)
        except (FileNotFoundError, KeyError, ValueError) as exc:
            raise BenchDataError(f"cannot read source {name!r} under {root}: {exc}") from exc
        unique = {r.text: r for r in rows if r.text.strip() and len(r.text) <= max_chars}
        pool[name] = list(unique.values())
    return pool


def _read_source(name: str, root: Path) -> list[BenchText]:
    if name in UNLABELLED:
        return [BenchText(u.text, name, u.language) for u in load_unlabelled(name, root)]
    return [BenchText(e.text, name, e.language) for e in load_dataset(name, root)]


def draw(pool: dict[str, list[BenchText]], n: int, seed: int) -> list[BenchText]:
    """``n`` texts, an equal share per source; a source repeats a text only once all of its texts are used."""
    names = [k for k, v in pool.items() if v]
    if not names:
        raise BenchDataError("no texts to draw from")
    rng = random.Random(seed)
    out: list[BenchText] = []
    for i, name in enumerate(names):
        share = n // len(names) + (1 if i < n % len(names) else 0)
        order = list(pool[name])
        rng.shuffle(order)
        out += [order[j % len(order)] for j in range(share)]
    rng.shuffle(out)
    return out


def text_stats(texts: Sequence[BenchText]) -> dict[str, Any]:
    """What the texts look like (no text itself: the report is committed, the texts are not ours)."""
    chars = [len(t.text) for t in texts]
    return {
        "count": len(texts), "distinct": len({t.text for t in texts}),
        "mean_chars": round(statistics.fmean(chars), 1) if chars else None,
        "median_chars": statistics.median(chars) if chars else None,
        "max_chars": max(chars, default=None), "min_chars": min(chars, default=None),
        "languages": dict(sorted(Counter(t.language for t in texts).items())),
        "sources": dict(sorted(Counter(t.source for t in texts).items())),
    }


def rounds_of(texts: Sequence[BenchText], rounds: int) -> list[list[BenchText]]:
    """Interleaved slices: every round gets the same mix of lengths, sources and languages."""
    k = max(1, min(rounds, len(texts)))
    return [list(texts[r::k]) for r in range(k)]


# ------------------------------------------------------------------------------------------------ tallies
@dataclass
class Tally:
    """What one contender did over all rounds: documents, time spent, one latency per request."""

    docs: int = 0
    doc_errors: int = 0
    wall_s: float = 0.0
    latencies_s: list[float] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def docs_per_s(self) -> float | None:
        return self.docs / self.wall_s if self.wall_s > 0 else None

    def summary(self, latencies: bool = True) -> dict[str, Any]:
        lat = np.asarray(self.latencies_s, np.float64) * 1000.0
        show = latencies and lat.size > 0
        rate = self.docs_per_s
        return {
            "docs": self.docs, "doc_errors": self.doc_errors, "wall_s": round(self.wall_s, 6),
            "docs_per_s": round(rate, 2) if rate is not None else None, "requests": len(self.latencies_s),
            **{f"p{q}_ms": round(float(np.percentile(lat, q)), 1) if show else None for q in (50, 95, 99)},
            "status_counts": {str(k): v for k, v in sorted(self.statuses.items())},
            "status_429": self.statuses.get(429, 0),
        }


class Contender(Protocol):
    """One way of getting the texts analysed; ``run`` adds its documents, time and latencies to the tally."""

    key: str
    about: str

    def run(self, texts: list[BenchText], tally: Tally) -> None: ...


def _timed(tally: Tally, calls: Iterator[Callable[[], tuple[int, int]]]) -> None:
    """Run the calls one after the other; each returns (documents analysed, documents refused)."""
    t0 = time.perf_counter()
    for call in calls:
        start = time.perf_counter()
        ok, bad = call()
        tally.latencies_s.append(time.perf_counter() - start)
        tally.docs += ok
        tally.doc_errors += bad
    tally.wall_s += time.perf_counter() - t0


# ------------------------------------------------------------------------------------------------ in process
@dataclass
class NaivePipeline:
    """(a) What a user writes: embed one comment, then the same heads on its vector."""

    embed_one: Callable[[str], Vector]
    bundle: VoceBundle
    about: str
    key: str = NAIVE

    def one(self, text: str) -> tuple[int, int]:
        vec = np.atleast_2d(self.embed_one(text))
        lex = self.bundle.lexical_features([text])
        for head in (self.bundle.sentiment, self.bundle.detractor, self.bundle.topics):
            head.predict_proba(vec, lex)
        return 1, 0

    def run(self, texts: list[BenchText], tally: Tally) -> None:
        _timed(tally, (partial(self.one, t.text) for t in texts))


@dataclass
class RawEncoder:
    """(b) One encoder pass per comment in length-sorted batches of 32, no heads: the floor of the analysis."""

    encoder: Encoder
    about: str
    key: str = RAW

    def run(self, texts: list[BenchText], tally: Tally) -> None:
        def call() -> tuple[int, int]:
            return len(self.encoder.encode([t.text for t in texts], batch_size=32)), 0

        _timed(tally, iter([call]))


@dataclass
class InProcess:
    """(c) ``Analyzer.analyze`` in calls of ``per_call`` documents, in the benchmark's own process."""

    analyzer: Analyzer
    per_call: int
    key: str
    about: str

    def run(self, texts: list[BenchText], tally: Tally) -> None:
        docs = [DocumentInput(id=str(i), text=t.text) for i, t in enumerate(texts)]

        def call(chunk: list[DocumentInput]) -> tuple[int, int]:
            results, errors = self.analyzer.analyze(chunk)
            return len(results), len(errors)

        chunks = (docs[i : i + self.per_call] for i in range(0, len(docs), self.per_call))
        _timed(tally, (partial(call, c) for c in chunks))


def naive_embedder(spec: AnalyzerSpec, bundle: VoceBundle, progress: Progress) -> tuple[Callable[[str], Vector], dict[str, Any]]:
    """sentence-transformers on the merged fine-tuned checkpoint the service converts to ONNX (same weights).

    If sentence-transformers cannot load it, transformers mean pooling one text at a time (Voce's torch
    encoder) stands in, labelled as such.  With the fake backend (smoke tests) the fake encoder does.
    """
    enc_spec = bundle.encoder_spec(backend=spec.backend, model=spec.encoder, cache_dir=spec.cache_dir, threads=spec.threads)
    if enc_spec.backend == "fake":
        fake = load_encoder(enc_spec)
        return (lambda t: fake.encode([t])), {"kind": "fake encoder, one text at a time (smoke runs only)", "model": fake.name}
    checkpoint = resolve_checkpoint(enc_spec, progress)
    info: dict[str, Any] = {"checkpoint": str(checkpoint), "prefix": enc_spec.prefix}
    try:
        from sentence_transformers import SentenceTransformer

        model = SentenceTransformer(str(checkpoint), device="cpu")
    except (ImportError, OSError, ValueError, RuntimeError) as exc:
        from voce.models.encoders.hf import TorchEncoder

        progress(f"sentence-transformers could not load {checkpoint} ({exc}); transformers mean pooling instead")
        torch_enc = TorchEncoder(checkpoint, prefix=enc_spec.prefix, max_length=enc_spec.max_length, threads=spec.threads)
        info |= {"kind": "transformers mean pooling, one text at a time (sentence-transformers failed)", "why": str(exc)}
        return (lambda t: torch_enc.encode([t])), info
    if spec.threads:
        import torch

        torch.set_num_threads(spec.threads)
    info |= {"kind": f"sentence-transformers SentenceTransformer.encode([text], prompt={enc_spec.prefix!r}), one text at a time",
             "max_seq_length": model.max_seq_length}

    def embed(text: str) -> Vector:
        # the prompt is explicit: the checkpoint's own default prompt is the same "query: ", added once either way
        vec = model.encode([text], prompt=enc_spec.prefix, show_progress_bar=False, convert_to_numpy=True)
        return np.asarray(vec, np.float32)

    return embed, info


@dataclass
class Models:
    """What the in-process contenders run on, loaded once."""

    bundle: VoceBundle
    analyzer: Analyzer | None = None
    raw: Encoder | None = None
    raw_profile: Encoder | None = None
    naive: Callable[[str], Vector] | None = None
    info: dict[str, Any] = field(default_factory=dict)


def load_models(cfg: BenchConfig, spec: AnalyzerSpec, progress: Progress) -> Models:
    """The analyzer first (it imports onnxruntime with its telemetry off), then the raw encoder and the naive model."""
    bundle = VoceBundle.load(spec.bundle_path())
    models = Models(bundle, info={"bundle": bundle.version})
    if cfg.runs("inprocess"):
        progress("loading the analyzer (load_analyzer, the service's spec)")
        models.analyzer = load_analyzer(spec, progress=progress)
        models.analyzer.warm_up()
        models.info["encoder"] = models.analyzer.encoder.name
    if cfg.runs("raw") or cfg.runs("naive"):
        progress("loading the raw encoder (load_encoder on the bundle's encoder spec)")
        enc_spec = bundle.encoder_spec(backend=spec.backend, model=spec.encoder, cache_dir=spec.cache_dir,
                                       threads=spec.threads)  # fp32: the reference
        models.raw = load_encoder(enc_spec, progress=progress)
        models.info["raw_encoder"] = {"name": models.raw.name, "class": type(models.raw).__name__}
        if (spec.precision != "fp32" or spec.student) and cfg.runs("raw"):
            profile = bundle.encoder_spec(backend=spec.backend, model=spec.encoder, cache_dir=spec.cache_dir,
                                          threads=spec.threads, precision=spec.precision, student=spec.student)
            models.raw_profile = load_encoder(profile, progress=progress)
            models.info["raw_encoder_profile"] = {"name": models.raw_profile.name, "precision": spec.precision,
                                                  "student": spec.student}
    if cfg.runs("naive"):
        progress("loading the naive pipeline's model")
        models.naive, models.info["naive"] = naive_embedder(spec, bundle, progress)
    return models


def same_vectors(models: Models, texts: Sequence[BenchText]) -> float | None:
    """Lowest cosine between the naive model's and the raw encoder's vectors: proof they are the same model."""
    if models.naive is None or models.raw is None or not texts:
        return None
    sample = [t.text for t in texts[:8]]
    raw = models.raw.encode(sample)
    naive = np.vstack([np.atleast_2d(models.naive(t)) for t in sample])
    naive = naive / np.linalg.norm(naive, axis=1, keepdims=True)
    return round(float((raw * naive).sum(axis=1).min()), 6)


# ------------------------------------------------------------------------------------------------ the service
class Client:
    """One keep-alive HTTP/1.1 connection to the service, as one integrating client holds it."""

    def __init__(self, port: int, key: str) -> None:
        self.port, self.key = port, key
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)

    def request(self, method: str, path: str, body: bytes | None = None,
                content_type: str = "application/json") -> tuple[int, bytes]:
        headers = {"Authorization": f"Bearer {self.key}", "Content-Type": content_type}
        for attempt in (1, 2):  # a keep-alive connection the server closed while idle is reopened once
            try:
                self.conn.request(method, path, body=body, headers=headers)
                response = self.conn.getresponse()
                return response.status, response.read()
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                self.conn.close()
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def json(self, method: str, path: str) -> Any:
        status, raw = self.request(method, path)
        if status != 200:
            raise BenchError(f"{method} {path}: HTTP {status}: {raw[:300]!r}")
        return json.loads(raw)


@dataclass
class Service:
    """``voce serve`` in a subprocess, on a free port, with its own data folder (SQLite database, uploads, key)."""

    proc: subprocess.Popen[bytes]
    port: int
    data_dir: Path
    log: Path
    key: str = ""
    launched: float = field(default_factory=time.perf_counter)

    def client(self) -> Client:
        return Client(self.port, self.key)

    def memory_mb(self) -> dict[str, float]:
        """Resident memory now (VmRSS) and its peak so far (VmHWM), from /proc."""
        fields = {}
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            name, _, value = line.partition(":")
            if name in ("VmRSS", "VmHWM"):
                fields[name] = round(int(value.split()[0]) / 1024, 1)
        return {"rss_mb": fields.get("VmRSS", 0.0), "peak_rss_mb": fields.get("VmHWM", 0.0)}

    def log_tail(self, chars: int = 2000) -> str:
        return self.log.read_text("utf-8", errors="replace")[-chars:] if self.log.exists() else ""

    def wait_ready(self, timeout_s: float, progress: Progress) -> float:
        """Seconds from launch to ``/ready`` 200; then the first admin key is read from the data folder."""
        t0 = self.launched
        while time.perf_counter() - t0 < timeout_s:
            if self.proc.poll() is not None:
                raise BenchError(f"the service exited with {self.proc.returncode}:\n{self.log_tail()}")
            with contextlib.suppress(OSError, http.client.HTTPException):
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
                conn.request("GET", "/ready")
                if conn.getresponse().status == 200:
                    conn.close()
                    key_file = self.data_dir / "initial-admin-key"
                    self.key = key_file.read_text("utf-8").strip()
                    return time.perf_counter() - t0
                conn.close()
            time.sleep(0.5)
        raise BenchError(f"the service was not ready after {timeout_s:.0f} s:\n{self.log_tail()}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def launched_service(work: Path, overrides: dict[str, str] | None = None) -> Iterator[Service]:
    """Start ``voce serve`` (this interpreter, the inherited ``VOCE_*`` model settings); always stopped after."""
    port, data_dir, log = _free_port(), work / "var", work / "service.log"
    env = os.environ | (overrides or {}) | {"VOCE_DATA_DIR": str(data_dir), "VOCE_HOST": "127.0.0.1", "VOCE_PORT": str(port)}
    with log.open("wb") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "voce.service.cli", "serve"], env=env, stdout=fh,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    service = Service(proc, port, data_dir, log)
    try:
        yield service
    finally:
        service.stop()


def drive(clients: list[Client], next_payload: Callable[[], bytes | None], tally: Tally,
          monitor: Callable[[], None] | None = None, every_s: float = 10.0) -> None:
    """Each client sends payloads back to back until none is left; ``monitor`` runs every ``every_s`` meanwhile."""
    take = threading.Lock()

    def worker(client: Client) -> None:
        while True:
            with take:
                payload = next_payload()
            if payload is None:
                return
            start = time.perf_counter()
            status, raw = client.request("POST", "/v1/analyze", payload)
            latency = time.perf_counter() - start
            ok, bad = _counts(status, raw)
            with tally.lock:
                tally.latencies_s.append(latency)
                tally.statuses[status] += 1
                tally.docs += ok
                tally.doc_errors += bad

    threads = [threading.Thread(target=worker, args=(c,), daemon=True) for c in clients]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    next_check = t0 + every_s
    for t in threads:
        while t.is_alive():
            t.join(timeout=max(0.0, next_check - time.perf_counter()))
            if time.perf_counter() >= next_check:
                next_check += every_s
                if monitor is not None:
                    monitor()
    tally.wall_s += time.perf_counter() - t0


def _counts(status: int, raw: bytes) -> tuple[int, int]:
    if status != 200:
        return 0, 0
    body = json.loads(raw)
    return len(body["documents"]), len(body["errors"])


def _payload(texts: Sequence[BenchText], first_id: int) -> bytes:
    docs = [{"id": str(first_id + i), "text": t.text} for i, t in enumerate(texts)]
    return json.dumps({"documents": docs}, ensure_ascii=False).encode("utf-8")


@dataclass
class OverHttp:
    """(d) ``POST /v1/analyze`` with ``per_request`` documents from ``n_clients`` concurrent keep-alive clients."""

    service: Service
    per_request: int
    n_clients: int
    key: str
    about: str
    clients: list[Client] = field(default_factory=list)

    def run(self, texts: list[BenchText], tally: Tally) -> None:
        if not self.clients:
            self.clients = [self.service.client() for _ in range(self.n_clients)]
        payloads = iter([_payload(texts[i : i + self.per_request], i) for i in range(0, len(texts), self.per_request)])
        drive(self.clients, lambda: next(payloads, None), tally)


def soak(service: Service, texts: Sequence[BenchText], minutes: float, progress: Progress) -> dict[str, Any]:
    """8 clients, one comment per request, for ``minutes``; the service's RSS every 10 s: is memory flat?"""
    deadline = time.perf_counter() + minutes * 60
    counter = iter(range(1 << 62))
    samples: list[tuple[float, float]] = []
    t0 = time.perf_counter()

    def next_payload() -> bytes | None:
        if time.perf_counter() >= deadline:
            return None
        i = next(counter)
        return _payload([texts[i % len(texts)]], i)

    def sample() -> None:
        samples.append((round(time.perf_counter() - t0, 1), service.memory_mb()["rss_mb"]))
        progress(f"soak: {samples[-1][0]:.0f} s, service RSS {samples[-1][1]:.0f} MB")

    tally = Tally()
    sample()
    drive([service.client() for _ in range(8)], next_payload, tally, monitor=sample, every_s=10.0)
    rss = [mb for _, mb in samples]
    return {"minutes": minutes, "clients": 8, **tally.summary(), "rss_first_mb": rss[0], "rss_last_mb": rss[-1],
            "rss_max_mb": max(rss), "rss_samples": samples, "peak_rss_mb": service.memory_mb()["peak_rss_mb"]}


# ------------------------------------------------------------------------------------------------ batches
def batch_csv(rows: Sequence[BenchText]) -> bytes:
    """The upload: ``id,text`` (quoted where needed), UTF-8, one row per comment."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["id", "text"])
    writer.writerows([f"r{i}", t.text] for i, t in enumerate(rows))
    return buf.getvalue().encode("utf-8")


def _multipart(fields: dict[str, str], filename: str, content: bytes) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode() for k, v in fields.items()]
    head = (f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n'
            "Content-Type: text/csv\r\n\r\n").encode()
    body = b"".join(parts) + head + content + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


@dataclass
class BatchTrace:
    """Client-clock marks of one batch (seconds from the start of the upload) and its last status."""

    accepted_s: float = 0.0
    analysed_s: float | None = None  # every row analysed (discovery may still run)
    done_s: float | None = None
    phases: list[str] = field(default_factory=list)
    status: dict[str, Any] = field(default_factory=dict)
    rss_max_mb: float = 0.0


def follow_batch(client: Client, service: Service, batch_id: str, t0: float, timeout_s: float,
                 progress: Progress) -> BatchTrace:
    """Poll ``GET /v1/batches/{id}`` every second until done or failed (or the timeout)."""
    trace, last_note = BatchTrace(), time.perf_counter()
    while time.perf_counter() - t0 < timeout_s:
        st = client.json("GET", f"/v1/batches/{batch_id}")
        now = time.perf_counter() - t0
        trace.status, trace.rss_max_mb = st, max(trace.rss_max_mb, service.memory_mb()["rss_mb"])
        if st.get("phase") and (not trace.phases or trace.phases[-1] != st["phase"]):
            trace.phases.append(st["phase"])
        total, done = st.get("rows_total"), int(st.get("rows_done") or 0)  # rows read, error rows included
        analysed = st["status"] == "done" or st.get("phase") == "discovering" or (total is not None and done >= total)
        if trace.analysed_s is None and analysed:
            trace.analysed_s = now
        if st["status"] in ("done", "failed"):
            trace.done_s = now
            return trace
        if time.perf_counter() - last_note >= 30:
            last_note = time.perf_counter()
            progress(f"batch: {st['status']}/{st.get('phase')} {done}/{total} rows, {done / max(now, 1e-9):.1f} rows/s")
        time.sleep(1.0)
    progress(f"batch: not done after {timeout_s:.0f} s; reporting what it did so far")
    return trace


def _server_seconds(status: dict[str, Any]) -> float | None:
    start, end = status.get("started_at"), status.get("finished_at")
    if not start or not end:
        return None
    return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()


def run_batch(service: Service, rows: Sequence[BenchText], timeout_s: float, progress: Progress) -> dict[str, Any]:
    """(e) Upload the CSV as the README does (multipart ``file`` + ``mapping``) and follow it to the end."""
    body, ctype = _multipart({"mapping": json.dumps({"text": "text", "id": "id"}), "name": "bench"}, "bench.csv",
                             batch_csv(rows))
    client = service.client()
    progress(f"batch: uploading {len(rows)} rows ({len(body) / 1e6:.1f} MB)")
    t0 = time.perf_counter()
    status, raw = client.request("POST", "/v1/batches", body, ctype)
    if status != 202:
        raise BenchError(f"POST /v1/batches: HTTP {status}: {raw[:300]!r}")
    accepted = time.perf_counter() - t0
    trace = follow_batch(client, service, json.loads(raw)["id"], t0, timeout_s, progress)
    trace.accepted_s = accepted
    return batch_report(rows, trace)


def batch_report(rows: Sequence[BenchText], trace: BatchTrace) -> dict[str, Any]:
    st, n = trace.status, len(rows)
    server_s = _server_seconds(st)

    def rate(seconds: float | None) -> float | None:
        return round(n / seconds, 2) if seconds else None

    return {
        "rows": n, "texts": text_stats(rows), "status": st.get("status", "unknown") if trace.done_s else "timeout",
        "rows_total": st.get("rows_total"), "rows_done": st.get("rows_done"), "rows_error": st.get("rows_error"),
        "error": st.get("error"), "discovery_error": st.get("discovery_error"), "phases_seen": trace.phases,
        "upload_s": round(trace.accepted_s, 2),
        "submit_to_analysed_s": _round(trace.analysed_s), "submit_to_done_s": _round(trace.done_s),
        "server_started_to_finished_s": _round(server_s),
        "docs_per_s": rate(trace.done_s), "docs_per_s_to_analysed": rate(trace.analysed_s),
        "docs_per_s_server_processing": rate(server_s), "service_rss_max_mb_during": trace.rss_max_mb,
    }


def _round(x: float | None, digits: int = 2) -> float | None:
    return round(x, digits) if x is not None else None


# ------------------------------------------------------------------------------------------------ the run
def contenders(models: Models, service: Service | None) -> list[Contender]:
    """Every contender that was loaded, in report order."""
    out: list[Contender] = []
    if models.naive is not None:
        kind = models.info.get("naive", {}).get("kind", "naive")
        out.append(NaivePipeline(models.naive, models.bundle, f"{kind} + the bundle's sentiment, detractor, topic heads"))
    if models.raw is not None:
        out.append(RawEncoder(models.raw, f"{models.raw.name}: encode(texts, batch_size=32) per round, no heads"))
    if models.raw_profile is not None:
        out.append(RawEncoder(models.raw_profile, f"{models.raw_profile.name}: the profile's encoder alone, same calls",
                              key=RAW_PROFILE))
    if models.analyzer is not None:
        out.append(InProcess(models.analyzer, 25, C25, "Analyzer.analyze, 25 documents per call, in process"))
        out.append(InProcess(models.analyzer, 1, C1, "Analyzer.analyze, 1 document per call, in process"))
    if service is not None:
        out.append(OverHttp(service, 1, 1, D1X1, "POST /v1/analyze, 1 document per request, 1 client"))
        out.append(OverHttp(service, 1, 8, D1X8, "POST /v1/analyze, 1 document per request, 8 concurrent clients"))
        out.append(OverHttp(service, 25, 2, D25X2, "POST /v1/analyze, 25 documents per request, 2 concurrent clients"))
    return out


def warm_up(players: Sequence[Contender], texts: Sequence[BenchText]) -> None:
    """A few texts through every contender, untimed: lazy loading and first-call costs stay out of the numbers."""
    for c in players:
        c.run(list(texts[:8]), Tally())


def run_rounds(players: Sequence[Contender], texts: Sequence[BenchText], rounds: int,
               progress: Progress) -> dict[str, Tally]:
    """Every round runs every contender on the same slice; the starting contender moves by one each round."""
    tallies = {c.key: Tally() for c in players}
    slices = rounds_of(texts, rounds)
    for r, chunk in enumerate(slices):
        order = list(players[r % len(players):]) + list(players[: r % len(players)]) if players else []
        for c in order:
            before = (tallies[c.key].docs, tallies[c.key].wall_s)
            c.run(chunk, tallies[c.key])
            docs, secs = tallies[c.key].docs - before[0], tallies[c.key].wall_s - before[1]
            progress(f"round {r + 1}/{len(slices)}: {c.key:<24} {docs:4d} docs in {secs:6.1f} s"
                     f" ({docs / max(secs, 1e-9):6.1f} docs/s)")
    return tallies


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a is not None and b else None


def contender_rows(players: Sequence[Contender], tallies: dict[str, Tally], batch: dict[str, Any] | None) -> dict[str, Any]:
    """Per contender: its summary plus its reported throughput over the naive pipeline's and the raw encoder's."""
    rows: dict[str, Any] = {}
    for c in players:
        rows[c.key] = {"about": c.about, **tallies[c.key].summary(latencies=c.key not in (RAW, RAW_PROFILE))}
    if batch is not None:
        rows[BATCH] = {"about": "POST /v1/batches (CSV), submit to done, as the README documents it",
                       "docs": batch["rows"], "docs_per_s": batch.get("docs_per_s")}
    naive, raw = rows.get(NAIVE, {}).get("docs_per_s"), rows.get(RAW, {}).get("docs_per_s")
    for row in rows.values():
        row["vs_naive"], row["vs_raw_encoder"] = _ratio(row["docs_per_s"], naive), _ratio(row["docs_per_s"], raw)
    return rows


def headline_ratios(rows: dict[str, Any], batch: dict[str, Any] | None = None) -> dict[str, Any]:
    """c/a, d/a, d/b, e/a, e/b (and c/b, d1x8/b) from the measured throughputs; None where a stage was skipped."""
    def rate(key: str) -> float | None:
        return rows.get(key, {}).get("docs_per_s")

    out: dict[str, Any] = {name: _ratio(rate(num), rate(den)) for name, num, den in HEADLINE}
    out["definitions"] = {name: f"{num} / {den} (documents per second)" for name, num, den in HEADLINE}
    if rate(RAW_PROFILE) is not None:  # the fast profile: Voce against its own encoder too
        for name, num in (("c/b_profile", C25), ("d/b_profile", D25X2), ("e/b_profile", BATCH)):
            out[name] = _ratio(rate(num), rate(RAW_PROFILE))
            out["definitions"][name] = f"{num} / {RAW_PROFILE} (documents per second)"
    around = (batch or {}).get("raw_encoder_around") or {}
    if around.get("before_docs_per_s") and around.get("after_docs_per_s"):
        out["e/b_around"] = _ratio(rate(BATCH), (around["before_docs_per_s"] + around["after_docs_per_s"]) / 2)
        out["definitions"]["e/b_around"] = f"{BATCH} / mean of {RAW} measured just before and just after the batch"
    return out


# ------------------------------------------------------------------------------------------------ environment
def _cpu_model() -> str | None:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    return platform.processor() or None


def _memory_gb() -> float | None:
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024**2, 1)
    return None


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _git() -> dict[str, Any] | None:
    """The commit, and the tracked files that differ from it (the run measured the working tree)."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=repo_root(), capture_output=True, text=True, check=True).stdout

    try:
        modified = [line[3:] for line in git("status", "--porcelain", "--untracked-files=no").splitlines()]
        return {"sha": git("rev-parse", "HEAD").strip(), "modified": modified}
    except (OSError, subprocess.CalledProcessError):
        return None


def environment() -> dict[str, Any]:
    """The machine, the versions and the commit, read when the run starts (the code it loads); the load averages
    (start here, end added at the end) say how shared the machine was."""
    packages = ("voce", "onnxruntime", "torch", "sentence-transformers", "transformers", "tokenizers", "numpy")
    return {
        "machine": {"cpu_count": os.cpu_count(), "cpu_model": _cpu_model(), "memory_gb": _memory_gb(),
                    "platform": platform.platform(), "python": platform.python_version(),
                    "load_average_1_5_15_min": {"start": [round(x, 2) for x in os.getloadavg()]}},
        "versions": {p: _version(p) for p in packages},
        "git": _git(),
    }


# ------------------------------------------------------------------------------------------------ report
def _mix(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(counts.items(), key=lambda kv: -kv[1]))


def _cell(x: Any) -> str:
    return "—" if x is None else f"{x:g}" if isinstance(x, float) else str(x)


def markdown(report: dict[str, Any]) -> str:
    """The table for the README: each contender against the naive pipeline and the raw encoder."""
    env, texts, model = report["environment"], report["texts"], report["model"]
    git = env.get("git") or {}
    lines = [
        "# Voce performance benchmark (issue 14)", "",
        f"`{report['command']}` at {report['created_at']}; git {str(git.get('sha', '?'))[:10]}"
        f" ({len(git.get('modified', []))} tracked files modified); {env['machine']['cpu_count']} CPUs"
        f" ({env['machine']['cpu_model']}); onnxruntime {env['versions']['onnxruntime']}, torch {env['versions']['torch']}.",
        "",
        f"{texts['count']} real comments ({texts['distinct']} distinct; mean {texts['mean_chars']} characters, median"
        f" {texts['median_chars']}, max {texts['max_chars']}; {_mix(texts['languages'])}), in"
        f" {report['config']['rounds']} interleaved rounds, the contenders taking turns; repeated-text cache"
        f" {'on' if report['config']['repeat_cache'] else 'off'}. Same model everywhere:"
        f" {model.get('encoder') or model.get('raw_encoder', {}).get('name')} + bundle {model.get('bundle')}"
        f" (naive vs raw encoder vectors: lowest cosine {_cell(model.get('naive_vs_raw_min_cosine'))}).", "",
        "| contender | comments/s | × naive | × raw encoder | p50 ms | p95 ms | p99 ms | 429s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for key, row in report["contenders"].items():
        cells = [row.get(k) for k in ("docs_per_s", "vs_naive", "vs_raw_encoder", "p50_ms", "p95_ms", "p99_ms", "status_429")]
        lines.append(f"| {key}: {row['about']} | " + " | ".join(_cell(c) for c in cells) + " |")
    lines += ["", "Ratios: " + ", ".join(f"{k} = {_cell(v)}" for k, v in report["ratios"].items() if k != "definitions")]
    lines += _batch_lines(report.get("batch")) + _memory_lines(report.get("service_memory"), report.get("soak"))
    return "\n".join(lines) + "\n"


def _batch_lines(batch: dict[str, Any] | None) -> list[str]:
    if not batch:
        return []
    around = batch.get("raw_encoder_around") or {}
    return ["", f"Batch: {batch['rows']} rows ({batch['texts']['distinct']} distinct, mean {batch['texts']['mean_chars']}"
            f" characters), status {batch['status']}, {batch['rows_error']} error rows; upload {batch['upload_s']} s;"
            f" submit to analysed {_cell(batch['submit_to_analysed_s'])} s ({_cell(batch['docs_per_s_to_analysed'])}/s),"
            f" submit to done {_cell(batch['submit_to_done_s'])} s ({_cell(batch['docs_per_s'])}/s; phases"
            f" {', '.join(batch['phases_seen'])}); server started to finished {_cell(batch['server_started_to_finished_s'])} s;"
            f" the raw encoder just before and after it: {_cell(around.get('before_docs_per_s'))} and"
            f" {_cell(around.get('after_docs_per_s'))} comments/s."]


def _memory_lines(memory: dict[str, Any] | None, soaked: dict[str, Any] | None) -> list[str]:
    if not memory:
        return []
    parts = [f"{k.replace('_', ' ')} {v['rss_mb']} MB" for k, v in memory.items() if isinstance(v, dict)]
    lines = ["", f"Service RSS: {'; '.join(parts)}; peak (VmHWM) {memory.get('peak_rss_mb')} MB."]
    if soaked:
        lines.append(f"Soak: {soaked['minutes']} min, 8 clients, {soaked['docs_per_s']} comments/s, p50"
                     f" {soaked['p50_ms']} ms, p99 {soaked['p99_ms']} ms; RSS first {soaked['rss_first_mb']} MB, last"
                     f" {soaked['rss_last_mb']} MB, max {soaked['rss_max_mb']} MB.")
    return lines


def write_report(report: dict[str, Any], out: Path) -> tuple[Path, Path]:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", "utf-8")
    md = out.with_suffix(".md")
    md.write_text(markdown(report), "utf-8")
    return out, md


# ------------------------------------------------------------------------------------------------ orchestration
def _quiet(_msg: str) -> None:
    return None


def bench_inputs(cfg: BenchConfig, texts: Sequence[BenchText] | None) -> tuple[list[BenchText], list[BenchText]]:
    """The benchmark texts and the batch rows: drawn from the real data, or the caller's texts (smoke runs)."""
    rows_wanted = cfg.batch_rows if cfg.runs("batch") else 0
    if texts is None:
        pool = load_pool(cfg.data_dir, cfg.max_chars)
        return draw(pool, cfg.n, cfg.seed), draw(pool, rows_wanted, cfg.seed + 1) if rows_wanted else []
    if not texts:
        raise BenchDataError("no texts given")
    given = list(texts)
    return given, [given[i % len(given)] for i in range(rows_wanted)]


def check_service(service: Service, models: Models, timeout_s: float, progress: Progress) -> dict[str, Any]:
    """Wait for ``/ready``; its ``/info`` must name the in-process encoder and bundle, or no ratio means anything."""
    progress("waiting for the service's /ready")
    ready_s = service.wait_ready(timeout_s, progress)
    info = service.client().json("GET", "/info")
    expected = {"model_version": models.bundle.version, "encoder": models.info.get("encoder")}
    for name, want in expected.items():
        if want is not None and info.get(name) != want:
            raise BenchError(f"the service runs {name} {info.get(name)!r}, the benchmark process {want!r}")
    progress(f"service ready in {ready_s:.1f} s: {info.get('encoder')} + bundle {info.get('model_version')}")
    return {"ready_s": round(ready_s, 1), "encoder": info.get("encoder"), "model_version": info.get("model_version"),
            "limits": info.get("limits"), "memory_when_ready": service.memory_mb()}


@dataclass
class Measured:
    players: list[Contender]
    tallies: dict[str, Tally]
    memory: dict[str, Any] = field(default_factory=dict)
    batch: dict[str, Any] | None = None
    soak: dict[str, Any] | None = None


def measure(cfg: BenchConfig, models: Models, service: Service | None, texts: list[BenchText],
            rows: list[BenchText], progress: Progress) -> Measured:
    """Warm up, the interleaved rounds, then the batch and the soak (they need the service to themselves)."""
    players = contenders(models, service if cfg.runs("http") else None)
    progress(f"warming up {len(players)} contenders")
    warm_up(players, texts)
    m = Measured(players, {})
    if service is not None:
        m.memory["after_warm_up"] = service.memory_mb()
    m.tallies = run_rounds(players, texts, cfg.rounds, progress)
    if service is not None:
        m.memory["after_run"] = service.memory_mb()
    if service is not None and rows:
        m.batch = batch_stage(cfg, service, players, texts, rows, progress)
        m.memory["after_batch"] = service.memory_mb()
    if service is not None and cfg.soak_minutes > 0:
        m.soak = soak(service, texts, cfg.soak_minutes, progress)
    if service is not None:
        m.memory["peak_rss_mb"] = service.memory_mb()["peak_rss_mb"]
    return m


def raw_rate(players: Sequence[Contender], texts: list[BenchText]) -> float | None:
    """The raw encoder on the benchmark texts, just before and just after the batch: the batch runs alone (it
    cannot take turns), so its ratio to the encoder is also given against the encoder measured around it."""
    raw = next((p for p in players if p.key == RAW), None)
    if raw is None:
        return None
    tally = Tally()
    raw.run(texts, tally)
    return tally.docs_per_s


def batch_stage(cfg: BenchConfig, service: Service, players: Sequence[Contender], texts: list[BenchText],
                rows: list[BenchText], progress: Progress) -> dict[str, Any]:
    """The upload, with the raw encoder measured on the benchmark texts just before and just after it."""
    before = raw_rate(players, texts)
    batch = run_batch(service, rows, cfg.batch_timeout_s or len(rows) / 5 + 600, progress)
    after = raw_rate(players, texts)
    batch["raw_encoder_around"] = {"before_docs_per_s": _round(before), "after_docs_per_s": _round(after)}
    progress(f"batch: {batch['status']}, {batch['docs_per_s']} comments/s submit to done")
    return batch


def without_repeat_cache(spec: AnalyzerSpec) -> AnalyzerSpec:
    """The spec with the analyzer's repeated-text cache off (an analyzer config without one is left as it is)."""
    if not hasattr(spec.config, "repeat_cache"):
        return spec
    return spec.model_copy(update={"config": dataclasses.replace(spec.config, repeat_cache=0)})


def run_bench(cfg: BenchConfig, spec: AnalyzerSpec, *, texts: Sequence[BenchText] | None = None,
              progress: Progress = _quiet) -> dict[str, Any]:
    """The whole benchmark; writes ``cfg.out`` (JSON) and the Markdown table next to it, returns the report."""
    t0, env = time.perf_counter(), environment()
    bench_texts, rows = bench_inputs(cfg, texts)
    spec = spec if cfg.repeat_cache else without_repeat_cache(spec)
    stats = text_stats(bench_texts)
    progress(f"{stats['count']} texts, mean {stats['mean_chars']} characters, {stats['languages']}")
    wants_service = cfg.runs("http") or cfg.runs("batch") or cfg.soak_minutes > 0
    work = Path(tempfile.mkdtemp(prefix="voce-bench-"))
    try:
        with contextlib.ExitStack() as stack:
            overrides = {} if cfg.repeat_cache else {"VOCE_REPEAT_CACHE": "0"}
            service = stack.enter_context(launched_service(work, overrides)) if wants_service else None
            models = load_models(cfg, spec, progress)
            serving = check_service(service, models, cfg.ready_timeout_s, progress) if service else None
            cosine = same_vectors(models, bench_texts)
            m = measure(cfg, models, service, bench_texts, rows, progress)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    rows_out = contender_rows(m.players, m.tallies, m.batch)
    report = {
        "issue": 14, "created_at": datetime.now(UTC).isoformat(timespec="seconds"), "command": cfg.command,
        "config": {"n": cfg.n, "seed": cfg.seed, "rounds": cfg.rounds, "batch_rows": cfg.batch_rows,
                   "skip": sorted(cfg.skip), "soak_minutes": cfg.soak_minutes, "max_chars": cfg.max_chars,
                   "repeat_cache": cfg.repeat_cache},
        "environment": env,
        "model": {**models.info, "analyzer_config": dataclasses.asdict(spec.config), "naive_vs_raw_min_cosine": cosine,
                  "service": serving},
        "texts": stats, "contenders": rows_out, "ratios": headline_ratios(rows_out, m.batch),
        "service_memory": m.memory or None, "batch": m.batch, "soak": m.soak,
        "elapsed_s": round(time.perf_counter() - t0, 1),
    }
    env["machine"]["load_average_1_5_15_min"]["end"] = [round(x, 2) for x in os.getloadavg()]
    write_report(report, cfg.out)
    return report


def main(argv: list[str] | None = None) -> None:
    """``python -m voce.eval.bench ...`` is ``voce bench ...``: one set of options, the service's own settings."""
    args = sys.argv[1:] if argv is None else argv
    raise SystemExit(subprocess.call([sys.executable, "-m", "voce.service.cli", "bench", *args]))


if __name__ == "__main__":
    main()
