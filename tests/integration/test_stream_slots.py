"""A viewer that goes away frees its stream slot (and server thread) at once, not at the next
frame: waitress watches the connection while the stream runs and the app cancels the viewer
when it closes. The camera publishes at 1 fps (and one stream is capped at 0.2 fps), so a
slot freed within a second was not freed by a failed write of the next frame (before the fix
a dropped viewer kept its slot 2-3 frame intervals: 2-3 s here, 5-15 s at 0.2 fps). The cap
still does its job: beyond server.threads - 8 open streams a 503, /healthz answers meanwhile."""
from __future__ import annotations

import socket
import time

import pytest
import requests

from tests.fault.util import serve, wait_until
from tests.integration.webutil import make_config

RELEASE_S = 1.0  # generous: the release takes milliseconds; the camera's next frame is ~1 s away


@pytest.fixture(scope="module")
def slow_cam():
    cfg = make_config(cameras=[{"name": "cross", "source": "synthetic:crossing?fps=1",
                                "detector": "none"}], threads=12)  # 4 stream slots
    with serve(cfg) as srv:
        slots = srv.app.extensions["vigil_streams"]
        hub = srv.vigil.pipelines["cross"].overlay_hub
        assert slots.limit == 4
        yield srv, slots, hub


def _open(port: int, path: str, rcvbuf: int | None = None) -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.settimeout(10)
    s.connect(("127.0.0.1", port))
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
    return s


def _read_head(s: socket.socket) -> tuple[int, bytes]:
    """(status, bytes already read after the response head)."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        d = s.recv(65536)
        assert d, f"connection closed after {buf!r}"
        buf += d
    head, _, rest = buf.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), rest


def _read_part(s: socket.socket, buf: bytes = b"") -> bytes:
    """Read until one whole MJPEG part (chunked transfer encoding undone loosely: the part's
    headers and Content-Length are found in the raw bytes) has arrived; returns the rest."""
    while True:
        i = buf.find(b"--frame\r\n")
        if i >= 0:
            j = buf.find(b"\r\n\r\n", i)
            if j >= 0:
                head = buf[i:j].split(b"\r\n")
                cl = next(h for h in head if h.lower().startswith(b"content-length:"))
                n = int(cl.split(b":")[1])
                if len(buf) >= j + 4 + n:
                    return buf[j + 4 + n:]
        d = s.recv(65536)
        assert d, "stream ended"
        buf += d


def _close(s: socket.socket, reset: bool) -> None:
    if reset:  # abortive close (RST), like a killed tab
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    s.close()


def _released(slots, hub, open_before: int, viewers_before: int) -> float | None:
    return wait_until(lambda: slots.open == open_before and hub.viewers == viewers_before,
                      RELEASE_S, 0.005)


@pytest.mark.parametrize("reset", [False, True], ids=["fin", "rst"])
@pytest.mark.parametrize("path", ["/stream/cross.mjpg", "/stream/cross.mjpg?fps=0.2"],
                         ids=["1fps", "capped"])
def test_dropped_viewer_frees_its_slot_before_the_next_frame(slow_cam, path, reset):
    srv, slots, hub = slow_cam
    assert wait_until(lambda: slots.open == 0 and hub.viewers == 0, 5) is not None
    s = _open(srv.port, path)
    status, rest = _read_head(s)
    assert status == 200
    _read_part(s, rest)
    assert slots.open == 1 and hub.viewers == 1
    published = hub.published
    t0 = time.monotonic()
    _close(s, reset)
    dt = _released(slots, hub, 0, 0)
    assert dt is not None, (f"a dropped viewer still holds its slot {time.monotonic() - t0:.2f} s "
                            f"after closing (open={slots.open}, viewers={hub.viewers})")
    # on an idle machine the slot is back before the camera's next frame (~1 s away), so no
    # write to the dead socket was needed; reported, not asserted (it depends on timing)
    print(f"slot released {dt * 1000:.1f} ms after the close; frames published meanwhile: "
          f"{hub.published - published}")


def test_stalled_viewer_that_closes_frees_its_slot(slow_cam):
    """A viewer that stopped reading (its server-side buffer is not empty) and then closes."""
    srv, slots, hub = slow_cam
    assert wait_until(lambda: slots.open == 0, 5) is not None
    s = _open(srv.port, "/stream/cross.mjpg", rcvbuf=4096)
    assert wait_until(lambda: slots.open == 1 and hub.stats()["frames_sent"] > 0, 10) is not None
    time.sleep(2.5)  # a few ~40 KB parts, unread: the kernel buffers fill, waitress's outbuf grows
    _close(s, reset=False)  # unread data: Linux sends a reset
    assert _released(slots, hub, 0, 0) is not None, (slots.open, hub.viewers)


def test_cap_refuses_beyond_limit_and_frees_at_once(slow_cam):
    srv, slots, hub = slow_cam
    assert wait_until(lambda: slots.open == 0, 5) is not None
    socks = []
    try:
        for _ in range(slots.limit):
            s = _open(srv.port, "/stream/cross.mjpg")
            status, rest = _read_head(s)
            assert status == 200
            socks.append(s)
        assert slots.open == slots.limit
        refused = slots.refused
        extra = _open(srv.port, "/stream/cross.mjpg")
        status, _ = _read_head(extra)
        extra.close()
        assert status == 503 and slots.refused == refused + 1
        # the reserve: the API answers while every stream slot is taken
        for _ in range(5):
            assert requests.get(srv.base + "/healthz", timeout=2).status_code == 200
        m = requests.get(srv.base + "/metrics", timeout=5).text
        assert f"vigil_stream_slots_open {float(slots.limit)}" in m
        assert "vigil_stream_slots_limit 4.0" in m and "vigil_streams_refused_total" in m
        # every viewer drops (half with a reset): all slots back at once, a new viewer served
        t0 = time.monotonic()
        for i, s in enumerate(socks):
            _close(s, reset=bool(i % 2))
        socks = []
        assert _released(slots, hub, 0, 0) is not None, (slots.open, hub.viewers)
        assert time.monotonic() - t0 < RELEASE_S + 0.5
        s = _open(srv.port, "/stream/cross.mjpg")
        socks.append(s)
        status, rest = _read_head(s)
        assert status == 200
        _read_part(s, rest)
    finally:
        for s in socks:
            s.close()
    assert wait_until(lambda: slots.open == 0, 5) is not None


def test_event_stream_slot_freed_when_client_goes(slow_cam):
    srv, slots, hub = slow_cam
    assert wait_until(lambda: slots.open == 0, 5) is not None
    s = _open(srv.port, "/api/events/stream")
    status, rest = _read_head(s)
    assert status == 200
    buf = rest
    while b"retry:" not in buf:
        buf += s.recv(4096)
    assert slots.open == 1
    _close(s, reset=False)
    # the SSE loop checks for a gone client every 0.25 s (it used to wait for a 5 s keepalive)
    assert wait_until(lambda: slots.open == 0, RELEASE_S, 0.01) is not None, slots.open


def test_api_client_that_half_closes_still_gets_its_answer(slow_cam):
    """Only streams watch their socket while they run: a plain request whose client shuts its
    sending side down after the request (nc -N, some probes) is still answered."""
    srv, _slots, _hub = slow_cam
    for _ in range(20):
        s = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
        s.sendall(b"GET /api/cameras HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        s.shutdown(socket.SHUT_WR)
        buf = b""
        while True:
            d = s.recv(65536)
            if not d:
                break
            buf += d
        s.close()
        assert buf.startswith(b"HTTP/1.1 200") and b'"cameras"' in buf, buf[:200]
