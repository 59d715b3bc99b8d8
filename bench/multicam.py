"""Many cameras on one box: throughput, fairness, published fps, latency, CPU and RSS against
the number of cameras, as ratios to the machine's pure-inference limit measured in the same run.

    python main.py bench multicam [--cameras 1,2,4,8,16] [--seconds S] [--warmup S]
                                  [--rounds R] [--modes per_camera pool] [--out F] [--plot F]

Every step is N cameras of the same clip (vtest.avi from the shared data, looped, paced at its
source fps, 10 fps), YOLOv3-tiny (models/) on every frame, the shipped web server on a free
loopback port, no viewers, no event database. Each step runs in a FRESH subprocess (RSS of one
step never leaks into the next; glibc arenas limited to 2 as `main.py` does), which after the
warm-up reads /api/cameras twice, `--seconds` apart, and reports from the counter deltas:
per camera source / detect / published fps, detector ms p50, capture -> publish latency p95 (the
pipeline's latency ring, samples of the window only), drops; for the process CPU cores used,
cores other processes used meanwhile (the machine may be shared), RSS and PSS of the server
and its children (the pool's worker processes) and their threads; and one /metrics scrape.

Modes (the same steps for each):
  per_camera  today's layout: every camera builds its own detector session (ORT's default
              thread count) and detector thread
  pool        the node's detector pool (`pool` config section, stream/pool.py), when this
              checkout has one; left out (and said so) when it does not

The inference limit: N processes (N = cores) each with one single-threaded ONNX Runtime
session on the same model, started together, each running YoloDetector.detect on vtest frames
for `--seconds`: their summed images/s (and session-run-only images/s) is the most detection
work this machine can do per second. It is measured before the first round and after every
round (the median is the ratios' denominator: the machine may be shared and its load moves).
Steps are repeated `--rounds` times; medians reported.

Offline: `main.py process` of `--process-frames` vtest frames with YOLO, the detector inline
(--workers 0, today's way) against the detector pool (one worker per core), alternating: the
fps ratio, and that both tracks files are identical.
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Sequence

from bench.common import ROOT, data_path, machine, median

VIDEO = "video/opencv/vtest.avi"
DEFAULT_CAMERAS = (1, 2, 4, 8, 16)
MODES = ("per_camera", "pool")


# ------------------------------------------------------------------ parsing and arithmetic
def parse_cameras(text: str) -> list[int]:
    """"1,2,4" -> [1, 2, 4] (sorted, unique); ValueError naming the bad item."""
    out = set()
    for part in str(text).split(","):
        part = part.strip()
        if not part:
            continue
        try:
            n = int(part)
        except ValueError:
            raise ValueError(f"--cameras: {part!r} is not a whole number") from None
        if not 1 <= n <= 64:
            raise ValueError(f"--cameras: {n} is outside 1..64")
        out.add(n)
    if not out:
        raise ValueError("--cameras: give at least one camera count, e.g. 1,2,4")
    return sorted(out)


def pool_available() -> bool:
    """Whether this checkout's config has the detector pool's `pool` section."""
    from core.config import VigilConfig
    return "pool" in VigilConfig.model_fields


def mode_overrides(mode: str) -> dict[str, Any]:
    """Top-level config keys that select the mode (`pool` only where the section exists)."""
    if mode == "per_camera":
        return {"pool": {"enabled": False}} if pool_available() else {}
    if mode == "pool":
        if not pool_available():
            raise ValueError("mode 'pool': this checkout's config has no `pool` section")
        return {"pool": {"enabled": True}}
    raise ValueError(f"unknown mode {mode!r}; known: {', '.join(MODES)}")


def step_config(n: int, mode: str, video: str, models: str | None = None) -> dict[str, Any]:
    """The config mapping of one step: n cameras of `video` with YOLO on every frame."""
    model = str(Path(models or ROOT / "models") / "yolov3-tiny.onnx")
    return {
        "server": {"host": "127.0.0.1", "port": 0, "threads": 16},
        "detectors": {"yolo": {"model": model}},
        "cameras": [{"name": f"cam{i:02d}", "source": video, "detector": "yolo", "loop": True,
                     "detect_every": 1} for i in range(n)],
        **mode_overrides(mode),
    }


def _pct(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    xs = sorted(values)
    k = (len(xs) - 1) * q / 100.0
    lo = int(k)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def camera_rates(before: dict[str, Any], after: dict[str, Any], dt: float) -> dict[str, Any]:
    """Per-camera rates from two /api/cameras status dicts of one camera, `dt` seconds apart."""
    def d(path: tuple[str, ...]) -> float:
        a, b = before, after
        for k in path:
            a, b = a[k], b[k]
        return float(b) - float(a)

    src = d(("capture", "frames_in")) / dt
    pub = d(("stages", "publish", "processed")) / dt
    det = d(("stages", "detect", "processed")) / dt
    native = after["capture"].get("native_fps") or None
    return {
        "source_fps": round(src, 3), "detect_fps": round(det, 3), "published_fps": round(pub, 3),
        "native_fps": native,
        "published_over_source": round(pub / native, 4) if native else None,
        "detector_ms_p50": after["stages"]["detect"].get("ms_p50"),
        "detect_dropped": int(d(("stages", "detect", "dropped"))),
        "capture_dropped": int(d(("capture", "dropped"))),
        "state": after["state"],
    }


def step_summary(cams: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Totals over the cameras of one step: detect fps (total, per camera min/median/max and
    min/max fairness), the worst published/source ratio, latency p95 (median and worst)."""
    det = [c["detect_fps"] for c in cams.values()]
    pub = [c["published_over_source"] for c in cams.values() if c["published_over_source"] is not None]
    lat = [c["latency_p95_ms"] for c in cams.values() if c.get("latency_p95_ms") is not None]
    ms = [c["detector_ms_p50"] for c in cams.values() if c.get("detector_ms_p50") is not None]
    return {
        "cameras": len(cams),
        "detect_fps_total": round(sum(det), 3),
        "detect_fps_per_camera": {"min": round(min(det), 3), "median": round(statistics.median(det), 3),
                                  "max": round(max(det), 3)},
        "detect_fairness_min_over_max": round(min(det) / max(det), 3) if max(det) > 0 else None,
        "published_over_source_min": round(min(pub), 4) if pub else None,
        "published_fps_median": round(statistics.median(c["published_fps"] for c in cams.values()), 3),
        "source_fps_median": round(statistics.median(c["source_fps"] for c in cams.values()), 3),
        "latency_p95_ms": {"median": round(statistics.median(lat), 2) if lat else None,
                           "max": round(max(lat), 2) if lat else None},
        "detector_ms_p50_median": round(statistics.median(ms), 2) if ms else None,
    }


def rss_per_extra_camera(points: Sequence[tuple[int, float]]) -> dict[str, float | None]:
    """From (cameras, RSS MB) points: the least-squares slope (MB per camera) and the plain
    (RSS(max) - RSS(min)) / (max - min cameras)."""
    pts = sorted(points)
    if len(pts) < 2 or pts[-1][0] == pts[0][0]:
        return {"slope_mb": None, "span_mb": None}
    xs, ys = [p[0] for p in pts], [p[1] for p in pts]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx
    span = (pts[-1][1] - pts[0][1]) / (pts[-1][0] - pts[0][0])
    return {"slope_mb": round(slope, 2), "span_mb": round(span, 2)}


_MEDIAN_KEYS = ("detect_fps_total", "published_over_source_min", "published_fps_median",
                "source_fps_median", "detect_fairness_min_over_max", "detector_ms_p50_median",
                "rss_mb", "pss_mb", "rss_own_mb", "cpu_cores", "others_cores", "threads",
                "server_cores", "server_cpu_ms_per_frame")


def combine_rounds(steps: Sequence[dict[str, Any]], limit_fps: float | None) -> dict[str, Any]:
    """Rounds of one (mode, cameras) step -> medians (None values left out) and the ratio of
    the median total detect fps to the inference limit."""
    out: dict[str, Any] = {"rounds": len(steps)}
    for k in _MEDIAN_KEYS:
        v = median(s[k] for s in steps if s.get(k) is not None)
        out[k] = None if v is None else round(v, 4 if k == "published_over_source_min" else 3)
    for k in ("median", "max"):
        v = median(s["latency_p95_ms"][k] for s in steps if s["latency_p95_ms"][k] is not None)
        out[f"latency_p95_ms_{k}"] = None if v is None else round(v, 2)
    v = median(s["detect_fps_per_camera"]["median"] for s in steps)
    out["detect_fps_per_camera"] = None if v is None else round(v, 3)
    out["limit_ratio"] = (round(out["detect_fps_total"] / limit_fps, 3)
                          if limit_fps and out["detect_fps_total"] is not None else None)
    return out


# ------------------------------------------------------------------ one step (subprocess)
def _get(base: str, path: str) -> Any:
    import requests
    r = requests.get(base + path, timeout=10)
    r.raise_for_status()
    return r.json() if path.startswith("/api/") else r.text


def run_step(n: int, mode: str, seconds: float, warmup: float, models: str | None = None) -> dict[str, Any]:
    """N cameras in this process behind the shipped server; measured after `warmup`."""
    import psutil

    from bench.common import serving
    from core.config import parse_config

    video = str(data_path(VIDEO))
    cfg = parse_config(step_config(n, mode, video, models), f"bench multicam ({n} cameras, {mode})")
    proc = psutil.Process()
    t_start = time.monotonic()
    with serving(cfg, ready_timeout_s=60.0 + 3.0 * n) as srv:
        ready_s = time.monotonic() - t_start
        failed = dict(getattr(srv.vigil, "failed", {}) or {})
        time.sleep(warmup)

        def snap() -> tuple[float, dict[str, Any], dict[str, int], float, float, float]:
            cams = {c["name"]: c for c in _get(srv.base, "/api/cameras")["cameras"]}
            counts = {name: p.latency.count for name, p in srv.vigil.pipelines.items()}
            t = psutil.cpu_times()
            busy = sum(t) - t.idle - getattr(t, "iowait", 0.0)
            ct = proc.cpu_times()
            server = ct.user + ct.system  # this process alone: the non-inference work
            own = sum(ct[:4])  # with the children that ended; live ones below
            for q in proc.children(recursive=True):
                try:
                    own += sum(q.cpu_times()[:2])
                except psutil.Error:
                    pass
            return time.monotonic(), cams, counts, busy, own, server

        t0, c0, l0, busy0, own0, srv0 = snap()
        time.sleep(seconds)
        t1, c1, l1, busy1, own1, srv1 = snap()
        dt = t1 - t0
        frames = sum(float(c1[k]["stages"]["publish"]["processed"]) -
                     float(c0[k]["stages"]["publish"]["processed"]) for k in c1 if k in c0)
        cams: dict[str, dict[str, Any]] = {}
        for name in sorted(c1):
            row = camera_rates(c0[name], c1[name], dt)
            p = srv.vigil.pipelines.get(name)
            if p is not None:
                k = max(0, l1[name] - l0[name])
                window = p.latency.values()[-k:] if k else []
                v = _pct(window, 95)
                row["latency_p95_ms"] = None if v is None else round(v * 1000.0, 2)
                row["latency_samples"] = len(window)
            else:
                row["latency_p95_ms"] = c1[name]["latency_ms"]["p95"]
            cams[name] = row
        metrics = _get(srv.base, "/metrics")
        pools = getattr(srv.vigil, "pools", None)  # the node's detector pools, where wired
        pool_stats = pools.stats() if pools is not None and hasattr(pools, "stats") else []
        # the server and its children (the pool's worker processes): RSS summed (shared pages
        # counted in each process) and PSS summed (shared pages split: the fair total)
        tree = [proc] + proc.children(recursive=True)
        rss_own = proc.memory_info().rss / 2**20
        rss, pss = 0.0, 0.0
        for q in tree:
            try:
                full = q.memory_full_info()
            except (psutil.Error, OSError):
                continue
            rss += full.rss / 2**20
            pss += getattr(full, "pss", full.rss) / 2**20
        threads = sum(q.num_threads() for q in tree if q.is_running())
    out = {"mode": mode, "seconds": round(dt, 3), "warmup_s": warmup, "ready_s": round(ready_s, 2),
           "failed": failed, **step_summary(cams),
           "rss_mb": round(rss, 1), "pss_mb": round(pss, 1), "rss_own_mb": round(rss_own, 1),
           "processes": len(tree), "threads": threads,
           "cpu_cores": round((own1 - own0) / dt, 3),
           # the server process alone (capture, decode, tracker, publish, web, pool client;
           # in pool mode no inference): its CPU per frame published, all cameras
           "server_cores": round((srv1 - srv0) / dt, 3),
           "server_cpu_ms_per_frame": round(1000.0 * (srv1 - srv0) / frames, 3) if frames else None,
           "others_cores": round(max(0.0, (busy1 - busy0) - (own1 - own0)) / dt, 3),
           "load_avg_1m": round(os.getloadavg()[0], 2),
           "metrics_bytes": len(metrics), "pools": pool_stats, "per_camera": cams}
    return out


# ------------------------------------------------------------------ inference limit
def infer_worker(model: str, seconds: float) -> None:
    """One process of the inference limit: a single-threaded session; prints 'ready', waits
    for a line on stdin, runs detect() on vtest frames for `seconds`, prints its JSON."""
    import cv2

    from detectors.base import single_thread_overrides
    from detectors.yolo import YoloDetector

    cv2.setNumThreads(1)
    cap = cv2.VideoCapture(str(data_path(VIDEO)), cv2.CAP_FFMPEG)
    frames = []
    while len(frames) < 40:
        ok, img = cap.read()
        if not ok:
            break
        frames.append(img)
    cap.release()
    det = YoloDetector(model=model, providers="cpu", **single_thread_overrides("yolo"))
    raw = det.raw
    raw_s = [0.0]

    def timed_raw(blob):
        t = time.perf_counter()
        try:
            return raw(blob)
        finally:
            raw_s[0] += time.perf_counter() - t

    det.raw = timed_raw  # type: ignore[method-assign]
    for f in frames[:3]:
        det.detect(f)
    raw_s[0] = 0.0
    print("ready", flush=True)
    sys.stdin.readline()
    n = 0
    t0 = time.perf_counter()
    end = t0 + seconds
    while time.perf_counter() < end:
        det.detect(frames[n % len(frames)])
        n += 1
    el = time.perf_counter() - t0
    print(json.dumps({"images": n, "seconds": round(el, 4), "raw_s": round(raw_s[0], 4)}), flush=True)


def _child(args: list[str]) -> subprocess.Popen:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env.setdefault("MALLOC_ARENA_MAX", "2")  # what main.py sets for the server at start
    return subprocess.Popen([sys.executable, "-m", "bench.multicam", *args], cwd=ROOT, env=env,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def _last_json(text: str) -> dict[str, Any] | None:
    for line in reversed(text.strip().splitlines()):
        if line.startswith("{"):
            try:
                return json.loads(line)
            except json.JSONDecodeError:
                continue
    return None


def inference_limit(seconds: float, workers: int | None = None, models: str | None = None) -> dict[str, Any]:
    """`workers` (default: cores) processes x one single-threaded session, run together."""
    workers = workers or os.cpu_count() or 1
    model = str(Path(models or ROOT / "models") / "yolov3-tiny.onnx")
    procs = [_child(["infer", model, str(seconds)]) for _ in range(workers)]
    try:
        for p in procs:
            line = p.stdout.readline().strip()
            if line != "ready":
                err = p.stderr.read()[-800:] if p.poll() is not None else ""
                raise RuntimeError(f"inference worker did not start: {line!r} {err}")
        for p in procs:  # all loaded: go together
            p.stdin.write("go\n")
            p.stdin.flush()
        res = []
        for p in procs:
            out, err = p.communicate(timeout=seconds + 60)
            r = _last_json(out)
            if r is None:
                raise RuntimeError(f"inference worker failed: {err[-800:]}")
            res.append(r)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.communicate()
    per = [r["images"] / r["seconds"] for r in res]
    per_raw = [r["images"] / r["raw_s"] for r in res if r["raw_s"] > 0]
    return {"workers": workers, "images_per_s": round(sum(per), 2),
            "per_worker": [round(x, 2) for x in per],
            "session_only_images_per_s": round(sum(per_raw), 2) if per_raw else None,
            "load_avg_1m": round(os.getloadavg()[0], 2)}


def step(n: int, mode: str, seconds: float, warmup: float, models: str | None = None) -> dict[str, Any]:
    """One step in a fresh subprocess (its JSON, or an error record)."""
    p = _child(["step", str(n), mode, str(seconds), str(warmup)] + ([models] if models else []))
    try:
        out, err = p.communicate(timeout=warmup + seconds + 120 + 4 * n)
    except subprocess.TimeoutExpired:
        p.kill()
        p.communicate()
        return {"mode": mode, "cameras": n, "error": "step timed out"}
    r = _last_json(out)
    if r is None:
        return {"mode": mode, "cameras": n, "error": f"exit code {p.returncode}",
                "stderr_tail": err[-1500:]}
    if p.returncode != 0:  # measured, then failed while stopping: keep the figures, say so
        r["exit_code"] = p.returncode
        r["stderr_tail"] = err[-1500:]
    return r


# ------------------------------------------------------------------ offline process
def process_speedup(frames: int = 120, rounds: int = 1, workers: int | None = None) -> dict[str, Any]:
    """`main.py process vtest.avi --detector yolo` with the detector inline (--workers 0) and
    on the detector pool (--workers W, default one per core), alternating, `rounds` each: fps
    medians, their ratio, and whether the tracks files are identical."""
    import hashlib
    import tempfile

    from stream.pool import default_workers
    workers = workers or default_workers()
    video = str(data_path(VIDEO))
    fps: dict[str, list[float]] = {"inline": [], "pool": []}
    digests: dict[str, set[str]] = {"inline": set(), "pool": set()}
    with tempfile.TemporaryDirectory(prefix="vigil-mc-process-") as tmp:
        for r in range(rounds):
            for key, w in (("inline", 0), ("pool", workers)):
                tracks = Path(tmp) / f"{key}{r}.txt"
                p = subprocess.run([sys.executable, str(ROOT / "main.py"), "process", video,
                                    "--detector", "yolo", "--max-frames", str(frames), "--workers",
                                    str(w), "--tracks", str(tracks), "--json"],
                                   cwd=ROOT, capture_output=True, text=True, timeout=600)
                res = _last_json(p.stdout)
                if p.returncode != 0 or res is None:
                    return {"error": f"process --workers {w}: exit {p.returncode}",
                            "stderr_tail": p.stderr[-800:]}
                fps[key].append(res["fps"])
                digests[key].add(hashlib.sha256(tracks.read_bytes()).hexdigest())
    a, b = median(fps["inline"]), median(fps["pool"])
    return {"frames": frames, "rounds": rounds, "workers": workers,
            "inline_fps": a, "pool_fps": b, "ratio": round(b / a, 3) if a and b else None,
            "fps": fps, "tracks_identical": len(digests["inline"] | digests["pool"]) == 1,
            "load_avg_1m": round(os.getloadavg()[0], 2)}


# ------------------------------------------------------------------ the benchmark
def benchmark(cameras: Sequence[int] = DEFAULT_CAMERAS, seconds: float = 6.0, warmup: float = 4.0,
              rounds: int = 1, modes: Sequence[str] | None = None, models: str | None = None,
              log=None, process_frames: int = 120) -> dict[str, Any]:
    data_path(VIDEO)  # a clear error before anything starts
    has_pool = pool_available()
    wanted = list(modes or MODES)
    run_modes = [m for m in wanted if m != "pool" or has_pool]
    notes = []
    if "pool" in wanted and not has_pool:
        notes.append("pool mode left out: this checkout's config has no `pool` section")
    limits: list[dict[str, Any]] = []
    raw: dict[str, dict[int, list[dict[str, Any]]]] = {m: {n: [] for n in cameras} for m in run_modes}
    errors: list[dict[str, Any]] = []
    load_start = round(os.getloadavg()[0], 2)

    def limit_now(when: str) -> None:
        lim = inference_limit(seconds, models=models)
        lim["when"] = when
        limits.append(lim)
        if log:
            log(f"{when}: inference limit {lim['images_per_s']} images/s "
                f"({lim['workers']} x 1 thread), load {lim['load_avg_1m']}")

    for r in range(rounds):
        # the limit before and after every round: on a shared machine the load changes
        # within minutes, and one measurement would make every ratio hostage to its moment
        if r == 0:
            limit_now("before round 1")
        for m in run_modes:
            for n in cameras:
                s = step(n, m, seconds, warmup, models)
                if "error" in s:
                    errors.append(s)
                    if log:
                        log(f"  {m:10s} {n:2d} cameras: ERROR {s['error']}")
                    continue
                raw[m][n].append(s)
                if log:
                    log(f"  {m:10s} {n:2d} cameras: {s['detect_fps_total']:6.1f} det/s, per camera "
                        f"{s['detect_fps_per_camera']['median']:5.2f}, published/source min "
                        f"{s['published_over_source_min']}, p95 {s['latency_p95_ms']['median']} ms, "
                        f"cpu {s['cpu_cores']} cores (others {s['others_cores']}), rss {s['rss_mb']} MB")
        limit_now(f"after round {r + 1}")
    offline = None
    if process_frames > 0:
        offline = process_speedup(process_frames, rounds)
        if log:
            log(f"offline process: {offline}")
    if "pool" in raw and any(raw["pool"].values()) and \
            not any(s.get("pools") for v in raw["pool"].values() for s in v):
        notes.append("pool mode ran with no detector pool in the server (the runtime does not "
                     "build one yet): its figures are the per-camera layout's")
    limit = median(x["images_per_s"] for x in limits)
    results: dict[str, Any] = {}
    for m in run_modes:
        per_n = {str(n): combine_rounds(raw[m][n], limit) for n in cameras if raw[m][n]}
        pts = [(int(n), v["rss_mb"]) for n, v in per_n.items() if v["rss_mb"] is not None]
        pss = [(int(n), v["pss_mb"]) for n, v in per_n.items() if v.get("pss_mb") is not None]
        results[m] = {"steps": per_n, "rss_per_extra_camera_mb": rss_per_extra_camera(pts),
                      "pss_per_extra_camera_mb": rss_per_extra_camera(pss)}
    if "pool" in results and "per_camera" in results:
        results["pool_over_per_camera"] = {
            n: round(results["pool"]["steps"][n]["detect_fps_total"] /
                     results["per_camera"]["steps"][n]["detect_fps_total"], 3)
            for n in results["pool"]["steps"] if n in results["per_camera"]["steps"]
            and results["per_camera"]["steps"][n]["detect_fps_total"]}
    return {
        "benchmark": "multicam", "input": "vtest.avi 768x576 looped at its source fps",
        "detector": "yolo (YOLOv3-tiny, every frame)", "cameras": list(cameras), "modes": run_modes,
        "seconds": seconds, "warmup_s": warmup, "rounds": rounds, "notes": notes,
        "load_avg_1m_start": load_start,
        "inference_limit": {"images_per_s": round(limit, 2) if limit else limit, "rounds": limits},
        "results": results, "errors": errors, "offline_process": offline,
        "raw": {m: {str(n): v for n, v in d.items()} for m, d in raw.items()},
        "machine": machine(),
    }


# ------------------------------------------------------------------ plot
def plot(res: dict[str, Any], path: str | Path) -> Path:
    """Total detect fps (with the inference limit) and RSS against cameras, one line per mode."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4))
    for m in res["modes"]:
        steps = res["results"][m]["steps"]
        ns = sorted(int(n) for n in steps)
        a1.plot(ns, [steps[str(n)]["detect_fps_total"] for n in ns], "o-", label=m)
        a2.plot(ns, [steps[str(n)]["rss_mb"] for n in ns], "o-", label=m)
    lim = res["inference_limit"]["images_per_s"]
    if lim:
        a1.axhline(lim, color="gray", ls="--", label=f"inference limit {lim:.1f}/s")
    a1.set(xlabel="cameras", ylabel="detections/s, all cameras", title="YOLOv3-tiny throughput")
    a2.set(xlabel="cameras", ylabel="RSS (MB)", title="RSS, server + pool worker processes")
    for a in (a1, a2):
        a.set_xscale("log", base=2)
        a.set_xticks(res["cameras"], [str(n) for n in res["cameras"]])
        a.grid(alpha=0.3)
        a.legend()
    fig.suptitle(f"bench multicam, {res['machine'].get('cores')} cores, 1-min load "
                 f"{res.get('load_avg_1m_start')} at start, {res['machine'].get('load_avg_1m')} at "
                 "the end (shared machine)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def markdown(res: dict[str, Any], plot_path: str | None = None) -> str:
    """The BENCHMARKS.md section for one result: the table, the limit, RSS per camera, load."""
    lim = res["inference_limit"]
    lims = ", ".join(f"{x['when']} {x['images_per_s']} (load {x['load_avg_1m']})" for x in lim["rounds"])
    lines = [
        "## Many cameras (bench multicam)", "",
        f"{len(res['cameras'])} steps of 1..{max(res['cameras'])} cameras of {res['input']}, "
        f"{res['detector']}, the shipped server, no viewers; {res['seconds']} s measured after "
        f"{res['warmup_s']} s warm-up per step, each step in a fresh process; {res['rounds']} "
        f"round(s), medians. Machine: {res['machine'].get('cores')} cores, SHARED with other "
        f"work: 1-minute load {res.get('load_avg_1m_start')} at the start, "
        f"{res['machine'].get('load_avg_1m')} at the end; the `others` column is the cores "
        "other processes used during the step.", "",
        f"Pure-inference limit ({lim['rounds'][0]['workers']} processes x one single-threaded "
        f"ONNX Runtime session, detect() on vtest frames): median **{lim['images_per_s']}** "
        f"images/s ({lims}).", "",
        "| mode | cameras | detections/s, all | per camera | x limit | per-camera min/max | "
        "published/source, worst | latency p95 (ms) | detector ms p50 | CPU cores | others | RSS (MB) | PSS (MB) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for m in res["modes"]:
        for n, v in sorted(res["results"][m]["steps"].items(), key=lambda kv: int(kv[0])):
            lines.append(f"| {m} | {n} | {v['detect_fps_total']} | {v['detect_fps_per_camera']} | "
                         f"{v['limit_ratio']} | {v['detect_fairness_min_over_max']} | "
                         f"{v['published_over_source_min']} | {v['latency_p95_ms_median']} | "
                         f"{v['detector_ms_p50_median']} | {v['cpu_cores']} | {v['others_cores']} | "
                         f"{v['rss_mb']} | {v.get('pss_mb')} |")
    lines.append("")
    for m in res["modes"]:
        r = res["results"][m]["rss_per_extra_camera_mb"]
        q = res["results"][m].get("pss_per_extra_camera_mb") or {}
        lines.append(f"Memory per extra camera, {m}: RSS {r['slope_mb']} MB (least-squares slope; "
                     f"{r['span_mb']} MB first to last step), PSS {q.get('slope_mb')} MB.")
    if "pool_over_per_camera" in res["results"]:
        lines.append("Pool over per-camera detections/s: " + ", ".join(
            f"{n} cameras {v}x" for n, v in res["results"]["pool_over_per_camera"].items()) + ".")
    off = res.get("offline_process")
    if off and "error" not in off:
        lines.append(f"Offline `main.py process` of {off['frames']} vtest frames with YOLO: "
                     f"{off['inline_fps']} fps with the detector inline, {off['pool_fps']} fps on "
                     f"the detector pool ({off['workers']} workers): **{off['ratio']}x**, tracks "
                     f"{'identical' if off['tracks_identical'] else 'DIFFERENT'} (medians of "
                     f"{off['rounds']} alternating rounds, load {off['load_avg_1m']}).")
    for note in res.get("notes", []):
        lines.append(f"Note: {note}.")
    if plot_path:
        lines += ["", f"![multicam]({plot_path})"]
    return "\n".join(lines) + "\n"


def _main(argv: list[str]) -> int:
    """Subprocess entry points: `step N MODE SECONDS WARMUP [MODELS]`, `infer MODEL SECONDS`."""
    if argv and argv[0] == "step":
        n, mode, seconds, warmup = int(argv[1]), argv[2], float(argv[3]), float(argv[4])
        import logging
        logging.basicConfig(level=logging.ERROR)
        print(json.dumps(run_step(n, mode, seconds, warmup, argv[5] if len(argv) > 5 else None)),
              flush=True)
        # measured and reported: leave without interpreter finalisation, during which a
        # detector thread that outlived the server's stop timeout can still be inside ONNX
        # Runtime and abort the process (seen at 8-16 cameras under load: SIGABRT at exit)
        os._exit(0)
    if argv and argv[0] == "infer":
        infer_worker(argv[1], float(argv[2]))
        return 0
    print("usage: python -m bench.multicam step N MODE SECONDS WARMUP | infer MODEL SECONDS "
          "(use `python main.py bench multicam`)", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
