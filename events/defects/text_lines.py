"""Text lines on a part: where its serial label (dark characters on a light sticker) is.

`find_text_lines` finds them in a grey crop; the reference masks them (the serial digits
differ between good parts by design) and the serial reader hands the best one to Tesseract.
`text_line_heights` and `pad_line_boxes` are the sizes both use.
"""
from __future__ import annotations

import math

import cv2
import numpy as np

__all__ = ["find_text_lines", "text_line_heights", "pad_line_boxes"]


def text_line_heights(size: tuple[float, float]) -> tuple[int, int]:
    """Plausible text line heights (min, max) in pixels for a part box of this (w, h)."""
    s = max(size)
    return max(6, int(s * 0.04)), max(16, int(s * 0.35))


def pad_line_boxes(boxes: np.ndarray, shape: tuple[int, ...], frac: float = 0.35
                   ) -> list[tuple[int, int, int, int]]:
    """Text line boxes (N,4) xyxy grown by `frac` of their height (+2 px) on every side,
    clipped to an image of `shape`: the pixels a masked line covers."""
    out = []
    H, W = shape[:2]
    for x1, y1, x2, y2 in np.asarray(boxes).reshape(-1, 4).tolist():
        p = int(math.ceil(frac * (y2 - y1))) + 2
        out.append((max(x1 - p, 0), max(y1 - p, 0), min(x2 + p, W), min(y2 + p, H)))
    return out


def find_text_lines(gray: np.ndarray, min_h: int = 6, max_h: int = 64,
                    min_chars: int = 2) -> np.ndarray:
    """Boxes (N,4) int xyxy of text-like lines: dark strokes on a lighter ground.

    Black-hat (closing minus image) with a kernel taller than a character keeps thin dark
    details; its Otsu-thresholded blobs of plausible height are chained into a line when
    neighbours are close (gap <= 0.9 x height), of similar height (ratio <= 1.35) and on the
    same baseline (vertical overlap >= 70 %); solid round blobs (holes, dots) are left out. The test is a matrix over blob pairs and the
    chains are connected components of it. A line has >= `min_chars` blobs and is >= 2x as
    wide as tall, or is one blob >= 3x as wide as tall (touching glyphs); this rejects
    holes, edges and single marks. Sorted by blob count, then width, most first.
    """
    g = np.asarray(gray)
    if g.dtype != np.uint8:
        g = np.clip(g, 0, 255).astype(np.uint8)
    k = max(9, int(max_h * 0.6) | 1)
    bh = cv2.morphologyEx(g, cv2.MORPH_BLACKHAT, cv2.getStructuringElement(cv2.MORPH_RECT, (k, k)))
    thr = max(30.0, float(cv2.threshold(bh, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)[0]))
    n_s, lab_s, st, _ = cv2.connectedComponentsWithStats((bh > thr).astype(np.uint8),
                                                         connectivity=8)
    st = st[1:]
    x, y = st[:, cv2.CC_STAT_LEFT], st[:, cv2.CC_STAT_TOP]
    w, h = st[:, cv2.CC_STAT_WIDTH], st[:, cv2.CC_STAT_HEIGHT]
    # A solid round blob (a hole, a dot): nearly all of it inside the ellipse inscribed in
    # its box, filling >= 75 % of that ellipse, convex and without an inner hole (glyphs like
    # "5" or "S" fill their box as much but have concavities; "0" has a hole).
    py, px = np.nonzero(lab_s)
    li = lab_s[py, px] - 1
    ex = (px + 0.5 - x[li] - w[li] / 2) / (w[li] / 2)
    ey = (py + 0.5 - y[li] - h[li] / 2) / (h[li] / 2)
    outside = np.bincount(li, weights=(ex * ex + ey * ey > 1.15), minlength=len(st))
    area = st[:, cv2.CC_STAT_AREA].astype(np.float64)
    disc = ((outside <= 0.04 * area) & (area >= 0.75 * np.pi / 4 * w * h)
            & (w <= 1.33 * h) & (h <= 1.33 * w))
    for j in np.flatnonzero(disc).tolist():   # few candidates: check convexity one by one
        sub = (lab_s[y[j]:y[j] + h[j], x[j]:x[j] + w[j]] == j + 1).astype(np.uint8)
        cnts, hier = cv2.findContours(sub, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)
        holes = [c for c, hh in zip(cnts, hier[0]) if hh[3] >= 0 and cv2.contourArea(c) >= 2]
        outer = [c for c, hh in zip(cnts, hier[0]) if hh[3] < 0]
        c = max(outer, key=cv2.contourArea)
        hull = cv2.contourArea(cv2.convexHull(c))
        # "0", "O", "8" enclose a hole; a hole in a part, seen through black-hat, does not
        disc[j] = not holes and hull > 0 and cv2.contourArea(c) / hull >= 0.93
    ok = (h >= min_h) & (h <= max_h) & (w >= 2) & ~disc
    x, y, w, h = x[ok], y[ok], w[ok], h[ok]
    if x.size == 0:
        return np.zeros((0, 4), np.int64)
    x2, y2 = x + w, y + h
    hmin = np.minimum(h[:, None], h[None, :])
    gap = np.maximum(x[:, None], x[None, :]) - np.minimum(x2[:, None], x2[None, :])
    vover = np.minimum(y2[:, None], y2[None, :]) - np.maximum(y[:, None], y[None, :])
    ratio = np.maximum(h[:, None], h[None, :]) / np.maximum(hmin, 1)
    link = (gap <= 0.9 * hmin) & (vover >= 0.7 * hmin) & (ratio <= 1.35)
    from scipy.sparse.csgraph import connected_components
    n_lines, lab = connected_components(link, directed=False)
    blobs = np.bincount(lab, minlength=n_lines)
    lx1 = np.full(n_lines, np.iinfo(np.int64).max); ly1 = lx1.copy()
    lx2 = np.full(n_lines, -1, np.int64); ly2 = lx2.copy()
    np.minimum.at(lx1, lab, x); np.minimum.at(ly1, lab, y)
    np.maximum.at(lx2, lab, x2); np.maximum.at(ly2, lab, y2)
    lw, lh = lx2 - lx1, ly2 - ly1
    good = ((blobs >= min_chars) & (lw >= 2 * lh)) | (lw >= 3 * lh)
    good &= (lh >= min_h) & (lh <= max_h * 1.2)
    idx = np.flatnonzero(good)
    if idx.size == 0:
        return np.zeros((0, 4), np.int64)
    idx = idx[np.lexsort((-lw[idx], -blobs[idx]))]
    return np.stack([lx1[idx], ly1[idx], lx2[idx], ly2[idx]], axis=1).astype(np.int64)
