"""EAST decoding: the pure numpy decoder on hand-made maps, and the whole EAST path through
cv2.dnn on a generated ONNX graph that has EAST's output names and layout.

No EAST weights are obtainable here, so the ONNX model is built in the test: its two outputs
("feature_fusion/Conv_7/Sigmoid" 1x1xH/4xW/4 and "feature_fusion/concat_3" 1x5xH/4xW/4) are
a zero-weight stride-4 convolution of the input plus constant maps that encode known boxes,
so cv2.dnn runs a real graph and the decoded boxes are known exactly.

The encoder below inverts EAST's geometry independently of the decoder: for a box with
centre c, size (w, h) and EAST angle A, a cell at p has distances top/right/bottom/left
g0..g3 with (u, v) = R(A)(c - p), g1 = w/2 + u, g3 = w/2 - u, g2 = h/2 + v, g0 = h/2 - v.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from core.types import ROTATED_BOX, TEXT_CONFIDENCE
from detectors.base import DetectorError
from detectors.ocr import rbox_to_quad
from detectors.text import EAST_OUTPUTS, TextDetector, decode_east, east_nms

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402


def encode_east(boxes: list[tuple[float, float, float, float, float]], hm: int, wm: int,
                score_value: float = 0.9) -> tuple[np.ndarray, np.ndarray]:
    """Score (hm,wm) and geometry (5,hm,wm) maps for boxes (cx, cy, w, h, A_radians)."""
    score = np.zeros((hm, wm), np.float32)
    geo = np.zeros((5, hm, wm), np.float32)
    ys, xs = np.mgrid[0:hm, 0:wm]
    px, py = xs * 4.0, ys * 4.0
    for cx, cy, w, h, a in boxes:
        c, s = np.cos(a), np.sin(a)
        dx, dy = cx - px, cy - py
        u = c * dx - s * dy
        v = s * dx + c * dy
        g = (h / 2 - v, w / 2 + u, h / 2 + v, w / 2 - u)
        inside = np.minimum.reduce(g) > 0.5
        score[inside] = score_value
        for k in range(4):
            geo[k][inside] = g[k][inside]
        geo[4][inside] = a
    return score, geo


GT = [(20.0, 20.0, 24.0, 8.0, 0.0), (40.0, 44.0, 30.0, 10.0, 0.35)]  # second one rotated ~20 deg


def expected_rboxes(scale: float = 1.0) -> np.ndarray:
    """GT in OpenCV RotatedRect convention: angle_deg = -A in degrees."""
    return np.array([[cx * scale, cy * scale, w * scale, h * scale, -np.degrees(a)]
                     for cx, cy, w, h, a in GT], np.float32)


# --------------------------------------------------------------------------------------
# pure numpy decoder
# --------------------------------------------------------------------------------------
def test_decode_every_cell_recovers_its_box():
    s, g = encode_east(GT, 16, 16)
    rb, conf = decode_east(s, g, 0.5)
    n_cells = int((s >= 0.5).sum())
    assert rb.shape == (n_cells, 5) and conf.shape == (n_cells,) and n_cells > 10
    exp = expected_rboxes()
    # every decoded cell equals one of the two boxes (each cell predicts its whole box)
    d = np.abs(rb[:, None, :] - exp[None, :, :]).max(axis=2)
    assert np.all(d.min(axis=1) < 1e-3)
    assert set(np.argmin(d, axis=1).tolist()) == {0, 1}
    np.testing.assert_allclose(conf, 0.9)


def test_decode_accepts_network_shapes_and_threshold():
    s, g = encode_east(GT, 16, 16, score_value=0.7)
    rb4, _ = decode_east(s[None, None], g[None], 0.5)
    rb2, _ = decode_east(s, g, 0.5)
    np.testing.assert_array_equal(rb4, rb2)
    none, c = decode_east(s, g, 0.75)  # all cells below threshold
    assert none.shape == (0, 5) and c.shape == (0,)


def test_decode_cell_position_and_distances_by_hand():
    # one cell at map (x=3, y=2) -> input point (12, 8); distances top 2, right 10, bottom 6,
    # left 4, angle 0: box x in [8, 22], y in [6, 14] -> centre (15, 10), size 14 x 8
    s = np.zeros((4, 5), np.float32)
    g = np.zeros((5, 4, 5), np.float32)
    s[2, 3] = 0.8
    g[:4, 2, 3] = [2, 10, 6, 4]
    rb, conf = decode_east(s, g, 0.5)
    np.testing.assert_allclose(rb, [[15, 10, 14, 8, 0]], atol=1e-5)
    np.testing.assert_allclose(conf, [0.8])


def test_decode_rejects_mismatched_maps():
    with pytest.raises(ValueError):
        decode_east(np.zeros((4, 4)), np.zeros((5, 4, 5)), 0.5)


def test_nms_keeps_one_box_per_text():
    s, g = encode_east(GT, 16, 16)
    rb, conf = decode_east(s, g, 0.5)
    conf = conf + np.linspace(0, 0.01, len(conf), dtype=np.float32)  # distinct scores
    keep = east_nms(rb, conf, 0.5, 0.4)
    assert len(keep) == 2
    got = rb[keep][np.argsort(rb[keep][:, 0])]
    np.testing.assert_allclose(got, expected_rboxes(), atol=1e-3)
    assert east_nms(np.zeros((0, 5)), np.zeros(0), 0.5, 0.4).shape == (0,)


def test_nms_keeps_separate_overlapping_below_iou():
    # two boxes side by side, overlapping by 1/7 of their width: IoU ~ 0.08 < 0.4
    rb = np.array([[20, 20, 14, 8, 0], [32, 20, 14, 8, 0], [20.5, 20, 14, 8, 0]], np.float32)
    keep = east_nms(rb, np.array([0.9, 0.8, 0.7], np.float32), 0.5, 0.4)
    assert sorted(keep.tolist()) == [0, 1]


# --------------------------------------------------------------------------------------
# through cv2.dnn with a generated ONNX model
# --------------------------------------------------------------------------------------
def build_east_onnx(score: np.ndarray, geo: np.ndarray, path: Path, h_in: int, w_in: int) -> None:
    hm, wm = score.shape
    assert (hm * 4, wm * 4) == (h_in, w_in)
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, h_in, w_in])
    o1 = helper.make_tensor_value_info(EAST_OUTPUTS[0], TensorProto.FLOAT, [1, 1, hm, wm])
    o2 = helper.make_tensor_value_info(EAST_OUTPUTS[1], TensorProto.FLOAT, [1, 5, hm, wm])
    p = np.clip(score, 1e-4, 1 - 1e-4)
    logits = np.log(p / (1 - p)).astype(np.float32)
    inits = [
        numpy_helper.from_array(np.zeros((1, 3, 4, 4), np.float32), "w1"),
        numpy_helper.from_array(np.zeros((4, 3, 4, 4), np.float32), "w4"),
        numpy_helper.from_array(logits[None, None], "logits"),
        numpy_helper.from_array(np.ascontiguousarray(geo[None, :4]), "dist"),
        numpy_helper.from_array(np.ascontiguousarray(geo[None, 4:5]), "angle"),
    ]
    nodes = [
        helper.make_node("Conv", ["input", "w1"], ["z1"], kernel_shape=[4, 4], strides=[4, 4]),
        helper.make_node("Conv", ["input", "w4"], ["z4"], kernel_shape=[4, 4], strides=[4, 4]),
        helper.make_node("Add", ["z1", "logits"], ["score_logits"]),
        helper.make_node("Sigmoid", ["score_logits"], [EAST_OUTPUTS[0]]),
        helper.make_node("Add", ["z4", "dist"], ["d4"]),
        helper.make_node("Add", ["z1", "angle"], ["a1"]),
        helper.make_node("Concat", ["d4", "a1"], [EAST_OUTPUTS[1]], axis=1),
    ]
    model = helper.make_model(helper.make_graph(nodes, "east_layout", [x], [o1, o2], inits),
                              opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


@pytest.fixture()
def east_model(tmp_path: Path) -> Path:
    s, g = encode_east(GT, 16, 16)
    path = tmp_path / "east_layout.onnx"
    build_east_onnx(s, g, path, 64, 64)
    return path


def test_generated_graph_has_east_layout(east_model: Path):
    net = cv2.dnn.readNet(str(east_model))
    blob = cv2.dnn.blobFromImage(np.zeros((64, 64, 3), np.uint8), 1.0, (64, 64))
    net.setInput(blob)
    scores, geometry = net.forward(list(EAST_OUTPUTS))
    assert scores.shape == (1, 1, 16, 16) and geometry.shape == (1, 5, 16, 16)


def test_east_detector_decodes_known_boxes(east_model: Path):
    det = TextDetector(box_detector="east", model=str(east_model), east_input=[64, 64],
                       recognize=False)
    # a 128x128 frame is fed at 64x64: every box comes back scaled by 2
    out = det.detect(np.zeros((128, 128, 3), np.uint8))
    assert len(out) == 2
    assert out.label is not None and list(out.label) == ["text", "text"]
    assert list(out.text) == [None, None]
    np.testing.assert_allclose(out.score, 0.9, atol=1e-3)
    exp = expected_rboxes(2.0)
    rot = out.data[ROTATED_BOX]
    assert rot.shape == (2, 5) and out.data[TEXT_CONFIDENCE].shape == (2,)
    order = np.argsort(rot[:, 0])
    np.testing.assert_allclose(rot[order], exp, atol=0.05)
    q = rbox_to_quad(exp)
    exp_xyxy = np.concatenate([q.min(axis=1), q.max(axis=1)], axis=1)
    np.testing.assert_allclose(out.xyxy[order], exp_xyxy, atol=0.05)
    # the rotated box really is rotated (EAST angle 0.35 rad)
    assert abs(rot[order][1, 4] + np.degrees(0.35)) < 0.01


def test_east_detector_anisotropic_scale_bounds(east_model: Path):
    det = TextDetector(box_detector="east", model=str(east_model), east_input=[64, 64],
                       recognize=False)
    out = det.detect(np.zeros((96, 192, 3), np.uint8))  # x scaled by 3, y by 1.5
    q = rbox_to_quad(expected_rboxes()) * np.array([3.0, 1.5], np.float32)
    exp_xyxy = np.concatenate([q.min(axis=1), q.max(axis=1)], axis=1)
    np.testing.assert_allclose(out.xyxy[np.argsort(out.xyxy[:, 0])], exp_xyxy, atol=0.05)


def test_east_detector_odd_frames_never_raise(east_model: Path):
    from core.types import Frame

    det = TextDetector(box_detector="east", model=str(east_model), east_input=[64, 64],
                       recognize=False)
    assert len(det.detect(np.zeros((0, 0, 3), np.uint8))) == 0
    assert len(det.detect(np.full((64, 64), np.nan))) == 2  # float NaN image -> black
    # tiny frames: the boxes shrink below one pixel and are dropped, without raising
    assert len(det.detect(np.zeros((1, 1, 3), np.uint8))) == 0
    # the constant graph finds its two boxes whatever the image; they must fit the frame
    for img in (np.zeros((50, 40), np.uint8), np.zeros((30, 20, 4), np.uint8),
                np.zeros((3000, 40, 3), np.uint8)[:, ::2]):
        out = det.detect(img)
        assert len(out) == 2
        h, w = img.shape[:2]
        assert np.all(out.xyxy >= 0) and np.all(out.xyxy[:, [0, 2]] <= w)
        assert np.all(out.xyxy[:, [1, 3]] <= h)
    out = det.detect(Frame(np.zeros((64, 64, 3), np.uint8), seq=7, ts=12.5))
    assert (out.frame_seq, out.ts) == (7, 12.5)


def test_east_without_model_names_key_and_source():
    with pytest.raises(DetectorError, match=r"text\.model.*frozen_east_text_detection"):
        TextDetector(box_detector="east", recognize=False)
    with pytest.raises(DetectorError, match=r"text\.model"):
        TextDetector(box_detector="east", model="/nonexistent/east.pb", recognize=False)


def test_east_input_must_be_multiple_of_32(east_model: Path):
    with pytest.raises(DetectorError, match=r"text\.east_input"):
        TextDetector(box_detector="east", model=str(east_model), east_input=[100, 64],
                     recognize=False)
