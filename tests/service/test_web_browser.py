"""The web UI in a real browser: upload a CSV, follow the progress, read the dashboard, open the comments.

Headless Debian Chromium (``apt-get install chromium``) driven by Playwright against the real app served by
uvicorn (fake encoder, tiny bundle, one in-process worker).  Screenshots land in the test's temporary folder, so a
test run never rewrites tracked files; to refresh the README's on purpose, point ``VOCE_SCREENSHOTS_DIR`` at
``reports/screenshots``.
"""
from __future__ import annotations

import csv
import datetime as dt
import io
import os
import random
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from voce.service.app import create_app
from voce.service.settings import Settings

CHROMIUM = Path("/usr/bin/chromium")

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def _require_chromium() -> None:
    """Skip without Chromium, unless ``VOCE_REQUIRE_BROWSER=1`` (CI sets it: there, no browser is a failure)."""
    if CHROMIUM.exists():
        return
    message = f"needs Debian Chromium at {CHROMIUM} (apt-get install chromium)"
    if os.environ.get("VOCE_REQUIRE_BROWSER") == "1":
        pytest.fail(message)
    pytest.skip(message)

# ------------------------------------------------------------------ the upload
_COMMENTS: dict[str, dict[str, list[tuple[str, bool]]]] = {
    # theme -> language -> (comment, is it praise?)
    "delivery": {
        "it": [("Il pacco è arrivato in ritardo di una settimana.", False), ("Consegna velocissima, corriere gentile.", True),
               ("Il corriere ha lasciato il pacco sotto la pioggia.", False)],
        "en": [("The parcel arrived a week late.", False), ("Fast delivery, the courier was polite.", True),
               ("The courier left my package in the rain.", False)],
    },
    "staff": {
        "it": [("Il personale è stato gentilissimo e disponibile.", True), ("Personale scortese e maleducato in negozio.", False),
               ("La commessa mi ha aiutato con pazienza.", True)],
        "en": [("The staff were friendly and helpful.", True), ("Rude staff at the store.", False),
               ("The shop assistant was very patient.", True)],
    },
    "price": {
        "it": [("Prezzo troppo alto per quello che offre.", False), ("Ottimo rapporto qualità prezzo.", True),
               ("Le spese di spedizione sono care.", False)],
        "en": [("Way overpriced, not worth the money.", False), ("Great value for money.", True),
               ("Shipping costs are too high.", False)],
    },
    "app": {
        "it": [("L'app si blocca ogni volta che pago.", False), ("L'app è comoda e veloce.", True),
               ("Non riesco ad accedere all'app dopo l'aggiornamento.", False)],
        "en": [("The app crashes every time I pay.", False), ("The app is easy and quick.", True),
               ("I cannot log into the app since the update.", False)],
    },
    "call_center": {
        "it": [("Il call center mi ha lasciato in attesa 40 minuti.", False),
               ("L'operatore al telefono ha risolto subito.", True),
               ("Ho chiamato tre volte il servizio clienti senza risposta.", False)],
        "en": [("The call center kept me on hold for 40 minutes.", False), ("The agent on the phone fixed it at once.", True),
               ("I called customer service three times, no answer.", False)],
    },
}
_CHANNEL = {"delivery": "web", "staff": "negozio", "price": "web", "app": "app", "call_center": "telefono"}
#: customer text is untrusted: this must show up as text, never as markup
HOSTILE = 'Prezzo alto <img src=x onerror="window.__pwned=1"> & <b>rude</b> staff'


def feedback_csv(n: int = 300, seed: int = 7) -> bytes:
    """A survey export as an Italian CX team would have it: ``;``-separated, day-first dates, some blank comments."""
    rng = random.Random(seed)
    out = io.StringIO()
    w = csv.writer(out, delimiter=";", lineterminator="\r\n")
    w.writerow(["id", "data", "commento", "voto_nps", "canale", "regione"])
    start = dt.date(2026, 1, 5)
    for i in range(n):
        theme = rng.choice(list(_COMMENTS))
        lang = "it" if rng.random() < 0.6 else "en"
        text, good = rng.choice(_COMMENTS[theme][lang])
        if rng.random() < 0.3:
            extra, extra_good = rng.choice(_COMMENTS[rng.choice(list(_COMMENTS))][lang])
            text, good = f"{text} {extra}", good and extra_good
        # scores drift down in the last month, so the trend has something to show
        late = i > n * 2 // 3
        nps = rng.randint(8, 10) if good and not (late and rng.random() < 0.5) else rng.randint(0, 7 if not late else 5)
        if i % 37 == 5:
            text = ""  # blank answers happen; they become error rows
        if i == 42:
            text = HOSTILE
        day = start + dt.timedelta(days=i * 90 // n)
        w.writerow([f"R{i:04d}", day.strftime("%d/%m/%Y"), text, "" if i % 11 == 3 else nps, _CHANNEL[theme],
                    rng.choice(["Nord", "Centro", "Sud"])])
    return out.getvalue().encode("utf-8")


# ------------------------------------------------------------------ fixtures
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def service(tiny_bundle_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """The real app under uvicorn in a background thread (fake encoder, tiny bundle, one worker): its URL and data
    folder (where the first start keeps its admin key)."""
    _require_chromium()  # before starting anything
    import uvicorn

    tmp = tmp_path_factory.mktemp("web-browser")
    settings = Settings(
        encoder_backend="fake", encoder="fake", bundle=tiny_bundle_dir, cache_dir=tmp / "cache", data_dir=tmp / "data",
        workers=1,
    )
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, name="voce-uvicorn", daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while True:
        try:
            if httpx.get(url + "/ready", timeout=2).status_code == 200:
                break
        except httpx.TransportError:
            pass
        if time.time() > deadline:
            server.should_exit = True
            raise AssertionError("the service never became ready")
        time.sleep(0.1)
    yield url, settings.data_dir
    server.should_exit = True
    thread.join(timeout=20)


@pytest.fixture(scope="module")
def base_url(service: tuple[str, Path]) -> str:
    return service[0]


@pytest.fixture(scope="module")
def admin_key(service: tuple[str, Path]) -> str:
    """The admin key the first start printed (and kept in <data_dir>/initial-admin-key)."""
    return (service[1] / "initial-admin-key").read_text().strip()


@pytest.fixture(scope="module")
def api(base_url: str, admin_key: str) -> Iterator[httpx.Client]:
    """The API as a script would call it: the same key, sent as a bearer token."""
    with httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {admin_key}"}, timeout=30) as client:
        yield client


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    _require_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        yield b
        b.close()


@pytest.fixture()
def screenshots(tmp_path: Path) -> Path:
    """Where the screenshots go: ``$VOCE_SCREENSHOTS_DIR`` when set (refreshing the README's), else a temporary folder."""
    configured = os.environ.get("VOCE_SCREENSHOTS_DIR")
    folder = Path(configured) if configured else tmp_path / "screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _shot(page: Any, folder: Path, name: str, full_page: bool = False) -> None:
    page.screenshot(path=str(folder / name), full_page=full_page)


# ------------------------------------------------------------------ the steps
def _sign_in(page: Any, context: Any, base_url: str, key: str) -> None:
    """The page asks for a key first; a wrong one is refused, the right one sets an HttpOnly, SameSite=Strict
    session cookie and leads back to the page that asked."""
    page.goto(base_url + "/ui/?lang=en")
    page.wait_for_url("**/ui/signin?next=*")
    page.get_by_test_id("signin-key").fill("voce_" + "x" * 43)
    page.get_by_test_id("signin-submit").click()
    assert "unknown or has been revoked" in page.get_by_test_id("signin-error").inner_text()
    page.get_by_test_id("signin-key").fill(key)
    page.get_by_test_id("signin-submit").click()
    page.wait_for_url("**/ui/?lang=en")
    session = next(c for c in context.cookies() if c["name"] == "voce_session")
    assert session["httpOnly"] and session["sameSite"] == "Strict" and not session["secure"]  # http: not Secure
    assert key not in session["value"] and "default" in page.get_by_test_id("session-who").inner_text()
    assert page.evaluate("() => document.cookie").find("voce_session") < 0  # HttpOnly: no script can read it


def _sign_out(page: Any, base_url: str) -> None:
    """Sign out: the cookie is gone and the pages ask for a key again."""
    page.get_by_test_id("signout").click()
    page.wait_for_url("**/ui/signin")
    page.goto(base_url + "/ui/")
    page.wait_for_url("**/ui/signin?next=*")


def _upload_with_preview(page: Any, base_url: str, upload: Path, shots: Path) -> None:
    """Upload page: the preview and the guessed mapping."""
    page.goto(base_url + "/ui/?lang=en")
    page.get_by_test_id("file-input").set_input_files(str(upload))
    page.get_by_test_id("preview-table").locator("th", has_text="commento").wait_for()
    assert "(semicolon)" in page.get_by_test_id("preview-meta").inner_text()
    assert page.get_by_test_id("preview-table").locator("tbody tr").count() == 5
    assert page.get_by_test_id("map-text").input_value() == "commento"
    assert page.get_by_test_id("map-nps").input_value() == "voto_nps"
    assert page.get_by_test_id("map-date").input_value() == "data"
    assert page.get_by_test_id("map-channel").input_value() == "canale"
    assert page.locator("[data-testid=segment-option][value=regione]").is_checked()
    assert page.get_by_test_id("dayfirst").is_checked()
    assert page.get_by_test_id("pii-mode").input_value() == ""  # the deployment's default unless chosen
    page.get_by_test_id("pii-mode").select_option("mask")
    _shot(page, shots, "upload.png", full_page=True)


def _follow_progress(page: Any, shots: Path) -> str:
    """Start the analysis and follow the progress bar to the end; returns the batch id."""
    page.get_by_test_id("start-analysis").click()
    page.wait_for_function(
        """() => {
            const box = document.querySelector('[data-testid=progress]');
            const pct = Number(document.querySelector('[data-testid=progress-bar]').getAttribute('aria-valuenow'));
            return box.dataset.status === 'done' || (box.dataset.status === 'running' && pct > 0);
        }""",
        timeout=30_000,
    )
    page.wait_for_timeout(500)  # the bar animates its width
    _shot(page, shots, "progress.png")
    page.locator("[data-testid=progress][data-status=done]").wait_for(timeout=120_000)
    assert page.get_by_test_id("progress-bar").get_attribute("aria-valuenow") == "100"
    assert "300" in page.get_by_test_id("progress-text").inner_text()
    row = page.locator("[data-testid=batch-row][data-status=done]")
    row.first.wait_for()
    batch_id = row.first.get_attribute("data-batch-id")
    assert batch_id
    return batch_id


def _dashboard(page: Any, api: httpx.Client, batch_id: str, shots: Path) -> None:
    """The dashboard: charts drawn, tiles equal to the API's KPIs."""
    page.get_by_test_id("open-dashboard").click()
    page.wait_for_url(f"**/ui/batches/{batch_id}**")
    page.locator("body[data-ready=true]").wait_for()
    page.get_by_test_id("heatmap-table").wait_for()
    page.get_by_test_id("theme").first.wait_for()
    charts = page.evaluate(
        """() => ['chart-trend', 'chart-drivers', 'chart-touchpoints', 'chart-channels'].map((id) => {
            const canvas = document.getElementById(id);
            const chart = Chart.getChart(canvas);
            return {id, chart: !!chart, width: canvas.width, height: canvas.height,
                    points: chart ? Math.max(...chart.data.datasets.map((d) => d.data.filter((v) => v !== null).length)) : 0};
        })"""
    )
    for c in charts:
        assert c["chart"] and c["width"] > 100 and c["height"] > 100 and c["points"] > 0, c

    kpis = api.get(f"/v1/batches/{batch_id}/kpis", timeout=30).json()
    nps = kpis["nps"]["value"]
    tile = page.get_by_test_id("kpi-nps-value")
    assert float(tile.get_attribute("data-value") or "nan") == nps
    assert float(tile.inner_text().replace("−", "-").replace(",", ".")) == pytest.approx(nps, abs=0.051)
    assert page.get_by_test_id("kpi-count-value").get_attribute("data-value") == str(kpis["count"])
    if kpis["nps_estimate"]:
        assert "estimate" in page.get_by_test_id("kpi-nps-estimate").inner_text().lower()
    assert page.get_by_test_id("heat-cell").count() > 0
    page.wait_for_timeout(400)  # let the chart animations settle for the screenshot
    _shot(page, shots, "dashboard.png", full_page=True)


def _strongest_driver_comments(page: Any, api: httpx.Client, batch_id: str, shots: Path) -> None:
    """Click the strongest driver bar: its comments, evidence highlighted."""
    target = page.evaluate(
        """() => {
            const chart = Chart.getChart(document.getElementById('chart-drivers'));
            const values = chart.data.datasets[0].data;
            let best = 0;
            values.forEach((v, i) => { if (Math.abs(v) > Math.abs(values[best])) best = i; });
            const bar = chart.getDatasetMeta(0).data[best].getProps(['x', 'y', 'base'], true);
            return {x: (bar.x + bar.base) / 2, y: bar.y, topic: chart.canvas.dataset.topics.split(',')[best]};
        }"""
    )
    canvas = page.get_by_test_id("chart-drivers")
    canvas.scroll_into_view_if_needed()
    box = canvas.bounding_box()
    assert box is not None
    page.mouse.click(box["x"] + target["x"], box["y"] + target["y"])
    drawer = page.get_by_test_id("comments")
    drawer.locator("[data-testid=comment]").first.wait_for()
    assert drawer.get_attribute("data-loading") == "false"
    marks = drawer.locator("[data-testid=comment-text] mark")
    assert marks.count() > 0
    first = drawer.locator("[data-testid=comment]").first
    assert first.locator("mark").first.inner_text() in first.get_by_test_id("comment-text").inner_text()
    rows = api.get(f"/v1/batches/{batch_id}/rows", params={"topic": target["topic"], "limit": 1}).json()
    assert str(rows["total"]) in page.get_by_test_id("comments-count").inner_text().replace(",", "").replace(".", "")
    _shot(page, shots, "comments.png")
    page.get_by_test_id("comments-close").click()


def _drawer_total(page: Any) -> int:
    page.wait_for_function("() => document.querySelector('[data-testid=comments]').dataset.loading === 'false'")
    return int("".join(ch for ch in page.get_by_test_id("comments-count").inner_text() if ch.isdigit()))


def _channels(page: Any, api: httpx.Client, batch_id: str) -> None:
    """Where the feedback was collected, apart from what it is about: the channel chart and the touchpoint x channel
    heat map are drawn and open the comments behind them, filtered by channel (and touchpoint)."""
    kpis = api.get(f"/v1/batches/{batch_id}/kpis", timeout=30).json()
    assert {c["id"] for c in kpis["by_channel"]} == {"website", "store", "mobile_app", "call_center"}  # normalised
    drawer = page.get_by_test_id("comments")
    target = page.evaluate(
        """() => {
            const chart = Chart.getChart(document.getElementById('chart-channels'));
            const d = chart.data.datasets.findIndex((ds) => ds.data[0] > 0);
            const bar = chart.getDatasetMeta(d).data[0].getProps(['x', 'y', 'base'], true);
            return {x: (bar.x + bar.base) / 2, y: bar.y, channel: chart.canvas.dataset.ids.split(',')[0],
                    sentiment: ['positive', 'neutral', 'mixed', 'negative'][d], bars: chart.data.labels.length};
        }"""
    )
    assert target["bars"] == len(kpis["by_channel"])
    canvas = page.get_by_test_id("chart-channels")
    canvas.scroll_into_view_if_needed()
    box = canvas.bounding_box()
    assert box is not None
    page.mouse.click(box["x"] + target["x"], box["y"] + target["y"])
    drawer.locator("[data-testid=comment]").first.wait_for()
    expected = api.get(f"/v1/batches/{batch_id}/rows",
                         params={"channel": target["channel"], "sentiment": target["sentiment"], "limit": 1}).json()
    assert _drawer_total(page) == expected["total"] > 0
    assert "Channel:" in page.get_by_test_id("comments-chips").inner_text()
    assert page.get_by_test_id("comment-channel").first.inner_text().startswith("via ")
    page.get_by_test_id("comments-close").click()

    cells = page.get_by_test_id("channel-heat-cell")
    assert cells.count() == len(kpis["touchpoint_channel"]) > 0
    cell = cells.first
    tp, channel = cell.get_attribute("data-touchpoint"), cell.get_attribute("data-channel")
    assert cell.get_attribute("role") == "button" and cell.get_attribute("aria-label")
    cell.focus()
    page.keyboard.press("Enter")  # a cell is a button: the keyboard opens it too
    drawer.locator("[data-testid=comment]").first.wait_for()
    expected = api.get(f"/v1/batches/{batch_id}/rows", params={"touchpoint": tp, "channel": channel}).json()
    assert _drawer_total(page) == expected["total"] == int(cell.get_attribute("data-count") or "0")
    chips = page.get_by_test_id("comments-chips").inner_text()
    assert "Touchpoint:" in chips and "Channel:" in chips
    first = drawer.locator("[data-testid=comment]").first
    assert first.locator("[data-testid=touchpoint-tag]").first.get_attribute("data-primary") == "true"
    page.get_by_test_id("comments-close").click()


def _hostile_text_stays_text(page: Any) -> None:
    """Customer text is shown as text, never run as markup."""
    drawer = page.get_by_test_id("comments")
    page.get_by_test_id("kpi-count").click()
    drawer.locator("[data-testid=comment]").first.wait_for()
    page.get_by_test_id("comments-search").fill("onerror")
    page.wait_for_function(
        "() => [...document.querySelectorAll('[data-testid=comment-text]')].some((p) => p.textContent.includes('<img'))"
    )
    assert drawer.locator("[data-testid=comment-list] img, [data-testid=comment-list] b").count() == 0
    assert page.evaluate("() => window.__pwned") is None
    page.get_by_test_id("comments-close").click()


def _discovered_theme(page: Any, api: httpx.Client, batch_id: str) -> None:
    """A discovered theme can be taken into the taxonomy (a form that writes a new version), and opens its comments
    too."""
    drawer = page.get_by_test_id("comments")
    page.get_by_test_id("theme-taxonomy").first.click()
    form = page.get_by_test_id("promote-form")
    form.wait_for()
    new_id = page.get_by_test_id("promote-id").input_value()
    assert new_id.startswith("new_") and page.get_by_test_id("promote-examples").input_value().strip()
    page.get_by_test_id("promote-save").click()
    page.get_by_test_id("promote-done").wait_for()
    taxonomy = api.get("/v1/taxonomy").json()
    assert taxonomy["stored"] and new_id in [e["id"] for e in taxonomy["topics"]]
    page.get_by_test_id("theme-open").first.click()
    drawer.locator("[data-testid=comment]").first.wait_for()
    page.wait_for_function("() => document.querySelector('[data-testid=comments]').dataset.loading === 'false'")
    assert "Theme" in page.get_by_test_id("comments-chips").inner_text()
    page.keyboard.press("Escape")
    assert drawer.is_hidden()


def _italian(page: Any, shots: Path) -> None:
    """Italian labels, taxonomy names in Italian too."""
    assert page.locator("[data-i18n='chart.drivers']").inner_text() == "Topic impact on NPS"
    page.get_by_test_id("lang-it").click()
    assert page.locator("[data-i18n='chart.drivers']").inner_text() == "Impatto dei temi sull'NPS"
    assert page.locator("[data-i18n='chart.channels']").inner_text() == "Sentiment per canale"
    assert page.locator("[data-i18n='chart.tp_channel']").inner_text() == "Punti di contatto × canali"
    channels = page.get_by_test_id("filter-channel").locator("option").all_inner_texts()
    assert {"Punto vendita", "Sito web", "App mobile"} <= set(channels), channels  # named like the touchpoints, in Italian
    assert page.evaluate("() => document.documentElement.lang") == "it"
    assert "lang=it" in page.url
    topics = page.get_by_test_id("filter-topic").locator("option").all_inner_texts()
    assert "Personale" in topics or "Prezzo e rapporto qualità-prezzo" in topics, topics
    page.evaluate("window.scrollTo(0, 0)")
    page.wait_for_timeout(400)
    _shot(page, shots, "dashboard_it.png", full_page=True)


def _multi_select_compare_and_print(page: Any, api: httpx.Client, batch_id: str, shots: Path) -> None:
    """Several values of one filter (kept in the URL as repeated keys), January against March with significance
    (kept in the URL too), small groups marked, and the printed page: no controls, the filters said in words."""
    page.get_by_test_id("filter-language").select_option(["it", "en"])
    page.wait_for_function("() => document.body.dataset.loading === 'false' && location.search.includes('language=it') "
                           "&& location.search.includes('language=en')")
    both = api.get(f"/v1/batches/{batch_id}/kpis", params=[("language", "it"), ("language", "en")]).json()
    assert page.get_by_test_id("kpi-count-value").get_attribute("data-value") == str(both["count"])
    page.get_by_test_id("filter-reset").click()
    page.wait_for_function("() => document.body.dataset.loading === 'false' && !location.search.includes('language=')")

    page.get_by_test_id("compare-a-period").select_option("2026-01")
    page.get_by_test_id("compare-b-period").select_option("2026-03")
    page.get_by_test_id("compare-run").click()
    row = page.locator("[data-testid=compare-kpi][data-kpi=nps]")
    row.wait_for()
    expected = api.get(f"/v1/batches/{batch_id}/compare", params={"a_period": "2026-01", "b_period": "2026-03"}).json()
    delta = row.locator("td.delta")
    assert delta.get_attribute("data-significant") == str(expected["kpis"]["nps"]["significant"]).lower()
    shown = delta.inner_text().replace("−", "-").replace(",", ".").replace("▲", "").replace("▼", "").split()[0]
    assert float(shown) == pytest.approx(expected["kpis"]["nps"]["diff"], abs=0.051)
    assert "cmp_a=2026-01" in page.url and "cmp_bp=2026-03" in page.url
    assert page.get_by_test_id("compare-topics-row").count() == sum(
        1 for x in expected["topics"] if x["count_a"] + x["count_b"] > 0) + (1 if expected["unclassified"] else 0)

    kpis = api.get(f"/v1/batches/{batch_id}/kpis").json()
    small = [g for groups in kpis["by_segment"].values() for g in groups if g["nps_small"]]
    assert page.locator("[data-testid=by-segment] td[data-small=true]").count() >= len(small)
    page.locator("[data-testid=by-segment] [data-testid=breakdown-row]").first.click()  # its comments: segment shown
    drawer = page.get_by_test_id("comments")
    drawer.locator("[data-testid=comment]").first.wait_for()
    assert drawer.get_by_test_id("comment-segment").first.inner_text().startswith("regione: ")
    page.get_by_test_id("comments-close").click()

    page.emulate_media(media="print")
    page.evaluate("fillPrintMeta()")
    assert page.get_by_test_id("filters").is_hidden() and page.get_by_test_id("print").is_hidden()
    assert page.get_by_test_id("compare-card").is_visible() and page.get_by_test_id("print-meta").is_visible()
    assert kpis["filters"] is not None and page.get_by_test_id("print-meta").inner_text().strip()
    _shot(page, shots, "dashboard_print.png", full_page=True)
    page.emulate_media(media="screen")

    with page.expect_download() as download:  # a chart for a slide
        page.get_by_test_id("png-drivers").click()
    assert download.value.suggested_filename.endswith("-drivers.png")

    page.set_viewport_size({"width": 390, "height": 844})  # a phone: every driver's name whole, wrapped
    page.wait_for_function("() => Chart.getChart(document.getElementById('chart-drivers')).width < 400")
    page.wait_for_timeout(300)
    names = page.evaluate(
        """() => { const c = Chart.getChart(document.getElementById('chart-drivers'));
                   return c.scales.y.ticks.map((t, i) => [c.data.labels[i], [].concat(t.label).join(' ')]); }"""
    )
    assert names and all(whole == shown for whole, shown in names), names
    page.get_by_test_id("drivers-card").screenshot(path=str(shots / "drivers_phone.png"))
    page.set_viewport_size({"width": 1400, "height": 1000})


def _filter_reloads_everything(page: Any, api: httpx.Client, batch_id: str) -> None:
    """A filter reloads every number."""
    page.get_by_test_id("filter-language").select_option("en")
    page.wait_for_function("() => document.body.dataset.loading === 'false' && location.search.includes('language=en')")
    filtered = api.get(f"/v1/batches/{batch_id}/kpis", params={"language": "en"}).json()
    assert page.get_by_test_id("kpi-count-value").get_attribute("data-value") == str(filtered["count"])
    page.get_by_test_id("filter-channel").select_option("mobile_app")
    page.wait_for_function("() => document.body.dataset.loading === 'false' && location.search.includes('channel=mobile_app')")
    both = api.get(f"/v1/batches/{batch_id}/kpis", params={"language": "en", "channel": "mobile_app"}).json()
    assert page.get_by_test_id("kpi-count-value").get_attribute("data-value") == str(both["count"])
    assert [c["id"] for c in both["by_channel"]] == ["mobile_app"]


# ------------------------------------------------------------------ the test
def test_upload_progress_dashboard_comments(
    base_url: str, admin_key: str, api: httpx.Client, browser: Any, screenshots: Path, tmp_path: Path
) -> None:
    upload = tmp_path / "sondaggio_marzo.csv"
    upload.write_bytes(feedback_csv())

    context = browser.new_context(viewport={"width": 1400, "height": 1000}, locale="en-GB")
    page = context.new_page()
    _sign_in(page, context, base_url, admin_key)  # before the console watch: the refused key's page is a 401
    problems: list[str] = []
    page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    local = (base_url, "data:", "blob:")
    page.on("request", lambda r: None if r.url.startswith(local) else problems.append(f"external: {r.url}"))

    _upload_with_preview(page, base_url, upload, screenshots)
    batch_id = _follow_progress(page, screenshots)
    assert api.get(f"/v1/batches/{batch_id}", timeout=30).json()["pii_mode"] == "mask"  # chosen on the page
    _dashboard(page, api, batch_id, screenshots)
    _strongest_driver_comments(page, api, batch_id, screenshots)
    _channels(page, api, batch_id)
    _hostile_text_stays_text(page)
    _discovered_theme(page, api, batch_id)
    _italian(page, screenshots)
    _multi_select_compare_and_print(page, api, batch_id, screenshots)
    _filter_reloads_everything(page, api, batch_id)
    _sign_out(page, base_url)

    assert not problems, problems
    context.close()


def test_xlsx_upload_previews_and_runs(base_url: str, admin_key: str, browser: Any, tmp_path: Path) -> None:
    """An XLSX through the page: the preview (it always failed: the server's scratch copy had no .xlsx suffix, and
    the page showed an error instead of the columns) and the analysis behind it."""
    import openpyxl

    records = list(csv.reader(io.StringIO(feedback_csv(40, seed=3).decode("utf-8")), delimiter=";"))
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(records[0])
    for r in records[1:]:
        ws.append([r[0], dt.datetime.strptime(r[1], "%d/%m/%Y"), r[2] or None, int(r[3]) if r[3] else None, r[4], r[5]])
    upload = tmp_path / "sondaggio_aprile.xlsx"
    wb.save(upload)

    context = browser.new_context(viewport={"width": 1400, "height": 1000}, locale="en-GB")
    page = context.new_page()
    _sign_in(page, context, base_url, admin_key)
    problems: list[str] = []
    page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))

    page.goto(base_url + "/ui/?lang=en")
    page.get_by_test_id("file-input").set_input_files(str(upload))
    page.get_by_test_id("preview-table").locator("th", has_text="commento").wait_for()
    assert page.get_by_test_id("upload-error").is_hidden()
    assert page.get_by_test_id("preview-meta").inner_text().startswith("XLSX")
    assert page.get_by_test_id("preview-table").locator("tbody tr").count() == 5
    assert page.get_by_test_id("map-text").input_value() == "commento"
    assert page.get_by_test_id("map-nps").input_value() == "voto_nps"
    assert page.get_by_test_id("map-date").input_value() == "data"
    page.get_by_test_id("start-analysis").click()
    page.locator("[data-testid=progress][data-status=done]").wait_for(timeout=120_000)
    assert "40" in page.get_by_test_id("progress-text").inner_text()
    assert not problems, problems
    context.close()
