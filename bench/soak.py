"""Soak test: the shipped config.yaml's cameras live, watched and polled, for M minutes.

    python main.py bench soak --minutes M [--out FILE.json] [--warmup-s 120] [--sample-s 10]
        [--profile [--profile-frames 1] [--profile-top 25]] [--rtsp-restart-s 60]

In this process: the cameras of config.yaml (the looping sample clip with YOLO + tracker,
and synthetic:conveyor with the defect watch) and the web server, on a free port, with the
events database in a temporary folder (never the repository's var/). In a client SUBPROCESS
(so client work is not counted as server CPU, memory or threads): 5 MJPEG viewers on
non-blocking sockets (live streams of both cameras and one long exposure) and a thread that
polls /api/cameras and /api/events every second.

Every --sample-s seconds the server process records RSS, thread count, open fds, CPU %,
the 1-minute load average, and per camera: source / published / detector fps over the
interval (counter deltas, not the 2-second rate meters), latency p50 / p95 and drops; and the
memory breakdown of runtime/memory.py (smaps split, malloc in use / free, every component's
parts). `memory_growth` in the JSON says where the growth went between the first and last
judged samples (and over each half): RSS, smaps, malloc, the parts that grew most.

--profile: tracemalloc from the start; snapshots at the end of the warm-up, the middle and the
end of the judged window; `profile.top_growth` (and `top_growth_second_half`) lists the
allocation sites that grew most (file:line, or a traceback with --profile-frames > 1; size and
count deltas). tracemalloc costs CPU and memory: judge RSS from a run without it.

--rtsp-restart-s S: one more camera, `rtsp`, on a real RTSP server (tests/rtsp_fixture.py,
GStreamer, the sample clip) that is SIGKILLed every S seconds and back 2 s later; with one
more viewer on it. Its fps is not judged (it is down on purpose); RSS, threads and fds are.

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
def soak_config(path: str | Path, data_dir: str | Path, extra_cameras: list[dict[str, Any]] = ()):
    """config.yaml as shipped, but on a free loopback port, without a token, with its events
    in data_dir, and its relative asset paths resolved against the config file's folder
    (plus `extra_cameras`, e.g. the RTSP camera of --rtsp-restart-s)."""
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
    data["cameras"] = list(data["cameras"]) + list(extra_cameras)
    return parse_config(data, f"{path} (soak)")


# ------------------------------------------------------------------ sampling
class Sampler:
    """Process and per-camera figures; fps from counter deltas since the previous sample."""

    def __init__(self, pipelines: dict[str, Any], vigil: Any = None, client_pid: int | None = None) -> None:
        import psutil
        self.proc = psutil.Process()
        self.pipelines = pipelines
        self.vigil = vigil  # for the memory breakdown (runtime/memory.py) in every sample
        self.client_pid = client_pid  # the viewer client: not one of the server's workers
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

    def workers_rss_mb(self) -> float:
        """RSS of the server's child processes (the detector pool's workers), the viewer
        client excluded."""
        total = 0
        for c in self.proc.children(recursive=True):
            if c.pid == self.client_pid:
                continue
            try:
                total += c.memory_info().rss
            except Exception:  # noqa: BLE001 - a worker that just ended or was replaced
                pass
        return round(total / 2**20, 2)

    def sample(self, t: float) -> dict[str, Any]:
        now = time.monotonic()
        row: dict[str, Any] = {
            "t": round(t, 2),
            "rss_mb": round(self.proc.memory_info().rss / 2**20, 2),
            "rss_workers_mb": self.workers_rss_mb(),
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
            pool = getattr(p.capture, "frame_pool", None)  # stream/framepool.py (issue 18)
            if pool is not None:
                cam["frame_pool"] = {**pool.stats(), "idle_bytes": pool.idle_bytes()}
            if prev is not None and cur[0] > prev[0]:
                dt = cur[0] - prev[0]
                cam["source_fps"] = round((cur[1] - prev[1]) / dt, 2)
                cam["published_fps"] = round((cur[2] - prev[2]) / dt, 2)
                cam["detect_fps"] = round((cur[3] - prev[3]) / dt, 2)
            row["cameras"][name] = cam
        if self.vigil is not None:
            row["memory"] = memory_row(self.vigil)
        return row


def memory_row(vigil: Any) -> dict[str, Any]:
    """One sample of the memory breakdown (runtime/memory.py), compact: process figures in MB
    and every component's parts in MB, keyed "component:name"."""
    from runtime.memory import collect
    rep = collect(vigil)
    p = rep["process"]
    mb = lambda v: None if v is None else round(v / 2**20, 3)  # noqa: E731
    out: dict[str, Any] = {
        "rss_mb": mb(p["rss_bytes"]),
        "smaps_mb": {k: mb(v) for k, v in (p.get("smaps") or {}).items()},
        "malloc_mb": {k: mb(p["malloc"][k]) for k in ("arena", "in_use", "free", "mmap")}
        if p.get("malloc") else None,
        "accounted_mb": mb(rep["accounted_bytes"]),
        "unaccounted_anon_mb": mb(rep.get("unaccounted_anon_bytes")),
        "components": {f"{r['component']}:{r['name']}": {k: mb(v) for k, v in r["parts"].items()}
                       for r in rep["components"]},
        "counts": {f"{r['component']}:{r['name']}": r["counts"] for r in rep["components"] if r["counts"]},
        "collect_ms": rep["collect_ms"],
    }
    if p.get("tracemalloc"):
        out["tracemalloc_mb"] = {k: mb(v) for k, v in p["tracemalloc"].items()}
    return out


def memory_growth(series: list[dict[str, Any]], warmup_s: float) -> dict[str, Any] | None:
    """Where the growth went, between the first and last judged samples and over each half:
    RSS, the smaps split, malloc (in use vs free: fragmentation and high-water marks), and
    every component part (MB), largest growth first."""
    post = [s for s in series if s["t"] >= warmup_s and s.get("memory")]
    if len(post) < 2:
        return None
    first, mid, last = post[0]["memory"], post[len(post) // 2]["memory"], post[-1]["memory"]

    def delta(a: dict | None, b: dict | None) -> dict[str, float]:
        a, b = a or {}, b or {}
        return {k: round((b.get(k) or 0.0) - (a.get(k) or 0.0), 3) for k in sorted(set(a) | set(b))}

    def flat(m: dict) -> dict[str, float]:
        return {f"{c}.{part}": v for c, parts in m["components"].items() for part, v in parts.items()}

    parts = delta(flat(first), flat(last))
    top = sorted(parts.items(), key=lambda kv: -abs(kv[1]))[:15]
    out = {"t": [post[0]["t"], post[len(post) // 2]["t"], post[-1]["t"]],
           "rss_mb": {"first": first["rss_mb"], "last": last["rss_mb"],
                      "first_half": round(mid["rss_mb"] - first["rss_mb"], 3),
                      "second_half": round(last["rss_mb"] - mid["rss_mb"], 3)},
           # the detector pool's worker processes (their own RSS, not in the server's)
           "rss_workers_mb": {"first": post[0].get("rss_workers_mb"), "last": post[-1].get("rss_workers_mb"),
                              "mid": post[len(post) // 2].get("rss_workers_mb")},
           "smaps_mb": delta(first["smaps_mb"], last["smaps_mb"]),
           "malloc_mb": delta(first["malloc_mb"], last["malloc_mb"]) if first.get("malloc_mb") else None,
           "malloc_second_half_mb": delta(mid["malloc_mb"], last["malloc_mb"]) if mid.get("malloc_mb") else None,
           "accounted_mb": round(last["accounted_mb"] - first["accounted_mb"], 3),
           "components_mb": dict(top)}
    return out


# ------------------------------------------------------------------ --profile: tracemalloc
class Profiler:
    """tracemalloc snapshots at the end of the warm-up, at the middle and at the end of the judged
    window; `report()` lists the allocation sites that grew most (file:line, size and count
    deltas) over the whole window and over its second half (a site still growing there is a
    leak candidate; one that stopped is a warm-up or a bounded cache filling).

    tracemalloc sees Python objects and numpy arrays (numpy reports its buffers to it), not
    native memory behind no Python object (ONNX Runtime, x264, Tesseract): for that, compare
    the breakdown's malloc in_use/free and smaps. It costs CPU and memory (about 2x allocation
    time; a snapshot copies every trace): judge RSS from a run without --profile."""

    def __init__(self, frames: int = 1, top: int = 25) -> None:
        import tracemalloc
        self.tm = tracemalloc
        self.frames = int(frames)
        self.top = int(top)
        self.snaps: list[tuple[float, Any]] = []
        self.started_here = not tracemalloc.is_tracing()
        if self.started_here:
            tracemalloc.start(self.frames)

    def snapshot(self, t: float) -> None:
        tm = self.tm
        snap = tm.take_snapshot().filter_traces(
            (tm.Filter(False, tm.__file__), tm.Filter(False, __file__),  # the bench's own records
             tm.Filter(False, "<frozen importlib._bootstrap>"),
             tm.Filter(False, "<unknown>")))
        # kept as per-site totals only (a snapshot holds every trace: hundreds of MB)
        root = str(Path(__file__).resolve().parents[1]) + os.sep
        stats: dict[tuple[str, ...], tuple[int, int]] = {}
        for st in snap.statistics("lineno" if self.frames <= 1 else "traceback"):
            key = tuple(f"{f.filename.replace(root, '')}:{f.lineno}" for f in st.traceback)
            stats[key] = (st.size, st.count)
        del snap
        self.snaps.append((round(t, 1), stats))
        if len(self.snaps) > 3:  # keep the first, the middle one and the newest
            del self.snaps[1]

    def _diff(self, a: dict, b: dict) -> list[dict[str, Any]]:
        rows = []
        for key in set(a) | set(b):
            (s0, c0), (s1, c1) = a.get(key, (0, 0)), b.get(key, (0, 0))
            if s1 != s0 or c1 != c0:
                rows.append((s1 - s0, c1 - c0, s1, c1, key))
        rows.sort(key=lambda r: -r[0])
        return [{"site": key[0] if len(key) == 1 else list(key), "size_delta_kb": round(ds / 1024, 1),
                 "count_delta": dc, "size_kb": round(sz / 1024, 1), "count": n}
                for ds, dc, sz, n, key in rows[: self.top]]

    def report(self) -> dict[str, Any]:
        out: dict[str, Any] = {"frames": self.frames, "snapshots_t": [t for t, _ in self.snaps]}
        cur, peak = self.tm.get_traced_memory()
        out["traced_mb"] = round(cur / 2**20, 2)
        out["traced_peak_mb"] = round(peak / 2**20, 2)
        out["tracemalloc_overhead_mb"] = round(self.tm.get_tracemalloc_memory() / 2**20, 2)
        if len(self.snaps) >= 2:
            (t0, a), (t1, b) = self.snaps[0], self.snaps[-1]
            out["window_s"] = [t0, t1]
            out["top_growth"] = self._diff(a, b)
            out["traced_growth_mb"] = round((sum(v[0] for v in b.values()) -
                                             sum(v[0] for v in a.values())) / 2**20, 3)
        if len(self.snaps) >= 3:
            (tm_, m), (t1, b) = self.snaps[1], self.snaps[-1]
            out["second_half_s"] = [tm_, t1]
            out["top_growth_second_half"] = self._diff(m, b)
        return out

    def stop(self) -> None:
        self.snaps.clear()
        if self.started_here:
            self.tm.stop()


# ------------------------------------------------------------------ verdicts
def verdicts(series: list[dict[str, Any]], warmup_s: float, *, rss_tol_pct: float = 5.0,
             threads_tol: int = 2, fds_tol: int = 4, fps_tol: float = 0.10,
             client: dict[str, Any] | None = None, max_gap_s: float = 5.0,
             fps_skip: tuple[str, ...] = ()) -> dict[str, Any]:
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
    # the slope of each half of the judged window: a leak keeps its slope, a warm-up or a
    # high-water mark that plateaus has a second half near zero
    h = len(t) // 2
    halves = [float(np.polyfit(tt / 60.0, rr, 1)[0]) if len(tt) >= 2 else None
              for tt, rr in ((t[:h + 1], rss[:h + 1]), (t[h:], rss[h:]))]
    out["rss"] = {"first_mb": float(rss[0]), "last_mb": float(rss[-1]), "max_mb": float(rss.max()),
                  "growth_pct": round(float(growth), 2), "slope_mb_per_min": round(slope, 3),
                  "slope_first_half_mb_per_min": None if halves[0] is None else round(halves[0], 3),
                  "slope_second_half_mb_per_min": None if halves[1] is None else round(halves[1], 3),
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
        if cam in fps_skip:  # a camera whose source is restarted on purpose
            continue
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


class RtspRestarter:
    """--rtsp-restart-s: a real RTSP server (tests/rtsp_fixture.py: GStreamer gst-rtsp-server,
    run by the system python) streaming the sample clip, SIGKILLed every `every_s` seconds
    and started again `down_s` later on the same URL (a camera that crashes and comes back)."""

    CAMERA = "rtsp"

    def __init__(self, every_s: float, samples_dir: Path, down_s: float = 2.0) -> None:
        from tests.rtsp_fixture import RtspServer, gst_rtsp_available
        ok, why = gst_rtsp_available()
        if not ok:
            raise RuntimeError(f"--rtsp-restart-s needs the GStreamer RTSP server: {why}")
        clip = samples_dir / "bikes.mp4"
        self.server = RtspServer(file=clip if clip.is_file() else None, width=640, height=272, fps=25)
        self.every_s, self.down_s = float(every_s), float(down_s)
        self.restarts = 0
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def camera(self) -> dict[str, Any]:
        return {"name": self.CAMERA, "source": self.server.url, "detector": "motion",
                "reconnect": {"max_backoff_s": 1.0}, "lines": []}

    def start(self) -> "RtspRestarter":
        self.server.start()
        self._thread = threading.Thread(target=self._run, name="soak-rtsp-restarts", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            self.server.kill()
            if self._stop.wait(self.down_s):
                return
            try:
                self.server.start()
                self.restarts += 1
            except RuntimeError as e:
                self.errors.append(str(e)[:200])

    def stop(self) -> dict[str, Any]:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
        self.server.kill()
        return {"camera": self.CAMERA, "every_s": self.every_s, "down_s": self.down_s,
                "restarts": self.restarts, "errors": self.errors[-5:]}


def run(config: str, minutes: float, warmup_s: float, sample_s: float, *,
        viewers: int = 5, poll_s: float = 1.0, log=None, profile: bool = False,
        profile_frames: int = 1, profile_top: int = 25, rtsp_restart_s: float = 0.0,
        **tol: Any) -> dict[str, Any]:
    from web.server import VigilServer
    total_s = minutes * 60.0
    profiler = Profiler(profile_frames, profile_top) if profile else None
    rtsp: RtspRestarter | None = None
    with tempfile.TemporaryDirectory(prefix="vigil-soak-") as tmp:
        extra = []
        if rtsp_restart_s > 0:
            from core.config import load_config
            samples = Path(load_config(config).paths.samples)
            if not samples.is_absolute():
                samples = Path(config).resolve().parent / samples
            rtsp = RtspRestarter(rtsp_restart_s, samples).start()
            extra.append(rtsp.camera())
        try:
            cfg = soak_config(config, tmp, extra)
        except Exception:
            if rtsp is not None:
                rtsp.stop()
            raise
        names = [c.name for c in cfg.cameras if c.enabled and (rtsp is None or c.name != rtsp.CAMERA)]
        a, b = names[0], names[-1]
        paths = [VIEWER_PATHS[i % len(VIEWER_PATHS)].format(a=a, b=b) for i in range(viewers)]
        if rtsp is not None:
            names.append(rtsp.CAMERA)
            paths.append(f"/stream/{rtsp.CAMERA}.mjpg")
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
            sampler = Sampler(srv.vigil.pipelines, srv.vigil, client_pid=client.pid)
            t0 = time.monotonic()
            k = 0
            marks = [warmup_s, warmup_s + (total_s - warmup_s) / 2.0]  # profile snapshots
            while True:
                target = t0 + k * sample_s
                if target > t0 + total_s + 1e-6:
                    break
                time.sleep(max(0.0, target - time.monotonic()))
                row = sampler.sample(time.monotonic() - t0)
                series.append(row)
                if profiler is not None and marks and row["t"] >= marks[0] - 1e-6:
                    marks.pop(0)
                    profiler.snapshot(row["t"])
                    while marks and row["t"] >= marks[0]:
                        marks.pop(0)
                if log:
                    cams = "  ".join(f"{n} {c['source_fps']}/{c['published_fps']} fps p95 {c['latency_p95_ms']} ms"
                                     for n, c in row["cameras"].items())
                    log(f"t={row['t']:7.1f}s rss {row['rss_mb']:8.1f} MB "
                        f"(malloc in use {((row.get('memory') or {}).get('malloc_mb') or {}).get('in_use')}"
                        f" free {((row.get('memory') or {}).get('malloc_mb') or {}).get('free')}) thr {row['threads']} "
                        f"fds {row['fds']} cpu {row['cpu_percent']}% others {row['others_cores']}  {cams}")
                last = t0 + (k + 1) * sample_s > t0 + total_s + 1e-6
                if client.poll() is not None and not last:  # it runs total_s + 3 s
                    err = "the client process ended early"
                    break
                k += 1
            if profiler is not None and series:
                profiler.snapshot(time.monotonic() - t0)
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
            rtsp_out = rtsp.stop() if rtsp is not None else None
    profile_out = None
    if profiler is not None:
        profile_out = profiler.report()
        profiler.stop()
    skip = (rtsp.CAMERA,) if rtsp is not None else ()
    out: dict[str, Any] = {
        "benchmark": "soak", "config": str(config), "minutes": minutes, "warmup_s": warmup_s,
        "sample_s": sample_s, "cameras": names, "viewer_paths": paths, "api_poll_s": poll_s,
        "series": series, "client": client_out,
        "verdicts": verdicts(series, warmup_s, client=client_out, fps_skip=skip, **tol),
        "memory_growth": memory_growth(series, warmup_s),
        "machine": machine(),
    }
    if profile_out is not None:
        out["profile"] = profile_out
        out["profiled"] = True  # tracemalloc's own memory and CPU are in this run's figures
    if rtsp_out is not None:
        last = series[-1]["cameras"].get(rtsp_out["camera"], {}) if series else {}
        rtsp_out["camera_state_at_end"] = last.get("state")
        out["rtsp_restarts"] = rtsp_out
    if err:
        out["error"] = err
        out["verdicts"]["pass"] = False
    return out
