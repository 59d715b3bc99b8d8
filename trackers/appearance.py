"""64-bit difference hashes of detection crops, and Hamming distances between them.

`dhash_crop` computes exactly what `imagehash.dhash(PIL.Image.fromarray(rgb_crop))` computes
(grey conversion, 9x8 Lanczos resize, horizontal differences), without building PIL images:
it re-implements Pillow's fixed-point arithmetic (ITU-R 601 grey with 16-bit coefficients;
separable Lanczos-3 resampling, horizontal pass then vertical, 22-bit coefficients rounded
away from zero, each pass rounded and clipped to uint8). Both matrix products run in float64,
which is exact here (every partial sum is an integer below 2^53). A test checks bit-for-bit
agreement with imagehash on real crops (tests/unit/test_appearance.py).

Hashes are packed in uint64, first (top-left) difference bit most significant, i.e. the
integer `int(str(imagehash.dhash(img)), 16)`. Hamming distances between sets of hashes are one
XOR matrix and `np.bitwise_count` (popcount).
"""
from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np

__all__ = ["dhash_crop", "dhash_boxes", "hamming_matrix", "crop_slices"]

_PRECISION_BITS = 32 - 8 - 2          # Pillow's Resample.c for 8-bit images
_ONE = float(1 << _PRECISION_BITS)
_HALF = float(1 << (_PRECISION_BITS - 1))
# B, G, R weights of Pillow's L24 (sum 65536) and its rounding offset 0x8000
_RGB2L_CV = np.array([[7471.0, 38470.0, 19595.0, 32768.0]], dtype=np.float32)
_BIT_WEIGHTS = (np.uint64(1) << np.arange(63, -1, -1, dtype=np.uint64))


def _lanczos(x: np.ndarray) -> np.ndarray:
    """Pillow's lanczos_filter: sinc(x) * sinc(x/3) on [-3, 3)."""
    out = np.sinc(x) * np.sinc(x / 3.0)
    return np.where((x >= -3.0) & (x < 3.0), out, 0.0)


@lru_cache(maxsize=4096)
def _coeffs(in_size: int, out_size: int) -> np.ndarray:
    """(out_size, in_size) fixed-point Lanczos weights, as Pillow's precompute_coeffs +
    normalize_coeffs_8bpc build them (zero outside each output pixel's window)."""
    scale = in_size / out_size
    filterscale = max(scale, 1.0)
    support = 3.0 * filterscale
    centers = (np.arange(out_size) + 0.5) * scale
    xmin = np.maximum((centers - support + 0.5).astype(np.int64), 0)  # C (int) truncation
    xmax = np.minimum((centers + support + 0.5).astype(np.int64), in_size)
    xs = np.arange(in_size)
    inside = (xs[None, :] >= xmin[:, None]) & (xs[None, :] < xmax[:, None])
    w = _lanczos((xs[None, :] - centers[:, None] + 0.5) / filterscale)
    w = np.where(inside, w, 0.0)
    ww = w.sum(axis=1, keepdims=True)
    w = np.divide(w, ww, out=w.copy(), where=ww != 0.0)
    k = w * _ONE
    k = np.where(k < 0, np.trunc(k - 0.5), np.trunc(k + 0.5))
    k.setflags(write=False)
    return k


def _clip8(ss: np.ndarray) -> np.ndarray:
    """Pillow's clip8 on fixed-point sums (already offset by HALF): >> PRECISION_BITS, clip
    to 0..255. In place (bare ufuncs: np.clip's wrapper costs more than the work here)."""
    np.multiply(ss, 1.0 / _ONE, out=ss)  # exact: _ONE is a power of two
    np.floor(ss, out=ss)
    np.maximum(ss, 0.0, out=ss)
    return np.minimum(ss, 255.0, out=ss)


def _gray_pillow(crop_bgr: np.ndarray) -> np.ndarray:
    """Pillow's RGB -> L: (R*19595 + G*38470 + B*7471 + 0x8000) >> 16, as float64.

    cv2.transform in float32 is exact here: every product and partial sum is an integer
    below 2^24, and dividing by 2^16 is exact."""
    g = cv2.transform(crop_bgr.astype(np.float32), _RGB2L_CV)
    return np.floor(g * (1.0 / 65536.0), dtype=np.float64)


def _dhash_bits(gray: np.ndarray, hash_size: int = 8) -> np.ndarray:
    h, w = gray.shape
    kx = _coeffs(w, hash_size + 1)              # (9, w)
    ky = _coeffs(h, hash_size)                  # (8, h)
    if 2 * w - 9 <= h:
        # Pillow 13 runs the vertical pass first for tall inputs (the order changes the
        # rounding). Boundary measured against Pillow: every width 9..399 at heights
        # 2w-11..2w-7, and a 1-in-5 sample of all shapes up to 200x200 (tests pin it).
        t = ky @ gray
        t += _HALF
        t = _clip8(t) @ kx.T
    else:
        t = gray @ kx.T
        t += _HALF
        t = ky @ _clip8(t)
    t += _HALF
    small = _clip8(t)
    return small[:, 1:] > small[:, :-1]


def dhash_crop(crop_bgr: np.ndarray) -> int:
    """dHash of one (H, W, 3) uint8 BGR crop as a Python int (0 for an empty crop)."""
    if crop_bgr.size == 0:
        return 0
    bits = _dhash_bits(_gray_pillow(crop_bgr)).ravel()
    return int(np.bitwise_or.reduce(_BIT_WEIGHTS[bits]) if bits.any() else 0)


def crop_slices(xyxy: np.ndarray, width: int, height: int) -> np.ndarray:
    """(N, 4) int [x1, y1, x2, y2] pixel bounds covering each box, clipped to the image:
    floor of the top-left corner, ceil of the bottom-right."""
    b = np.asarray(xyxy, dtype=np.float64)
    out = np.empty((b.shape[0], 4), dtype=np.int64)
    out[:, 0] = np.clip(np.floor(b[:, 0]), 0, width)
    out[:, 1] = np.clip(np.floor(b[:, 1]), 0, height)
    out[:, 2] = np.clip(np.ceil(b[:, 2]), 0, width)
    out[:, 3] = np.clip(np.ceil(b[:, 3]), 0, height)
    return out


def dhash_boxes(image_bgr: np.ndarray, xyxy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """dHashes of the crops of `image_bgr` under each box.

    Returns (hashes uint64 (N,), valid bool (N,)); a box with no pixel inside the image has
    hash 0 and valid False.
    """
    n = len(xyxy)
    hashes = np.zeros(n, dtype=np.uint64)
    valid = np.zeros(n, dtype=bool)
    if n == 0:
        return hashes, valid
    hgt, wid = image_bgr.shape[:2]
    sl = crop_slices(xyxy, wid, hgt)
    ok = (sl[:, 2] > sl[:, 0]) & (sl[:, 3] > sl[:, 1])
    rows = np.flatnonzero(ok)
    if rows.size == 0:
        return hashes, valid
    bits = np.empty((rows.size, 8, 8), dtype=bool)
    for j, (x1, y1, x2, y2) in enumerate(sl[rows].tolist()):  # sizes differ: one crop at a time
        bits[j] = _dhash_bits(_gray_pillow(image_bgr[y1:y2, x1:x2]))
    hashes[rows] = np.packbits(bits.reshape(rows.size, 64), axis=1).view(">u8").ravel()
    valid[rows] = True
    return hashes, valid


def hamming_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(len(a), len(b)) number of differing bits between uint64 hashes (uint8)."""
    a = np.asarray(a, dtype=np.uint64)
    b = np.asarray(b, dtype=np.uint64)
    return np.bitwise_count(a[:, None] ^ b[None, :])
