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


class TestFrozenAndColumns:
    """Issue 12 item 5: Detections/Tracks are frozen; extra columns travel in `data`."""

    def dets(self):
        return Detections([[0, 0, 10, 10], [5, 5, 20, 30], [1, 2, 3, 4]], [0.9, 0.5, 0.1], [0, 2, 0],
                          label=["a", "b", "a"], frame_seq=7, ts=1.0,
                          data={"rot": np.arange(15, dtype=np.float32).reshape(3, 5),
                                "conf": [90.0, 50.0, 10.0]})

    def test_assignment_raises_and_arrays_are_read_only(self):
        d = self.dets()
        for name, value in (("frame_seq", 3), ("text", None), ("xyxy", np.zeros((3, 4))), ("new", 1)):
            with pytest.raises(AttributeError, match="frozen"):
                setattr(d, name, value)
        with pytest.raises(AttributeError):
            del d.score
        for arr in (d.xyxy, d.score, d.class_id, d.label, *d.data.values()):
            with pytest.raises(ValueError):
                arr[0] = 0
        with pytest.raises(TypeError):
            d.data["x"] = np.zeros(3)  # type: ignore[index]
        t = Tracks([[0, 0, 1, 1]], [1], [0], [0.9], [1], [0], frame_seq=2, ts=0.5)
        with pytest.raises(AttributeError, match="frozen"):
            t.text = np.array(["x"], dtype=object)  # type: ignore[misc]
        with pytest.raises(ValueError):
            t.track_id[0] = 5
        for e in (Detections.empty(), Tracks.empty()):
            with pytest.raises(ValueError):
                e.xyxy.resize((1, 4))

    def test_callers_arrays_stay_writeable(self):
        box = np.zeros((2, 4), np.float32)
        d = Detections(box, np.ones(2, np.float32), np.zeros(2, np.int32))
        assert box.flags.writeable and not d.xyxy.flags.writeable
        box[0, 0] = 1.0  # the caller's own array is still its own

    def test_builders_return_copies(self):
        d = self.dets()
        f = d.with_frame(9, 2.5)
        assert (f.frame_seq, f.ts, d.frame_seq, d.ts) == (9, 2.5, 7, 1.0)
        assert f.xyxy is d.xyxy and f.data is d.data  # unchanged columns are shared, not copied
        t = d.with_text(["x", None, "z"])
        assert t.text.tolist() == ["x", None, "z"] and d.text is None
        assert d.with_label(None).label is None and d.label is not None
        w = d.with_data("hash", np.arange(3, dtype=np.uint64))
        assert set(w.data) == {"rot", "conf", "hash"} and set(d.data) == {"rot", "conf"}
        assert set(w.with_data("rot", None).data) == {"conf", "hash"}
        with pytest.raises(ValueError, match="text"):
            d.with_text(["x"])
        with pytest.raises(ValueError, match="hash"):
            d.with_data("hash", np.zeros(2))
        tr = Tracks([[0, 0, 1, 1], [2, 2, 3, 3]], [1, 2], [0, 0], [0.9, 0.8], [5, 1], [0, -1])
        tr2 = tr.with_frame(4, 0.2).with_text(["SN 1", None]).with_data("speed", [1.0, 2.0])
        assert (tr2.frame_seq, tr2.ts, tr.frame_seq) == (4, 0.2, -1)
        assert tr2.text.tolist() == ["SN 1", None] and tr.text is None
        assert tr2.select([1]).data["speed"].tolist() == [2.0]
        assert tr2.select([1]).text.tolist() == [None]

    def test_data_validated_for_length(self):
        with pytest.raises(ValueError, match=r"data\['rot'\] has 2 rows, expected 3"):
            Detections(np.zeros((3, 4)), [1, 1, 1], [0, 0, 0], data={"rot": np.zeros((2, 5))})
        with pytest.raises(ValueError, match="scalar"):
            Detections(np.zeros((1, 4)), [1], [0], data={"c": 3.0})
        with pytest.raises(ValueError, match="names"):
            Detections(np.zeros((1, 4)), [1], [0], data={"": [1]})
        with pytest.raises(ValueError, match="rows"):
            Tracks([[0, 0, 1, 1]], [1], [0], [1], [1], [0], data={"x": [1, 2]})

    def test_select_and_concat_carry_data(self):
        d = self.dets()
        s = d.select(d.score > 0.3)
        assert s.data["rot"].shape == (2, 5) and s.data["conf"].tolist() == [90.0, 50.0]
        assert s.select([1]).data["rot"][0].tolist() == [5, 6, 7, 8, 9]
        assert len(d.select([])) == 0 and d.select([]).data["rot"].shape == (0, 5)
        plain = Detections([[0, 0, 1, 1]], [1], [0])
        c = Detections.concat([d, Detections.empty(), plain, d.select([2])])
        assert len(c) == 5 and c.data["rot"].shape == (5, 5)
        assert np.isnan(c.data["rot"][3]).all() and c.data["rot"][4, 0] == 10
        assert c.label.tolist() == ["a", "b", "a", None, "a"] and c.frame_seq == 7
        ints = plain.with_data("n", [1])
        assert Detections.concat([ints, Detections.empty(), ints]).data["n"].tolist() == [1, 1]
        with pytest.raises(ValueError, match="missing"):
            Detections.concat([ints, plain])
        with pytest.raises(ValueError, match="shape"):
            Detections.concat([plain.with_data("r", np.zeros((1, 5))), plain.with_data("r", np.zeros((1, 4)))])

    def test_pickle_and_copy_keep_everything_frozen(self):
        import copy
        import pickle

        d = self.dets().with_text(["x", None, "y"])
        for c in (pickle.loads(pickle.dumps(d)), copy.copy(d), copy.deepcopy(d)):
            assert c.text.tolist() == ["x", None, "y"] and c.data["rot"].shape == (3, 5)
            assert (c.frame_seq, c.ts) == (7, 1.0) and not c.data["rot"].flags.writeable
            with pytest.raises(AttributeError):
                c.ts = 0.0
        t = pickle.loads(pickle.dumps(Tracks([[0, 0, 1, 1]], [3], [0], [1], [1], [-1], 5, 0.5)))
        assert t.track_id.tolist() == [3] and t.frame_seq == 5 and not t.xyxy.flags.writeable

    def test_tracks_select_rejects_repeated_rows(self):
        t = Tracks([[0, 0, 1, 1], [2, 2, 3, 3]], [1, 2], [0, 0], [0.9, 0.8], [5, 1], [0, -1])
        with pytest.raises(ValueError, match="repeat"):
            t.select([0, 0])
        with pytest.raises(ValueError, match="mask"):
            t.select(np.ones(3, bool))


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
