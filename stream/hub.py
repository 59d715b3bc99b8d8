"""FrameHub: one producer, many viewers, one JPEG encode per published frame.

The producer (a camera's publisher thread) calls `publish()` with the newest BGR image.
That is O(1): it stores a reference, drops the JPEG cache of the previous frame and
wakes waiting viewers. It never encodes and never waits for a viewer.

Viewers (`subscribe()` -> `Viewer`) wait for a frame newer than the last one they got,
always jumping to the newest (a slow viewer skips frames; it never delays the producer or
other viewers). Each viewer waits on its own condition (sharing the hub's lock): a publish
wakes the viewers waiting for a frame, close() wakes them all, and `Viewer.cancel()` (the
server saw the client disconnect) wakes that viewer alone, at once, from any thread, so a
dead viewer's stream ends between frames. The JPEG is encoded lazily by the first viewer
that needs a given (frame, width); concurrent viewers of the same key wait on that key's
lock for the same bytes instead of encoding again. With no viewers nothing is encoded.

Only the newest frame's JPEGs are cached (one per requested width, at most `max_variants`),
so memory is bounded whatever the number of viewers.

Images are published *by reference*: the producer must not write into an array after
publishing it (draw the overlay on a fresh copy each frame, which the pipeline does anyway).
"""
from __future__ import annotations

import contextlib
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Iterator

import cv2
import numpy as np

from core.camera import JpegFrame
from core.memsize import array_bytes

__all__ = ["FrameHub", "Viewer", "MIN_WIDTH", "MAX_WIDTH"]


MIN_WIDTH = 32
MAX_WIDTH = 3840
_WIDTH_STEP = 8  # requested widths are rounded to a multiple of this (fewer cache variants)
_RECENT_KEYS = 512  # (generation, width) pairs remembered for the encodes-per-key check


class _Entry:
    """Cache slot for one (generation, width): its own lock so one viewer encodes it."""

    __slots__ = ("lock", "frame")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.frame: JpegFrame | None = None


@dataclass(frozen=True)
class _Snap:
    gen: int
    image: np.ndarray
    seq: int
    ts: float
    wall_ts: float


class FrameHub:
    """Newest-frame hub for one camera and one stream kind (overlay, exposure, ...).

    quality: JPEG quality 1..100 (default 80). max_variants: distinct `width` variants
    cached for the newest frame (1..32, default 6); beyond it the least recently used
    width is evicted (it would be encoded again if asked for again on the same frame).
    """

    def __init__(self, name: str = "", quality: int = 80, max_variants: int = 6,
                 min_width: int = MIN_WIDTH, max_width: int = MAX_WIDTH) -> None:
        if not 1 <= int(quality) <= 100:
            raise ValueError(f"quality must be in 1..100, got {quality}")
        if not 1 <= int(max_variants) <= 32:
            raise ValueError(f"max_variants must be in 1..32, got {max_variants}")
        if not MIN_WIDTH <= int(min_width) <= int(max_width) <= MAX_WIDTH:
            raise ValueError(f"need {MIN_WIDTH} <= min_width <= max_width <= {MAX_WIDTH}")
        self.name = name
        self.quality = int(quality)
        self.max_variants = int(max_variants)
        self.min_width = int(min_width)
        self.max_width = int(max_width)
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)  # `with self._cond`: the hub's lock
        self._closed_evt = threading.Event()
        # guarded by self._cond's lock: every subscribed viewer, and those waiting for a frame
        self._subs: set[Viewer] = set()
        self._waiting: set[Viewer] = set()
        self._snap: _Snap | None = None
        self._gen = 0  # hub-internal generation: newer-ness never depends on producer seqs
        self._cache: OrderedDict[int, _Entry] = OrderedDict()  # width key (0 = full) -> entry
        self._cache_gen = -1
        self._stats_lock = threading.Lock()
        self._recent: OrderedDict[tuple[int, int], int] = OrderedDict()
        self._enc_by_width: dict[int, list[int]] = {}  # width key -> [encodes, distinct gens, last gen]
        self.published = 0
        self.encodes = 0
        self.encode_seconds = 0.0
        self.viewers = 0
        self.viewers_total = 0
        self.frames_sent = 0
        self.bytes_sent = 0
        self.frames_skipped = 0  # frames a viewer jumped over to reach the newest

    # ------------------------------------------------------------------ producer
    def publish(self, image: np.ndarray, seq: int, ts: float, wall_ts: float | None = None) -> None:
        """Store `image` (by reference: do not mutate it afterwards) and wake viewers."""
        if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim not in (2, 3) \
                or image.size == 0:
            raise ValueError("publish() needs a non-empty uint8 image (H,W) or (H,W,3)")
        wall = time.time() if wall_ts is None else float(wall_ts)
        with self._cond:
            if self._closed_evt.is_set():
                return
            self._gen += 1
            self._snap = _Snap(self._gen, image, int(seq), float(ts), wall)
            self.published += 1
            # Viewers already encoding the old frame hold their entry; new ones take the new frame.
            self._cache = OrderedDict()
            self._cache_gen = self._gen
            for v in self._waiting:
                v._wake.notify()

    def has_viewers(self) -> bool:
        """True while at least one viewer is subscribed (lets the producer skip drawing)."""
        return self.viewers > 0

    @property
    def closed(self) -> bool:
        return self._closed_evt.is_set()

    def close(self) -> None:
        """Wake every viewer so it ends promptly; later next()/publish() return at once."""
        with self._cond:
            self._closed_evt.set()
            for v in self._subs:
                v._wake.notify_all()

    # ------------------------------------------------------------------ viewers
    @contextlib.contextmanager
    def subscribe(self) -> Iterator["Viewer"]:
        """Context manager yielding a Viewer; the viewer count drops on any exit."""
        viewer = Viewer(self)
        with self._cond:
            self.viewers += 1
            self.viewers_total += 1
            self._subs.add(viewer)
        try:
            yield viewer
        finally:
            with self._cond:
                viewer._active = False
                self._subs.discard(viewer)
                self._waiting.discard(viewer)
                self.viewers -= 1

    def latest(self, width: int | None = None) -> JpegFrame | None:
        """JPEG of the newest frame (snapshot endpoint); None before the first publish."""
        with self._cond:
            snap = self._snap
            if snap is None:
                return None
            key = self._width_key(snap.image, width)
            entry = self._entry(snap.gen, key)
        return self._encode(snap, key, entry)

    # ------------------------------------------------------------------ stats
    def encodes_per_frame(self) -> dict[int, float]:
        """{width key: encodes / distinct frames encoded at that width}; 0 = full size.

        1.0 means every frame was encoded exactly once per width however many viewers.
        """
        with self._stats_lock:
            return {w: (v[0] / v[1] if v[1] else 0.0) for w, v in self._enc_by_width.items()}

    def encodes_for(self, gen: int | None = None, width: int | None = None) -> int:
        """Encodes recorded for one published frame (hub generation; default newest) and width
        (default full size), from a bounded record of recent keys (test helper)."""
        with self._cond:
            g = self._gen if gen is None else int(gen)
            img = self._snap.image if self._snap is not None else None
        key = 0 if img is None else self._width_key(img, width)
        with self._stats_lock:
            return self._recent.get((g, key), 0)

    def stats(self) -> dict:
        with self._cond:
            snap = self._snap
            out = {
                "name": self.name, "published": self.published, "viewers": self.viewers,
                "viewers_total": self.viewers_total, "closed": self.closed,
                "last_seq": None if snap is None else snap.seq, "quality": self.quality,
            }
        with self._stats_lock:
            out.update({
                "encodes": self.encodes, "frames_sent": self.frames_sent,
                "bytes_sent": self.bytes_sent, "frames_skipped": self.frames_skipped,
                "encode_ms_mean": round(1e3 * self.encode_seconds / self.encodes, 3)
                if self.encodes else None,
            })
        out["encodes_per_frame"] = {str(k): round(v, 4) for k, v in self.encodes_per_frame().items()}
        return out

    def memory_bytes(self, seen: set[int] | None = None) -> dict[str, int]:
        """Bytes held: the newest frame's image (by reference: counted once per `seen`) and
        its cached JPEGs, one per width variant (at most max_variants: `jpeg_variants`)."""
        with self._cond:
            snap = self._snap
            frames = [e.frame for e in self._cache.values() if e.frame is not None]
        return {"frame": array_bytes(None if snap is None else snap.image, seen),
                "jpeg": sum(len(f.data) for f in frames)}

    @property
    def jpeg_variants(self) -> int:
        """Width variants of the newest frame cached now (encoded or being encoded)."""
        with self._cond:
            return len(self._cache)

    # ------------------------------------------------------------------ internals
    def _width_key(self, image: np.ndarray, width: int | None) -> int:
        """0 for full size; else the clamped, step-rounded target width (< source width)."""
        if width is None:
            return 0
        w = int(width)
        w = min(max(w, self.min_width), self.max_width)
        w = max(self.min_width, (w // _WIDTH_STEP) * _WIDTH_STEP)
        return 0 if w >= image.shape[1] else w

    def _entry(self, gen: int, key: int) -> _Entry:
        """Cache entry for (gen, key); caller holds self._cond and gen is the newest."""
        if self._cache_gen != gen:
            self._cache = OrderedDict()
            self._cache_gen = gen
        entry = self._cache.get(key)
        if entry is None:
            entry = _Entry()
            self._cache[key] = entry
            while len(self._cache) > self.max_variants:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(key)
        return entry

    def _encode(self, snap: _Snap, key: int, entry: _Entry) -> JpegFrame:
        frame = entry.frame
        if frame is not None:
            return frame
        with entry.lock:
            if entry.frame is not None:
                return entry.frame
            t0 = time.perf_counter()
            img = snap.image
            if key:
                img = _downscale(img, key)
            ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, self.quality])
            if not ok:
                raise RuntimeError(f"hub {self.name!r}: JPEG encode failed for seq {snap.seq}")
            frame = JpegFrame(buf.tobytes(), snap.seq, snap.ts, snap.wall_ts,
                              int(img.shape[1]), int(img.shape[0]))
            entry.frame = frame
            dt = time.perf_counter() - t0
        with self._stats_lock:
            self.encodes += 1
            self.encode_seconds += dt
            rk = (snap.gen, key)
            self._recent[rk] = self._recent.get(rk, 0) + 1
            while len(self._recent) > _RECENT_KEYS:
                self._recent.popitem(last=False)
            st = self._enc_by_width.setdefault(key, [0, 0, -1])
            st[0] += 1
            if st[2] != snap.gen:
                st[1] += 1
                st[2] = snap.gen
        return frame

    def _report(self, nbytes: int, skipped: int) -> None:
        with self._stats_lock:
            self.frames_sent += 1
            self.bytes_sent += int(nbytes)
            self.frames_skipped += int(skipped)


def _downscale(img: np.ndarray, width: int) -> np.ndarray:
    """Resize to `width` (keeping the aspect ratio) with area averaging, fast.

    OpenCV 4.14's INTER_AREA is fast only for integer factors (768->384: 0.17 ms) and very
    slow otherwise (768->320: ~12 ms, measured). So: INTER_AREA by the integer part k of the
    factor (on a crop that is an exact multiple of k, dropping < k edge pixels), then
    INTER_LINEAR for the remaining factor (< 2, where linear does not alias).
    """
    H, W = img.shape[:2]
    height = max(1, int(round(H * width / W)))
    k = W // width
    if k >= 2:
        h2, w2 = H // k, W // k
        if h2 >= height:
            img = cv2.resize(img[:h2 * k, :w2 * k], (w2, h2), interpolation=cv2.INTER_AREA)
    if img.shape[1] == width and img.shape[0] == height:
        return img
    return cv2.resize(img, (width, height), interpolation=cv2.INTER_LINEAR)


class Viewer:
    """A subscriber's handle (from FrameHub.subscribe()). Used by one thread, except
    `cancel()`, which any thread may call."""

    def __init__(self, hub: FrameHub) -> None:
        self.hub = hub
        self._wake = threading.Condition(hub._lock)  # notified by publish / close / cancel
        self._last_gen = 0
        self._last_time = -float("inf")
        self._active = True
        self.received = 0
        self.skipped = 0
        self._pending_skip = 0

    @property
    def active(self) -> bool:
        return self._active and not self.hub.closed

    def cancel(self) -> None:
        """End this viewer from any thread (e.g. the server saw its client disconnect): a
        next() waiting now returns None at once, later ones return None, and mjpeg_parts()
        ends. Wakes this viewer only; idempotent; the subscription itself ends when its
        `subscribe()` block exits."""
        with self.hub._cond:
            self._active = False
            self._wake.notify_all()

    def next(self, timeout: float, width: int | None = None,
             min_interval: float = 0.0) -> JpegFrame | None:
        """Newest frame newer than the last one returned, or None on timeout / close /
        cancel().

        Waits (on this viewer's condition, no polling) at most `timeout` seconds. With
        `min_interval` > 0 (an fps cap), frames are returned no more often than that.
        """
        hub = self.hub
        deadline = time.monotonic() + max(0.0, float(timeout))
        if not self._active:
            return None
        if min_interval > 0:
            ready = self._last_time + float(min_interval)
            if ready > time.monotonic():
                # not in hub._waiting: woken at once by close() / cancel(), not by publishes
                # (nothing to do yet)
                end = min(ready, deadline)
                with hub._cond:
                    while not hub._closed_evt.is_set() and self._active:
                        remaining = end - time.monotonic()
                        if remaining <= 0:
                            break
                        self._wake.wait(remaining)
                    if hub._closed_evt.is_set() or not self._active or ready > deadline:
                        return None
        with hub._cond:
            hub._waiting.add(self)
            try:
                while True:
                    if hub._closed_evt.is_set() or not self._active:
                        return None
                    snap = hub._snap
                    if snap is not None and snap.gen > self._last_gen:
                        break
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        return None
                    self._wake.wait(remaining)
            finally:
                hub._waiting.discard(self)
            key = hub._width_key(snap.image, width)
            entry = hub._entry(snap.gen, key)
        frame = hub._encode(snap, key, entry)
        skipped = max(0, snap.gen - self._last_gen - 1) if self._last_gen else 0
        self._last_gen = snap.gen
        self._last_time = time.monotonic()
        self.received += 1
        self.skipped += skipped
        self._pending_skip = skipped
        return frame

    def mark_sent(self, nbytes: int) -> None:
        """Report that a frame of `nbytes` went out to the client (hub byte/frame counters)."""
        self.hub._report(nbytes, self._pending_skip)
        self._pending_skip = 0
