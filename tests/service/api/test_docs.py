"""``/docs`` loads nothing from another host: vendored assets, our own init script, a strict CSP; and in a real
browser that refuses every other host, Swagger UI still renders the API."""
from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from voce.service.api.docs import ASSETS, DOCS_CSP
from voce.service.app import create_app
from voce.service.settings import Settings

CHROMIUM = Path("/usr/bin/chromium")


class _Refs(HTMLParser):
    """Every URL an HTML page makes the browser load, and the text of inline scripts."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.inline_scripts: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name in ("src", "href", "spec-url", "data-openapi-url", "action", "srcset") and value:
                self.urls.append(value)
        self._in_script = tag == "script"

    def handle_endtag(self, tag: str) -> None:
        self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script and data.strip():
            self.inline_scripts.append(data)


def _refs(html: str) -> _Refs:
    parser = _Refs()
    parser.feed(html)
    return parser


def test_the_docs_page_references_no_external_url(client: TestClient) -> None:
    r = client.get("/docs", headers={"Authorization": ""})  # public: no key needed
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert r.headers["content-security-policy"] == DOCS_CSP
    assert "script-src 'self';" in DOCS_CSP and "connect-src 'self';" in DOCS_CSP
    refs = _refs(r.text)
    assert refs.urls, "the page loads nothing?"
    assert refs.inline_scripts == []  # allowed by the CSP only from files
    for url in refs.urls:
        assert url.startswith("/") and not url.startswith("//"), url
        assert "://" not in url, url
    for word in ("cdn.", "jsdelivr", "unpkg", "googleapis", "tiangolo.com", "http://", "https://"):
        assert word not in r.text, word
    for url in refs.urls:
        asset = client.get(url, headers={"Authorization": ""})
        assert asset.status_code == 200, url
        assert asset.headers["x-content-type-options"] == "nosniff"
        if url.startswith("/docs/static/"):
            name = url.split("?")[0].rsplit("/", 1)[1]
            assert asset.headers["content-type"] == ASSETS[name][1]
            assert "max-age=31536000" in asset.headers["cache-control"]  # stamped with the current ?v=


def test_swagger_ui_is_started_without_the_online_validator(client: TestClient) -> None:
    js = client.get("/docs/static/swagger-init.js").text
    assert "validatorUrl: null" in js
    assert 'url: root.getAttribute("data-openapi-url")' in js


def test_only_the_listed_assets_are_served(client: TestClient) -> None:
    for name in ASSETS:
        r = client.get(f"/docs/static/{name}")
        assert r.status_code == 200 and r.content, name
        assert client.get(f"/docs/static/{name}", headers={"if-none-match": r.headers["etag"]}).status_code == 304
    for bad in ("nope.js", "..%2F..%2Fpyproject.toml", "swagger-ui-bundle.js.map", "%2e%2e", "README.md"):
        r = client.get(f"/docs/static/{bad}")
        assert r.status_code == 404, bad
        assert r.json()["error"]["code"] == "NotFound"
    assert client.get("/docs/oauth2-redirect").status_code == 404  # FastAPI's pages are not mounted
    assert client.get("/redoc").status_code == 404


def test_the_assets_come_with_their_licences(client: TestClient) -> None:
    import fastapi_offline

    notes = (Path(__file__).parents[3] / "service" / "static" / "docs" / "README.md").read_text("utf-8")
    for name in ASSETS:
        assert f"`{name}`" in notes, name
    dist = list(Path(fastapi_offline.__file__).resolve().parents[1].glob("fastapi_offline-*.dist-info"))
    assert dist and any((d / "licenses" / "LICENSE").exists() or (d / "LICENSE").exists() for d in dist)


# ------------------------------------------------------------------ in a browser that reaches no other host
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def served(tiny_bundle_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if not CHROMIUM.exists():
        message = f"needs Debian Chromium at {CHROMIUM} (apt-get install chromium)"
        if os.environ.get("VOCE_REQUIRE_BROWSER") == "1":
            pytest.fail(message)
        pytest.skip(message)
    import uvicorn

    tmp = tmp_path_factory.mktemp("docs-browser")
    settings = Settings(encoder_backend="fake", encoder="fake", bundle=tiny_bundle_dir, cache_dir=tmp / "cache",
                        data_dir=tmp / "data", workers=0)
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, name="voce-docs-uvicorn", daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while True:
        try:
            if httpx.get(url + "/health", timeout=2).status_code == 200:
                break
        except httpx.TransportError:
            pass
        assert time.time() < deadline, "the service never answered"
        time.sleep(0.1)
    yield url
    server.should_exit = True
    thread.join(timeout=20)


def _open_offline(browser: Any, url: str) -> tuple[Any, list[str], list[str]]:
    """A page whose requests to any other origin are refused (and recorded), with its console errors."""
    page = browser.new_page()
    elsewhere: list[str] = []
    errors: list[str] = []

    def gate(route: Any) -> None:
        if route.request.url.startswith(url + "/") or route.request.url.startswith(("data:", "blob:")):
            route.continue_()
        else:
            elsewhere.append(route.request.url)
            route.abort()

    page.route("**/*", gate)
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    return page, elsewhere, errors


@pytest.mark.browser
@pytest.mark.slow
def test_swagger_ui_renders_offline_in_a_browser(served: str) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=str(CHROMIUM),
            args=["--no-sandbox", "--disable-background-networking", "--disable-component-update"],
        )
        try:
            page, elsewhere, errors = _open_offline(browser, served)
            page.goto(served + "/docs")
            page.locator(".opblock-summary-path", has_text="/v1/analyze").first.wait_for(timeout=30_000)
            paths = page.locator(".opblock-summary-path").all_inner_texts()
            assert "/v1/batches/{batch_id}" in [t.replace("\u200b", "") for t in paths]
            assert page.locator(".swagger-ui .info .title").inner_text().startswith("Voce")
            assert elsewhere == [] and errors == [], (elsewhere, errors)
            # an operation opens and shows its declared error statuses (the envelope), all from this origin
            page.locator(".opblock-summary-path", has_text="/v1/analyze").first.click()
            page.locator(".responses-table .response-col_status", has_text="422").first.wait_for(timeout=30_000)
            statuses = page.locator(".responses-table .response-col_status").all_inner_texts()
            assert {"401", "413", "422", "429", "503"} <= {s.strip() for s in statuses}, statuses
            assert elsewhere == [] and errors == [], (elsewhere, errors)
        finally:
            browser.close()
