"""Counting lines and zones on scripted track paths (anchor = bottom centre of the box)."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from core.types import EventKind, Tracks
from events.zones import LineCounter, ZoneCounter, points_in_polygon

CLASSES = ["person", "bicycle", "car"]
FRAME = (400, 400)


def tracks_at(objs: dict[int, tuple[float, float, str]], seq: int, ts: float) -> Tracks:
    """objs: track id -> (anchor x, anchor y, class name); boxes are 20x40 above the anchor."""
    ids = sorted(objs)
    xyxy = [[objs[t][0] - 10, objs[t][1] - 40, objs[t][0] + 10, objs[t][1]] for t in ids]
    cls = [CLASSES.index(objs[t][2]) for t in ids]
    n = len(ids)
    return Tracks(np.array(xyxy, np.float32).reshape(n, 4), ids, cls, np.full(n, 0.9), np.full(n, 5),
                  np.zeros(n), frame_seq=seq, ts=ts)


def run(counter, frames: list[dict[int, tuple[float, float, str]]], dt: float = 0.1):
    out = []
    for k, objs in enumerate(frames):
        out.append(counter.update(tracks_at(objs, k, 100.0 + k * dt), FRAME, CLASSES, wall_ts=1e9 + k))
    return out


def flat(per_frame):
    return [e for evs in per_frame for e in evs]


def path(tid, xs, ys, cls="person"):
    """One track along (xs, ys); a scalar xs is held fixed."""
    xs = np.broadcast_to(np.asarray(xs, np.float64), np.shape(ys))
    return [{tid: (float(x), float(y), cls)} for x, y in zip(xs, ys)]


def line(**kw):
    # horizontal segment x 100..300 at y=200, p1 -> p2 points right: its left side (the "in"
    # side) is up on screen (y < 200)
    return LineCounter("door", [[100, 200], [300, 200]], camera="cam1", **kw)


# ---------------------------------------------------------------- lines
def test_clean_crossings_both_directions():
    lc = line()
    up = run(lc, path(1, 200, np.arange(260, 130, -10)))
    evs = flat(up)
    assert len(evs) == 1
    e = evs[0]
    assert e.kind is EventKind.LINE_CROSSED and e.camera == "cam1"
    assert e.data == {"line": "door", "direction": "in"}
    assert e.track_id == 1 and e.label == "person" and e.box is not None
    # confirmed on the 3rd update beyond the band (y < 194): y = 190, 180, 170 -> the 170 frame
    k = next(i for i, v in enumerate(up) if v)
    assert e.frame_seq == k and e.box[3] == 170.0
    lc2 = line()
    evs = flat(run(lc2, path(7, 150, np.arange(140, 270, 10), cls="car")))
    assert [e.data["direction"] for e in evs] == ["out"]
    assert lc.counts() == {"in": 1, "out": 0, "by_class": {"person": {"in": 1, "out": 0}}}
    assert lc2.counts()["by_class"] == {"car": {"in": 0, "out": 1}}


def test_vertical_line_direction_convention():
    # p1 -> p2 points down the screen: walking down, the left hand is screen-right (+x)
    lc = LineCounter("v", [[200, 0], [200, 400]], camera="c", confirm_frames=2, hysteresis_px=4)
    evs = flat(run(lc, path(3, np.arange(150, 260, 10), np.full(11, 300.0))))
    assert [e.data["direction"] for e in evs] == ["in"]
    s, t = lc.geometry(np.array([[210.0, 100.0], [190.0, 500.0]]), FRAME)
    assert s[0] > 0 > s[1] and 0 < t[0] < 1 < t[1]


def test_flicker_on_the_line_never_counts_twice_nor_backwards():
    lc = line()
    # below the line, then wobble inside the band (|s| <= 6) and slightly across it, alternating
    ys = [240, 220, 205, 197, 203, 199, 191, 209, 190, 210, 189, 211, 193, 207, 230]
    assert flat(run(lc, path(1, 200, ys))) == []
    assert lc.counts()["in"] == lc.counts()["out"] == 0
    # hovering just across the line but inside the band, then going back: nothing
    lc = line()
    assert flat(run(lc, path(1, 200, [240, 220] + [197] * 10 + [220, 240]))) == []
    # without a band the same path is an "in" then an "out"
    lc0 = line(hysteresis_px=0)
    evs = flat(run(lc0, path(1, 200, [240, 220] + [197] * 10 + [220, 240, 250])))
    assert [e.data["direction"] for e in evs] == ["in", "out"]
    # a real crossing, then flicker back below for fewer than confirm_frames, then onward
    lc = line()
    ys = [240, 220, 190, 185, 180, 175, 210, 212, 185, 212, 180, 170, 150]
    evs = flat(run(lc, path(1, 200, ys)))
    assert [e.data["direction"] for e in evs] == ["in"]
    assert lc.counts()["out"] == 0


def test_track_stopping_on_the_line_does_not_count():
    lc = line()
    ys = [260, 240, 220, 205] + [200 + (k % 3) - 1 for k in range(30)] + [220, 240]
    assert flat(run(lc, path(1, 200, ys))) == []
    # stopping on the line, then going on through it: that is one crossing
    lc = line()
    ys = [260, 240, 220] + [199] * 20 + [185, 180, 175, 170]
    assert [e.data["direction"] for e in flat(run(lc, path(2, 200, ys)))] == ["in"]


def test_two_tracks_crossing_together():
    lc = line()
    ys = np.arange(260, 130, -10)
    frames = [{1: (150.0, float(y), "person"), 2: (250.0, float(400 - y), "bicycle")} for y in ys]
    per = run(lc, frames)
    both = [v for v in per if v]
    assert len(both) == 1 and len(both[0]) == 2  # same update, two events
    got = {(e.track_id, e.data["direction"], e.label) for e in both[0]}
    assert got == {(1, "in", "person"), (2, "out", "bicycle")}
    assert lc.counts() == {"in": 1, "out": 1, "by_class": {"person": {"in": 1, "out": 0},
                                                            "bicycle": {"in": 0, "out": 1}}}


def test_track_appearing_beyond_the_line_never_counts():
    lc = line()
    assert flat(run(lc, path(1, 200, np.arange(190, 40, -10)))) == []  # appears above, goes away
    # appears inside the band and leaves to one side: never seen on the other side
    assert flat(run(lc, path(2, 200, [201, 199, 198, 185, 170, 160, 150]))) == []
    assert flat(run(lc, path(3, 200, [199, 201, 203, 215, 230, 240]))) == []
    assert lc.counts()["in"] == lc.counts()["out"] == 0


def test_crossing_beyond_the_segment_end_does_not_count():
    lc = line()
    assert flat(run(lc, path(1, 350, np.arange(260, 130, -10)))) == []  # x=350 > 300
    assert flat(run(lc, path(2, 60, np.arange(140, 270, 10)))) == []  # x=60 < 100
    # diagonal: starts beyond the end (x=330) but its path crosses y=200 at x=270: counts
    xs = np.linspace(330, 210, 13)
    ys = np.linspace(260, 140, 13)
    assert [e.data["direction"] for e in flat(run(lc, path(3, xs, ys)))] == ["in"]
    # after a crossing outside the extent the track is on the new side: coming back in range
    # above the line and going further up is not a crossing
    frames = path(4, 350, np.arange(260, 150, -10)) + path(4, np.arange(340, 200, -20), np.full(7, 150.0))
    assert flat(run(lc, frames)) == []
    assert lc.counts()["in"] == 1


def test_class_filter_and_label_column():
    lc = line(classes=("person",))
    ys = np.arange(260, 130, -10)
    frames = [{1: (150.0, float(y), "person"), 2: (250.0, float(y), "car")} for y in ys]
    evs = flat(run(lc, frames))
    assert [(e.track_id, e.label) for e in evs] == [(1, "person")]
    assert lc.counts()["by_class"] == {"person": {"in": 1, "out": 0}}
    assert lc.tracked() == 1  # filtered classes keep no state
    # labels on the Tracks win over class_names
    t = tracks_at({5: (150.0, 240.0, "car")}, 0, 0.0)
    t2 = Tracks(t.xyxy, t.track_id, t.class_id, t.score, t.age, t.det_index, 0, 0.0, label=["person"])
    lc2 = line(classes=("person",), confirm_frames=1)
    lc2.update(t2, FRAME)
    up = Tracks(t.xyxy - np.array([0, 80, 0, 80], np.float32), t.track_id, t.class_id, t.score, t.age,
                t.det_index, 1, 0.1, label=["person"])
    assert [e.label for e in lc2.update(up, FRAME)] == ["person"]


def test_normalized_points_and_state_is_bounded():
    lc = LineCounter("n", [[0.25, 0.5], [0.75, 0.5]], normalized=True, camera="c", forget_after=5)
    assert lc.pixel_points(FRAME) == ((100, 200), (300, 200))
    evs = flat(run(lc, path(1, 200, np.arange(260, 130, -10))))
    assert [e.data["direction"] for e in evs] == ["in"]
    # 200 short-lived tracks: state only holds the recently seen ones
    frames = [{100 + k: (150.0, 250.0, "person")} for k in range(200)]
    run(lc, frames)
    assert lc.tracked() <= 6
    capped = line(max_tracks=10)
    run(capped, [{k * 10 + j: (150.0 + j, 250.0, "person") for j in range(10)} for k in range(5)])
    assert capped.tracked() == 10


def test_confirm_frames_one_and_validation():
    lc = line(confirm_frames=1, hysteresis_px=0)
    evs = flat(run(lc, path(1, 200, [210, 190])))
    assert [e.data["direction"] for e in evs] == ["in"]
    with pytest.raises(ValueError):
        LineCounter("x", [[1, 1], [1, 1]])
    with pytest.raises(ValueError):
        LineCounter("x", [[0, 0], [1, 1], [2, 2]])
    with pytest.raises(ValueError):
        LineCounter("x", [[0, 0], [1.5, 1]], normalized=True)
    with pytest.raises(ValueError):
        line(anchor="top")
    with pytest.raises(ValueError):
        line(confirm_frames=0)


def test_empty_tracks_and_center_anchor():
    lc = line(anchor="center")
    assert lc.update(Tracks.empty(), FRAME) == []
    # center anchor = bottom - 20 for these boxes: crossing of the centre, not the feet
    evs = flat(run(lc, path(1, 200, np.arange(280, 150, -10))))
    assert len(evs) == 1 and evs[0].box[3] - 20 < 194


# ---------------------------------------------------------------- zones
SQUARE = [[100, 100], [300, 100], [300, 300], [100, 300]]


def test_points_in_polygon_matches_opencv():
    rng = np.random.default_rng(3)
    poly = np.array([[50, 50], [350, 60], [200, 180], [340, 350], [60, 320], [120, 200]], np.float64)
    pts = rng.uniform(0, 400, size=(2000, 2))
    ref = np.array([cv2.pointPolygonTest(poly.astype(np.float32), (float(x), float(y)), True) for x, y in pts])
    ours = points_in_polygon(pts, poly)
    clear = np.abs(ref) > 1e-6  # boundary points may go either way
    assert np.array_equal(ours[clear], ref[clear] > 0)
    assert points_in_polygon(np.zeros((0, 2)), poly).shape == (0,)


def test_zone_enter_dwell_leave_and_occupancy():
    z = ZoneCounter("dock", SQUARE, camera="cam1", confirm_frames=2)
    xs = list(range(40, 100, 20)) + [120] * 10 + [200, 280, 320, 340, 360]
    per = run(z, path(1, np.array(xs), np.full(len(xs), 200.0)), dt=0.5)
    evs = flat(per)
    assert [e.kind for e in evs] == [EventKind.ZONE_ENTER, EventKind.ZONE_LEAVE]
    enter, leave = evs
    first_in = xs.index(120)  # first inside observation
    assert enter.frame_seq == first_in + 1  # confirmed on the 2nd frame inside
    assert enter.data["zone"] == "dock" and enter.data["appeared"] is False
    first_out = xs.index(320)
    assert leave.data["dwell_s"] == pytest.approx((first_out - first_in) * 0.5)
    assert leave.data["reason"] == "left" and leave.track_id == 1 and leave.label == "person"
    assert z.counts() == {"entries": 1, "by_class": {"person": 1}, "occupancy": {}}

    z = ZoneCounter("dock", SQUARE, camera="cam1", confirm_frames=2)
    frames = [{1: (150.0, 150.0, "person"), 2: (250.0, 250.0, "car"), 3: (260.0, 120.0, "car"),
               4: (20.0, 20.0, "car")}] * 4
    evs = flat(run(z, frames, dt=1.0))
    assert sorted(e.track_id for e in evs) == [1, 2, 3] and all(e.data["appeared"] for e in evs)
    assert z.occupancy() == {"person": 1, "car": 2}
    assert z.dwell() == {1: 3.0, 2: 3.0, 3: 3.0}


def test_zone_debounce_and_lost_track_leaves():
    z = ZoneCounter("dock", SQUARE, camera="c", confirm_frames=3, forget_after=4)
    # jitter across the edge for 1-2 frames: nothing
    xs = [80, 90, 105, 95, 104, 106, 90, 80]
    assert flat(run(z, path(1, np.array(xs), np.full(len(xs), 200.0)))) == []
    # enter, then vanish from Tracks while inside: ZONE_LEAVE "lost" after forget_after updates
    frames = path(2, np.array([150.0] * 5), np.full(5, 200.0)) + [{}] * 6
    per = run(z, frames, dt=1.0)
    evs = flat(per)
    assert [e.kind for e in evs] == [EventKind.ZONE_ENTER, EventKind.ZONE_LEAVE]
    assert evs[1].data["reason"] == "lost" and evs[1].data["dwell_s"] == pytest.approx(4.0)
    assert evs[1].box is not None and evs[1].label == "person"
    assert z.occupancy() == {} and z.tracked() == 0


def test_zone_class_filter_and_normalized():
    z = ZoneCounter("n", [[0.25, 0.25], [0.75, 0.25], [0.75, 0.75], [0.25, 0.75]], normalized=True,
                    classes=("car",), camera="c", confirm_frames=1)
    assert z.polygon_px(FRAME).tolist() == SQUARE
    frames = [{1: (200.0, 200.0, "person"), 2: (200.0, 210.0, "car")}] * 3
    evs = flat(run(z, frames))
    assert [(e.track_id, e.kind) for e in evs] == [(2, EventKind.ZONE_ENTER)]
    assert z.occupancy() == {"car": 1}
    with pytest.raises(ValueError):
        ZoneCounter("bad", [[0, 0], [1, 1]])


# ---------------------------------------------------------------- one side convention
def test_line_geometry_is_the_one_side_convention_of_counters_and_defect_watch():
    """LineCounter and the defect watch's inspection line measure sides with the same
    function: for any directed line and point they agree on which side it is, and a move that
    LineCounter counts "in" is the move the watch counts a part on."""
    from events.defects import DefectWatch
    from events.zones import Line, line_geometry

    rng = np.random.default_rng(5)
    size = (640, 480)
    for _ in range(50):
        p = rng.uniform(0.05, 0.95, (2, 2))
        if np.allclose(p[0], p[1], atol=0.02):
            continue
        xy = rng.uniform(0, 1, (40, 2)) * size
        lc = LineCounter("l", p, normalized=True, camera="c")
        dw = DefectWatch("c", line=p.tolist(), ocr=False)
        s_lc, t_lc = lc.geometry(xy, size)
        s_dw, t_dw = dw.line.geometry(xy, size)
        np.testing.assert_array_equal(np.sign(s_lc), np.sign(s_dw))
        np.testing.assert_allclose(t_lc, t_dw)
        s, _ = line_geometry(Line(p, True).pixels(size), xy)
        np.testing.assert_array_equal(s, s_lc)
    # the default inspection line (x = 0.5, drawn top to bottom): screen-right is the
    # positive ("in") side, as for a counting line drawn the same way
    dw = DefectWatch("c", ocr=False)
    lc = LineCounter("v", [[0.5, 0.0], [0.5, 1.0]], normalized=True, camera="c")
    pts = np.array([[400.0, 240.0], [200.0, 240.0]])
    assert list(np.sign(dw.line.geometry(pts, size)[0])) == [1, -1]
    assert list(np.sign(lc.geometry(pts, size)[0])) == [1, -1]


def test_a_left_to_right_move_is_in_for_the_counter_and_a_part_for_the_watch():
    from core.types import Frame
    from events.defects import DefectWatch

    lc = LineCounter("v", [[0.5, 0.0], [0.5, 1.0]], normalized=True, camera="c", anchor="center",
                     hysteresis_px=0, confirm_frames=1)
    dw = DefectWatch("c", ocr=False, snapshot=False)
    img = np.zeros((240, 480, 3), np.uint8)
    for direction, xs in (("in", range(150, 340, 20)), ("out", range(340, 150, -20))):
        tid = 1 if direction == "in" else 2
        got, parts0 = [], dw.counters()["parts"]
        for k, x in enumerate(xs):
            tr = Tracks(np.array([[x - 40, 80, x + 40, 160]], np.float32), [tid], [0], [1.0], [5], [0],
                        frame_seq=k, ts=k * 0.04)
            f = Frame(img, k + 100 * tid, k * 0.04)
            got += [e.data["direction"] for e, _ in lc.observe(f, tr, CLASSES, snapshots=False)]
            dw.update(f, tr)
        assert got == [direction]
        assert dw.counters()["parts"] - parts0 == (1 if direction == "in" else 0)


# ---------------------------------------------------------------- the observer protocol
def test_lines_and_zones_are_track_observers_with_snapshots_counters_and_drawings():
    from core.types import Frame
    from events.observers import LineDrawing, TrackObserver, ZoneDrawing

    lc = line(confirm_frames=1)
    zc = ZoneCounter("room", [[0, 0], [400, 0], [400, 150], [0, 150]], camera="cam1", confirm_frames=1)
    assert isinstance(lc, TrackObserver) and isinstance(zc, TrackObserver)
    img = np.zeros((400, 400, 3), np.uint8)
    seen = []
    for k, y in enumerate(range(260, 100, -20)):
        f = Frame(img, k, 100.0 + k * 0.1, wall_ts=1e9 + k)
        tr = tracks_at({1: (200.0, float(y), "person")}, k, f.ts)
        for ob in (lc, zc):
            seen += [(e.kind, snap is not None) for e, snap in ob.observe(f, tr, CLASSES)]
    assert (EventKind.LINE_CROSSED, True) in seen and (EventKind.ZONE_ENTER, True) in seen
    f = Frame(img, 99, 200.0)
    quiet = lc.observe(f, tracks_at({5: (150.0, 260.0, "car")}, 99, 200.0), CLASSES, snapshots=False)
    assert quiet == []
    assert lc.camera_counters() == {"line door in": 1, "line door out": 0}
    assert zc.camera_counters() == {"zone room entries": 1, "zone room now": 1}
    d = lc.drawing(FRAME)
    assert isinstance(d, LineDrawing) and (d.p1, d.p2, d.count_in, d.in_side) == ((100, 200), (300, 200), 1, -1)
    z = zc.drawing(FRAME)
    assert isinstance(z, ZoneDrawing) and z.polygon.dtype == np.int32 and z.counts == {"person": 1}
    assert lc.flush() == [] and zc.flush() == []
    lc.close()
    zc.close()
