"""The pages of the learning loop without a browser: the taxonomy page and the dashboard load their scripts, the
scripts are served, every label they use exists in both languages (tests/service/test_web.py checks the keys)."""
from __future__ import annotations

from tests.service.learning.conftest import Team


def test_taxonomy_page_and_dashboard_scripts(team: Team) -> None:
    t = team
    page = t.client.get("/ui/taxonomy", headers=t.h("acme-reader"))
    assert page.status_code == 200 and "/ui/static/taxonomy.js?v=" in page.text
    assert 'data-testid="tax-table"' in page.text and 'name="csrf-token"' in page.text
    assert t.client.get("/ui/taxonomy", follow_redirects=False).status_code == 303  # no session: sign in
    dash = t.client.get(f"/ui/batches/{t.batch['acme']}", headers=t.h("acme")).text
    for asset in ("corrections.js", "promote.js", "learning.css"):
        assert f"/ui/static/{asset}?v=" in dash
        served = t.client.get(f"/ui/static/{asset}")
        assert served.status_code == 200 and len(served.content) > 500
    assert 'href="/ui/taxonomy"' in dash
