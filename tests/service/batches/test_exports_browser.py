"""The dashboard's export buttons in a real browser: 'Download this view' carries the filters in the URL, the
comments drawer's buttons carry its selection, both in the page's language; the files downloaded are read back.

Headless Debian Chromium driven by Playwright against the real app under uvicorn (fake encoder, tiny bundle).
"""
from __future__ import annotations

import csv
import io
import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openpyxl
import pytest

from tests.service.batch_data import MAPPING, ROWS, csv_bytes
from voce.service.app import create_app
from voce.service.settings import Settings

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = [pytest.mark.browser, pytest.mark.slow]


def _require_chromium() -> None:
    if CHROMIUM.exists():
        return
    message = f"needs Debian Chromium at {CHROMIUM} (apt-get install chromium)"
    if os.environ.get("VOCE_REQUIRE_BROWSER") == "1":
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="module")
def served(tiny_bundle_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str, str]]:
    """The app under uvicorn with one analysed ';' upload: its URL, the admin key and the batch id."""
    _require_chromium()
    import uvicorn

    tmp = tmp_path_factory.mktemp("exports-browser")
    settings = Settings(encoder_backend="fake", encoder="fake", bundle=tiny_bundle_dir, cache_dir=tmp / "cache",
                        data_dir=tmp / "data", workers=1)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    server = uvicorn.Server(uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, name="voce-uvicorn-exports", daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 60
        while True:
            try:
                if httpx.get(url + "/ready", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.time() < deadline, "the service never became ready"
            time.sleep(0.1)
        key = (settings.data_dir / "initial-admin-key").read_text().strip()
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=30) as api:
            r = api.post("/v1/batches", files={"file": ("sondaggio.csv", csv_bytes(ROWS))},
                         data={"mapping": json.dumps(MAPPING)})
            assert r.status_code == 202, r.text
            bid = r.json()["id"]
            while api.get(f"/v1/batches/{bid}").json()["status"] not in ("done", "failed"):
                time.sleep(0.1)
            assert api.get(f"/v1/batches/{bid}").json()["status"] == "done"
        yield url, key, bid
    finally:
        server.should_exit = True
        thread.join(timeout=20)


def _download(page: Any, testid: str) -> bytes:
    with page.expect_download() as info:
        page.get_by_test_id(testid).click()
    return Path(info.value.path()).read_bytes()


def test_export_buttons_download_the_view_and_the_drawer(served: tuple[str, str, str], tmp_path: Path) -> None:
    url, key, bid = served
    shots = Path(os.environ.get("VOCE_SCREENSHOTS_DIR") or tmp_path)  # the test run never writes into the tree
    from playwright.sync_api import sync_playwright

    api = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=30)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        context = browser.new_context(accept_downloads=True)
        page = context.new_page()
        page.goto(url + "/ui/signin")
        page.get_by_test_id("signin-key").fill(key)
        page.get_by_test_id("signin-submit").click()
        page.wait_for_url("**/ui/**")
        page.goto(f"{url}/ui/batches/{bid}?lang=it&segment=regione:nord")
        page.get_by_test_id("kpi-nps").wait_for()

        # the current view: the URL's filters, Italian labels, ';' as uploaded
        page.screenshot(path=str(shots / "exports_view.png"))
        assert "Scarica questa vista" in page.get_by_test_id("exports-view").inner_text()
        table = list(csv.DictReader(io.StringIO(_download(page, "export-view-csv").decode("utf-8-sig")), delimiter=";"))
        assert [t["ID"] for t in table] == [r["id"] for r in ROWS if r["regione"] == "nord"]
        assert "Sentiment" in table[0] and "Temi (id)" in table[0]

        # a drawer's list: the view's filters plus the list's own sentiment
        page.evaluate("() => openComments({}, [])")
        page.wait_for_function("() => document.querySelector('[data-testid=comments]').dataset.loading === 'false'")
        page.get_by_test_id("comments-sentiment").select_option("negative")
        page.wait_for_function("() => document.querySelector('[data-testid=comments]').dataset.loading === 'false'")
        page.screenshot(path=str(shots / "exports_drawer.png"))
        wb = openpyxl.load_workbook(io.BytesIO(_download(page, "export-list-xlsx")))
        ids = [row[1] for row in list(wb["Commenti"].iter_rows(values_only=True))[1:]]
        drawer = api.get(f"/v1/batches/{bid}/rows", params={"segment": "regione:nord", "sentiment": "negative",
                                                             "limit": 500}).json()
        assert ids == [r["id"] for r in drawer["rows"]] and ids
        assert wb["Riepilogo"]["B7"].value == len(ids)  # "Righe": the summary counts the same rows
        page.get_by_test_id("comments-close").click()

        # the page's language switched: the export follows it
        page.get_by_test_id("lang-en").click()
        header = _download(page, "export-view-csv").decode("utf-8-sig").splitlines()[0]
        assert header.startswith("Row;ID;") and "Topics (id)" in header
        browser.close()
    api.close()
