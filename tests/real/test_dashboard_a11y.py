"""The dashboard reads well in a real browser (headless Chromium): every visible text meets
WCAG AA contrast (4.5:1) against the background it is drawn on, links included, and a camera
that never produced a frame shows a placeholder with its state instead of a broken image."""
from __future__ import annotations

import pytest

from core.config import WebhookConfig
from tests.integration.webutil import make_config, running_server
from tests.real.test_browser import _wait, browser  # noqa: F401 - the fixture

# For every element with its own visible text: its colour, and the first opaque background
# up the tree (alpha-blended chains are not used by the stylesheet).
CONTRAST_JS = r"""
function rgb(s) { const m = s.match(/[\d.]+/g).map(Number); return {r: m[0], g: m[1], b: m[2], a: m.length > 3 ? m[3] : 1}; }
function lum(c) { const f = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); };
                  return 0.2126 * f(c.r) + 0.7152 * f(c.g) + 0.0722 * f(c.b); }
function bg(el) { for (let e = el; e; e = e.parentElement) { const c = rgb(getComputedStyle(e).backgroundColor);
                  if (c.a > 0.5) return c; } return {r: 255, g: 255, b: 255, a: 1}; }
const out = [];
for (const el of document.querySelectorAll("body *")) {
  const own = Array.from(el.childNodes).some((n) => n.nodeType === 3 && n.textContent.trim());
  if (!own || !el.getClientRects().length) continue;
  const st = getComputedStyle(el);
  if (st.visibility === "hidden" || st.display === "none" || +st.opacity === 0) continue;
  const fg = rgb(st.color), b = bg(el);
  const [l1, l2] = [lum(fg), lum(b)].sort((x, y) => y - x);
  out.push({tag: el.tagName.toLowerCase(), cls: el.className, text: el.textContent.trim().slice(0, 40),
            color: st.color, background: `rgb(${b.r}, ${b.g}, ${b.b})`,
            ratio: Math.round((l1 + 0.05) / (l2 + 0.05) * 100) / 100});
}
return out;
"""


def test_contrast_and_placeholder(browser):  # noqa: F811 - pytest fixture
    cams = [{"name": "cross", "source": "synthetic:crossing", "detector": "motion",
             "synthetic": {"width": 320, "height": 240}},
            # accepted and retried forever, never a frame: the placeholder case
            {"name": "gone", "source": "rtsp://127.0.0.1:9/nothing", "detector": "none",
             "open_timeout_s": 0.5}]
    cfg = make_config(cams)
    # a webhook nobody listens to: the header names the failing sink
    cfg = cfg.model_copy(update={"events": cfg.events.model_copy(update={"webhooks": [
        WebhookConfig(url="http://127.0.0.1:9/hook", retries=0, timeout_s=0.5)]})})
    with running_server(cfg, wait_ready=False) as srv:  # "gone" never makes it ready
        browser.get(srv.base + "/")
        assert _wait(lambda: browser.execute_script("return document.querySelectorAll('.cam').length == 2"))
        # a snapshot link in the feed (track events of the crossing scene) and both states shown
        assert _wait(lambda: browser.execute_script("return document.querySelectorAll('#events a').length"), 30)
        assert _wait(lambda: browser.execute_script(
            "return document.querySelector('.cam[data-camera=cross] [data-role=placeholder]').hidden"))
        assert _wait(lambda: browser.execute_script(
            "const t = document.querySelector('.cam[data-camera=gone] [data-role=ph-state]').textContent;"
            "return ['RECONNECTING', 'CONNECTING'].includes(t) && t"))
        gone = browser.execute_script("""
            const c = document.querySelector('.cam[data-camera=gone]');
            const img = c.querySelector('[data-role=img]');
            return {placeholder: !c.querySelector('[data-role=placeholder]').hidden,
                    img_visibility: getComputedStyle(img).visibility, natural: img.naturalWidth,
                    msg: c.querySelector('[data-role=ph-msg]').textContent};""")
        assert gone["placeholder"] and gone["img_visibility"] == "hidden" and gone["natural"] == 0, gone
        assert "127.0.0.1" in gone["msg"] or gone["msg"] == "", gone
        sinks = _wait(lambda: browser.execute_script(
            "const e = document.getElementById('sinks'); return !e.hidden && e.textContent"), 20)
        assert sinks and sinks.startswith("webhook http://127.0.0.1:9/hook") and "failed" in sinks

        checked = browser.execute_script(CONTRAST_JS)
        assert len(checked) > 20  # headers, badges, buttons, stats, feed entries, links
        assert any(c["tag"] == "a" for c in checked)
        bad = [c for c in checked if c["ratio"] < 4.5]
        assert not bad, "text below 4.5:1 contrast:\n" + "\n".join(map(str, bad))


@pytest.mark.parametrize("page", ["/login"])
def test_login_page_contrast(browser, page):  # noqa: F811
    cfg = make_config(token="s3cret-token-for-tests")
    with running_server(cfg) as srv:
        browser.get(srv.base + page)
        assert _wait(lambda: browser.execute_script("return document.querySelector('form') !== null"))
        checked = browser.execute_script(CONTRAST_JS)
        assert checked
        bad = [c for c in checked if c["ratio"] < 4.5]
        assert not bad, "text below 4.5:1 contrast:\n" + "\n".join(map(str, bad))
