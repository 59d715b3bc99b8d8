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
