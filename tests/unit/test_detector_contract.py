"""The Detector contract, for every registered detector.

`detect()` must accept anything a source can hand it (black, tiny, grayscale, huge,
non-contiguous, float, a Frame) and return a valid, possibly empty, Detections:
boxes inside the frame, scores in 0..1, class ids inside class_names, and the
frame's seq/ts carried through. It never raises.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest

from core.types import Detections, Frame
from detectors import base
from tests.conftest import ROOT, require

MODELS = ROOT / "models"

# Parameters that keep each detector quick on the huge frame; everything else default.
TEST_PARAMS: dict[str, dict[str, Any]] = {
    "hog": {"upscale": 1.0, "max_side": 640},
    "haar": {"max_side": 960},
    "motion": {"warmup_frames": 0},
    "text": {"limit_side": 480},
}

# Detectors that need a model asset: (files of which one must exist, reason).
ASSETS: dict[str, tuple[tuple[Path, ...], str]] = {
    "yolo": ((MODELS / "yolov3-tiny.onnx", MODELS / "yolov3-tiny.weights"),
             "yolo model (models/yolov3-tiny.onnx or .weights) absent: run `python main.py assets`"),
    "text": ((MODELS / "ch_PP-OCRv4_det_infer.onnx",),
             "DBNet model models/ch_PP-OCRv4_det_infer.onnx absent: run `python main.py assets`"),
}


def _noise(shape: tuple[int, ...], seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def _strided() -> np.ndarray:
    big = _noise((480, 640, 3), 3)
    out = big[::2, ::2]
    assert not out.flags["C_CONTIGUOUS"]
    return out


INPUTS: dict[str, Callable[[], Any]] = {
    "black": lambda: np.zeros((480, 640, 3), np.uint8),
    "tiny8x8": lambda: _noise((8, 8, 3), 1),
    "one_pixel": lambda: np.zeros((1, 1, 3), np.uint8),
    "gray2d": lambda: _noise((120, 160), 2),
    "huge4000x3000": lambda: np.zeros((3000, 4000, 3), np.uint8),
    "strided": _strided,
    "float32": lambda: _noise((240, 320, 3), 4).astype(np.float32),
    "float_out_of_range": lambda: (_noise((64, 64, 3), 5).astype(np.float64) * 3 - 200),
    "bgra": lambda: _noise((96, 128, 4), 6),
    "empty": lambda: np.zeros((0, 0, 3), np.uint8),
    "frame": lambda: Frame(_noise((240, 320, 3), 7), seq=7, ts=123.5, source="cam"),
}

_BUILT: dict[str, Any] = {}


def _detector(name: str) -> Any:
    """One instance per detector for the whole module (stateful ones see every input)."""
    if name in ASSETS:
        files, reason = ASSETS[name]
        require(any(f.is_file() for f in files), reason)
    if name not in _BUILT:
        _BUILT[name] = base.build(name, dict(TEST_PARAMS.get(name, {})))
    return _BUILT[name]


def _check(det: Detections, image: np.ndarray | None, seq: int, ts: float,
           class_names: list[str]) -> None:
    assert isinstance(det, Detections)
    n = len(det)
    assert det.xyxy.shape == (n, 4) and det.xyxy.dtype == np.float32
    assert det.score.shape == (n,) and det.class_id.shape == (n,)
    assert det.frame_seq == seq
    assert (math.isnan(det.ts) and math.isnan(ts)) or det.ts == ts
    if n:
        assert np.all((det.score >= 0) & (det.score <= 1)), det.score
        if class_names:
            assert np.all((det.class_id >= 0) & (det.class_id < len(class_names)))
        assert image is not None, "boxes found on an unusable image"
        h, w = image.shape[:2]
        tol = 1.0
        assert np.all(det.xyxy[:, [0, 1]] >= -tol), det.xyxy
        assert np.all(det.xyxy[:, 2] <= w + tol) and np.all(det.xyxy[:, 3] <= h + tol), det.xyxy


@pytest.mark.timeout(60)
@pytest.mark.parametrize("input_name", list(INPUTS))
@pytest.mark.parametrize("name", base.names())
def test_detect_never_raises_and_returns_valid_detections(name: str, input_name: str) -> None:
    det = _detector(name)
    item = INPUTS[input_name]()
    out = det.detect(item)
    if isinstance(item, Frame):
        seq, ts, image = item.seq, item.ts, item.image
    else:
        seq, ts = -1, float("nan")
        image = item if item.size else None
    _check(out, image, seq, ts, list(det.class_names))


@pytest.mark.parametrize("name", base.names())
def test_protocol_and_registry_name(name: str) -> None:
    det = _detector(name)
    assert isinstance(det, base.Detector)
    assert det.name == name
    assert isinstance(det.class_names, list)
    assert all(isinstance(c, str) for c in det.class_names)


@pytest.mark.parametrize("name", base.names())
def test_unknown_parameter_is_rejected(name: str) -> None:
    """Keyword overrides are validated by the section's model: a typo fails at build, naming it."""
    if name == "none":
        pytest.skip("the null detector accepts and ignores any section by design")
    if name in ASSETS:
        files, reason = ASSETS[name]
        require(any(f.is_file() for f in files), reason)
    with pytest.raises(base.DetectorError, match=rf"{name}\.no_such_parameter_xyz: unknown key"):
        base.build(name, {"no_such_parameter_xyz": 1})


@pytest.mark.parametrize("name", [n for n in base.names() if n != "none"])
def test_built_from_its_config_section(name: str) -> None:
    """build() takes the section model itself (what the runtime passes) or a mapping of
    overrides; the detector keeps the section it was given."""
    from core.config import DetectorsConfig
    if name in ASSETS:
        files, reason = ASSETS[name]
        require(any(f.is_file() for f in files), reason)
    section = type(getattr(DetectorsConfig(), name)).model_validate(TEST_PARAMS.get(name, {}))
    det = base.build(name, section)
    assert det.cfg is section
    assert base.build(name, TEST_PARAMS.get(name, {})).cfg == section


def test_unknown_detector_name_lists_known() -> None:
    with pytest.raises(base.DetectorError, match="haar"):
        base.build("no-such-detector")


# ------------------------------------------------------------------ close()
def _fresh(name: str, **extra: Any) -> Any:
    """A new instance (close() must not spoil the module's shared one)."""
    if name in ASSETS:
        files, reason = ASSETS[name]
        require(any(f.is_file() for f in files), reason)
    return base.build(name, {**TEST_PARAMS.get(name, {}), **extra})


def _released(det: Any) -> list[str]:
    """Names of the heavy resources a closed detector still holds (should be none)."""
    held = [a for a in ("session", "_sess", "_net", "_pool", "_clf", "_nested", "_hog", "_bg")
            if getattr(det, a, None) is not None]
    return held


@pytest.mark.timeout(60)
@pytest.mark.parametrize("name", base.names())
def test_close_releases_is_idempotent_and_detect_after_close_finds_nothing(name: str) -> None:
    """close() is part of the protocol: it releases the detector's sessions, cascades, pools
    and models, a second close() is harmless, and detect() on a closed detector returns an
    empty Detections for that frame (seq/ts kept) for every input, never raising."""
    det = _fresh(name)
    frame = INPUTS["frame"]()
    _check(det.detect(frame), frame.image, frame.seq, frame.ts, list(det.class_names))
    det.close()
    assert _released(det) == []
    det.close()
    for input_name in ("frame", "black", "empty", "gray2d"):
        item = INPUTS[input_name]()
        out = det.detect(item)
        seq, ts = (item.seq, item.ts) if isinstance(item, Frame) else (-1, float("nan"))
        _check(out, None, seq, ts, list(det.class_names))
        assert len(out) == 0, (name, input_name)
    assert isinstance(det, base.Detector)


def test_gated_detector_closes_gate_and_inner() -> None:
    from detectors.motion import GatedDetector, MotionDetector

    inner, gate = _fresh("hog"), MotionDetector(warmup_frames=0)
    g = GatedDetector(inner, gate)
    g.detect(INPUTS["frame"]())
    g.close()
    g.close()
    assert inner._closed and gate._closed and _released(inner) == [] and _released(gate) == []
    out = g.detect(INPUTS["frame"]())
    assert len(out) == 0 and out.frame_seq == 7


def _text_page() -> np.ndarray:
    import cv2

    img = np.full((360, 640, 3), 255, np.uint8)
    for k in range(6):
        cv2.putText(img, f"LINE {k} SN 00{k}4", (20, 50 + 50 * k), cv2.FONT_HERSHEY_SIMPLEX, 1.2,
                    (0, 0, 0), 2, cv2.LINE_AA)
    return img


@pytest.mark.timeout(60)
def test_text_detector_close_stops_its_ocr_threads() -> None:
    """The bug close() fixes: the OCR thread pool (ocr_workers > 1) outlived the detector."""
    import threading

    det = _fresh("text", ocr_workers=2)
    out = det.detect(_text_page())
    assert len(out) >= 2
    assert any(t.name.startswith("vigil-ocr") for t in threading.enumerate())
    det.close()
    assert not any(t.name.startswith("vigil-ocr") for t in threading.enumerate())
    assert len(det.detect(_text_page())) == 0


def test_closed_guard_turns_a_frame_caught_by_close_into_an_empty_result() -> None:
    """A frame in flight when another thread closes the detector (its session went away under
    it) comes back empty; an exception of an open detector still propagates."""

    class Racy:
        name, class_names, _closed = "racy", [], False

        @base.closed_guard
        def detect(self, frame):
            if frame.seq == 1:
                self._closed = True      # close() ran while this frame was being detected
            raise RuntimeError("session is gone")

    det = Racy()
    with pytest.raises(RuntimeError):
        det.detect(Frame(np.zeros((4, 4, 3), np.uint8), seq=0, ts=0.0))
    out = det.detect(Frame(np.zeros((4, 4, 3), np.uint8), seq=1, ts=2.0))
    assert len(out) == 0 and out.frame_seq == 1 and out.ts == 2.0


# ------------------------------------------------------------------ who calls close()
class _Spy:
    """A detector that finds nothing and counts its close() calls."""

    name = "spy"
    class_names: list[str] = []

    def __init__(self) -> None:
        self.closed = 0

    def detect(self, frame: Any) -> Detections:
        return Detections.empty(*base.frame_meta(frame))

    def close(self) -> None:
        self.closed += 1


def _camera_cfg(tmp_path: Path, **cam: Any) -> Any:
    from core.config import parse_config
    return parse_config({"server": {"port": 0}, "paths": {"data": str(tmp_path)},
                         "cameras": [{"name": "c", "source": "synthetic:conveyor", "detector": "none",
                                      **cam}]})


def test_analyzer_close_closes_detector_and_observers(tmp_path: Path) -> None:
    from stream.analyzer import build_analyzer
    cfg = _camera_cfg(tmp_path, defect_watch={"line_x": 0.5})
    spy = _Spy()
    an = build_analyzer(cfg.cameras[0], cfg, detector=spy)
    closed = []
    an.defects.close = lambda: closed.append("watch")  # type: ignore[method-assign]
    an.close()
    assert spy.closed == 1 and closed == ["watch"]
    an.close()                      # a second close() is safe (the detector's is idempotent)
    assert spy.closed == 2


@pytest.mark.timeout(30)
def test_pipeline_stop_closes_the_detector_after_joining(tmp_path: Path) -> None:
    import time

    from stream.pipeline import CameraPipeline
    cfg = _camera_cfg(tmp_path)
    spy = _Spy()
    pipe = CameraPipeline(cfg.cameras[0], cfg, detector=spy).start()
    time.sleep(0.3)
    assert spy.closed == 0
    assert pipe.stop(timeout=3.0)
    assert spy.closed == 1
    assert not any(t.is_alive() for t in pipe._threads)


def test_process_run_closes_the_analyzer(monkeypatch: pytest.MonkeyPatch) -> None:
    from stream import analyzer as analyzer_mod
    from stream.process import ProcessOptions, run
    calls = []
    real = analyzer_mod.Analyzer.close
    monkeypatch.setattr(analyzer_mod.Analyzer, "close", lambda self: (calls.append(self), real(self)))
    out = run(ProcessOptions(input="synthetic:crossing", detector="none", max_frames=5, progress=False))
    assert out["frames"] == 5 and len(calls) == 1
