"""NMS against brute-force references on random boxes (IoU and areas: core.boxes)."""
from __future__ import annotations

import numpy as np
import pytest

from detectors.nms import batched_nms, box_area, iou_matrix, nms


def _iou_ref(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    ua = max(0.0, a[2] - a[0]) * max(0.0, a[3] - a[1])
    ub = max(0.0, b[2] - b[0]) * max(0.0, b[3] - b[1])
    union = ua + ub - inter
    return inter / union if union > 0 else 0.0


def _nms_ref(boxes, scores, thr, score_thr=0.0, classes=None):
    """Textbook greedy NMS: pair loop on purpose, as the oracle."""
    order = sorted((i for i in range(len(scores)) if scores[i] >= score_thr),
                   key=lambda i: (-scores[i], i))
    keep = []
    for i in order:
        ok = True
        for k in keep:
            if classes is not None and classes[k] != classes[i]:
                continue
            if _iou_ref(boxes[k], boxes[i]) > thr:
                ok = False
                break
        if ok:
            keep.append(i)
    return keep


def _random_boxes(rng, n, size=200.0):
    xy = rng.uniform(0, size, (n, 2))
    wh = rng.uniform(1, size / 3, (n, 2))
    return np.concatenate([xy, xy + wh], axis=1)


def test_iou_matrix_matches_reference():
    rng = np.random.default_rng(0)
    a, b = _random_boxes(rng, 17), _random_boxes(rng, 9)
    got = iou_matrix(a, b)
    ref = np.array([[_iou_ref(x, y) for y in b] for x in a])
    assert got.shape == (17, 9) and got.dtype == np.float32   # core.boxes, re-exported
    np.testing.assert_allclose(got, ref, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(np.diag(iou_matrix(a, a)), 1.0)


def test_iou_matrix_degenerate_and_empty():
    z = np.array([[5, 5, 5, 5], [0, 0, 10, 10]], float)
    m = iou_matrix(z, z)
    assert m[0, 0] == 0.0 and m[0, 1] == 0.0 and m[1, 1] == 1.0
    assert iou_matrix(np.zeros((0, 4)), z).shape == (0, 2)
    assert box_area(np.array([[10, 10, 0, 0]])).tolist() == [0.0]


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("thr", [0.3, 0.5, 0.7])
def test_nms_matches_bruteforce(seed, thr):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 150))
    boxes = _random_boxes(rng, n)
    scores = rng.uniform(0, 1, n).round(2)  # rounding creates score ties
    got = nms(boxes, scores, thr, score_thr=0.2)
    assert got.tolist() == _nms_ref(boxes, scores, thr, score_thr=0.2)
    kept = boxes[got]
    off = iou_matrix(kept, kept)[~np.eye(len(got), dtype=bool)]
    assert np.all(off <= thr)


def test_nms_max_det_and_empty():
    rng = np.random.default_rng(3)
    boxes = _random_boxes(rng, 50)
    scores = rng.uniform(size=50)
    full = nms(boxes, scores, 0.5)
    assert nms(boxes, scores, 0.5, max_det=3).tolist() == full[:3].tolist()
    assert nms(np.zeros((0, 4)), np.zeros(0), 0.5).shape == (0,)
    assert nms(boxes, scores, 0.5, score_thr=2.0).size == 0
    with pytest.raises(ValueError):
        nms(boxes, scores[:-1], 0.5)


def test_nms_identical_boxes_keep_one():
    boxes = np.tile([[10, 10, 50, 50]], (5, 1)).astype(float)
    scores = np.array([0.1, 0.9, 0.5, 0.9, 0.3])
    assert nms(boxes, scores, 0.5).tolist() == [1]


@pytest.mark.parametrize("seed", range(6))
def test_batched_nms_matches_per_class_bruteforce(seed):
    rng = np.random.default_rng(100 + seed)
    n = int(rng.integers(1, 120))
    boxes = _random_boxes(rng, n)
    scores = rng.uniform(size=n)
    classes = rng.choice([0, 3, 79, 1000], size=n)
    got = batched_nms(boxes, scores, classes, 0.45)
    assert got.tolist() == _nms_ref(boxes, scores, 0.45, classes=classes)


def test_batched_nms_other_class_survives_full_overlap():
    boxes = np.array([[0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 10, 10]], float)
    got = batched_nms(boxes, [0.9, 0.8, 0.7], [1, 2, 1], 0.5)
    assert sorted(got.tolist()) == [0, 1]


@pytest.mark.parametrize("other,thr", [([5, 0, 15, 10], 1 / 3), ([0, 0, 10, 5], 0.5), ([0, 0, 10, 7], 0.7)])
def test_iou_exactly_at_the_threshold_is_not_suppressed(other, thr):
    """IoU > thr suppresses; equal does not, although IoU is float32 and thr a Python float."""
    boxes = np.array([[0, 0, 10, 10], other], float)
    assert nms(boxes, [0.9, 0.8], thr).tolist() == [0, 1]
    assert nms(boxes, [0.9, 0.8], thr - 1e-6).tolist() == [0]
