"""Box kernels shared by every layer: IoU matrices, areas, format conversions, clipping to a
frame and integer crop rectangles.

Formats (all (N, 4), one box per row, pixels, x to the right and y down):
  xyxy    [x1, y1, x2, y2]   corners (the format of Detections and Tracks)
  xywh    [x1, y1, w, h]     top-left corner and size (MOTChallenge files, OpenCV rects)
  cxcywh  [cx, cy, w, h]     centre and size (the Kalman state)

Every function takes anything `np.asarray` accepts; one box may be given as a (4,) row. The
conversions read only the first four columns, so a wider array (e.g. an (N, 8) Kalman state
whose first four columns are cxcywh) converts its boxes directly. A box with x2 < x1 or
y2 < y1 is degenerate: its area is 0 and its IoU with anything is 0, as is the IoU of two
zero-area boxes (no division by an empty union). Everything is one broadcast over whole
arrays: no Python loop over boxes or pairs.

This module imports numpy only, so detectors, trackers and events can all use it (layers:
core <- detectors, trackers <- events ...).
"""
from __future__ import annotations

import numpy as np

__all__ = ["area", "intersection", "iou_matrix", "centers", "clip_xyxy", "xyxy_to_xywh", "xywh_to_xyxy",
           "xyxy_to_cxcywh", "cxcywh_to_xyxy", "xywh_to_cxcywh", "cxcywh_to_xywh",
           "crop_rects", "crops"]


def _rows(b: np.ndarray, dtype: type = np.float64) -> np.ndarray:
    """As a 2-D float array of boxes (a single (k,) row becomes (1, k))."""
    a = np.asarray(b, dtype=dtype)
    if a.ndim == 1:
        a = a.reshape(1, -1) if a.size else a.reshape(0, 4)
    if a.ndim != 2 or (a.shape[1] < 4 and a.shape[0]):
        raise ValueError(f"boxes must be (N, >=4), got shape {np.shape(b)}")
    return a


def area(xyxy: np.ndarray) -> np.ndarray:
    """(N,) float64 areas of xyxy boxes; a degenerate (inverted) side counts as 0."""
    b = _rows(xyxy)
    if b.shape[0] == 0:
        return np.zeros(0)
    w = b[:, 2] - b[:, 0]
    h = b[:, 3] - b[:, 1]
    np.maximum(w, 0.0, out=w)
    np.maximum(h, 0.0, out=h)
    return w * h


def _inter(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N, M) float64 intersection areas of (N, >=4) and (M, >=4) float64 rows."""
    iw = np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0])
    ih = np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1])
    np.maximum(iw, 0.0, out=iw)
    np.maximum(ih, 0.0, out=ih)
    return np.multiply(iw, ih, out=iw)


def intersection(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N, M) float64 areas of the intersection of every xyxy box of a with every box of b
    (0 where they do not overlap). Divided by `area(a)[:, None]` it is the fraction of each
    box of a inside each box of b."""
    a = _rows(a)
    b = _rows(b)
    if a.shape[0] == 0 or b.shape[0] == 0:
        return np.zeros((a.shape[0], b.shape[0]))
    return _inter(a, b)


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N, M) float32 IoU of every xyxy box of a (N, 4) with every box of b (M, 4).

    One broadcast over all pairs, computed in float64 (class-offset NMS shifts coordinates
    far from 0) and returned as float32. Empty inputs give an (N, 0) or (0, M) matrix.
    Degenerate boxes, and pairs with an empty union (two zero-area boxes), give 0.
    Coordinates are expected finite (Detections and Tracks check it); a NaN or infinite one
    still gives 0 for that box's pairs, though numpy may warn."""
    a = _rows(a)
    b = _rows(b)
    n, m = a.shape[0], b.shape[0]
    if n == 0 or m == 0:
        return np.zeros((n, m), np.float32)
    inter = _inter(a, b)
    union = area(a)[:, None] + area(b)[None, :] - inter
    out = np.zeros((n, m), np.float32)
    # a NaN or infinite coordinate makes the union NaN or infinite: `where` leaves it at 0
    np.divide(inter, union, out=out, where=union > 0, casting="same_kind")
    return out


def centers(xyxy: np.ndarray) -> np.ndarray:
    """(N, 2) float64 box centres (cx, cy)."""
    b = _rows(xyxy)
    return 0.5 * (b[:, 0:2] + b[:, 2:4])


def clip_xyxy(xyxy: np.ndarray, width: float, height: float,
              out: np.ndarray | None = None) -> np.ndarray:
    """Boxes clipped to the frame [0, width] x [0, height] (x to width, y to height).

    A float input keeps its dtype (anything else becomes float64); `out` (e.g. the input
    itself) is written in place and returned."""
    b = np.asarray(xyxy)
    if not np.issubdtype(b.dtype, np.floating):
        b = b.astype(np.float64)
    b = b.reshape(-1, 4) if b.ndim == 1 else b
    hi = np.array([width, height, width, height], dtype=b.dtype)
    return np.minimum(np.maximum(b, 0, out=out), hi, out=out)


def xyxy_to_xywh(b: np.ndarray) -> np.ndarray:
    b = _rows(b)
    out = np.empty((b.shape[0], 4))
    out[:, 0:2] = b[:, 0:2]
    np.subtract(b[:, 2:4], b[:, 0:2], out=out[:, 2:4])
    return out


def xywh_to_xyxy(b: np.ndarray) -> np.ndarray:
    b = _rows(b)
    out = np.empty((b.shape[0], 4))
    out[:, 0:2] = b[:, 0:2]
    np.add(b[:, 0:2], b[:, 2:4], out=out[:, 2:4])
    return out


def xyxy_to_cxcywh(b: np.ndarray) -> np.ndarray:
    b = _rows(b)
    out = np.empty((b.shape[0], 4))
    np.subtract(b[:, 2:4], b[:, 0:2], out=out[:, 2:4])
    out[:, 0:2] = b[:, 0:2] + 0.5 * out[:, 2:4]
    return out


def cxcywh_to_xyxy(s: np.ndarray) -> np.ndarray:
    s = _rows(s)
    out = np.empty((s.shape[0], 4))
    half = 0.5 * s[:, 2:4]
    np.subtract(s[:, 0:2], half, out=out[:, 0:2])
    np.add(s[:, 0:2], half, out=out[:, 2:4])
    return out


def xywh_to_cxcywh(b: np.ndarray) -> np.ndarray:
    b = _rows(b)
    out = np.empty((b.shape[0], 4))
    out[:, 2:4] = b[:, 2:4]
    out[:, 0:2] = b[:, 0:2] + 0.5 * b[:, 2:4]
    return out


def cxcywh_to_xywh(s: np.ndarray) -> np.ndarray:
    s = _rows(s)
    out = np.empty((s.shape[0], 4))
    out[:, 2:4] = s[:, 2:4]
    out[:, 0:2] = s[:, 0:2] - 0.5 * s[:, 2:4]
    return out


def crop_rects(xyxy: np.ndarray, width: int, height: int,
               pad: float | np.ndarray = 0) -> np.ndarray:
    """(N, 4) int64 pixel rectangles [x1, y1, x2, y2] (end exclusive: image[y1:y2, x1:x2])
    covering each box grown by `pad` pixels on every side (a scalar, or one per box):
    floor of the top-left corner, ceil of the bottom-right, clipped to the image. A box
    with no pixel inside the image gets an empty rectangle (x2 <= x1 or y2 <= y1); NaN
    coordinates count as 0."""
    b = _rows(xyxy)
    n = b.shape[0]
    if n == 0:
        return np.zeros((0, 4), np.int64)
    r = np.empty((n, 4))
    np.floor(b[:, 0:2], out=r[:, 0:2])
    np.ceil(b[:, 2:4], out=r[:, 2:4])
    p = np.asarray(pad, dtype=np.float64)
    if p.ndim or p:
        p = p[:, None] if p.ndim == 1 else p
        r[:, 0:2] -= p
        r[:, 2:4] += p
    np.fmax(r, 0.0, out=r)             # fmax: NaN becomes 0
    np.minimum(r, (width, height, width, height), out=r)
    return r.astype(np.int64)


def crops(image: np.ndarray, xyxy: np.ndarray, pad: float | np.ndarray = 0
          ) -> list[np.ndarray]:
    """Views of `image` under each box (see `crop_rects`); an empty view where a box has
    no pixel inside the image."""
    h, w = image.shape[:2]
    return [image[y1:y2, x1:x2] for x1, y1, x2, y2 in crop_rects(xyxy, w, h, pad).tolist()]
