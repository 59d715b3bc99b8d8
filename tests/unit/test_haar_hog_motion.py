"""Haar, HOG and motion detectors on generated data (no shared data needed)."""
from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import pytest

from core.types import Detections, Frame
from detectors.base import DetectorError
from detectors.haar import HaarDetector, cascade_names, resolve_cascade
from detectors.hog import HogDetector, tighten_boxes
from detectors.motion import GatedDetector, MotionDetector
from detectors.nms import iou_matrix


# ----------------------------------------------------------------------------- Haar
def test_cascade_names_match_what_opencv_ships() -> None:
    names = cascade_names()
    shipped = {p.name for p in Path(cv2.data.haarcascades).glob("haarcascade_*.xml")}
    assert {f"haarcascade_{n}.xml" for n in names} == shipped
    for expected in ("frontalface_default", "frontalface_alt2", "eye", "fullbody",
                     "russian_plate_number", "frontalcatface_extended"):
        assert expected in names


@pytest.mark.parametrize("given", ["eye", "EYE", "haarcascade_eye", "haarcascade_eye.xml",
                                   "eye.xml"])
def test_resolve_accepts_short_and_file_names(given: str) -> None:
    short, path = resolve_cascade(given)
    assert short == "eye" and path.name == "haarcascade_eye.xml" and path.is_file()


def test_resolve_british_spelling_alias() -> None:
    short, path = resolve_cascade("licence_plate_rus_16stages")
    assert short == "license_plate_rus_16stages" and path.is_file()


def test_unknown_cascade_lists_valid_names() -> None:
    with pytest.raises(DetectorError) as err:
        HaarDetector(cascade="frontal_face")
    msg = str(err.value)
    assert "frontal_face" in msg and "frontalface_default" in msg and "eye_tree_eyeglasses" in msg


def test_user_xml_path(tmp_path: Path) -> None:
    src = Path(cv2.data.haarcascades) / "haarcascade_smile.xml"
    dst = tmp_path / "my_smiles.xml"
    dst.write_bytes(src.read_bytes())
    det = HaarDetector(cascade=str(dst))
    assert det.class_names == ["my_smiles"] and det.cascade_path == dst
    with pytest.raises(DetectorError, match="not found"):
        HaarDetector(cascade=str(tmp_path / "missing.xml"))
    bad = tmp_path / "bad.xml"
    bad.write_text("<opencv_storage><nothing/></opencv_storage>")
    with pytest.raises(DetectorError, match="cannot load"):
        HaarDetector(cascade=str(bad))


@pytest.mark.parametrize("kwargs", [
    {"scale_factor": 1.0}, {"scale_factor": 2.5}, {"min_neighbors": 51},
    {"min_neighbors": -1}, {"min_size": [0, 24]}, {"min_size": "big"},
    {"min_size": [40, 40], "max_size": [30, 30]}, {"nested_required": True},
    {"nested": "no_such"}, {"score_threshold": 1.5}, {"nms_iou": -0.1},
])
def test_haar_bounds(kwargs: dict) -> None:
    with pytest.raises(DetectorError):
        HaarDetector(**kwargs)


def test_haar_class_names_with_nested() -> None:
    det = HaarDetector(cascade="frontalface_alt2", nested="eye_tree_eyeglasses")
    assert det.class_names == ["frontalface_alt2", "eye_tree_eyeglasses"]


def test_haar_score_normalised_across_scale_factor() -> None:
    """Measured on a real face: 46 votes at 1.05, 24 at 1.1, 13 at 1.2 -> similar scores."""
    det = HaarDetector()
    s = [float(det._scores(np.array([v]), sf, 4)[0]) for v, sf in ((46, 1.05), (24, 1.1),
                                                                     (13, 1.2))]
    assert max(s) - min(s) < 0.05 and all(0.85 < x < 1.0 for x in s)
    few, many = det._scores(np.array([5, 30]), 1.1, 4)
    assert 0 < few < 0.5 < many < 1


class _FakeCascade:
    """Stands in for cv2.CascadeClassifier: records calls, returns fixed rects."""

    def __init__(self, rects: list[list[int]], votes: list[int]) -> None:
        self.rects, self.votes, self.calls = rects, votes, []

    def getOriginalWindowSize(self) -> tuple[int, int]:  # noqa: N802 - OpenCV's name
        return (24, 24)

    def detectMultiScale2(self, gray, sf, mn, flags, **kw):  # noqa: N802
        self.calls.append((gray.shape, kw))
        return np.array(self.rects, np.int32).reshape(-1, 4), np.array(self.votes, np.int32)


def test_haar_max_side_maps_boxes_back_to_frame() -> None:
    det = HaarDetector(max_side=500, min_size=(40, 40), nms_iou=1.0)
    fake = _FakeCascade([[100, 50, 60, 60]], [30])
    det._clf = fake
    out = det.detect(np.zeros((600, 1000, 3), np.uint8))  # factor 0.5
    (shape, kw), = fake.calls
    assert shape == (300, 500) and kw["minSize"] == (20, 20)
    np.testing.assert_allclose(out.xyxy, [[200, 100, 320, 220]])
    assert out.label.tolist() == ["frontalface_default"]


def test_haar_nested_rows_and_required_filter() -> None:
    det = HaarDetector(nested="eye", nested_required=True, nms_iou=1.0)
    det._clf = _FakeCascade([[10, 10, 100, 100], [200, 10, 50, 50]], [30, 20])

    class _EyeOnlyInBigFace(_FakeCascade):
        def detectMultiScale2(self, gray, sf, mn, flags, **kw):  # noqa: N802
            super().detectMultiScale2(gray, sf, mn, flags, **kw)
            if gray.shape == (100, 100):
                return np.array([[20, 30, 24, 24]], np.int32), np.array([12], np.int32)
            return (), ()

    det._nested = _EyeOnlyInBigFace([], [])
    out = det.detect(np.zeros((300, 400, 3), np.uint8))
    # the small face had no eye and is dropped; the eye is shifted into frame coordinates
    np.testing.assert_allclose(out.xyxy, [[10, 10, 110, 110], [30, 40, 54, 64]])
    assert out.class_id.tolist() == [0, 1] and out.label.tolist() == ["frontalface_default", "eye"]
    det.cfg.nested_output = False
    assert det.detect(np.zeros((300, 400, 3), np.uint8)).class_id.tolist() == [0]


def test_haar_nms_removes_shifted_duplicate() -> None:
    """The face GIF yields a face (30 votes) and a lower duplicate (5 votes) at IoU ~0.5."""
    det = HaarDetector(nms_iou=0.4)
    det._clf = _FakeCascade([[202, 44, 89, 89], [198, 66, 99, 99]], [30, 5])
    out = det.detect(np.zeros((270, 480, 3), np.uint8))
    np.testing.assert_allclose(out.xyxy, [[202, 44, 291, 133]])


def test_haar_finds_nothing_on_flat_and_noise() -> None:
    det = HaarDetector()
    assert len(det.detect(np.full((240, 320, 3), 128, np.uint8))) == 0
    assert len(det.detect(np.zeros((20, 20, 3), np.uint8))) == 0  # smaller than the window


# ----------------------------------------------------------------------------- HOG
def test_tighten_boxes_geometry() -> None:
    b = np.array([[10, 20, 74, 148]], float)  # one 64x128 window
    t = tighten_boxes(b, 0.5, 0.75, 0.0)
    np.testing.assert_allclose(t, [[26, 36, 58, 132]])
    t2 = tighten_boxes(b, 0.5, 0.75, -0.1)
    np.testing.assert_allclose(t2 - t, [[0, -12.8, 0, -12.8]])


class _FakeHog:
    def __init__(self, rects, weights) -> None:
        self.rects, self.weights, self.shapes = rects, weights, []

    def detectMultiScale(self, img, **kw):  # noqa: N802 - OpenCV's name
        self.shapes.append(img.shape)
        return np.array(self.rects, np.int32).reshape(-1, 4), np.array(self.weights, np.float64)


def test_hog_maps_boxes_back_from_upscale() -> None:
    det = HogDetector(upscale=2.0, tighten=False, score_threshold=0.0)
    det._hog = _FakeHog([[100, 60, 64, 128]], [1.0])
    out = det.detect(np.zeros((240, 320, 3), np.uint8))
    assert det._hog.shapes == [(480, 640, 3)]
    np.testing.assert_allclose(out.xyxy, [[50, 30, 82, 94]])
    assert out.score[0] == pytest.approx(1 / (1 + math.exp(-1.0)), rel=1e-6)
    # tightened boxes keep the same centre (up to the small upward shift)
    det.cfg.tighten = True
    t = det.detect(np.zeros((240, 320, 3), np.uint8)).xyxy[0]
    assert (t[0] + t[2]) / 2 == pytest.approx(66) and t[2] - t[0] == pytest.approx(32 * 0.68)


def test_hog_max_side_caps_the_factor() -> None:
    det = HogDetector(upscale=2.0, max_side=800)
    assert det.factor(576, 768) == pytest.approx(800 / 768)
    assert det.factor(3000, 4000) == pytest.approx(0.2)
    assert det.factor(100, 100) == 2.0


def test_hog_score_threshold_and_nms() -> None:
    det = HogDetector(upscale=1.0, score_threshold=0.6, nms_iou=0.3)
    # two overlapping windows on one person, one weak window elsewhere (margin -0.5 -> 0.38)
    det._hog = _FakeHog([[10, 10, 64, 128], [14, 12, 64, 128], [200, 10, 64, 128]],
                        [2.0, 1.0, -0.5])
    out = det.detect(np.zeros((300, 400, 3), np.uint8))
    assert len(out) == 1 and out.score[0] == pytest.approx(1 / (1 + math.exp(-2.0)), rel=1e-6)


def test_hog_small_frame_is_empty_without_calling_opencv() -> None:
    det = HogDetector(upscale=1.0)
    det._hog = _FakeHog([], [])
    assert len(det.detect(np.zeros((100, 60, 3), np.uint8))) == 0 and det._hog.shapes == []


@pytest.mark.parametrize("kwargs", [{"win_stride": [4, 4]}, {"upscale": 0.5}, {"upscale": 5},
                                    {"scale": 1.0}, {"tighten_wh": [0.1, 0.8]},
                                    {"padding": [-8, 8]}, {"score_threshold": 2}])
def test_hog_bounds(kwargs: dict) -> None:
    with pytest.raises(DetectorError):
        HogDetector(**kwargs)


# ----------------------------------------------------------------------------- motion
W, H = 320, 240


def _scene(i: int, rects: list[tuple[int, int, int, int]] | None = None, seed: int = 0
           ) -> tuple[np.ndarray, np.ndarray]:
    """Textured static background plus moving filled rectangles; returns image, truth xyxy."""
    rng = np.random.default_rng(seed)
    bg = cv2.GaussianBlur(rng.integers(60, 140, (H, W, 3), dtype=np.uint8), (7, 7), 0)
    img = bg.copy()
    noise = np.random.default_rng(1000 + i).integers(-2, 3, img.shape)
    img = np.clip(img.astype(int) + noise, 0, 255).astype(np.uint8)
    if rects is None:
        rects = [(10 + 5 * i, 100, 30, 40)]
    truth = []
    for x, y, w, h in rects:
        img[y:y + h, x:x + w] = (30, 200, 240)
        truth.append((x, y, x + w, y + h))
    return img, np.array(truth, np.float64).reshape(-1, 4)


def test_motion_one_box_per_moving_rectangle_after_warmup() -> None:
    det = MotionDetector(warmup_frames=8)
    for i in range(30):
        # background only while the model warms up, then a part moves in
        img, truth = _scene(i, [] if i < 8 else None)
        out = det.detect(Frame(img, seq=i, ts=float(i)))
        assert out.frame_seq == i
        if i < 8:
            assert len(out) == 0 and det.warming_up
            continue
        assert len(out) == 1, (i, out.xyxy)
        assert iou_matrix(out.xyxy, truth)[0, 0] >= 0.75
        assert 0.5 < out.score[0] <= 1.0
        assert out.label.tolist() == ["motion"]


def test_motion_part_present_from_the_start_recovers() -> None:
    """A flat part moving by less than its width while the model learns is partly absorbed
    (the classic foreground-aperture effect: its inside looks like its own past); the
    model recovers once the part has moved off its start position."""
    det = MotionDetector(warmup_frames=8)
    ious = []
    for i in range(30):
        img, truth = _scene(i)
        out = det.detect(img)
        if i >= 25:
            assert len(out) == 1
            ious.append(iou_matrix(out.xyxy, truth)[0, 0])
    assert min(ious) >= 0.75


def test_motion_static_scene_has_no_boxes() -> None:
    det = MotionDetector(warmup_frames=3)
    fixed = [(100, 100, 30, 40)]
    flags = [det.has_motion(_scene(i, fixed)[0]) for i in range(20)]
    assert not any(flags)
    mask = det.motion_mask()
    assert mask is not None and mask.shape == (H, W) and mask.max() == 0
    assert det.motion_mask((W * 2, H * 2)).shape == (H * 2, W * 2)


def test_motion_merge_distance_joins_close_blobs() -> None:
    def run(merge: int) -> Detections:
        det = MotionDetector(warmup_frames=3, merge_distance=merge)
        out = Detections.empty()
        for i in range(12):
            x = 20 + 6 * i
            parts = [(x, 80, 20, 40), (x + 32, 80, 20, 40)] if i >= 4 else []
            out = det.detect(_scene(i, parts)[0])
        return out
    assert len(run(0)) == 2
    merged = run(20)
    assert len(merged) == 1
    x = 20 + 6 * 11
    # the merged box spans both parts but is not inflated by the dilation
    assert merged.xyxy[0, 0] >= x - 4 and merged.xyxy[0, 2] <= x + 52 + 4


def test_motion_area_filters() -> None:
    det = MotionDetector(warmup_frames=3, min_area=100, open_kernel=0)
    outs = [det.detect(_scene(i, [(40 + 4 * i, 50, 6, 6)] if i >= 4 else [])[0])
            for i in range(10)]
    assert sum(len(o) for o in outs) == 0
    assert det.last_mask.max() == 255
    det = MotionDetector(warmup_frames=3, max_area=500)
    outs = [det.detect(_scene(i, [] if i < 4 else None)[0]) for i in range(10)]  # 1200 px part
    assert det.last_mask.max() == 255  # the part is foreground, only the area filter drops it
    assert sum(len(o) for o in outs) == 0


def test_motion_downscale_and_knn_agree_with_truth() -> None:
    for kwargs in ({"downscale": 2.0}, {"method": "knn"}, {"max_side": 160}):
        det = MotionDetector(warmup_frames=6, **kwargs)
        for i in range(20):  # a 60x80 part: at half resolution a 30x40 one is 15x20 px
            img, truth = _scene(i, [] if i < 6 else [(10 + 5 * i, 80, 60, 80)])
            out = det.detect(img)
        assert len(out) == 1, kwargs
        assert iou_matrix(out.xyxy, truth)[0, 0] >= 0.7, (kwargs, out.xyxy, truth)


def test_motion_size_change_resets_model() -> None:
    det = MotionDetector(warmup_frames=4)
    for i in range(10):
        det.detect(_scene(i)[0])
    assert not det.warming_up
    out = det.detect(cv2.resize(_scene(10)[0], (160, 120)))
    assert len(out) == 0 and det.warming_up and det.frames_seen == 1


@pytest.mark.parametrize("kwargs", [{"method": "diff"}, {"blur": 4}, {"learning_rate": 2},
                                    {"min_area": 100, "max_area": 50}, {"downscale": 0.5},
                                    {"history": 0}])
def test_motion_bounds(kwargs: dict) -> None:
    with pytest.raises(DetectorError):
        MotionDetector(**kwargs)


# ----------------------------------------------------------------------------- gate
class _Recorder:
    """Inner detector stub: records the images it saw, reports one box at (5,5)-(25,45)."""

    name = "rec"
    class_names = ["thing"]

    def __init__(self) -> None:
        self.shapes: list[tuple[int, ...]] = []

    def detect(self, frame):
        img = frame.image if isinstance(frame, Frame) else frame
        self.shapes.append(img.shape)
        return Detections([[5, 5, 25, 45]], [0.9], [0])


def test_gate_frame_mode_skips_still_frames() -> None:
    inner = _Recorder()
    gated = GatedDetector(inner, MotionDetector(warmup_frames=3), mode="frame")
    fixed = [(100, 100, 30, 40)]
    for i in range(10):
        out = gated.detect(Frame(_scene(i, fixed)[0], seq=i, ts=i * 0.1))
    assert gated.inner_runs == 3 and gated.skipped == 7  # fail-open during warm-up only
    assert len(out) == 0 and out.frame_seq == 9
    out = gated.detect(Frame(_scene(10, [(140, 100, 30, 40)])[0], seq=10, ts=1.0))
    assert gated.inner_runs == 4 and len(out) == 1 and out.frame_seq == 10 and out.ts == 1.0
    assert gated.class_names == ["thing"] and gated.name == "rec+motion"


def test_gate_region_mode_crops_and_maps_back() -> None:
    inner = _Recorder()
    gated = GatedDetector(inner, MotionDetector(warmup_frames=3), mode="region", pad=16,
                          min_region=64)
    for i in range(12):
        img, truth = _scene(i, [] if i < 4 else None)
        out = gated.detect(Frame(img, seq=i, ts=float(i)))
    x1, y1, x2, y2 = gated.last_region
    assert inner.shapes[-1] == (y2 - y1, x2 - x1, 3)
    t = truth[0]
    assert x1 <= t[0] - 12 and y1 <= t[1] - 12 and x2 >= t[2] + 12 and y2 >= t[3] + 12
    assert (x2 - x1) < W and (y2 - y1) < H  # a real crop, not the whole frame
    np.testing.assert_allclose(out.xyxy, [[x1 + 5, y1 + 5, x1 + 25, y1 + 45]])
    assert out.frame_seq == 11


def test_gate_region_mode_keeps_data_columns_in_frame_pixels() -> None:
    """A text detector's rotated boxes and OCR confidences survive the crop, the rotated
    centres shifted back to frame pixels like the boxes."""
    from core.types import ROTATED_BOX, TEXT_CONFIDENCE

    class _Text(_Recorder):
        def detect(self, frame):
            return super().detect(frame).with_data(ROTATED_BOX, [[15, 25, 20, 40, -7.0]]) \
                .with_data(TEXT_CONFIDENCE, [88.0])

    gated = GatedDetector(_Text(), MotionDetector(warmup_frames=3), mode="region", pad=16,
                          min_region=64)
    for i in range(12):
        img, _ = _scene(i, [] if i < 4 else None)
        out = gated.detect(Frame(img, seq=i, ts=float(i)))
    x1, y1, _, _ = gated.last_region
    assert (x1, y1) != (0, 0)
    np.testing.assert_allclose(out.data[ROTATED_BOX], [[x1 + 15, y1 + 25, 20, 40, -7.0]])
    np.testing.assert_allclose(out.data[TEXT_CONFIDENCE], [88.0])


def test_gate_region_geometry_clips_and_grows() -> None:
    g = GatedDetector(_Recorder(), MotionDetector(), mode="region", pad=10, min_region=100)
    # near the top-left corner: grown to 100x100 and slid inside the frame
    assert g.region(np.array([[0, 0, 20, 20]]), 320, 240) == (0, 0, 100, 100)
    # union of two boxes, padded
    assert g.region(np.array([[50, 60, 70, 80], [200, 100, 260, 200]]), 320, 240) == (
        40, 50, 270, 210)
    # frame smaller than min_region: the whole frame
    assert g.region(np.array([[10, 10, 20, 20]]), 80, 60) == (0, 0, 80, 60)
    with pytest.raises(DetectorError):
        GatedDetector(_Recorder(), MotionDetector(), mode="everywhere")
