"""bench cluster: Vigil on a local Ray cluster (runtime/cluster.py; needs the `cluster` extra).

A head (no camera slots) and 2 worker nodes on this machine, N synthetic cameras:

- failover: the worker holding the most cameras fails, and the time from the fault until every
  camera is LIVE again on the others is measured, over several faults (a fresh worker joins
  after each, so there is always a survivor with room); cameras per node before and after.
  Two faults: `kill` SIGKILLs the node's processes (ray.cluster_utils remove_node(
  allow_graceful=False): their connections close, so the head sees the host actor gone at
  once); `freeze` SIGSTOPs them (a hung node, or one cut off the network: nothing closes, and
  only Ray's health checks can tell);
- the same with Ray's default health checks (3 s period, 10 s timeout, 5 misses) on a second
  cluster in the same run: the baseline the tuned settings (cluster.health_check_*) are
  compared with (ratio of the medians, per fault);
- bytes the head receives from a camera's node per second, unwatched (status and events only)
  and watched by one viewer on the head (plus its JPEGs), against the bytes the raw frames
  would be (width x height x 3 x the camera's fps): what keeping pixels on their node saves.

Every figure is measured in this run; the load average is recorded with it.
"""
from __future__ import annotations

import collections
import os
import statistics
import tempfile
import time
from typing import Any, Callable

from bench.common import machine, median

DEFAULT_HC = {"health_check_period_ms": 3000, "health_check_timeout_ms": 10000,
              "health_check_failure_threshold": 5}


def _cameras(n: int, width: int, height: int, fps: float, detector: str) -> list[dict[str, Any]]:
    return [{"name": f"cam{i}", "source": "synthetic:crossing", "detector": detector, "seed": i,
             "synthetic": {"width": width, "height": height, "fps": fps}, "lines": []}
            for i in range(n)]


def _states(v) -> dict[str, tuple[str, str | None]]:
    return {n: (st.state, st.node) for n, st in ((n, c.status()) for n, c in v.cameras.items())}


def _wait(pred: Callable[[], Any], timeout: float, step: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        got = pred()
        if got or time.monotonic() > deadline:
            return got
        time.sleep(step)


def _per_node(v) -> dict[str, int]:
    return dict(sorted(collections.Counter(n for _, n in _states(v).values() if n).items()))


def _run(hc: dict[str, int], cameras: int, faults: list[str], seconds: float, width: int, height: int,
         fps: float, detector: str, measure_bytes: bool, log: Callable[[str], None]) -> dict[str, Any]:
    from core.config import ClusterConfig, parse_config
    from runtime.cluster import ClusterVigil, LocalCluster
    import ray
    cc = ClusterConfig(capacity=cameras, **hc)
    t0 = time.monotonic()
    local = LocalCluster(2, cc)
    out: dict[str, Any] = {"health_checks": hc}
    v = None
    try:
        data = {"cameras": _cameras(cameras, width, height, fps, detector),
                "paths": {"data": tempfile.mkdtemp(prefix="vigil-bench-cluster-")},
                "cluster": {"address": local.address, **cc.model_dump(exclude={"address"})}}
        v = ClusterVigil(parse_config(data, "bench cluster"), persist=False, local=local)
        v.start()
        if not _wait(lambda: all(s == "LIVE" for s, _ in _states(v).values()), 240, 0.25):
            raise RuntimeError(f"cameras not LIVE within 240 s: {_states(v)}")
        out["start_to_all_live_s"] = round(time.monotonic() - t0, 2)
        log(f"cluster up, {cameras} cameras LIVE after {out['start_to_all_live_s']} s: {_per_node(v)}")
        ctl = v.controller
        if measure_bytes:
            time.sleep(1.0)
            rx0 = {n: s.rx_bytes for n, s in ctl.slots.items()}
            time.sleep(seconds)
            per_cam = [(ctl.slots[n].rx_bytes - rx0[n]) / seconds for n in rx0]
            cam = next(iter(v.cameras))
            st = v.cameras[cam].status()
            feed = v.cameras[cam].frames("overlay")
            b0, r0, frames = feed.bytes_in, ctl.slots[cam].rx_bytes, 0
            with feed.subscribe() as viewer:
                viewer.next(5.0)  # the first fetch starts the lease on the node
                b0, r0 = feed.bytes_in, ctl.slots[cam].rx_bytes
                t1 = time.monotonic()
                while time.monotonic() - t1 < seconds:
                    if viewer.next(1.0) is not None:
                        frames += 1
                dt = time.monotonic() - t1
            watched = (feed.bytes_in - b0 + ctl.slots[cam].rx_bytes - r0) / dt
            src_fps = st.capture.fps or fps
            raw = width * height * 3 * src_fps
            out["bytes_per_camera_s"] = {
                "unwatched_median": round(median(per_cam), 1),
                "unwatched_max": round(max(per_cam), 1),
                "watched": round(watched, 1), "watched_frames_per_s": round(frames / dt, 2),
                "raw_frames": round(raw, 1), "source_fps": round(src_fps, 2),
                "unwatched_vs_raw": round(median(per_cam) / raw, 6),
                "watched_vs_raw": round(watched / raw, 4)}
            log(f"bytes/camera/s: {out['bytes_per_camera_s']}")
        rounds = []
        for k, fault in enumerate(faults):
            before = _per_node(v)
            victim = max(before, key=lambda n: (before[n], n))
            moved = [c for c, (_, n) in _states(v).items() if n == victim]
            tk = time.monotonic()
            if fault == "kill":
                local.kill_worker(victim)
            else:
                local.freeze_worker(victim)
            ok = _wait(lambda: all(s == "LIVE" and n not in (None, victim)
                                   for s, n in _states(v).values()), 120)
            took = time.monotonic() - tk
            if fault == "freeze":
                local.kill_worker(victim)  # SIGKILL ends the stopped processes
            after = _per_node(v)
            rounds.append({"fault": fault, "node": victim, "cameras_moved": len(moved),
                           "all_live_s": round(took, 3), "ok": bool(ok),
                           "per_node_before": before, "per_node_after": after})
            log(f"{fault} {k + 1}/{len(faults)}: {victim} ({len(moved)} cameras) -> all LIVE in "
                f"{took:.2f} s: {after}")
            if k + 1 < len(faults):  # a fresh worker joins: the next fault has a survivor with room
                local.add_worker()
                _wait(lambda: sum(1 for h in ctl.hosts.values() if h.ready) >= 2, 120, 0.25)
        out["faults"] = rounds
        out["failover_s"] = {}
        for fault in sorted(set(faults)):
            times = [r["all_live_s"] for r in rounds if r["ok"] and r["fault"] == fault]
            out["failover_s"][fault] = {
                "median": median(times), "min": min(times) if times else None,
                "max": max(times) if times else None, "n": len(times),
                "failed": sum(1 for r in rounds if r["fault"] == fault and not r["ok"]),
                "stdev": round(statistics.stdev(times), 3) if len(times) > 1 else None}
        return out
    finally:
        if v is not None:
            v.stop(timeout=5.0)
        ray.shutdown()
        local.shutdown()


def benchmark(cameras: int = 6, kills: int = 2, freezes: int = 2, baseline_kills: int = 1,
              baseline_freezes: int = 1, seconds: float = 5.0,
              width: int = 768, height: int = 432, fps: float = 25.0, detector: str = "none",
              log: Callable[[str], None] = lambda m: None) -> dict[str, Any]:
    from runtime.cluster import local_env, require_ray
    local_env()  # before `import ray`
    require_ray()
    from core.config import ClusterConfig
    tuned_hc = {k: getattr(ClusterConfig(), k) for k in DEFAULT_HC}
    res: dict[str, Any] = {"bench": "cluster", "machine": machine(),
                           "params": {"cameras": cameras, "kills": kills, "freezes": freezes,
                                      "baseline_kills": baseline_kills,
                                      "baseline_freezes": baseline_freezes,
                                      "seconds": seconds, "width": width, "height": height, "fps": fps,
                                      "detector": detector, "workers": 2, "head_slots": 0,
                                      "slots_per_worker": cameras}}
    res["tuned"] = _run(tuned_hc, cameras, ["kill"] * kills + ["freeze"] * freezes, seconds,
                        width, height, fps, detector, True, log)
    if baseline_kills + baseline_freezes > 0:
        base = _run(DEFAULT_HC, cameras, ["kill"] * baseline_kills + ["freeze"] * baseline_freezes,
                    seconds, width, height, fps, detector, False, log)
        res["ray_default_health_checks"] = base
        res["default_vs_tuned"] = {}
        for fault, b in base["failover_s"].items():
            a = res["tuned"]["failover_s"].get(fault, {}).get("median")
            if a and b["median"]:
                res["default_vs_tuned"][fault] = round(b["median"] / a, 2)
    res["load_avg_1m_end"] = round(os.getloadavg()[0], 2)
    return res


def soak_markdown(s: dict[str, Any]) -> str:
    return (f"| head RSS, {s['cameras']} cameras with a motion detector and a counting line on 2 workers, "
            f"{s['minutes']:g} min ({s['events_per_s']} events/s into the head's store) | "
            f"{s['rss_mb_start']} -> {s['rss_mb_end']} MB (max {s['rss_mb_max']}; second-half slope "
            f"{s['rss_slope_mb_per_min_second_half']} MB/min); threads {s['threads_start']} -> "
            f"{s['threads_end']} | states at the end {s['states_end']} |\n")


def soak(minutes: float, cameras: int = 12, sample_s: float = 10.0, warmup_s: float = 60.0,
         log: Callable[[str], None] = lambda m: None) -> dict[str, Any]:
    """The head's RSS over `minutes` with `cameras` event-producing cameras (motion detector and
    a counting line on synthetic:crossing, 320x180 at 10 fps) on 2 workers, the events written to
    the head's SQLite store: what the head's controller, relay and single event writer cost."""
    import psutil
    from core.config import ClusterConfig, parse_config
    from runtime.cluster import ClusterVigil, LocalCluster, local_env, require_ray
    local_env()
    ray = require_ray()
    cc = ClusterConfig(capacity=cameras)
    local = LocalCluster(2, cc)
    v = None
    me = psutil.Process()
    try:
        cams = [{"name": f"cam{i}", "source": "synthetic:crossing", "detector": "motion", "seed": i,
                 "synthetic": {"width": 320, "height": 180, "fps": 10, "objects": 3, "speed_min": 90,
                               "speed_max": 160, "size_min": 24, "size_max": 40, "pause_max": 0.3},
                 "detector_params": {"warmup_frames": 10},
                 "lines": [{"name": "mid", "points": [[0.3, 0.0], [0.3, 1.0]], "normalized": True,
                            "hysteresis_px": 2, "confirm_frames": 1, "classes": []}]}
                for i in range(cameras)]
        data = {"cameras": cams, "paths": {"data": tempfile.mkdtemp(prefix="vigil-bench-cluster-soak-")},
                "cluster": {"address": local.address, **cc.model_dump(exclude={"address"})}}
        v = ClusterVigil(parse_config(data, "bench cluster soak"), local=local)
        v.start()
        if not _wait(lambda: all(s == "LIVE" for s, _ in _states(v).values()), 300, 0.5):
            raise RuntimeError(f"cameras not LIVE within 300 s: {_states(v)}")
        log(f"soak: {cameras} cameras LIVE {_per_node(v)}; warm-up {warmup_s:.0f} s")
        time.sleep(warmup_s)
        samples = []
        t0 = time.monotonic()
        ev0 = v.bus.published
        while True:
            t = time.monotonic() - t0
            samples.append({"t_s": round(t, 1), "rss_mb": round(me.memory_info().rss / 2**20, 1),
                            "events": v.bus.published - ev0, "threads": me.num_threads()})
            if t >= minutes * 60:
                break
            time.sleep(min(sample_s, max(0.1, minutes * 60 - t)))
        dur = samples[-1]["t_s"]
        half = [x for x in samples if x["t_s"] >= dur / 2]
        slope = None
        if len(half) >= 2:
            xs = [x["t_s"] / 60 for x in half]
            ys = [x["rss_mb"] for x in half]
            mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
            den = sum((a - mx) ** 2 for a in xs)
            slope = round(sum((a - mx) * (b - my) for a, b in zip(xs, ys)) / den, 3) if den else None
        states = collections.Counter(s for s, _ in _states(v).values())
        return {"minutes": minutes, "cameras": cameras, "per_node": _per_node(v),
                "rss_mb_start": samples[0]["rss_mb"], "rss_mb_end": samples[-1]["rss_mb"],
                "rss_mb_max": max(x["rss_mb"] for x in samples),
                "rss_slope_mb_per_min_second_half": slope,
                "events": samples[-1]["events"], "events_per_s": round(samples[-1]["events"] / dur, 1) if dur else None,
                "threads_start": samples[0]["threads"], "threads_end": samples[-1]["threads"],
                "states_end": dict(states), "samples": samples}
    finally:
        if v is not None:
            v.stop(timeout=5.0)
        ray.shutdown()
        local.shutdown()


def markdown(res: dict[str, Any]) -> str:
    """The BENCHMARKS.md section of one run."""
    t = res["tuned"]
    p = res["params"]
    lines = [f"`python main.py bench cluster` ({p['cameras']} synthetic {p['width']}x{p['height']} "
             f"cameras at {p['fps']:g} fps, detector {p['detector']}; a head with no camera slots "
             f"and 2 worker nodes on this machine; load average {res['machine']['load_avg_1m']} at "
             f"start, {res['load_avg_1m_end']} at the end)", "",
             "| fault -> every camera LIVE again | health checks | median | min | max | n |",
             "|---|---|---|---|---|---|"]
    what = {"kill": "worker SIGKILLed (connections close)",
            "freeze": "worker SIGSTOPped (hung / cut off: nothing closes)"}
    for label, run in (("tuned: 500 ms, 500 ms timeout, 3 misses", t),
                       ("Ray's defaults: 3 s, 10 s timeout, 5 misses", res.get("ray_default_health_checks"))):
        for fault, fs in (run or {}).get("failover_s", {}).items():
            if fs["n"]:
                lines.append(f"| {what[fault]} | {label} | {fs['median']:.2f} s | {fs['min']:.2f} s | "
                             f"{fs['max']:.2f} s | {fs['n']} |")
    lines += ["", "| cameras per node | before | after |", "|---|---|---|"]
    for r in t["faults"]:
        lines.append(f"| {r['fault']} {r['node']} | {r['per_node_before']} | {r['per_node_after']} |")
    by = t.get("bytes_per_camera_s")
    if by:
        lines += ["", "| bytes the head receives per camera per second | bytes/s | vs raw frames |",
                  "|---|---|---|",
                  f"| unwatched (status + events), median of cameras | {by['unwatched_median']:,.0f} "
                  f"| {100 * by['unwatched_vs_raw']:.4f} % |",
                  f"| watched by one viewer (+ its JPEGs, {by['watched_frames_per_s']} frames/s) | "
                  f"{by['watched']:,.0f} | {100 * by['watched_vs_raw']:.2f} % |",
                  f"| raw frames would be ({by['source_fps']} fps) | {by['raw_frames']:,.0f} | 100 % |"]
    return "\n".join(lines) + "\n"
