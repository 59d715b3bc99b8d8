"""Access control through the Flask app (its test client: no sockets, no cameras started, an
injected clock for the throttle and the sessions, so nothing sleeps).

- every route of the URL map declares a minimum role and is enforced for anonymous, viewer
  and admin callers (a route without a declared role fails here);
- state-changing routes accept only POST and refuse a cross-site Origin;
- wrong credentials are throttled per address: the lock-out kicks in, grows, recovers, shows
  in /metrics, and the log never holds a secret;
- sessions: tampered, expired, signed-out ones are refused; rotating the secret signs everyone
  out; a changed user loses their sessions; Secure behind TLS; CSP on every response.
"""
from __future__ import annotations

import base64
import logging
import re

import pytest

from core.config import parse_config
from runtime.vigil import Vigil
from web import auth
from web.app import ROUTE_ROLES, create_app

TOKEN = "legacy-admin-token-1"
VIEWER_PW = "viewer-password-1"
ADMIN_PW = "admin-password-1"
ADMIN_HASH = auth.hash_secret(ADMIN_PW, iterations=100_000)
SECRETS = (TOKEN, VIEWER_PW, ADMIN_PW)
CAMS = [{"name": "cross", "source": "synthetic:crossing", "detector": "none"}]
# sample values for the URL converters of every route
SAMPLE = {"camera": "cross", "event_id": 1, "name": "x.mp4", "filename": "app.js"}


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def basic(user: str, pw: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{pw}".encode()).decode()}


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def make(tmp_path, monkeypatch, **server):
    monkeypatch.setenv("VIGIL_T_VIEWER_PW", VIEWER_PW)
    srv = {"token": TOKEN, "users": [{"name": "vee", "role": "viewer", "secret": "env:VIGIL_T_VIEWER_PW"},
                                     {"name": "ada", "role": "admin", "secret": ADMIN_HASH}]}
    srv.update(server)
    cfg = parse_config({"server": srv, "cameras": CAMS, "paths": {"data": str(tmp_path / "data")}})
    vigil = Vigil(cfg)
    app = create_app(vigil)
    a = app.extensions["vigil_auth"]
    a.throttle.clock = Clock(1000.0)
    a.sessions.clock = Clock(1_700_000_000.0)
    app.vigil_test = vigil  # type: ignore[attr-defined]
    return app


@pytest.fixture
def app(tmp_path, monkeypatch):
    app = make(tmp_path, monkeypatch)
    yield app
    app.vigil_test.stop(timeout=1.0)


def ext(app):
    return app.extensions["vigil_auth"]


def login(client, user: str | None, pw: str, addr: str = "127.0.0.1"):
    data = {"token": pw}
    if user:
        data["username"] = user
    return client.post("/login", data=data, environ_base={"REMOTE_ADDR": addr})


def session_cookie(client) -> str:
    c = client.get_cookie(auth.COOKIE)
    return c.value if c is not None else ""


# ------------------------------------------------------------------ roles on every route
def test_every_route_declares_a_role(app):
    endpoints = {r.endpoint for r in app.url_map.iter_rules()}
    missing = sorted(endpoints - set(ROUTE_ROLES))
    assert not missing, f"routes without a minimum role in web.app.ROUTE_ROLES: {missing}"
    stale = sorted(set(ROUTE_ROLES) - endpoints)
    assert not stale, f"ROUTE_ROLES names endpoints that do not exist: {stale}"


def test_a_route_without_a_role_is_served_to_admins_only(app, caplog):
    app.add_url_rule("/api/new-thing", "new_thing", lambda: {"ok": True})
    client = app.test_client()
    assert client.get("/api/new-thing", headers=basic("vee", VIEWER_PW)).status_code == 403
    assert client.get("/api/new-thing", headers=basic("ada", ADMIN_PW)).status_code == 200
    assert "new_thing" in caplog.text and "no role in ROUTE_ROLES" in caplog.text


def _url(app, rule, method: str) -> str:
    values = {k: SAMPLE[k] for k in rule.arguments}
    return app.url_map.bind("localhost").build(rule.endpoint, values, method=method)


def test_roles_enforced_on_every_route(app):
    client = app.test_client()
    viewer, admin = basic("vee", VIEWER_PW), basic("ada", ADMIN_PW)
    problems = []
    rules = list(app.url_map.iter_rules())
    assert len(rules) >= 20
    for rule in rules:
        need = ROUTE_ROLES.get(rule.endpoint, auth.Role.ADMIN)
        method = "GET" if "GET" in rule.methods else "POST"
        url = _url(app, rule, method)
        if rule.endpoint == "static" and need is auth.Role.VIEWER:
            url = "/static/app.js"
        for who, headers in (("anonymous", {}), ("viewer", viewer), ("admin", admin),
                             ("token", bearer(TOKEN))):
            with client.open(url, method=method, headers=headers) as r:
                code = r.status_code
            if who == "anonymous":
                want_refused = need > auth.Role.OPEN
            else:
                want_refused = who == "viewer" and need is auth.Role.ADMIN
            refused = code in (401, 403) or (code == 302 and r.location.endswith("/login")
                                             and rule.endpoint != "login")
            if want_refused != refused:
                problems.append(f"{method} {url} ({need.label}) as {who}: {code}")
            if who == "viewer" and need is auth.Role.ADMIN and code != 403:
                problems.append(f"{method} {url} as viewer: {code}, expected 403")
            if who == "anonymous" and need > auth.Role.OPEN and code == 401 \
                    and "WWW-Authenticate" not in r.headers:
                problems.append(f"{method} {url}: 401 without a Basic challenge")
    assert not problems, "\n".join(problems)
    # a path-level exception: the sign-in page's stylesheet is open, the dashboard's script is not
    assert client.get("/static/login.css").status_code == 200
    assert client.get("/static/app.js").status_code == 401
    # an unknown route does not tell an anonymous caller that it is unknown
    assert client.get("/api/nope").status_code == 401
    assert client.get("/api/nope", headers=viewer).status_code == 404


def test_state_changing_routes_are_post_only(app):
    client = app.test_client()
    for rule in app.url_map.iter_rules():
        methods = set(rule.methods) - {"HEAD", "OPTIONS"}
        need = ROUTE_ROLES.get(rule.endpoint)
        if rule.endpoint == "login":  # GET shows the form, POST signs in
            assert methods == {"GET", "POST"}
            continue
        if need is auth.Role.ADMIN or "POST" in methods:
            assert methods == {"POST"}, (rule.rule, methods)
            r = client.get(_url(app, rule, "POST"), headers=bearer(TOKEN))
            assert r.status_code == 405, (rule.rule, r.status_code)


def test_cross_site_posts_are_refused(app):
    client = app.test_client()
    url = "/api/cameras/cross/exposure/reset"
    h = bearer(TOKEN)
    for bad in ({"Origin": "http://evil.example"}, {"Origin": "null"},
                {"Origin": "http://localhost.evil.example"}, {"Sec-Fetch-Site": "cross-site"},
                {"Sec-Fetch-Site": "same-site", "Origin": "http://cam.localhost"}):
        r = client.post(url, headers={**h, **bad})
        assert r.status_code == 403 and "cross-site" in r.get_json()["error"], bad
    # a login from another site (login CSRF) and a logout too
    assert client.post("/login", data={"token": TOKEN}, headers={"Origin": "http://evil.example"}).status_code == 403
    assert client.post("/logout", headers={"Sec-Fetch-Site": "cross-site"}).status_code == 403
    # the page itself (same origin), and clients that send no Origin (curl, scripts): not refused
    for ok in ({"Origin": "http://localhost"}, {"Origin": "http://LOCALHOST:80"},
               {"Sec-Fetch-Site": "same-origin", "Origin": "http://localhost"}, {}):
        assert client.post(url, headers={**h, **ok}).status_code == 404, ok  # no camera started


def test_cross_site_refused_with_auth_off_too(tmp_path):
    cfg = parse_config({"cameras": CAMS, "paths": {"data": str(tmp_path)}})
    vigil = Vigil(cfg)
    try:
        client = create_app(vigil).test_client()
        assert client.post("/api/cameras/cross/exposure/reset",
                           headers={"Origin": "http://evil.example"}).status_code == 403
        assert client.post("/api/cameras/cross/exposure/reset").status_code == 404
        assert client.get("/api/me").get_json() == {"auth": False, "user": None, "role": "admin", "via": "open"}
        assert client.get("/login").status_code == 302
    finally:
        vigil.stop(timeout=1.0)


# ------------------------------------------------------------------ throttling
def test_throttling_kicks_in_and_recovers(app, caplog):
    caplog.set_level(logging.INFO, logger="vigil")
    client = app.test_client()
    clock = ext(app).throttle.clock
    ip = {"REMOTE_ADDR": "198.51.100.9"}

    def get(headers, env=ip):
        return client.get("/api/cameras", headers=headers, environ_base=env)

    for i in range(5):  # five distinct wrong secrets: answered at once
        assert get(bearer(f"wrong-guess-{i}")).status_code == 401
    assert get(bearer(TOKEN)).status_code == 200
    assert get(basic("ada", "wrong-guess-5")).status_code == 401  # the 6th: locked out for 1 s
    r = get(bearer(TOKEN))  # even the right token, while locked
    assert r.status_code == 429 and r.headers["Retry-After"] == "1"
    assert "retry in 1 s" in r.get_json()["error"]
    assert get(bearer(TOKEN), {"REMOTE_ADDR": "198.51.100.10"}).status_code == 200  # others unaffected
    clock.t += 1.01
    assert get(bearer(TOKEN)).status_code == 200  # recovered
    assert get(bearer("wrong-guess-6")).status_code == 401  # 7th: 2 s
    clock.t += 1.5
    assert get(bearer(TOKEN)).status_code == 429
    clock.t += 0.6
    # the same wrong secret again (a stale client): refused, but no longer lock-out
    for _ in range(20):
        assert get(bearer("wrong-guess-6")).status_code == 401
    assert get(bearer(TOKEN)).status_code == 200
    # the sign-in form shares the count: the 8th distinct failure locks out for 4 s
    browser = app.test_client()
    r = login(browser, "ada", "wrong-guess-7", addr="198.51.100.9")
    assert r.status_code == 401 and b"Wrong user name or password" in r.data
    r = login(browser, "ada", ADMIN_PW, addr="198.51.100.9")
    assert r.status_code == 429 and r.headers["Retry-After"] == "4" and b"try again in 4 s" in r.data
    clock.t += 4.01
    assert login(browser, "ada", ADMIN_PW, addr="198.51.100.9").status_code == 302
    # a signed-in browser keeps working while its address is locked out
    for i in range(8, 12):
        get(bearer(f"wrong-guess-{i}"))
    assert get(bearer(TOKEN)).status_code == 429
    assert browser.get("/api/cameras", environ_base=ip).status_code == 200  # the session cookie

    m = client.get("/metrics", headers=bearer(TOKEN), environ_base={"REMOTE_ADDR": "10.9.9.9"}).text
    fails = {k: float(v) for k, v in re.findall(r'^vigil_auth_failures_total\{via="(\w+)"\} (\S+)$', m, re.M)}
    assert fails == {"basic": 1.0, "bearer": 27.0, "login": 1.0}, fails
    assert re.search(r"^vigil_auth_repeated_failures_total 20\.0$", m, re.M)
    assert re.search(r"^vigil_auth_lockouts_total 4\.0$", m, re.M)  # the 6th to the 9th failure
    assert re.search(r"^vigil_auth_locked_clients 1\.0$", m, re.M)
    assert re.search(r"^vigil_auth_throttled_total 7\.0$", m, re.M)  # the 429s above
    assert re.search(r"^vigil_auth_logins_total 1\.0$", m, re.M)

    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "locked out for 1 s" in text and "198.51.100.9" in text and "for user 'ada'" in text
    assert not any(s in text for s in (*SECRETS, "wrong-guess")), "a secret reached the log"
    # each distinct failure logged once, repeats not at all
    assert len([r for r in caplog.records if "wrong" in r.getMessage()]) == 9


def test_forwarded_for_is_trusted_only_from_a_configured_proxy(tmp_path, monkeypatch):
    for hops, same in ((0, True), (1, False)):
        app = make(tmp_path / str(hops), monkeypatch, trusted_proxies=hops,
                   throttle={"free_failures": 1, "lockout_s": 60, "max_lockout_s": 60})
        try:
            client = app.test_client()
            for i in range(2):
                client.get("/api/cameras", headers={**bearer(f"bad-{i}"), "X-Forwarded-For": "203.0.113.1"})
            r = client.get("/api/cameras", headers={**bearer(TOKEN), "X-Forwarded-For": "203.0.113.2"})
            # without a trusted proxy the header is ignored: both came from 127.0.0.1 (locked)
            assert (r.status_code == 429) is same, (hops, r.status_code)
        finally:
            app.vigil_test.stop(timeout=1.0)


# ------------------------------------------------------------------ sessions
def test_login_sets_a_signed_expiring_session(app):
    client = app.test_client()
    r = login(client, "vee", VIEWER_PW)
    assert r.status_code == 302 and r.location.endswith("/")
    sc = r.headers["Set-Cookie"]
    assert "HttpOnly" in sc and "SameSite=Strict" in sc and "Path=/" in sc and "Secure" not in sc
    assert "Max-Age=86400" in sc and VIEWER_PW not in sc
    value = session_cookie(client)
    assert client.get("/api/me").get_json() == {"auth": True, "user": "vee", "role": "viewer", "via": "session"}
    # a second sign-in gets another cookie (sessions are not a fixed function of the secret)
    other = app.test_client()
    login(other, "vee", VIEWER_PW)
    assert session_cookie(other) != value
    # a viewer's session cannot use the controls
    assert client.post("/api/cameras/cross/exposure/reset").status_code == 403
    # tampered: refused, and the browser is told to drop the cookie
    client.set_cookie(auth.COOKIE, value[:-3] + ("AAA" if value[-3:] != "AAA" else "BBB"))
    r = client.get("/api/cameras")
    assert r.status_code == 401 and f"{auth.COOKIE}=;" in r.headers.get("Set-Cookie", "")
    assert client.get("/").status_code == 302
    # expired: the server's clock decides, whatever the browser keeps
    client.set_cookie(auth.COOKIE, value)
    assert client.get("/api/cameras").status_code == 200
    ext(app).sessions.clock.t += 86400 + 1
    assert client.get("/api/cameras").status_code == 401
    assert ext(app).sessions.rejected["expired"] >= 1 and ext(app).sessions.rejected["tampered"] >= 1


def test_logout_revokes_the_session(app):
    client = app.test_client()
    login(client, "ada", ADMIN_PW)
    value = session_cookie(client)
    assert client.get("/api/cameras").status_code == 200
    r = client.post("/logout")
    assert r.status_code == 303 and r.location.endswith("/login")
    assert f"{auth.COOKIE}=;" in r.headers["Set-Cookie"]
    assert client.get("/logout", headers=bearer(TOKEN)).status_code == 405  # POST only
    client.set_cookie(auth.COOKIE, value)  # a copy of the cookie kept by someone: refused
    assert client.get("/api/cameras").status_code == 401
    assert ext(app).sessions.rejected["revoked"] == 1


def test_rotation_signs_everyone_out(app):
    a, v = app.test_client(), app.test_client()
    login(a, "ada", ADMIN_PW)
    login(v, None, VIEWER_PW)  # a token (or password) without a user name
    assert v.get("/api/me").get_json()["user"] == "vee"
    assert v.post("/api/auth/rotate").status_code == 403  # viewers cannot
    r = a.post("/api/auth/rotate")
    assert r.status_code == 200 and r.get_json() == {"rotated": True}
    for c in (a, v):
        assert c.get("/api/cameras").status_code == 401
    # Basic / Bearer do not depend on sessions
    assert a.get("/api/cameras", headers=basic("ada", ADMIN_PW)).status_code == 200
    login(a, "ada", ADMIN_PW)
    assert a.get("/api/cameras").status_code == 200


def test_sessions_survive_a_restart_until_the_secret_or_the_user_changes(tmp_path, monkeypatch):
    app1 = make(tmp_path, monkeypatch)
    c = app1.test_client()
    login(c, "vee", VIEWER_PW)
    value = session_cookie(c)
    app1.vigil_test.stop(timeout=1.0)

    app2 = make(tmp_path, monkeypatch)  # a restart: the secret is kept in the data folder
    c2 = app2.test_client()
    c2.set_cookie(auth.COOKIE, value)
    assert c2.get("/api/cameras").status_code == 200
    app2.vigil_test.stop(timeout=1.0)

    # vee becomes an admin in the config: the viewer session no longer holds
    monkeypatch.setenv("VIGIL_T_VIEWER_PW", VIEWER_PW)
    app3 = make(tmp_path, monkeypatch, users=[{"name": "vee", "role": "admin", "secret": "env:VIGIL_T_VIEWER_PW"}])
    c3 = app3.test_client()
    c3.set_cookie(auth.COOKIE, value)
    assert c3.get("/api/cameras").status_code == 401
    app3.vigil_test.stop(timeout=1.0)

    # the secret file deleted (rotation by hand): every old session is refused
    (tmp_path / "data" / "auth" / "session_secret").unlink()
    app4 = make(tmp_path, monkeypatch)
    c4 = app4.test_client()
    c4.set_cookie(auth.COOKIE, value)
    assert c4.get("/api/cameras").status_code == 401
    app4.vigil_test.stop(timeout=1.0)


# ------------------------------------------------------------------ headers
def test_security_headers_and_secure_cookies(tmp_path, monkeypatch):
    app = make(tmp_path / "a", monkeypatch)
    try:
        client = app.test_client()
        for path, headers in (("/login", {}), ("/api/cameras", bearer(TOKEN)), ("/", bearer(TOKEN)),
                              ("/api/nope", {})):
            r = client.get(path, headers=headers)
            csp = r.headers.get("Content-Security-Policy", "")
            assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp, path
            assert "unsafe-inline" not in csp and r.headers["X-Content-Type-Options"] == "nosniff"
        # the dashboard's own requests get no Basic challenge (no browser password prompt)
        r = client.get("/api/cameras", headers={"Sec-Fetch-Site": "same-origin"})
        assert r.status_code == 401 and "WWW-Authenticate" not in r.headers
        # X-Forwarded-Proto is not believed without trusted_proxies
        r = client.post("/login", data={"token": TOKEN}, headers={"X-Forwarded-Proto": "https"})
        assert "Secure" not in r.headers["Set-Cookie"]
    finally:
        app.vigil_test.stop(timeout=1.0)
    for kw, headers in (({"behind_tls": True}, {}),
                        ({"trusted_proxies": 1}, {"X-Forwarded-Proto": "https", "X-Forwarded-For": "1.2.3.4"})):
        app = make(tmp_path / str(len(kw) + len(headers)), monkeypatch, **kw)
        try:
            r = app.test_client().post("/login", data={"token": TOKEN}, headers=headers)
            assert r.status_code == 302 and "; Secure" in r.headers["Set-Cookie"], kw
        finally:
            app.vigil_test.stop(timeout=1.0)


def test_dashboard_hides_controls_from_viewers(app):
    v, a = app.test_client(), app.test_client()
    login(v, "vee", VIEWER_PW)
    login(a, "ada", ADMIN_PW)
    # (no camera is started here: the Reset buttons themselves are checked in Chromium,
    # tests/real/test_browser_roles.py)
    page_v = v.get("/").get_data(as_text=True)
    page_a = a.get("/").get_data(as_text=True)
    assert 'data-user-role="viewer"' in page_v and 'data-user-role="admin"' in page_a
    assert "vee · viewer" in page_v and 'action="/logout"' in page_v
    assert "<script>" not in page_v and "style=" not in page_v  # nothing the CSP would block
