"""The one frame loop of a camera: a per-frame step shared by the live pipeline and offline
`process`, driven by one of two schedulers that decide which detections reach it.

    for frame in frames:                              # newest frame (live) / every frame (offline)
        tracks = step.advance(frame, scheduler.updates(frame))
        image = step.draw(frame, tracks, status)      # only when someone looks / writes

FrameStep.advance(frame, updates): applies each (frame, detections) pair at the time of the
frame the detections were computed on, then reports the tracks to show on `frame`: the
tracker's update output when `frame`'s own detections were among the updates, else its
prediction at `frame`'s time; zones, lines and the defect watch observe them.
FrameStep.draw(frame, tracks): a copy of the frame with the analyzer's overlay scene drawn.

Schedulers (`updates(frame) -> [(Frame, Detections), ...]`):
  InlineDetection  offline: every frame in order, the detector run inline on every Nth frame
                   (its detections are for the current frame).
  DetectorThread   live: every Nth frame handed to a detector in its own thread through a
                   one-slot mailbox (newest frame only, drops counted); returns the results
                   that are ready, each with the (older) frame it was computed on.
  PooledDetection  live, with the node's detector pool (stream.pool): every Nth frame offered
                   to the camera's pool client (the same newest-frame slot, drops counted; at
                   most one request in flight); the pool's workers, shared by every camera,
                   run the camera's detect (its own gate, the shared model); same contract.
"""
from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Iterable

import numpy as np

from core.types import Detections, Frame, Tracks
from stream.overlay import StatusInfo, draw_overlay
from stream.slot import LatestSlot
from stream.stats import RateMeter

__all__ = ["FrameStep", "InlineDetection", "DetectorThread", "PooledDetection", "StageCounters",
           "Update"]

log = logging.getLogger("vigil.frameloop")

Update = tuple[Frame, Detections]  # detections and the frame they were computed on


@dataclass
class StageCounters:
    processed: int = 0
    errors: int = 0
    ms: deque = field(default_factory=lambda: deque(maxlen=256))
    rate: RateMeter = field(default_factory=RateMeter)

    def record(self, seconds: float) -> None:
        self.processed += 1
        self.ms.append(seconds * 1000.0)
        self.rate.tick()

    def snapshot(self) -> dict[str, Any]:
        ms = np.fromiter(self.ms, float) if self.ms else None
        return {
            "processed": self.processed,
            "errors": self.errors,
            "fps": round(self.rate.rate(), 2),
            "ms_p50": None if ms is None else round(float(np.median(ms)), 3),
            "ms_p95": None if ms is None else round(float(np.percentile(ms, 95)), 3),
        }


class FrameStep:
    """One frame through a camera's Analyzer (stream.analyzer): apply, predict, observe, draw."""

    def __init__(self, analyzer: Any) -> None:
        self.analyzer = analyzer

    def advance(self, frame: Frame, updates: Iterable[Update] = ()) -> Tracks:
        """Apply `updates` in order, each at its own frame's time, and return the tracks to
        show on `frame` (observed by zones, lines and the defect watch)."""
        an = self.analyzer
        tracks = None
        for det_frame, dets in updates:
            out = an.apply(det_frame, dets)
            if det_frame is frame:  # this frame's own detections: the update is what it shows
                tracks = out
        if tracks is None:
            tracks = an.track(frame)
        an.observe(frame, tracks)
        return tracks

    def draw(self, frame: Frame, tracks: Tracks, status: StatusInfo | None = None,
             banner: str | None = None) -> np.ndarray:
        """A copy of the frame's image with the overlay scene for `tracks` drawn on it."""
        img = frame.image.copy()
        draw_overlay(img, self.analyzer.scene(tracks, status, banner))
        return img


class InlineDetection:
    """Offline scheduler: the detector runs on frames 0, N, 2N, ... of the frames it is given,
    inline, and its detections are applied to that same frame. `detect_s` holds the seconds
    each run took."""

    def __init__(self, analyzer: Any, every: int = 1) -> None:
        self.analyzer = analyzer
        self.every = max(1, int(every))
        self.frames = 0
        self.detect_s: list[float] = []

    def updates(self, frame: Frame) -> list[Update]:
        k = self.frames
        self.frames += 1
        if k % self.every:
            return []
        t0 = time.perf_counter()
        dets = self.analyzer.detect(frame)
        self.detect_s.append(time.perf_counter() - t0)
        return [(frame, dets)]


class DetectorThread:
    """Live scheduler's detector side: every Nth frame it is given goes to the detector thread
    through a one-slot mailbox (a newer frame replaces one the detector has not taken: counted
    in `slot.dropped`); finished detections wait in a short queue (`results_dropped` counts
    those overwritten before the frame loop took them) until updates() hands them over with
    the frame they were computed on."""

    def __init__(self, analyzer: Any, camera: str, every: int = 1, results: int = 8) -> None:
        self.analyzer = analyzer
        self.camera = camera
        self.every = max(1, int(every))
        self.slot: LatestSlot[Frame] = LatestSlot()
        self.stage = StageCounters()
        self.results_dropped = 0
        self._results: deque[Update] = deque(maxlen=results)
        self._frames = 0
        self._stop = threading.Event()
        self.thread: threading.Thread | None = None

    def start(self) -> threading.Thread:
        self.thread = threading.Thread(target=self._run, name=f"detect-{self.camera}", daemon=True)
        self.thread.start()
        return self.thread

    def stop(self) -> None:
        """Ask the thread to end (join it with `thread.join(timeout)`)."""
        self._stop.set()
        self.slot.close()

    @property
    def dropped(self) -> int:
        """Frames handed over that the detector never ran on, plus results lost unapplied."""
        return self.slot.dropped + self.results_dropped

    def updates(self, frame: Frame) -> list[Update]:
        """Offer `frame` (every Nth one) to the detector; return the results ready now."""
        k = self._frames
        self._frames += 1
        if k % self.every == 0 and self.analyzer.has_detector:
            self.slot.put(frame)
        out: list[Update] = []
        while self._results:
            out.append(self._results.popleft())
        return out

    def _run(self) -> None:
        while not self._stop.is_set():
            frame = self.slot.get(timeout=0.5)
            if frame is None:
                continue
            t0 = time.perf_counter()
            try:
                dets = self.analyzer.detect(frame)
            except Exception:  # noqa: BLE001
                self.stage.errors += 1
                log.exception("[%s] detector failed on seq %d", self.camera, frame.seq)
                continue
            self.stage.record(time.perf_counter() - t0)
            if len(self._results) == self._results.maxlen:
                self.results_dropped += 1
            self._results.append((frame, dets))


class PooledDetection:
    """Live scheduler's detector side on a shared pool (stream.pool.DetectorPool): every Nth
    frame is offered to the camera's pool client, whose one-slot mailbox (`slot`, a
    LatestSlot: newer frames replace a waiting one, counted in `slot.dropped`) a pool worker
    takes from when it is this camera's turn; finished results wait in the client (its
    `results_dropped` counts those overwritten before the frame loop took them). Same
    updates(frame) contract as DetectorThread; start() starts no thread of its own."""

    def __init__(self, analyzer: Any, camera: str, client: Any, every: int = 1) -> None:
        self.analyzer = analyzer
        self.camera = camera
        self.every = max(1, int(every))
        self.client = client
        self.slot: LatestSlot[Frame] = client.slot
        self.stage: StageCounters = client.stage
        self._frames = 0
        self.thread: threading.Thread | None = None

    def start(self) -> None:
        """Nothing to start: the pool's workers serve this camera."""
        return None

    def stop(self) -> None:
        """Leave the pool (a request in flight finishes; its result is not taken)."""
        self.client.close()

    @property
    def results_dropped(self) -> int:
        return self.client.results_dropped

    @property
    def dropped(self) -> int:
        """Frames handed over that the detector never ran on, plus results lost unapplied."""
        return self.slot.dropped + self.client.results_dropped

    def updates(self, frame: Frame) -> list[Update]:
        """Offer `frame` (every Nth one) to the pool; return the results ready now."""
        k = self._frames
        self._frames += 1
        if k % self.every == 0 and self.analyzer.has_detector:
            self.client.offer(frame, self.analyzer.detect)
        return self.client.take()
