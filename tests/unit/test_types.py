from __future__ import annotations

import math

import numpy as np
import pytest

from core.types import Detections, Event, EventKind, Frame, Tracks


def img(h=4, w=6):
    return np.zeros((h, w, 3), np.uint8)


class TestFrame:
    def test_ok(self):
        f = Frame(img(), seq=3, ts=1.5, source="cam")
        assert (f.height, f.width, f.seq, f.source) == (4, 6, 3, "cam")

    def test_frozen(self):
        f = Frame(img(), 0, 0.0)
        with pytest.raises(Exception):
            f.seq = 2  # type: ignore[misc]

    @pytest.mark.parametrize("bad", [np.zeros((4, 6), np.uint8), np.zeros((4, 6, 3), np.float32),
                                     np.zeros((0, 6, 3), np.uint8), np.zeros((4, 6, 4), np.uint8), [[1]]])
    def test_rejects_bad_image(self, bad):
        with pytest.raises((ValueError, TypeError)):
            Frame(bad, 0, 0.0)

    def test_rejects_bad_seq_ts(self):
        with pytest.raises(ValueError):
            Frame(img(), -1, 0.0)
        with pytest.raises(ValueError):
            Frame(img(), 0, math.nan)


class TestDetections:
    def make(self, n=3):
        xyxy = np.array([[0, 0, 10, 10], [5, 5, 20, 30], [1, 2, 3, 4]][:n], np.float64)
        return Detections(xyxy, [0.9, 0.5, 0.1][:n], [0, 2, 0][:n], label=["a", "b", "a"][:n],
                          frame_seq=7, ts=1.0)

    def test_columns_and_dtypes(self):
        d = self.make()
        assert len(d) == d.len() == 3
        assert d.xyxy.dtype == np.float32 and d.xyxy.shape == (3, 4)
        assert d.score.dtype == np.float32 and d.class_id.dtype == np.int32
        assert list(d.label) == ["a", "b", "a"] and d.text is None

    def test_empty(self):
        e = Detections.empty(frame_seq=4, ts=2.0)
        assert len(e) == 0 and e.xyxy.shape == (0, 4) and e.frame_seq == 4
        assert len(Detections([], [], [])) == 0

    def test_select_mask_and_index(self):
        d = self.make()
        m = d.select(d.score > 0.3)
        assert len(m) == 2 and list(m.label) == ["a", "b"] and m.frame_seq == 7
        i = d.select([2, 0])
        assert i.class_id.tolist() == [0, 0] and i.score[0] == pytest.approx(0.1)
        assert len(d.select(np.zeros(3, bool))) == 0
        with pytest.raises(ValueError):
            d.select(np.ones(2, bool))

    def test_concat(self):
        d = self.make()
        c = Detections.concat([d, Detections.empty(), d.select([0])])
        assert len(c) == 4 and c.label.tolist()[-1] == "a"

    @pytest.mark.parametrize("kwargs,match", [
        (dict(xyxy=np.zeros((2, 3)), score=[1, 1], class_id=[0, 0]), "shape"),
        (dict(xyxy=np.zeros((2, 4)), score=[1], class_id=[0, 0]), "score"),
        (dict(xyxy=np.zeros((2, 4)), score=[1, 1], class_id=[0]), "class_id"),
        (dict(xyxy=[[0, 0, np.nan, 1]], score=[1], class_id=[0]), "NaN"),
        (dict(xyxy=[[0, 0, np.inf, 1]], score=[1], class_id=[0]), "NaN or inf"),
        (dict(xyxy=[[0, 0, 1, 1]], score=[np.nan], class_id=[0]), "score"),
        (dict(xyxy=[[5, 0, 1, 1]], score=[1], class_id=[0]), "x2 >= x1"),
        (dict(xyxy=[[0, 0, 1, 1]], score=[1], class_id=[0.5]), "integers"),
        (dict(xyxy=[[0, 0, 1, 1]], score=[[1]], class_id=[0]), "1-D"),
        (dict(xyxy=[[0, 0, 1, 1]], score=[1], class_id=[0], label=["a", "b"]), "label"),
        (dict(xyxy=[[0, 0, 1, 1]], score=[1], class_id=[0], text=[3]), "text"),
    ])
    def test_rejects_malformed(self, kwargs, match):
        with pytest.raises(ValueError, match=match):
            Detections(**kwargs)


class TestTracks:
    def test_ok_and_coasting(self):
        t = Tracks([[0, 0, 1, 1], [2, 2, 3, 3]], [1, 2], [0, 0], [0.9, 0.8], [5, 1], [0, -1],
                   frame_seq=3, ts=0.5)
        assert len(t) == 2 and t.coasting.tolist() == [False, True]
        rows = t.to_list()
        assert rows[1]["coasting"] is True and rows[0]["track_id"] == 1
        assert len(t.select([1])) == 1
        assert len(Tracks.empty()) == 0

    @pytest.mark.parametrize("kw,match", [
        (dict(track_id=[1, 1]), "unique"),
        (dict(det_index=[0, -2]), "det_index"),
        (dict(age=[1]), "age"),
        (dict(xyxy=[[0, 0, 1, np.nan], [0, 0, 1, 1]]), "NaN"),
    ])
    def test_rejects_malformed(self, kw, match):
        base = dict(xyxy=[[0, 0, 1, 1], [2, 2, 3, 3]], track_id=[1, 2], class_id=[0, 0],
                    score=[1, 1], age=[1, 1], det_index=[0, 1])
        base.update(kw)
        with pytest.raises(ValueError, match=match):
            Tracks(**base)


class TestEvent:
    def test_roundtrip(self):
        e = Event(EventKind.LINE_CROSSED, "cam", ts=10.0, track_id=3, box=(1, 2, 3, 4),
                  data={"direction": "in"})
        d = e.to_dict()
        assert d["kind"] == "line_crossed" and d["box"] == [1.0, 2.0, 3.0, 4.0]
        assert Event("defect_found", "cam").kind is EventKind.DEFECT_FOUND

    def test_rejects(self):
        with pytest.raises(ValueError):
            Event("nope", "cam")
        with pytest.raises(ValueError):
            Event(EventKind.TEXT_READ, "")
        with pytest.raises(ValueError):
            Event(EventKind.TEXT_READ, "cam", box=(1, 2, 3))
        with pytest.raises(ValueError):
            Event(EventKind.TEXT_READ, "cam", ts=math.inf)
