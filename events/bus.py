"""The event bus: numbers events, keeps a bounded in-memory ring for the API and SSE,
and fans them out to sinks (the SQLite store, webhooks) without blocking the pipeline.
"""
from __future__ import annotations

import collections
import dataclasses
import logging
import threading
import time
from typing import Callable, Optional, Protocol

from core.memsize import approx_bytes
from core.types import Event

log = logging.getLogger("vigil.events")


class Sink(Protocol):
    def submit(self, event: Event, snapshot: Optional[bytes] = None) -> None: ...


class EventBus:
    """publish() is O(1) and never blocks on I/O: sinks must queue internally."""

    def __init__(self, ring_size: int = 2000, start_id: int = 0,
                 links: Callable[[Event, bool], Event] | None = None) -> None:
        """links(event, has_snapshot) -> event: fills in the URLs a reader follows (snapshot,
        clip), once, before any sink or reader sees the event, so API, SSE and webhooks
        carry the same payload."""
        self._links = links
        self._cond = threading.Condition()
        self._ring: collections.deque[Event] = collections.deque(maxlen=ring_size)
        self._next_id = start_id + 1
        self._sinks: list[Sink] = []
        self._closed = False
        self.published = 0
        self.by_kind: collections.Counter[str] = collections.Counter()
        self.sink_errors = 0

    def add_sink(self, sink: Sink) -> None:
        self._sinks.append(sink)

    def publish(self, event: Event, snapshot: Optional[bytes] = None) -> Event:
        with self._cond:
            ev = dataclasses.replace(event, id=self._next_id)
            self._next_id += 1
            if self._links is not None:
                ev = self._links(ev, snapshot is not None)
            self._ring.append(ev)
            self.published += 1
            self.by_kind[ev.kind.value] += 1
            self._cond.notify_all()
        for s in self._sinks:
            try:
                s.submit(ev, snapshot)
            except Exception:  # noqa: BLE001 - a sink must never break the pipeline
                self.sink_errors += 1
                log.exception("event sink %r failed", s)
        return ev

    __call__ = publish

    def recent(self, camera: str | None = None, kind: str | None = None,
               since: float | None = None, after_id: int | None = None,
               limit: int = 100) -> list[Event]:
        """Newest first."""
        with self._cond:
            items = list(self._ring)
        out = []
        for ev in reversed(items):
            if camera and ev.camera != camera:
                continue
            if kind and ev.kind.value != kind:
                continue
            if since is not None and ev.ts < since:
                continue
            if after_id is not None and (ev.id or 0) <= after_id:
                continue
            out.append(ev)
            if len(out) >= limit:
                break
        return out

    @property
    def last_id(self) -> int:
        with self._cond:
            return self._next_id - 1

    def wait_after(self, after_id: int, timeout: float) -> list[Event]:
        """Events with id > after_id (oldest first), waiting up to `timeout` for one."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not self._closed and self._next_id - 1 <= after_id:
                rem = deadline - time.monotonic()
                if rem <= 0:
                    return []
                self._cond.wait(rem)
            return [e for e in self._ring if (e.id or 0) > after_id]

    @property
    def sinks(self) -> tuple[Sink, ...]:
        return tuple(self._sinks)

    def memory_bytes(self) -> dict[str, int]:
        """Bytes of the events in the ring (runtime/memory.py); at most ring_size of them."""
        with self._cond:
            items = list(self._ring)
        return {"ring": approx_bytes(items)}

    def memory_counts(self) -> dict[str, int]:
        with self._cond:
            return {"ring": len(self._ring)}

    def memory_limits(self) -> dict[str, int]:
        return {"ring": int(self._ring.maxlen or 0)}

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    @property
    def closed(self) -> bool:
        return self._closed
