"""The page's sign-in, session cookie, CSRF token and sign-out; the Origin and Host checks; through the real app."""
from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.service.api.helpers import LOOPBACK, bearer, local_client
from tests.service.auth.conftest import ALL_BUT_ADMIN, Tenants
from tests.service.batch_data import ROWS, csv_bytes
from voce.service.app import create_app
from voce.service.auth.guard import HostPolicy, OriginPolicy, split_host
from voce.service.auth.sessions import SessionSigner
from voce.service.settings import Settings

_FILE = {"file": ("s.csv", csv_bytes(ROWS))}
_MAPPING = {"mapping": '{"text": "commento"}'}


def _form_token(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, html[:500]
    return found.group(1)


def _meta_token(html: str) -> str:
    found = re.search(r'<meta name="csrf-token" content="([^"]*)">', html)
    assert found
    return found.group(1)


def _browser(app: object, base_url: str = LOOPBACK) -> TestClient:
    """A fresh cookie jar on the same app (TestClient keeps cookies like a browser)."""
    return TestClient(app, base_url=base_url, follow_redirects=False)  # type: ignore[arg-type]


def sign_in(c: TestClient, key: str, next_url: str = "/ui/") -> tuple[str, object]:
    """Through the page: the form, then the POST; returns the page's CSRF token and the sign-in answer."""
    form = c.get(f"/ui/signin?next={next_url}")
    assert form.status_code == 200 and 'data-testid="signin-form"' in form.text
    r = c.post("/ui/signin", data={"key": key, "csrf_token": _form_token(form.text), "next": next_url})
    assert r.status_code == 303, r.text
    page = c.get("/ui/")
    assert page.status_code == 200, page.text
    return _meta_token(page.text), r


@pytest.fixture()
def browser(tenants: Tenants) -> Iterator[TestClient]:
    with _browser(tenants.client.app) as c:
        yield c


def test_pages_ask_for_a_key_then_set_a_strict_http_only_cookie(tenants: Tenants, browser: TestClient) -> None:
    first = browser.get(f"/ui/batches/{tenants.batch['acme']}?lang=it")
    assert first.status_code == 303 and first.headers["location"].startswith("/ui/signin?next=")
    form = browser.get(first.headers["location"])
    assert form.status_code == 200 and "content-security-policy" in form.headers
    signin_cookie = form.headers["set-cookie"]
    assert "voce_signin=" in signin_cookie and "HttpOnly" in signin_cookie and "SameSite=strict" in signin_cookie
    assert 'value="/ui/batches/' in form.text  # where to go back to
    r = browser.post("/ui/signin", data={"key": tenants.full["acme"], "csrf_token": _form_token(form.text),
                                         "next": f"/ui/batches/{tenants.batch['acme']}?lang=it"})
    assert r.status_code == 303 and r.headers["location"] == f"/ui/batches/{tenants.batch['acme']}?lang=it"
    cookie = next(v for v in r.headers.get_list("set-cookie") if v.startswith("voce_session="))
    attrs = {a.strip().split("=")[0].lower() for a in cookie.split(";")}
    assert {"httponly", "path", "max-age", "samesite"} <= attrs and "secure" not in attrs  # plain http: no Secure
    assert "SameSite=strict" in cookie and "Path=/" in cookie and "Max-Age=28800" in cookie
    assert tenants.full["acme"] not in cookie and "acme" not in cookie  # a key id and a signature, not the key
    page = browser.get(f"/ui/batches/{tenants.batch['acme']}")
    assert page.status_code == 200 and f'data-batch-id="{tenants.batch["acme"]}"' in page.text
    assert "acme · voce_" in page.text and 'data-testid="signout"' in page.text and _meta_token(page.text)
    # the API answers the page's cookie, for the signed-in tenant only
    assert browser.get(f"/v1/batches/{tenants.batch['acme']}/kpis").status_code == 200
    assert browser.get(f"/v1/batches/{tenants.batch['beta']}/kpis").status_code == 404
    assert browser.get(f"/ui/batches/{tenants.batch['beta']}").status_code == 404


def test_the_cookie_is_secure_over_https(tenants: Tenants) -> None:
    with _browser(tenants.client.app, base_url="https://127.0.0.1") as c:
        _, r = sign_in(c, tenants.full["acme"])
        cookie = next(v for v in r.headers.get_list("set-cookie") if v.startswith("voce_session="))  # type: ignore[attr-defined]
        assert "Secure" in cookie


def test_state_changes_with_the_cookie_need_the_csrf_token(tenants: Tenants, browser: TestClient) -> None:
    token, _ = sign_in(browser, tenants.full["acme"])
    uploads = browser.app.state.settings.data_dir / "uploads"  # type: ignore[attr-defined]
    before = sorted(uploads.iterdir())
    for headers in ({}, {"X-CSRF-Token": "forged"}, {"X-CSRF-Token": token[:-1]}):
        r = browser.post("/v1/batches", files=_FILE, data=_MAPPING, headers=headers)
        assert r.status_code == 403 and "CSRF" in r.json()["error"]["message"], r.text
        assert browser.post("/v1/batches/preview", files=_FILE, headers=headers).status_code == 403
        assert browser.delete(f"/v1/batches/{tenants.batch['acme']}", headers=headers).status_code == 403
    assert sorted(uploads.iterdir()) == before  # refused before the body was stored
    assert browser.get(f"/v1/batches/{tenants.batch['acme']}").status_code == 200  # not deleted
    ok = browser.post("/v1/batches", files=_FILE, data=_MAPPING, headers={"X-CSRF-Token": token})
    assert ok.status_code == 202, ok.text
    preview = browser.post("/v1/batches/preview", files=_FILE, headers={"X-CSRF-Token": token})
    assert preview.status_code == 200


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "http://evil.example"},
        {"Origin": "http://127.0.0.1:9999"},  # another port is another origin
        {"Origin": "https://127.0.0.1.evil.example"},
        {"Origin": "null"},
        {"Sec-Fetch-Site": "cross-site"},
    ],
    ids=["other-host", "other-port", "lookalike", "null", "fetch-metadata"],
)
def test_cross_origin_state_changes_are_refused(tenants: Tenants, browser: TestClient, headers: dict[str, str]) -> None:
    """A cross-origin multipart POST (CSRF) is refused whatever it carries: the cookie and token, or even a key."""
    token, _ = sign_in(browser, tenants.full["acme"])
    listed = len(browser.get("/v1/batches").json()["batches"])
    for extra in ({"X-CSRF-Token": token}, bearer(tenants.full["acme"])):
        r = browser.post("/v1/batches", files=_FILE, data=_MAPPING, headers={**headers, **extra})
        assert r.status_code == 403 and "another origin" in r.json()["error"]["message"], r.text
    r = browser.post("/ui/signin", data={"key": tenants.full["acme"], "csrf_token": "x"}, headers=headers)
    assert r.status_code == 403
    assert len(browser.get("/v1/batches").json()["batches"]) == listed
    same = browser.post("/v1/batches", files=_FILE, data=_MAPPING,
                        headers={"Origin": LOOPBACK, "Sec-Fetch-Site": "same-origin", "X-CSRF-Token": token})
    assert same.status_code == 202, same.text


def test_sign_in_refuses_bad_keys_forged_forms_and_open_redirects(tenants: Tenants, browser: TestClient) -> None:
    form = browser.get("/ui/signin")
    token = _form_token(form.text)
    wrong = browser.post("/ui/signin", data={"key": "voce_" + "x" * 43, "csrf_token": token})
    assert wrong.status_code == 401 and 'data-testid="signin-error"' in wrong.text and "voce_session" not in str(
        wrong.headers.get("set-cookie"))
    revoked = browser.post("/ui/signin", data={"key": tenants.revoked, "csrf_token": _form_token(wrong.text)})
    assert revoked.status_code == 401
    no_read = browser.post("/ui/signin", data={"key": tenants.key("acme", ["analyze"]),
                                               "csrf_token": _form_token(revoked.text)})
    assert no_read.status_code == 403 and "batches:read" in no_read.text
    with _browser(browser.app) as other:  # a token from another browser's form (no matching nonce cookie)
        forged = other.post("/ui/signin", data={"key": tenants.full["acme"], "csrf_token": token})
        assert forged.status_code == 403 and "voce_session" not in str(forged.headers.get("set-cookie"))
    for target in ("//evil.example/x", "https://evil.example/", "/\\evil.example", "/v1/batches", "javascript:alert(1)"):
        f = browser.get("/ui/signin", params={"next": target})
        r = browser.post("/ui/signin", data={"key": tenants.full["acme"], "csrf_token": _form_token(f.text),
                                             "next": target})
        assert r.status_code == 303 and r.headers["location"] == "/ui/", target


def test_sign_out_ends_the_session_and_revoking_the_key_ends_it_too(tenants: Tenants, browser: TestClient) -> None:
    key = tenants.key("acme", ALL_BUT_ADMIN)
    token, _ = sign_in(browser, key)
    assert browser.post("/ui/signout", data={"csrf_token": "wrong"}).status_code == 403
    out = browser.post("/ui/signout", data={"csrf_token": token})
    assert out.status_code == 303 and out.headers["location"] == "/ui/signin"
    assert re.search(r'voce_session="?"?; .*Max-Age=0', out.headers["set-cookie"])
    assert browser.get("/ui/").status_code == 303 and browser.get("/v1/batches").status_code == 401

    sign_in(browser, key)
    tenants.client.app.state.access.keys.revoke(key[:13])  # type: ignore[attr-defined]
    r = browser.get("/v1/batches")
    assert r.status_code == 401 and "revoked" in r.json()["error"]["message"]
    assert browser.get("/ui/").status_code == 303


def test_a_tampered_or_expired_cookie_is_refused(tenants: Tenants) -> None:
    with _browser(tenants.client.app) as c:
        sign_in(c, tenants.full["acme"])
        good = c.cookies["voce_session"]
        c.cookies.set("voce_session", good[:-3] + "AAA", domain="127.0.0.1")
        r = c.get("/v1/batches")
        assert r.status_code == 401 and "sign in again" in r.json()["error"]["message"]
        assert c.get("/ui/").status_code == 303
    signer = SessionSigner(b"s" * 32, lifetime_seconds=-1)
    cookie, _ = signer.issue("k1")
    assert signer.read(cookie) is None and SessionSigner(b"s" * 32, 60).read(cookie) is None  # expired either way
    fresh, session = SessionSigner(b"s" * 32, 60).issue("k1")
    assert SessionSigner(b"s" * 32, 60).read(fresh) == session and SessionSigner(b"t" * 32, 60).read(fresh) is None


@pytest.mark.parametrize("path", ["/ui/", "/ui/signin", "/v1/batches", "/ui/static/voce.css", "/docs", "/openapi.json",
                                  "/info", "/v1/analyze"])
def test_a_rebound_host_is_400(tenants: Tenants, path: str) -> None:
    """DNS rebinding: a name pointed at 127.0.0.1 by an attacker's page is not served, whatever the credentials."""
    method = "POST" if path == "/v1/analyze" else "GET"
    r = tenants.client.request(method, path, headers={"Host": "rebind.evil.example", **bearer(tenants.admin["acme"])},
                               json={"documents": [{"id": "1", "text": "ciao"}]} if method == "POST" else None)
    assert r.status_code == 400 and r.json()["error"]["code"] == "BadHost", r.text
    assert "VOCE_ALLOWED_HOSTS" in r.json()["error"]["message"]


def test_loopback_names_are_served_and_probes_answer_any_host(tenants: Tenants) -> None:
    for host in ("127.0.0.1", "127.0.0.1:8000", "localhost:8000", "LOCALHOST", "[::1]:8000", "localhost."):
        assert tenants.client.get("/v1/batches", headers={"Host": host, **bearer(tenants.full["acme"])}).status_code == 200
    for path in ("/health", "/ready"):
        assert tenants.client.get(path, headers={"Host": "10.1.2.3:8000"}).status_code == 200


def test_allowed_hosts_and_trusted_origins_are_settings(tiny_bundle_dir: Path, tmp_path: Path) -> None:
    s = Settings(encoder_backend="fake", encoder="fake", bundle=tiny_bundle_dir, cache_dir=tmp_path / "c",
                 data_dir=tmp_path / "d", workers=0, host="0.0.0.0", allowed_hosts="voce.example.com,*.cx.example",
                 trusted_origins="https://voce.example.com")
    policy = HostPolicy(s)
    assert all(policy.allows(h) for h in ("voce.example.com", "team.cx.example", "127.0.0.1", "localhost", "::1"))
    assert not any(policy.allows(h) for h in ("cx.example", "0.0.0.0", "evil.example", "voce.example.com.evil", ""))
    assert HostPolicy(Settings(host="10.0.0.5")).allows("10.0.0.5")
    assert HostPolicy(Settings(allowed_hosts=["*"])).allows("anything.example")
    origins = OriginPolicy(s)
    assert origins.allows("https://voce.example.com", "127.0.0.1:8000")  # a proxy rewrote Host
    assert origins.allows("http://127.0.0.1:8000", "127.0.0.1:8000")
    assert origins.allows("https://voce.example.com:443", "voce.example.com")
    assert not origins.allows("http://voce.example.com", "127.0.0.1:8000")  # trusted as https only
    assert split_host("[::1]:8000") == ("::1", "8000") and split_host("Voce.Example.COM.") == ("voce.example.com", None)
    with local_client(create_app(s)) as c:
        key = (s.data_dir / "initial-admin-key").read_text().strip()
        assert c.get("/v1/batches", headers={"Host": "team.cx.example", **bearer(key)}).status_code == 200
        assert c.get("/v1/batches", headers={"Host": "evil.example", **bearer(key)}).status_code == 400
        r = c.post("/v1/batches", files=_FILE, data=_MAPPING, headers={"Origin": "https://voce.example.com", **bearer(key)})
        assert r.status_code == 202, r.text
        r = c.post("/v1/batches", files=_FILE, data=_MAPPING, headers={"Origin": "https://evil.example", **bearer(key)})
        assert r.status_code == 403


def test_secure_cookie_can_be_forced_for_a_tls_proxy(tiny_bundle_dir: Path, tmp_path: Path) -> None:
    s = Settings(encoder_backend="fake", encoder="fake", bundle=tiny_bundle_dir, cache_dir=tmp_path / "c",
                 data_dir=tmp_path / "d", workers=0, session_cookie_secure=True, session_hours=1)
    with local_client(create_app(s), follow_redirects=False) as c:
        key = (s.data_dir / "initial-admin-key").read_text().strip()
        form = c.get("/ui/signin")
        nonce = form.headers["set-cookie"]
        assert "Secure" in nonce  # so the client, on plain http here, does not send it back: we do, as the proxy would
        r = c.post("/ui/signin", data={"key": key, "csrf_token": _form_token(form.text)},
                   headers={"Cookie": nonce.split(";")[0]})
        cookie = next(v for v in r.headers.get_list("set-cookie") if v.startswith("voce_session="))
        assert r.status_code == 303 and "Secure" in cookie and "Max-Age=3600" in cookie
        session = c.app.state.access.signer.read(cookie.split(";")[0].split("=", 1)[1])  # type: ignore[attr-defined]
        assert time.time() < session.expires <= time.time() + 3600
