"""Image kernels shared by every layer: any input normalised to BGR uint8 or to grey, and the
one 64-bit difference hash (dHash) that the tracker and the defect watch both use.

dHash: the image's luma is area-averaged (INTER_AREA's weights, in float32) to 9 columns
x 8 rows and each of the 8 x 8 bits says "this cell is brighter than its left neighbour".
Bits are packed row-major into a uint64, the first (top-left) difference the most
significant. Comparing neighbours makes the hash blind to brightness offsets and gains, and
averaging down to 9x8 makes it blind to the crop's size; two hashes are compared by their
Hamming distance (popcount of the XOR; `hamming` does whole sets at once with
`np.bitwise_count`, `hamming_distance` two ints).

Grey conversion and area averaging are both linear, so they commute and fold into one
separable linear map: cells = Wy @ crop (rows: (8, H) area weights) @ Wxl (columns and
BT.601 luma, the weights of cv2.COLOR_BGR2GRAY: (W * C, 9)), two float32 matmuls per
crop on the uint8 pixels as they are, with the weights cached per crop height / width.
That is cv2.resize(INTER_AREA) of the float32 crop followed by the luma, up to float
rounding (1,750 of the 1,751 crops of the first 300 vtest frames hash the same, the other
is 1 bit off), without its per-call area tables, float32 copy and BGR result; crops under
9x8 pixels (upscaled) still go through cv2.resize. Averaging in float keeps the cell means exact (no rounding to grey
levels, which would create ties), so a uint8 image and its float32 copy hash alike.

It agrees with `imagehash.dhash` (Pillow's grey conversion and Lanczos resize) within a few
bits on real crops (median 7 of 64 on vtest people, against ~26 between two different
people; tests/unit/test_imaging.py), not bit for bit: the filters differ, and bit equality
with Pillow buys nothing for tracking or inspection.

Speed (`dhash_crops`, the tracker's call on every frame): one `crop_rects` for all boxes,
then per crop a view and two matmuls into its slot of an (N, 8, 9) luma stack; comparisons
and packing run once on the whole stack. On vtest with the PETS09 detections (~6 a frame,
median 35x77 px), frames not in cache (the tracker bench's case), interleaved A/B on the
shared 2-core machine: ~9% less CPU a crop than the cv2.resize kernel it replaced (16.3 vs
20.0 us median, 13.2 vs 14.5 us best), itself ~30% under the bit-exact Pillow
re-implementation before it. Reading every second row of tall crops was measured too:
~6% more, and it moved PETS09's distinct ids 43 -> 44-45 at some thresholds; not kept.
"""
from __future__ import annotations

import cv2
import numpy as np

from core.boxes import crop_rects

__all__ = [
    "HASH_BITS",
    "dhash",
    "dhash_crops",
    "hamming",
    "hamming_distance",
    "to_bgr_uint8",
    "to_gray",
]

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
    img = image.reshape(image.shape[:2]) if image.ndim == 3 and image.shape[2] == 1 else image
    # uint8 and float32 go into the float32 matmuls as they are (uint8 promoted on the fly)
    return img if img.dtype in (np.uint8, np.float32) else img.astype(np.float32)


_ROW_W: dict[int, np.ndarray] = {}               # height -> (8, h) float32 row weights
_COL_W: dict[tuple[int, int], np.ndarray] = {}   # (width, channels) -> (w * C, 9) weights
_CACHE_MAX = 512   # sizes remembered per table (crop sizes repeat; a flood just resets it)
# luma weights per channel count: grey as is, BGR BT.601, BGRA with the alpha ignored
_LUMA_OF = {1: np.ones(1), 3: _LUMA_BGR.astype(np.float64), 4: np.append(_LUMA_BGR, 0.0)}


def _area_weights(length: int, cells: int) -> np.ndarray:
    """(cells, length) float64 weights of cv2.INTER_AREA downscaling `length` pixels to
    `cells` (length >= cells): cell k averages the span [k, k + 1) * length / cells, a
    pixel cut by a cell border counting in both in proportion; each row sums to 1."""
    step = length / cells
    edges = np.arange(cells + 1) * step
    i = np.arange(length)
    w = np.minimum(i[None] + 1, edges[1:, None]) - np.maximum(i[None], edges[:-1, None])
    return np.clip(w, 0, None) / step


def _row_weights(h: int) -> np.ndarray:
    w = _ROW_W.get(h)
    if w is None:
        if len(_ROW_W) >= _CACHE_MAX:
            _ROW_W.clear()
        w = _ROW_W[h] = _area_weights(h, _HH).astype(np.float32)
    return w


def _col_weights(wid: int, ch: int) -> np.ndarray:
    """(wid * ch, 9): the column average and the luma in one matrix (pixel x, channel c
    weighs column weight x luma weight), so a row-averaged crop is one matmul from luma."""
    key = (wid, ch)
    w = _COL_W.get(key)
    if w is None:
        if len(_COL_W) >= _CACHE_MAX:
            _COL_W.clear()
        w = _COL_W[key] = np.kron(_area_weights(wid, _HW).T, _LUMA_OF[ch][:, None]).astype(np.float32)
    return w


def _cells(img: np.ndarray, out: np.ndarray) -> None:
    """(8, 9) float32 luma cell means of one image (from `_work`) into `out`.

    Downscaling (at least 8 rows and 9 columns, every real crop) is INTER_AREA written as
    two float32 matmuls, rows then columns with the luma folded in: the same means as
    cv2.resize up to float rounding (see the module docstring) at less cost (no per-call area tables, no float32 copy of the crop, no BGR
    result). A smaller image goes through cv2.resize, whose upscaling copies a pixel into
    neighbouring cells exactly (a tie, 0) where float rounding in a matmul would not."""
    hgt, wid = img.shape[:2]
    ch = img.shape[2] if img.ndim == 3 else 1
    if hgt >= _HH and wid >= _HW:
        np.matmul(_row_weights(hgt) @ img.reshape(hgt, wid * ch), _col_weights(wid, ch), out=out)
        return
    small = cv2.resize(img.astype(np.float32, copy=False), (_HW, _HH), interpolation=cv2.INTER_AREA)
    out[...] = _luma(small[None])[0]


def dhash(image: np.ndarray) -> int:
    """dHash of one image, grey (H, W) or BGR / BGRA, uint8 or any real dtype, as a Python
    int (0 for an empty or unusable image). `dhash_crops` gives each crop this same hash."""
    img = _work(image)
    if img is None:
        return 0
    cells = np.empty((1, _HH, _HW), np.float32)
    _cells(img, cells[0])
    return int(_pack(cells)[0])


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
    ch = img.shape[2] if img.ndim == 3 else 1
    cells = np.empty((n, _HH, _HW), np.float32)
    mm, rows_get, cols_get = np.matmul, _ROW_W.get, _COL_W.get
    for j, (x1, y1, x2, y2) in enumerate(crop_rects(xyxy, wid, hgt).tolist()):
        h, w = y2 - y1, x2 - x1
        if h >= _HH and w >= _HW:   # the common case of `_cells`, inlined (sizes differ)
            wy = rows_get(h)
            if wy is None:
                wy = _row_weights(h)
            wx = cols_get((w, ch))
            if wx is None:
                wx = _col_weights(w, ch)
            mm(wy @ img[y1:y2, x1:x2].reshape(h, w * ch), wx, out=cells[j])
            valid[j] = True
        elif h > 0 and w > 0:
            _cells(img[y1:y2, x1:x2], cells[j])
            valid[j] = True
    hashes[valid] = _pack(cells if valid.all() else cells[valid])
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
