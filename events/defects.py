"""Factory-line defect watch: count the parts that cross an inspection line, compare each one
with a golden reference, give it one verdict (PASS / DEFECT) and read its serial label.

Flow per frame (`DefectWatch.update(frame, tracks)`):

1. Crossing. For every reported track the signed side of its box centre relative to the
   directed inspection line is computed (vectorised). A track is counted once, on the frame
   its centre goes from the negative to the non-negative side (left to right for the default
   vertical line), if its box is part-sized and does not touch the left/right frame edge.
   A crossing box mostly inside the box of a track already counted and present on the same
   frame (a fragment of the same part's motion blob) is not counted again.
2. Crop. The frame around the box, with a generous pad, is kept (the judgement may happen later).
3. Serial. Text lines are found in the crop (black-hat + horizontal closing: dark characters on
   a light sticker), the best line goes to Tesseract (psm 7, whitelist), and the text is
   normalised with `serial_pattern` (default: "SN 0042"). One TEXT_READ event per part.
4. Reference. The crop is matched to a learned (or given) golden reference by box size and
   dHash. No matching reference yet: it joins a learning pool; when `learn_parts` pool members
   are alike (same size within `size_tolerance`, dHash within `shape_dhash` of the group's first
   member), they are registered to their medoid, the per-pixel median becomes the reference
   and the pool members and every pending part of that shape are judged retroactively. Several
   shapes on one line each get their own reference.
   Per-pixel variability over the learning set marks what differs between good parts by
   design (the serial digits); the text lines that contain such pixels are masked whole, so
   digits that happened to agree in the learning set are masked too. A reference from an
   image file (`reference=`) has no learning set: all text lines it shows are masked.
5. Judgement. The crop is registered to the reference by phase correlation (sub-pixel
   translation, `cv2.getRectSubPix`), its brightness scaled to the reference (median ratio on
   unmasked pixels), both are blurred, the absolute difference is thresholded at
   `diff_threshold`, opened, and the largest connected blob is measured. DEFECT when that blob
   exceeds `area_threshold` pixels or the dHash distance (label area filled from the
   reference) exceeds `dhash_threshold`; else PASS.

`update()` returns `list[tuple[Event, bytes | None]]`: each event with an optional JPEG
snapshot (the judged crop, the defect blob outlined) meant for `EventBus.publish(event,
snapshot)`. Verdict events carry data {"verdict", "serial", "diff_area", "dhash", "part",
"shape", "retro"}; `retro` is True when the part was judged after the reference was learned.

Memory is bounded: pending parts (`max_pending`), verdict records (`max_verdicts`), track
state (dropped after `track_ttl` frames unseen) and counted ids.
"""
from __future__ import annotations

import collections
import logging
import math
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import cv2
import numpy as np

from core.boxes import area, centers, crop_rects, intersection, iou_matrix
from core.config import DefectWatchConfig, resolve_section
from core.imaging import dhash, hamming, hamming_distance
from core.types import Event, EventKind, Frame, Tracks

log = logging.getLogger("vigil.events.defects")

__all__ = ["DefectWatch", "Verdict", "Crossing", "Reference", "ConveyorEvaluator",
           "find_text_lines", "dhash_gray", "register"]

PASS, DEFECT, UNKNOWN = "PASS", "DEFECT", "UNKNOWN"

class Verdict(NamedTuple):
    """One judged part. The first four fields are (track_id, serial, verdict, frame_seq)."""

    track_id: int
    serial: str | None
    verdict: str
    frame_seq: int
    part: int
    diff_area: int
    dhash: int
    shape: int
    box: tuple[float, float, float, float]


class Crossing(NamedTuple):
    """A counted part at the moment it crossed the line (before any judgement)."""

    part: int
    track_id: int
    frame_seq: int
    box: tuple[float, float, float, float]


# --------------------------------------------------------------------------- image helpers

def dhash_gray(gray: np.ndarray) -> int:
    """The shared dHash (core.imaging.dhash) of a grey image, averaged in float32 (the
    watch's grey images are float32 already; a uint8 copy hashes the same)."""
    return dhash(np.asarray(gray, np.float32))


_popcount = hamming_distance  # differing bits of two hashes given as ints


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


def _hann(shape: tuple[int, int]) -> np.ndarray:
    return cv2.createHanningWindow((shape[1], shape[0]), cv2.CV_32F)


def register(ref: np.ndarray, img: np.ndarray, centre: tuple[float, float],
             window: np.ndarray | None = None, iterations: int = 2
             ) -> tuple[np.ndarray, tuple[float, float], float]:
    """Cut from `img` the (H, W) patch of `ref`'s size that best matches `ref`.

    Starts centred at `centre` (x, y in img), then moves by the phase-correlation shift
    (sub-pixel; `cv2.getRectSubPix` replicates borders). Returns (patch float32, final centre,
    response of the last correlation: ~1 for a clean match, ~0 for none).
    """
    h, w = ref.shape
    win = _hann(ref.shape) if window is None else window
    cx, cy = float(centre[0]), float(centre[1])
    resp = 0.0
    r32 = np.asarray(ref, np.float32)
    src = np.asarray(img, np.float32)
    patch = cv2.getRectSubPix(src, (w, h), (cx, cy))
    for _ in range(max(1, iterations)):
        (dx, dy), resp = cv2.phaseCorrelate(r32, patch, win)
        if not (math.isfinite(dx) and math.isfinite(dy)) or abs(dx) > w / 3 or abs(dy) > h / 3:
            break
        cx, cy = cx + dx, cy + dy
        patch = cv2.getRectSubPix(src, (w, h), (cx, cy))
        if abs(dx) < 0.25 and abs(dy) < 0.25:
            break
    return patch, (cx, cy), float(resp)


# --------------------------------------------------------------------------- reference

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
        self.window = _hann(self.gray.shape)
        self.valid_count = int(np.count_nonzero(~self.ignore))
        self.median_level = float(np.median(self.gray[~self.ignore])) if (~self.ignore).any() else 1.0

    def finish(self, sigma: float) -> "Reference":
        self.blurred = _blur(self.gray, sigma)
        self.dhash = dhash_gray(self.gray)
        return self


def _blur(g: np.ndarray, sigma: float) -> np.ndarray:
    return cv2.GaussianBlur(g, (0, 0), sigma) if sigma > 0 else g


# --------------------------------------------------------------------------- pending items

@dataclass
class _Item:
    part: int
    track_id: int
    frame_seq: int
    wall_ts: float
    box: tuple[float, float, float, float]      # in frame pixels
    crop: np.ndarray                            # BGR, padded around the box
    gray: np.ndarray                            # float32 grey of crop
    origin: tuple[int, int]                     # crop's top-left in the frame
    size: tuple[float, float]                   # box (w, h)
    dhash: int                                  # of the box region
    serial: str | None = None
    serial_conf: float = 0.0

    @property
    def centre(self) -> tuple[float, float]:
        x1, y1, x2, y2 = self.box
        return (x1 + x2) / 2 - self.origin[0], (y1 + y2) / 2 - self.origin[1]


# --------------------------------------------------------------------------- the watch

class DefectWatch:
    """Counts parts crossing an inspection line and judges each against a golden reference.

    camera: camera name put on events. cfg: the camera's `defect_watch` section
    (core.config.DefectWatchConfig: every parameter, its default and bounds; `enabled` is
    for the caller); keyword arguments override fields of it, e.g.
    `DefectWatch("cam", ocr=False, learn_parts=3)`; bad ones raise ValueError naming the key.
    The inspection line is `line_x` (vertical) or a directed `line`, in fractions of the frame
    when `normalized`.
    """

    def __init__(self, camera: str, cfg: DefectWatchConfig | None = None, /,
                 **overrides: Any) -> None:
        if not camera or not isinstance(camera, str):
            raise ValueError("DefectWatch camera must be a non-empty string")
        self.cfg = c = resolve_section(DefectWatchConfig, cfg, overrides, where="defect_watch")
        if c.line is not None:
            pts = np.asarray(c.line, np.float64)
        else:
            pts = np.array([[c.line_x, 0.0], [c.line_x, 1.0 if c.normalized else 1e9]], np.float64)
        self._serial_re = re.compile(c.serial_pattern)
        self.camera = camera
        self.line_pts = pts
        self._ocr = c.ocr  # turned off at runtime when Tesseract is missing
        self._reader: Any = None
        self._file_reference: Reference | None = None
        if c.reference is not None:
            self._file_reference = self._load_reference(c.reference)
        self.reset()

    # ------------------------------------------------------------------ state
    def reset(self) -> None:
        """Forget counts, references learned, pending parts and track state."""
        self.references: list[Reference] = []
        if self._file_reference is not None:
            self.references.append(self._file_reference)
        self._pool: list[_Item] = []           # waiting for a reference (learning pool)
        self._dis_cache: collections.OrderedDict[tuple[int, int], float] = collections.OrderedDict()
        self._sides: dict[int, tuple[float, int]] = {}  # track id -> (side, last frame seq)
        self._counted: collections.OrderedDict[int, None] = collections.OrderedDict()
        self.verdicts: collections.deque[Verdict] = collections.deque(maxlen=self.cfg.max_verdicts)
        self.crossings: collections.deque[Crossing] = collections.deque(maxlen=self.cfg.max_verdicts)
        self._n = {"parts": 0, "pass": 0, "defect": 0, "unknown": 0, "labels_read": 0}
        # timings (ms): one registered comparison; a whole judged part at its crossing
        # (crop, OCR, shape match, verdict, snapshot)
        self.judge_ms: collections.deque[float] = collections.deque(maxlen=1000)
        self.part_ms: collections.deque[float] = collections.deque(maxlen=1000)
        self._frame_size: tuple[int, int] | None = None
        self._line_px: np.ndarray | None = None

    def counters(self) -> dict[str, Any]:
        """{"parts", "pass", "defect", "unknown", "pending", "labels_read", "defect_rate",
        "references"}; defect_rate = defect / judged (0 when none judged)."""
        judged = self._n["pass"] + self._n["defect"]
        out: dict[str, Any] = dict(self._n)
        out["pending"] = len(self._pool)
        out["defect_rate"] = round(self._n["defect"] / judged, 4) if judged else 0.0
        out["references"] = len(self.references)
        return out

    # ------------------------------------------------------------------ reference file
    def _load_reference(self, path: str) -> Reference:
        p = Path(path)
        img = cv2.imread(str(p), cv2.IMREAD_COLOR)
        if img is None:
            raise ValueError(f"defect watch reference {str(p)!r} is not a readable image")
        gray = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY).astype(np.float32)
        h, w = gray.shape
        m = self.cfg.margin / (1 + 2 * self.cfg.margin)   # the file is the part plus its margin
        part = (w * (1 - 2 * m), h * (1 - 2 * m))
        ignore = self._border(gray.shape)
        lines = find_text_lines(gray.astype(np.uint8), *self._text_sizes(part))
        for x1, y1, x2, y2 in self._pad_boxes(lines, gray.shape):
            ignore[y1:y2, x1:x2] = True
        mx, my = int(round((w - part[0]) / 2)), int(round((h - part[1]) / 2))
        inner = gray[my:h - my, mx:w - mx] if h > 2 * my and w > 2 * mx else gray
        return Reference(gray, ignore, part, 0, 0, lines, dhash_gray(inner)).finish(self.cfg.blur_sigma)

    # ------------------------------------------------------------------ geometry
    def line_px(self, w: int, h: int) -> np.ndarray:
        """The inspection line ((x1, y1), (x2, y2)) in pixels for a w x h frame."""
        return self._line_for(w, h)

    def _line_for(self, w: int, h: int) -> np.ndarray:
        if self._frame_size != (w, h):
            pts = self.line_pts.copy()
            if self.cfg.normalized:
                pts = pts * np.array([w, h], np.float64)
            self._line_px, self._frame_size = pts, (w, h)
        return self._line_px  # type: ignore[return-value]

    @staticmethod
    def _side(pts: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Signed side (>0: right of p1->p2 with y down) and projection t along the segment."""
        d = pts[1] - pts[0]
        rel = c - pts[0]
        side = d[1] * rel[:, 0] - d[0] * rel[:, 1]
        t = (rel @ d) / float(d @ d)
        return side, t

    # ------------------------------------------------------------------ main entry
    def update(self, frame: Frame, tracks: Tracks) -> list[tuple[Event, bytes | None]]:
        """Feed the tracks reported on `frame`; returns new events with optional JPEG bytes."""
        img = frame.image
        H, W = img.shape[:2]
        pts = self._line_for(W, H)
        seq = int(frame.seq)
        out: list[tuple[Event, bytes | None]] = []
        n = len(tracks)
        if n:
            xy = tracks.xyxy.astype(np.float64)
            side, t = self._side(pts, centers(xy))
            ids = tracks.track_id.tolist()
            prev = np.array([self._sides.get(i, (np.nan, 0))[0] for i in ids], np.float64)
            bw, bh = xy[:, 2] - xy[:, 0], xy[:, 3] - xy[:, 1]
            whole = (xy[:, 0] > 1) & (xy[:, 2] < W - 1)
            sized = (bw * bh >= self.cfg.min_part_area) & (np.minimum(bw, bh) >= self.cfg.min_part_side)
            cross = (prev < 0) & (side >= 0) & (t >= 0) & (t <= 1) & whole & sized
            counted = np.array([i in self._counted for i in ids], bool)
            cross &= ~counted
            for r in np.flatnonzero(cross).tolist():
                if self._inside(xy[r], xy[counted]):
                    self._mark_counted(ids[r])
                    continue
                out.extend(self._on_crossing(frame, int(ids[r]), xy[r]))
                counted[r] = True
            for i, s in zip(ids, side.tolist()):
                self._sides[i] = (s, seq)
        if len(self._sides) > 4 * max(n, 16):
            self._sides = {k: v for k, v in self._sides.items() if seq - v[1] <= self.cfg.track_ttl}
        return out

    def _mark_counted(self, tid: int) -> None:
        self._counted[tid] = None
        while len(self._counted) > 4096:
            self._counted.popitem(last=False)

    @staticmethod
    def _inside(box: np.ndarray, others: np.ndarray, frac: float = 0.6) -> bool:
        """Is >= `frac` of `box`'s area inside one of `others` (N,4)? (A second track on a
        part already counted: a fragment of its motion blob.)"""
        if others.shape[0] == 0:
            return False
        inside = intersection(box, others)[0] / max(float(area(box)[0]), 1e-6)
        return bool(np.any(inside >= frac))

    # ------------------------------------------------------------------ a counted part
    def _on_crossing(self, frame: Frame, tid: int, box: np.ndarray
                     ) -> list[tuple[Event, bytes | None]]:
        self._mark_counted(tid)
        t_start = time.perf_counter()
        part = self._n["parts"] + 1
        self._n["parts"] = part
        bw, bh = float(box[2] - box[0]), float(box[3] - box[1])
        pad = int(math.ceil(0.25 * max(bw, bh) + 8))
        H, W = frame.image.shape[:2]
        x0, y0, x1, y1 = crop_rects(box, W, H, pad)[0].tolist()
        crop = frame.image[y0:y1, x0:x1].copy()
        gray = cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY).astype(np.float32)
        bx = (float(box[0]), float(box[1]), float(box[2]), float(box[3]))
        ix0, iy0 = int(round(bx[0])) - x0, int(round(bx[1])) - y0
        inner = gray[max(iy0, 0):max(iy0, 0) + max(int(bh), 1), max(ix0, 0):max(ix0, 0) + max(int(bw), 1)]
        item = _Item(part, tid, int(frame.seq), float(frame.wall_ts), bx, crop, gray, (x0, y0),
                     (bw, bh), dhash_gray(inner if inner.size else gray))
        self.crossings.append(Crossing(part, tid, item.frame_seq, bx))
        out: list[tuple[Event, bytes | None]] = []
        if self._ocr:
            self._read_serial(item)
            if item.serial is not None:
                self._n["labels_read"] += 1
                out.append((Event(EventKind.TEXT_READ, self.camera, ts=item.wall_ts, track_id=tid,
                                  label=item.serial, box=bx, frame_seq=item.frame_seq,
                                  data={"text": item.serial, "confidence": round(item.serial_conf, 1),
                                        "part": part}), None))
        m = self._match(item)
        if m is not None:
            out.append(self._verdict(item, m[0], m[1], retro=False))
            self.part_ms.append((time.perf_counter() - t_start) * 1e3)
            return out
        self._pool.append(item)
        out.extend(self._try_learn(item))
        while len(self._pool) > self.cfg.max_pending:
            old = self._pool.pop(0)
            out.append(self._emit(old, UNKNOWN, -1, -1, None, None, retro=True))
        return out

    # ------------------------------------------------------------------ OCR
    def _text_sizes(self, size: tuple[float, float]) -> tuple[int, int]:
        """Plausible text line heights for a part of this size."""
        s = max(size)
        return max(6, int(s * 0.04)), max(16, int(s * 0.35))

    @staticmethod
    def _pad_boxes(boxes: np.ndarray, shape: tuple[int, ...], frac: float = 0.35
                   ) -> list[tuple[int, int, int, int]]:
        out = []
        H, W = shape[:2]
        for x1, y1, x2, y2 in np.asarray(boxes).reshape(-1, 4).tolist():
            p = int(math.ceil(frac * (y2 - y1))) + 2
            out.append((max(x1 - p, 0), max(y1 - p, 0), min(x2 + p, W), min(y2 + p, H)))
        return out

    def _reader_obj(self) -> Any:
        if self._reader is None:
            from detectors.ocr import TessReader  # lazy: Tesseract loads its model on first use
            self._reader = TessReader(psm=self.cfg.ocr_psm, whitelist=self.cfg.ocr_whitelist or None,
                                      min_confidence=0.0)
        return self._reader

    def normalise_serial(self, text: str | None) -> str | None:
        """OCR text -> canonical serial (e.g. "SN 0042"), or None when it does not match."""
        if not text:
            return None
        t = " ".join(text.upper().split())
        m = self._serial_re.search(t)
        return self.cfg.serial_format.format(m.group(1)) if m else None

    def _read_serial(self, item: _Item) -> None:
        g8 = np.clip(item.gray, 0, 255).astype(np.uint8)
        lines = find_text_lines(g8, *self._text_sizes(item.size))
        if len(lines) == 0:
            return
        try:
            reader = self._reader_obj()
        except RuntimeError as e:  # Tesseract missing: say so once, keep judging parts
            log.warning("defect watch %s: OCR disabled: %s", self.camera, e)
            self._ocr = False
            return
        H, W = g8.shape
        # a tight pad first (a sticker border inside the crop can spoil the whole line), then
        # a tighter one; at most 3 candidate lines
        for x1, y1, x2, y2 in lines[:3].tolist():
            lh = y2 - y1
            for fx, fy in ((0.25, 0.15), (0.1, 0.08)):
                px, py = int(math.ceil(fx * lh)) + 1, int(math.ceil(fy * lh)) + 1
                rd = reader.read_crop(g8[max(y1 - py, 0):min(y2 + py, H),
                                         max(x1 - px, 0):min(x2 + px, W)])
                serial = self.normalise_serial(rd.text)
                if serial is not None and rd.confidence >= self.cfg.ocr_min_confidence:
                    item.serial, item.serial_conf = serial, rd.confidence
                    return

    # ------------------------------------------------------------------ shapes and learning
    def _size_ok(self, a: tuple[float, float], b: tuple[float, float]) -> bool:
        tol = self.cfg.size_tolerance
        return (abs(a[0] - b[0]) <= tol * max(b[0], 1.0)) and (abs(a[1] - b[1]) <= tol * max(b[1], 1.0))

    def _candidates(self, item: _Item) -> list[Reference]:
        """References whose part size (and loosely dHash) fits `item`, closest size first."""
        refs = [r for r in self.references if self._size_ok(item.size, r.part_size)
                and _popcount(item.dhash, r.part_dhash) <= self.cfg.shape_dhash]
        return sorted(refs, key=lambda r: abs(item.size[0] - r.part_size[0])
                      + abs(item.size[1] - r.part_size[1]))

    def _match(self, item: _Item) -> tuple[Reference, tuple[int, int, np.ndarray, float]] | None:
        """The reference this part is an instance of, with the comparison against it.

        Size and dHash only pre-select (round parts of similar size hash alike); the
        registered comparison decides: a part whose changed pixels exceed `shape_mismatch`
        of the compared area is another shape, not a defective one."""
        best = None
        for ref in self._candidates(item):
            area, dd, changed, _ = self.compare(ref, item.gray, item.centre)
            frac = float(np.count_nonzero(changed)) / max(int(ref.valid_count), 1)
            if frac <= self.cfg.shape_mismatch and (best is None or frac < best[1][3]):
                best = (ref, (area, dd, changed, frac))
        return best

    def _dissimilarity(self, a: _Item, b: _Item) -> float:
        """Fraction of a's part canvas that differs from b after registration (no masks)."""
        key = (min(a.part, b.part), max(a.part, b.part))
        hit = self._dis_cache.get(key)
        if hit is not None:
            return hit
        cw, ch = self._canvas(a.size)
        pa = cv2.getRectSubPix(a.gray, (cw, ch), a.centre)
        pb, _, _ = register(pa, b.gray, b.centre)
        pb = pb * (float(np.median(pa)) / max(float(np.median(pb)), 1.0))
        diff = cv2.absdiff(_blur(pa, self.cfg.blur_sigma), _blur(pb, self.cfg.blur_sigma))
        ch_ = cv2.morphologyEx((diff > self.cfg.diff_threshold).astype(np.uint8), cv2.MORPH_OPEN,
                               np.ones((2, 2), np.uint8))
        d = float(np.count_nonzero(ch_[3:-3, 3:-3])) / max((ch - 6) * (cw - 6), 1)
        self._dis_cache[key] = d
        while len(self._dis_cache) > 4096:
            self._dis_cache.popitem(last=False)
        return d

    def _cluster(self, new: _Item, need: int) -> list[_Item] | None:
        """The biggest consistent group of pool parts like `new`, if it has >= `need` members.

        Candidates: pool parts of `new`'s size (and loose dHash), at most the newest
        4 x learn_parts. Consistent: within `learn_mismatch` of one member (the group's
        centre) after registration; the centre with most such neighbours wins."""
        cands = [it for it in self._pool if self._size_ok(it.size, new.size)
                 and _popcount(it.dhash, new.dhash) <= self.cfg.shape_dhash]
        cands = cands[-4 * self.cfg.learn_parts:]
        if len(cands) < need:
            return None
        k = len(cands)
        d = np.zeros((k, k))
        for i in range(k):
            for j in range(i + 1, k):
                d[i, j] = d[j, i] = self._dissimilarity(cands[i], cands[j])
        near = d <= self.cfg.learn_mismatch
        score = near.sum(axis=1) * 10.0 - d.sum(axis=1) / max(k, 1)
        c = int(np.argmax(score))
        group = [cands[j] for j in np.flatnonzero(near[c]).tolist()]
        return group if len(group) >= need else None

    def _try_learn(self, new: _Item) -> list[tuple[Event, bytes | None]]:
        """Build a reference when `learn_parts` consistent pool parts like `new` exist."""
        group = self._cluster(new, self.cfg.learn_parts)
        return self._learn(group) if group else []

    def _learn(self, group: list[_Item]) -> list[tuple[Event, bytes | None]]:
        ref = self._build_reference(group)
        self.references.append(ref)
        log.info("defect watch %s: reference %d learned from %d parts (%.0fx%.0f px)",
                 self.camera, ref.index, len(group), *ref.part_size)
        out = []
        rest = []
        members = {it.part for it in group}
        for it in self._pool:  # pool order is crossing order: verdicts keep it
            m = self._match(it)
            if m is not None and m[0] is ref:
                out.append(self._verdict(it, ref, m[1], retro=True))
            elif it.part in members:   # learned from it but too far from the median: judge it
                out.append(self._judge(it, ref, retro=True))
            else:
                rest.append(it)
        self._pool = rest
        return out

    def _canvas(self, size: tuple[float, float]) -> tuple[int, int]:
        m = self.cfg.margin * max(size)
        return int(round(size[0] + 2 * m)) | 1, int(round(size[1] + 2 * m)) | 1

    def _border(self, shape: tuple[int, int], b: int = 3) -> np.ndarray:
        m = np.zeros(shape, bool)
        m[:b], m[-b:], m[:, :b], m[:, -b:] = True, True, True, True
        return m

    def _build_reference(self, group: list[_Item]) -> Reference:
        """Median of the group registered to its medoid; variable pixels and their text lines
        are masked."""
        n = len(group)
        hashes = np.array([it.dhash for it in group], np.uint64)
        dist = hamming(hashes, hashes).sum(axis=1)
        medoid = group[int(np.argmin(dist))]
        size = (float(np.median([it.size[0] for it in group])),
                float(np.median([it.size[1] for it in group])))
        cw, ch = self._canvas(size)
        seed = cv2.getRectSubPix(medoid.gray, (cw, ch), medoid.centre)
        win = _hann((ch, cw))
        stack = np.empty((n, ch, cw), np.float32)
        for _ in range(2):   # register to the medoid, then to the first median
            for j, it in enumerate(group):
                patch, _, _ = register(seed, it.gray, it.centre, win)
                lvl = float(np.median(patch))
                stack[j] = patch * (float(np.median(seed)) / max(lvl, 1.0))
            seed = np.median(stack, axis=0).astype(np.float32)
        med = seed
        dev = np.abs(np.stack([_blur(s, self.cfg.blur_sigma) for s in stack]) - _blur(med, self.cfg.blur_sigma))
        votes = (dev > self.cfg.diff_threshold).sum(axis=0)
        # any learned part off the median inside a text line marks it as a serial label
        variable = cv2.morphologyEx((votes >= 1).astype(np.uint8), cv2.MORPH_OPEN,
                                    np.ones((2, 2), np.uint8)) > 0
        ignore = self._border((ch, cw))
        lines = find_text_lines(np.clip(med, 0, 255).astype(np.uint8), *self._text_sizes(size))
        keep_lines = []
        for (x1, y1, x2, y2), padded in zip(lines.tolist(), self._pad_boxes(lines, med.shape)):
            if variable[y1:y2, x1:x2].any():
                px1, py1, px2, py2 = padded
                ignore[py1:py2, px1:px2] = True
                keep_lines.append((x1, y1, x2, y2))
        # Outside text lines only what most learned parts disagree on is masked: a defect
        # shared by two of five learning parts (the same missing hole) must stay visible.
        majority = cv2.morphologyEx((votes > n // 2).astype(np.uint8), cv2.MORPH_OPEN,
                                    np.ones((2, 2), np.uint8))
        ignore |= cv2.dilate(majority, np.ones((5, 5), np.uint8)) > 0
        return Reference(med, ignore, size, n, len(self.references),
                         np.array(keep_lines, np.int64).reshape(-1, 4),
                         int(medoid.dhash)).finish(self.cfg.blur_sigma)

    # ------------------------------------------------------------------ judgement
    def compare(self, ref: Reference, gray: np.ndarray, centre: tuple[float, float]
                ) -> tuple[int, int, np.ndarray, np.ndarray]:
        """(largest diff blob area, dHash distance, changed mask, aligned patch) of `gray`
        (float32) around `centre` against `ref`."""
        t0 = time.perf_counter()
        patch, _, _ = register(ref.gray, gray, centre, ref.window)
        valid = ~ref.ignore
        lvl = float(np.median(patch[valid])) if valid.any() else float(np.median(patch))
        patch = patch * (ref.median_level / max(lvl, 1.0))
        diff = cv2.absdiff(_blur(patch, self.cfg.blur_sigma), ref.blurred)
        changed = ((diff > self.cfg.diff_threshold) & valid).astype(np.uint8)
        changed = cv2.morphologyEx(changed, cv2.MORPH_OPEN, np.ones((2, 2), np.uint8))
        area = 0
        if changed.any():
            nl, _, st, _ = cv2.connectedComponentsWithStats(changed, connectivity=8)
            if nl > 1:
                area = int(st[1:, cv2.CC_STAT_AREA].max())
        filled = np.where(ref.ignore, ref.gray, patch)
        dd = _popcount(dhash_gray(filled), ref.dhash)
        self.judge_ms.append((time.perf_counter() - t0) * 1e3)
        return area, dd, changed, patch

    def _judge(self, item: _Item, ref: Reference, retro: bool) -> tuple[Event, bytes | None]:
        area, dd, changed, _ = self.compare(ref, item.gray, item.centre)
        return self._verdict(item, ref, (area, dd, changed, 0.0), retro)

    def _verdict(self, item: _Item, ref: Reference, cmp: tuple[int, int, np.ndarray, float],
                 retro: bool) -> tuple[Event, bytes | None]:
        area, dd, changed, _ = cmp
        verdict = DEFECT if (area > self.cfg.area_threshold or dd > self.cfg.dhash_threshold) else PASS
        return self._emit(item, verdict, area, dd, ref, changed, retro)

    def _emit(self, item: _Item, verdict: str, area: int, dd: int, ref: Reference | None,
              changed: np.ndarray | None, retro: bool) -> tuple[Event, bytes | None]:
        key = {PASS: "pass", DEFECT: "defect", UNKNOWN: "unknown"}[verdict]
        self._n[key] += 1
        shape = -1 if ref is None else ref.index
        self.verdicts.append(Verdict(item.track_id, item.serial, verdict, item.frame_seq, item.part,
                                     area, dd, shape, item.box))
        kind = EventKind.DEFECT_FOUND if verdict == DEFECT else EventKind.PART_PASSED
        ev = Event(kind, self.camera, ts=item.wall_ts, track_id=item.track_id, label=verdict.lower(),
                   box=item.box, frame_seq=item.frame_seq,
                   data={"verdict": verdict, "serial": item.serial, "diff_area": int(area),
                         "dhash": int(dd), "part": item.part, "shape": shape, "retro": retro})
        snap = self._snapshot(item, verdict, ref, changed) if self.cfg.snapshot else None
        return ev, snap

    def _snapshot(self, item: _Item, verdict: str, ref: Reference | None,
                  changed: np.ndarray | None) -> bytes | None:
        img = item.crop.copy()
        x0, y0 = item.origin
        x1, y1, x2, y2 = item.box
        colour = (0, 0, 255) if verdict == DEFECT else (0, 200, 0) if verdict == PASS else (0, 200, 255)
        cv2.rectangle(img, (int(x1 - x0), int(y1 - y0)), (int(x2 - x0), int(y2 - y0)), colour, 2)
        if changed is not None and ref is not None and changed.any():
            # changed mask is in reference coordinates centred on the part centre
            ch, cw = changed.shape
            cx, cy = item.centre
            cnts, _ = cv2.findContours(changed, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
            off = np.array([[int(round(cx - cw / 2)), int(round(cy - ch / 2))]], np.int32)
            cv2.drawContours(img, [c + off for c in cnts], -1, (0, 0, 255), 2)
        text = f"#{item.part} {verdict}" + (f" {item.serial}" if item.serial else "")
        cv2.putText(img, text, (4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 3, cv2.LINE_AA)
        cv2.putText(img, text, (4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
        ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, self.cfg.jpeg_quality])
        return buf.tobytes() if ok else None

    # ------------------------------------------------------------------ end of stream
    def flush(self) -> list[tuple[Event, bytes | None]]:
        """Judge every part still waiting (end of stream): the biggest consistent group of at
        least min(3, learn_parts) alike parts learns a reference from what there is; a part
        left alone is judged against the nearest-size reference (it is unlike all of them:
        DEFECT) or, with none, gets UNKNOWN."""
        out: list[tuple[Event, bytes | None]] = []
        need = min(3, self.cfg.learn_parts)
        while self._pool:
            first = self._pool[0]
            m = self._match(first)
            if m is not None:
                self._pool.pop(0)
                out.append(self._verdict(first, m[0], m[1], retro=True))
                continue
            group = self._cluster(first, need)
            if group and first in group:
                out.extend(self._learn(group))
                continue
            self._pool.pop(0)
            cands = self._candidates(first)
            if cands:
                out.append(self._judge(first, cands[0], retro=True))
            else:
                out.append(self._emit(first, UNKNOWN, -1, -1, None, None, retro=True))
        return out


# --------------------------------------------------------------------------- evaluation

class ConveyorEvaluator:
    """Scores a DefectWatch against per-frame ground truth (no stream import: duck-typed).

    Call `observe(frame_seq, truth)` after `watch.update()` for every frame, where truth has
    `boxes` (N,4) xyxy, `ids` (N,), `defect` (N,) bool and `labels` (N,) str - e.g.
    `SyntheticSource.truth(i)`. A true part is expected to be counted when its true centre
    crosses the watch's line after `skip_frames` (detector warm-up and track confirmation).
    Each counted crossing is matched, on its own frame, to the true box of highest IoU.
    `summary()` after `watch.flush()` gives the figures.
    """

    def __init__(self, watch: DefectWatch, skip_frames: int = 30, min_iou: float = 0.3) -> None:
        self.watch = watch
        self.skip_frames = int(skip_frames)
        self.min_iou = float(min_iou)
        self._prev_side: dict[int, float] = {}
        self.true_cross: dict[int, dict[str, Any]] = {}    # true id -> info
        self.match: dict[int, int] = {}                     # part number -> true id
        self._seen_crossings = 0
        self._first_seq: int | None = None

    def observe(self, frame_seq: int, truth: Any, frame_size: tuple[int, int] | None = None) -> None:
        if self._first_seq is None:
            self._first_seq = int(frame_seq)
        w = self.watch
        size = frame_size or w._frame_size
        if size is None:
            return
        pts = w._line_for(*size)
        boxes = np.asarray(truth.boxes, np.float64).reshape(-1, 4)
        ids = np.asarray(truth.ids).tolist()
        if boxes.shape[0]:
            side, t = w._side(pts, centers(boxes))
            late = frame_seq - self._first_seq >= self.skip_frames
            for r, k in enumerate(ids):
                p = self._prev_side.get(k)
                if late and p is not None and p < 0 <= side[r] and 0 <= t[r] <= 1 \
                        and k not in self.true_cross:
                    self.true_cross[k] = {"defect": bool(truth.defect[r]), "label": truth.labels[r],
                                          "seq": int(frame_seq)}
            self._prev_side = dict(zip(ids, side.tolist()))
        # match crossings the watch made on this frame
        cr = list(w.crossings)[self._seen_crossings:]
        self._seen_crossings = len(w.crossings)
        for c in cr:
            if boxes.shape[0] == 0:
                continue
            iou = iou_matrix(c.box, boxes)[0]
            j = int(np.argmax(iou))
            if iou[j] >= self.min_iou:
                self.match[c.part] = int(ids[j])

    def summary(self) -> dict[str, Any]:
        w = self.watch
        truth_ids = set(self.true_cross)
        matched_ids = [k for k in self.match.values()]
        counts = collections.Counter(matched_ids)
        # counted parts whose true part crossed within the evaluated window
        in_window = {p: k for p, k in self.match.items() if k in truth_ids}
        parts = len([c for c in w.crossings if self.match.get(c.part) in truth_ids
                     or c.part not in self.match])
        dup = sum(v - 1 for k, v in counts.items() if k in truth_ids and v > 1)
        unmatched = sum(1 for c in w.crossings if c.part not in self.match)
        missed = len(truth_ids - set(matched_ids))
        tp = fp = fn = tn = 0
        read_ok = 0
        judged = 0
        unknown = 0
        by_part = {v.part: v for v in w.verdicts}
        for p, k in in_window.items():
            v = by_part.get(p)
            info = self.true_cross[k]
            if v is not None and v.serial == info["label"]:
                read_ok += 1
            if v is None or v.verdict == UNKNOWN:
                unknown += 1
                continue
            judged += 1
            d = v.verdict == DEFECT
            tp += d and info["defect"]
            fp += d and not info["defect"]
            fn += (not d) and info["defect"]
            tn += (not d) and not info["defect"]
        n_true = len(truth_ids)
        ms = sorted(w.judge_ms)
        pm = sorted(w.part_ms)
        return {
            "parts": parts, "parts_true": n_true, "parts_matched": len(set(in_window.values())),
            "parts_missed": missed, "parts_duplicate": dup, "parts_unmatched": unmatched,
            "count_exact": missed == 0 and dup == 0 and unmatched == 0,
            "defects_true": sum(1 for k in truth_ids if self.true_cross[k]["defect"]),
            "tp": tp, "fp": fp, "fn": fn, "tn": tn, "unknown": unknown,
            "defect_precision": round(tp / (tp + fp), 4) if tp + fp else 1.0,
            "defect_recall": round(tp / (tp + fn), 4) if tp + fn else 1.0,
            "label_read_rate": round(read_ok / len(in_window), 4) if in_window else 0.0,
            "judge_ms_median": round(ms[len(ms) // 2], 2) if ms else None,
            "part_ms_median": round(pm[len(pm) // 2], 2) if pm else None,
            "references": len(w.references),
        }
