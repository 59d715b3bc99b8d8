"""Viewer scaling: published fps, server CPU %, JPEG encodes per frame and bytes sent with
1, 10, 50 and 100 concurrent MJPEG viewers of one camera, all in the same run.

The server (waitress + pipeline) runs in this process; the viewers run in a separate
client process (one thread, non-blocking sockets) so that client work does not count as
server CPU or compete for the server's GIL.
"""
from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from typing import Any

import psutil

from bench.common import machine, serving

CLIENT = r"""
import selectors, socket, sys, time, json
host, port, n, seconds, path = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), sys.argv[5]
sel = selectors.DefaultSelector()
socks = []
for i in range(n):
    s = socket.create_connection((host, port))
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
    s.setblocking(False)
    sel.register(s, selectors.EVENT_READ)
    socks.append(s)
nbytes = 0
parts = 0
end = time.monotonic() + seconds
while time.monotonic() < end:
    for key, _ in sel.select(timeout=0.2):
        try:
            data = key.fileobj.recv(1 << 16)
        except BlockingIOError:
            continue
        nbytes += len(data)
        parts += data.count(b"X-Frame-Seq")
for s in socks:
    s.close()
print(json.dumps({"bytes": nbytes, "parts": parts}))
"""


def run_level(srv, n: int, seconds: float) -> dict[str, Any]:
    p = srv.vigil.pipelines["view"]
    hub = p.overlay_hub
    proc = psutil.Process()
    host, port = "127.0.0.1", srv.port
    client = subprocess.Popen([sys.executable, "-c", CLIENT, host, str(port), str(n), str(seconds + 2.0),
                               "/stream/view.mjpg"], stdout=subprocess.PIPE, text=True)
    time.sleep(2.0)  # connect and settle
    e0, pub0, fr0 = hub.encodes, p.publish_stage.processed, hub.frames_sent
    gen0 = hub.published
    proc.cpu_percent(None)
    t0 = time.monotonic()
    time.sleep(seconds)
    dt = time.monotonic() - t0
    cpu = proc.cpu_percent(None)
    e1, pub1, fr1 = hub.encodes, p.publish_stage.processed, hub.frames_sent
    gen1 = hub.published
    viewers = hub.viewers
    out, _ = client.communicate(timeout=seconds + 30)
    res = json.loads(out.strip().splitlines()[-1])
    frames_published = gen1 - gen0
    return {
        "viewers": n,
        "viewers_seen": viewers,
        "published_fps": round((pub1 - pub0) / dt, 2),
        "cpu_percent": round(cpu, 1),
        "encodes_per_frame": round((e1 - e0) / max(1, frames_published), 3),
        "frames_sent_per_s": round((fr1 - fr0) / dt, 1),
        "client_bytes": res["bytes"],
        "client_mbit_s": round(res["bytes"] * 8 / 1e6 / (seconds + 2.0), 2),
        "client_parts": res["parts"],
    }


def benchmark(levels: list[int] = (1, 10, 50, 100), seconds: float = 6.0, repeats: int = 3,
              source: str = "synthetic:crossing") -> dict[str, Any]:
    """Published fps, server CPU and encodes per frame at each number of viewers (medians)."""
    levels_in = list(levels)
    from core.config import parse_config
    cfg = parse_config({"server": {"host": "127.0.0.1", "port": 0, "threads": max(levels_in) + 24},
                        "cameras": [{"name": "view", "source": source, "detector": "none"}]})
    with serving(cfg) as srv:
        # baseline: no viewers (nothing should be encoded)
        p = srv.vigil.pipelines["view"]
        e0, pub0 = p.overlay_hub.encodes, p.publish_stage.processed
        proc = psutil.Process()
        proc.cpu_percent(None)
        time.sleep(seconds / 2)
        levels = [{"viewers": 0, "published_fps": round((p.publish_stage.processed - pub0) / (seconds / 2), 2),
                   "cpu_percent": round(proc.cpu_percent(None), 1),
                   "encodes": p.overlay_hub.encodes - e0}]
        for n in levels_in:
            runs = []
            for _ in range(max(1, repeats)):
                runs.append(run_level(srv, n, seconds))
                time.sleep(1.0)
            levels.append({k: (statistics.median(r[k] for r in runs) if k != "viewers" else n)
                           for k in runs[0]} | {"runs": len(runs)})
    base_fps = levels[1]["published_fps"] if len(levels) > 1 else None
    out = {"benchmark": "viewers", "source": source, "levels": levels,
           "fps_ratio_max_vs_1": round(levels[-1]["published_fps"] / base_fps, 3) if base_fps else None,
           "machine": machine()}
    return out
