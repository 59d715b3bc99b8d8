"""Event payloads are complete and the same in the API, SSE and webhooks: a line crossing
carries its snapshot link and its clip link, absolute when server.public_url is set."""
from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import requests

from core.config import WebhookConfig
from tests.integration.webutil import make_config, running_server
from tests.timing import wait_until

PUBLIC = "https://vigil.example.test/cams"


class _Hook(BaseHTTPRequestHandler):
    got: list[dict] = []

    def do_POST(self):  # noqa: N802 - http.server's name
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).got.append(json.loads(body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *a):  # quiet
        pass


def test_line_crossing_payload_is_the_same_everywhere():
    hook = ThreadingHTTPServer(("127.0.0.1", 0), _Hook)
    threading.Thread(target=hook.serve_forever, daemon=True).start()
    _Hook.got = []
    cfg = make_config(public_url=PUBLIC)
    cfg = cfg.model_copy(update={"events": cfg.events.model_copy(update={"webhooks": [
        WebhookConfig(url=f"http://127.0.0.1:{hook.server_port}/hook", kinds=["line_crossed"])]})})
    try:
        with running_server(cfg) as srv:
            b = srv.base
            sse: list[dict] = []

            def listen():
                with requests.get(b + "/api/events/stream?kind=line_crossed", stream=True, timeout=30) as r:
                    for line in r.iter_lines(decode_unicode=True):
                        if line and line.startswith("data: "):
                            sse.append(json.loads(line[6:]))
                            return
            t = threading.Thread(target=listen, daemon=True)
            t.start()
            assert wait_until(lambda: _Hook.got and sse, 40) is not None, "no line crossing reached the sinks"
            hooked = _Hook.got[0]

            def stored():
                rows = requests.get(b + "/api/events?kind=line_crossed&limit=100", timeout=5).json()["events"]
                return next((r for r in rows if r["id"] == hooked["id"]), None)
            assert wait_until(stored, 10) is not None  # the store commits in small groups
            api = stored()
            streamed = next((e for e in sse if e["id"] == hooked["id"]), None)
    finally:
        hook.shutdown()
    assert hooked["snapshot_url"] == f"{PUBLIC}/api/events/{hooked['id']}/snapshot.jpg"
    assert hooked["data"]["clip"].startswith(f"{PUBLIC}/api/clips/belt/")
    assert hooked["label"] is not None and hooked["box"] is not None
    assert api["snapshot_url"] == hooked["snapshot_url"] and api["data"]["clip"] == hooked["data"]["clip"]
    for k in ("kind", "camera", "track_id", "label", "box", "data", "frame_seq"):
        assert api[k] == hooked[k], k
    if streamed is not None:  # the SSE reader may have seen an earlier crossing first
        assert streamed == hooked
    else:
        assert sse[0]["snapshot_url"].startswith(f"{PUBLIC}/api/events/")
