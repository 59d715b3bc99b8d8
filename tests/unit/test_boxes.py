"""core.boxes on generated boxes: IoU and intersections against brute-force references
(empty and degenerate boxes included), areas, conversions, clipping and crop rectangles."""
from __future__ import annotations

import numpy as np
import pytest

from core.boxes import (area, centers, clip_xyxy, crop_rects, crops, cxcywh_to_xywh, cxcywh_to_xyxy,
                        intersection, iou_matrix, xywh_to_cxcywh, xywh_to_xyxy, xyxy_to_cxcywh,
                        xyxy_to_xywh)


def _inter_ref(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    return ix * iy


def _iou_ref(a, b) -> float:
    inter = _inter_ref(a, b)
    ua = max(0.0, a[2] - a[0]) * max(0.0, a[3] - a[1])
    ub = max(0.0, b[2] - b[0]) * max(0.0, b[3] - b[1])
    union = ua + ub - inter
    return inter / union if union > 0 else 0.0


def _boxes(rng, n, size=200.0, degenerate=0.0):
    xy = rng.uniform(-20, size, (n, 2))
    wh = rng.uniform(0.5, size / 3, (n, 2))
    b = np.concatenate([xy, xy + wh], axis=1)
    k = rng.random(n) < degenerate            # zero-width, zero-height or inverted rows
    kind = rng.integers(0, 3, n)
    b[k & (kind == 0), 2] = b[k & (kind == 0), 0]
    b[k & (kind == 1), 3] = b[k & (kind == 1), 1]
    inv = k & (kind == 2)
    b[inv] = b[inv][:, [2, 3, 0, 1]]
    return b


@pytest.mark.parametrize("seed", range(5))
def test_iou_and_intersection_match_bruteforce(seed):
    rng = np.random.default_rng(seed)
    a, b = _boxes(rng, 23, degenerate=0.3), _boxes(rng, 17, degenerate=0.3)
    got = iou_matrix(a, b)
    assert got.shape == (23, 17) and got.dtype == np.float32
    ref = np.array([[_iou_ref(x, y) for y in b] for x in a])
    np.testing.assert_allclose(got, ref, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(intersection(a, b), [[_inter_ref(x, y) for y in b] for x in a],
                               rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(iou_matrix(b, a), got.T)                 # symmetric
    assert ((got >= 0) & (got <= 1)).all()


def test_iou_special_cases():
    z = np.array([[5, 5, 5, 5], [0, 0, 10, 10], [10, 10, 0, 0], [20, 20, 30, 30]], float)
    m = iou_matrix(z, z)
    assert m[1, 1] == 1.0 and m[3, 3] == 1.0
    assert m[0].tolist() == [0.0] * 4 and m[2].tolist() == [0.0] * 4   # zero-area, inverted
    assert m[1, 3] == 0.0                                                # disjoint
    assert iou_matrix(np.array([0, 0, 10, 10]), np.array([5, 0, 15, 10]))[0, 0] == pytest.approx(1 / 3)
    assert iou_matrix(np.zeros((0, 4)), z).shape == (0, 4)
    assert iou_matrix(z, np.zeros((0, 4))).shape == (4, 0)
    assert iou_matrix(np.zeros((0, 4)), np.zeros((0, 4))).dtype == np.float32
    with np.errstate(invalid="ignore"):
        assert iou_matrix(np.array([[np.nan, 0, 1, 1]]), z).tolist() == [[0.0] * 4]
    # far from the origin (class-offset NMS) the float64 computation keeps its precision
    far = z[[1, 3]] + 1e7
    np.testing.assert_allclose(iou_matrix(far, far), np.eye(2), atol=1e-6)
    with pytest.raises(ValueError):
        iou_matrix(np.zeros((3, 3)), z)


def test_area_counts_degenerate_as_zero():
    b = np.array([[0, 0, 4, 5], [10, 10, 0, 0], [3, 3, 3, 9], [0, 0, 2, -1]], float)
    assert area(b).tolist() == [20.0, 0.0, 0.0, 0.0]
    assert area(np.array([1, 1, 3, 4])).tolist() == [6.0]
    assert area(np.zeros((0, 4))).shape == (0,)


def test_conversions_round_trip():
    rng = np.random.default_rng(3)
    b = _boxes(rng, 50)
    np.testing.assert_allclose(xywh_to_xyxy(xyxy_to_xywh(b)), b)
    np.testing.assert_allclose(cxcywh_to_xyxy(xyxy_to_cxcywh(b)), b)
    np.testing.assert_allclose(cxcywh_to_xywh(xywh_to_cxcywh(xyxy_to_xywh(b))), xyxy_to_xywh(b))
    np.testing.assert_allclose(xywh_to_cxcywh(xyxy_to_xywh(b)), xyxy_to_cxcywh(b))
    one = np.array([10.0, 20.0, 30.0, 60.0])
    assert xyxy_to_xywh(one).tolist() == [[10.0, 20.0, 20.0, 40.0]]
    assert xyxy_to_cxcywh(one).tolist() == [[20.0, 40.0, 20.0, 40.0]]
    assert centers(one).tolist() == [[20.0, 40.0]]
    # a wider row (the Kalman state: cx, cy, w, h, velocities) converts its first four columns
    state = np.array([[20.0, 40.0, 20.0, 40.0, 1.0, 2.0, 3.0, 4.0]])
    assert cxcywh_to_xyxy(state).tolist() == [[10.0, 20.0, 30.0, 60.0]]
    for f in (xyxy_to_xywh, xywh_to_xyxy, xyxy_to_cxcywh, cxcywh_to_xyxy, centers):
        assert f(np.zeros((0, 4))).shape[0] == 0


def test_clip_to_frame():
    b = np.array([[-5, -3, 50, 40], [10, 10, 200, 300], [300, 300, 400, 400]], np.float32)
    out = clip_xyxy(b, 100, 80)
    assert out.dtype == np.float32 and b[0, 0] == -5              # a copy by default
    assert out.tolist() == [[0, 0, 50, 40], [10, 10, 100, 80], [100, 80, 100, 80]]
    same = clip_xyxy(b, 100, 80, out=b)
    assert same is b and b.tolist() == out.tolist()
    assert clip_xyxy(np.array([[1, 2, 300, 4]]), 100, 80).dtype == np.float64   # ints -> float


def test_crop_rects_floor_ceil_and_borders():
    b = np.array([[10.2, 20.7, 30.1, 40.0],     # floor / ceil
                  [-15, -5, 12.5, 8],           # past the top-left corner
                  [90, 70, 130, 95],            # past the bottom-right corner
                  [200, 10, 220, 30],           # wholly outside: empty
                  [np.nan, 5, 10, 12]])         # NaN counts as 0
    r = crop_rects(b, 100, 80)
    assert r.dtype == np.int64
    assert r.tolist() == [[10, 20, 31, 40], [0, 0, 13, 8], [90, 70, 100, 80], [100, 10, 100, 30],
                          [0, 5, 10, 12]]
    assert crop_rects(b[:1], 100, 80, pad=5).tolist() == [[5, 15, 36, 45]]
    assert crop_rects(b[:2], 100, 80, pad=np.array([1, 100])).tolist() == [[9, 19, 32, 41],
                                                                            [0, 0, 100, 80]]
    assert crop_rects(np.zeros((0, 4)), 100, 80).shape == (0, 4)
    img = np.arange(80 * 100 * 3, dtype=np.uint8).reshape(80, 100, 3)
    views = crops(img, b)
    assert [v.shape[:2] for v in views] == [(20, 21), (8, 13), (10, 10), (20, 0), (7, 10)]
    assert np.shares_memory(views[0], img)
    assert np.array_equal(views[0], img[20:40, 10:31])
