"""The per-camera analyzer: detections -> tracks -> events, with fake detectors (no I/O)."""
from __future__ import annotations

import numpy as np

from core.config import parse_config
from core.types import Detections, EventKind, Frame
from stream.analyzer import build_analyzer


class ScriptedText:
    """A 'text detector' whose box moves right 4 px a frame and always reads the same text."""
    name = "text"
    class_names = ["text"]

    def __init__(self, text="SN 0042"):
        self.text = text

    def detect(self, frame):
        x = 20 + 4 * frame.seq
        return Detections([[x, 50, x + 60, 70]], [0.9], [0], label=["text"], text=[self.text],
                          frame_seq=frame.seq, ts=frame.ts)


def _cfg(**cam):
    base = {"name": "cam", "source": "synthetic:crossing", "detector": "none"}
    base.update(cam)
    return parse_config({"cameras": [base], "tracker": {"min_hits": 1, "appearance": False}})


def test_text_read_once_per_track_and_carried_on_tracks():
    cfg = _cfg()
    events = []
    an = build_analyzer(cfg.cameras[0], cfg, detector=ScriptedText(), emit=lambda e, s=None: events.append((e, s)))
    img = np.zeros((120, 320, 3), np.uint8)
    for k in range(10):
        f = Frame(img, k, k * 0.04, "cam")
        tracks = an.apply(f, an.detect(f))
        an.observe(f, tracks)
    reads = [e for e, _ in events if e.kind == EventKind.TEXT_READ]
    assert len(reads) == 1 and reads[0].data["text"] == "SN 0042"
    assert reads[0].track_id == int(tracks.track_id[0])
    shown = an.track(Frame(img, 10, 0.4, "cam"))
    assert shown.text is not None and shown.text[0] == "SN 0042"
    assert any(s is not None for e, s in events if e.kind == EventKind.TEXT_READ)  # snapshot


def test_line_crossing_event_through_the_analyzer():
    cfg = _cfg(lines=[{"name": "mid", "points": [[160, 0], [160, 120]], "anchor": "center",
                       "confirm_frames": 2}])
    events = []
    an = build_analyzer(cfg.cameras[0], cfg, detector=ScriptedText(), emit=lambda e, s=None: events.append(e))
    img = np.zeros((120, 320, 3), np.uint8)
    for k in range(60):
        f = Frame(img, k, k * 0.04, "cam")
        tracks = an.apply(f, an.detect(f)) if k % 2 == 0 else an.track(f)
        an.observe(f, tracks)
    crossed = [e for e in events if e.kind == EventKind.LINE_CROSSED]
    assert len(crossed) == 1
    c = an.counters()
    assert c["line mid in"] + c["line mid out"] == 1
    assert an.line_draws()[0].name == "mid"


def test_defect_watch_line_is_drawn_without_counting_lines():
    cfg = parse_config({"cameras": [{"name": "belt", "source": "synthetic:conveyor", "detector": "none",
                                     "defect_watch": {"line_x": 0.5}}]})
    an = build_analyzer(cfg.cameras[0], cfg)
    f = Frame(np.zeros((100, 200, 3), np.uint8), 0, 0.0)
    an.observe(f, an.track(f))
    draws = an.line_draws()
    assert len(draws) == 1 and draws[0].name == "inspection"
    assert draws[0].p1[0] == draws[0].p2[0] == 100
    assert "parts" in draws[0].text and an.counters()["parts"] == 0


class Blinking:
    """A 'car' detector (no label column) that sees one box moving right until frame `until`,
    then nothing."""
    name = "fake-car"
    class_names = ["car"]

    def __init__(self, until=10):
        self.until = until

    def detect(self, frame):
        if frame.seq >= self.until:
            return Detections.empty(frame.seq, frame.ts)
        x = 20 + 4 * frame.seq
        return Detections([[x, 40, x + 50, 80]], [0.8], [0], frame_seq=frame.seq, ts=frame.ts)


def _run(an, frames, every=1):
    img = np.zeros((120, 320, 3), np.uint8)
    for k in range(frames):
        f = Frame(img, k, k * 0.1, "cam")
        tracks = an.apply(f, an.detect(f)) if k % every == 0 else an.track(f)
        an.observe(f, tracks)


def test_track_ended_carries_label_box_and_duration():
    """Issue 19 item 15: track_ended used to have label null and box null (the ended track is
    no longer in the tracks); it now has the last box a detection matched, the label, and
    data.duration_s from its track_started frame to that last match."""
    cfg = parse_config({"cameras": [{"name": "cam", "source": "synthetic:crossing", "detector": "none"}],
                        "tracker": {"min_hits": 1, "appearance": False, "max_age_s": 0.5}})
    events = []
    an = build_analyzer(cfg.cameras[0], cfg, detector=Blinking(until=10),
                        emit=lambda e, s=None: events.append(e))
    _run(an, 20)
    started = [e for e in events if e.kind == EventKind.TRACK_STARTED]
    ended = [e for e in events if e.kind == EventKind.TRACK_ENDED]
    assert len(started) == len(ended) == 1 and ended[0].track_id == started[0].track_id
    e = ended[0]
    assert e.label == "car"
    assert e.box is not None
    x1, y1, x2, y2 = e.box
    assert abs(x1 - (20 + 4 * 9)) < 3 and abs(y1 - 40) < 1 and abs(x2 - x1 - 50) < 1  # frame 9's box
    assert e.data["duration_s"] == 0.9  # started at frame 0 (t 0.0), last matched at frame 9 (t 0.9)
    d = e.to_dict()
    assert d["label"] == "car" and d["box"] is not None and d["data"]["duration_s"] == 0.9
    assert an._seen == {}  # nothing kept for a track that ended


def test_track_ended_label_from_label_column_and_memory_bounded():
    cfg = parse_config({"cameras": [{"name": "cam", "source": "synthetic:crossing", "detector": "none"}],
                        "tracker": {"min_hits": 1, "appearance": False, "max_age_s": 0.2,
                                    "max_tracks": 2}})
    events = []
    an = build_analyzer(cfg.cameras[0], cfg, detector=ScriptedText(), emit=lambda e, s=None: events.append(e))
    img = np.zeros((120, 320, 3), np.uint8)
    # a new text box every frame far from the last: each lives one detector frame and ends
    for k in range(60):
        f = Frame(img, k, k * 0.5, "cam")
        x = 10 + (k % 2) * 150
        dets = Detections([[x, 10 + k % 3 * 30, x + 40, 30 + k % 3 * 30]], [0.9], [0], label=["plate"],
                          text=[None], frame_seq=k, ts=f.ts)
        an.observe(f, an.apply(f, dets))
        assert len(an._seen) <= 4 * 2 and len(an._texts) <= 4 * 2
    ended = [e for e in events if e.kind == EventKind.TRACK_ENDED]
    assert len(ended) >= 50
    assert all(e.label == "plate" and e.box is not None and e.data["duration_s"] == 0.0 for e in ended)


def test_text_read_reports_ocr_confidence_and_rotated_box_columns():
    from core.types import ROTATED_BOX, TEXT_CONFIDENCE

    class WithColumns(ScriptedText):
        def detect(self, frame):
            d = super().detect(frame)
            cx = float(d.xyxy[0, 0]) + 30
            return d.with_data(ROTATED_BOX, [[cx, 60, 60, 20, -3.0]]).with_data(TEXT_CONFIDENCE, [91.25])

    cfg = _cfg()
    events = []
    an = build_analyzer(cfg.cameras[0], cfg, detector=WithColumns(), emit=lambda e, s=None: events.append(e))
    _run(an, 3)
    read = [e for e in events if e.kind == EventKind.TEXT_READ]
    assert len(read) == 1
    assert read[0].data == {"text": "SN 0042", "confidence": 91.2, "rotated_box": [50.0, 60.0, 60.0, 20.0, -3.0]}


def test_scene_holds_what_the_overlay_draws():
    cfg = _cfg(zones=[{"name": "dock", "points": [[0, 0], [160, 0], [160, 120], [0, 120]]}],
               lines=[{"name": "mid", "points": [[160, 0], [160, 120]]}])
    an = build_analyzer(cfg.cameras[0], cfg, detector=ScriptedText())
    _run(an, 6, every=3)
    f = Frame(np.zeros((120, 320, 3), np.uint8), 6, 0.6, "cam")
    tracks = an.track(f)
    an.observe(f, tracks)
    scene = an.scene(tracks, banner="hello")
    assert scene.tracks is tracks and scene.banner == "hello" and scene.status is None
    assert [z.name for z in scene.zones] == ["dock"] and [ln.name for ln in scene.lines] == ["mid"]
    assert list(scene.class_names) == ["text"] and set(scene.trails) == set(tracks.track_id.tolist())
    assert scene.coasting.tolist() == an.coasting(tracks).tolist()
