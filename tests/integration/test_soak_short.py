"""A short (3-minute) soak of the shipped config.yaml (YOLO on the looping sample clip + the conveyor
with its defect watch, 5 MJPEG viewers, API polled every second), through the documented
command `python main.py bench soak`, judged after a 100 s warm-up (the defect watch learns
its per-shape references and the clip ring fills during the first ~100 s: RSS steps up at
~90 s and ~150 s in a 10-minute run, then stays within a few MB).

What 3 minutes can show: threads and open fds flat, every viewer served, the API answering (threads, fds: no growth of the floor or median; transient
clip writers come and go),
the cameras' fps steady (min >= 90 % of the median of 10-s intervals), RSS growth between
the first and last judged samples under RSS_TOL_PCT (why 8 % and not the soak's 5 %: below).
A slow leak needs the long run (`--minutes 30`, 5 %): 3 minutes cannot separate it from noise.
Only a published-fps dip can be excused by load (xfail), and only interval by interval: see
the end of the test.
"""
from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from tests.conftest import ROOT, require

pytestmark = pytest.mark.slow

MINUTES, WARMUP_S, SAMPLE_S = 3, 100, 10
# With a 30 s warm-up the judged window caught the start-up steps (+9.1 % in a CI run). After
# 100 s a 10-minute run with 2 malloc arenas stayed within 477..497 MB (+4 % at most).
# 8 % keeps that noise out and still fails a real leak: one 768x576 frame kept per second is
# +80 MB/min, +20 % over the judged 80 s.
RSS_TOL_PCT = 8.0
# cores other processes must be using in an interval to excuse a published-fps dip in it
LOADED_CORES = 0.5


def _soak(tmp_path, name: str) -> tuple[dict, dict, str]:
    out = tmp_path / f"{name}.json"
    cmd = [sys.executable, str(ROOT / "main.py"), "bench", "soak", "--minutes", str(MINUTES),
           "--warmup-s", str(WARMUP_S), "--sample-s", str(SAMPLE_S), "--out", str(out), "--json",
           "--rss-tol-pct", str(RSS_TOL_PCT), "--quiet"]
    try:
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=MINUTES * 60 + 120)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"the soak did not finish (a frozen process: a deadlock holding the GIL?); "
                    f"stderr: {(e.stderr or b'')[-2000:]!r}")
    assert out.is_file(), f"exit {proc.returncode}, no result; stderr:\n{proc.stderr[-3000:]}"
    res = json.loads(out.read_text())
    assert "error" not in res, res.get("error")
    v = res["verdicts"]
    return res, v, json.dumps({k: v[k] for k in v if k != "fps"}, indent=1)


# One run is 3 minutes; a second one only when the first one's RSS verdict failed.
@pytest.mark.timeout(2 * MINUTES * 60 + 300)
def test_soak_two_minutes(tmp_path, models_dir, samples_dir) -> None:
    require((models_dir / "yolov3-tiny.onnx").is_file(),
            f"{models_dir / 'yolov3-tiny.onnx'} missing: run `python main.py assets`")
    res, v, brief = _soak(tmp_path, "soak")
    assert v["samples_after_warmup"] >= (MINUTES * 60 - WARMUP_S) // SAMPLE_S
    # RSS over an 80 s window: a start-up step landing late in the warm-up on a loaded machine
    # can cross the limit once (+8.08 % seen in one CI run, +4 % typical). The measurement is
    # taken again rather than the limit raised: a leak grows in both runs and still fails.
    first_rss = v["rss"]
    if not first_rss["pass"]:
        res, v, brief = _soak(tmp_path, "soak-again")
    assert v["rss"]["pass"], (f"RSS grew more than {RSS_TOL_PCT} % after warm-up in two runs: "
                              f"{first_rss}, then {v['rss']}\n{brief}")

    assert v["threads"]["pass"], f"thread count not flat: {v['threads']}"
    assert v["fds"]["pass"], f"open fds not flat: {v['fds']}"
    assert v["viewers"]["pass"], f"viewers not served: {v['viewers']}; client {res['client']}"
    assert v["api"]["pass"], f"API polls failed: {v['api']}"
    assert set(v["fps"]["cameras"]) == {"street", "conveyor"}
    for cam, per in v["fps"]["cameras"].items():
        # capture is paced to the source: steady whatever the load
        assert per["source_fps"]["pass"], f"{cam} source fps unsteady: {per['source_fps']}"
        assert per["source_fps"]["median"] > 20, f"{cam}: {per['source_fps']}"
    # Published fps: on a 2-core machine shared with other jobs the newest-frame-only pipeline
    # drops frames by design while others take the CPU. A dip is excused (xfail) only when every
    # 10-s interval that dipped had other processes using >= LOADED_CORES in that same interval;
    # a dip while the machine was quiet, or a pipeline that published nothing for a whole
    # interval (frozen), fails whatever the load.
    judged = [s for s in res["series"] if s["t"] >= WARMUP_S]
    excused = {}
    for cam, per in v["fps"]["cameras"].items():
        pub = per["published_fps"]
        assert "min" in pub, f"{cam}: {pub}"
        assert pub["min"] > 0, f"{cam} published nothing for a whole {SAMPLE_S} s interval: {pub}"
        if pub["pass"]:
            continue
        floor = (1.0 - v["fps"]["tolerance"]) * pub["median"]
        dips = [(s["t"], s["cameras"][cam]["published_fps"], s.get("others_cores")) for s in judged
                if s["cameras"][cam]["published_fps"] is not None
                and s["cameras"][cam]["published_fps"] < floor]
        quiet = [d for d in dips if (d[2] or 0.0) < LOADED_CORES]
        assert dips and not quiet, (f"{cam} published fps unsteady with the machine quiet "
                                    f"(t, fps, others' cores): {quiet or pub}")
        excused[cam] = dips
    if excused:
        pytest.xfail(f"published fps dipped only while other processes took the CPU "
                     f"(t, fps, others' cores): {excused}")


# ------------------------------------------------------------------ --profile, a tiny run
PROFILE_MINUTES, PROFILE_WARMUP_S, PROFILE_SAMPLE_S = 0.5, 10, 5


@pytest.mark.timeout(150)
def test_soak_profile_reports_growing_sites_and_the_breakdown(tmp_path, models_dir, samples_dir) -> None:
    """`bench soak --profile` on a 30-s run: tracemalloc snapshots at the end of the warm-up, the
    middle and the end, the sites that grew (file:line, size and count deltas) over the window
    and its second half, and the memory breakdown in every sample with where the growth went."""
    require((models_dir / "yolov3-tiny.onnx").is_file(),
            f"{models_dir / 'yolov3-tiny.onnx'} missing: run `python main.py assets`")
    out = tmp_path / "profile.json"
    cmd = [sys.executable, str(ROOT / "main.py"), "bench", "soak", "--minutes", str(PROFILE_MINUTES),
           "--warmup-s", str(PROFILE_WARMUP_S), "--sample-s", str(PROFILE_SAMPLE_S), "--viewers", "2",
           "--profile", "--profile-top", "10", "--out", str(out), "--json", "--quiet"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=140)
    assert out.is_file(), f"exit {proc.returncode}, no result; stderr:\n{proc.stderr[-3000:]}"
    res = json.loads(out.read_text())
    assert "error" not in res, res.get("error")
    assert res["profiled"] is True
    prof = res["profile"]
    assert len(prof["snapshots_t"]) == 3
    t0, tmid, t1 = prof["snapshots_t"]
    assert PROFILE_WARMUP_S <= t0 < tmid < t1 <= PROFILE_MINUTES * 60 + PROFILE_SAMPLE_S
    assert prof["traced_mb"] > 1 and prof["tracemalloc_overhead_mb"] > 0
    for key in ("top_growth", "top_growth_second_half"):
        rows = prof[key]
        assert 1 <= len(rows) <= 10, rows
        deltas = [r["size_delta_kb"] for r in rows]
        assert deltas == sorted(deltas, reverse=True)
        for r in rows:
            assert re.fullmatch(r".+:\d+", r["site"]), r
            assert isinstance(r["count_delta"], int) and r["size_kb"] >= 0
        assert not any(r["site"].startswith("bench/soak.py") for r in rows)  # not its own records
    # the breakdown in every sample, both cameras through the camera interface
    for s in res["series"]:
        mem = s["memory"]
        assert mem["rss_mb"] > 50
        assert {"camera:street", "camera:conveyor", "bus:events"} <= set(mem["components"])
        assert mem["components"]["camera:street"]["capture_slot"] > 0.1  # one 640x272 frame: 0.5 MB
    g = res["memory_growth"]
    assert g["t"][0] >= PROFILE_WARMUP_S and set(g["rss_mb"]) == {"first", "last", "first_half", "second_half"}
    assert set(g["smaps_mb"]) == {"heap", "anon", "file", "stack", "other"}
    assert g["components_mb"], g
