"""Soak test: the shipped config.yaml's cameras live, watched and polled, for M minutes.

    python main.py bench soak --minutes M [--out FILE.json] [--warmup-s 120] [--sample-s 10]

In this process: the cameras of config.yaml (the looping sample clip with YOLO + tracker,
and synthetic:conveyor with the defect watch) and the web server, on a free port, with the
events database in a temporary folder (never the repository's var/). In a client SUBPROCESS
(so client work is not counted as server CPU, memory or threads): 5 MJPEG viewers on
non-blocking sockets (live streams of both cameras and one long exposure) and a thread that
polls /api/cameras and /api/events every second.

Every --sample-s seconds the server process records RSS, thread count, open fds, CPU %,
the 1-minute load average, and per camera: source / published / detector fps over the
interval (counter deltas, not the 2-second rate meters), latency p50 / p95 and drops.

Verdicts over the samples taken after --warmup-s (the run is --minutes in all, warm-up
included):
  rss     growth last vs first sample <= --rss-tol-pct (default 5 %); a linear fit's slope
          in MB/min is reported next to it
  threads no growth: the floor (min) and the median of the second half of the judged samples
          within --threads-tol (default 2) of the first half's. Not max - min: event clips
          are encoded by a transient writer (+7 threads for a few seconds, measured), which
          max - min would call a leak; a leak raises the floor and the median
  fds     the same with --fds-tol (default 4: a poll's socket or a clip file may be open)
  fps     per camera, min >= (1 - 0.10) x median, for source and published fps
  viewers every stream answered 200 and kept receiving (no gap > 5 s); API polls all OK
Prints one JSON object (series + verdicts); exit code 0 when every verdict passes, 1 if not.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import machine

VIEWER_PATHS = ("/stream/{a}.mjpg", "/stream/{b}.mjpg", "/stream/{a}.mjpg",
                "/exposure/{a}.mjpg", "/stream/{b}.mjpg")

CLIENT = r"""
import http.client, json, selectors, socket, sys, threading, time
host, port, seconds, poll_s = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
paths = sys.argv[5:]
TOKEN = b"X-Frame-Seq"
api = {"ok": 0, "errors": 0, "last_error": None, "ms": []}
stop = threading.Event()

def poll():
    urls = ("/api/cameras", "/api/events?limit=50")
    while not stop.wait(poll_s):
        for url in urls:
            t0 = time.monotonic()
            try:
                c = http.client.HTTPConnection(host, port, timeout=5)
                c.request("GET", url, headers={"Connection": "close"})
                r = c.getresponse()
                body = r.read()
                c.close()
                if r.status != 200:
                    raise RuntimeError(f"{url}: HTTP {r.status}")
                json.loads(body)
                api["ok"] += 1
                api["ms"].append((time.monotonic() - t0) * 1000.0)
            except Exception as e:
                api["errors"] += 1
                api["last_error"] = f"{url}: {type(e).__name__}: {e}"[:200]

sel = selectors.DefaultSelector()
streams = []
for p in paths:
    s = socket.create_connection((host, port), timeout=10)
    s.sendall(f"GET {p} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
    s.setblocking(False)
    st = {"path": p, "status": None, "bytes": 0, "parts": 0, "closed": False,
          "first": None, "last": None, "max_gap_s": 0.0, "tail": b"", "head": b""}
    sel.register(s, selectors.EVENT_READ, st)
    streams.append((s, st))
th = threading.Thread(target=poll, daemon=True)
th.start()
end = time.monotonic() + seconds
while time.monotonic() < end:
    for key, _ in sel.select(timeout=0.2):
        st = key.data
        try:
            data = key.fileobj.recv(1 << 16)
        except (BlockingIOError, InterruptedError):
            continue
        except OSError:
            data = b""
        if not data:
            st["closed"] = True
            sel.unregister(key.fileobj)
            continue
        now = time.monotonic()
        if st["status"] is None:
            st["head"] += data[:64]
            line = st["head"].split(b"\r\n", 1)[0]
            if b"\r\n" in st["head"]:
                st["status"] = int(line.split()[1])
        st["bytes"] += len(data)
        n = (st["tail"] + data).count(TOKEN)
        st["tail"] = data[-(len(TOKEN) - 1):]
        if n:
            if st["last"] is not None:
                st["max_gap_s"] = max(st["max_gap_s"], now - st["last"])
            st["first"] = st["first"] or now
            st["last"] = now
            st["parts"] += n
stop.set()
th.join(6)
out_streams = []
for s, st in streams:
    s.close()
    span = (st["last"] - st["first"]) if st["first"] and st["last"] else 0.0
    out_streams.append({"path": st["path"], "status": st["status"], "bytes": st["bytes"],
                        "parts": st["parts"], "fps": round(st["parts"] / span, 2) if span else None,
                        "closed_early": st["closed"], "max_gap_s": round(st["max_gap_s"], 3)})
ms = sorted(api.pop("ms"))
api["ms_p50"] = round(ms[len(ms) // 2], 2) if ms else None
api["ms_p95"] = round(ms[min(len(ms) - 1, int(len(ms) * 0.95))], 2) if ms else None
api["ms_max"] = round(ms[-1], 2) if ms else None
print(json.dumps({"streams": out_streams, "api": api}))
"""


# ------------------------------------------------------------------ configuration
def soak_config(path: str | Path, data_dir: str | Path):
    """config.yaml as shipped, but on a free loopback port, without a token, with its events
    in data_dir, and its relative asset paths resolved against the config file's folder."""
    from core.config import load_config, parse_config
    path = Path(path)
    base = path.resolve().parent
    data = load_config(path).model_dump(mode="python")
    srv = data["server"]
    srv.update(host="127.0.0.1", port=0, token=None, threads=max(int(srv["threads"]), 32))
    data["paths"]["data"] = str(data_dir)
    for k in ("models", "samples"):
        if not Path(data["paths"][k]).is_absolute():
            data["paths"][k] = str(base / data["paths"][k])
    for sec, keys in (("yolo", ("model", "cfg", "names")), ("text", ("model",))):
        d = data.get("detectors", {}).get(sec) or {}
        for k in keys:
            v = d.get(k)
            if isinstance(v, str) and not Path(v).is_absolute() and (base / v).exists():
                d[k] = str(base / v)
    return parse_config(data, f"{path} (soak)")


# ------------------------------------------------------------------ sampling
class Sampler:
    """Process and per-camera figures; fps from counter deltas since the previous sample."""

    def __init__(self, pipelines: dict[str, Any]) -> None:
        import psutil
        self.proc = psutil.Process()
        self.pipelines = pipelines
        self.proc.cpu_percent(None)
        self._prev: dict[str, tuple[float, int, int, int]] = {}
        self._cpu_prev = (time.monotonic(), self._busy_s(), self._own_s())

    @staticmethod
    def _busy_s() -> float:
        import psutil
        t = psutil.cpu_times()
        return sum(t) - t.idle - getattr(t, "iowait", 0.0)

    def _own_s(self) -> float:
        """CPU seconds of this process and its children (the viewer client)."""
        total = sum(self.proc.cpu_times()[:2])
        for c in self.proc.children(recursive=True):
            try:
                total += sum(c.cpu_times()[:2])
            except Exception:  # noqa: BLE001 - a child that just ended
                pass
        return total

    def others_cores(self) -> float:
        """Cores used by OTHER processes since the previous call: the machine may be shared,
        and a camera's fps dips when others take the CPU it needs."""
        now, busy, own = time.monotonic(), self._busy_s(), self._own_s()
        t0, b0, o0 = self._cpu_prev
        self._cpu_prev = (now, busy, own)
        return max(0.0, ((busy - b0) - (own - o0)) / max(now - t0, 1e-3))

    def _fds(self) -> int:
        try:
            return self.proc.num_fds()
        except AttributeError:  # Windows
            return self.proc.num_handles()

    def sample(self, t: float) -> dict[str, Any]:
        now = time.monotonic()
        row: dict[str, Any] = {
            "t": round(t, 2),
            "rss_mb": round(self.proc.memory_info().rss / 2**20, 2),
            "threads": self.proc.num_threads(),
            "fds": self._fds(),
            "cpu_percent": round(self.proc.cpu_percent(None), 1),
            "load_1m": round(os.getloadavg()[0], 2),
            "others_cores": round(self.others_cores(), 2),
            "cameras": {},
        }
        for name, p in self.pipelines.items():
            cur = (now, p.capture.frames_in, p.publish_stage.processed, p.detect_stage.processed)
            prev = self._prev.get(name)
            self._prev[name] = cur
            lat = p.latency.percentiles(50, 95)
            cam: dict[str, Any] = {
                "state": p.capture.state.value,
                "frames_in": cur[1], "dropped": p.capture.slot.dropped,
                "latency_p50_ms": None if lat[0] is None else round(lat[0] * 1000, 2),
                "latency_p95_ms": None if lat[1] is None else round(lat[1] * 1000, 2),
                "source_fps": None, "published_fps": None, "detect_fps": None,
            }
            if prev is not None and cur[0] > prev[0]:
                dt = cur[0] - prev[0]
                cam["source_fps"] = round((cur[1] - prev[1]) / dt, 2)
                cam["published_fps"] = round((cur[2] - prev[2]) / dt, 2)
                cam["detect_fps"] = round((cur[3] - prev[3]) / dt, 2)
            row["cameras"][name] = cam
        return row


# ------------------------------------------------------------------ verdicts
def verdicts(series: list[dict[str, Any]], warmup_s: float, *, rss_tol_pct: float = 5.0,
             threads_tol: int = 2, fds_tol: int = 4, fps_tol: float = 0.10,
             client: dict[str, Any] | None = None, max_gap_s: float = 5.0) -> dict[str, Any]:
    """Goal checks over the samples taken at t >= warmup_s (see the module docstring)."""
    post = [s for s in series if s["t"] >= warmup_s]
    out: dict[str, Any] = {"samples_after_warmup": len(post)}
    if len(post) < 2:
        out["error"] = f"only {len(post)} samples after the {warmup_s:.0f} s warm-up; run longer"
        out["pass"] = False
        return out
    t = np.array([s["t"] for s in post], float)
    rss = np.array([s["rss_mb"] for s in post], float)
    growth = (rss[-1] - rss[0]) / rss[0] * 100.0
    slope = float(np.polyfit(t / 60.0, rss, 1)[0])
    out["rss"] = {"first_mb": float(rss[0]), "last_mb": float(rss[-1]), "max_mb": float(rss.max()),
                  "growth_pct": round(float(growth), 2), "slope_mb_per_min": round(slope, 3),
                  "tolerance_pct": rss_tol_pct, "pass": bool(growth <= rss_tol_pct)}
    for key, tol in (("threads", threads_tol), ("fds", fds_tol)):
        v = [int(s[key]) for s in post]
        half = max(1, len(v) // 2)
        a, b = v[:half], v[half:] or v[-1:]
        floor_growth = min(b) - min(a)
        median_growth = float(np.median(b) - np.median(a))
        # transient workers (an event clip being encoded: its writer + encoder threads and
        # file) come and go; a leak raises the floor and the median, which is what is judged
        out[key] = {"min": min(v), "max": max(v), "first": v[0], "last": v[-1],
                    "floor_growth": floor_growth, "median_growth": median_growth,
                    "transient": max(v) - min(v) > tol, "tolerance": tol,
                    "pass": floor_growth <= tol and median_growth <= tol}
    fps: dict[str, Any] = {}
    ok = True
    for cam in post[0]["cameras"]:
        per: dict[str, Any] = {}
        for key in ("source_fps", "published_fps"):
            v = [s["cameras"][cam][key] for s in post if s["cameras"].get(cam, {}).get(key) is not None]
            if not v:
                per[key] = {"pass": False, "error": "no interval samples"}
                ok = False
                continue
            med, lo = float(np.median(v)), float(min(v))
            good = med > 0 and lo >= (1.0 - fps_tol) * med
            per[key] = {"median": round(med, 2), "min": round(lo, 2), "max": round(float(max(v)), 2),
                        "min_over_median": round(lo / med, 3) if med > 0 else None, "pass": good}
            ok = ok and good
        fps[cam] = per
    others = [s["others_cores"] for s in post if s.get("others_cores") is not None]
    out["fps"] = {"tolerance": fps_tol, "cameras": fps, "pass": ok,
                  # context for a dip: cores other processes took during the judged samples
                  "others_cores_max": round(max(others), 2) if others else None,
                  "others_cores_median": round(float(np.median(others)), 2) if others else None}
    if client is not None:
        streams = client.get("streams", [])
        bad = [s["path"] for s in streams
               if s["status"] != 200 or s["closed_early"] or not s["parts"] or s["max_gap_s"] > max_gap_s]
        api = client.get("api", {})
        out["viewers"] = {"streams": len(streams), "bad": bad, "max_gap_tolerance_s": max_gap_s,
                          "pass": bool(streams) and not bad}
        out["api"] = {"ok": api.get("ok", 0), "errors": api.get("errors", 0),
                      "last_error": api.get("last_error"),
                      "pass": api.get("ok", 0) > 0 and api.get("errors", 0) == 0}
    out["pass"] = all(v["pass"] for v in out.values() if isinstance(v, dict) and "pass" in v)
    return out


# ------------------------------------------------------------------ run
def _wait_ready(base: str, timeout_s: float = 60.0) -> bool:
    import requests
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if requests.get(base + "/readyz", timeout=2).status_code == 200:
                return True
        except requests.RequestException:
            pass
        time.sleep(0.2)
    return False


def run(config: str, minutes: float, warmup_s: float, sample_s: float, *,
        viewers: int = 5, poll_s: float = 1.0, log=None, **tol: Any) -> dict[str, Any]:
    from web.server import VigilServer
    total_s = minutes * 60.0
    with tempfile.TemporaryDirectory(prefix="vigil-soak-") as tmp:
        cfg = soak_config(config, tmp)
        names = [c.name for c in cfg.cameras if c.enabled]
        a, b = names[0], names[-1]
        paths = [VIEWER_PATHS[i % len(VIEWER_PATHS)].format(a=a, b=b) for i in range(viewers)]
        srv = VigilServer(cfg)
        srv.bind()
        srv.start_pipelines()
        th = threading.Thread(target=srv.run, name="soak-server", daemon=True)
        th.start()
        series: list[dict[str, Any]] = []
        client_out: dict[str, Any] | None = None
        err: str | None = None
        client = None
        try:
            if srv.vigil.failed:
                raise RuntimeError(f"cameras failed to start: {srv.vigil.failed}")
            if not _wait_ready(srv.url.rstrip("/")):
                raise RuntimeError("the server was not ready within 60 s")
            client = subprocess.Popen(
                [sys.executable, "-c", CLIENT, "127.0.0.1", str(srv.port), str(total_s + 3.0),
                 str(poll_s), *paths], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            time.sleep(2.0)  # streams connected, first frames drawn
            sampler = Sampler(srv.vigil.pipelines)
            t0 = time.monotonic()
            k = 0
            while True:
                target = t0 + k * sample_s
                if target > t0 + total_s + 1e-6:
                    break
                time.sleep(max(0.0, target - time.monotonic()))
                row = sampler.sample(time.monotonic() - t0)
                series.append(row)
                if log:
                    cams = "  ".join(f"{n} {c['source_fps']}/{c['published_fps']} fps p95 {c['latency_p95_ms']} ms"
                                     for n, c in row["cameras"].items())
                    log(f"t={row['t']:7.1f}s rss {row['rss_mb']:8.1f} MB thr {row['threads']} "
                        f"fds {row['fds']} cpu {row['cpu_percent']}% others {row['others_cores']}  {cams}")
                if client.poll() is not None:
                    err = "the client process ended early"
                    break
                k += 1
            out_s, err_s = client.communicate(timeout=30)
            try:
                client_out = json.loads(out_s.strip().splitlines()[-1])
            except (IndexError, json.JSONDecodeError):
                err = err or f"client produced no JSON: {err_s[-500:]}"
        except Exception as e:  # noqa: BLE001 - reported in the JSON, with what was sampled
            err = f"{type(e).__name__}: {e}"
        finally:
            if client is not None and client.poll() is None:
                client.kill()
                client.communicate()
            srv.shutdown(3.0)
            th.join(5)
    out: dict[str, Any] = {
        "benchmark": "soak", "config": str(config), "minutes": minutes, "warmup_s": warmup_s,
        "sample_s": sample_s, "cameras": names, "viewer_paths": paths, "api_poll_s": poll_s,
        "series": series, "client": client_out,
        "verdicts": verdicts(series, warmup_s, client=client_out, **tol),
        "machine": machine(),
    }
    if err:
        out["error"] = err
        out["verdicts"]["pass"] = False
    return out
