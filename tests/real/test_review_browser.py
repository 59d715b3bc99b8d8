"""The review page in headless Chromium (Debian chromium + chromium-driver, as test_browser.py):
filters change the list (and the URL), a snapshot and a clip open and the clip plays in the
browser's own <video>, the chart has data, the CSV export downloads exactly the filtered rows,
the text meets WCAG AA contrast; and the dashboard's feed hides track start/end until asked.
Screenshots go to test-artifacts/ (review.png, review-detail.png)."""
from __future__ import annotations

import csv
import time
from datetime import datetime, timezone

import pytest
import requests

from tests.integration.webutil import make_config, running_server
from tests.real.test_browser import ARTIFACTS, _wait, browser  # noqa: F401 - the fixture
from tests.real.test_dashboard_a11y import CONTRAST_JS

JS_LOADED = "const r = document.getElementById('rows'); return r && r.dataset.loaded"
JS_ROWS = "return Array.from(document.querySelectorAll('#rows tr')).map(r => [+r.dataset.id, r.children[2].textContent, r.children[3].textContent])"


def _api_walk(base: str, q: dict) -> list[int]:
    ids, before = [], None
    while True:
        body = requests.get(base + "/api/review/events", params={**q, "limit": 500, **({"before": before} if before else {})},
                            timeout=10).json()
        ids += [e["id"] for e in body["events"]]
        before = body["next_before"]
        if before is None:
            return ids


def _crossing_with_clip(base: str, timeout: float = 60.0) -> dict | None:
    """A stored line crossing of the belt whose clip is readable (its post-roll recorded)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        evs = requests.get(base + "/api/review/events", params={"camera": "belt", "kind": "line_crossed"},
                           timeout=5).json()["events"]
        for ev in evs:
            if ev["clip_url"] and ev["snapshot_url"]:
                if requests.head(base + ev["clip_url"], timeout=5).status_code == 200:
                    return ev
        time.sleep(0.5)
    return None


def _contrast_problems(browser) -> list[dict]:  # noqa: F811
    checked = browser.execute_script(CONTRAST_JS)
    assert len(checked) > 15
    return [c for c in checked if c["ratio"] < 4.5]


def test_review_page_in_chromium(browser, tmp_path):  # noqa: F811 - pytest fixture
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    browser.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)})
    cfg = make_config()
    with running_server(cfg) as srv:
        base = srv.base
        ev = _crossing_with_clip(base)
        assert ev is not None, "no line crossing with a readable clip within 60 s"
        # freeze the list: everything up to now (the cameras keep adding events). `until` is
        # cut to whole seconds: wait first, so that the crossing found above is older than it
        # (one found in the same second was cut off the filtered list: no belt rows at all)
        time.sleep(1.1)
        until = datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")
        time.sleep(1.1)
        browser.get(f"{base}/review?until={until}")
        assert _wait(lambda: browser.execute_script("const r = document.getElementById('rows'); return r && r.dataset.loaded"))
        all_rows = browser.execute_script(JS_ROWS)
        # track start/end are left out unless the box is ticked
        assert all_rows and [r[0] for r in all_rows] == _api_walk(base, {"until": until, "tracks": 0})[:50]
        assert not {"track_started", "track_ended"} & {r[2] for r in all_rows}
        assert {r[1] for r in all_rows} >= {"belt"}

        # filters: camera belt, kind line_crossed, applied from the form
        browser.execute_script("""
            document.getElementById('f-camera').value = 'belt';
            document.getElementById('f-kind').value = 'line_crossed';
            document.getElementById('apply').click();""")
        assert _wait(lambda: "camera=belt" in browser.current_url and "kind=line_crossed" in browser.current_url)
        filtered = _wait(lambda: (lambda rows: rows and all(r[1] == "belt" and r[2] == "line_crossed" for r in rows))(
            browser.execute_script(JS_ROWS)))
        if not filtered:  # say what the page showed and what the API holds for the same filter
            pytest.fail(f"the filtered list never showed only belt crossings: url {browser.current_url}, "
                        f"rows {browser.execute_script(JS_ROWS)[:5]}, loaded "
                        f"{browser.execute_script(JS_LOADED)}, "
                        f"API {_api_walk(base, {'camera': 'belt', 'kind': 'line_crossed', 'until': until})[:5]}, "
                        f"crossing {ev['id']} at {ev.get('ts')}, until {until}, "
                        f"console {browser.get_log('browser')[-5:] if hasattr(browser, 'get_log') else '?'}")
        rows = browser.execute_script(JS_ROWS)
        want = _api_walk(base, {"camera": "belt", "kind": "line_crossed", "until": until})
        assert [r[0] for r in rows] == want[:50]
        assert len(want) < len(_api_walk(base, {"until": until}))  # the filter changed the list
        # thumbnails decode
        assert _wait(lambda: browser.execute_script(
            "const i = Array.from(document.querySelectorAll('#rows img.thumb')); return i.length && i.every(x => x.complete && x.naturalWidth > 0)"))

        # the chart has data: the belt's crossings, in and/or out
        assert _wait(lambda: browser.execute_script(
            "const c = document.getElementById('chart'); return +(c.dataset.points || 0) > 0 && c.querySelectorAll('polyline').length > 0"))
        legend = browser.execute_script("return document.getElementById('legend').textContent")
        assert "line_crossed" in legend
        counts = requests.get(base + "/api/events/counts", params={"camera": "belt", "kind": "line_crossed", "until": until},
                              timeout=5).json()
        assert sum(s["total"] for s in counts["series"]) == len(want)

        # export: the CSV the browser downloads holds exactly the filtered list
        browser.execute_script("document.getElementById('export-csv').click()")
        got = _wait(lambda: [p for p in downloads.glob("vigil-events-*.csv")], 20)
        assert got, "no CSV downloaded"
        time.sleep(0.5)
        with open(got[0], newline="") as f:
            exported = [int(r["id"]) for r in csv.DictReader(f)]
        assert exported == want

        contrast = _contrast_problems(browser)
        assert not contrast, "text below 4.5:1 contrast:\n" + "\n".join(map(str, contrast))
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        browser.save_screenshot(str(ARTIFACTS / "review.png"))

        # the detail of the crossing with a clip: full snapshot, data, the clip playing
        browser.get(f"{base}/review?camera=belt&kind=line_crossed&until={until}")
        assert _wait(lambda: browser.execute_script(f"return !!document.querySelector('button.open[data-id=\"{ev['id']}\"]')"))
        browser.execute_script(f"document.querySelector('button.open[data-id=\"{ev['id']}\"]').click()")
        assert _wait(lambda: browser.execute_script(
            "const i = document.getElementById('detail-snapshot');"
            "return document.getElementById('detail').open && i.complete && i.naturalWidth > 0"))
        assert ev["data"]["line"] in browser.execute_script("return document.getElementById('detail-fields').textContent")
        state = _wait(lambda: browser.execute_script(
            "const v = document.getElementById('detail-video');"
            "return v.readyState >= 2 && v.currentTime > 0.2 && !v.error && {t: v.currentTime, w: v.videoWidth, d: v.duration}"), 20)
        assert state, browser.execute_script(
            "const v = document.getElementById('detail-video'); return {rs: v.readyState, t: v.currentTime, "
            "err: v.error && v.error.message, src: v.currentSrc, msg: document.getElementById('detail-clip-msg').textContent}")
        assert state["w"] > 0 and state["d"] > 0
        t1 = state["t"]
        assert _wait(lambda: browser.execute_script("return document.getElementById('detail-video').currentTime") > t1
                     or browser.execute_script("return document.getElementById('detail-video').ended"), 10)
        contrast = _contrast_problems(browser)
        assert not contrast, "text below 4.5:1 contrast in the detail:\n" + "\n".join(map(str, contrast))
        browser.save_screenshot(str(ARTIFACTS / "review-detail.png"))
        assert (ARTIFACTS / "review-detail.png").stat().st_size > 10_000

        # the dashboard's feed: track start/end hidden by default, shown by the toggle
        browser.get(base + "/")
        assert _wait(lambda: browser.execute_script("return document.querySelectorAll('#events li.trk').length > 0"), 30)
        assert _wait(lambda: browser.execute_script("return document.querySelectorAll('#events li:not(.trk)').length > 0"), 30)
        feed = browser.execute_script("""
            const vis = (li) => li.getClientRects().length > 0;
            const li = Array.from(document.querySelectorAll('#events li'));
            return {track_visible: li.filter(l => l.classList.contains('trk') && vis(l)).length,
                    other_visible: li.filter(l => !l.classList.contains('trk') && vis(l)).length};""")
        assert feed["track_visible"] == 0 and feed["other_visible"] > 0, feed
        browser.execute_script("document.getElementById('show-tracks').click()")
        assert browser.execute_script(
            "return Array.from(document.querySelectorAll('#events li.trk')).every(l => l.getClientRects().length > 0)")
        assert browser.execute_script("return document.querySelector('a[href=\"/review\"]') !== null")
