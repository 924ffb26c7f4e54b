"""The page assets without a browser: safe static lookups, offline-only assets, every label in both languages."""
from __future__ import annotations

import re

from voce.service import web

#: the files we wrote (the vendored Chart.js is checked separately)
OWN_ASSETS = sorted(
    [p for p in web.STATIC_DIR.glob("*") if p.is_file()] + sorted(web.TEMPLATES_DIR.glob("*.html"))
)
#: URLs that are names, not places to fetch: the SVG namespace
ALLOWED_URLS = {"http://www.w3.org/2000/svg"}
URL = re.compile(r"""(?:https?:)?//[A-Za-z0-9.-]+\.[A-Za-z]{2,}[^\s"'<>)]*""")


def test_static_lookup_stays_inside_the_folder() -> None:
    for bad in ("../web.py", "vendor/../../web.py", "/etc/passwd", "..", ".", "", "vendor/", "a\\..\\web.py",
                "../templates/upload.html", "vendor/chart.js.LICENSE.md/../../web.py"):
        assert web.static_file(bad) is None, bad
    assert web.static_file("vendor/chart.umd.min.js") is not None


def test_own_assets_reference_no_other_host() -> None:
    """Offline: nothing we wrote points the browser at another host (no CDN, no web fonts)."""
    assert OWN_ASSETS
    for path in OWN_ASSETS:
        found = set(URL.findall(path.read_text(encoding="utf-8"))) - ALLOWED_URLS
        assert not found, f"{path.name} references {found}"


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


def test_dashboard_structure_for_the_analysts_day() -> None:
    """The dashboard shell has what issue 17 asks for: multi-select filters, the catch-all apart from the drivers,
    the comparison form, print and PNG buttons, and a print stylesheet that hides the controls."""
    html = (web.TEMPLATES_DIR / "dashboard.html").read_text(encoding="utf-8")
    for name in ("topic", "touchpoint", "channel", "language", "segment"):
        assert re.search(rf'<select id="f-{name}"[^>]* multiple', html), name
    for testid in ("unclassified", "drivers-notes", "compare-card", "compare-form", "compare-a-period", "compare-b-batch",
                   "compare-b-period", "compare-run", "compare-result", "print", "print-meta", "png-drivers", "png-trend"):
        assert f'data-testid="{testid}"' in html, testid
    assert '/ui/static/dashboard.css?v=$version' in html
    css = (web.STATIC_DIR / "dashboard.css").read_text(encoding="utf-8")
    printed = css[css.index("@media print"):]
    for hidden in (".topbar", ".no-print", ".drawer", ".filters"):
        assert hidden in printed, hidden
    js = (web.STATIC_DIR / "dashboard.js").read_text(encoding="utf-8")
    # the API's codes are what the page translates: every driver note code has a label in both languages
    i18n = (web.STATIC_DIR / "i18n.js").read_text(encoding="utf-8")
    from voce.service.analytics import DriverNote

    for code in DriverNote.__args__:
        for lang in ("en", "it"):
            assert f'"driver.note.{code}"' in _label_block(i18n, lang), (code, lang)
    assert 't("driver.note." + code' in js


def _label_block(js: str, lang: str) -> str:
    block = re.search(rf"^  {lang}: \{{\n(.*?)^  \}},", js, re.S | re.M)
    assert block, lang
    return block.group(1)
