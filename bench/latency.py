"""Capture-to-publish latency with a live-paced source, measured two ways in one run:

pipeline : capture ts -> the overlay frame handed to the hub (the pipeline's own ring)
http     : capture time (X-Capture-Ts header, epoch seconds) -> arrival of the MJPEG part at
           an HTTP client on the same machine (same clock), through waitress.
"""
from __future__ import annotations

import time
from typing import Any

import numpy as np
import requests

from bench.common import machine, serving


def _pct(xs: list[float]) -> dict[str, float | None]:
    if not xs:
        return {"p50": None, "p95": None, "max": None, "n": 0}
    a = np.asarray(xs) * 1000.0
    return {"p50": round(float(np.percentile(a, 50)), 2), "p95": round(float(np.percentile(a, 95)), 2),
            "max": round(float(a.max()), 2), "n": int(a.size)}


def measure(source: str, detector: str, seconds: float, detect_every: int = 1) -> dict[str, Any]:
    from core.config import parse_config
    cfg = parse_config({"server": {"host": "127.0.0.1", "port": 0, "threads": 16},
                        "cameras": [{"name": "lat", "source": source, "detector": detector,
                                     "detect_every": detect_every, "loop": True}]})
    http: list[float] = []
    with serving(cfg) as srv:
        base = srv.base
        warm = time.monotonic() + 2.0
        end = warm + seconds
        with requests.get(base + "/stream/lat.mjpg", stream=True, timeout=10) as r:
            buf = b""
            for chunk in r.raw.stream(16384, decode_content=False):
                buf += chunk
                while True:
                    i = buf.find(b"\r\n\r\n")
                    if i < 0:
                        break
                    head = buf[:i].decode("latin-1")
                    hdr = dict(ln.split(": ", 1) for ln in head.split("\r\n") if ": " in ln)
                    n = int(hdr.get("Content-Length", "0"))
                    if len(buf) < i + 4 + n + 2:
                        break
                    now = time.monotonic()
                    arrived = time.time()
                    buf = buf[i + 4 + n + 2:]
                    if now >= warm:
                        http.append(arrived - float(hdr["X-Capture-Ts"]))
                if time.monotonic() > end:
                    break
        pipe = srv.vigil.pipelines["lat"].latency.values()
        st = srv.vigil.camera("lat").status()
    return {"source": source, "detector": detector, "detect_every": detect_every,
            "pipeline_ms": _pct(pipe), "http_ms": _pct(http),
            "http_samples_ms": [round(x * 1000.0, 2) for x in http],
            "pipeline_samples_ms": [round(x * 1000.0, 2) for x in pipe],
            "source_fps": st.capture.fps, "published_fps": st.stages["publish"].fps}


def benchmark(source: str = "synthetic:crossing", detector: str = "none", seconds: float = 8.0,
              rounds: int = 3) -> dict[str, Any]:
    """`rounds` separate live runs; medians of their percentiles, and every sample."""
    runs = [measure(source, detector, seconds) for _ in range(max(1, rounds))]

    def med(kind: str, q: str) -> float | None:
        vals = [r[kind][q] for r in runs if r[kind][q] is not None]
        return round(float(np.median(vals)), 2) if vals else None

    out = {"benchmark": "latency", "source": source, "detector": detector,
           "rounds": len(runs),
           "pipeline_ms": {q: med("pipeline_ms", q) for q in ("p50", "p95", "max")},
           "http_ms": {q: med("http_ms", q) for q in ("p50", "p95", "max")},
           "http_samples_ms": [x for r in runs for x in r["http_samples_ms"]],
           "pipeline_samples_ms": [x for r in runs for x in r["pipeline_samples_ms"]],
           "per_round": [{k: r[k] for k in ("pipeline_ms", "http_ms", "source_fps", "published_fps")}
                         for r in runs],
           "machine": machine()}
    return out
