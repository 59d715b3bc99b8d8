"""Haar, HOG and motion detectors on real footage (../shared/data) and the synthetic conveyor.

References:
- vtest.avi is PETS09-S2L1: MOT15 det.txt frame N is video frame N-1. det.txt holds
  Faster R-CNN person boxes; those with conf >= 0.5 stand in for ground truth (none exists
  for this sequence). HOG is scored one-to-one (Hungarian on IoU) at IoU >= 0.3.
- head-pose-face-detection-male.gif: one man facing the camera on every one of its 62 frames.
"""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment

from detectors.haar import HaarDetector
from detectors.hog import TIGHTEN_DY, HogDetector
from detectors.motion import MotionDetector
from detectors.nms import iou_matrix
from tests.conftest import data_file
from tests.timing import cost_s

VTEST = "video/opencv/vtest.avi"
PETS_DET = "mot/MOT15/PETS09-S2L1/det/det.txt"
FACE_GIF = "video/intel/head-pose-face-detection-male.gif"
# Hold-out sample: the tightening factors were fitted on frames 0,60,... and 30,90,...
HOG_FRAMES = list(range(15, 795, 65))  # 12 frames
GRASS = (0, 330, 420, 576)  # x1, y1, x2, y2: lawn in the lower left of vtest


def _read_frames(path: Path, wanted: list[int] | None = None) -> dict[int, np.ndarray]:
    cap = cv2.VideoCapture(str(path))
    assert cap.isOpened(), path
    out: dict[int, np.ndarray] = {}
    last = max(wanted) if wanted else 1 << 30
    i = 0
    try:
        while i <= last:
            if wanted is None or i in wanted:
                ok, img = cap.read()
                if not ok:
                    break
                out[i] = img
            elif not cap.grab():
                break
            i += 1
    finally:
        cap.release()
    return out


def _pets_reference(min_conf: float = 0.5) -> dict[int, np.ndarray]:
    """Video frame index -> (N,4) xyxy reference person boxes."""
    d = np.loadtxt(data_file(PETS_DET), delimiter=",", ndmin=2)
    d = d[d[:, 6] >= min_conf]
    xyxy = np.concatenate([d[:, 2:4], d[:, 2:4] + d[:, 4:6]], axis=1)
    frames = d[:, 0].astype(int) - 1
    return {int(f): xyxy[frames == f] for f in np.unique(frames)}


def _match(pred: np.ndarray, ref: np.ndarray, thr: float) -> np.ndarray:
    """IoUs of one-to-one matched pairs with IoU >= thr."""
    if len(pred) == 0 or len(ref) == 0:
        return np.zeros(0)
    m = iou_matrix(pred, ref)
    r, c = linear_sum_assignment(-m)
    v = m[r, c]
    return v[v >= thr]


# ----------------------------------------------------------------------------- Haar
@pytest.mark.timeout(60)
def test_haar_frontal_face_on_head_pose_clip() -> None:
    frames = _read_frames(data_file(FACE_GIF))
    assert len(frames) >= 50
    det = HaarDetector(cascade="frontalface_default")
    outs = [det.detect(f) for f in frames.values()]
    hit = np.mean([len(o) > 0 for o in outs])
    single = np.mean([len(o) == 1 for o in outs])
    # measured: 62/62 frames with exactly one face (scores 0.89-0.98); the shifted duplicate
    # box OpenCV returns on 2 frames is removed by nms_iou. 0.95 leaves room for 3 misses.
    assert hit >= 0.95, hit
    assert single >= 0.95, single
    boxes = np.array([o.xyxy[np.argmax(o.score)] for o in outs if len(o)])
    med = np.median(boxes, axis=0)
    # the man barely moves: every frame's face box agrees with the median face box
    assert np.min(iou_matrix(boxes, med[None])) >= 0.6
    assert 60 <= med[2] - med[0] <= 130  # a head-sized box in a 480x270 frame
    assert np.median(np.concatenate([o.score for o in outs])) >= 0.8


@pytest.mark.timeout(60)
def test_haar_no_faces_on_vtest_lawn() -> None:
    ref = _pets_reference(min_conf=0.3)
    x1, y1, x2, y2 = GRASS
    lawn = np.array([GRASS], float)
    # frames where no reference person box touches the lawn crop
    empty = [i for i in range(0, 795, 20)
             if i not in ref or not np.any(iou_matrix(ref[i], lawn) > 0)]
    assert len(empty) >= 20
    frames = _read_frames(data_file(VTEST), empty)
    det = HaarDetector(cascade="frontalface_default")
    outs = [det.detect(np.ascontiguousarray(frames[i][y1:y2, x1:x2])) for i in frames]
    raw = sum(len(o) for o in outs)
    strong = sum(int(np.sum(o.score >= 0.5)) for o in outs)
    # measured: 1 weak box (5 votes, score 0.39, on the yellow litter) in 28 crops
    assert strong == 0
    assert raw <= max(1, len(outs) // 10), raw


# ----------------------------------------------------------------------------- HOG
@pytest.mark.timeout(120)
def test_hog_people_on_vtest_against_mot_reference() -> None:
    ref = _pets_reference()
    frames = _read_frames(data_file(VTEST), HOG_FRAMES)
    assert len(frames) == len(HOG_FRAMES)
    det = HogDetector(upscale=1.5)
    tp = n_pred = n_ref = 0
    ious, ious_loose = [], []
    fw, fh = det.tighten_wh
    for i, img in frames.items():
        out = det.detect(img)
        r = ref.get(i, np.zeros((0, 4)))
        m = _match(out.xyxy, r, 0.3)
        tp += len(m)
        n_pred += len(out)
        n_ref += len(r)
        ious.extend(m)
        # the same detections grown back to the raw 64x128 window proportions
        b = out.xyxy.astype(np.float64)
        c = np.stack([(b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2], 1)
        wh = np.stack([(b[:, 2] - b[:, 0]) / fw, (b[:, 3] - b[:, 1]) / fh], 1)
        c[:, 1] -= TIGHTEN_DY * wh[:, 1]
        loose = np.concatenate([c - wh / 2, c + wh / 2], 1)
        ious_loose.extend(_match(loose, r, 0.3))
    recall, precision = tp / n_ref, tp / max(n_pred, 1)
    print(json.dumps({"hog_recall": round(recall, 3), "hog_precision": round(precision, 3),
                      "mean_iou_tight": round(float(np.mean(ious)), 3),
                      "mean_iou_window": round(float(np.mean(ious_loose)), 3),
                      "frames": len(frames), "reference_boxes": n_ref}))
    # measured on this hold-out sample: see the report; fitted samples gave R 0.87-0.91,
    # P 0.72-0.73 at the same settings
    assert recall >= 0.6, recall
    assert precision >= 0.6, precision
    assert np.mean(ious) >= 0.6
    assert np.mean(ious) > np.mean(ious_loose) + 0.1  # tightening is what makes boxes fit


# ----------------------------------------------------------------------------- motion
# Settings for a conveyor (measured over 120 frames after warm-up, seeds 0/1/2: part hit
# rate 0.996/1.0/1.0). Why not the defaults: the belt is textured and moves with the parts,
# and the scene's lighting drifts +-4 %. At full resolution the 2-px slat seams and the
# drift leave belt streaks in the mask (hit rate 0.38-0.49 at seeds 1/2); processing at half
# size (INTER_AREA averages the sensor noise), a looser var_threshold (36 instead of 16) and
# merging fragments of hollow parts within 16 px fix that (parts are >= 80 px apart).
CONVEYOR_MOTION = {"warmup_frames": 40, "downscale": 2.0, "var_threshold": 36.0,
                   "merge_distance": 16}


@pytest.mark.timeout(120)
@pytest.mark.parametrize("seed", [0, 1])
def test_motion_one_box_per_part_on_synthetic_conveyor(seed: int) -> None:
    synthetic = pytest.importorskip("stream.synthetic")
    scene = synthetic.make_scene("conveyor", seed=seed)
    warm, n = CONVEYOR_MOTION["warmup_frames"], 160
    det = MotionDetector(**CONVEYOR_MOTION)
    parts = hits = extra = 0
    for i in range(n):
        out = det.detect(scene.render(i))
        if i < warm:
            assert len(out) == 0
            continue
        truth = scene.truth(i)
        full = truth.visible >= 0.999  # parts entirely in view
        matched: set[int] = set()
        if len(out) and len(truth):
            m = iou_matrix(out.xyxy, truth.boxes)
            r, c = linear_sum_assignment(-m)
            good = m[r, c] >= 0.5
            matched = set(c[good].tolist())
        # boxes that match no part at all (IoU < 0.1 with every part, edge parts included)
        if len(out):
            extra += int(np.sum(iou_matrix(out.xyxy, truth.boxes).max(axis=1, initial=0) < 0.1))
        parts += int(full.sum())
        hits += sum(1 for j in np.flatnonzero(full) if j in matched)
    rate = hits / max(parts, 1)
    print(json.dumps({"seed": seed, "motion_part_hit_rate": round(rate, 3), "parts": parts,
                      "stray_boxes_per_frame": round(extra / (n - warm), 3)}))
    assert parts > 100
    assert rate >= 0.9, rate
    assert extra / (n - warm) <= 0.5


# ----------------------------------------------------------------------------- speed
@pytest.mark.timeout(120)
def test_ms_per_frame_at_768x576() -> None:
    """Medians over a few vtest frames, printed as JSON. The machine is shared, so only
    orderings that hold by a wide margin are asserted (measured ratios are ~10x and ~2.5x),
    the detectors are timed in turns (round k times each detector on frame k, so a change of
    the machine's load hits them alike) and each call counts min(wall, CPU time)."""
    frames = list(_read_frames(data_file(VTEST), list(range(100, 130))).values())
    runs = (("haar", HaarDetector(), frames[:5]),
            ("hog_upscale_1.0", HogDetector(upscale=1.0), frames[:3]),
            ("hog_upscale_1.5", HogDetector(upscale=1.5), frames[:3]),
            ("motion", MotionDetector(warmup_frames=5), frames))
    ts: dict[str, list[float]] = {name: [] for name, _, _ in runs}
    for k in range(max(len(sample) for _, _, sample in runs)):
        for name, det, sample in runs:
            if k < len(sample):
                ts[name].append(cost_s(lambda d=det, img=sample[k]: d.detect(img)))
    timings = {name: round(1000 * float(np.median(v)), 1) for name, v in ts.items()}
    print(json.dumps({"ms_per_frame_768x576": timings}))
    assert timings["motion"] < timings["hog_upscale_1.0"] < timings["hog_upscale_1.5"]
