"""The page routes through the real app: redirects, content types, CSP, caching, safe static paths, 404 pages."""
from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.service.api.helpers import local_client, sign_in
from tests.service.test_web import ALLOWED_URLS, URL
from voce.service import web
from voce.service.app import create_app
from voce.service.settings import Settings


@pytest.fixture(scope="module")
def client(tiny_bundle_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    tmp = tmp_path_factory.mktemp("web")
    settings = Settings(
        encoder_backend="fake", encoder="fake", bundle=tiny_bundle_dir, cache_dir=tmp / "cache", data_dir=tmp / "data",
        workers=0,  # batches stay queued: these tests only need them to exist
    )
    with local_client(create_app(settings), raise_server_exceptions=False) as c:
        deadline = time.time() + 60
        while c.get("/ready").status_code != 200:
            assert time.time() < deadline, "service never became ready"
            time.sleep(0.05)
        sign_in(c)  # the pages accept a key as well as the session cookie (tests/service/auth sign in through the form)
        yield c


def test_root_redirects_to_the_ui(client: TestClient) -> None:
    for path in ("/", "/ui"):
        r = client.get(path, follow_redirects=False)
        assert r.status_code in (307, 308) and r.headers["location"] == "/ui/"
    assert client.get("/").url.path == "/ui/"


def test_upload_page(client: TestClient) -> None:
    r = client.get("/ui/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    csp = r.headers["content-security-policy"]
    assert "default-src 'self'" in csp and "connect-src 'self'" in csp and "script-src 'self'" in csp
    assert r.headers["x-content-type-options"] == "nosniff"
    html = r.text
    for testid in ("file-input", "preview-table", "mapping-form", "progress-bar", "batch-list", "lang-toggle"):
        assert f'data-testid="{testid}"' in html
    version = web.asset_version()
    assert f"/ui/static/upload.js?v={version}" in html and f"/ui/static/voce.css?v={version}" in html
    assert "$" not in html  # every template placeholder was filled


def test_dashboard_page_for_a_batch(client: TestClient) -> None:
    created = client.post(
        "/v1/batches", files={"file": ("fb.csv", b"commento;voto\nConsegna in ritardo;3\n")},
        data={"mapping": '{"text": "commento", "nps": "voto"}'},
    )
    assert created.status_code == 202, created.text
    batch_id = created.json()["id"]
    r = client.get(f"/ui/batches/{batch_id}")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert f'data-batch-id="{batch_id}"' in r.text
    for testid in ("kpi-tiles", "chart-trend", "chart-drivers", "chart-touchpoints", "heatmap", "themes", "filters",
                   "comments", "export-csv"):
        assert f'data-testid="{testid}"' in r.text
    assert "/ui/static/vendor/chart.umd.min.js?v=" in r.text
    assert "content-security-policy" in r.headers


def test_unknown_batch_is_a_404_page_with_the_id_escaped(client: TestClient) -> None:
    r = client.get("/ui/batches/0123456789abcdef0123456789abcdef")
    assert r.status_code == 404 and 'data-testid="not-found"' in r.text
    r = client.get("/ui/batches/%3Cscript%3Ealert(1)%3C%2Fscript%3E")
    assert r.status_code == 404 and "<script>alert" not in r.text


@pytest.mark.parametrize(
    ("path", "content_type"),
    [
        ("voce.css", "text/css"),
        ("i18n.js", "text/javascript"),
        ("common.js", "text/javascript"),
        ("upload.js", "text/javascript"),
        ("dashboard.js", "text/javascript"),
        ("favicon.svg", "image/svg+xml"),
        ("vendor/chart.umd.min.js", "text/javascript"),
    ],
)
def test_static_assets(client: TestClient, path: str, content_type: str) -> None:
    r = client.get(f"/ui/static/{path}")
    assert r.status_code == 200, path
    assert r.headers["content-type"].startswith(content_type)
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.content == (web.STATIC_DIR / path).read_bytes()
    assert r.headers["cache-control"] == "public, max-age=300"
    # a page's ?v= stamp changes with the assets, so stamped requests may be cached for good
    stamped = client.get(f"/ui/static/{path}?v={web.asset_version()}")
    assert "immutable" in stamped.headers["cache-control"]
    again = client.get(f"/ui/static/{path}", headers={"If-None-Match": r.headers["etag"]})
    assert again.status_code == 304 and not again.content


@pytest.mark.parametrize(
    "path",
    [
        "/ui/static/%2e%2e/web.py",
        "/ui/static/%2E%2E/%2E%2E/pyproject.toml",
        "/ui/static/..%2fweb.py",
        "/ui/static/vendor/%2e%2e/%2e%2e/app.py",
        "/ui/static/%2fetc%2fpasswd",
        "/ui/static//etc/passwd",
        "/ui/static/..%5cweb.py",
        "/ui/static/vendor",
        "/ui/static/vendor/",
        "/ui/static/",
        "/ui/static/.gitignore",
        "/ui/static/nope.js",
        "/ui/static/voce.css%00.js",
    ],
)
def test_static_route_refuses_traversal_and_non_assets(client: TestClient, path: str) -> None:
    r = client.get(path)
    assert r.status_code == 404, (path, r.status_code)
    assert r.json()["error"]["code"] == "NotFound"  # the one envelope, as everywhere
    assert b"import" not in r.content and b"root:" not in r.content


def test_served_pages_reference_no_other_host(client: TestClient) -> None:
    for path in ("/ui/", "/ui/batches/nope"):
        found = set(URL.findall(client.get(path).text)) - ALLOWED_URLS
        assert not found, (path, found)
