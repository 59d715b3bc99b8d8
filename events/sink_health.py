"""Counters, last error and log lines of one event sink (a webhook today, MQTT next), so that
no sink fails silently: the first failure after a success is logged at WARNING at once, later
ones at most once a `quiet_s` with how many happened since, and the recovery at INFO. The same
figures go to `/api/sinks`, `/metrics` and the dashboard (through `snapshot()`)."""
from __future__ import annotations

import collections
import logging
import threading
import time
from typing import Any

__all__ = ["SinkHealth", "drop_queued", "push_newest"]

OUTCOMES = ("sent", "failed", "rejected", "retried", "dropped", "filtered")


def push_newest(queue: collections.deque, max_queue: int, item: Any) -> int:
    """Append to a sink's bounded queue (the caller holds its lock), dropping the oldest item
    when it is full; returns how many were dropped (0 or 1)."""
    dropped = 0
    if len(queue) >= max_queue:
        queue.popleft()
        dropped = 1
    queue.append(item)
    return dropped


def drop_queued(queue: collections.deque, lock: Any, health: SinkHealth) -> int:
    """A sink's close(): empty its queue under its lock; what was left counts as dropped."""
    with lock:
        left = len(queue)
        queue.clear()
    if left:
        health.count("dropped", left)
    return left


class SinkHealth:
    def __init__(self, kind: str, name: str, logger: logging.Logger, quiet_s: float = 60.0) -> None:
        self.kind = kind
        self.name = name  # already redacted: it is logged and served
        self._log = logger
        self._quiet_s = float(quiet_s)
        self._lock = threading.Lock()
        self._counts: collections.Counter[str] = collections.Counter()
        self._last_error: str | None = None
        self._last_error_ts: float | None = None  # epoch seconds
        self._failing = False
        self._unlogged = 0  # failures since the last log line
        self._last_log = -float("inf")  # monotonic

    def count(self, outcome: str, n: int = 1) -> None:
        """Record `n` events with this outcome (one of OUTCOMES). A send ends a failing spell."""
        with self._lock:
            self._counts[outcome] += n
            recovered = outcome == "sent" and self._failing
            if recovered:
                self._failing = False
                self._unlogged = 0
        if recovered:
            self._log.info("%s %s: delivering again", self.kind, self.name)
        if outcome == "dropped":
            self._warn(f"{n} event(s) dropped (queue full or closing)", count_failure=False)

    def error(self, message: str) -> None:
        """A delivery attempt failed (it may still be retried): remember and log it."""
        with self._lock:
            self._last_error = message
            self._last_error_ts = time.time()
        self._warn(message)

    def _warn(self, message: str, count_failure: bool = True) -> None:
        now = time.monotonic()
        with self._lock:
            first = not self._failing
            self._failing = self._failing or count_failure
            self._unlogged += 1
            if not first and now - self._last_log < self._quiet_s:
                return
            n, self._unlogged, self._last_log = self._unlogged, 0, now
        more = f" ({n - 1} more since the last report)" if n > 1 else ""
        self._log.warning("%s %s: %s%s", self.kind, self.name, message, more)

    def snapshot(self, **extra: Any) -> dict[str, Any]:
        with self._lock:
            out: dict[str, Any] = {"kind": self.kind, "name": self.name}
            out.update({k: int(self._counts[k]) for k in OUTCOMES})
            out.update(last_error=self._last_error, last_error_ts=self._last_error_ts,
                       healthy=not self._failing)
        out.update(extra)
        return out
