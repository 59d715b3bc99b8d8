"""YOLOv3-tiny converted by Vigil, run on ONNX Runtime, against cv2.dnn's Darknet importer and
against the MOT15 PETS09-S2L1 reference person detections (same footage as vtest.avi)."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment

from core.types import Frame
from detectors import darknet
from detectors.base import DetectorError, build
from detectors.nms import iou_matrix
from detectors.yolo import YoloDetector
from tests.conftest import data_file

VIDEO = "video/opencv/vtest.avi"
DET_TXT = "mot/MOT15/PETS09-S2L1/det/det.txt"


def _frames(indices: list[int]) -> dict[int, np.ndarray]:
    """Decode sequentially (seeking MS-MPEG4 is not frame-exact) and keep the wanted ones."""
    cap = cv2.VideoCapture(str(data_file(VIDEO)))
    want, out, i = set(indices), {}, 0
    try:
        while len(out) < len(want):
            ok = cap.grab()
            if not ok:
                break
            if i in want:
                ok, img = cap.retrieve()
                assert ok
                out[i] = img
            i += 1
    finally:
        cap.release()
    assert len(out) == len(want), f"only {len(out)} of {len(want)} frames decoded"
    return out


@pytest.fixture(scope="module")
def tiny_onnx(models_dir: Path, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("yolo") / "yolov3-tiny.onnx"
    return darknet.convert(models_dir / "yolov3-tiny.cfg", models_dir / "yolov3-tiny.weights",
                           out, models_dir / "coco.names")


@pytest.fixture(scope="module")
def cv2_net(models_dir: Path, tiny_onnx: Path, tmp_path_factory):
    """cv2.dnn on the same cfg, with the yolo masks the converter used (see
    darknet.known_mask_fix: the shipped cfg's masks do not fit the official weights)."""
    masks = json.loads(darknet.read_metadata(tiny_onnx)["masks"])
    text = darknet.cfg_text_with_masks(models_dir / "yolov3-tiny.cfg", masks)
    cfg = tmp_path_factory.mktemp("cv2") / "yolov3-tiny.cfg"
    cfg.write_text(text)
    return cv2.dnn.readNetFromDarknet(str(cfg), str(models_dir / "yolov3-tiny.weights"))


def test_official_tiny_weights_get_their_trained_masks(tiny_onnx, models_dir):
    meta = darknet.read_metadata(tiny_onnx)
    if meta["weights_sha256"] != darknet.TINY_WEIGHTS_SHA256:
        pytest.skip("models/yolov3-tiny.weights is not the official file")
    assert json.loads(meta["masks"]) == [[3, 4, 5], [1, 2, 3]]
    assert json.loads(meta["anchors"])[1] == [[23, 27], [37, 58], [81, 82]]
    assert json.loads(meta["mask_fix"]) == [[3, 4, 5], [1, 2, 3]]


@pytest.fixture(scope="module")
def frames() -> dict[int, np.ndarray]:
    return _frames([0, 150, 400, 700])


def test_raw_outputs_match_cv2(tiny_onnx, cv2_net, frames):
    det = YoloDetector(model=tiny_onnx, letterbox=False, providers="cpu")
    heads = json.loads(darknet.read_metadata(tiny_onnx)["outputs"])
    names = list(cv2_net.getLayerNames())
    feeding = [names[names.index(f"permute_{h.split('_')[1]}") - 1] for h in heads]
    assert feeding == ["conv_15", "conv_22"]
    worst = 0.0
    for img in frames.values():
        blob = cv2.dnn.blobFromImage(img, 1 / 255.0, (416, 416), swapRB=True, crop=False)
        cv2_net.setInput(blob)
        ref = cv2_net.forward(feeding)
        got = det.raw(blob)
        for g, r in zip(got, ref):
            assert g.shape == r.shape
            worst = max(worst, float(np.abs(g - r).max()))
    print(f"max |ORT - cv2| raw head output: {worst:.2e}")
    assert worst <= 1e-3


def _cv2_detections(net, img, conf, iou, size=416):
    """The usual cv2.dnn YOLO recipe: best class per row, threshold, batched NMS."""
    h, w = img.shape[:2]
    net.setInput(cv2.dnn.blobFromImage(img, 1 / 255.0, (size, size), swapRB=True, crop=False))
    rows = np.concatenate(net.forward(net.getUnconnectedOutLayersNames()))
    cls = rows[:, 5:].argmax(1)
    score = rows[np.arange(len(rows)), 5 + cls]
    keep = score > conf
    rows, cls, score = rows[keep], cls[keep], score[keep]
    xywh = np.stack([(rows[:, 0] - rows[:, 2] / 2) * w, (rows[:, 1] - rows[:, 3] / 2) * h,
                     rows[:, 2] * w, rows[:, 3] * h], 1)
    idx = np.asarray(cv2.dnn.NMSBoxesBatched(xywh.tolist(), score.tolist(), cls.tolist(),
                                             conf, iou), dtype=int).reshape(-1)
    xyxy = xywh[idx].copy()
    xyxy[:, 2:] += xyxy[:, :2]
    xyxy[:, 0::2] = xyxy[:, 0::2].clip(0, w)
    xyxy[:, 1::2] = xyxy[:, 1::2].clip(0, h)
    return xyxy, score[idx], cls[idx]


def test_final_detections_match_cv2(tiny_onnx, cv2_net, frames):
    conf, iou = 0.25, 0.45
    det = YoloDetector(model=tiny_onnx, letterbox=False, conf_threshold=conf, nms_iou=iou,
                       providers="cpu")
    total, worst_px, worst_score = 0, 0.0, 0.0
    for i, img in frames.items():
        got = det.detect(Frame(img, seq=i, ts=float(i)))
        assert got.frame_seq == i and got.ts == float(i)
        ref_xyxy, ref_score, ref_cls = _cv2_detections(cv2_net, img, conf, iou)
        # boxes whose score sits on the threshold may flip either way: ignore those
        solid_ref = ref_score > conf + 0.02
        solid_got = got.score > conf + 0.02
        m = iou_matrix(got.xyxy, ref_xyxy) * (got.class_id[:, None] == ref_cls[None, :])
        assert np.all(m[:, solid_ref].max(0, initial=0) > 0.9), f"frame {i}: cv2 box unmatched"
        assert np.all(m[solid_got].max(1, initial=0) > 0.9), f"frame {i}: extra ORT box"
        r, c = linear_sum_assignment(-m)
        ok = m[r, c] > 0.9
        worst_px = max(worst_px, float(np.abs(got.xyxy[r[ok]] - ref_xyxy[c[ok]]).max(initial=0)))
        worst_score = max(worst_score,
                          float(np.abs(got.score[r[ok]] - ref_score[c[ok]]).max(initial=0)))
        assert list(got.label) == [det.class_names[k] for k in got.class_id]
        total += int(solid_ref.sum())
    print(f"final detections vs cv2.dnn: {total} boxes, max corner diff {worst_px:.3f} px, "
          f"max score diff {worst_score:.1e}")
    assert worst_px <= 2.0 and worst_score <= 1e-3
    assert total >= 8  # the clip is full of people: the comparison must not be vacuous


def _reference_people(frame_indices: list[int]) -> dict[int, np.ndarray]:
    d = np.loadtxt(data_file(DET_TXT), delimiter=",", ndmin=2)
    d = d[d[:, 6] >= 0.5]
    out = {}
    for i in frame_indices:
        rows = d[d[:, 0] == i + 1]          # det.txt frame N is video frame index N-1
        out[i] = np.concatenate([rows[:, 2:4], rows[:, 2:4] + rows[:, 4:6]], 1)
    return out


def test_person_recall_against_mot15_detections(tiny_onnx):
    idx = list(range(0, 795, 40))           # 20 frames over the whole clip
    imgs = _frames(idx)
    ref = _reference_people(idx)
    det = YoloDetector(model=tiny_onnx, classes=["person"], providers="cpu")
    hits = n_ref = n_got = 0
    for i in idx:
        got = det.detect(imgs[i])
        assert set(got.label) <= {"person"}
        m = iou_matrix(ref[i], got.xyxy)
        if m.size:
            r, c = linear_sum_assignment(-m)
            hits += int((m[r, c] >= 0.3).sum())
        n_ref += len(ref[i])
        n_got += len(got)
    recall = hits / n_ref
    per_frame = n_got / len(idx)
    print(f"YOLOv3-tiny person recall vs MOT15 det (conf>=0.5, IoU>=0.3): {recall:.3f} "
          f"({hits}/{n_ref}); {per_frame:.1f} people per frame")
    assert n_ref >= 60
    assert recall >= 0.5
    assert 2.0 <= per_frame <= 10.0


def test_registry_default_and_odd_inputs(models_dir, tiny_onnx):
    det = build("yolo", {"model": str(tiny_onnx), "providers": "cpu", "intra_op_threads": 1})
    assert det.provider == "CPUExecutionProvider"
    assert len(det.class_names) == 80 and det.class_names[0] == "person"
    odd = [np.zeros((0, 0, 3), np.uint8), np.zeros((1, 1, 3), np.uint8),
           np.full((3, 500), 200, np.uint8),                      # grayscale, extreme aspect
           np.zeros((2000, 3000, 3), np.uint8)[::3, ::2],          # huge, non-contiguous
           np.random.default_rng(0).random((40, 40, 3)) * 255,      # float
           np.zeros((32, 32, 4), np.uint8), None]
    for img in odd:
        out = det.detect(img)
        assert len(out) == 0 or np.all(np.isfinite(out.xyxy))


def test_missing_and_truncated_weights_errors(models_dir, tmp_path):
    cfg = models_dir / "yolov3-tiny.cfg"
    with pytest.raises(DetectorError, match="python main.py assets") as e:
        YoloDetector(model=tmp_path / "yolov3-tiny.onnx")
    assert str(tmp_path / "yolov3-tiny.onnx") in str(e.value)

    weights = tmp_path / "yolov3-tiny.weights"
    with open(models_dir / "yolov3-tiny.weights", "rb") as f:
        weights.write_bytes(f.read(1_000_000))
    with pytest.raises(DetectorError, match="truncated") as e:
        YoloDetector(model=weights, cfg=cfg)
    assert str(weights) in str(e.value) and "python main.py assets" in str(e.value)

    with pytest.raises(DetectorError, match="yolov3.cfg and yolov3.weights"):
        YoloDetector(model=tmp_path / "yolov3.weights", cfg=tmp_path / "yolov3.cfg")
    with pytest.raises(DetectorError, match="cfg"):
        YoloDetector(model=weights)


def test_weights_path_is_converted_once_beside_it(models_dir, tmp_path):
    for name in ("yolov3-tiny.cfg", "yolov3-tiny.weights", "coco.names"):
        (tmp_path / name).symlink_to(models_dir / name)
    det = YoloDetector(model=tmp_path / "yolov3-tiny.weights", cfg=tmp_path / "yolov3-tiny.cfg",
                       names=tmp_path / "coco.names", providers="cpu")
    assert det.model_path == tmp_path / "yolov3-tiny.onnx"
    stamp = det.model_path.stat().st_mtime_ns
    again = YoloDetector(model=tmp_path / "yolov3-tiny.weights", cfg=tmp_path / "yolov3-tiny.cfg",
                         names=tmp_path / "coco.names", providers="cpu")
    assert again.model_path.stat().st_mtime_ns == stamp
    with pytest.raises(DetectorError, match="unknown classes"):
        YoloDetector(model=det.model_path, classes=["unicorn"])
