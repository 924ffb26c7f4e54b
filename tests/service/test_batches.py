"""Batches end to end through the real app, on SQLite and on a real PostgreSQL; restart-resume; leases."""
from __future__ import annotations

import csv
import io
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openpyxl
import pytest
from fastapi.testclient import TestClient

from voce.service.app import create_app, runner_config
from voce.service.db import open_database
from voce.service.jobs import BatchRunner, BatchStore, LeaseLost, LocalExecutor, submit_upload, wait_for
from voce.service.settings import Settings
from voce.service.uploads import ColumnMapping

# 12 rows: hand-computed KPIs below.  NPS answers: 10, 9, 9, 8, 7, 6, 3, 0, 10, (missing), (bad "dieci"), 5
ROWS: list[dict[str, str]] = [  # noqa: E501
    {"id": "r1", "commento": "Consegna velocissima!", "nps": "10", "csat": "5", "data": "2026-01-10", "regione": "nord"},
    {"id": "r2", "commento": "Staff very kind and helpful", "nps": "9", "csat": "5", "data": "2026-01-12", "regione": "sud"},
    {"id": "r3", "commento": "Ottimo prezzo", "nps": "9", "csat": "4", "data": "2026-01-20", "regione": "nord"},
    {"id": "r4", "commento": "The app is ok", "nps": "8", "csat": "4", "data": "2026-02-02", "regione": "sud"},
    {"id": "r5", "commento": "Negozio pulito ma un po' caro", "nps": "7", "csat": "3", "data": "2026-02-05", "regione": "nord"},
    {"id": "r6", "commento": "Delivery was late again", "nps": "6", "csat": "2", "data": "2026-02-10", "regione": "sud"},
    {"id": "r7", "commento": "Il call center non risponde mai", "nps": "3", "csat": "1", "data": "2026-02-15", "regione": "nord"},
    {"id": "r8", "commento": "Rude staff, never again", "nps": "0", "csat": "1", "data": "2026-03-01", "regione": "sud"},
    {"id": "r9", "commento": "Tutto perfetto, grazie!", "nps": "10", "csat": "5", "data": "2026-03-03", "regione": "nord"},
    {"id": "r10", "commento": "Prices went up", "nps": "", "csat": "", "data": "2026-03-04", "regione": "sud"},
    {"id": "r11", "commento": "", "nps": "4", "csat": "2", "data": "2026-03-05", "regione": "nord"},
    {"id": "r12", "commento": "Servizio lento", "nps": "dieci", "csat": "3", "data": "sometime", "regione": "nord"},
]
MAPPING = {"text": "commento", "id": "id", "nps": "nps", "csat": "csat", "date": "data", "segments": ["regione"]}
# scored rows: 10, 9, 9, 8, 7, 6, 3, 0, 10, 4 (r11: no text, but its answer still counts) -> n = 10
# promoters (9-10): r1 r2 r3 r9 = 4; passives (7-8): r4 r5 = 2; detractors (0-6): r6 r7 r8 r11 = 4
EXPECTED_NPS = 0.0  # 100 * (4 - 4) / 10
# CSAT answers: 5 5 4 4 3 2 1 1 5 2 3 -> 11 answers, 4-5: five of them -> 45.45 %
EXPECTED_CSAT = round(100 * 5 / 11, 2)


def _csv_bytes(rows: list[dict[str, str]], delimiter: str = ";", encoding: str = "utf-8-sig") -> bytes:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(rows[0]), delimiter=delimiter)
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue().encode(encoding)


def _settings(tmp: Path, bundle: Path, **kw: Any) -> Settings:
    base: dict[str, Any] = dict(
        encoder_backend="fake", encoder="fake", bundle=bundle, cache_dir=tmp / "cache", data_dir=tmp / "data",
        batch_chunk_rows=4, worker_lease_seconds=30,
    )
    return Settings(**(base | kw))


def _wait(client: TestClient, batch_id: str, timeout: float = 120) -> dict[str, Any]:
    deadline = time.time() + timeout
    while time.time() < deadline:
        st = client.get(f"/v1/batches/{batch_id}").json()
        if st["status"] in ("done", "failed"):
            return st
        time.sleep(0.1)
    raise AssertionError(f"batch never finished: {st}")


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def client(
    request: pytest.FixtureRequest, tiny_bundle_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TestClient]:
    tmp = tmp_path_factory.mktemp(f"batches-{request.param}")
    url = request.getfixturevalue("postgres_url") if request.param == "postgres" else None
    with TestClient(create_app(_settings(tmp, tiny_bundle_dir, database_url=url)), raise_server_exceptions=False) as c:
        while c.get("/ready").status_code != 200:
            time.sleep(0.05)
        yield c


@pytest.fixture(scope="module")
def done_batch(client: TestClient) -> dict[str, Any]:
    r = client.post(
        "/v1/batches", files={"file": ("survey.csv", _csv_bytes(ROWS))}, data={"mapping": json.dumps(MAPPING)},
        headers={"X-Tenant": "acme", "X-API-Key": "secret-key"},
    )
    assert r.status_code == 202, r.text
    st = _wait(client, r.json()["id"])
    assert st["status"] == "done", st
    return st


def test_status_progress_and_tenant(client: TestClient, done_batch: dict[str, Any]) -> None:
    st = done_batch
    assert (st["rows_total"], st["rows_done"], st["rows_error"], st["progress"]) == (12, 12, 1, 1.0)
    assert st["tenant"] == "acme" and st["model_version"] == "tiny-test" and st["attempts"] == 1
    assert st["mapping"]["text"] == "commento"
    listed = client.get("/v1/batches").json()["batches"]
    assert done_batch["id"] in [b["id"] for b in listed]
    store: BatchStore = client.app.state.store  # type: ignore[attr-defined]
    b = store.get(done_batch["id"])
    assert b is not None and b.api_key_hash and b.api_key_hash != "secret-key" and len(b.api_key_hash) == 64


def test_results_in_three_formats(client: TestClient, done_batch: dict[str, Any]) -> None:
    bid = done_batch["id"]
    lines = [json.loads(x) for x in client.get(f"/v1/batches/{bid}/results?format=jsonl").text.splitlines()]
    assert [x["row"] for x in lines] == list(range(12))
    assert [x["id"] for x in lines] == [r["id"] for r in ROWS]
    assert lines[0]["columns"] == ROWS[0] and lines[0]["sentiment"]["label"] in ("positive", "neutral", "negative", "mixed")
    assert lines[10]["error"]["code"] == "EmptyText" and lines[10]["columns"]["nps"] == "4"
    assert any("nps" in w for w in lines[11]["input_warnings"]) and "sentiment" in lines[11]  # bad score: still analysed

    text = client.get(f"/v1/batches/{bid}/results?format=csv").content.decode("utf-8-sig")
    table = list(csv.DictReader(io.StringIO(text)))
    assert len(table) == 12 and table[0]["commento"] == ROWS[0]["commento"] and table[0]["voce_status"] == "ok"
    assert table[10]["voce_status"] == "error" and table[10]["voce_error"].startswith("EmptyText")
    assert float(table[1]["voce_detractor_probability"]) == pytest.approx(lines[1]["detractor"]["probability"])

    r = client.get(f"/v1/batches/{bid}/results?format=xlsx")
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/vnd.openxmlformats")
    ws = openpyxl.load_workbook(io.BytesIO(r.content), read_only=True).worksheets[0]
    sheet = list(ws.iter_rows(values_only=True))
    assert len(sheet) == 13 and sheet[0][:2] == ("id", "commento") and sheet[1][1] == ROWS[0]["commento"]


def test_kpis_match_hand_computation(client: TestClient, done_batch: dict[str, Any]) -> None:
    bid = done_batch["id"]
    k = client.get(f"/v1/batches/{bid}/kpis").json()
    assert k["count"] == 12 and k["analysed"] == 11
    nps = k["nps"]
    assert (nps["promoters"], nps["passives"], nps["detractors"], nps["responses"]) == (4, 2, 4, 10)
    assert nps["value"] == pytest.approx(EXPECTED_NPS)
    # multinomial variance: (p_p + p_d - (p_p - p_d)^2) / n = (0.4 + 0.4 - 0) / 10 = 0.08 -> se 0.2828 -> ±55.44
    assert nps["ci_low"] == pytest.approx(-55.44, abs=0.02) and nps["ci_high"] == pytest.approx(55.44, abs=0.02)
    assert k["csat"]["value"] == pytest.approx(EXPECTED_CSAT, abs=0.01) and k["csat"]["responses"] == 11
    # one analysed row (r10) has no score: its predicted detractor probability is the estimate
    assert k["nps_estimate"]["rows"] == 2 and k["nps_estimate"]["estimated"] is True  # r10 and r12 ("dieci")
    assert k["trend"]["granularity"] in ("day", "week", "month")
    assert sum(p["count"] for p in k["trend"]["periods"]) == 11  # r12's date is unreadable
    north = client.get(f"/v1/batches/{bid}/kpis", params={"segment": "regione:nord"}).json()
    # nord: r1 r3 r5 r7 r9 r11 r12; scored: 10 9 7 3 10 4 -> promoters 3, detractors 2 of 6
    assert north["count"] == 7 and north["nps"]["responses"] == 6
    assert north["nps"]["value"] == pytest.approx(round(100 * (3 - 2) / 6, 2))
    jan = client.get(f"/v1/batches/{bid}/kpis", params={"period": "2026-01"}).json()
    assert jan["count"] == 3 and jan["nps"]["value"] == pytest.approx(100.0)
    assert client.get(f"/v1/batches/{bid}/kpis", params={"period": "March"}).status_code == 422


def test_rows_click_through(client: TestClient, done_batch: dict[str, Any]) -> None:
    bid = done_batch["id"]
    page = client.get(f"/v1/batches/{bid}/rows", params={"limit": 5}).json()
    assert page["total"] == 12 and len(page["rows"]) == 5 and page["rows"][0]["text"] == ROWS[0]["commento"]
    errs = client.get(f"/v1/batches/{bid}/rows", params={"errors": True}).json()
    assert errs["total"] == 1 and errs["rows"][0]["error"]["code"] == "EmptyText"
    found = client.get(f"/v1/batches/{bid}/rows", params={"q": "STAFF"}).json()
    assert {r["id"] for r in found["rows"]} == {"r2", "r8"}
    neg = client.get(f"/v1/batches/{bid}/rows", params={"sentiment": "negative", "limit": 500}).json()
    assert all(r["sentiment"] == "negative" for r in neg["rows"])
    topics = client.get(f"/v1/batches/{bid}/topics").json()
    assert topics["status"] in ("done", "failed") and "topics" in topics


def test_bad_uploads_are_clear_422s(client: TestClient) -> None:
    def post(name: str, data: bytes, mapping: str | None = None) -> Any:
        return client.post("/v1/batches", files={"file": (name, data)}, data={"mapping": mapping} if mapping else {})

    r = post("empty.csv", b"")
    assert r.status_code == 422 and "empty" in r.json()["error"]["message"]
    r = post("x.png", b"\x89PNG\r\n")
    assert r.status_code == 422 and "unsupported" in r.json()["error"]["message"]
    r = post("s.csv", _csv_bytes(ROWS), json.dumps({"text": "comment"}))
    assert r.status_code == 422 and "commento" in r.json()["error"]["message"]  # lists the real columns
    r = post("s.csv", _csv_bytes(ROWS), "{not json")
    assert r.status_code == 422 and "mapping" in r.json()["error"]["message"]
    r = post("s.csv", _csv_bytes(ROWS), json.dumps({"text": "commento", "colour": "x"}))
    assert r.status_code == 422
    r = post("s.csv", b"a,b\n1,2\n")
    assert r.status_code == 422 and "guess" in r.json()["error"]["message"]
    assert client.get("/v1/batches/nope").status_code == 404
    assert client.get("/v1/batches/nope/kpis").json()["error"]["code"] == "NotFound"


def test_preview_guesses_mapping(client: TestClient) -> None:
    data = _csv_bytes(ROWS, delimiter="\t", encoding="utf-16")
    p = client.post("/v1/batches/preview", files={"file": ("s.tsv", data)}).json()
    assert p["columns"] == list(ROWS[0]) and p["delimiter"] == "\t" and len(p["rows"]) == 5
    assert p["guessed_mapping"]["text"] == "commento" and p["guessed_mapping"]["nps"] == "nps"
    assert p["guessed_mapping"]["segments"] == ["regione"]


def test_xlsx_and_jsonl_uploads(client: TestClient) -> None:
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(["Comment", "Score"])
    for i in range(10):
        ws.append([f"Comment number {i}: the delivery was fine", i])
    buf = io.BytesIO()
    wb.save(buf)
    r = client.post("/v1/batches", files={"file": ("q.xlsx", buf.getvalue())})
    assert r.status_code == 202 and r.json()["mapping"]["nps"] == "Score"
    jl = "\n".join(json.dumps({"text": f"riga {i}", "channel": "app"}) for i in range(5)).encode()
    r2 = client.post("/v1/batches", files={"file": ("c.jsonl", jl)})
    assert r2.status_code == 202
    for bid, n in ((r.json()["id"], 10), (r2.json()["id"], 5)):
        st = _wait(client, bid)
        assert st["status"] == "done" and st["rows_done"] == n and st["rows_error"] == 0


# ------------------------------------------------------- restart and leases
class _Crash(BaseException):
    """Stands for the process dying mid-batch (not an Exception: nothing marks the job failed)."""


def _rows_file(tmp: Path, n: int) -> Path:
    path = tmp / "big.csv"
    rows = [{"id": f"x{i}", "commento": f"Commento {i}: consegna {'lenta' if i % 3 else 'veloce'}", "nps": str(i % 11),
             "csat": "", "data": f"2026-0{1 + i % 3}-1{i % 9}", "regione": "nord" if i % 2 else "sud"} for i in range(n)]
    path.write_bytes(_csv_bytes(rows))
    return path


def _submit(store: BatchStore, settings: Settings, src: Path, bid: str) -> None:
    dest = settings.data_dir / "uploads" / bid
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_bytes(src.read_bytes())
    submit_upload(store, dest, filename="big.csv", mapping=ColumnMapping(**MAPPING), batch_id=bid)


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_restart_resumes_without_losing_or_repeating_rows(
    backend: str, request: pytest.FixtureRequest, fake_analyzer: Any, tiny_bundle_dir: Path, tmp_path: Path
) -> None:
    url = request.getfixturevalue("postgres_url") if backend == "postgres" else None
    settings = _settings(tmp_path, tiny_bundle_dir, database_url=url, worker_lease_seconds=1, discovery=False)
    store = BatchStore(open_database(settings.resolved_database_url()))
    src = _rows_file(tmp_path, 50)
    _submit(store, settings, src, f"crash{backend}")
    _submit(store, settings, src, f"clean{backend}")

    def die_after_three_chunks(done: int) -> None:
        if done >= 12:
            raise _Crash

    batch = store.claim("worker-a", 1, batch_id=f"crash{backend}")
    assert batch is not None
    with pytest.raises(_Crash):
        BatchRunner(store, fake_analyzer, "worker-a", runner_config(settings), on_chunk=die_after_three_chunks).run(batch)
    crashed = store.get(f"crash{backend}")
    assert crashed is not None and crashed.status == "running" and crashed.rows_done == 12
    assert store.claim("worker-b", 1, batch_id=f"crash{backend}") is None  # the lease is still fresh
    time.sleep(1.2)  # ... until the dead worker's lease runs out

    ex = LocalExecutor(store, lambda: fake_analyzer, runner_config(settings), name="restarted")
    ex.run_until_idle()  # resumes the crashed batch and runs the clean one (an API worker on the same database may help)
    assert wait_for(lambda: all(store.get(f"{k}{backend}").status == "done" for k in ("crash", "clean")), 60)  # type: ignore[union-attr]
    resumed, clean = store.get(f"crash{backend}"), store.get(f"clean{backend}")
    assert resumed is not None and clean is not None
    assert (resumed.status, resumed.rows_done, resumed.attempts) == ("done", 50, 2)
    got = [(r.row, r.doc_id, r.result) for r in store.iter_rows(f"crash{backend}", columns=("row", "doc_id", "result"))]
    want = [(r.row, r.doc_id, r.result) for r in store.iter_rows(f"clean{backend}", columns=("row", "doc_id", "result"))]
    assert [g[0] for g in got] == list(range(50))  # every row exactly once
    assert got == want  # and identical to an uninterrupted run


def test_a_worker_that_lost_its_lease_cannot_write(fake_analyzer: Any, tiny_bundle_dir: Path, tmp_path: Path) -> None:
    settings = _settings(tmp_path, tiny_bundle_dir, worker_lease_seconds=1)
    store = BatchStore(open_database(settings.resolved_database_url()))
    _submit(store, settings, _rows_file(tmp_path, 8), "lease")
    assert store.claim("slow", 1) is not None
    time.sleep(1.1)
    assert store.claim("fast", 1) is not None  # "slow" looks dead; "fast" takes over
    with pytest.raises(LeaseLost):
        store.commit_chunk("lease", "slow", [], next_row=4)
    store.commit_chunk("lease", "fast", [], next_row=4)
    b = store.get("lease")
    assert b is not None and b.worker_id == "fast" and b.rows_done == 4


def test_concurrent_workers_share_the_queue(fake_analyzer: Any, tiny_bundle_dir: Path, tmp_path: Path) -> None:
    """Three workers, six batches: each batch is run once and completely."""
    settings = _settings(tmp_path, tiny_bundle_dir, discovery=False)
    store = BatchStore(open_database(settings.resolved_database_url()))
    src = _rows_file(tmp_path, 20)
    for i in range(6):
        _submit(store, settings, src, f"q{i}")
    executors = [LocalExecutor(store, lambda: fake_analyzer, runner_config(settings), name=f"w{i}") for i in range(3)]
    threads = [threading.Thread(target=e.run_until_idle) for e in executors]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    for i in range(6):
        b = store.get(f"q{i}")
        assert b is not None and (b.status, b.rows_done, b.attempts) == ("done", 20, 1)
        assert [r.row for r in store.iter_rows(f"q{i}", columns=("row",))] == list(range(20))


# ------------------------------------------------------- hostile and broken input
def test_hostile_cells_nul_nan_formulas_and_unicode_names(client: TestClient) -> None:
    lines = [
        {"text": "=HYPERLINK(\"http://evil\",\"clic\") il servizio è ok", "score": 9},
        {"text": "ciao\u0000 mondo, consegna rapida", "score": float("nan")},
        {"text": "+39 mi hanno richiamato subito", "score": 10, "extra": [float("inf"), "x\u0000"]},
    ]
    body = "\n".join(json.dumps(x) for x in lines).encode()  # json.dumps writes NaN/Infinity, as some tools do
    r = client.post("/v1/batches", files={"file": ("sondaggio “Q1” ✓.jsonl", body)},
                    data={"mapping": json.dumps({"text": "text", "nps": "score"})})
    assert r.status_code == 202, r.text
    st = _wait(client, r.json()["id"])
    assert (st["status"], st["rows_done"], st["rows_error"]) == ("done", 3, 0), st
    bid = st["id"]
    res = client.get(f"/v1/batches/{bid}/results")
    assert res.status_code == 200 and "filename*=UTF-8''" in res.headers["content-disposition"]
    rows = [json.loads(x) for x in res.text.splitlines()]  # strict JSON: no NaN tokens
    assert rows[1]["columns"] == {"text": "ciao mondo, consegna rapida", "score": None}
    table = list(csv.reader(io.StringIO(client.get(f"/v1/batches/{bid}/results?format=csv").content.decode("utf-8-sig"))))
    assert table[1][0].startswith("'=HYPERLINK") and table[3][0].startswith("'+39")  # never a live formula
    ws = openpyxl.load_workbook(io.BytesIO(client.get(f"/v1/batches/{bid}/results?format=xlsx").content)).worksheets[0]
    assert ws["A2"].data_type == "s" and ws["A2"].value.startswith("=HYPERLINK")
    assert st["name"] == "sondaggio “Q1” ✓.jsonl"


def test_missing_upload_fails_clearly_without_internals(
    fake_analyzer: Any, tiny_bundle_dir: Path, tmp_path: Path
) -> None:
    settings = _settings(tmp_path, tiny_bundle_dir, discovery=False)
    store = BatchStore(open_database(settings.resolved_database_url()))
    _submit(store, settings, _rows_file(tmp_path, 8), "gone")
    b = store.get("gone")
    assert b is not None
    Path(b.file_path).unlink()
    LocalExecutor(store, lambda: fake_analyzer, runner_config(settings)).run_until_idle()
    b = store.get("gone")
    assert b is not None and b.status == "failed" and "no longer in the data folder" in (b.error or "")
    assert str(tmp_path) not in (b.error or "")


def test_a_batch_that_keeps_killing_its_worker_stops_being_retried(
    fake_analyzer: Any, tiny_bundle_dir: Path, tmp_path: Path
) -> None:
    settings = _settings(tmp_path, tiny_bundle_dir, discovery=False, worker_lease_seconds=1)
    store = BatchStore(open_database(settings.resolved_database_url()))
    _submit(store, settings, _rows_file(tmp_path, 8), "poison")
    for i in range(3):  # three workers die holding it
        assert store.claim(f"dead-{i}", 1) is not None
        time.sleep(1.1)
    LocalExecutor(store, lambda: fake_analyzer, runner_config(settings)).run_until_idle()
    b = store.get("poison")
    assert b is not None and b.status == "failed" and "3 times" in (b.error or "") and b.attempts == 4


class _SlowAnalyzer:
    """Each chunk takes longer than the lease: only the heartbeat keeps the batch with its worker."""

    def __init__(self, inner: Any, seconds: float) -> None:
        self.inner, self.seconds = inner, seconds
        self.bundle, self.taxonomy, self.encoder, self.config = inner.bundle, inner.taxonomy, inner.encoder, inner.config

    def with_config(self, config: Any) -> _SlowAnalyzer:
        return _SlowAnalyzer(self.inner.with_config(config), self.seconds)

    def analyze_with_embeddings(self, docs: Any) -> Any:
        time.sleep(self.seconds)
        return self.inner.analyze_with_embeddings(docs)


def test_slow_chunks_keep_their_lease_with_two_workers(fake_analyzer: Any, tiny_bundle_dir: Path, tmp_path: Path) -> None:
    settings = _settings(tmp_path, tiny_bundle_dir, discovery=False, worker_lease_seconds=1, batch_chunk_rows=4)
    store = BatchStore(open_database(settings.resolved_database_url()))
    _submit(store, settings, _rows_file(tmp_path, 12), "slow")
    slow = _SlowAnalyzer(fake_analyzer, 1.5)
    executors = [LocalExecutor(store, lambda: slow, runner_config(settings), name=f"w{i}") for i in range(2)]  # type: ignore[arg-type,return-value]
    threads = [threading.Thread(target=e.run_until_idle) for e in executors]
    for t in threads:
        t.start()
        time.sleep(0.2)
    for t in threads:
        t.join(timeout=60)
    b = store.get("slow")
    assert b is not None and (b.status, b.rows_done, b.attempts) == ("done", 12, 1)


def test_a_batch_resumed_by_another_model_version_starts_over(
    fake_analyzer: Any, tiny_bundle_dir: Path, tmp_path: Path
) -> None:
    settings = _settings(tmp_path, tiny_bundle_dir, discovery=False, worker_lease_seconds=1)
    store = BatchStore(open_database(settings.resolved_database_url()))
    _submit(store, settings, _rows_file(tmp_path, 12), "upgrade")
    batch = store.claim("old", 1)
    assert batch is not None

    def die(done: int) -> None:
        if done >= 4:
            raise _Crash

    with pytest.raises(_Crash):
        BatchRunner(store, fake_analyzer, "old", runner_config(settings), on_chunk=die).run(batch)
    store.heartbeat("upgrade", "old", model_version="an-older-model")
    time.sleep(1.1)
    LocalExecutor(store, lambda: fake_analyzer, runner_config(settings)).run_until_idle()
    b = store.get("upgrade")
    assert b is not None and (b.status, b.rows_done, b.model_version) == ("done", 12, "tiny-test")
    assert [r.row for r in store.iter_rows("upgrade", columns=("row",))] == list(range(12))


def test_facts_cache_rereads_only_when_the_batch_moves(monkeypatch: pytest.MonkeyPatch) -> None:
    import types

    from voce.service import batches_api

    calls: list[str] = []
    monkeypatch.setattr(batches_api, "load_facts", lambda store, bid: calls.append(bid) or [bid])
    cache = batches_api.FactsCache(size=2)

    def batch(bid: str, done: int, status: str = "running") -> Any:
        return types.SimpleNamespace(id=bid, status=status, rows_done=done, rows_error=0, finished_at=None)

    store: Any = None
    assert cache.get(store, batch("a", 10)) == ["a"] and cache.get(store, batch("a", 10)) == ["a"]
    assert calls == ["a"]  # same progress: served from memory
    cache.get(store, batch("a", 20))  # rows arrived: read again
    cache.get(store, batch("b", 5))
    cache.get(store, batch("c", 5))  # "a" is evicted (size 2)
    cache.get(store, batch("a", 20))
    assert calls == ["a", "a", "b", "c", "a"]


def test_a_discovered_theme_becomes_a_taxonomy_entry(client: TestClient, done_batch: dict[str, Any]) -> None:
    import yaml
    from sqlalchemy import update

    from voce.models.taxonomy import parse_taxonomy
    from voce.service.db import Batch, BatchRow

    bid = done_batch["id"]
    store: BatchStore = client.app.state.store  # type: ignore[attr-defined]
    theme = {"id": 0, "size": 2, "languages": {"it": 1, "en": 1}, "label": "consegna / delivery",
             "keywords": {"it": ["consegna", "pacco", "corriere"], "en": ["delivery", "late", "parcel"]},
             "representative": [{"index": 0, "text": ROWS[0]["commento"]}]}
    with store.sessions() as s, s.begin():  # as if discovery had run
        s.execute(update(Batch).where(Batch.id == bid).values(discovery={"topics": [theme]}))
        s.execute(update(BatchRow).where(BatchRow.batch_id == bid, BatchRow.row.in_([0, 5])).values(discovered=0))
    r = client.get(f"/v1/batches/{bid}/topics/0/taxonomy-entry")
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/yaml")
    entries = yaml.safe_load(r.text)
    tax = parse_taxonomy({"version": "mine-1", "topics": entries})  # loads as a custom taxonomy
    entry = tax.topics.get(entries[0]["id"])
    assert entry is not None and entry.id.startswith("new_delivery")
    assert entry.names == {"it": "consegna, pacco, corriere", "en": "delivery, late, parcel"}
    assert entry.examples == [ROWS[0]["commento"], ROWS[5]["commento"]]  # representative first, then its other comments
    assert client.get(f"/v1/batches/{bid}/topics/0/taxonomy-entry?format=json").json()["id"] == entry.id
    assert client.get(f"/v1/batches/{bid}/topics/7/taxonomy-entry").status_code == 404


def test_chunked_upload_over_the_limit_is_refused(tiny_bundle_dir: Path, tmp_path: Path) -> None:
    """No Content-Length: the body is counted as it arrives and cut at the limit with a 413."""
    settings = _settings(tmp_path, tiny_bundle_dir, max_upload_bytes=200_000, workers=0)
    boundary = "voceboundary"
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.csv\"\r\n"
            "Content-Type: text/csv\r\n\r\ntext\n").encode()

    def body() -> Iterator[bytes]:
        yield head
        for _ in range(100):  # 1 MB of rows, sent chunked
            yield b"una riga di commento abbastanza lunga\n" * 262
        yield f"\r\n--{boundary}--\r\n".encode()

    with TestClient(create_app(settings), raise_server_exceptions=False) as c:
        r = c.post("/v1/batches", content=body(), headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
        assert r.status_code == 413 and r.json()["error"]["code"] == "PayloadTooLarge"
        assert c.get("/v1/batches").json()["batches"] == []
        small = c.post("/v1/batches", files={"file": ("ok.csv", b"text\nciao\n")})
        assert small.status_code == 202  # below the limit, unaffected
    assert len(list((tmp_path / "data" / "uploads").iterdir())) == 1  # only the accepted upload is on disk


def test_body_limit_stops_reading_at_the_limit() -> None:
    """The middleware itself: the app under it stops receiving once the limit is passed, and the client gets 413."""
    import asyncio

    from voce.service.errors import BodyLimit

    pulled: list[int] = []
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        pulled.append(1)
        return {"type": "http.request", "body": b"x" * 10_000, "more_body": len(pulled) < 100}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def reader_app(scope: Any, rcv: Any, snd: Any) -> None:  # reads everything, like a multipart parser
        while True:
            m = await rcv()
            if m["type"] == "http.disconnect":
                raise RuntimeError("client went away")
            if not m.get("more_body"):
                break
        await snd({"type": "http.response.start", "status": 200, "headers": []})
        await snd({"type": "http.response.body", "body": b"ok"})

    asyncio.run(BodyLimit(reader_app, lambda _p: 200_000)({"type": "http", "path": "/v1/batches"}, receive, send))
    assert sent[0]["status"] == 413 and len(pulled) == 21  # 21 x 10 kB crosses 200 kB: nothing read after that
