"""Per-stage counters: rates over a sliding window and latency percentiles."""
from __future__ import annotations

import collections
import threading
import time

import numpy as np


class RateMeter:
    """Events per second over the last `window_s` seconds (bounded memory)."""

    def __init__(self, window_s: float = 2.0, maxlen: int = 2048) -> None:
        self.window_s = window_s
        self._t: collections.deque[float] = collections.deque(maxlen=maxlen)
        self._lock = threading.Lock()
        self.count = 0

    def tick(self, now: float | None = None) -> None:
        with self._lock:
            self._t.append(time.monotonic() if now is None else now)
            self.count += 1

    def rate(self, now: float | None = None) -> float:
        now = time.monotonic() if now is None else now
        with self._lock:
            while self._t and now - self._t[0] > self.window_s:
                self._t.popleft()
            n = len(self._t)
            if n < 2:
                return 0.0
            span = max(now - self._t[0], self._t[-1] - self._t[0], 1e-6)
            return (n - 1) / span if now - self._t[-1] < self.window_s else 0.0


LATENCY_BUCKETS = (0.005, 0.01, 0.02, 0.035, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0)


class LatencyRing:
    """The last N latency samples (seconds), for p50/p95 without unbounded growth, plus
    cumulative histogram buckets (for Prometheus) over every sample ever added."""

    def __init__(self, maxlen: int = 512, buckets: tuple[float, ...] = LATENCY_BUCKETS) -> None:
        self._v: collections.deque[float] = collections.deque(maxlen=maxlen)
        self._lock = threading.Lock()
        self.last = float("nan")
        self.buckets = buckets
        self.bucket_counts = [0] * (len(buckets) + 1)  # last = +Inf
        self.count = 0
        self.sum = 0.0

    def add(self, seconds: float) -> None:
        with self._lock:
            self._v.append(seconds)
            self.last = seconds
            self.count += 1
            self.sum += seconds
            i = 0
            while i < len(self.buckets) and seconds > self.buckets[i]:
                i += 1
            self.bucket_counts[i] += 1

    def histogram(self) -> tuple[list[tuple[str, int]], float]:
        """Cumulative (le, count) pairs and the sum, Prometheus style."""
        with self._lock:
            acc, out = 0, []
            for b, c in zip(self.buckets, self.bucket_counts):
                acc += c
                out.append((repr(b), acc))
            out.append(("+Inf", acc + self.bucket_counts[-1]))
            return out, self.sum

    def percentiles(self, *qs: float) -> list[float | None]:
        with self._lock:
            if not self._v:
                return [None for _ in qs]
            arr = np.fromiter(self._v, float)
        return [float(np.percentile(arr, q)) for q in qs]

    def values(self) -> list[float]:
        with self._lock:
            return list(self._v)
