"""Reusable frame buffers for a capture thread (issue 18: heap fragmentation).

Every decoded frame used to be a fresh ~0.5-1.3 MB block, freed whenever the last of its
holders (slot, frame loop, detector request, hub, clip pre-roll ring...) dropped it, in an
order no one controls. That churn of frame-sized blocks from several threads raises glibc's
dynamic mmap threshold (so they live in the arenas) and fragments the arenas. A pool hands
the decoder back a buffer it already owns, so the frame memory is a fixed set of blocks.

Ownership (frames are shared by many threads): a pooled buffer is handed out again only when
NO ONE ELSE holds it. In CPython every holder of an ndarray's memory holds a reference to it:
a Frame, a numpy view (its `.base` chain ends at the owning array), a memoryview, an OpenCV
Mat wrapping it (the bindings' allocator keeps the array alive), an ONNX Runtime input. So a
buffer whose reference count is the pool's own is free; nothing can get a new reference to it
but the pool itself (the only other way is through an existing holder, and there is none).
The count is calibrated once on a private buffer through the same code path, so it does not
depend on the interpreter's bookkeeping. Frames are never written to after capture (see
stream/clips.py), so a buffer's content only changes when the pool reuses it.

    pool = FramePool()
    buf = pool.get((h, w, 3))          # a free pooled buffer of that shape, or a new one
    img = cv2.cvtColor(yuv, code, dst=buf)

Bounds: at most `max_buffers` pooled buffers and `max_bytes` of them (beyond: a plain new
array, not kept); a free buffer that get() passed over `idle_gets` times in a row (about 2 s of
frames at 25 fps by default), or one of another shape, is let go, so idle pooled memory follows
the demand of the last few seconds (a ring that frees several frames at once keeps them). get() is for one thread (the capture
thread); stats() may be read from any.
"""
from __future__ import annotations

import sys
from typing import Any

import numpy as np

__all__ = ["FramePool"]


class FramePool:
    """A bounded set of frame buffers, reused only when nobody else holds them."""

    def __init__(self, max_buffers: int = 96, max_bytes: int = 192 * 2**20,
                 idle_gets: int = 50) -> None:
        if max_buffers < 1 or max_bytes < 1 or idle_gets < 0:
            raise ValueError("FramePool: max_buffers and max_bytes must be >= 1, idle_gets >= 0")
        self.max_buffers = int(max_buffers)
        self.max_bytes = int(max_bytes)
        self.idle_gets = int(idle_gets)
        self._bufs: list[np.ndarray] = []
        self._idle: list[int] = []  # per buffer: get() calls in a row that found it free, unused
        self._bytes = 0
        self.reused = 0       # get() answered with a pooled buffer
        self.allocated = 0    # new buffers kept in the pool
        self.unpooled = 0     # new buffers not kept (pool full: every pooled one is held)
        self.dropped = 0      # free buffers let go (idle for idle_gets, or another shape)
        probe: list[np.ndarray] = [np.empty(1, np.uint8)]
        self._free_refs = self._refs(probe, 0)

    @staticmethod
    def _refs(bufs: list[np.ndarray], i: int) -> int:
        return sys.getrefcount(bufs[i])

    def _is_free(self, i: int) -> bool:
        return self._refs(self._bufs, i) <= self._free_refs

    def get(self, shape: tuple[int, ...], dtype: Any = np.uint8) -> np.ndarray:
        """A buffer of `shape` and `dtype` that no one else holds (content undefined)."""
        shape = tuple(int(s) for s in shape)
        dt = np.dtype(dtype)
        free: list[int] = []
        i = 0
        while i < len(self._bufs):
            if self._is_free(i):
                b = self._bufs[i]
                if b.shape != shape or b.dtype != dt:
                    self._drop(i)
                    continue
                free.append(i)
            else:
                self._idle[i] = 0
            i += 1
        # the most recently handed-out free buffer (the list is in hand-out order): the others
        # age, so buffers a smaller demand no longer needs are let go after idle_gets
        found = free[-1] if free else -1
        for i in reversed(free[:-1]):
            self._idle[i] += 1
            if self._idle[i] > self.idle_gets:
                self._drop(i)
                found -= 1
        if found >= 0:
            self.reused += 1
            # to the end: the list stays in hand-out order
            b = self._bufs.pop(found)
            self._idle.pop(found)
            self._bufs.append(b)
            self._idle.append(0)
            return b
        b = np.empty(shape, dt)
        if len(self._bufs) < self.max_buffers and self._bytes + b.nbytes <= self.max_bytes:
            self._bufs.append(b)
            self._idle.append(0)
            self._bytes += b.nbytes
            self.allocated += 1
        else:
            self.unpooled += 1
        return b

    def _drop(self, i: int) -> None:
        b = self._bufs.pop(i)
        self._idle.pop(i)
        self._bytes -= b.nbytes
        self.dropped += 1

    def idle_bytes(self) -> int:
        """Bytes of pooled buffers no one else holds (memory the pool alone keeps)."""
        bufs = list(self._bufs)  # one more reference to each (only ever makes get() cautious)
        n = 0
        for j in range(len(bufs)):
            if self._refs(bufs, j) <= self._free_refs + 1:
                n += bufs[j].nbytes
        return n

    def stats(self) -> dict[str, int]:
        return {"buffers": len(self._bufs), "bytes": self._bytes, "reused": self.reused,
                "allocated": self.allocated, "unpooled": self.unpooled, "dropped": self.dropped}
