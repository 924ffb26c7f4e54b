"""The learning loop in a real browser (headless Debian Chromium, as tests/service/test_web_browser.py): correct a
comment in the drawer and revert it, promote a discovered theme through its form, edit the taxonomy on its page,
roll back, in English and Italian, with no script error."""
from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from tests.service.test_web_browser import (  # noqa: F401  (fixtures)
    _sign_in,
    admin_key,
    api,
    base_url,
    browser,
    feedback_csv,
    service,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def _batch(api: httpx.Client) -> str:  # noqa: F811
    r = api.post("/v1/batches", files={"file": ("loop.csv", feedback_csv(120, seed=3))})
    assert r.status_code == 202, r.text
    bid = str(r.json()["id"])
    deadline = time.time() + 180
    while api.get(f"/v1/batches/{bid}").json()["status"] != "done":
        assert time.time() < deadline, "the batch never finished"
        time.sleep(0.3)
    return bid


def test_correct_promote_and_edit_the_taxonomy(base_url: str, admin_key: str, api: httpx.Client,  # noqa: F811
                                               browser: Any) -> None:  # noqa: F811
    bid = _batch(api)
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, locale="en-GB")
    page = context.new_page()
    _sign_in(page, context, base_url, admin_key)
    problems: list[str] = []
    page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on("dialog", lambda d: d.accept())

    # -- a correction in the comment drawer, counted by the KPIs, then reverted
    page.goto(f"{base_url}/ui/batches/{bid}?lang=en")
    page.get_by_test_id("kpi-count").click()
    drawer = page.get_by_test_id("comments")
    card = drawer.locator("[data-testid=comment]").first
    card.get_by_test_id("correction-open").wait_for()
    row = int(card.get_attribute("data-row") or "0")
    before = api.get(f"/v1/batches/{bid}/rows/{row}/corrections").json()["original"]
    new = "negative" if before["sentiment"] != "negative" else "positive"
    kpis_before = api.get(f"/v1/batches/{bid}/kpis").json()["sentiment"]
    card.get_by_test_id("correction-open").click()
    card.get_by_test_id("corr-sentiment").select_option(new)
    card.get_by_test_id("corr-detractor").select_option("true")
    card.get_by_test_id("correction-save").click()
    fixed = drawer.locator(f"[data-testid=comment][data-row='{row}']")
    fixed.get_by_test_id("corrected-badge").wait_for()
    compare = fixed.get_by_test_id("correction-compare").inner_text().lower()
    assert "predicted" in compare and "corrected" in compare and "revert" in compare, compare
    stored = api.get(f"/v1/batches/{bid}/rows/{row}/corrections").json()
    assert stored["corrected"]["sentiment"] == new and stored["corrected"]["detractor"] is True
    assert api.get(f"/v1/batches/{bid}/kpis").json()["sentiment"][new] == kpis_before[new] + 1
    fixed.get_by_test_id("correction-revert").click()
    page.wait_for_function(f"() => !document.querySelector(\"[data-row='{row}'] [data-testid=corrected-badge]\")")
    assert api.get(f"/v1/batches/{bid}/kpis").json()["sentiment"] == kpis_before
    page.keyboard.press("Escape")

    # -- a discovered theme promoted through its form (when discovery found one on this small batch)
    if api.get(f"/v1/batches/{bid}/topics").json().get("topics"):
        page.get_by_test_id("theme-taxonomy").first.click()
        page.get_by_test_id("promote-form").wait_for()
        new_id = page.get_by_test_id("promote-id").input_value()
        assert page.get_by_test_id("promote-examples").input_value().strip()
        page.get_by_test_id("promote-save").click()
        page.get_by_test_id("promote-done").wait_for()
        assert new_id in [e["id"] for e in api.get("/v1/taxonomy").json()["topics"]]

    # -- the taxonomy page: add an entry, retire it, roll back
    page.goto(f"{base_url}/ui/taxonomy?lang=en")
    page.locator("[data-testid=tax-row]").first.wait_for()
    versions = len(api.get("/v1/taxonomy/versions").json()["versions"])
    page.get_by_test_id("tax-add").click()
    page.get_by_test_id("tax-f-id").fill("parcheggio")
    page.get_by_test_id("tax-f-name-it").fill("Parcheggio")
    page.get_by_test_id("tax-f-name-en").fill("Parking")
    page.get_by_test_id("tax-f-examples").fill("Non si trova mai posto\nThe car park was full")
    page.get_by_test_id("tax-save").click()
    page.locator("[data-testid=tax-row][data-id=parcheggio]").wait_for()
    assert page.locator("[data-testid=tax-version]").count() == versions + 1
    page.locator("[data-testid=tax-row][data-id=parcheggio]").get_by_test_id("tax-edit").click()
    page.get_by_test_id("tax-retire").click()
    page.locator("[data-testid=tax-row][data-id=parcheggio]").wait_for(state="detached")
    page.locator(f"[data-testid=tax-version][data-version='{versions + 1}']").get_by_test_id("tax-rollback").click()
    page.locator("[data-testid=tax-row][data-id=parcheggio]").wait_for()
    history = api.get("/v1/taxonomy/versions").json()["versions"]
    assert history[0]["restored_from"] == versions + 1 and len(history) == versions + 3
    assert "added topic parcheggio" in page.get_by_test_id("tax-versions").inner_text()
    page.get_by_test_id("lang-it").click()
    assert page.locator("h1").first.inner_text() == "Tassonomia"
    assert "aggiunto tema parcheggio" in page.get_by_test_id("tax-versions").inner_text()

    # -- back on the dashboard: the batch is scored with an older version; re-score it from the banner
    page.goto(f"{base_url}/ui/batches/{bid}?lang=en")
    banner = page.get_by_test_id("rescore-banner")
    banner.wait_for()
    banner.get_by_test_id("rescore").click()
    page.wait_for_function("() => (document.querySelector('[data-testid=rescore-status]') || {}).textContent"
                           "?.startsWith('Scored with taxonomy')", timeout=120_000)
    assert api.get(f"/v1/batches/{bid}").json()["taxonomy_version"] == api.get("/v1/taxonomy").json()["version"]

    assert not problems, problems
    context.close()
