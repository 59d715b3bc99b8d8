"""Long exposure: a running average of every source frame, with optional motion trails.

Two modes:
- "ema": exponential moving average, acc = (1-alpha)*acc + alpha*frame, in a float32
  accumulator (cv2.accumulateWeighted). O(1) memory, the past fades with time constant
  ~1/alpha frames.
- "window": the exact mean of the last N frames. A running int32 sum (255*1000 fits easily,
  so it stays exact) plus a ring buffer of the last N frames: the oldest frame is subtracted
  when it leaves. Memory: N full frames (N*H*W*3 bytes, e.g. 50 frames at 768x576 = 66 MB);
  N is bounded by `window` (2..1000) and by `max_memory_mb`: when the first frame shows that
  N frames would exceed it, the effective window is reduced (logged, see `effective_window`).

Unwatched (`update(image, watched=False)`: nobody on the exposure stream), the EMA folds in
only every IDLE_EVERY-th frame, with the weight of the k frames it stands for,
1 - (1 - alpha)**k: the same time constant in frames, a static scene gives the same picture,
and a viewer who opens the stream sees the average of the same past (sampled every
IDLE_EVERY frames) at once, every frame from then on. Saves ~3/4 of the accumulation
(0.13 ms per 768x576 frame) on every camera nobody watches. The window mode keeps every frame
(its mean is over N frames, not a time constant).

`update()` is cheap and runs on every source frame; the 8-bit picture is computed lazily by
`image()` (only when someone watches) and cached until the next update. A new array is
returned each time it changes, so it can be published by reference.

Trails (`trails=True`): the average alone shows moving things only as faint ghosts and hides
where they are *now*. Trails mode blends the current frame over the average:
    out = (1 - trails_weight) * avg + trails_weight * frame          (cv2.addWeighted)
Static background is unchanged (frame == avg there); the moving objects appear at their
current position with opacity trails_weight, and the smeared ghosts of where they were (the
trails, fading as the average forgets them) keep (1 - trails_weight) of their strength.
0.5 gives both equal weight. A per-pixel mask ("show the frame only where it differs from
the average") was tried and rejected: right behind a moving object the average still holds
the freshest part of the trail while the frame shows background, so the mask erased the
trail exactly where it is strongest.
"""
from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from typing import Any

import cv2
import numpy as np

from core.config import ExposureConfig, resolve_section
from core.memsize import array_bytes

__all__ = ["LongExposure", "EXPOSURE_MODES"]

log = logging.getLogger(__name__)

EXPOSURE_MODES = ("ema", "window")

IDLE_EVERY = 4  # unwatched EMA: one accumulation per this many frames (module docstring)


class LongExposure:
    """Running average of frames; see the module docstring.

    Configured by its `exposure:` section (core.config.ExposureConfig: mode, alpha, window,
    trails, trails_weight, with their defaults and bounds); keyword arguments override fields
    of `cfg` (bad ones raise ValueError naming the key). max_memory_mb: cap on the window ring
    buffer, 16..16384 (default 1024; not a config key).
    Thread-safe: update() and image() may be called from different threads.
    """

    def __init__(self, cfg: ExposureConfig | Mapping[str, Any] | None = None, /, *,
                 max_memory_mb: float = 1024.0, **overrides: Any) -> None:
        c = resolve_section(ExposureConfig, cfg, overrides, where="exposure")
        if not 16 <= float(max_memory_mb) <= 16384:
            raise ValueError(f"max_memory_mb must be in 16..16384, got {max_memory_mb}")
        mode, alpha, window, trails, trails_weight = c.mode, c.alpha, c.window, c.trails, c.trails_weight
        self.mode = mode
        self.alpha = float(alpha)
        self.window = int(window)
        self.trails = bool(trails)
        self.trails_weight = float(trails_weight)
        self.max_memory_mb = float(max_memory_mb)
        # weight of the newest frame when it stands for k frames (k = 1..IDLE_EVERY)
        self._alpha_k = [0.0] + [1.0 - (1.0 - self.alpha) ** k for k in range(1, IDLE_EVERY + 1)]
        self._lock = threading.Lock()
        self.resets = 0
        self._clear()

    def _clear(self) -> None:
        self.frames = 0  # frames accumulated since the last reset
        self._shape: tuple[int, ...] | None = None
        self._acc: np.ndarray | None = None  # ema: float32 accumulator
        self._sum: np.ndarray | None = None  # window: int32 running sum
        self._ring: np.ndarray | None = None  # window: (N, H, W, C) uint8
        self._head = 0  # window: next ring slot to write
        self._n = 0  # window: frames currently in the ring
        self._pending = 0  # ema: frames since the last accumulation (unwatched skips)
        self.accumulated = 0  # ema: accumulations since the last reset
        self._last: np.ndarray | None = None  # copy of the newest frame (trails)
        self._cached: np.ndarray | None = None
        self._cached_at = -1
        self.effective_window = self.window

    def memory_bytes(self, seen: set[int] | None = None) -> int:
        """Bytes of the accumulator, the window ring and sum, the trails frame and the cached
        image (bounded by max_memory_mb for the ring)."""
        with self._lock:
            arrays = (self._acc, self._sum, self._ring, self._last, self._cached)
        return sum(array_bytes(a, seen) for a in arrays)

    def reset(self) -> None:
        """Forget everything; the next frame starts a new exposure."""
        with self._lock:
            self._clear()
            self.resets += 1

    def update(self, image: np.ndarray, watched: bool = True) -> None:
        """Add one source frame (uint8, (H,W,3) or (H,W)). A new size restarts the exposure.
        `watched=False` (nobody looks): the EMA may fold this frame in with the next one it
        accumulates (module docstring)."""
        if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim not in (2, 3) \
                or image.size == 0:
            raise ValueError("LongExposure.update() needs a non-empty uint8 image")
        with self._lock:
            if self._shape is not None and image.shape != self._shape:
                log.info("long exposure: frame size %s -> %s, resetting", self._shape, image.shape)
                self._clear()
                self.resets += 1
            if self._shape is None:
                self._start(image)
            elif self.mode == "ema":
                k = self._pending + 1
                if watched or k >= IDLE_EVERY:
                    cv2.accumulateWeighted(image, self._acc, self._alpha_k[k])
                    self._pending = 0
                    self.accumulated += 1
                else:
                    self._pending = k
            else:
                self._push(image)
            if self.trails:
                # a reference, not a copy: source frames are never written to after capture
                # (the overlay is drawn on a copy), and this saves a full-frame copy per frame
                self._last = image
            self.frames += 1

    def _start(self, image: np.ndarray) -> None:
        self._shape = image.shape
        if self.mode == "ema":
            self._acc = image.astype(np.float32)
            self.accumulated = 1
        else:
            n = self.window
            budget = int(self.max_memory_mb * 2**20)
            if n * image.nbytes > budget:
                n = max(2, budget // image.nbytes)
                log.warning("long exposure: window %d frames of %s would exceed %.0f MB, using %d",
                            self.window, image.shape, self.max_memory_mb, n)
            self.effective_window = n
            self._ring = np.empty((n,) + image.shape, np.uint8)
            self._sum = np.zeros(image.shape, np.int32)
            self._push(image)
        if self.trails:
            self._last = image

    def _push(self, image: np.ndarray) -> None:
        slot = self._ring[self._head]
        if self._n == self._ring.shape[0]:
            np.subtract(self._sum, slot, out=self._sum)  # oldest frame leaves the window
        else:
            self._n += 1
        np.add(self._sum, image, out=self._sum)
        np.copyto(slot, image)
        self._head = (self._head + 1) % self._ring.shape[0]

    def image(self) -> np.ndarray | None:
        """The current exposure as uint8 (same shape as the frames); None before any frame.

        Cached until the next update(); treat the result as read-only.
        """
        with self._lock:
            if self._shape is None:
                return None
            if self._cached_at == self.frames and self._cached is not None:
                return self._cached
            if self.mode == "ema":
                avg = cv2.convertScaleAbs(self._acc)  # rounds and saturates to uint8
            else:
                # sum * (1/n) rounded to nearest; exact for the integer sum (±0.5 before rounding)
                avg = cv2.convertScaleAbs(self._sum, alpha=1.0 / self._n)
            if self.trails and self.trails_weight > 0:
                avg = self._blend_trails(avg, self._last)
            self._cached, self._cached_at = avg, self.frames
            return avg

    def _blend_trails(self, avg: np.ndarray, cur: np.ndarray) -> np.ndarray:
        w = self.trails_weight
        return cv2.addWeighted(avg, 1.0 - w, cur, w, 0.0)

    @property
    def count(self) -> int:
        """Frames that make up the current picture (window: at most the window size)."""
        return self._n if self.mode == "window" else self.frames

    def stats(self) -> dict:
        return {"mode": self.mode, "frames": self.frames, "count": self.count,
                "resets": self.resets, "alpha": self.alpha, "window": self.effective_window,
                "trails": self.trails}
