"""core.imaging: BGR / grey normalisation, the shared dHash (its invariances on generated and
real crops, agreement with imagehash within a few bits) and the popcount Hamming distance."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from core.boxes import crop_rects
from core.imaging import dhash, dhash_crops, hamming, hamming_distance, to_bgr_uint8, to_gray
from tests.conftest import data_file


# ----------------------------------------------------------------------------- normalisation

def test_to_bgr_uint8_layouts_and_dtypes():
    rng = np.random.default_rng(0)
    bgr = rng.integers(0, 256, (6, 7, 3), dtype=np.uint8)
    assert to_bgr_uint8(bgr) is bgr                                  # already right: no copy
    g = bgr[..., 1].copy()
    for grey in (g, g[..., None]):
        out = to_bgr_uint8(grey)
        assert out.shape == (6, 7, 3) and (out == g[..., None]).all()
    bgra = np.concatenate([bgr, np.full((6, 7, 1), 9, np.uint8)], axis=2)
    assert np.array_equal(to_bgr_uint8(bgra), bgr)
    f = np.array([[[-3.0, 12.6, 300.0]], [[np.nan, 255.0, 0.4]]])
    assert to_bgr_uint8(f).tolist() == [[[0, 12, 255]], [[0, 255, 0]]]
    assert to_bgr_uint8(np.array([[True, False]])).tolist() == [[[255] * 3, [0] * 3]]
    flipped = bgr[:, ::-1]
    out = to_bgr_uint8(flipped)
    assert out.flags.c_contiguous and np.array_equal(out, flipped)


@pytest.mark.parametrize("bad", [None, "img", np.zeros((0, 5, 3), np.uint8), np.zeros((4, 4, 2), np.uint8),
                                 np.zeros((4, 4, 5), np.uint8), np.zeros((2, 2, 2, 3), np.uint8),
                                 np.zeros((4,), np.uint8), np.zeros((3, 3), complex),
                                 np.array([["a", "b"]])])
def test_unusable_images_give_none(bad):
    assert to_bgr_uint8(bad) is None and to_gray(bad) is None


def test_to_gray_matches_opencv():
    rng = np.random.default_rng(1)
    bgr = rng.integers(0, 256, (9, 11, 3), dtype=np.uint8)
    assert np.array_equal(to_gray(bgr), cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY))
    bgra = cv2.cvtColor(bgr, cv2.COLOR_BGR2BGRA)
    assert np.array_equal(to_gray(bgra), cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY))
    g = to_gray(bgr)
    assert to_gray(g) is g and np.array_equal(to_gray(g[..., None]), g)
    assert to_gray(g.astype(np.float64) + 0.25).dtype == np.uint8


# ----------------------------------------------------------------------------- dHash

def _smooth(rng, h, w, ch=3):
    """A random image with structure at the hash's scale (a bilinear blow-up of a small one)."""
    base = rng.integers(0, 256, (5, 6, ch)).astype(np.uint8)
    img = cv2.resize(base, (w, h), interpolation=cv2.INTER_LINEAR)
    return img.reshape(h, w, ch) if ch > 1 else img.reshape(h, w)


def test_bit_order_first_difference_is_the_top_bit():
    cells = np.zeros((8, 9), np.float32)
    cells[0, 1] = 1.0                      # only the top-left pair increases
    assert dhash(cells) == 1 << 63
    cells[7, 8] = 2.0                      # ... and the bottom-right one
    assert dhash(cells) == (1 << 63) | 1
    ramp = np.tile(np.arange(9, dtype=np.float32), (8, 1))
    assert dhash(ramp) == (1 << 64) - 1 and dhash(ramp[:, ::-1]) == 0


def test_dhash_invariances_on_generated_images():
    rng = np.random.default_rng(2)
    for _ in range(20):
        h, w = (int(v) for v in rng.integers(20, 200, 2))
        img = _smooth(rng, h, w)
        a = dhash(img)
        assert dhash(img.copy()) == a                                    # same crop: 0 bits
        assert dhash(img.astype(np.float32)) == a                        # dtype does not matter
        f = img.astype(np.float32)
        assert hamming_distance(dhash(f * 0.6 + 30.0), a) == 0           # exact gain/offset
        bright = np.clip(img.astype(np.int16) + 25, 0, 255).astype(np.uint8)
        assert hamming_distance(dhash(bright), a) <= 6                   # with clipping
        bigger = cv2.resize(img, (2 * w, 2 * h), interpolation=cv2.INTER_LINEAR)
        assert hamming_distance(dhash(bigger), a) <= 6                   # scale
        assert hamming_distance(dhash(cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)), a) <= 4
    # different content: about half the bits differ
    d = [hamming_distance(dhash(_smooth(rng, 60, 40)), dhash(_smooth(rng, 60, 40)))
         for _ in range(40)]
    assert np.mean(d) >= 20


def test_dhash_odd_inputs():
    assert dhash(np.zeros((0, 4, 3), np.uint8)) == 0
    assert dhash(np.zeros((4, 4, 2), np.uint8)) == 0
    assert dhash("nope") == 0  # type: ignore[arg-type]
    tiny = np.array([[0, 50], [100, 200]], np.uint8)                   # smaller than 9x8: fine
    assert isinstance(dhash(tiny), int)
    bgra = cv2.cvtColor(_smooth(np.random.default_rng(3), 40, 30), cv2.COLOR_BGR2BGRA)
    assert dhash(bgra) == dhash(bgra[..., :3])                          # alpha ignored


def test_dhash_crops_equal_dhash_of_each_crop():
    rng = np.random.default_rng(4)
    img = _smooth(rng, 120, 160)
    xy = rng.uniform(-30, 170, (40, 2))
    b = np.concatenate([xy, xy + rng.uniform(1, 80, (40, 2))], axis=1)
    b[0] = [200, 200, 220, 240]                                          # outside: invalid
    b[1] = [5.5, 5.5, 5.7, 5.9]                                          # sub-pixel: one pixel
    hashes, valid = dhash_crops(img, b)
    assert hashes.dtype == np.uint64 and valid.dtype == bool
    assert not valid[0] and hashes[0] == 0 and valid[1]
    r = crop_rects(b, 160, 120)
    for i in np.flatnonzero(valid):
        x1, y1, x2, y2 = r[i]
        assert int(hashes[i]) == dhash(img[y1:y2, x1:x2])
    g = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
    hg, vg = dhash_crops(g, b)                                          # grey frames too
    assert np.array_equal(vg, valid) and np.mean(np.bitwise_count(hg[valid] ^ hashes[valid])) < 2
    e_h, e_v = dhash_crops(img, np.zeros((0, 4)))
    assert e_h.shape == (0,) and e_v.shape == (0,)
    n_h, n_v = dhash_crops(np.zeros((0, 0, 3), np.uint8), b[:3])
    assert not n_v.any() and not n_h.any()


def _vtest_crops(frames: int = 120, every: int = 6):
    video = data_file("video/opencv/vtest.avi")
    det = np.loadtxt(data_file("mot/MOT15/PETS09-S2L1/det/det.txt"), delimiter=",")
    cap = cv2.VideoCapture(str(video))
    out = []
    try:
        for fi in range(frames):
            ok, img = cap.read()
            assert ok
            if fi % every:
                continue
            d = det[det[:, 0] == fi + 1]
            xyxy = d[:, 2:6].copy()
            xyxy[:, 2:] += xyxy[:, :2]
            out.append((img, xyxy))
    finally:
        cap.release()
    return out


def test_agrees_with_imagehash_within_a_few_bits_on_real_crops():
    """Pillow's grey conversion + Lanczos resize (imagehash.dhash) against the area average:
    the two hashes of a crop are much closer than the hashes of two different people."""
    import imagehash  # a dev requirement: the cross-check must run, not skip
    from PIL import Image

    agree, other = [], []
    for img, xyxy in _vtest_crops():
        hashes, valid = dhash_crops(img, xyxy)
        r = crop_rects(xyxy, img.shape[1], img.shape[0])
        for i in np.flatnonzero(valid):
            x1, y1, x2, y2 = r[i]
            rgb = np.ascontiguousarray(img[y1:y2, x1:x2, ::-1])
            ref = int(str(imagehash.dhash(Image.fromarray(rgb))), 16)
            agree.append(hamming_distance(int(hashes[i]), ref))
        h = hashes[valid]
        m = hamming(h, h)
        other += m[np.triu_indices(len(h), 1)].tolist()
    agree, other = np.array(agree), np.array(other)
    assert agree.size >= 80
    assert np.median(agree) <= 9 and agree.mean() <= 10 and agree.max() <= 18
    assert np.median(other) >= 2.5 * np.median(agree)


def test_real_crops_brightness_and_identity():
    for img, xyxy in _vtest_crops(60, 10):
        hashes, valid = dhash_crops(img, xyxy)
        again, _ = dhash_crops(img.copy(), xyxy)
        assert np.array_equal(hashes, again)
        darker = cv2.convertScaleAbs(img, alpha=0.7, beta=10)
        hd, _ = dhash_crops(darker, xyxy)
        assert np.bitwise_count(hd[valid] ^ hashes[valid]).mean() <= 3


# ----------------------------------------------------------------------------- Hamming

def test_hamming_matches_python_popcount():
    rng = np.random.default_rng(5)
    a = np.concatenate([rng.integers(0, 2**63, 9, dtype=np.uint64) * np.uint64(2) + np.uint64(1),
                        np.array([0, 2**64 - 1], np.uint64)])
    b = np.concatenate([rng.integers(0, 2**63, 6, dtype=np.uint64), np.array([2**64 - 1], np.uint64)])
    m = hamming(a, b)
    ref = np.array([[bin(int(x) ^ int(y)).count("1") for y in b] for x in a])
    assert m.shape == (11, 7) and np.array_equal(m, ref)
    assert hamming(a, a).diagonal().sum() == 0
    assert hamming([], b).shape == (0, 7)
    assert hamming_distance(0, 2**64 - 1) == 64
    assert hamming_distance(np.uint64(5), 6) == bin(5 ^ 6).count("1")
    assert all(hamming_distance(int(x), int(y)) == ref[i, j]
               for i, x in enumerate(a) for j, y in enumerate(b))
