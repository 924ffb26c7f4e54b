"""The upload page in a real browser, in Italian (issue 17): the guessed mapping of an export with a 'Tipo cliente'
column, the summary of what each role will do, the rows' warnings during and after the analysis, progress that
survives a reload (from the URL, and from the list of running batches), and server messages translated.

Headless Debian Chromium driven by Playwright against the real app under uvicorn, as tests/service/test_web_browser.py.
"""
from __future__ import annotations

import csv
import io
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.service.test_web_browser import _free_port, _require_chromium, browser, screenshots  # noqa: F401 (fixtures)
from voce.service.app import create_app
from voce.service.settings import Settings

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def _export_csv(n: int = 24) -> bytes:
    """Shaped like the issue's export: ';', day-first dates, a 0-10 'Voto' with a few 12s, two empty comments and a
    'Tipo cliente' of Fidelity/Standard (made-up cells, for the columns' shape only)."""
    out = io.StringIO()
    w = csv.writer(out, delimiter=";", lineterminator="\r\n")
    w.writerow(["ID", "Data", "Commento", "Voto", "Tipo cliente"])
    for i in range(n):
        w.writerow([f"R{i + 1}", f"{1 + i % 28:02d}/03/2026",
                    "" if i in (4, 9) else f"Consegna {'lenta' if i % 2 else 'veloce'}, ordine numero {i}",
                    "12" if i % 8 == 0 else str(i % 11), "Fidelity" if i % 2 else "Standard"])
    return out.getvalue().encode("utf-8-sig")


def _serve(tiny_bundle_dir: Path, tmp: Path, workers: int) -> Iterator[tuple[str, str]]:
    _require_chromium()
    import uvicorn

    settings = Settings(encoder_backend="fake", encoder="fake", bundle=tiny_bundle_dir, cache_dir=tmp / "cache",
                        data_dir=tmp / "data", workers=workers)
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, name="voce-uvicorn-upload", daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while True:
        try:
            if httpx.get(url + "/ready", timeout=2).status_code == 200:
                break
        except httpx.TransportError:
            pass
        assert time.time() < deadline, "the service never became ready"
        time.sleep(0.1)
    yield url, (settings.data_dir / "initial-admin-key").read_text().strip()
    server.should_exit = True
    thread.join(timeout=20)


@pytest.fixture(scope="module")
def served(tiny_bundle_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    yield from _serve(tiny_bundle_dir, tmp_path_factory.mktemp("upload-browser"), workers=1)


def _page(browser: Any, url: str, key: str) -> tuple[Any, Any, list[str]]:  # noqa: F811
    context = browser.new_context(viewport={"width": 1300, "height": 1000}, locale="it-IT")
    page = context.new_page()
    page.goto(url + "/ui/signin")
    page.get_by_test_id("signin-key").fill(key)
    page.get_by_test_id("signin-submit").click()
    page.wait_for_url("**/ui/*")
    problems: list[str] = []
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
    return context, page, problems


def test_mapping_summary_warnings_and_reload_in_italian(
    served: tuple[str, str], browser: Any, tmp_path: Path, screenshots: Path  # noqa: F811
) -> None:
    url, key = served
    upload = tmp_path / "sondaggio.csv"
    upload.write_bytes(_export_csv())
    context, page, problems = _page(browser, url, key)
    page.goto(url + "/ui/?lang=it")

    # a server refusal in Italian (its code and parameters), not the English message
    bad = tmp_path / "foto.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n")
    page.get_by_test_id("file-input").set_input_files(str(bad))
    page.get_by_test_id("upload-error").wait_for()
    assert "Tipo di file non supportato «.png»" in page.get_by_test_id("upload-error").inner_text()
    problems.clear()  # the browser logs the refused request (422) as a console error

    page.get_by_test_id("file-input").set_input_files(str(upload))
    page.get_by_test_id("preview-table").locator("th", has_text="Commento").wait_for()
    assert "; (punto e virgola)" in page.get_by_test_id("preview-meta").inner_text()
    # the guess: 'Tipo cliente' is a ticked segment, not the comment/chat kind
    assert page.get_by_test_id("map-kind").input_value() == ""
    assert page.locator("[data-testid=segment-option][value='Tipo cliente']").is_checked()
    summary = page.get_by_test_id("mapping-summary-list")
    assert "Commento → il testo analizzato · 2 righe su 24 non hanno testo" in summary.inner_text()
    assert "3 valori su 24 fuori scala o non interi saranno ignorati" in page.get_by_test_id("summary-nps").inner_text()
    assert "Tipo cliente → segmento" in page.get_by_test_id("summary-segment").inner_text()
    assert "Conteggi sulle prime 24 righe" in page.get_by_test_id("mapping-summary-sample").inner_text()

    page.get_by_test_id("mapping-form").screenshot(path=str(screenshots / "upload-summary.png"))
    # choosing the old mapping says what it would do before anything starts
    page.get_by_test_id("map-kind").select_option("Tipo cliente")
    kind = page.get_by_test_id("summary-kind")
    kind.wait_for()
    assert "24 valori su 24 non sono né l'uno né l'altro" in kind.inner_text()

    page.get_by_test_id("start-analysis").click()
    page.locator("[data-testid=progress][data-status=done]").wait_for(timeout=120_000)
    assert "batch=" in page.url
    notes = page.get_by_test_id("progress-notes")
    notes.wait_for()
    warnings = page.get_by_test_id("notes-warnings").inner_text()
    assert "22 × tipo: «Standard» non è «comment» né «chat»; riga letta come commento" in warnings
    assert "3 × NPS: «12» non è un numero intero da 0 a 10; ignorato" in warnings
    assert "2 × la colonna «Commento» è vuota (righe 5, 10)" in page.get_by_test_id("notes-errors").inner_text()
    assert "worker" not in page.get_by_test_id("progress").inner_text()
    page.get_by_test_id("progress").screenshot(path=str(screenshots / "upload-warnings.png"))

    # the list links every batch to this card again
    bid = page.url.split("batch=")[1].split("&")[0]
    details = page.locator(f"[data-testid=batch-row][data-batch-id='{bid}'] [data-testid=batch-details]")
    assert details.inner_text() == "Avanzamento e avvisi" and f"batch={bid}" in (details.get_attribute("href") or "")
    # a reload keeps the progress card and its warnings (the batch is in the URL)
    page.reload()
    page.locator("[data-testid=progress][data-status=done]").wait_for(timeout=30_000)
    assert "22 ×" in page.get_by_test_id("notes-warnings").inner_text()
    page.get_by_test_id("lang-en").click()
    assert "22 × kind: “Standard” is not “comment” or “chat”" in page.get_by_test_id("notes-warnings").inner_text()
    assert not problems, problems
    context.close()


def test_a_reload_finds_the_running_batch(
    tiny_bundle_dir: Path, tmp_path: Path, browser: Any  # noqa: F811
) -> None:
    """No batch in the URL (a reload of /ui/, another tab): the page follows the tenant's batch still in progress.
    With no in-process worker the batch stays queued, so the page is caught mid-analysis every time."""
    for url, key in _serve(tiny_bundle_dir, tmp_path, workers=0):
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=30) as api:
            r = api.post("/v1/batches", files={"file": ("sondaggio.csv", _export_csv())})
            assert r.status_code == 202, r.text
            bid = r.json()["id"]
        context, page, problems = _page(browser, url, key)
        page.goto(url + "/ui/?lang=it")
        page.locator("[data-testid=progress][data-status=queued]").wait_for(timeout=30_000)
        assert page.get_by_test_id("progress-text").inner_text().startswith("In coda; l'analisi partirà a breve")
        assert f"batch={bid}" in page.url
        assert not problems, problems
        context.close()
