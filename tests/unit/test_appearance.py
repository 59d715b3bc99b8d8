"""dHash: bit-for-bit agreement with imagehash.dhash, and the popcount Hamming matrix."""
from __future__ import annotations

import imagehash
import numpy as np
import pytest
from PIL import Image

from tests.conftest import data_file
from trackers.appearance import crop_slices, dhash_boxes, dhash_crop, hamming_matrix


def _ref(crop_bgr: np.ndarray) -> int:
    return int(str(imagehash.dhash(Image.fromarray(np.ascontiguousarray(crop_bgr[..., ::-1])))), 16)


def test_agrees_with_imagehash_on_synthetic_shapes():
    rng = np.random.default_rng(0)
    shapes = [(1, 1), (3, 5), (8, 9), (9, 8), (16, 12), (12, 16), (40, 24), (24, 40),
              (100, 54), (100, 55), (150, 79), (150, 80), (31, 200), (300, 9), (57, 33)]
    for h, w in shapes:
        # smooth images so that neighbouring resized pixels are close: rounding matters
        base = rng.integers(0, 256, (max(h // 4, 1) + 1, max(w // 4, 1) + 1, 3)).astype(np.uint8)
        img = np.asarray(Image.fromarray(base).resize((w, h), Image.BILINEAR))
        assert dhash_crop(img) == _ref(img), (h, w)


def test_agrees_with_imagehash_on_real_crops():
    cv2 = pytest.importorskip("cv2")
    video = data_file("video/opencv/vtest.avi")
    det = np.loadtxt(data_file("mot/MOT15/PETS09-S2L1/det/det.txt"), delimiter=",")
    cap = cv2.VideoCapture(str(video))
    checked = 0
    for fi in range(120):
        ok, img = cap.read()
        assert ok
        if fi % 6:
            continue
        d = det[det[:, 0] == fi + 1]
        xyxy = d[:, 2:6].copy()
        xyxy[:, 2:] += xyxy[:, :2]
        hashes, valid = dhash_boxes(img, xyxy)
        sl = crop_slices(xyxy, img.shape[1], img.shape[0])
        for i in np.flatnonzero(valid):
            x1, y1, x2, y2 = sl[i]
            assert int(hashes[i]) == _ref(img[y1:y2, x1:x2])
            checked += 1
    cap.release()
    assert checked >= 80


def test_boxes_outside_image_are_invalid():
    img = np.zeros((50, 60, 3), np.uint8)
    h, v = dhash_boxes(img, np.array([[100, 100, 120, 130], [10, 10, 30, 40]], float))
    assert v.tolist() == [False, True] and h[0] == 0


def test_hamming_matrix_matches_python_popcount():
    rng = np.random.default_rng(1)
    a = rng.integers(0, 2**63, 7, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
    b = rng.integers(0, 2**63, 5, dtype=np.uint64)
    m = hamming_matrix(a, b)
    ref = np.array([[bin(int(x) ^ int(y)).count("1") for y in b] for x in a])
    assert m.shape == (7, 5) and np.array_equal(m, ref)
    assert hamming_matrix(a, a).diagonal().sum() == 0


def test_agrees_with_imagehash_at_the_pass_order_boundary():
    """Pillow switches to vertical-first resampling at h >= 2w - 9: random crops on both
    sides of that boundary hash exactly as imagehash does."""
    import imagehash
    from PIL import Image

    from trackers.appearance import dhash_crop
    rng = np.random.default_rng(7)
    for w in range(10, 120, 7):
        for h in (2 * w - 10, 2 * w - 9, 2 * w - 8):
            crop = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
            ref = int(str(imagehash.dhash(Image.fromarray(crop[:, :, ::-1].copy()))), 16)
            assert dhash_crop(crop) == ref, (w, h)
