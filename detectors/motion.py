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

from core.types import Detections, Frame
from detectors.base import Detector, DetectorError, as_bgr, frame_meta, log

__all__ = ["MotionDetector", "GatedDetector"]

_DEFAULT_THRESHOLD = {"mog2": 16.0, "knn": 400.0}
# Frames after (re)initialisation whose mask is all foreground whatever the scene:
# measured on a static noisy scene, MOG2 marks only its first frame, KNN its first four.
_MIN_WARMUP = {"mog2": 1, "knn": 4}


def _kernel(size: int) -> np.ndarray | None:
    return None if size <= 1 else cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))


class MotionDetector:
    """Background-subtraction motion boxes.

    Keyword parameters (sizes and areas in original frame pixels):
      method: "mog2" | "knn" ("mog2")
      history: frames in the background model, 1..10000 (500)
      var_threshold: MOG2 varThreshold / KNN dist2Threshold, 1..10000; None = OpenCV default
        for the method (16 for mog2, 400 for knn)
      detect_shadows: model shadows (then they are dropped from the mask) (False)
      learning_rate: -1 (automatic: OpenCV's fast schedule during warm-up, then 1/history)
        or a fixed rate in 0..1 (-1)
      blur: Gaussian kernel size before subtraction, 0 (off) or odd 3..31 (5)
      open_kernel: opening kernel size, 0..31 (3); close_kernel: closing, 0..31 (7)
      merge_distance: dilate by this many pixels so blobs closer than it merge, 0..200 (0)
      min_area: smallest foreground pixel count of a box, 0..1e7 (150)
      max_area: largest box area, None or > min_area (None)
      warmup_frames: frames used only to learn the background, 0..10000 (10); never fewer
        than the subtractor needs to stop flagging everything (mog2 1, knn 4)
      downscale: process at 1/downscale of the frame size, 1.0..8.0 (1.0)
      max_side: the processed image's longer side is at most this, 64..8192 (1280): a
        larger frame is downscaled further (a 4000x3000 frame costs ~3 s at full size)
      max_det: keep the largest N boxes, 1..1000 (100)
    """

    name = "motion"
    class_names = ["motion"]

    def __init__(
        self,
        method: str = "mog2",
        history: int = 500,
        var_threshold: float | None = None,
        detect_shadows: bool = False,
        learning_rate: float = -1.0,
        blur: int = 5,
        open_kernel: int = 3,
        close_kernel: int = 7,
        merge_distance: int = 0,
        min_area: float = 150.0,
        max_area: float | None = None,
        warmup_frames: int = 10,
        downscale: float = 1.0,
        max_side: int = 1280,
        max_det: int = 100,
    ) -> None:
        method = str(method).lower()
        if method not in _DEFAULT_THRESHOLD:
            raise DetectorError(f"motion method must be 'mog2' or 'knn', got {method!r}")
        if not 1 <= int(history) <= 10000:
            raise DetectorError(f"history must be in 1..10000, got {history}")
        if var_threshold is not None and not 1.0 <= float(var_threshold) <= 10000.0:
            raise DetectorError(f"var_threshold must be in 1..10000, got {var_threshold}")
        lr = float(learning_rate)
        if not (lr == -1.0 or 0.0 <= lr <= 1.0):
            raise DetectorError(f"learning_rate must be -1 or in 0..1, got {learning_rate}")
        if int(blur) != 0 and not (3 <= int(blur) <= 31 and int(blur) % 2 == 1):
            raise DetectorError(f"blur must be 0 or an odd size in 3..31, got {blur}")
        for key, v in (("open_kernel", open_kernel), ("close_kernel", close_kernel)):
            if not 0 <= int(v) <= 31:
                raise DetectorError(f"{key} must be in 0..31, got {v}")
        if not 0 <= int(merge_distance) <= 200:
            raise DetectorError(f"merge_distance must be in 0..200, got {merge_distance}")
        if not 0 <= float(min_area) <= 1e7:
            raise DetectorError(f"min_area must be in 0..1e7, got {min_area}")
        if max_area is not None and float(max_area) <= float(min_area):
            raise DetectorError(f"max_area ({max_area}) must exceed min_area ({min_area})")
        if not 0 <= int(warmup_frames) <= 10000:
            raise DetectorError(f"warmup_frames must be in 0..10000, got {warmup_frames}")
        if not 1.0 <= float(downscale) <= 8.0:
            raise DetectorError(f"downscale must be in 1.0..8.0, got {downscale}")
        if not 64 <= int(max_side) <= 8192:
            raise DetectorError(f"max_side must be in 64..8192, got {max_side}")
        if not 1 <= int(max_det) <= 1000:
            raise DetectorError(f"max_det must be in 1..1000, got {max_det}")
        self.method = method
        self.history = int(history)
        self.var_threshold = float(var_threshold if var_threshold is not None
                                   else _DEFAULT_THRESHOLD[method])
        self.detect_shadows = bool(detect_shadows)
        self.learning_rate = lr
        self.blur = int(blur)
        self.downscale = float(downscale)
        self.open_kernel = int(open_kernel)
        self.close_kernel = int(close_kernel)
        self.merge_distance = int(merge_distance)
        self._scale = 1.0  # effective downscale for the current frame size
        self._blur = 0
        self._open = self._close = self._merge = None
        self.min_area = float(min_area)
        self.max_area = None if max_area is None else float(max_area)
        self.warmup_frames = max(int(warmup_frames), _MIN_WARMUP[method])
        self.max_side = int(max_side)
        self.max_det = int(max_det)
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
        if self.method == "mog2":
            return cv2.createBackgroundSubtractorMOG2(self.history, self.var_threshold,
                                                      self.detect_shadows)
        return cv2.createBackgroundSubtractorKNN(self.history, self.var_threshold,
                                                 self.detect_shadows)

    # -- processing ----------------------------------------------------------------------
    def _init_for(self, shape: tuple[int, int]) -> None:
        """(Re)start the model for frames of this (h, w); kernels scaled to processing pixels."""
        if self._shape is not None:
            log.info("motion: frame size changed %s -> %s, background reset", self._shape, shape)
        self.reset()
        self._shape = shape
        d = self._scale = max(self.downscale, max(shape) / self.max_side, 1.0)
        b = round(self.blur / d) if self.blur else 0
        self._blur = b + 1 - b % 2 if b >= 2 else 0  # odd, or off when it shrinks below 3
        self._open = _kernel(round(self.open_kernel / d))
        self._close = _kernel(round(self.close_kernel / d))
        md = round(self.merge_distance / d)
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
        lr = self.learning_rate
        if lr < 0 and self._frames >= self.warmup_frames:
            # OpenCV's automatic rate is 1/min(2n, history): right for learning the scene,
            # but a few frames after start it lets a new object's colour become "background"
            # within two frames (its Gaussian reaches the 1 - backgroundRatio weight). After
            # warm-up, use the steady-state rate that `history` promises.
            lr = 1.0 / self.history
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

    def update(self, frame: Frame | np.ndarray) -> Detections:
        """Feed one frame; returns its motion boxes (empty during warm-up)."""
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
        area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
        keep = counts >= self.min_area
        if self.max_area is not None:
            keep &= area <= self.max_area
        boxes, counts, area = boxes[keep], counts[keep], area[keep]
        order = np.argsort(-counts, kind="stable")[: self.max_det]
        score = np.clip(counts[order] / np.maximum(area[order], 1.0), 0.0, 1.0)
        boxes = np.clip(boxes[order], 0, [w, h, w, h])
        self.last_detections = Detections(boxes, score, np.zeros(len(order), np.int32),
                                          label=["motion"] * len(order), frame_seq=seq, ts=ts)
        return self.last_detections

    detect = update

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
        return f"MotionDetector(method={self.method!r}, downscale={self.downscale})"


class GatedDetector:
    """Run `inner` only when (mode "frame") or only where (mode "region") `gate` sees motion.

    Region mode crops the union bounding box of the motion boxes, padded by `pad`
    pixels and grown to at least `min_region` per side, runs `inner` on the crop and
    shifts its boxes back. While the gate is still warming up it cannot tell motion
    from background, so the inner detector runs on the whole frame (fail open).
    Counters: `inner_runs`, `skipped` (frames with no motion, inner not run).
    """

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
        return Detections(shifted, dets.score, dets.class_id, dets.label, dets.text, seq, ts)

    def __repr__(self) -> str:
        return f"GatedDetector({self.inner!r}, mode={self.mode!r}, pad={self.pad})"
