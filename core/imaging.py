"""Image kernels shared by every layer: any input normalised to BGR uint8 or to grey, and the
one 64-bit difference hash (dHash) that the tracker and the defect watch both use.

dHash: the image's luma is area-averaged (cv2.resize, INTER_AREA, in float32) to 9 columns
x 8 rows and each of the 8 x 8 bits says "this cell is brighter than its left neighbour".
Bits are packed row-major into a uint64, the first (top-left) difference the most
significant. Comparing neighbours makes the hash blind to brightness offsets and gains, and
averaging down to 9x8 makes it blind to the crop's size; two hashes are compared by their
Hamming distance (popcount of the XOR; `hamming` does whole sets at once with
`np.bitwise_count`, `hamming_distance` two ints).

Grey conversion and area averaging are both linear, so they commute: a BGR image is
averaged per channel and its luma (BT.601, the weights of cv2.COLOR_BGR2GRAY) taken on the
9x8 result: one resize per crop and no grey copy of it (a cvtColor per crop, ~3 us, would
save ~1.5 us of resizing). Averaging in float32 keeps the cell means exact (no
rounding to grey levels, which would create ties), so a uint8 image and its float32 copy
hash alike, and a grey float32 image (what the defect watch hashes) hashes exactly as the
defect watch's own dHash did before it moved here.

It agrees with `imagehash.dhash` (Pillow's grey conversion and Lanczos resize) within a few
bits on real crops (median 7 of 64 on vtest people, against ~26 between two different
people; tests/unit/test_imaging.py), not bit for bit: the filters differ, and bit equality
with Pillow buys nothing for tracking or inspection.

Speed (`dhash_crops`, the tracker's call on every frame): one `crop_rects` for all boxes,
then per crop a view, a float32 copy and one cv2.resize into its slot of an (N, 8, 9, C)
stack; luma, comparisons and packing run once on the whole stack. Measured on vtest with the
PETS09 detections (~6 a frame, median 35x77 px): ~12 us a crop with the frame in cache and
~19 us with it not (the tracker bench's case: each crop row costs cache and TLB misses),
against ~21 / ~30 us for the bit-exact Pillow re-implementation this replaced.
"""
from __future__ import annotations

import cv2
import numpy as np

from core.boxes import crop_rects

__all__ = ["to_bgr_uint8", "to_gray", "dhash", "dhash_crops", "hamming", "hamming_distance",
           "HASH_BITS"]

HASH_BITS = 64
_HW, _HH = 9, 8     # averaged width (one more column than bits) and height
# BT.601 luma weights in B, G, R order (cv2.COLOR_BGR2GRAY)
_LUMA_BGR = np.array([0.114, 0.587, 0.299], np.float32)


def _as_uint8(img: np.ndarray) -> np.ndarray | None:
    if img.dtype == np.uint8:
        return img
    if img.dtype == np.bool_:
        return img.astype(np.uint8) * np.uint8(255)
    if not np.issubdtype(img.dtype, np.number) or np.issubdtype(img.dtype, np.complexfloating):
        return None
    return np.clip(np.nan_to_num(img), 0, 255).astype(np.uint8)


def _channels(img: np.ndarray) -> int:
    """1, 3 or 4 for grey / BGR / BGRA layouts, 0 for anything else."""
    if img.ndim == 2:
        return 1
    if img.ndim == 3 and img.shape[2] in (1, 3, 4):
        return img.shape[2]
    return 0


def _usable(image: object) -> tuple[np.ndarray, int] | None:
    """(the image as uint8, its channels 1/3/4), or None for a non-array, an empty image or an
    unusable shape or dtype: the common entry of to_bgr_uint8() and to_gray()."""
    if not isinstance(image, np.ndarray) or image.size == 0:
        return None
    ch = _channels(image)
    if ch == 0 or image.shape[0] == 0 or image.shape[1] == 0:
        return None
    img = _as_uint8(image)
    return None if img is None else (img, ch)


def to_bgr_uint8(image: np.ndarray) -> np.ndarray | None:
    """Any image as a contiguous (H, W, 3) uint8 BGR array, or None when it is unusable.

    Accepted: (H, W) or (H, W, 1) grey, (H, W, 3) BGR, (H, W, 4) BGRA (alpha dropped), of
    any real dtype (values clipped to 0..255, NaN as 0; bool as 0/255). An input that is
    already contiguous BGR uint8 is returned as is (no copy)."""
    got = _usable(image)
    if got is None:
        return None
    img, ch = got
    if ch == 3:
        return np.ascontiguousarray(img)
    if ch == 4:
        return cv2.cvtColor(np.ascontiguousarray(img), cv2.COLOR_BGRA2BGR)
    return cv2.cvtColor(np.ascontiguousarray(img.reshape(img.shape[:2])), cv2.COLOR_GRAY2BGR)


def to_gray(image: np.ndarray) -> np.ndarray | None:
    """Any image (as for `to_bgr_uint8`) as a contiguous (H, W) uint8 grey array (BT.601
    luma of BGR/BGRA), or None when it is unusable. Grey uint8 input is returned as is."""
    got = _usable(image)
    if got is None:
        return None
    img, ch = got
    if ch == 1:
        return np.ascontiguousarray(img if img.ndim == 2 else img.reshape(img.shape[:2]))
    code = cv2.COLOR_BGR2GRAY if ch == 3 else cv2.COLOR_BGRA2GRAY
    return cv2.cvtColor(img, code)


def _pack(luma: np.ndarray) -> np.ndarray:
    """(N, 8, 9) luma -> (N,) uint64 hashes (row-major bits, top-left most significant)."""
    n = luma.shape[0]
    bits = luma[:, :, 1:] > luma[:, :, :-1]
    return np.packbits(bits.reshape(n, HASH_BITS), axis=1).view(">u8").reshape(n).astype(np.uint64)


def _luma(small: np.ndarray) -> np.ndarray:
    """(N, 8, 9) grey or (N, 8, 9, C) BGR(A) averages -> (N, 8, 9) float32 luma."""
    return small if small.ndim == 3 else small[..., :3] @ _LUMA_BGR


def _work(image: np.ndarray) -> np.ndarray | None:
    """The image as averaged: (H, W) grey or (H, W, C) colour of a real dtype (a (H, W, 1)
    image as (H, W)); None when unusable."""
    if not isinstance(image, np.ndarray) or image.size == 0 or _channels(image) == 0 \
            or not np.issubdtype(image.dtype, np.number) \
            or np.issubdtype(image.dtype, np.complexfloating):
        return None
    return image.reshape(image.shape[:2]) if image.ndim == 3 and image.shape[2] == 1 else image


def dhash(image: np.ndarray) -> int:
    """dHash of one image, grey (H, W) or BGR / BGRA, uint8 or any real dtype, as a Python
    int (0 for an empty or unusable image). `dhash_crops` gives each crop this same hash."""
    img = _work(image)
    if img is None:
        return 0
    small = cv2.resize(img.astype(np.float32, copy=False), (_HW, _HH), interpolation=cv2.INTER_AREA)
    return int(_pack(_luma(small[None]))[0])


def dhash_crops(image: np.ndarray, xyxy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """dHashes of the crops of `image` (as for `dhash`) under each xyxy box, the crops
    being the pixel rectangles of `core.boxes.crop_rects` (floor/ceil, clipped to the image).

    Returns (hashes uint64 (N,), valid bool (N,)); a box with no pixel inside the image
    has hash 0 and valid False. Each crop's hash equals `dhash(crop)`."""
    n = len(xyxy)
    hashes = np.zeros(n, dtype=np.uint64)
    valid = np.zeros(n, dtype=bool)
    img = _work(image) if n else None
    if img is None:
        return hashes, valid
    hgt, wid = img.shape[:2]
    small = np.empty((n, _HH, _HW) + img.shape[2:], np.float32)
    resize, area, size, f32 = cv2.resize, cv2.INTER_AREA, (_HW, _HH), np.float32
    for j, (x1, y1, x2, y2) in enumerate(crop_rects(xyxy, wid, hgt).tolist()):
        if x2 > x1 and y2 > y1:   # sizes differ: one resize per crop, into its slot
            resize(img[y1:y2, x1:x2].astype(f32), size, dst=small[j], interpolation=area)
            valid[j] = True
    hashes[valid] = _pack(_luma(small if valid.all() else small[valid]))
    return hashes, valid


def hamming(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(len(a), len(b)) uint8 number of differing bits between uint64 hashes (one XOR matrix
    and a popcount)."""
    a = np.asarray(a, dtype=np.uint64).reshape(-1)
    b = np.asarray(b, dtype=np.uint64).reshape(-1)
    return np.bitwise_count(a[:, None] ^ b[None, :])


def hamming_distance(a: int, b: int) -> int:
    """Differing bits between two hashes given as Python ints (or numpy scalars)."""
    return (int(a) ^ int(b)).bit_count()
