"""/api/memory and /metrics carry the memory breakdown of a running server (runtime/memory.py):
the process figures, a row per camera with its buffers (taken through the camera interface),
the event bus and store, the configured caps; viewers may read it, anonymous clients may not."""
from __future__ import annotations

import re
import sys

import requests

from tests.integration.webutil import CAMERAS, make_config, running_server
from tests.timing import wait_until


def _report(base: str, headers: dict | None = None) -> dict:
    r = requests.get(base + "/api/memory", timeout=10, headers=headers or {})
    assert r.status_code == 200, r.text
    return r.json()


def test_memory_breakdown_in_the_api_and_metrics():
    cfg = make_config(CAMERAS)
    with running_server(cfg) as srv:
        base = srv.base
        # a viewer of the belt: its overlay hub then holds a frame and its JPEG
        with requests.get(base + "/stream/belt.mjpg", stream=True, timeout=10) as stream:
            next(stream.iter_content(4096))

            got: list[dict] = []

            def ready():
                rep = _report(base)
                rows = {(r["component"], r["name"]): r for r in rep["components"]}
                belt = rows[("camera", "belt")]
                got[:] = [rep]
                return belt["parts"].get("overlay_hub.jpeg", 0) > 0 and belt["parts"].get("clips.ring", 0) > 0

            assert wait_until(ready, timeout=20, step=0.3) is not None, \
                f"the belt's hub and clip ring never filled: {got}"
            rep = got[0]
        rows = {(r["component"], r["name"]): r for r in rep["components"]}
        assert {("camera", "cross"), ("camera", "belt"), ("bus", "events")} <= set(rows)
        store = [r for (kind, _), r in rows.items() if kind == "store"]
        assert len(store) == 1 and store[0]["limits"]["queue"] > 0
        belt = rows[("camera", "belt")]
        # the belt's frames: synthetic conveyor, 3 bytes a pixel
        st = requests.get(base + "/api/cameras/belt", timeout=5).json()
        assert st["state"] == "LIVE"
        assert belt["parts"]["capture_slot"] > 100_000
        assert belt["limits"]["clips.ring"] == int(cfg.cameras[1].clips.max_ring_mb * 2**20)
        assert belt["limits"]["clips.encoder_queue"] == int(cfg.cameras[1].clips.max_queue_mb * 2**20)
        assert belt["counts"]["clips.ring_frames"] >= 1
        assert belt["bytes"] == sum(belt["parts"].values())
        assert rows[("bus", "events")]["limits"]["ring"] == 2000
        assert rep["accounted_bytes"] == sum(r["bytes"] for r in rep["components"])
        proc = rep["process"]
        if sys.platform.startswith("linux"):
            assert proc["rss_bytes"] > rep["accounted_bytes"]
            assert set(proc["smaps"]) == {"heap", "anon", "file", "stack", "other"}
            assert rep["trim"]["interval_s"] == cfg.memory.trim_interval_s
        # the same figures in /metrics
        text = requests.get(base + "/metrics", timeout=10).text
        m = re.search(r'^vigil_memory_bytes\{component="camera",name="belt",part="capture_slot"\} (\S+)$',
                      text, re.M)
        assert m and float(m.group(1)) > 100_000, text[:2000]
        assert re.search(r'^vigil_memory_limit\{component="camera",name="belt",part="clips.ring"\} ', text, re.M)
        assert re.search(r'^vigil_memory_items\{component="bus",name="events",part="ring"\} ', text, re.M)
        if sys.platform.startswith("linux"):
            rss = re.search(r'^vigil_process_memory_bytes\{kind="rss"\} (\S+)$', text, re.M)
            assert rss and float(rss.group(1)) > 10 * 2**20
            if proc["malloc"] is not None:
                assert re.search(r'^vigil_malloc_bytes\{kind="in_use"\} ', text, re.M)


def test_memory_route_needs_a_viewer(monkeypatch):
    monkeypatch.setenv("VIGIL_T_MEM_PW", "viewer-password-1")
    cfg = make_config(CAMERAS[:1], token="admin-token-123",
                      users=[{"name": "vee", "role": "viewer", "secret": "env:VIGIL_T_MEM_PW"}])
    with running_server(cfg) as srv:
        assert requests.get(srv.base + "/api/memory", timeout=5).status_code == 401
        rep = _report(srv.base, {"Authorization": requests.auth._basic_auth_str("vee", "viewer-password-1")})
        assert [r["name"] for r in rep["components"] if r["component"] == "camera"] == ["cross"]
