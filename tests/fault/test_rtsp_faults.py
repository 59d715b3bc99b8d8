"""A real CameraPipeline on a real RTSP server (GStreamer, loopback) that is SIGKILLed and
restarted on the same port 10 times in one run, down ~0.5 s each time: every loss is seen
(state leaves LIVE), every restart is followed by LIVE with fresh frames, the time from the
server's READY line to LIVE is measured against the 2 s target under the default backoff
(0.25 s doubling, 2 s cap, 20 % jitter), and no thread outlives the pipeline."""
from __future__ import annotations

import statistics
import threading
import time

import pytest

from core.config import parse_config
from core.types import SourceState
from stream.pipeline import CameraPipeline
from tests.fault.util import wait_until

pytestmark = pytest.mark.fault

ROUNDS = 10
DOWN_S = 0.5            # how long the camera stays dead before it is started again
TARGET_S = 2.0          # LIVE again within this long after the server is back (READY)
# Hard bound: the longest default backoff sleep (2 s cap + 20 % jitter) + one open (~0.3 s) +
# slack for a loaded 2-core CI box. Above TARGET_S is reported, above this fails.
HARD_LIMIT_S = 2.0 * 1.2 + 1.1
# A round over HARD_LIMIT_S (but LIVE again within HARD_LIMIT_S + 3 s) is measured again, up to
# this many extra rounds: under load the restart can land just after a failed attempt, so the
# next one waits the full capped backoff and then opens on a starved CPU. ROUNDS rounds within
# HARD_LIMIT_S are still required; a restart that is slow every time, or never LIVE, fails.
EXTRA_ROUNDS = 3


def test_rtsp_kill_restart_ten_times(rtsp_server, tmp_path, fault_report):
    cfg = parse_config({
        "server": {"port": 0},
        "paths": {"data": str(tmp_path)},
        "cameras": [{"name": "rtsp", "source": rtsp_server.url, "detector": "none",
                     "open_timeout_s": 3, "read_timeout_s": 2}],
    })
    cam = cfg.cameras[0]
    rc = cam.reconnect
    assert (rc.initial_backoff_s, rc.max_backoff_s, rc.jitter, rc.max_attempts) == (0.25, 2.0, 0.2, 0)

    threads_before = {t.ident for t in threading.enumerate()}
    states: list[tuple[float, str]] = []
    pipe = CameraPipeline(cam, cfg, sink=lambda ev, snap=None: states.append(
        (time.monotonic(), ev.data.get("to"))))
    cap = pipe.capture
    pipe.start()
    recoveries: list[float] = []
    loss_seen: list[float] = []
    outages: list[float] = []   # kill -> LIVE again (down time + server start + reconnect)
    starts: list[float] = []    # server spawn -> READY
    try:
        assert wait_until(lambda: cap.state == SourceState.LIVE, 15) is not None, \
            f"never LIVE: {cap.state} {cap.last_error}"
        while (sum(r <= HARD_LIMIT_S for r in recoveries) < ROUNDS
               and len(recoveries) < ROUNDS + EXTRA_ROUNDS):
            round_ = len(recoveries)
            frames_before = cap.frames_in
            published_before = pipe.track_stage.processed
            t_kill = time.monotonic()
            rtsp_server.kill()
            fault_report["faults_injected"] += 1
            took = wait_until(lambda: cap.state != SourceState.LIVE, 5, 0.005)
            assert took is not None, f"round {round_}: the loss was not noticed ({cap.state})"
            loss_seen.append(took)
            time.sleep(max(0.0, DOWN_S - (time.monotonic() - t_kill)))
            t_spawn = time.monotonic()
            rtsp_server.start()  # returns after the server printed READY
            starts.append(time.monotonic() - t_spawn)
            back = wait_until(lambda: cap.state == SourceState.LIVE and cap.frames_in > frames_before,
                              HARD_LIMIT_S + 3.0, 0.005)
            assert back is not None, (f"round {round_}: not LIVE again {HARD_LIMIT_S + 3:.1f} s after "
                                      f"the restart ({cap.state}, {cap.last_error})")
            recoveries.append(back)
            outages.append(time.monotonic() - t_kill)
            fault_report["recoveries"] += 1
            # the pipeline (not only the capture) processes the new frames
            assert wait_until(lambda: pipe.track_stage.processed > published_before + 5, 3) is not None
            assert cap.frame_age() < 1.0
            # settle a little so the next kill lands mid-stream, not mid-open
            time.sleep(0.3)
        assert cap.reconnects == len(recoveries), (cap.reconnects, len(recoveries), cap.last_error)
        assert cap.state == SourceState.LIVE and cap.attempts == 0
    finally:
        stopped = pipe.stop(timeout=3.0)

    seq = [s for _, s in states]
    assert seq.count("RECONNECTING") >= len(recoveries), seq
    for i, s in enumerate(seq[1:], 1):  # every LIVE comes from a visible non-LIVE state
        if s == "LIVE":
            assert seq[i - 1] in ("CONNECTING", "RECONNECTING", "STALLED"), seq
    assert stopped, "pipeline threads did not stop within 3 s"
    left = wait_until(lambda: not ({t.ident for t in threading.enumerate()} - threads_before), 3)
    assert left is not None, [t.name for t in threading.enumerate() if t.ident not in threads_before]

    within = sum(r <= TARGET_S for r in recoveries)
    fault_report.update({
        "inputs_tried": len(recoveries),
        "remeasured_rounds": len(recoveries) - ROUNDS,
        "down_s": DOWN_S,
        "loss_detected_s_max": round(max(loss_seen), 3),
        "live_after_ready_s": [round(r, 3) for r in recoveries],
        "live_after_ready_s_median": round(statistics.median(recoveries), 3),
        "live_after_ready_s_max": round(max(recoveries), 3),
        "within_2s": within,
        "server_start_s_median": round(statistics.median(starts), 3),
        "outage_s_median": round(statistics.median(outages), 3),
        "outage_s_max": round(max(outages), 3),
        "reconnects": cap.reconnects,
        "threads_left": 0,
    })
    assert sum(r <= HARD_LIMIT_S for r in recoveries) >= ROUNDS, \
        f"fewer than {ROUNDS} of {len(recoveries)} restarts LIVE within {HARD_LIMIT_S} s: {recoveries}"
    # the 2 s target holds for the typical restart; the worst case is bounded by the backoff cap
    assert statistics.median(recoveries) <= TARGET_S, recoveries
