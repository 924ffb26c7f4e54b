"""`voce batch ...` and `voce worker` end to end (fake encoder, tiny bundle): the same service as /v1/batches."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import update
from typer.testing import CliRunner

from tests.service.api.helpers import local_client, sign_in, wait_ready
from voce.service.app import create_app
from voce.service.batches.store import BatchStore
from voce.service.cli import app
from voce.service.db import BatchRow
from voce.service.settings import Settings

runner = CliRunner()


def _read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text("utf-8").splitlines()]


def _survey(path: Path, n: int = 30) -> Path:
    lines = ["id;commento;voto;data;regione"]
    for i in range(n):
        tone = "pessimo, il corriere era in ritardo" if i % 3 == 0 else "ottimo servizio, personale gentile"
        lines.append(f"s{i};Ordine {i}: {tone};{i % 11};0{1 + i % 3}/03/2026;{'nord' if i % 2 else 'sud'}")
    lines.append("s-empty;;5;01/03/2026;nord")
    path.write_text("\n".join(lines) + "\n", encoding="latin-1")
    return path


def test_batch_submit_wait_status_kpis_export(env: Path, monkeypatch: object) -> None:
    import openpyxl

    monkeypatch.setenv("VOCE_DATA_DIR", str(env / "data"))  # type: ignore[attr-defined]
    monkeypatch.setenv("VOCE_DISCOVERY", "false")  # type: ignore[attr-defined]
    src = _survey(env / "survey.csv")
    r = runner.invoke(app, ["batch", "submit", str(src), "--wait"])
    assert r.exit_code == 0, r.output
    bid = r.stdout.strip().splitlines()[0]
    st = json.loads(runner.invoke(app, ["batch", "status", bid]).stdout)
    assert (st["status"], st["rows_total"], st["rows_done"], st["rows_error"]) == ("done", 31, 31, 1)
    assert st["mapping"]["nps"] == "voto" and st["mapping"]["segments"] == ["regione"]  # guessed
    assert bid in runner.invoke(app, ["batch", "list"]).stdout
    k = json.loads(runner.invoke(app, ["batch", "kpis", bid, "--segment", "regione:nord"]).stdout)
    assert k["count"] == 16 and k["nps"]["responses"] == 16
    both = ["--segment", "regione:nord", "--segment", "regione:sud"]
    assert json.loads(runner.invoke(app, ["batch", "kpis", bid, *both]).stdout)["count"] == 31
    cmp = json.loads(runner.invoke(app, ["batch", "compare", bid, "--a-period", "2026-03-01", "--b-period", "2026-03-02",
                                         *both]).stdout)
    assert cmp["batch_a"] == cmp["batch_b"] == bid and (cmp["a"]["count"], cmp["b"]["count"]) == (11, 10)
    assert cmp["b"]["filters"] == {**cmp["a"]["filters"], "period": "2026-03-02"} and "nps" in cmp["kpis"]
    assert runner.invoke(app, ["batch", "compare", bid, "--b-period", "March"]).exit_code == 2
    for fmt in ("jsonl", "csv", "xlsx"):
        out = env / f"res.{fmt}"
        assert runner.invoke(app, ["batch", "export", bid, "-o", str(out)]).exit_code == 0
        assert out.stat().st_size > 0
    assert len(_read(env / "res.jsonl")) == 31
    assert (env / "res.csv").read_text("utf-8-sig").splitlines()[0].startswith("id,commento,voto")
    assert openpyxl.load_workbook(env / "res.xlsx").worksheets[0].max_row == 32
    bad = runner.invoke(app, ["batch", "submit", str(src), "--mapping", '{"text": "nope"}'])
    assert bad.exit_code == 2 and "not in the file" in bad.output


def test_worker_once_processes_the_queue(env: Path, monkeypatch: object) -> None:
    monkeypatch.setenv("VOCE_DATA_DIR", str(env / "data"))  # type: ignore[attr-defined]
    monkeypatch.setenv("VOCE_DISCOVERY", "false")  # type: ignore[attr-defined]
    ids = [runner.invoke(app, ["batch", "submit", str(_survey(env / f"s{i}.csv", 10))]).stdout.strip() for i in range(2)]
    assert all(json.loads(runner.invoke(app, ["batch", "status", b]).stdout)["status"] == "queued" for b in ids)
    r = runner.invoke(app, ["worker", "--once"])
    assert r.exit_code == 0 and "2 batch(es) processed" in r.output
    assert all(json.loads(runner.invoke(app, ["batch", "status", b]).stdout)["status"] == "done" for b in ids)


def test_batch_kpis_name_topics_like_the_api(env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`voce batch kpis` names topics with the configured taxonomy (it used the default one), exactly as the API does."""
    taxonomy = env / "crew.yaml"
    taxonomy.write_text('version: "crew-1"\ntopics:\n  - id: staff\n    names: {it: "Equipaggio", en: "Crew"}\n', "utf-8")
    monkeypatch.setenv("VOCE_DATA_DIR", str(env / "data"))
    monkeypatch.setenv("VOCE_DISCOVERY", "false")
    monkeypatch.setenv("VOCE_TAXONOMY", str(taxonomy))
    r = runner.invoke(app, ["batch", "submit", str(_survey(env / "crew.csv", 6)), "--wait"])
    assert r.exit_code == 0, r.output
    bid = r.stdout.strip().splitlines()[0]
    store = BatchStore.open(Settings().resolved_database_url())
    with store.sessions() as s, s.begin():  # every row mentions the staff topic
        s.execute(update(BatchRow).where(BatchRow.batch_id == bid).values(topics=[["staff", "negative"]]))
        s.execute(update(BatchRow).where(BatchRow.batch_id == bid, BatchRow.row < 2).values(channel="store"))

    cli = json.loads(runner.invoke(app, ["batch", "kpis", bid]).stdout)
    assert [(t["id"], t["label"], t["count"]) for t in cli["topics"]] == [("staff", "Crew", 6)]
    assert [(c["id"], c["label"], c["count"]) for c in cli["by_channel"]] == [("store", "Store", 2)]
    by_store = json.loads(runner.invoke(app, ["batch", "kpis", bid, "--channel", "Store"]).stdout)
    assert (by_store["count"], by_store["filters"]["channel"]) == (2, ["store"])
    with local_client(create_app(Settings(workers=0))) as client:
        wait_ready(client)
        sign_in(client)  # the first admin key is of tenant 'default', as batches submitted through the CLI are
        assert client.get(f"/v1/batches/{bid}/kpis").json() == cli

    missing = runner.invoke(app, ["batch", "kpis", "nope"])
    assert missing.exit_code == 2 and "error: no batch nope" in missing.output
    bad = runner.invoke(app, ["batch", "kpis", bid, "--period", "March"])
    assert bad.exit_code == 2 and "invalid filter" in bad.output


def test_batch_submit_for_a_tenant(env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`voce batch submit --tenant T` files the batch under T: T's keys read it through the API, other tenants' don't."""
    monkeypatch.setenv("VOCE_DATA_DIR", str(env / "data"))
    monkeypatch.setenv("VOCE_DISCOVERY", "false")
    r = runner.invoke(app, ["batch", "submit", str(_survey(env / "acme.csv", 5)), "--tenant", "acme", "--wait"])
    assert r.exit_code == 0, r.output
    bid = r.stdout.strip().splitlines()[0]
    st = json.loads(runner.invoke(app, ["batch", "status", bid]).stdout)
    assert (st["tenant"], st["status"], st["pii_mode"]) == ("acme", "done", "redact")
    assert st["file_deleted_at"] is not None  # the upload is deleted once the batch is done
    keys = {}
    for tenant in ("acme", "other"):
        made = runner.invoke(app, ["keys", "create", "--tenant", tenant, "--scopes", "batches:read"])
        assert made.exit_code == 0, made.output
        keys[tenant] = made.stdout.strip().splitlines()[-1]
    with local_client(create_app(Settings(workers=0))) as client:
        wait_ready(client)
        own = client.get(f"/v1/batches/{bid}", headers={"Authorization": f"Bearer {keys['acme']}"})
        assert own.status_code == 200 and own.json()["tenant"] == "acme"
        assert client.get(f"/v1/batches/{bid}", headers={"Authorization": f"Bearer {keys['other']}"}).status_code == 404
