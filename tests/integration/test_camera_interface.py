"""The web layer sees cameras only through the camera interface (core/camera.py), and what it
serves through it tells the truth: readiness with failed cameras, capture times clients can
compare, sink failures in /api/sinks and /metrics."""
from __future__ import annotations

import ast
import pickle
import socket
import time
from pathlib import Path

import requests

from core.camera import Camera, CameraStatus, TrackList
from core.config import WebhookConfig
from tests.integration.webutil import make_config, read_mjpeg_parts, running_server
from tests.timing import wait_until

ROOT = Path(__file__).resolve().parents[2]
# what a CameraPipeline has and the web layer must not touch (it has the interface)
PIPELINE_INSIDES = {"pipelines", "analyzer", "overlay_hub", "exposure_hub", "exposure",
                    "latest_tracks", "clips", "detect_stage", "track_stage", "publish_stage",
                    "latency", "failed"}


def test_web_layer_uses_only_the_camera_interface():
    bad = []
    for f in sorted((ROOT / "web").rglob("*.py")):
        tree = ast.parse(f.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr in PIPELINE_INSIDES:
                bad.append(f"{f.relative_to(ROOT)}:{node.lineno} .{node.attr}")
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("stream"):
                bad.append(f"{f.relative_to(ROOT)}:{node.lineno} imports {node.module}")
    assert not bad, "web/ reaches past the camera interface:\n" + "\n".join(bad)


def _closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_values_are_plain_data_and_readiness_is_honest(monkeypatch):
    """A camera that could not be built and one whose source is gone: /readyz says ready only
    because one camera works, and says it is degraded, naming them."""
    import runtime.vigil as rv
    real = rv.CameraPipeline

    def build(cam, cfg, sink=None, detector=None):
        if cam.name == "broken":
            raise RuntimeError("model file not found: /no/such/model.onnx")
        return real(cam, cfg, sink=sink, detector=detector)

    monkeypatch.setattr(rv, "CameraPipeline", build)
    cams = [{"name": "cross", "source": "synthetic:crossing", "detector": "none"},
            {"name": "broken", "source": "synthetic:crossing", "detector": "none"},
            {"name": "gone", "source": f"rtsp://127.0.0.1:{_closed_port()}/x", "detector": "none",
             "open_timeout_s": 0.5, "reconnect": {"max_attempts": 1}}]
    cfg = make_config(cams)
    cfg = cfg.model_copy(update={"events": cfg.events.model_copy(update={"webhooks": [
        WebhookConfig(url=f"http://127.0.0.1:{_closed_port()}/h", retries=0, timeout_s=0.5)]})})
    with running_server(cfg) as srv:
        b = srv.base
        assert wait_until(lambda: requests.get(b + "/api/cameras/gone", timeout=5).json()["state"]
                          == "FAILED", timeout=20) is not None
        r = requests.get(b + "/readyz", timeout=5)
        body = r.json()
        assert r.status_code == 200 and body["ready"] and body["degraded"], body
        assert sorted(body["failed"]) == ["broken", "gone"] and body["starting"] == []
        assert body["cameras"] == {"cross": "LIVE", "broken": "FAILED", "gone": "FAILED"}

        for cam in srv.vigil.cameras.values():  # the interface's values survive pickling
            assert isinstance(cam, Camera)
            st, tr = cam.status(), cam.tracks()
            assert isinstance(st, CameraStatus) and isinstance(tr, TrackList)
            assert pickle.loads(pickle.dumps(st)) == st and pickle.loads(pickle.dumps(tr)) == tr
        broken = requests.get(b + "/api/cameras/broken", timeout=5).json()
        assert broken["capture"]["last_error"].endswith("model file not found: /no/such/model.onnx")
        assert requests.get(b + "/stream/broken.mjpg", timeout=5).status_code == 503
        assert requests.get(b + "/snapshot/broken.jpg", timeout=5).status_code == 503
        assert requests.post(b + "/api/cameras/broken/exposure/reset", timeout=5).status_code == 409
        assert requests.get(b + "/api/cameras/broken/tracks", timeout=5).json()["tracks"] == []

        # X-Capture-Ts: epoch seconds of the capture, comparable with this clock
        part = read_mjpeg_parts(b + "/stream/cross.mjpg", 1)[0]
        assert abs(part["ts"] - time.time()) < 10, part["ts"]
        snap = requests.get(b + "/snapshot/cross.jpg", timeout=10)
        assert abs(float(snap.headers["X-Capture-Ts"]) - time.time()) < 10

        # the webhook to a closed port fails loudly: /api/sinks and /metrics say so
        assert wait_until(lambda: requests.get(b + "/api/sinks", timeout=5).json()["sinks"][0]
                          ["failed"] > 0, timeout=20) is not None
        sink = requests.get(b + "/api/sinks", timeout=5).json()["sinks"][0]
        assert sink["kind"] == "webhook" and not sink["healthy"]
        assert "ConnectionRefusedError" in sink["last_error"]
        m = requests.get(b + "/metrics", timeout=5).text
        assert 'vigil_sink_events_total{name="http://127.0.0.1' in m and 'outcome="failed"' in m
        assert 'vigil_camera_state{camera="broken",state="FAILED"} 1.0' in m


def test_not_ready_when_nothing_works():
    cams = [{"name": "gone", "source": f"rtsp://127.0.0.1:{_closed_port()}/x", "detector": "none",
             "open_timeout_s": 0.5, "reconnect": {"max_attempts": 1}}]
    with running_server(make_config(cams), wait_ready=False) as srv:
        b = srv.base
        assert wait_until(lambda: requests.get(b + "/api/cameras/gone", timeout=5).json()["state"]
                          == "FAILED", timeout=20) is not None
        r = requests.get(b + "/readyz", timeout=5)
        assert r.status_code == 503 and r.json()["ready"] is False and r.json()["failed"] == ["gone"]
