"""Roles in a real browser (headless Chromium, as tests/real/test_browser.py drives it): a viewer
signs in at /login, watches (the stream decodes), has no controls on the page and is refused
them by the server; signs out; an admin signs in, has the controls and may use them; when the
admin rotates the session secret every open dashboard goes back to the sign-in page. MJPEG
clients keep using HTTP Basic in the URL with a named user."""
from __future__ import annotations

import base64

import cv2
import pytest
import requests

from tests.integration.webutil import make_config, running_server
from tests.real.test_browser import _wait, browser  # noqa: F401 - the fixture
from tests.real.test_dashboard_a11y import CONTRAST_JS
from web.auth import hash_secret

VIEWER_PW = "viewer-pass-word"
ADMIN_PW = "admin-pass-word"

FETCH_RESET = """
const done = arguments[arguments.length - 1];
fetch('/api/cameras/cross/exposure/reset', {method: 'POST'})
  .then(r => r.json().then(b => done([r.status, b.error || null])))
  .catch(e => done([0, String(e)]));"""


@pytest.fixture
def server(monkeypatch):
    monkeypatch.setenv("VIGIL_T_VIEWER_PW", VIEWER_PW)
    cfg = make_config(
        cameras=[{"name": "cross", "source": "synthetic:crossing", "detector": "none",
                  "synthetic": {"width": 320, "height": 240}}],
        token="admin-token-for-the-readiness-wait",  # running_server polls /readyz with it
        users=[{"name": "vee", "role": "viewer", "secret": "env:VIGIL_T_VIEWER_PW"},
               {"name": "ada", "role": "admin", "secret": hash_secret(ADMIN_PW, iterations=100_000)}])
    with running_server(cfg) as srv:
        yield srv


def sign_in(drv, base: str, user: str, pw: str) -> None:
    drv.get(base + "/login")
    assert _wait(lambda: drv.execute_script("return document.getElementById('token') !== null"))
    drv.execute_script("""
        document.getElementById('username').value = arguments[0];
        document.getElementById('token').value = arguments[1];
        document.querySelector('form').submit();""", user, pw)
    assert _wait(lambda: drv.execute_script(
        "return location.pathname === '/' && document.querySelectorAll('.cam').length === 1")), \
        drv.execute_script("return location.href + ' ' + document.body.innerText")


def test_viewer_and_admin_in_chromium(browser, server):  # noqa: F811 - pytest fixture
    base = server.base
    # MJPEG clients: Basic credentials of a named viewer in the URL, as OpenCV / FFmpeg / VLC use
    host = base.split("://")[1]
    cap = cv2.VideoCapture(f"http://vee:{VIEWER_PW}@{host}/stream/cross.mjpg", cv2.CAP_FFMPEG)
    try:
        ok, img = cap.read()
    finally:
        cap.release()
    assert ok and img is not None
    viewer_basic = {"Authorization": "Basic " + base64.b64encode(f"vee:{VIEWER_PW}".encode()).decode()}
    assert requests.post(base + "/api/cameras/cross/exposure/reset", headers=viewer_basic,
                         timeout=5).status_code == 403

    # the viewer: watches, no controls on the page, refused them by the server
    sign_in(browser, base, "vee", VIEWER_PW)
    assert _wait(lambda: browser.execute_script(
        "return document.querySelector('.cam img').naturalWidth > 0"))
    seen = browser.execute_script("""return {
        role: document.documentElement.dataset.userRole,
        who: document.querySelector('.who').textContent,
        resets: document.querySelectorAll('[data-role=reset]').length,
        snapshots: document.querySelectorAll('[data-role=snapshot]').length};""")
    assert seen == {"role": "viewer", "who": "vee · viewer", "resets": 0, "snapshots": 1}, seen
    browser.set_script_timeout(10)
    status, error = browser.execute_async_script(FETCH_RESET)
    assert status == 403 and "admin role" in error, (status, error)
    cookies = {c["name"]: c for c in browser.get_cookies()}
    assert cookies["vigil_session"]["httpOnly"] and cookies["vigil_session"]["sameSite"] == "Strict"
    assert browser.execute_script("return document.cookie") == ""  # not readable by scripts

    # sign out: back at /login, the old session is gone
    browser.execute_script("document.querySelector('form.logout').submit()")
    assert _wait(lambda: browser.execute_script("return location.pathname === '/login'"))
    browser.get(base + "/")
    assert _wait(lambda: browser.execute_script("return location.pathname === '/login'"))

    # the admin: controls shown and accepted (CSP violations on the page are recorded)
    browser.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": (
        "window.__csp = []; document.addEventListener('securitypolicyviolation', "
        "(e) => window.__csp.push(e.violatedDirective + ' ' + e.blockedURI));")})
    sign_in(browser, base, "ada", ADMIN_PW)
    assert _wait(lambda: browser.execute_script(
        "return document.querySelectorAll('[data-role=reset]').length === 1"))
    status, error = browser.execute_async_script(FETCH_RESET)
    assert status == 200 and error is None, (status, error)
    browser.execute_script("document.querySelector('[data-role=reset]').click()")
    assert _wait(lambda: browser.execute_script(
        "return document.querySelector('.cam img').naturalWidth > 0"))
    # the header's new parts read well too (WCAG AA)
    checked = browser.execute_script(CONTRAST_JS)
    mine = [c for c in checked if c["cls"] in ("who", "btn")]
    assert any(c["cls"] == "who" for c in mine) and any(c["text"] == "Sign out" for c in mine)
    bad = [c for c in checked if c["ratio"] < 4.5]
    assert not bad, bad
    # the page runs under its Content-Security-Policy without a single violation
    assert browser.execute_script("return window.__csp") == []
    # ... and an inline script put into it does not run (what an injected <script> would be)
    assert browser.execute_script("""
        const s = document.createElement('script'); s.textContent = 'window.__inline = 1';
        document.head.appendChild(s); return window.__inline === undefined""")
    assert _wait(lambda: browser.execute_script(
        "return window.__csp.some((v) => v.startsWith('script-src'))"), 5)

    # the admin rotates the session secret: this open dashboard returns to the sign-in page
    admin_basic = {"Authorization": "Basic " + base64.b64encode(f"ada:{ADMIN_PW}".encode()).decode()}
    assert requests.post(base + "/api/auth/rotate", headers=admin_basic, timeout=5).status_code == 200
    assert _wait(lambda: browser.execute_script("return location.pathname === '/login'"), 10)
