"""Motion detector (background subtraction) and a motion gate for expensive detectors.

MotionDetector keeps a background model, so it is stateful: one instance per camera,
fed frames in order. A frame whose size differs from the previous one resets the model
(a reconnect at another resolution must not compare against a stale background).

Pipeline per frame: optional downscale -> optional Gaussian blur -> MOG2/KNN
foreground mask (shadows, if detected, count as background) -> morphological open
(removes speckle) and close (fills holes) -> optional dilation that joins nearby blobs
-> connected components. Each component becomes one box: the bounding box of its
*undilated* foreground pixels, so merging does not inflate boxes. Score = fraction of
the box covered by foreground (0..1).

GatedDetector runs an expensive detector only when (mode "frame") or only where
(mode "region") the motion detector found something.
"""
from __future__ import annotations

from typing import Any

import cv2
import numpy as np
from scipy import ndimage

from core.boxes import area as box_area
from core.boxes import clip_xyxy
from core.config import MotionConfig
from core.types import ROTATED_BOX, Detections, Frame
from detectors.base import Detector, DetectorError, as_bgr, closed_guard, config_section, frame_meta, log

__all__ = ["MotionDetector", "GatedDetector"]

_DEFAULT_THRESHOLD = {"mog2": 16.0, "knn": 400.0}
# Frames after (re)initialisation whose mask is all foreground whatever the scene:
# measured on a static noisy scene, MOG2 marks only its first frame, KNN its first four.
_MIN_WARMUP = {"mog2": 1, "knn": 4}


def _kernel(size: int) -> np.ndarray | None:
    return None if size <= 1 else cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))


class MotionDetector:
    """Background-subtraction motion boxes, configured by its `detectors.motion` section
    (core.config.MotionConfig; sizes and areas in original frame pixels); keyword arguments
    override fields.

    learning_rate -1 is OpenCV's fast schedule during warm-up, then 1/history. warmup_frames
    is never fewer than the subtractor needs to stop flagging everything (mog2 1, knn 4).
    max_side bounds the processed image: a larger frame is downscaled further (a 4000x3000
    frame costs ~3 s at full size).
    """

    name = "motion"
    class_names = ["motion"]
    _closed = False

    def __init__(self, cfg: MotionConfig | None = None, /, **overrides: Any) -> None:
        self.cfg = c = config_section(MotionConfig, cfg, overrides, "motion")
        self.var_threshold = c.var_threshold if c.var_threshold is not None \
            else _DEFAULT_THRESHOLD[c.method]
        self.warmup_frames = max(c.warmup_frames, _MIN_WARMUP[c.method])
        self._scale = 1.0  # effective downscale for the current frame size
        self._blur = 0
        self._open = self._close = self._merge = None
        self._bg: Any = None
        self._shape: tuple[int, int] | None = None
        self._frames = 0
        self.last_mask: np.ndarray | None = None  # uint8 0/255 at processing scale
        self.last_detections: Detections = Detections.empty()

    # -- state -------------------------------------------------------------------------
    def reset(self) -> None:
        """Forget the background model (the next frames warm up again)."""
        self._bg = None
        self._shape = None
        self._frames = 0
        self.last_mask = None
        self.last_detections = Detections.empty()

    @property
    def frames_seen(self) -> int:
        return self._frames

    @property
    def warming_up(self) -> bool:
        return self._frames <= self.warmup_frames

    def _make_bg(self) -> Any:
        if self.cfg.method == "mog2":
            return cv2.createBackgroundSubtractorMOG2(self.cfg.history, self.var_threshold,
                                                      self.cfg.detect_shadows)
        return cv2.createBackgroundSubtractorKNN(self.cfg.history, self.var_threshold,
                                                 self.cfg.detect_shadows)

    # -- processing ----------------------------------------------------------------------
    def _init_for(self, shape: tuple[int, int]) -> None:
        """(Re)start the model for frames of this (h, w); kernels scaled to processing pixels."""
        if self._shape is not None:
            log.info("motion: frame size changed %s -> %s, background reset", self._shape, shape)
        self.reset()
        self._shape = shape
        d = self._scale = max(self.cfg.downscale, max(shape) / self.cfg.max_side, 1.0)
        b = round(self.cfg.blur / d) if self.cfg.blur else 0
        self._blur = b + 1 - b % 2 if b >= 2 else 0  # odd, or off when it shrinks below 3
        self._open = _kernel(round(self.cfg.open_kernel / d))
        self._close = _kernel(round(self.cfg.close_kernel / d))
        md = round(self.cfg.merge_distance / d)
        self._merge = _kernel(md + 1) if md > 0 else None
        self._bg = self._make_bg()

    def _foreground(self, img: np.ndarray) -> np.ndarray:
        if self._shape != img.shape[:2]:
            self._init_for(img.shape[:2])
        if self._scale > 1.0:
            h, w = img.shape[:2]
            img = cv2.resize(img, (max(1, round(w / self._scale)), max(1, round(h / self._scale))),
                             interpolation=cv2.INTER_AREA)
        if self._blur:
            img = cv2.GaussianBlur(img, (self._blur, self._blur), 0)
        lr = self.cfg.learning_rate
        if lr < 0 and self._frames >= self.warmup_frames:
            # OpenCV's automatic rate is 1/min(2n, history): right for learning the scene,
            # but a few frames after start it lets a new object's colour become "background"
            # within two frames (its Gaussian reaches the 1 - backgroundRatio weight). After
            # warm-up, use the steady-state rate that `history` promises.
            lr = 1.0 / self.cfg.history
        fg = self._bg.apply(img, learningRate=lr)
        # shadows are 127 when detect_shadows; keep only sure foreground
        mask = np.where(fg > 200, np.uint8(255), np.uint8(0))
        if self._open is not None:
            mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, self._open)
        if self._close is not None:
            mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, self._close)
        return mask

    def _boxes(self, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(N,4) xyxy boxes at processing scale and foreground pixel counts."""
        fg = mask > 0
        if not fg.any():
            return np.zeros((0, 4)), np.zeros(0)
        grouping = cv2.dilate(mask, self._merge) if self._merge is not None else mask
        n, labels = cv2.connectedComponents(grouping, connectivity=8, ltype=cv2.CV_32S)
        labels = np.where(fg, labels, 0)  # boxes from undilated pixels only
        counts = np.bincount(labels.ravel(), minlength=n)[1:]
        slices = ndimage.find_objects(labels, max_label=n - 1)
        present = np.array([s is not None for s in slices], bool)
        if not present.any():
            return np.zeros((0, 4)), np.zeros(0)
        sl = [s for s in slices if s is not None]
        boxes = np.array([[s[1].start, s[0].start, s[1].stop, s[0].stop] for s in sl], np.float64)
        return boxes, counts[present].astype(np.float64)

    @closed_guard
    def update(self, frame: Frame | np.ndarray) -> Detections:
        """Feed one frame; returns its motion boxes (empty during warm-up, and after close())."""
        seq, ts = frame_meta(frame)
        img = as_bgr(frame)
        if img is None:
            return Detections.empty(seq, ts)
        h, w = img.shape[:2]
        try:
            mask = self._foreground(img)
        except cv2.error as e:
            log.warning("motion: frame %s %s failed: %s", seq, img.shape, e)
            return Detections.empty(seq, ts)
        self._frames += 1
        self.last_mask = mask
        if self._frames <= self.warmup_frames:
            self.last_detections = Detections.empty(seq, ts)
            return self.last_detections
        boxes, counts = self._boxes(mask)
        sx, sy = w / mask.shape[1], h / mask.shape[0]
        boxes = boxes * np.array([sx, sy, sx, sy])
        counts = counts * (sx * sy)
        area = box_area(boxes)
        keep = counts >= self.cfg.min_area
        if self.cfg.max_area is not None:
            keep &= area <= self.cfg.max_area
        boxes, counts, area = boxes[keep], counts[keep], area[keep]
        order = np.argsort(-counts, kind="stable")[: self.cfg.max_det]
        score = np.clip(counts[order] / np.maximum(area[order], 1.0), 0.0, 1.0)
        boxes = clip_xyxy(boxes[order], w, h)
        self.last_detections = Detections(boxes, score, np.zeros(len(order), np.int32),
                                          label=["motion"] * len(order), frame_seq=seq, ts=ts)
        return self.last_detections

    detect = update

    def close(self) -> None:
        """Drop the background model and the last mask (idempotent; update()/detect() then
        find nothing)."""
        self._closed = True
        self._bg = None
        self.last_mask = None

    def has_motion(self, frame: Frame | np.ndarray) -> bool:
        """Feed one frame and say whether any motion box was found (False during warm-up)."""
        return len(self.update(frame)) > 0

    def motion_mask(self, size: tuple[int, int] | None = None) -> np.ndarray | None:
        """Last foreground mask (uint8 0/255); resized to size=(w, h) when given."""
        if self.last_mask is None or size is None:
            return self.last_mask
        return cv2.resize(self.last_mask, (int(size[0]), int(size[1])),
                          interpolation=cv2.INTER_NEAREST)

    def __repr__(self) -> str:
        return f"MotionDetector(method={self.cfg.method!r}, downscale={self.cfg.downscale})"


class GatedDetector:
    """Run `inner` only when (mode "frame") or only where (mode "region") `gate` sees motion.

    Region mode crops the union bounding box of the motion boxes, padded by `pad`
    pixels and grown to at least `min_region` per side, runs `inner` on the crop and
    shifts its boxes back. While the gate is still warming up it cannot tell motion
    from background, so the inner detector runs on the whole frame (fail open).
    Counters: `inner_runs`, `skipped` (frames with no motion, inner not run).
    close() closes both the gate and the inner detector.
    """

    _closed = False

    def __init__(self, inner: Detector, gate: MotionDetector, mode: str = "frame",
                 pad: int = 32, min_region: int = 128) -> None:
        if mode not in ("frame", "region"):
            raise DetectorError(f"gate mode must be 'frame' or 'region', got {mode!r}")
        if not 0 <= int(pad) <= 4096:
            raise DetectorError(f"pad must be in 0..4096, got {pad}")
        if not 1 <= int(min_region) <= 8192:
            raise DetectorError(f"min_region must be in 1..8192, got {min_region}")
        self.inner = inner
        self.gate = gate
        self.mode = mode
        self.pad = int(pad)
        self.min_region = int(min_region)
        self.name = f"{getattr(inner, 'name', 'detector')}+motion"
        self.class_names = list(getattr(inner, "class_names", []))
        self.inner_runs = 0
        self.skipped = 0
        self.last_region: tuple[int, int, int, int] | None = None

    def region(self, motion_xyxy: np.ndarray, width: int, height: int) -> tuple[int, int, int, int]:
        """Padded union box of the motion boxes, clipped to the frame, as ints x1,y1,x2,y2."""
        b = np.asarray(motion_xyxy, np.float64).reshape(-1, 4)
        x1, y1 = b[:, 0].min() - self.pad, b[:, 1].min() - self.pad
        x2, y2 = b[:, 2].max() + self.pad, b[:, 3].max() + self.pad
        out = []
        for lo, hi, size in ((x1, x2, width), (y1, y2, height)):
            grow = max(0.0, min(self.min_region, size) - (hi - lo))
            lo, hi = lo - grow / 2, hi + grow / 2
            shift = max(0.0, -lo) - max(0.0, hi - size)  # slide back inside the frame
            lo, hi = max(0.0, lo + shift), min(float(size), hi + shift)
            out.append((int(np.floor(lo)), int(np.ceil(hi))))
        (a, c), (b_, d) = out
        return a, b_, c, d

    @closed_guard
    def detect(self, frame: Frame | np.ndarray) -> Detections:
        seq, ts = frame_meta(frame)
        img = as_bgr(frame)
        if img is None:
            return Detections.empty(seq, ts)
        motion = self.gate.update(img)
        self.last_region = None
        if self.gate.warming_up:
            self.inner_runs += 1
            return self.inner.detect(frame).with_frame(seq, ts)
        if len(motion) == 0:
            self.skipped += 1
            return Detections.empty(seq, ts)
        self.inner_runs += 1
        if self.mode == "frame":
            return self.inner.detect(frame).with_frame(seq, ts)
        h, w = img.shape[:2]
        x1, y1, x2, y2 = self.region(motion.xyxy, w, h)
        self.last_region = (x1, y1, x2, y2)
        dets = self.inner.detect(np.ascontiguousarray(img[y1:y2, x1:x2]))
        if len(dets) == 0:
            return Detections.empty(seq, ts)
        shifted = dets.xyxy + np.array([x1, y1, x1, y1], np.float32)
        data = dict(dets.data) if dets.data else {}
        if ROTATED_BOX in data:  # (cx, cy, w, h, angle): centres move with the crop
            rot = np.array(data[ROTATED_BOX], np.float32, copy=True).reshape(-1, 5)
            rot[:, 0] += x1
            rot[:, 1] += y1
            data[ROTATED_BOX] = rot
        return Detections(shifted, dets.score, dets.class_id, dets.label, dets.text, seq, ts,
                          data=data or None)

    def close(self) -> None:
        """Close the gate and the inner detector (idempotent)."""
        self._closed = True
        self.gate.close()
        close = getattr(self.inner, "close", None)
        if close is not None:
            close()

    def __repr__(self) -> str:
        return f"GatedDetector({self.inner!r}, mode={self.mode!r}, pad={self.pad})"
