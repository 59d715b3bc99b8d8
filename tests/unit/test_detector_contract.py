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
