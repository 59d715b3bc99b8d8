"""DBNet post-processing and the geometry helpers of the text detector, on generated maps;
plus the detector contract on odd frames with the real PP-OCRv4 ONNX model when present."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from core.types import ROTATED_BOX, TEXT_CONFIDENCE, Frame
from detectors.base import DetectorError
from detectors.ocr import crop_rotated, crop_xyxy, prepare_line, rbox_to_quad
from detectors.text import (DEFAULT_DB_MODEL, ROOT, TextDetector, db_input_size, db_postprocess,
                            normalise_rboxes, rbox_from_quads, scale_rboxes)
from tests.conftest import require


def fill_rbox(prob: np.ndarray, rbox, value: float) -> None:
    pts = cv2.boxPoints(((rbox[0], rbox[1]), (rbox[2], rbox[3]), rbox[4]))
    cv2.fillPoly(prob, [np.round(pts).astype(np.int32)], float(value))


# --------------------------------------------------------------------------------------
# db_postprocess
# --------------------------------------------------------------------------------------
def test_axis_aligned_region_unclip_is_exact():
    prob = np.zeros((64, 96), np.float32)
    prob[20:30, 10:50] = 0.9  # pixels x 10..49, y 20..29
    rb, sc = db_postprocess(prob, 0.3, 0.6, 1.5, 3, 1000)
    assert rb.shape == (1, 5)
    # minAreaRect over pixel centres: centre (29.5, 24.5), 39 x 9; d = 39*9*1.5/(2*48)
    d = 39 * 9 * 1.5 / (2 * (39 + 9))
    np.testing.assert_allclose(rb[0], [29.5, 24.5, 39 + 2 * d, 9 + 2 * d, 0], atol=1e-4)
    np.testing.assert_allclose(sc, [0.9], atol=1e-6)


def test_unclip_ratio_zero_keeps_region_size():
    prob = np.zeros((64, 96), np.float32)
    prob[20:30, 10:50] = 0.8
    rb, _ = db_postprocess(prob, 0.3, 0.6, 0.0, 3, 1000)
    np.testing.assert_allclose(rb[0, 2:4], [39, 9], atol=1e-4)


def test_rotated_region_angle_and_size():
    prob = np.zeros((200, 200), np.float32)
    fill_rbox(prob, (100, 100, 120, 24, 20.0), 0.95)
    rb, sc = db_postprocess(prob, 0.3, 0.6, 1.5, 3, 1000)
    assert rb.shape == (1, 5)
    cx, cy, w, h, a = rb[0]
    assert abs(cx - 100) < 1 and abs(cy - 100) < 1
    assert abs(a - 20.0) < 1.5
    # expected size: the min-area rectangle of the filled pixels (fillPoly rounds the
    # outline outwards), expanded by 2d with d = area * 1.5 / perimeter
    ys, xs = np.nonzero(prob > 0.3)
    (_, _), (rw, rh), _ = cv2.minAreaRect(np.column_stack([xs, ys]).astype(np.float32))
    rw, rh = max(rw, rh), min(rw, rh)
    d = rw * rh * 1.5 / (2 * (rw + rh))
    assert abs(w - (rw + 2 * d)) < 0.5 and abs(h - (rh + 2 * d)) < 0.5
    assert w >= h  # long side is the width


def test_negative_angle_and_long_side_normalised():
    prob = np.zeros((200, 200), np.float32)
    fill_rbox(prob, (100, 100, 24, 120, 15.0), 0.95)  # tall box == 120 wide at 15 - 90 deg
    rb, _ = db_postprocess(prob, 0.3, 0.6, 1.5, 3, 1000)
    assert rb[0, 2] > rb[0, 3]
    assert abs(rb[0, 4] - (15.0 - 90.0)) < 1.5 or abs(rb[0, 4] - (15.0 + 90.0)) < 1.5


def test_box_threshold_and_min_size_filter():
    prob = np.zeros((100, 100), np.float32)
    prob[10:20, 10:60] = 0.9   # kept
    prob[40:50, 10:60] = 0.45  # above det_threshold, mean below box_threshold: dropped
    prob[70:72, 10:60] = 0.9   # 2 px tall: short side 1 < min_box_size 3: dropped
    rb, sc = db_postprocess(prob, 0.3, 0.6, 1.5, 3, 1000)
    assert rb.shape == (1, 5) and abs(rb[0, 1] - 14.5) < 1e-4
    rb2, _ = db_postprocess(prob, 0.3, 0.4, 1.5, 3, 1000)  # lower box threshold keeps the 0.45
    assert rb2.shape == (2, 5)
    rb3, _ = db_postprocess(prob, 0.3, 0.6, 1.5, 0, 1000)
    assert rb3.shape == (2, 5)  # min size 0 keeps the thin line (still >= 2 after unclip)


def test_score_is_region_mean():
    prob = np.zeros((50, 80), np.float32)
    prob[10:20, 10:30] = 0.5
    prob[10:20, 30:50] = 0.9
    _, sc = db_postprocess(prob, 0.3, 0.1, 1.5, 3, 1000)
    np.testing.assert_allclose(sc, [0.7], atol=1e-5)


def test_ring_region_gives_one_box_not_a_hole_box():
    prob = np.zeros((100, 100), np.float32)
    prob[20:80, 20:80] = 0.9
    prob[30:70, 30:70] = 0.0  # hole
    prob[45:55, 40:60] = 0.9  # island inside the hole: its own region
    rb, _ = db_postprocess(prob, 0.3, 0.6, 1.5, 3, 1000)
    assert rb.shape == (2, 5)
    sizes = sorted(rb[:, 2].tolist())
    assert sizes[0] < 40 < sizes[1]


def test_max_candidates_keeps_largest_regions():
    prob = np.zeros((200, 200), np.float32)
    for i, wdt in enumerate([10, 40, 20, 30, 50]):
        prob[10 + 30 * i: 20 + 30 * i, 10: 10 + wdt] = 0.9
    rb, _ = db_postprocess(prob, 0.3, 0.6, 0.0, 3, 2)
    assert sorted(np.round(rb[:, 2]).tolist()) == [39, 49]


def test_empty_and_invalid_maps():
    for p in (np.zeros((0, 0)), np.zeros((10, 10)), np.full((10, 10), np.nan), np.zeros(5)):
        rb, sc = db_postprocess(p)
        assert rb.shape == (0, 5) and sc.shape == (0,)


# --------------------------------------------------------------------------------------
# geometry helpers
# --------------------------------------------------------------------------------------
def test_db_input_size_multiples_of_32():
    assert db_input_size(257, 556, 960) == (256, 544)
    assert db_input_size(1080, 1920, 960) == (544, 960)
    assert db_input_size(1, 1, 960) == (32, 32)
    assert db_input_size(576, 768, 640) == (480, 640)
    rng = np.random.default_rng(1)
    for h, w in rng.integers(1, 5000, size=(50, 2)):
        rh, rw = db_input_size(int(h), int(w), 960)
        assert rh % 32 == 0 and rw % 32 == 0 and max(rh, rw) <= 960 + 16


def test_rbox_to_quad_matches_boxpoints_and_round_trips():
    rng = np.random.default_rng(0)
    rb = np.column_stack([rng.uniform(0, 500, (20, 2)), rng.uniform(5, 200, (20, 2)),
                          rng.uniform(-89, 89, 20)]).astype(np.float32)
    q = rbox_to_quad(rb)
    for i in range(len(rb)):  # reference check against OpenCV (20 rows)
        ref = cv2.boxPoints(((rb[i, 0], rb[i, 1]), (rb[i, 2], rb[i, 3]), rb[i, 4]))
        np.testing.assert_allclose(q[i], ref, atol=1e-3)
    np.testing.assert_allclose(rbox_from_quads(q), rb, atol=1e-3)


def test_normalise_rboxes():
    r = normalise_rboxes(np.array([[0, 0, 20, 100, 90], [0, 0, 100, 20, -10],
                                   [0, 0, 10, 50, 10]], np.float32))
    np.testing.assert_allclose(r[:, 2:4], [[100, 20], [100, 20], [50, 10]])
    np.testing.assert_allclose(r[:, 4], [0, -10, -80], atol=1e-5)
    # same rectangle before and after: identical corner sets
    a = np.sort(rbox_to_quad(np.array([[0, 0, 10, 50, 10]])).reshape(-1, 2), axis=0)
    b = np.sort(rbox_to_quad(r[2:3]).reshape(-1, 2), axis=0)
    np.testing.assert_allclose(a, b, atol=1e-3)


def test_scale_rboxes_isotropic():
    rb = np.array([[10, 20, 30, 8, 12.0]], np.float32)
    out, quads = scale_rboxes(rb, 2.0, 2.0)
    np.testing.assert_allclose(out, [[20, 40, 60, 16, 12.0]], atol=1e-3)
    assert quads.shape == (1, 4, 2)


def test_crop_rotated_recovers_upright_patch():
    patch = np.zeros((20, 60), np.uint8)
    patch[5:15, 5:20] = 255
    patch[5:15, 35:55] = 128
    canvas = np.zeros((200, 200), np.uint8)
    canvas[90:110, 70:130] = patch
    m = cv2.getRotationMatrix2D((100, 100), -25, 1.0)  # rotate the content by +25 deg (y down)
    rot = cv2.warpAffine(canvas, m, (200, 200), flags=cv2.INTER_LINEAR)
    crop = crop_rotated(rot, (100, 100, 60, 20, 25.0))
    assert crop.shape == (20, 60)
    err = np.abs(crop.astype(int) - patch.astype(int))
    assert np.median(err) == 0 and err.mean() < 20


def test_crop_helpers_reject_degenerate():
    img = np.zeros((50, 50, 3), np.uint8)
    assert crop_xyxy(img, (10, 10, 10.5, 30)) is None
    assert crop_xyxy(img, (60, 60, 80, 80)) is None
    assert crop_xyxy(img, (np.nan, 0, 10, 10)) is None
    assert crop_xyxy(img, (-5, -5, 20, 20)).shape == (20, 20, 3)
    assert crop_rotated(img, (10, 10, 1, 1, 0)) is None
    assert crop_rotated(img, (10, 10, 1e9, 10, 0)) is None


def test_prepare_line_inverts_light_text():
    dark_on_light = np.full((20, 80), 230, np.uint8)
    cv2.putText(dark_on_light, "AB", (5, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.5, 20, 1)
    light_on_dark = 255 - dark_on_light
    a, b = prepare_line(dark_on_light, 40), prepare_line(light_on_dark, 40)
    assert a.shape == b.shape and a.shape[0] == 40 + 16
    assert np.median(a) > 128 and np.median(b) > 128  # both come out dark-on-light


# --------------------------------------------------------------------------------------
# the detector with a stubbed network (coordinate mapping) and configuration errors
# --------------------------------------------------------------------------------------
class _StubSession:
    """Returns a fixed probability map whatever the input (records the input shape)."""

    def __init__(self, prob: np.ndarray) -> None:
        self.prob = prob
        self.shapes: list[tuple[int, ...]] = []

    def run(self, _outs, feeds):
        (x,) = feeds.values()
        self.shapes.append(x.shape)
        return [self.prob[None, None]]


def _db_model() -> Path:
    p = ROOT / DEFAULT_DB_MODEL
    require(p.is_file(), f"DBNet model {p} not found: run `python main.py assets`")
    return p


def test_dbnet_maps_boxes_back_to_frame():
    det = TextDetector(model=str(_db_model()), recognize=False)
    prob = np.zeros((96, 192), np.float32)  # a 100x200 frame is fed as 96x192
    prob[40:50, 20:100] = 0.9
    stub = _StubSession(prob)
    det._sess = stub
    out = det.detect(Frame(np.zeros((100, 200, 3), np.uint8), seq=3, ts=1.5))
    assert stub.shapes == [(1, 3, 96, 192)]
    assert (out.frame_seq, out.ts) == (3, 1.5) and len(out) == 1
    d = 79 * 9 * 1.5 / (2 * (79 + 9))
    sx, sy = 200 / 192, 100 / 96
    exp = [(59.5 - 39.5 - d) * sx, (44.5 - 4.5 - d) * sy, (59.5 + 39.5 + d) * sx,
           (44.5 + 4.5 + d) * sy]
    np.testing.assert_allclose(out.xyxy[0], exp, atol=1e-3)
    assert out.data[ROTATED_BOX].shape == (1, 5) and out.text[0] is None
    assert out.data[TEXT_CONFIDENCE].tolist() == [0.0]  # recognize=False: nothing read


def test_dbnet_odd_frames_never_raise():
    det = TextDetector(model=str(_db_model()), recognize=False, limit_side=480)
    big = np.zeros((2200, 3000, 3), np.uint8)
    cv2.putText(big, "HELLO", (200, 1000), cv2.FONT_HERSHEY_SIMPLEX, 10, (255, 255, 255), 25)
    for img in (np.zeros((0, 0, 3), np.uint8), np.zeros((1, 1, 3), np.uint8),
                np.zeros((7, 5), np.uint8), np.full((40, 60, 4), 200, np.uint8),
                np.zeros((64, 64, 3), np.float32), big, big[::3, ::2],
                np.asfortranarray(np.zeros((50, 70, 3), np.uint8)), "not an image"):
        out = det.detect(img)
        assert len(out) == len(out.data[ROTATED_BOX]) == len(out.data[TEXT_CONFIDENCE])
        if isinstance(img, np.ndarray) and img.size:
            h, w = img.shape[:2]
            assert np.all(out.xyxy[:, [0, 2]] <= w) and np.all(out.xyxy[:, [1, 3]] <= h)
    out = det.detect(big)
    assert len(out) >= 1  # the big white word on black is found after the downscale
    # the drawn word covers x 227..1153, y 777..1013: the box must enclose it, loosely
    x1, y1, x2, y2 = out.xyxy[np.argmax(out.score)]
    assert 180 < x1 < 235 and 730 < y1 < 785 and 1145 < x2 < 1220 and 1005 < y2 < 1080


@pytest.mark.parametrize("kw, key", [
    ({"box_detector": "yolo"}, "box_detector"),
    ({"limit_side": 1000}, "limit_side"),
    ({"det_threshold": 1.5}, "det_threshold"),
    ({"box_threshold": 0.0}, "box_threshold"),
    ({"unclip_ratio": -1}, "unclip_ratio"),
    ({"max_candidates": 0}, "max_candidates"),
    ({"min_text_confidence": 101}, "min_text_confidence"),
    ({"threads": -1}, "threads"),
    ({"ocr_workers": 0}, "ocr_workers"),
    ({"model": "/nonexistent/det.onnx"}, "model"),
    ({"providers": "tpu"}, "providers"),
])
def test_bad_config_names_the_key(kw, key):
    with pytest.raises(DetectorError, match=rf"text\.{key}"):
        TextDetector(**{"recognize": False, **kw})


def test_bad_tessdata_names_the_key(tmp_path: Path):
    pytest.importorskip("tesserocr")
    with pytest.raises(DetectorError, match=r"text\.(tessdata|lang)"):
        TextDetector(model=str(_db_model()), lang="xyz")
    with pytest.raises(DetectorError, match=r"text\.tessdata"):
        TextDetector(model=str(_db_model()), tessdata=str(tmp_path))  # no eng.traineddata there
    with pytest.raises(DetectorError, match=r"text\.psm"):
        TextDetector(model=str(_db_model()), psm=0)


def test_choose_providers():
    from detectors.base import choose_providers

    cpu_only = ["CPUExecutionProvider"]
    both = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    assert choose_providers("auto", cpu_only) == cpu_only
    assert choose_providers("auto", both) == both
    assert choose_providers("cpu", both) == cpu_only
    assert choose_providers("cuda", both) == both
    with pytest.raises(DetectorError, match=r"text\.providers.*CUDAExecutionProvider"):
        choose_providers("cuda", cpu_only, "text")


def test_find_tessdata(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from detectors.ocr import find_tessdata

    (tmp_path / "tessdata").mkdir()
    (tmp_path / "tessdata" / "abc.traineddata").write_bytes(b"x")
    assert find_tessdata(tmp_path / "tessdata", "abc") == str(tmp_path / "tessdata")
    assert find_tessdata(tmp_path / "tessdata", "abc+def") is None
    assert find_tessdata(tmp_path, "abc") is None  # an explicit folder is not searched below
    monkeypatch.setenv("TESSDATA_PREFIX", str(tmp_path))
    assert find_tessdata(None, "abc") == str(tmp_path / "tessdata")
