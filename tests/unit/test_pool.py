"""The node's detector pool (stream/pool.py): map() order, fairness and bounds, stuck and
crashed workers, cross-camera batching, with fake detectors of controlled delays."""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from core.types import Detections, Frame
from stream.pool import DetectorPool, DetectorSpec, PoolError, WorkerStuck


class Sleeper:
    """Detects one box whose x is the frame's seq, after `delay` seconds (per call); records
    the concurrency it saw and the batches it was given."""

    name = "sleeper"
    class_names = ["thing"]
    live = 0
    peak = 0
    lock = threading.Lock()

    def __init__(self, delay=0.01, stuck_on=None, batch_delay=None):
        self.delay = delay
        self.stuck_on = stuck_on  # a seq this detector hangs on (once)
        self.batch_delay = batch_delay
        self.batches: list[int] = []
        self.closed = False

    def _one(self, frame):
        seq = frame.seq if isinstance(frame, Frame) else -1
        return Detections([[seq, 0, seq + 10, 10]], [0.9], [0], frame_seq=seq,
                          ts=frame.ts if isinstance(frame, Frame) else float("nan"))

    def detect(self, frame):
        cls = type(self)
        with cls.lock:
            cls.live += 1
            cls.peak = max(cls.peak, cls.live)
        try:
            if self.stuck_on is not None and getattr(frame, "seq", None) == self.stuck_on:
                self.stuck_on = None
                time.sleep(1.5)
            time.sleep(self.delay)
            return self._one(frame)
        finally:
            with cls.lock:
                cls.live -= 1

    def detect_batch(self, frames):
        self.batches.append(len(frames))
        time.sleep(self.batch_delay if self.batch_delay is not None else self.delay)
        return [self._one(f) for f in frames]

    def close(self):
        self.closed = True


def frames(n, cam="cam", start=0):
    img = np.zeros((8, 8, 3), np.uint8)
    return [Frame(img, k, k * 0.04, cam) for k in range(start, start + n)]


def test_map_yields_every_frame_in_order_computed_in_parallel():
    built = []

    def factory():
        d = Sleeper(delay=0.03)
        built.append(d)
        return d

    Sleeper.peak = 0
    pool = DetectorPool(factory, workers=3, kind="threads")
    try:
        t0 = time.perf_counter()
        out = list(pool.map(frames(30), lookahead=6))
        wall = time.perf_counter() - t0
    finally:
        pool.close()
    assert [f.seq for f, _ in out] == list(range(30))
    assert [int(d.xyxy[0, 0]) for _, d in out] == list(range(30))  # each frame's own result
    assert all(d.frame_seq == f.seq for f, d in out)
    assert Sleeper.peak >= 2                      # frames really ran side by side
    assert wall < 30 * 0.03 * 0.8, wall           # faster than one after another
    assert len(built) == 3 and all(d.closed for d in built)  # one detector per worker, closed


def test_map_raises_a_failed_frames_error_and_ends_cleanly():
    class Bad(Sleeper):
        def detect(self, frame):
            if frame.seq == 5:
                raise ValueError("bad frame")
            return super().detect(frame)

    pool = DetectorPool(lambda: Bad(0.001), workers=2)
    try:
        got = []
        with pytest.raises(ValueError, match="bad frame"):
            for f, _ in pool.map(frames(20), lookahead=3):
                got.append(f.seq)
        assert got == [0, 1, 2, 3, 4]
        assert [f.seq for f, _ in pool.map(frames(4))] == [0, 1, 2, 3]  # the pool goes on
        assert pool.stats()["cameras"] == {}   # map clients are gone
    finally:
        pool.close()


def test_model_call_outside_a_worker_goes_through_the_pool():
    pool = DetectorPool(lambda: Sleeper(0.001), workers=1)
    try:
        d = pool.model.detect(frames(1, start=7)[0])
        assert int(d.xyxy[0, 0]) == 7 and d.frame_seq == 7
        assert pool.model.name == "sleeper" and pool.model.class_names == ["thing"]
    finally:
        pool.close()


def test_spec_builds_single_threaded_sections():
    from core.config import YoloConfig
    spec = DetectorSpec("yolo", YoloConfig())
    over = spec.section.model_copy(update={"intra_op_threads": 1, "inter_op_threads": 1})
    assert DetectorSpec("yolo", over).key() != spec.key()
    assert DetectorSpec("yolo", YoloConfig()).key() == spec.key()
