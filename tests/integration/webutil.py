"""A real Vigil server (waitress on a free loopback port) for integration tests."""
from __future__ import annotations

import contextlib
import socket
import threading
import time
from typing import Any, Iterator

import requests

from core.config import parse_config
from web.server import VigilServer

CAMERAS = [
    {"name": "cross", "source": "synthetic:crossing", "detector": "none", "seed": 1},
    {"name": "belt", "source": "synthetic:conveyor", "detector": "motion", "seed": 2,
     "detector_params": {"warmup_frames": 40, "downscale": 2, "var_threshold": 36, "merge_distance": 16},
     "lines": [{"name": "gate", "points": [[0.5, 0.05], [0.5, 0.95]], "normalized": True}],
     "clips": {"kinds": ["line_crossed"], "pre_roll_s": 0.5, "post_roll_s": 0.5}},
]


def make_config(cameras: list[dict] | None = None, data_dir: str | None = None, **server: Any):
    import tempfile
    srv = {"host": "127.0.0.1", "port": 0, "threads": 32}
    srv.update(server)
    return parse_config({"server": srv, "cameras": cameras or CAMERAS,
                         "paths": {"data": data_dir or tempfile.mkdtemp(prefix="vigil-test-data-")},
                         "tracker": {"min_hits": 2}})


@contextlib.contextmanager
def running_server(cfg, wait_ready: bool = True) -> Iterator[VigilServer]:
    srv = VigilServer(cfg)
    srv.bind()
    srv.start_pipelines()
    t = threading.Thread(target=srv.run, name="test-server", daemon=True)
    t.start()
    base = srv.url.rstrip("/")
    srv.base = base  # type: ignore[attr-defined]
    headers = {"Authorization": f"Bearer {cfg.server.token}"} if cfg.server.token else {}
    # ready (200 from /readyz), or with wait_ready=False only serving (a test of a server whose
    # cameras all fail would otherwise sit out the whole deadline)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            r = requests.get(base + ("/readyz" if wait_ready else "/healthz"), timeout=2, headers=headers)
            if r.status_code == 200:
                break
        except requests.RequestException:
            pass
        time.sleep(0.1)
    try:
        yield srv
    finally:
        srv.shutdown(timeout=2.0)
        t.join(3.0)


def read_mjpeg_parts(url: str, n: int, timeout: float = 10.0, **kw) -> list[dict]:
    """Read n parts of an MJPEG stream with their headers (seq, ts) and JPEG bytes."""
    parts = []
    with requests.get(url, stream=True, timeout=timeout, **kw) as r:
        r.raise_for_status()
        buf = b""
        it = r.iter_content(chunk_size=8192)
        while len(parts) < n:
            while b"\r\n\r\n" not in buf:
                buf += next(it)
            head, buf = buf.split(b"\r\n\r\n", 1)
            lines = head.decode("latin-1").split("\r\n")
            hdr = {}
            for ln in lines:
                if ":" in ln:
                    k, v = ln.split(":", 1)
                    hdr[k.strip().lower()] = v.strip()
            length = int(hdr["content-length"])
            while len(buf) < length + 2:
                buf += next(it)
            data, buf = buf[:length], buf[length + 2:]
            parts.append({"seq": int(hdr["x-frame-seq"]), "ts": float(hdr["x-capture-ts"]),
                          "data": data, "headers": hdr})
    return parts


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
