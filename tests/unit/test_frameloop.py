"""The one frame loop (stream/frameloop.py): the per-frame step and its two schedulers."""
from __future__ import annotations

import time

import numpy as np

from core.config import parse_config
from core.types import Detections, Frame
from stream.analyzer import build_analyzer
from stream.frameloop import DetectorThread, FrameStep, InlineDetection


class Mover:
    name = "mover"
    class_names = ["thing"]

    def __init__(self):
        self.seen = []

    def detect(self, frame):
        self.seen.append(frame.seq)
        x = 10 + 3 * frame.seq
        return Detections([[x, 20, x + 30, 60]], [0.9], [0], frame_seq=frame.seq, ts=frame.ts)


def _analyzer(det):
    cfg = parse_config({"cameras": [{"name": "cam", "source": "synthetic:crossing", "detector": "none"}],
                        "tracker": {"min_hits": 1, "appearance": False}})
    return build_analyzer(cfg.cameras[0], cfg, detector=det)


def _frames(n):
    img = np.zeros((100, 200, 3), np.uint8)
    return [Frame(img, k, k * 0.04, "cam") for k in range(n)]


def test_offline_schedule_detects_every_nth_and_shows_its_update():
    det = Mover()
    an = _analyzer(det)
    step, sched = FrameStep(an), InlineDetection(an, every=3)
    shown = []
    for f in _frames(9):
        ups = sched.updates(f)
        assert [u[0] for u in ups] == ([f] if f.seq % 3 == 0 else [])
        tracks = step.advance(f, ups)
        assert (tracks.frame_seq, tracks.ts) == (f.seq, f.ts)
        shown.append(tracks.det_index.tolist())
    assert det.seen == [0, 3, 6] and len(sched.detect_s) == 3
    # the frame's own detections: the tracker update's output (matched); between: predictions
    assert shown == [[0], [-1], [-1], [0], [-1], [-1], [0], [-1], [-1]]
    img = step.draw(_frames(9)[8], tracks)
    assert img.shape == (100, 200, 3) and img.any()  # a copy with the box drawn


def test_older_detections_are_applied_at_their_own_frame_time():
    an = _analyzer(Mover())
    step = FrameStep(an)
    frames = _frames(6)
    applied = []
    real = an.tracker.update

    def spy(frame, dets, image=None):
        applied.append((frame.seq, dets.frame_seq))
        return real(frame, dets, image)

    an.tracker.update = spy
    step.advance(frames[0], [(frames[0], an.detect(frames[0]))])
    # detections for frame 2 arrive while frame 4 is current
    tracks = step.advance(frames[4], [(frames[2], an.detect(frames[2]))])
    assert applied == [(0, 0), (2, 2)] and an.tracker._t == frames[2].ts
    assert (tracks.frame_seq, tracks.ts) == (4, frames[4].ts) and tracks.det_index.tolist() == [-1]


def test_live_schedule_offers_every_nth_frame_and_returns_results_with_their_frame():
    det = Mover()
    an = _analyzer(det)
    sched = DetectorThread(an, "cam", every=2)
    th = sched.start()
    try:
        frames = _frames(6)
        got = []
        for f in frames[:5]:
            got += sched.updates(f)
            if f.seq % 2 == 0:  # let the detector finish this one (no drops in this test)
                deadline = time.monotonic() + 2.0
                while sched.stage.processed < f.seq // 2 + 1 and time.monotonic() < deadline:
                    time.sleep(0.005)
        got += sched.updates(frames[5])  # the 6th frame is not offered (every=2): results only
    finally:
        sched.stop()
        th.join(2.0)
    assert not th.is_alive()
    assert det.seen == [0, 2, 4]
    assert [(f.seq, d.frame_seq) for f, d in got] == [(0, 0), (2, 2), (4, 4)]
    assert sched.dropped == 0 and sched.stage.processed == 3
