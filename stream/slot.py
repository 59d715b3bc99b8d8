"""A one-slot mailbox that keeps only the newest item (live sources never queue)."""
from __future__ import annotations

import threading
from typing import Generic, Optional, TypeVar

from core.memsize import approx_bytes

T = TypeVar("T")


class LatestSlot(Generic[T]):
    """put() replaces whatever is waiting; get() waits for something newer.

    `dropped` counts items that were replaced before anyone took them, so a slow
    consumer's gaps in seq are exactly the drop count.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._item: Optional[T] = None
        self._fresh = False
        self._closed = False
        self.put_count = 0
        self.taken = 0
        self.dropped = 0

    def put(self, item: T) -> None:
        with self._cond:
            if self._fresh:
                self.dropped += 1
            self._item = item
            self._fresh = True
            self.put_count += 1
            self._cond.notify_all()

    def get(self, timeout: float | None = None) -> Optional[T]:
        """Take the newest untaken item, waiting up to `timeout`; None on timeout or close."""
        with self._cond:
            if not self._fresh and not self._closed:
                self._cond.wait_for(lambda: self._fresh or self._closed, timeout)
            if not self._fresh:
                return None
            self._fresh = False
            self.taken += 1
            return self._item

    def peek(self) -> Optional[T]:
        """The newest item, taken or not (does not consume)."""
        with self._cond:
            return self._item

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    @property
    def closed(self) -> bool:
        return self._closed

    def memory_bytes(self, seen: set[int] | None = None) -> int:
        """Bytes of the item held (a Frame's image; see core.memsize)."""
        with self._cond:
            item = self._item
        return approx_bytes(item, seen, max_depth=2)
