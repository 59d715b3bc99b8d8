"""Newest-frame mailbox and the capture state machine, on fake sources (no I/O)."""
from __future__ import annotations

import threading
import time

import numpy as np

from core.types import SourceState
from stream.capture import Capture, ReconnectPolicy
from stream.slot import LatestSlot
from tests.timing import best_of, wait_for


def test_slot_keeps_newest_and_counts_drops():
    slot: LatestSlot[int] = LatestSlot()
    for i in range(5):
        slot.put(i)
    assert slot.get(0) == 4 and slot.dropped == 4
    assert slot.get(0.01) is None
    slot.put(5)
    assert slot.get(0) == 5 and slot.dropped == 4


def test_slow_consumer_gaps_equal_drops():
    slot: LatestSlot[int] = LatestSlot()
    stop = threading.Event()

    def produce():
        for i in range(400):
            slot.put(i)
            time.sleep(0.0005)
        stop.set()

    t = threading.Thread(target=produce)
    t.start()
    seen = []
    while not (stop.is_set() and slot.peek() == (seen[-1] if seen else None)):
        v = slot.get(0.05)
        if v is not None:
            seen.append(v)
            time.sleep(0.003)  # slow consumer
    t.join()
    assert seen == sorted(seen) and len(set(seen)) == len(seen)
    gaps = sum(b - a - 1 for a, b in zip(seen, seen[1:])) + seen[0]
    assert gaps == slot.dropped > 0
    assert seen[-1] == 399


def test_slot_close_wakes_waiter():
    def once() -> float:
        slot: LatestSlot[int] = LatestSlot()
        out = []
        t = threading.Thread(target=lambda: out.append(slot.get(30)), daemon=True)
        t.start()
        time.sleep(0.05)  # the waiter is (most likely) in get(); a close before get() is fine too
        t0 = time.monotonic()
        slot.close()
        t.join(5)
        assert out == [None], "close() did not wake the waiter (it waits out its 30 s timeout)"
        return time.monotonic() - t0

    # the wake-up time, re-measured when a loaded machine delayed the woken thread
    took = best_of(once, lambda s: s < 0.5)
    assert min(took) < 0.5, took


class FakeFile:
    """A finite 'file' of n frames at fps."""

    def __init__(self, n=10, fps=100.0, live=False, fail_open=False, fail_after=None):
        self.n, self.fps, self.is_live = n, fps, live
        self.fail_open, self.fail_after = fail_open, fail_after
        self.uri = "fake"
        self.i = 0
        self.closed = False

    def open(self):
        if self.fail_open:
            raise RuntimeError("fake: connection refused")

    def read(self):
        if self.fail_after is not None and self.i >= self.fail_after:
            raise RuntimeError("fake: connection reset")
        if self.i >= self.n:
            return None
        self.i += 1
        return np.full((8, 8, 3), self.i % 255, np.uint8)

    def close(self):
        self.closed = True


def test_file_ends_with_state_ended_and_paced():
    states = []
    cap = Capture("f", lambda: FakeFile(n=20, fps=100.0), loop=False,
                  on_state=lambda n, a, b, m: states.append(b))
    t0 = time.monotonic()
    cap.start()
    assert wait_for(lambda: cap.state == SourceState.ENDED, 3.0)
    took = time.monotonic() - t0
    assert cap.frames_in == 20
    assert took >= 0.15  # 20 frames at 100 fps are paced (~0.19 s)
    assert states[0] == SourceState.LIVE and states[-1] == SourceState.ENDED
    cap.stop()


def test_file_loops_and_seq_strictly_increases():
    cap = Capture("f", lambda: FakeFile(n=5, fps=1000.0), loop=True)
    seqs = []
    cap.start()
    while len(seqs) < 20:
        f = cap.slot.get(1.0)
        assert f is not None
        seqs.append(f.seq)
    cap.stop()
    assert all(b > a for a, b in zip(seqs, seqs[1:]))
    assert cap.frames_in >= 20 and cap.state in (SourceState.LIVE, SourceState.STOPPED)


def test_live_source_reconnects_then_live():
    opens = []

    def factory():
        opens.append(1)
        # 1st: drops after 3 frames; 2nd: refuses; 3rd: good
        if len(opens) == 1:
            return FakeFile(n=100, live=True, fail_after=3)
        if len(opens) == 2:
            return FakeFile(live=True, fail_open=True)
        return FakeFile(n=10**6, live=True)

    states = []
    cap = Capture("cam", factory, policy=ReconnectPolicy(0.02, 0.05, 0, 0.0),
                  on_state=lambda n, a, b, m: states.append(b.value))
    cap.start()
    assert wait_for(lambda: cap.reconnects >= 1 and cap.state == SourceState.LIVE, 3.0)
    cap.stop()
    assert states[:3] == ["LIVE", "RECONNECTING", "LIVE"] or states[:2] == ["LIVE", "RECONNECTING"]
    assert "LIVE" in states[2:]
    assert cap.last_error and "fake" in cap.last_error


def test_failed_after_max_attempts():
    cap = Capture("bad", lambda: FakeFile(fail_open=True, live=True),
                  policy=ReconnectPolicy(0.01, 0.02, max_attempts=3, jitter=0.0))
    cap.start()
    assert wait_for(lambda: cap.state == SourceState.FAILED, 3.0)
    assert cap.attempts == 3 and "connection refused" in cap.last_error
    assert not wait_for(lambda: cap.alive, 0.3) or True
    cap.stop()
    assert not cap.alive


def test_backoff_is_exponential_capped_with_jitter():
    import random
    p = ReconnectPolicy(0.25, 2.0, 0, jitter=0.2)
    rng = random.Random(0)
    d = [p.delay(a, rng) for a in range(1, 8)]
    assert 0.2 <= d[0] <= 0.3 and 0.4 <= d[1] <= 0.6 and all(x <= 2.4 for x in d)
    assert d[-1] >= 1.6


def test_stall_declared_after_timeout():
    class Hanging(FakeFile):
        def read(self):
            if self.i >= 3:
                time.sleep(0.2)
                return None if self.closed else self.read_more()
            return super().read()

        def read_more(self):
            time.sleep(5)

    cap = Capture("s", lambda: Hanging(live=True),
                  policy=ReconnectPolicy(0.05, 0.1, 0, 0.0, stall_timeout_s=0.2))
    cap.start()
    assert wait_for(lambda: cap.frames_in >= 3, 3.0)
    time.sleep(0.35)
    assert cap.check_stall() is True and cap.state == SourceState.STALLED
    cap.stop(timeout=0.2)


def test_resize_keeps_aspect():
    cap = Capture("r", lambda: FakeFile(n=1), resize=(4, None), loop=False)
    cap.start()
    f = cap.slot.get(2.0)
    cap.stop()
    assert f.image.shape == (4, 4, 3)
