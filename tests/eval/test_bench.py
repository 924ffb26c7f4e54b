"""The benchmark harness of issue 14, run small: fake encoder, tiny bundle, a dozen texts, the real service.

What is checked is what the report says about the run, not how fast anything was (timings on a shared CI machine
mean nothing): every contender saw every text once, the request counts follow from the rounds, the ratios are the
quotients of the reported throughputs, the batch analysed every row, the service's memory was read.
"""
from __future__ import annotations

import json
import math
import os
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from voce.eval.bench import (
    BATCH,
    C1,
    C25,
    D1X1,
    D1X8,
    D25X2,
    HEADLINE,
    NAIVE,
    RAW,
    BenchConfig,
    BenchError,
    BenchText,
    draw,
    parse_skip,
    rounds_of,
    run_bench,
)
from voce.service.cli import app

TEXTS = [
    BenchText("Il pacco è arrivato in ritardo e la scatola era danneggiata.", "t", "it"),
    BenchText("Servizio clienti gentilissimo, mi hanno risolto il problema in cinque minuti!", "t", "it"),
    BenchText("The delivery was late and the box was damaged.", "t", "en"),
    BenchText("Great customer support, they fixed my issue in five minutes.", "t", "en"),
    BenchText("Prezzo troppo alto rispetto alla concorrenza; non lo ricomprerei.", "t", "it"),
    BenchText("I can't log into the app since the last update. It keeps crashing, and nobody answers.", "t", "en"),
    BenchText("ok", "t", "it"),
    BenchText("Ho chiamato tre volte il call center ma nessuno sa darmi una risposta chiara sul rimborso. "
              "Pessima esperienza, cambierò operatore appena possibile.", "t", "it"),
    BenchText("Rude staff at the front desk, but the room was spotless.", "t", "en"),
    BenchText("Camera pulitissima, personale disponibile.", "t", "it"),
    BenchText("Flight cancelled again. Unbelievable.", "t", "en"),
    BenchText("Consegna veloce, prodotto come da foto.", "t", "it"),
]
ROUNDS, BATCH_ROWS = 2, 30
HTTP = (D1X1, D1X8, D25X2)


@pytest.fixture(scope="module")
def smoke(tiny_bundle_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Path]:
    """One smoke run through every stage, shared by the tests below: the fake encoder and the tiny bundle (the
    served instance inherits them from the environment), no topic discovery (BERTopic on 30 rows says nothing)."""
    from voce.service.settings import Settings

    work = tmp_path_factory.mktemp("bench")
    with pytest.MonkeyPatch.context() as mp:
        for name, value in {"VOCE_ENCODER_BACKEND": "fake", "VOCE_ENCODER": "fake", "VOCE_BUNDLE": str(tiny_bundle_dir),
                            "VOCE_CACHE_DIR": str(work / "cache"), "VOCE_DISCOVERY": "false"}.items():
            mp.setenv(name, value)
        cfg = BenchConfig(n=len(TEXTS), rounds=ROUNDS, batch_rows=BATCH_ROWS, out=work / "bench" / "bench.json",
                          command="smoke")
        return run_bench(cfg, Settings().analyzer_spec(), texts=TEXTS), cfg.out


def _expected_requests() -> dict[str, int]:
    slices = rounds_of(TEXTS, ROUNDS)
    per_25 = sum(math.ceil(len(s) / 25) for s in slices)
    return {NAIVE: len(TEXTS), RAW: len(slices), C25: per_25, C1: len(TEXTS), D1X1: len(TEXTS), D1X8: len(TEXTS),
            D25X2: per_25}


def test_smoke_run_reports_every_stage_consistently(smoke: tuple[dict[str, Any], Path]) -> None:
    report, out = smoke
    assert json.loads(out.read_text("utf-8")) == report
    md = out.with_suffix(".md").read_text("utf-8")
    rows = report["contenders"]
    assert list(rows) == [NAIVE, RAW, C25, C1, D1X1, D1X8, D25X2, BATCH]
    for key, requests in _expected_requests().items():
        row = rows[key]
        assert f"| {key}:" in md
        assert (row["docs"], row["doc_errors"], row["requests"]) == (len(TEXTS), 0, requests), key
        assert row["docs_per_s"] == pytest.approx(row["docs"] / row["wall_s"], rel=1e-3, abs=0.006), key
        if key != RAW:
            assert row["p50_ms"] <= row["p95_ms"] <= row["p99_ms"], key
    assert rows[RAW]["p50_ms"] is None  # one call per round: no per-request latency to speak of
    for key in HTTP:
        assert rows[key]["status_counts"] == {"200": rows[key]["requests"]} and rows[key]["status_429"] == 0
    for row in rows.values():
        assert row["vs_naive"] == round(row["docs_per_s"] / rows[NAIVE]["docs_per_s"], 3)
        assert row["vs_raw_encoder"] == round(row["docs_per_s"] / rows[RAW]["docs_per_s"], 3)
    for name, num, den in HEADLINE:
        assert report["ratios"][name] == round(rows[num]["docs_per_s"] / rows[den]["docs_per_s"], 3), name


def test_smoke_run_texts_model_batch_and_memory(smoke: tuple[dict[str, Any], Path]) -> None:
    report = smoke[0]
    texts = report["texts"]
    assert texts["count"] == len(TEXTS) and texts["languages"] == dict(Counter(t.language for t in TEXTS))
    assert texts["max_chars"] == max(len(t.text) for t in TEXTS)
    model = report["model"]
    assert model["service"]["encoder"] == model["encoder"] and model["service"]["model_version"] == model["bundle"]
    assert model["naive_vs_raw_min_cosine"] == pytest.approx(1.0, abs=1e-5)  # the same (fake) encoder both ways
    assert not report["config"]["repeat_cache"] and model["analyzer_config"].get("repeat_cache", 0) == 0
    batch = report["batch"]
    assert (batch["status"], batch["rows"], batch["rows_total"], batch["rows_done"], batch["rows_error"]) == (
        "done", BATCH_ROWS, BATCH_ROWS, BATCH_ROWS, 0)
    assert batch["docs_per_s"] == pytest.approx(BATCH_ROWS / batch["submit_to_done_s"], rel=0.01)
    assert report["contenders"][BATCH]["docs_per_s"] == batch["docs_per_s"]
    around = batch["raw_encoder_around"]
    assert report["ratios"]["e/b_around"] == round(
        batch["docs_per_s"] / ((around["before_docs_per_s"] + around["after_docs_per_s"]) / 2), 3)
    memory = report["service_memory"]
    seen = [memory[k]["rss_mb"] for k in ("after_warm_up", "after_run", "after_batch")]
    assert min(seen) > 0 and memory["peak_rss_mb"] >= max(seen)
    env = report["environment"]
    assert env["machine"]["cpu_count"] == os.cpu_count() and "onnxruntime" in env["versions"]
    assert report["config"]["rounds"] == ROUNDS and report["command"] == "smoke"


def test_draw_takes_equal_shares_and_repeats_a_text_only_when_its_source_is_used_up() -> None:
    pool = {"a": [BenchText(f"a{i}", "a", "it") for i in range(50)], "b": [BenchText("b0", "b", "en")],
            "c": [BenchText(f"c{i}", "c", "en") for i in range(10)]}
    drawn = draw(pool, 31, seed=1)
    by_source = Counter(t.source for t in drawn)
    assert by_source == {"a": 11, "b": 10, "c": 10}
    assert len({t.text for t in drawn if t.source == "a"}) == 11  # a has enough: no repeat
    assert len({t.text for t in drawn if t.source == "c"}) == 10
    assert draw(pool, 31, seed=1) == drawn and draw(pool, 31, seed=2) != drawn


def test_rounds_interleave_and_cover_every_text_once() -> None:
    slices = rounds_of(TEXTS, 5)
    assert [t for s in slices for t in s] != TEXTS  # interleaved, not cut in blocks
    assert sorted(t.text for s in slices for t in s) == sorted(t.text for t in TEXTS)
    assert max(map(len, slices)) - min(map(len, slices)) <= 1


def test_unknown_stage_is_refused() -> None:
    assert parse_skip("http, batch") == {"http", "batch"}
    with pytest.raises(BenchError, match="nope"):
        parse_skip("http,nope")


def test_cli_without_the_data_folder_fails_with_a_clear_message(env: Path) -> None:
    r = CliRunner().invoke(app, ["bench", "--data-dir", str(env / "missing"), "--out", str(env / "b.json")])
    assert r.exit_code == 2 and "does not exist" in r.output, r.output
    assert not (env / "b.json").exists()


def test_fast_profile_ratios_keep_fp32_as_the_reference() -> None:
    """With --precision int8, (b) stays the fp32 encoder (the issue's reference) and the profile's own encoder gets
    its row and ratios of its own."""
    from voce.eval.bench import RAW_PROFILE, headline_ratios

    rows = {NAIVE: {"docs_per_s": 25.0}, RAW: {"docs_per_s": 40.0}, RAW_PROFILE: {"docs_per_s": 80.0},
            C25: {"docs_per_s": 72.0}, D25X2: {"docs_per_s": 64.0}, D1X8: {"docs_per_s": 36.0},
            BATCH: {"docs_per_s": 48.0}}
    ratios = headline_ratios(rows)
    assert ratios["d/b"] == 1.6 and ratios["d/a"] == 2.56 and ratios["e/b"] == 1.2
    assert ratios["c/b_profile"] == 0.9 and ratios["d/b_profile"] == 0.8 and ratios["e/b_profile"] == 0.6
    assert "b_raw_encoder_profile" in ratios["definitions"]["d/b_profile"]
    # a run without the profile has none of its ratios
    del rows[RAW_PROFILE]
    assert "d/b_profile" not in headline_ratios(rows)


def test_bench_refuses_an_unknown_precision(env: Path) -> None:
    result = CliRunner().invoke(app, ["bench", "--precision", "int4"])
    assert result.exit_code == 2
    assert "encoder_precision" in result.output and "'fp32' or 'int8'" in result.output
