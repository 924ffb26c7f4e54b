"""Screenshots of the dashboard on a real-model analysis (for the README), in headless Debian Chromium.

Starts the service with the shipped bundle and the real e5 encoder, uploads the first ``--rows`` rows of a survey
file (e.g. from ``python -m benchmarks.make_survey``), waits for the batch, and saves the dashboard and a drill-down.

    python -m benchmarks.ui_screenshots --file var/survey_20k.csv --rows 2000 --out reports/screenshots
"""
from __future__ import annotations

import argparse
import json
import socket
import tempfile
import threading
import time
from pathlib import Path

import httpx
import uvicorn

from voce.service.app import create_app
from voce.service.settings import Settings


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--file", type=Path, required=True)
    ap.add_argument("--rows", type=int, default=2000)
    ap.add_argument("--out", type=Path, default=Path("reports/screenshots"))
    ap.add_argument("--cache-dir", type=Path, default=Path(".cache/voce"))
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="voce-shots-"))
    lines = args.file.read_text("utf-8-sig").splitlines(keepends=True)[: args.rows + 1]
    sample = work / f"survey_{args.rows}.csv"
    sample.write_text("".join(lines), encoding="utf-8")

    settings = Settings(cache_dir=args.cache_dir, data_dir=work / "data", workers=1)
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    base = f"http://127.0.0.1:{port}"
    while True:
        try:
            if httpx.get(base + "/ready", timeout=2).status_code == 200:
                break
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    # the first start made an admin key (tenant default); the API calls and the pages send it
    auth = {"Authorization": "Bearer " + (settings.data_dir / "initial-admin-key").read_text().strip()}
    with sample.open("rb") as fh:
        r = httpx.post(base + "/v1/batches", files={"file": (sample.name, fh)}, headers=auth, timeout=120)
    bid = r.json()["id"]
    print("batch", bid, json.dumps(r.json()["mapping"]))
    t0 = time.time()
    while (st := httpx.get(f"{base}/v1/batches/{bid}", headers=auth).json())["status"] not in ("done", "failed"):
        print(f"  {st['phase']}: {st['rows_done']}/{st['rows_total']} eta {st['eta_seconds']}s", flush=True)
        time.sleep(15)
    print(f"{st['status']} in {time.time() - t0:.0f}s")

    from playwright.sync_api import sync_playwright

    args.out.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000}, extra_http_headers=auth)
        page.goto(f"{base}/ui/batches/{bid}?lang=en")
        page.locator("body[data-ready=true]").wait_for(timeout=120_000)
        page.get_by_test_id("theme").first.wait_for()
        page.wait_for_timeout(800)
        page.screenshot(path=str(args.out / "real_dashboard.png"), full_page=True)
        page.get_by_test_id("theme-open").first.click()
        page.get_by_test_id("comments").locator("[data-testid=comment]").first.wait_for()
        page.wait_for_timeout(500)
        page.screenshot(path=str(args.out / "real_theme_comments.png"))
        browser.close()
    server.should_exit = True
    print("screenshots in", args.out)


if __name__ == "__main__":
    main()
