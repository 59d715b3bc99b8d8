"""Scripted-box scenarios for the tracker's life cycle and association."""
from __future__ import annotations

import numpy as np
import pytest

from core.types import Detections, Frame
from core.config import TrackerConfig
from trackers.tracker import Tracker

FPS = 25.0


def dets(boxes, cls=None, labels=None, score=None):
    b = np.asarray(boxes, np.float32).reshape(-1, 4)
    n = len(b)
    return Detections(b, np.full(n, 0.9) if score is None else score,
                      np.zeros(n, np.int32) if cls is None else cls, label=labels)


def box(cx, cy, w=40.0, h=100.0):
    return [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]


def ids_by_x(tracks):
    return dict(zip(np.round(tracks.xyxy[:, 0]).astype(int).tolist(), tracks.track_id.tolist()))


def test_two_objects_crossing_keep_ids():
    trk = Tracker()
    seen = {}
    for f in range(60):
        xa = 100 + 6 * f          # left to right
        xb = 460 - 6 * f          # right to left, crossing at f = 30
        out = trk.update(f / FPS, dets([box(xa, 200), box(xb, 215)]))
        for tid, d in zip(out.track_id.tolist(), out.det_index.tolist()):
            seen.setdefault(tid, set()).add(d)
    # detection 0 is always object A, detection 1 object B: each id only ever took one of them
    assert len(seen) == 2
    assert all(len(v) == 1 for v in seen.values())


def test_occluded_for_one_second_keeps_id():
    trk = Tracker()
    ids = set()
    for f in range(100):
        cx = 50 + 4 * f           # 100 px/s
        hidden = 30 <= f < 55     # 25 frames = 1 s with no detection
        out = trk.update(f / FPS, dets([] if hidden else [box(cx, 200)]))
        if not hidden:
            ids.update(out.track_id.tolist())
        else:
            assert (out.det_index == -1).all()
    assert len(ids) == 1


def test_never_jumps_to_a_far_detection():
    trk = Tracker()
    for f in range(10):
        out = trk.update(f / FPS, dets([box(100, 200)]))
    tid = int(out.track_id[0])
    # the object vanishes; a detection appears 400 px away
    for f in range(10, 20):
        out = trk.update(f / FPS, dets([box(500, 200)]))
        assert tid not in out.track_id[out.det_index >= 0].tolist()


def test_tentative_not_reported_and_empty_frames_fine():
    trk = Tracker(warmup_frames=0)
    for f in range(5):
        assert len(trk.update(f / FPS, Detections.empty())) == 0
    assert len(trk.update(5 / FPS, dets([box(100, 100)]))) == 0   # hits 1
    assert len(trk.update(6 / FPS, dets([box(101, 100)]))) == 0   # hits 2
    out = trk.update(7 / FPS, dets([box(102, 100)]))              # hits 3: confirmed
    assert len(out) == 1 and out.det_index[0] == 0
    # a one-frame flicker never shows up
    out = trk.update(8 / FPS, dets([box(103, 100), box(400, 300)]))
    assert len(out) == 1
    assert [e for e in trk.pop_events() if e[0] == "started"] == [("started", 1)]


def test_warmup_confirms_first_frames():
    trk = Tracker()
    out = trk.update(0.0, dets([box(100, 100), box(300, 100)]))
    assert len(out) == 2 and sorted(out.det_index.tolist()) == [0, 1]


def test_class_aware():
    trk = Tracker()
    for f in range(5):
        out = trk.update(f / FPS, dets([box(100 + f, 100)], cls=[0], labels=["person"]))
    pid = int(out.track_id[0])
    assert out.label.tolist() == ["person"]
    out = trk.update(5 / FPS, dets([box(105, 100)], cls=[2], labels=["car"]))
    assert pid not in out.track_id[out.det_index >= 0].tolist()


def test_predict_between_updates_and_time_awareness():
    """Detector every 5th frame: predict() moves boxes in between; velocity is per second."""
    trk = Tracker()
    for k in range(8):
        f = 5 * k
        trk.update(f / FPS, dets([box(100 + 2 * f, 200)]))  # 50 px/s, seen every 0.2 s
    for j in range(1, 5):
        f = 35 + j
        p = trk.predict(f / FPS)
        assert len(p) == 1 and p.det_index[0] == -1
        cx = float(p.xyxy[0, [0, 2]].mean())
        assert abs(cx - (100 + 2 * f)) < 1.5
    # predict does not change state
    a = trk.predict(36 / FPS).xyxy.copy()
    trk.predict(100.0)
    assert np.array_equal(trk.predict(36 / FPS).xyxy, a)


def test_lost_after_max_age_and_events():
    trk = Tracker(max_age_s=0.5, max_age_frames=1000, appearance=False)
    for f in range(5):
        trk.update(f / FPS, dets([box(100, 100)]))
    trk.pop_events()
    for f in range(5, 30):
        trk.update(f / FPS, Detections.empty())
    ev = trk.pop_events()
    assert ("lost", 1) in ev and ("ended", 1) in ev
    assert trk.n_live == 0


def test_trails_bounded_and_ordered():
    trk = Tracker(trail_length=8)
    for f in range(20):
        trk.update(f / FPS, dets([box(100 + 10 * f, 100)]))
    tr = trk.trails()
    (tid, pts), = tr.items()
    assert pts.shape == (8, 2)
    assert np.all(np.diff(pts[:, 0]) > 0)          # oldest first
    assert abs(pts[-1, 0] - (100 + 190)) < 3


def test_frame_input_and_reset():
    trk = Tracker()
    img = np.zeros((240, 320, 3), np.uint8)
    out = trk.update(Frame(img, seq=7, ts=1.0), dets([box(100, 100)]))
    assert out.frame_seq == 7 and out.ts == 1.0 and out.track_id.tolist() == [1]
    trk.reset()
    out = trk.update(Frame(img, seq=8, ts=2.0), dets([box(200, 100)]))
    assert out.track_id.tolist() == [1]


def test_reidentification_with_dhash():
    """A lost track gets its id back when the same-looking object reappears nearby."""
    rng = np.random.default_rng(0)
    bg = np.full((300, 400, 3), 128, np.uint8)
    patch = rng.integers(0, 256, (100, 40, 3), np.uint8)
    trk = Tracker(max_age_s=0.2, reid_window_s=3.0)
    for f in range(60):
        img = bg.copy()
        visible = not (10 <= f < 30)
        x = 100 + f
        if visible:
            img[100:200, x:x + 40] = patch
        out = trk.update(f / FPS, dets([[x, 100, x + 40, 200]] if visible else []), image=img)
        if f == 9:
            tid = int(out.track_id[0])
    assert out.track_id.tolist() == [tid]
    assert trk.stats["reidentified"] == 1


def _churn(frames: int) -> None:
    rng = np.random.default_rng(0)
    trk = Tracker(max_tracks=64, trail_length=16)
    xy = rng.uniform(0, 1000, (frames, 2))
    n = 0
    for f in range(frames):
        d = dets([box(xy[f, 0], xy[f, 1], 20, 20)]) if f % 2 else dets([])
        trk.update(f / FPS, d)
        n = max(n, trk.n_live + trk.n_lost)
        if f % 1000 == 0:
            trk.pop_events()
    assert n <= 2 * 64
    assert trk.n_live <= 64 and trk.n_lost <= 64
    assert trk.stats["updates"] == frames


def test_memory_bounded_under_churn_quick():
    _churn(5_000)


@pytest.mark.slow
def test_memory_bounded_under_churn():
    """40,000 frames of detections popping up anywhere (over 600 times the 64-track bound, 26 min
    of video): stored tracks stay bounded (10-14 s here; marked slow)."""
    _churn(40_000)


def test_params_bounds():
    with pytest.raises(ValueError, match=r"tracker\.iou_gate"):
        Tracker(iou_gate=1.5)
    with pytest.raises(ValueError, match=r"tracker\.nope: unknown key"):
        Tracker(nope=1)
    with pytest.raises(ValueError, match=r"tracker\.min_hits"):
        Tracker(TrackerConfig(), min_hits=0)
    assert Tracker().params == TrackerConfig() and Tracker().params.min_hits == 3


def test_tracker_takes_its_config_section():
    cfg = TrackerConfig(max_age_s=2.0, trail_length=8)
    trk = Tracker(cfg)
    assert trk.params is cfg  # the section itself: no copy, no second declaration
    over = Tracker(cfg, appearance=False)
    assert (over.params.max_age_s, over.params.appearance, cfg.appearance) == (2.0, False, True)
    assert Tracker(max_age_s=2.0).describe()["params"]["max_age_s"] == 2.0


def test_low_score_detections_extend_tracks_but_never_start_one():
    """ByteTrack's split (birth_score): a weak detection keeps a track alive, starts none."""
    trk = Tracker(birth_score=0.7, warmup_frames=0, min_hits=1)
    strong, weak = np.array([0.95], np.float32), np.array([0.55], np.float32)
    out = trk.update(0.0, dets([box(300, 200)], score=weak))
    assert len(out) == 0 and trk.n_live == 0
    out = trk.update(1 / FPS, dets([box(100, 200)], score=strong))
    tid = out.track_id.tolist()
    assert len(tid) == 1
    for f in range(2, 6):  # the same person, now seen only weakly: same id, matched
        out = trk.update(f / FPS, dets([box(100 + 2 * f, 200)], score=weak))
        assert out.track_id.tolist() == tid and out.det_index.tolist() == [0]
    # with the split off, the weak detection starts a track of its own
    trk = Tracker(birth_score=0.0, warmup_frames=0, min_hits=1)
    assert len(trk.update(0.0, dets([box(300, 200)], score=weak))) == 1
