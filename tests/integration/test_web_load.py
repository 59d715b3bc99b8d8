"""Many viewers: 50 reading clients and 10 that connect and never read. One encode per
frame, published fps within 10 %, the API answers fast meanwhile, threads released after."""
from __future__ import annotations

import socket
import statistics
import threading
import time

import pytest
import requests

from tests.integration.webutil import make_config, running_server


def _published(srv, cam, seconds):
    p = srv.vigil.pipelines[cam]
    a = p.publish_stage.processed
    time.sleep(seconds)
    return (p.publish_stage.processed - a) / seconds


@pytest.mark.slow
def test_fifty_readers_ten_stalled():
    cfg = make_config(cameras=[{"name": "cross", "source": "synthetic:crossing", "detector": "none"}],
                      threads=96)
    with running_server(cfg) as srv:
        host, port = "127.0.0.1", srv.port
        # baseline with one viewer so the overlay is drawn (same work per frame as under load)
        one = requests.get(srv.base + "/stream/cross.mjpg", stream=True, timeout=10)
        it = one.iter_content(8192)
        stop = threading.Event()

        def drain(resp_iter):
            try:
                for _ in resp_iter:
                    if stop.is_set():
                        break
            except Exception:  # noqa: BLE001 - the test closes the response under this thread
                pass

        threading.Thread(target=drain, args=(it,), daemon=True).start()
        time.sleep(1.0)
        base_fps = _published(srv, "cross", 3.0)
        threads_before = threading.active_count()

        socks = []
        for i in range(60):
            s = socket.create_connection((host, port))
            s.sendall(b"GET /stream/cross.mjpg HTTP/1.1\r\nHost: x\r\n\r\n")
            s.setblocking(False)
            socks.append(s)
        readers = socks[:50]  # the other 10 never read
        got = [0]

        def read_all():
            import selectors
            sel = selectors.DefaultSelector()
            for s in readers:
                sel.register(s, selectors.EVENT_READ)
            while not stop.is_set():
                for key, _ in sel.select(0.2):
                    try:
                        got[0] += len(key.fileobj.recv(1 << 16))
                    except (BlockingIOError, OSError):
                        pass

        rt = threading.Thread(target=read_all, daemon=True)
        rt.start()
        time.sleep(2.0)
        hub = srv.vigil.pipelines["cross"].overlay_hub
        e0, g0 = hub.encodes, hub.published
        lat = []
        t_end = time.monotonic() + 4.0
        while time.monotonic() < t_end:
            t0 = time.perf_counter()
            r = requests.get(srv.base + "/api/cameras/cross", timeout=5)
            lat.append(time.perf_counter() - t0)
            assert r.status_code == 200
            time.sleep(0.05)
        load_fps = _published(srv, "cross", 3.0)
        e1, g1 = hub.encodes, hub.published
        viewers = hub.viewers
        assert viewers >= 60
        assert (e1 - e0) / max(1, g1 - g0) <= 1.02, "one JPEG encode per published frame"
        assert load_fps >= 0.9 * base_fps, (load_fps, base_fps)
        p95 = statistics.quantiles(lat, n=20)[18]
        assert p95 < 0.1, f"API p95 {p95 * 1000:.1f} ms"
        assert got[0] > 1_000_000
        # closing the clients releases their server threads and viewer slots
        stop.set()
        for s in socks:
            s.close()
        one.close()
        slots = srv.app.extensions["vigil_streams"]
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and (hub.viewers > 0 or slots.open > 0):
            time.sleep(0.1)
        assert hub.viewers == 0 and slots.open == 0, (hub.viewers, slots.open)
        assert srv._server.task_dispatcher.active_count == 0 if hasattr(srv._server.task_dispatcher, "active_count") else True
        assert threading.active_count() <= threads_before + 2
