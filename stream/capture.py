"""The capture thread: one source, a visible reconnect state machine, newest-frame hand-off.

    CONNECTING -> LIVE -> STALLED -> RECONNECTING -> LIVE ...
                                 \\-> FAILED (after reconnect.max_attempts, if set)
    files: LIVE -> (loop: reopen) | ENDED

Reads are bounded by the backend timeouts (stream/sources.py). STALLED is declared by
`check_stall()` (called by the pipeline loop) when no new frame came for
max(stall_timeout_s, 5 frame intervals): the capture thread itself may be blocked
in a read at that moment, which is exactly the case it must report.
"""
from __future__ import annotations

import logging
import random
import threading
import time
from dataclasses import dataclass
from typing import Callable, Optional, Protocol

import cv2
import numpy as np

from core.types import Frame, SourceState
from stream.framepool import FramePool
from stream.slot import LatestSlot
from stream.stats import RateMeter

log = logging.getLogger("vigil.capture")


class Source(Protocol):
    uri: str
    fps: Optional[float]
    is_live: bool

    def open(self) -> None: ...
    def read(self) -> Optional[np.ndarray]: ...
    def close(self) -> None: ...


@dataclass
class ReconnectPolicy:
    initial_backoff_s: float = 0.25
    max_backoff_s: float = 2.0
    max_attempts: int = 0          # 0 = forever
    jitter: float = 0.2
    stall_timeout_s: float = 2.0

    def delay(self, attempt: int, rng: random.Random) -> float:
        base = min(self.max_backoff_s, self.initial_backoff_s * (2 ** max(0, attempt - 1)))
        return max(0.01, base * (1.0 + rng.uniform(-self.jitter, self.jitter)))


StateCallback = Callable[[str, SourceState, SourceState, str], None]


class Capture:
    """Reads frames from a source in its own thread into a LatestSlot[Frame]."""

    def __init__(
        self,
        name: str,
        source_factory: Callable[[], Source],
        slot: LatestSlot[Frame] | None = None,
        policy: ReconnectPolicy | None = None,
        pace: bool = True,
        loop: bool = True,
        fps_override: float | None = None,
        resize: tuple[int | None, int | None] | None = None,
        on_state: StateCallback | None = None,
        max_frames: int | None = None,
        seed: int | None = None,
    ) -> None:
        self.name = name
        self._factory = source_factory
        self.slot: LatestSlot[Frame] = slot or LatestSlot()
        self.policy = policy or ReconnectPolicy()
        self.pace = pace
        self.loop = loop
        self.fps_override = fps_override
        self.resize = resize
        self.on_state = on_state
        self.max_frames = max_frames
        self._rng = random.Random(seed)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._source: Source | None = None
        # visible state
        self.state = SourceState.CONNECTING
        self.state_since = time.monotonic()
        self.attempts = 0            # consecutive failed attempts since the last LIVE
        self.reconnects = 0          # times we came back LIVE after losing the source
        self.last_error: str | None = None
        self.frames_in = 0
        self.errors = 0
        self.seq = -1
        self.last_frame_ts: float | None = None
        self.native_fps: float | None = None
        self.is_live: bool | None = None
        self.rate = RateMeter()
        # frame buffers reused once no one holds them (issue 18: heap fragmentation); the
        # published image is pooled: the decoded one, or the resized one when resizing
        self.frame_pool = FramePool()

    # ------------------------------------------------------------ control
    def start(self) -> "Capture":
        self._thread = threading.Thread(target=self._run, name=f"capture-{self.name}", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 2.0) -> bool:
        """Ask the thread to end and join it; True if it ended within `timeout`."""
        self._stop.set()
        t = self._thread
        if t is not None and t is not threading.current_thread():
            t.join(timeout)
            if t.is_alive():
                log.warning("[%s] capture thread still blocked in a read after %.1fs", self.name, timeout)
                return False
        self.slot.close()
        return True

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # ------------------------------------------------------------ state
    def _set_state(self, new: SourceState, message: str = "") -> None:
        with self._lock:
            old = self.state
            if old == new:
                return
            self.state = new
            self.state_since = time.monotonic()
        if new in (SourceState.FAILED, SourceState.RECONNECTING, SourceState.STALLED):
            log.warning("[%s] %s -> %s %s", self.name, old.value, new.value, message)
        else:
            log.info("[%s] %s -> %s %s", self.name, old.value, new.value, message)
        if self.on_state is not None:
            try:
                self.on_state(self.name, old, new, message)
            except Exception:  # noqa: BLE001 - a listener must not kill capture
                log.exception("[%s] state listener failed", self.name)

    def stall_timeout(self) -> float:
        fps = self.fps_override or self.native_fps or self.rate.rate()
        interval = 1.0 / fps if fps and fps > 0 else 0.0
        return max(self.policy.stall_timeout_s, 5.0 * interval)

    def check_stall(self, now: float | None = None) -> bool:
        """Declare STALLED when LIVE but no new frame for stall_timeout(); return True if stalled."""
        now = time.monotonic() if now is None else now
        if self.state == SourceState.LIVE and self.last_frame_ts is not None:
            if now - self.last_frame_ts > self.stall_timeout():
                self._set_state(SourceState.STALLED,
                                f"no frame for {now - self.last_frame_ts:.1f}s")
        return self.state == SourceState.STALLED

    def frame_age(self, now: float | None = None) -> float | None:
        if self.last_frame_ts is None:
            return None
        return (time.monotonic() if now is None else now) - self.last_frame_ts

    def snapshot(self) -> dict:
        age = self.frame_age()
        return {
            "state": self.state.value,
            "state_for_s": round(time.monotonic() - self.state_since, 3),
            "attempts": self.attempts,
            "reconnects": self.reconnects,
            "last_error": self.last_error,
            "frames_in": self.frames_in,
            "dropped": self.slot.dropped,
            "errors": self.errors,
            "fps": round(self.rate.rate(), 2),
            "native_fps": self.native_fps,
            "last_frame_age_s": None if age is None else round(age, 3),
            "live_source": self.is_live,
        }

    # ------------------------------------------------------------ thread
    def _sleep(self, seconds: float) -> bool:
        """Interruptible sleep; True if we should stop."""
        return self._stop.wait(max(0.0, seconds))

    def _resize(self, img: np.ndarray) -> np.ndarray:
        if not self.resize:
            return img
        w, h = self.resize
        ih, iw = img.shape[:2]
        if w and h:
            size = (w, h)
        elif w:
            size = (w, max(1, round(ih * w / iw)))
        elif h:
            size = (max(1, round(iw * h / ih)), h)
        else:
            return img
        if size == (iw, ih):
            return img
        interp = cv2.INTER_AREA if size[0] < iw else cv2.INTER_LINEAR
        dst = self.frame_pool.get((size[1], size[0]) + img.shape[2:], img.dtype)
        return cv2.resize(img, size, dst=dst, interpolation=interp)

    def _open(self) -> Source | None:
        """Open a fresh source, with backoff between attempts. None when stopping or FAILED."""
        first = self.frames_in == 0 and self.attempts == 0
        while not self._stop.is_set():
            src = None
            try:
                src = self._factory()
                self.is_live = bool(getattr(src, "is_live", True))
                use_pool = getattr(src, "use_pool", None)
                if use_pool is not None and not self.resize:
                    use_pool(self.frame_pool)
                src.open()
                return src
            except Exception as e:  # noqa: BLE001 - reported as state, never raised
                self.attempts += 1
                self.errors += 1
                self.last_error = str(e) or type(e).__name__
                if src is not None:
                    _safe_close(src)
                if self.policy.max_attempts and self.attempts >= self.policy.max_attempts:
                    self._set_state(SourceState.FAILED,
                                    f"after {self.attempts} attempts: {self.last_error}")
                    return None
                delay = self.policy.delay(self.attempts, self._rng)
                self._set_state(SourceState.CONNECTING if first else SourceState.RECONNECTING,
                                self.last_error)
                if self._sleep(delay):
                    return None
        return None

    def _run(self) -> None:
        try:
            self._run_inner()
        except Exception as e:  # noqa: BLE001 - last resort: report, never crash silently
            log.exception("[%s] capture crashed", self.name)
            self.last_error = f"capture crashed: {e}"
            self._set_state(SourceState.FAILED, self.last_error)
        finally:
            if self._source is not None:
                _safe_close(self._source)
                self._source = None
            if self.state not in (SourceState.FAILED, SourceState.ENDED):
                self._set_state(SourceState.STOPPED)
            self.slot.close()

    def _run_inner(self) -> None:
        lost_before = False
        while not self._stop.is_set():
            src = self._open()
            if src is None:
                return
            self._source = src
            self.native_fps = self.fps_override or _sane_fps(getattr(src, "fps", None))
            pace = self.pace and not self.is_live
            interval = 1.0 / self.native_fps if (pace and self.native_fps) else 0.0
            t0 = time.monotonic()
            n_this_open = 0
            reason = "end of stream"
            while not self._stop.is_set():
                try:
                    img = src.read()
                except Exception as e:  # noqa: BLE001 - a decoder or network error
                    self.errors += 1
                    self.last_error = str(e) or type(e).__name__
                    reason = self.last_error
                    img = None
                    if not self.is_live and n_this_open > 0:
                        log.warning("[%s] read error after %d frames: %s", self.name, n_this_open, reason)
                    if self.is_live or n_this_open == 0:
                        break
                if img is None:
                    break
                if interval:
                    # pace files to their native fps: frame k is due at t0 + k*interval
                    due = t0 + n_this_open * interval
                    lag = due - time.monotonic()
                    if lag > 0 and self._sleep(lag):
                        break
                    elif lag < -1.0:  # fell far behind (e.g. suspended): re-anchor
                        t0 = time.monotonic() - n_this_open * interval
                now = time.monotonic()
                img = self._resize(_as_bgr(img))
                self.seq += 1
                self.frames_in += 1
                n_this_open += 1
                self.last_frame_ts = now
                self.rate.tick(now)
                self.slot.put(Frame(img, self.seq, now, self.name))
                if self.state != SourceState.LIVE:
                    if lost_before:
                        self.reconnects += 1
                    self.attempts = 0
                    self._set_state(SourceState.LIVE, f"{img.shape[1]}x{img.shape[0]}")
                if self.max_frames is not None and self.frames_in >= self.max_frames:
                    self._stop.set()
            _safe_close(src)
            self._source = None
            if self._stop.is_set():
                return
            if not self.is_live:
                if n_this_open > 0 and self.loop:
                    continue  # loop the file: reopen at once, no backoff
                if n_this_open > 0:
                    self._set_state(SourceState.ENDED, reason)
                    return
                # a file that gives no frame at all: treat like a failed open
                self.attempts += 1
                self.last_error = self.last_error or "no frame could be decoded"
                if self.policy.max_attempts and self.attempts >= self.policy.max_attempts:
                    self._set_state(SourceState.FAILED, self.last_error)
                    return
                self._set_state(SourceState.RECONNECTING, self.last_error)
                if self._sleep(self.policy.delay(self.attempts, self._rng)):
                    return
                continue
            lost_before = True
            self.last_error = reason
            self.attempts = max(self.attempts, 1)
            self._set_state(SourceState.RECONNECTING, reason)
            if self._sleep(self.policy.delay(self.attempts, self._rng)):
                return


def _sane_fps(fps: float | None) -> float | None:
    if fps is None:
        return None
    try:
        f = float(fps)
    except (TypeError, ValueError):
        return None
    return f if 0.5 <= f <= 240 else None


def _as_bgr(img: np.ndarray) -> np.ndarray:
    if img.ndim == 2:
        return cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    if img.ndim == 3 and img.shape[2] == 4:
        return cv2.cvtColor(img, cv2.COLOR_BGRA2BGR)
    return img


def _safe_close(src: Source) -> None:
    try:
        src.close()
    except Exception:  # noqa: BLE001
        log.debug("close failed", exc_info=True)
