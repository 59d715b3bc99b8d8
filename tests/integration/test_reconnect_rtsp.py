"""The capture state machine against a real RTSP server on loopback: SIGKILL mid-stream,
restart on the same port, LIVE again within 3 s of the restart; 3 times in one test; a
stalled server (SIGSTOP) is reported STALLED, then recovers; no thread left behind."""
from __future__ import annotations

import threading
import time

import pytest

from core.types import SourceState
from stream.capture import Capture, ReconnectPolicy
from stream.sources import open_source
from tests.timing import wait_until

RECOVERY_S = 3.0   # LIVE again within this long after the restart
EXTRA_ROUNDS = 3   # rounds run again when one was over RECOVERY_S (see the test)


@pytest.mark.parametrize("backend", ["pyav", "opencv"])
def test_kill_restart_three_times(rtsp_server, backend):
    threads_before = threading.active_count()
    states: list[tuple[float, str]] = []
    cap = Capture("rtsp", lambda: open_source(rtsp_server.url, backend=backend, open_timeout_s=3,
                                              read_timeout_s=2),
                  policy=ReconnectPolicy(), on_state=lambda n, a, b, m: states.append((time.monotonic(), b.value)))
    cap.start()
    watchdog_stop = threading.Event()

    def watchdog():  # the pipeline's process loop does this in production
        while not watchdog_stop.is_set():
            cap.slot.get(timeout=0.05)
            cap.check_stall()

    wd = threading.Thread(target=watchdog, daemon=True)
    wd.start()
    try:
        assert wait_until(lambda: cap.state == SourceState.LIVE, 10), f"never LIVE: {cap.last_error}"
        recoveries = []
        # 3 kill/restart rounds must each be LIVE again within RECOVERY_S. A round over it (but
        # back within 6 s) is measured again, up to EXTRA_ROUNDS times: under load the restart
        # can land just after a failed attempt, so the next one waits a full backoff (2 s cap
        # + jitter) and then opens on a starved CPU. Slow every time, or not back at all, fails.
        while sum(r <= RECOVERY_S for r in recoveries) < 3 and len(recoveries) < 3 + EXTRA_ROUNDS:
            round_ = len(recoveries)
            frames_before = cap.frames_in
            rtsp_server.kill()
            assert wait_until(lambda: cap.state != SourceState.LIVE, 5), "the loss was not noticed"
            time.sleep(1.0)  # the camera stays down for a while
            rtsp_server.start()
            t_back = time.monotonic()
            took = wait_until(lambda: cap.state == SourceState.LIVE and cap.frames_in > frames_before + 3, 6)
            assert took is not None, f"round {round_}: not LIVE again ({cap.state}, {cap.last_error})"
            recoveries.append(time.monotonic() - t_back)
            assert cap.frame_age() < 1.0
        rounds = len(recoveries)
        seq = [s for _, s in states]
        assert seq.count("RECONNECTING") >= rounds and seq[-1] == "LIVE"
        # every loss went through RECONNECTING before LIVE again
        for i, s in enumerate(seq[1:], 1):
            if s == "LIVE":
                assert seq[i - 1] in ("RECONNECTING", "STALLED", "CONNECTING")
        assert sum(r <= RECOVERY_S for r in recoveries) >= 3, \
            f"fewer than 3 of {rounds} restarts LIVE within {RECOVERY_S} s: {recoveries}"
        assert cap.reconnects == rounds
        print(f"\n{backend}: LIVE again {', '.join(f'{r:.2f}' for r in recoveries)} s after restart")
    finally:
        watchdog_stop.set()
        wd.join(1)
        assert cap.stop(timeout=3.0)
    assert wait_until(lambda: threading.active_count() <= threads_before, 3) is not None, \
        [t.name for t in threading.enumerate()]


def test_stalled_server_is_reported_then_recovers(rtsp_server):
    cap = Capture("rtsp", lambda: open_source(rtsp_server.url, backend="pyav", open_timeout_s=3,
                                              read_timeout_s=4),
                  policy=ReconnectPolicy(stall_timeout_s=1.0))
    states = []
    cap.on_state = lambda n, a, b, m: states.append(b.value)
    cap.start()
    try:
        assert wait_until(lambda: cap.state == SourceState.LIVE, 10)
        rtsp_server.stall()
        stalled = wait_until(lambda: cap.check_stall(), 5)
        assert stalled is not None and cap.state == SourceState.STALLED
        assert cap.frame_age() >= 1.0
        rtsp_server.resume()
        assert wait_until(lambda: (cap.check_stall() or True) and cap.state == SourceState.LIVE, 12), states
        assert "STALLED" in states
    finally:
        cap.stop(timeout=3.0)
