"""The web UI without a browser: routes, content types, caching, safe static paths, offline-only assets, labels."""
from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from voce.service import web
from voce.service.app import create_app
from voce.service.settings import Settings

#: the files we wrote (the vendored Chart.js is checked separately)
OWN_ASSETS = sorted(
    [p for p in web.STATIC_DIR.glob("*") if p.is_file()] + sorted(web.TEMPLATES_DIR.glob("*.html"))
)
#: URLs that are names, not places to fetch: the SVG namespace
ALLOWED_URLS = {"http://www.w3.org/2000/svg"}
URL = re.compile(r"""(?:https?:)?//[A-Za-z0-9.-]+\.[A-Za-z]{2,}[^\s"'<>)]*""")


@pytest.fixture(scope="module")
def client(tiny_bundle_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    tmp = tmp_path_factory.mktemp("web")
    settings = Settings(
        encoder_backend="fake", encoder="fake", bundle=tiny_bundle_dir, cache_dir=tmp / "cache", data_dir=tmp / "data",
        workers=0,  # batches stay queued: these tests only need them to exist
    )
    with TestClient(create_app(settings), raise_server_exceptions=False) as c:
        deadline = time.time() + 60
        while c.get("/ready").status_code != 200:
            assert time.time() < deadline, "service never became ready"
            time.sleep(0.05)
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
    assert b"import" not in r.content and b"root:" not in r.content


def test_static_lookup_stays_inside_the_folder() -> None:
    for bad in ("../web.py", "vendor/../../web.py", "/etc/passwd", "..", ".", "", "vendor/", "a\\..\\web.py",
                "../templates/upload.html", "vendor/chart.js.LICENSE.md/../../web.py"):
        assert web._static(bad) is None, bad
    assert web._static("vendor/chart.umd.min.js") is not None


def test_own_assets_reference_no_other_host() -> None:
    """Offline: nothing we wrote points the browser at another host (no CDN, no web fonts)."""
    assert OWN_ASSETS
    for path in OWN_ASSETS:
        found = set(URL.findall(path.read_text(encoding="utf-8"))) - ALLOWED_URLS
        assert not found, f"{path.name} references {found}"


def test_served_pages_reference_no_other_host(client: TestClient) -> None:
    for path in ("/ui/", "/ui/batches/nope"):
        found = set(URL.findall(client.get(path).text)) - ALLOWED_URLS
        assert not found, (path, found)


def test_vendored_chart_js_is_licensed_and_fetches_nothing() -> None:
    vendor = web.STATIC_DIR / "vendor"
    js = (vendor / "chart.umd.min.js").read_text(encoding="utf-8")
    assert js.startswith("/*!\n * Chart.js v4.")
    assert "MIT License" in (vendor / "chart.js.LICENSE.md").read_text(encoding="utf-8")
    # its only URLs are the project pages in licence comments, never loaded
    assert set(re.findall(r"https?://[^\s\"')]+", js)) <= {
        "https://www.chartjs.org", "https://github.com/kurkle/color#readme"
    }


def _label_keys(js: str, lang: str) -> set[str]:
    block = re.search(rf"^  {lang}: \{{\n(.*?)^  \}},", js, re.S | re.M)
    assert block, lang
    return set(re.findall(r'^    "([\w.]+)":', block.group(1), re.M))


def test_every_label_exists_in_english_and_italian() -> None:
    i18n = (web.STATIC_DIR / "i18n.js").read_text(encoding="utf-8")
    en, it = _label_keys(i18n, "en"), _label_keys(i18n, "it")
    assert en and en == it, {"missing in it": en - it, "missing in en": it - en}
    used: set[str] = set()
    for page in web.TEMPLATES_DIR.glob("*.html"):
        used |= set(re.findall(r'data-i18n="([\w.]+)"', page.read_text(encoding="utf-8")))
    for script in web.STATIC_DIR.glob("*.js"):
        text = script.read_text(encoding="utf-8")
        used |= set(re.findall(r'\bt\("([\w.]+)"\s*[,)]', text))
        used |= set(re.findall(r'i18n: "([\w.]+)"\s*[,}]', text))
    # keys built at run time from API values
    used |= {f"status.{s}" for s in ("queued", "running", "done", "failed")}
    used |= {f"phase.{p}" for p in ("reading", "analysing", "discovering")}
    used |= {f"sentiment.{s}" for s in ("positive", "neutral", "mixed", "negative")}
    used |= {f"gran.{g}" for g in ("auto", "day", "week", "month")}
    used |= {f"role.{r}{h}" for r in ("text", "id", "date", "channel", "nps", "csat", "ces", "kind", "language")
             for h in ("", ".help")}
    used |= {"themes.keywords_it", "themes.keywords_en"}
    assert used - en == set()
