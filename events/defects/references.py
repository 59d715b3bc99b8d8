"""Golden references: what one part shape should look like, and how a part is compared with it.

A `Reference` is a grey image of the part plus its margin, with the pixels that must not be
compared (`ignore`: the border, and the text lines holding the serial label). It comes
- from a learning group of alike parts (`learn_reference`): each registered to the group's
  medoid, then to the first median; the per-pixel median is the image. Per-pixel variability
  over the group marks what differs between good parts by design (the serial digits): a text
  line containing such pixels is masked whole, so digits that happened to agree in the group
  are masked too. Outside text lines only what most of the group disagrees on is masked (a
  defect shared by two of five learning parts must stay visible);
- or from an image file (`reference_from_image`): no learning set, so every text line it
  shows is masked.

`compare` registers a part's grey crop to a reference (phase correlation), scales its
brightness to the reference (median ratio on unmasked pixels), blurs both, thresholds the
absolute difference at `diff_threshold`, opens it and measures the largest connected blob;
it also gives the dHash distance with the masked pixels filled from the reference.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple, Sequence

import cv2
import numpy as np

from core.config import DefectWatchConfig
from core.imaging import hamming, hamming_distance
from events.defects.crops import PartCrop
from events.defects.registration import blur, dhash_gray, hann, register
from events.defects.text_lines import find_text_lines, pad_line_boxes, text_line_heights

__all__ = ["Reference", "Comparison", "compare", "learn_reference", "reference_from_image",
           "canvas_size", "border_mask"]


@dataclass
class Reference:
    """A golden image of one part shape, with the pixels that must not be compared."""

    gray: np.ndarray                 # (H, W) float32 median image
    ignore: np.ndarray               # (H, W) bool: label / variable / border pixels
    part_size: tuple[float, float]   # median part box (w, h) in pixels
    members: int                     # parts it was learned from (0: from a file)
    index: int = 0
    label_boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.int64))
    part_dhash: int = 0              # dHash of the part's box region (shape matching)
    blurred: np.ndarray = field(init=False, repr=False)
    window: np.ndarray = field(init=False, repr=False)
    dhash: int = field(init=False)
    median_level: float = field(init=False)
    valid_count: int = field(init=False)

    def __post_init__(self) -> None:
        self.gray = np.ascontiguousarray(self.gray, np.float32)
        self.window = hann(self.gray.shape)
        self.valid_count = int(np.count_nonzero(~self.ignore))
        self.median_level = float(np.median(self.gray[~self.ignore])) if (~self.ignore).any() else 1.0

    def finish(self, sigma: float) -> "Reference":
        self.blurred = blur(self.gray, sigma)
        self.dhash = dhash_gray(self.gray)
        return self


class Comparison(NamedTuple):
    """A part against a reference: largest changed blob (px), dHash distance, the changed
    mask (reference coordinates, uint8) and the changed fraction of the compared pixels
    (above `shape_mismatch`: another shape, not a defect)."""

    area: int
    dhash: int
    changed: np.ndarray
    mismatch: float


def canvas_size(size: tuple[float, float], margin: float) -> tuple[int, int]:
    """(w, h), odd, of the part box `size` plus `margin` x its longer side on every side."""
    m = margin * max(size)
    return int(round(size[0] + 2 * m)) | 1, int(round(size[1] + 2 * m)) | 1


def border_mask(shape: tuple[int, int], b: int = 3) -> np.ndarray:
    """(H, W) bool, True on the `b`-pixel frame of the image."""
    m = np.zeros(shape, bool)
    m[:b], m[-b:], m[:, :b], m[:, -b:] = True, True, True, True
    return m


def compare(ref: Reference, gray: np.ndarray, centre: tuple[float, float], blur_sigma: float,
            diff_threshold: float) -> Comparison:
    """`gray` (float32 crop) around `centre` (x, y in the crop) against `ref`."""
    patch, _, _ = register(ref.gray, gray, centre, ref.window)
    valid = ~ref.ignore
    lvl = float(np.median(patch[valid])) if valid.any() else float(np.median(patch))
    patch = patch * (ref.median_level / max(lvl, 1.0))
    diff = cv2.absdiff(blur(patch, blur_sigma), ref.blurred)
    changed = ((diff > diff_threshold) & valid).astype(np.uint8)
    changed = cv2.morphologyEx(changed, cv2.MORPH_OPEN, np.ones((2, 2), np.uint8))
    area = 0
    if changed.any():
        nl, _, st, _ = cv2.connectedComponentsWithStats(changed, connectivity=8)
        if nl > 1:
            area = int(st[1:, cv2.CC_STAT_AREA].max())
    filled = np.where(ref.ignore, ref.gray, patch)
    dd = hamming_distance(dhash_gray(filled), ref.dhash)
    frac = float(np.count_nonzero(changed)) / max(int(ref.valid_count), 1)
    return Comparison(area, dd, changed, frac)


def learn_reference(group: Sequence[PartCrop], cfg: DefectWatchConfig, index: int) -> Reference:
    """The reference of a group of alike parts (see the module notes); `index` numbers it."""
    n = len(group)
    hashes = np.array([it.dhash for it in group], np.uint64)
    dist = hamming(hashes, hashes).sum(axis=1)
    medoid = group[int(np.argmin(dist))]
    size = (float(np.median([it.size[0] for it in group])),
            float(np.median([it.size[1] for it in group])))
    cw, ch = canvas_size(size, cfg.margin)
    seed = cv2.getRectSubPix(medoid.gray, (cw, ch), medoid.centre)
    win = hann((ch, cw))
    stack = np.empty((n, ch, cw), np.float32)
    for _ in range(2):   # register to the medoid, then to the first median
        for j, it in enumerate(group):
            patch, _, _ = register(seed, it.gray, it.centre, win)
            lvl = float(np.median(patch))
            stack[j] = patch * (float(np.median(seed)) / max(lvl, 1.0))
        seed = np.median(stack, axis=0).astype(np.float32)
    med = seed
    dev = np.abs(np.stack([blur(s, cfg.blur_sigma) for s in stack]) - blur(med, cfg.blur_sigma))
    votes = (dev > cfg.diff_threshold).sum(axis=0)
    # any learned part off the median inside a text line marks it as a serial label
    variable = cv2.morphologyEx((votes >= 1).astype(np.uint8), cv2.MORPH_OPEN,
                                np.ones((2, 2), np.uint8)) > 0
    ignore = border_mask((ch, cw))
    lines = find_text_lines(np.clip(med, 0, 255).astype(np.uint8), *text_line_heights(size))
    keep_lines = []
    for (x1, y1, x2, y2), padded in zip(lines.tolist(), pad_line_boxes(lines, med.shape)):
        if variable[y1:y2, x1:x2].any():
            px1, py1, px2, py2 = padded
            ignore[py1:py2, px1:px2] = True
            keep_lines.append((x1, y1, x2, y2))
    majority = cv2.morphologyEx((votes > n // 2).astype(np.uint8), cv2.MORPH_OPEN,
                                np.ones((2, 2), np.uint8))
    ignore |= cv2.dilate(majority, np.ones((5, 5), np.uint8)) > 0
    return Reference(med, ignore, size, n, index, np.array(keep_lines, np.int64).reshape(-1, 4),
                     int(medoid.dhash)).finish(cfg.blur_sigma)


def reference_from_image(path: str | Path, cfg: DefectWatchConfig) -> Reference:
    """The reference in an image file: the part plus its margin (`cfg.margin`); every text
    line it shows is masked. ValueError when the file is not a readable image."""
    p = Path(path)
    img = cv2.imread(str(p), cv2.IMREAD_COLOR)
    if img is None:
        raise ValueError(f"defect watch reference {str(p)!r} is not a readable image")
    gray = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY).astype(np.float32)
    h, w = gray.shape
    m = cfg.margin / (1 + 2 * cfg.margin)   # the file is the part plus its margin
    part = (w * (1 - 2 * m), h * (1 - 2 * m))
    ignore = border_mask(gray.shape)
    lines = find_text_lines(gray.astype(np.uint8), *text_line_heights(part))
    for x1, y1, x2, y2 in pad_line_boxes(lines, gray.shape):
        ignore[y1:y2, x1:x2] = True
    mx, my = int(round((w - part[0]) / 2)), int(round((h - part[1]) / 2))
    inner = gray[my:h - my, mx:w - mx] if h > 2 * my and w > 2 * mx else gray
    return Reference(gray, ignore, part, 0, 0, lines, dhash_gray(inner)).finish(cfg.blur_sigma)
