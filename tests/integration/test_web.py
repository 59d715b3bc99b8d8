"""The dashboard server end to end: real waitress, real pipelines on synthetic scenes."""
from __future__ import annotations

import base64
import threading
import time

import cv2
import numpy as np
import pytest
import requests

from tests.integration.webutil import make_config, read_mjpeg_parts, running_server
from tests.timing import wait_until


@pytest.fixture(scope="module")
def server():
    with running_server(make_config()) as srv:
        yield srv


def test_health_ready_and_cameras(server):
    b = server.base
    assert requests.get(b + "/healthz", timeout=5).json()["ok"] is True
    r = requests.get(b + "/readyz", timeout=5)
    assert r.status_code == 200 and r.json()["ready"]
    cams = requests.get(b + "/api/cameras", timeout=5).json()["cameras"]
    assert [c["name"] for c in cams] == ["cross", "belt"]
    one = requests.get(b + "/api/cameras/belt", timeout=5).json()
    assert one["state"] == "LIVE"
    assert {"detect", "track", "publish"} <= set(one["stages"])
    assert "p95" in one["latency_ms"] and "dropped" in one["capture"]


def test_mjpeg_streams_decode_and_seq_increases(server):
    for path in ("/stream/cross.mjpg", "/exposure/cross.mjpg", "/stream/belt.mjpg?width=320&fps=10"):
        parts = read_mjpeg_parts(server.base + path, 5)
        seqs = [p["seq"] for p in parts]
        assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs), (path, seqs)
        img = cv2.imdecode(np.frombuffer(parts[-1]["data"], np.uint8), cv2.IMREAD_COLOR)
        assert img is not None and img.size > 0
        if "width=320" in path:
            assert img.shape[1] == 320


def test_opencv_reads_the_stream_as_a_client(server):
    cap = cv2.VideoCapture(server.base + "/stream/cross.mjpg", cv2.CAP_FFMPEG)
    try:
        assert cap.isOpened()
        frames = [cap.read() for _ in range(5)]
    finally:
        cap.release()
    assert all(ok for ok, _ in frames)
    assert frames[-1][1].shape[2] == 3


def test_snapshots(server):
    for path in ("/snapshot/belt.jpg", "/exposure/belt.jpg"):
        r = requests.get(server.base + path, timeout=10)
        assert r.status_code == 200 and r.headers["Content-Type"] == "image/jpeg"
        assert int(r.headers["X-Frame-Seq"]) >= 0
        assert cv2.imdecode(np.frombuffer(r.content, np.uint8), cv2.IMREAD_COLOR) is not None


def test_tracks_and_events(server):
    deadline = time.monotonic() + 15
    tracks = []
    while time.monotonic() < deadline and not tracks:
        tracks = requests.get(server.base + "/api/cameras/belt/tracks", timeout=5).json()["tracks"]
        time.sleep(0.2)
    assert tracks, "motion detector + tracker should follow parts on the belt"
    assert {"track_id", "xyxy", "coasting", "score"} <= set(tracks[0])
    evs = requests.get(server.base + "/api/events?camera=belt&limit=5", timeout=5).json()["events"]
    assert evs and all(e["camera"] == "belt" for e in evs)


def test_line_crossings_are_stored_with_snapshots(server):
    deadline = time.monotonic() + 30
    evs = []
    while time.monotonic() < deadline and not evs:
        evs = requests.get(server.base + "/api/events?camera=belt&kind=line_crossed", timeout=5).json()["events"]
        time.sleep(0.5)
    assert evs, "parts crossing the belt's line should be counted"
    ev = evs[0]
    assert ev["data"]["line"] == "gate" and ev["data"]["direction"] in ("in", "out")
    assert ev["snapshot_url"]
    r = requests.get(server.base + ev["snapshot_url"], timeout=5)
    assert r.status_code == 200 and cv2.imdecode(np.frombuffer(r.content, np.uint8), cv2.IMREAD_COLOR) is not None
    info = requests.get(server.base + "/api/cameras/belt", timeout=5).json()
    assert info["counters"]["line gate in"] + info["counters"]["line gate out"] >= 1
    assert server.vigil.store.count(camera="belt", kind="line_crossed") >= 1
    assert requests.get(server.base + "/api/events/999999/snapshot.jpg", timeout=5).status_code == 404
    # the crossing also started an mp4 clip (pre-roll + post-roll), linked from the event
    clip = ev["data"]["clip"]
    assert clip.startswith("/api/clips/belt/")
    # from the moment the event is out, the link answers: 202 "recording" (with Retry-After)
    # until the file is readable, then 200; never a 404 for a clip being written
    deadline = time.monotonic() + 10
    r, codes = None, []
    while time.monotonic() < deadline:
        r = requests.get(server.base + clip, timeout=5)
        codes.append(r.status_code)
        if r.status_code == 200:
            break
        assert r.status_code == 202, (r.status_code, r.text)
        assert r.json()["status"] == "recording" and int(r.headers["Retry-After"]) >= 1
        time.sleep(0.3)
    assert set(codes) <= {200, 202}, codes
    assert r is not None and r.status_code == 200 and r.headers["Content-Type"] == "video/mp4"
    assert r.content[4:8] == b"ftyp"
    assert requests.get(server.base + "/api/clips/belt/..%2Fx.mp4", timeout=5).status_code == 404


def test_sse_delivers_an_event(server):
    got = []
    with requests.get(server.base + "/api/events/stream", stream=True, timeout=20) as r:
        assert r.headers["Content-Type"].startswith("text/event-stream")
        for line in r.iter_lines():
            if line.startswith(b"data: "):
                got.append(line)
                break
    assert got


def test_errors_are_json(server):
    b = server.base
    r = requests.get(b + "/api/cameras/nope", timeout=5)
    assert r.status_code == 404 and "unknown camera" in r.json()["error"]
    assert requests.get(b + "/stream/nope.mjpg", timeout=5).status_code == 404
    r = requests.get(b + "/api/events?limit=abc", timeout=5)
    assert r.status_code == 400 and r.json()["parameter"] == "limit"
    r = requests.get(b + "/api/events?kind=party", timeout=5)
    assert r.status_code == 400 and r.json()["parameter"] == "kind"
    r = requests.get(b + "/stream/cross.mjpg?width=5", timeout=5)
    assert r.status_code == 400 and r.json()["parameter"] == "width"
    r = requests.get(b + "/no/such/route", timeout=5)
    assert r.status_code == 404 and "error" in r.json()
    for bad in ("/snapshot/..%2F..%2Fetc%2Fpasswd.jpg", "/snapshot/../config.jpg",
                "/exposure/%2e%2e.jpg", "/api/cameras/..%2f"):
        r = requests.get(b + bad, timeout=5)
        assert r.status_code in (404, 400), bad
        assert "root:" not in r.text


def test_exposure_reset_and_metrics(server):
    r = requests.post(server.base + "/api/cameras/cross/exposure/reset", timeout=5)
    assert r.status_code == 200 and r.json()["reset"] is True
    m = requests.get(server.base + "/metrics", timeout=5).text
    for name in ("vigil_fps", "vigil_latency_seconds_bucket", "vigil_dropped_frames_total",
                 "vigil_errors_total", "vigil_viewers", "vigil_tracks", "vigil_reconnects_total",
                 "vigil_detector_ms"):
        assert name in m, name


def test_dashboard_page(server):
    html = requests.get(server.base + "/", timeout=5).text
    assert "/stream/cross.mjpg" in html and "/stream/belt.mjpg" in html
    assert "app.js" in html and "http" not in html.split("<body>")[1].replace("http-equiv", "")


TOKEN = "correct-horse-battery"


@pytest.fixture(scope="module")
def secured():
    with running_server(make_config(cameras=[{"name": "cross", "source": "synthetic:crossing",
                                              "detector": "none"}], token=TOKEN)) as srv:
        yield srv


@pytest.mark.parametrize("path", ["/", "/api/cameras", "/api/cameras/cross", "/api/cameras/cross/tracks",
                                  "/api/events", "/metrics", "/readyz", "/snapshot/cross.jpg",
                                  "/exposure/cross.jpg"])
def test_auth_required_everywhere_but_healthz(secured, path):
    b = secured.base
    none = requests.get(b + path, timeout=5, allow_redirects=False)
    assert none.status_code in (401, 302)
    wrong = requests.get(b + path, timeout=5, headers={"Authorization": "Bearer nope-nope-nope"},
                         allow_redirects=False)
    assert wrong.status_code in (401, 302)
    right = requests.get(b + path, timeout=10, headers={"Authorization": f"Bearer {TOKEN}"})
    assert right.status_code == 200, (path, right.text[:200])
    basic = base64.b64encode(f"vigil:{TOKEN}".encode()).decode()
    assert requests.get(b + path, timeout=10, headers={"Authorization": f"Basic {basic}"}).status_code == 200
    assert requests.get(b + "/healthz", timeout=5).status_code == 200


def test_auth_streams_basic_in_url_and_login_cookie(secured):
    host = secured.base.split("://")[1]
    cap = cv2.VideoCapture(f"http://vigil:{TOKEN}@{host}/stream/cross.mjpg", cv2.CAP_FFMPEG)
    try:
        ok, img = cap.read()
    finally:
        cap.release()
    assert ok and img is not None
    s = requests.Session()
    r = s.post(secured.base + "/login", data={"token": "wrong"}, timeout=5)
    assert r.status_code == 401
    r = s.post(secured.base + "/login", data={"token": TOKEN}, timeout=5, allow_redirects=False)
    assert r.status_code == 302 and "vigil_session" in r.headers["Set-Cookie"]
    assert TOKEN not in r.headers["Set-Cookie"]
    assert s.get(secured.base + "/api/cameras", timeout=5).status_code == 200
    parts = read_mjpeg_parts(secured.base + "/stream/cross.mjpg", 2, cookies=s.cookies)
    assert len(parts) == 2


def test_shutdown_with_open_streams_within_two_seconds():
    cfg = make_config(cameras=[{"name": "cross", "source": "synthetic:crossing", "detector": "none"}])
    with running_server(cfg) as srv:
        done = []
        hub = srv.vigil.pipelines["cross"].overlay_hub

        def viewer():
            try:
                with requests.get(srv.base + "/stream/cross.mjpg", stream=True, timeout=10) as r:
                    for _ in r.iter_content(4096):
                        pass
            except requests.RequestException:
                pass
            done.append(1)

        ts = [threading.Thread(target=viewer, daemon=True) for _ in range(4)]
        for t in ts:
            t.start()
        # the four streams are open (served by the hub) before the shutdown, however slow the box
        assert wait_until(lambda: hub.viewers >= 4, 15) is not None, hub.viewers
        before = threading.active_count()
        t0 = time.monotonic()
        assert srv.shutdown(timeout=2.0)
        took = time.monotonic() - t0
        for t in ts:
            t.join(3)
        print(f"\nshutdown with 4 open streams: {took:.2f} s")
        # shutdown() bounds its own waits by its timeout (2 s): 0.5 s is for the wake-ups
        assert took < 2.5, took
        assert len(done) == 4
    # the server's threads (waitress workers, pipeline, the serving thread) end: polled, as
    # joins of threads that are already told to stop can take a moment on a loaded machine
    assert wait_until(lambda: threading.active_count() < before, 5) is not None, \
        [t.name for t in threading.enumerate()]



def _ends_within(chunks, seconds: float) -> bool:
    """Read a streaming response's chunk iterator until the server ends it; False if it is
    still open after `seconds`."""
    got: dict[str, bool] = {}

    def drain() -> None:
        try:
            for _ in chunks:
                if got.get("stop"):
                    return
        except requests.RequestException:
            pass  # the server closed the connection: ended too
        except AttributeError:  # urllib3 reading a response the test has closed meanwhile
            if got.get("stop"):
                return
            raise
        got["ended"] = True

    t = threading.Thread(target=drain, daemon=True)
    t.start()
    t.join(seconds)
    got["stop"] = True
    return got.get("ended", False)


def test_signing_out_ends_the_sessions_open_streams(secured):
    """An MJPEG stream and an SSE stream opened with a session cookie end within a couple of
    seconds of that session being signed out (web.app SESSION_RECHECK_S); a stream opened with
    a Bearer token at the same time goes on."""
    s = requests.Session()
    r = s.post(secured.base + "/login", data={"token": TOKEN}, timeout=5, allow_redirects=False)
    assert r.status_code == 302
    mjpeg = s.get(secured.base + "/stream/cross.mjpg", stream=True, timeout=10)
    sse = s.get(secured.base + "/api/events/stream", stream=True, timeout=10)
    other = requests.get(secured.base + "/stream/cross.mjpg", stream=True, timeout=10,
                         headers={"Authorization": f"Bearer {TOKEN}"})
    try:
        assert mjpeg.status_code == sse.status_code == other.status_code == 200
        m_it, s_it, o_it = (x.iter_content(4096) for x in (mjpeg, sse, other))
        assert b"--frame" in next(m_it) and next(s_it) and b"--frame" in next(o_it)
        assert s.post(secured.base + "/logout", timeout=5, allow_redirects=False).status_code == 303
        t0 = time.monotonic()
        assert _ends_within(m_it, 5.0), "the MJPEG stream outlived its signed-out session"
        assert _ends_within(s_it, 5.0), "the SSE stream outlived its signed-out session"
        print(f"\nsession streams ended {time.monotonic() - t0:.2f} s after the sign-out")
        assert not _ends_within(o_it, 2.5), "a Bearer-token stream ended with another's session"
    finally:
        for resp in (mjpeg, sse, other):
            resp.close()
