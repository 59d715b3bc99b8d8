"""Headless Chromium opens the dashboard as a user would (Debian chromium + chromium-driver,
driven by Selenium with the explicit driver path; no browser download)."""
from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT, require
from tests.integration.webutil import make_config, running_server
from tests.timing import wait_for

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
DRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
ARTIFACTS = Path(os.environ.get("VIGIL_ARTIFACTS", ROOT / "test-artifacts"))


@pytest.fixture
def browser():
    require(Path(CHROMIUM).is_file() and Path(DRIVER).is_file(),
            "Debian chromium + chromium-driver not installed (apt-get install chromium chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    profile = tempfile.mkdtemp(prefix="vigil-chrome-")
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--no-first-run", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--disable-quic", f"--user-data-dir={profile}",
                 "--window-size=1400,1000"):
        opts.add_argument(flag)
    opts.page_load_strategy = "none"  # a stream never finishes loading: wait for the DOM ourselves
    drv = webdriver.Chrome(service=Service(DRIVER), options=opts)
    drv.set_script_timeout(10)
    try:
        yield drv
    finally:
        drv.quit()
        shutil.rmtree(profile, ignore_errors=True)


def _wait(pred, timeout=20.0, step=0.2):
    """tests.timing.wait_for with the browser tests' defaults (a script round trip per poll)."""
    return wait_for(pred, timeout, step)


def test_dashboard_in_chromium(browser):
    cfg = make_config()
    with running_server(cfg) as srv:
        browser.get(srv.base + "/")
        assert _wait(lambda: browser.execute_script(
            "return document.readyState !== 'loading' && document.querySelectorAll('.cam').length"))
        n_cams = browser.execute_script("return document.querySelectorAll('.cam img').length")
        assert n_cams == len(cfg.cameras)
        # every camera image decodes (naturalWidth > 0) ...
        assert _wait(lambda: browser.execute_script(
            "return Array.from(document.querySelectorAll('.cam img')).every(i => i.naturalWidth > 0)"))

        # ... and changes over time (draw each into a canvas and hash the pixels)
        sig_js = """
            return Array.from(document.querySelectorAll('.cam img')).map(img => {
              const c = document.createElement('canvas'); c.width = 64; c.height = 40;
              const g = c.getContext('2d'); g.drawImage(img, 0, 0, 64, 40);
              const d = g.getImageData(0, 0, 64, 40).data; let h = 0;
              for (let i = 0; i < d.length; i += 7) h = (h * 31 + d[i]) >>> 0;
              return h; });"""
        first = browser.execute_script(sig_js)
        changed = _wait(lambda: all(a != b for a, b in zip(first, browser.execute_script(sig_js))), 10)
        assert changed, "camera images did not change over time"
        # the SSE feed shows an event, the tracks table fills, state badges say LIVE
        assert _wait(lambda: browser.execute_script("return document.querySelectorAll('#events li').length"))
        assert _wait(lambda: browser.execute_script(
            "return document.querySelectorAll('.cam[data-camera=belt] tbody tr').length"), 20)
        assert _wait(lambda: browser.execute_script(
            "return Array.from(document.querySelectorAll('[data-role=state]')).every(b => b.textContent === 'LIVE')"))
        # switching to the long exposure view swaps the stream and still renders
        browser.execute_script("document.querySelector('.cam[data-camera=cross] .view[data-view=exposure]').click()")
        assert _wait(lambda: browser.execute_script(
            "const i = document.querySelector('.cam[data-camera=cross] img');"
            "return i.src.includes('/exposure/') && i.naturalWidth > 0"))
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        time.sleep(1.0)
        shot = ARTIFACTS / "dashboard.png"
        browser.save_screenshot(str(shot))
        assert shot.stat().st_size > 10_000
