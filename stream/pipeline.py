"""One camera's live pipeline: capture -> detector worker -> tracker -> publisher.

Threads per camera:
  capture-NAME   reads the source into a LatestSlot (newest frame only, drops counted)
  detect-NAME    runs the (slow) detector on the newest frame handed to it, every N frames
                 (stream.frameloop.DetectorThread: the live scheduler's detector side)
  process-NAME   the frame loop (stream.frameloop.FrameStep, the same step offline `process`
                 runs) on EVERY frame: predict between detections, apply detections at the
                 time of the frame they were computed on, zones/lines/defects; then updates
                 the long exposure and publishes to the frame hubs (drawing only when watched)

A stage that fails on one frame logs it with the camera name and seq, counts it, and
goes on. Only stop() ends a stage; every thread is joined with a timeout.
"""
from __future__ import annotations

import dataclasses
import logging
import threading
import time
from pathlib import Path
from typing import Any, Callable

from core.config import CameraConfig, VigilConfig
from core.memsize import approx_bytes
from core.types import Event, EventKind, Frame, SourceState, Tracks
from detectors.base import Detector
from stream.analyzer import Analyzer, build_analyzer, build_camera_detector
from stream.capture import Capture, ReconnectPolicy
from stream.clips import ClipRecorder
from stream.exposure import LongExposure
from stream.frameloop import DetectorThread, FrameStep, PooledDetection, StageCounters
from stream.overlay import OverlayScene, StatusInfo, draw_overlay, grey_out
from stream.sources import open_source
from stream.stats import LatencyRing
from stream.hub import FrameHub

log = logging.getLogger("vigil.pipeline")

EventSink = Callable[[Event], None]

__all__ = ["CameraPipeline", "StageCounters"]


class CameraPipeline:
    def __init__(self, cam: CameraConfig, cfg: VigilConfig, sink: EventSink | None = None,
                 detector: Detector | None = None, pool: Any = None) -> None:
        self.cam = cam
        self.cfg = cfg
        self.name = cam.name
        self.sink = sink
        self.pool = pool if detector is None else None  # stream.pool.DetectorPool, shared
        if self.pool is not None:  # the camera's own gate around the node's shared model
            detector = build_camera_detector(cam, cfg, model=self.pool.model)
        self.analyzer: Analyzer = build_analyzer(cam, cfg, detector=detector, emit=self._emit)
        self.overlay_hub = FrameHub(f"{cam.name}/overlay", quality=cfg.server.jpeg_quality)
        self.exposure_hub = FrameHub(f"{cam.name}/exposure", quality=cfg.server.jpeg_quality)
        self.exposure = LongExposure(cfg.exposure)
        resize = (cam.resize.width, cam.resize.height) if cam.resize else None
        rc = cam.reconnect
        self.capture = Capture(
            cam.name, self._make_source, policy=ReconnectPolicy(
                rc.initial_backoff_s, rc.max_backoff_s, rc.max_attempts, rc.jitter, rc.stall_timeout_s),
            pace=True, loop=cam.loop, fps_override=cam.fps, resize=resize, on_state=self._on_state)
        self.step = FrameStep(self.analyzer)
        self.detection: DetectorThread | PooledDetection
        if self.pool is not None:
            client = self.pool.client(cam.name, weight=cam.detect_weight, max_fps=cam.detect_fps)
            self.detection = PooledDetection(self.analyzer, cam.name, client, every=cam.detect_every)
        else:
            self.detection = DetectorThread(self.analyzer, cam.name, every=cam.detect_every)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.detect_stage = self.detection.stage
        self.track_stage = StageCounters()
        self.publish_stage = StageCounters()
        self.latency = LatencyRing()
        self.latest_tracks: Tracks = Tracks.empty()
        self.latest_frame: Frame | None = None
        self._frames_seen = 0
        self._last_stale_publish = 0.0
        self.started_at: float | None = None
        self._current: Frame | None = None
        self.clips: ClipRecorder | None = None
        self._clip_kinds: frozenset[str] = frozenset()
        if cam.clips is not None and cam.clips.enabled:
            c = cam.clips
            self.clips = ClipRecorder(cam.name, Path(cfg.paths.data) / "clips", c.pre_roll_s, c.post_roll_s,
                                      c.max_clip_s, c.max_ring_mb, c.max_mb, cfg.events.retention_days,
                                      fps=cam.fps, crf=c.crf, max_queue_mb=c.max_queue_mb,
                                      preset=c.preset)
            self._clip_kinds = frozenset(c.kinds)

    # ------------------------------------------------------------ lifecycle
    def _make_source(self):
        paths = self.cfg.paths
        return open_source(self.cam.source, backend=self.cam.backend,
                           open_timeout_s=self.cam.open_timeout_s,
                           read_timeout_s=self.cam.read_timeout_s,
                           samples_dir=paths.samples, synthetic_params=self.cam.synthetic,
                           seed=self.cam.seed)

    def start(self) -> "CameraPipeline":
        self.started_at = time.monotonic()
        self.capture.start()
        t = self.detection.start()  # a thread of its own unless the node's pool serves it
        if t is not None:
            self._threads.append(t)
        t = threading.Thread(target=self._process_loop, name=f"process-{self.name}", daemon=True)
        t.start()
        self._threads.append(t)
        return self

    def stop(self, timeout: float = 2.0) -> bool:
        deadline = time.monotonic() + timeout
        self._stop.set()
        self.detection.stop()
        self.overlay_hub.close()
        self.exposure_hub.close()
        ok = self.capture.stop(max(0.1, deadline - time.monotonic()))
        if self.clips is not None:
            self.clips.close(max(0.1, deadline - time.monotonic()))
        for t in self._threads:
            t.join(max(0.05, deadline - time.monotonic()))
            ok = ok and not t.is_alive()
        self.analyzer.close()  # after the joins: detector sessions, OCR pools, Tesseract
        return ok

    # ------------------------------------------------------------ events
    def _emit(self, ev: Event, snapshot: bytes | None = None) -> None:
        if self.clips is not None and ev.kind.value in self._clip_kinds and self._current is not None:
            try:
                name = self.clips.trigger(self._current.ts, ev.ts)
                ev = dataclasses.replace(ev, data={**ev.data, "clip": f"/api/clips/{self.name}/{name}"})
            except Exception:  # noqa: BLE001 - a clip never costs the event
                log.exception("[%s] clip trigger failed", self.name)
        if self.sink is not None:
            try:
                self.sink(ev, snapshot)
            except Exception:  # noqa: BLE001
                log.exception("[%s] event sink failed", self.name)

    def _on_state(self, name: str, old: SourceState, new: SourceState, message: str) -> None:
        self._emit(Event(EventKind.CAMERA_STATE, name, data={
            "from": old.value, "to": new.value, "message": message}))

    # ------------------------------------------------------------ the frame loop
    def _process_loop(self) -> None:
        """The live scheduler: the newest frame from the capture slot, the detections that are
        ready (each applied at its own frame's time), one FrameStep, then publish."""
        while not self._stop.is_set():
            frame = self.capture.slot.get(timeout=0.1)
            self.capture.check_stall()
            if frame is None:
                self._publish_stale()
                if self.capture.slot.closed:  # capture ended (FAILED/ENDED): get() returns at once
                    self._stop.wait(0.1)
                continue
            self._frames_seen += 1
            self._current = frame
            updates = self.detection.updates(frame)
            t0 = time.perf_counter()
            try:
                tracks = self.step.advance(frame, updates)
                self.latest_tracks = tracks
            except Exception:  # noqa: BLE001
                self.track_stage.errors += 1
                log.exception("[%s] tracker failed on seq %d", self.name, frame.seq)
                tracks = self.latest_tracks
            self.track_stage.record(time.perf_counter() - t0)
            self.latest_frame = frame
            t1 = time.perf_counter()
            try:
                self._publish(frame, tracks)
            except Exception:  # noqa: BLE001
                self.publish_stage.errors += 1
                log.exception("[%s] publish failed on seq %d", self.name, frame.seq)
            if self.clips is not None:
                self.clips.add(frame)
            self.publish_stage.record(time.perf_counter() - t1)
            self.latency.add(time.monotonic() - frame.ts)

    # ------------------------------------------------------------ publishing
    def status(self, state: SourceState | None = None) -> StatusInfo:
        p50 = self.latency.percentiles(50)[0]
        return StatusInfo(camera=self.name, state=(state or self.capture.state).value,
                          source_fps=self.capture.rate.rate(),
                          detector_fps=self.detect_stage.rate.rate(),
                          published_fps=self.publish_stage.rate.rate(),
                          latency_ms=None if p50 is None else p50 * 1000.0)

    def _publish(self, frame: Frame, tracks: Tracks) -> None:
        self.exposure.update(frame.image, watched=self.exposure_hub.has_viewers())
        if self.overlay_hub.has_viewers():
            img = self.step.draw(frame, tracks, status=self.status())
            self.overlay_hub.publish(img, frame.seq, frame.ts, frame.wall_ts)
        if self.exposure_hub.has_viewers():
            self.exposure_hub.publish(self.exposure.image(), frame.seq, frame.ts, frame.wall_ts)

    def _publish_stale(self) -> None:
        """While not LIVE, show the last frame greyed with a banner (never a silent freeze)."""
        state = self.capture.state
        frame = self.latest_frame
        if frame is None or state == SourceState.LIVE or not self.overlay_hub.has_viewers():
            return
        now = time.monotonic()
        if now - self._last_stale_publish < 0.5:
            return
        self._last_stale_publish = now
        age = self.capture.frame_age(now) or 0.0
        banner = f"STALE {age:.0f} s" if state == SourceState.STALLED else state.value
        if state == SourceState.RECONNECTING:
            banner = f"RECONNECTING (attempt {self.capture.attempts})"
        img = grey_out(frame.image)
        draw_overlay(img, OverlayScene(status=self.status(state), banner=banner))
        self.overlay_hub.publish(img, frame.seq, frame.ts, frame.wall_ts)

    def memory_bytes(self) -> dict[str, int]:
        """Bytes held by this camera's buffers, by part (runtime/memory.py): each buffer is
        counted once, where it is met first (a frame in the capture slot and the clip ring
        counts for the slot)."""
        seen: set[int] = set()
        a = self.analyzer
        out = {"capture_slot": self.capture.slot.memory_bytes(seen),
               "detector_slot": self.detection.slot.memory_bytes(seen),
               "latest_frame": approx_bytes(self.latest_frame, seen, max_depth=2)}
        for kind, hub in (("overlay_hub", self.overlay_hub), ("exposure_hub", self.exposure_hub)):
            for part, n in hub.memory_bytes(seen).items():
                out[f"{kind}.{part}"] = n
        out["exposure"] = self.exposure.memory_bytes(seen)
        if self.clips is not None:
            for part, n in self.clips.memory_bytes(seen).items():
                out[f"clips.{part}"] = n
        out["tracker"] = approx_bytes(a.tracker, seen)
        out["tracks"] = approx_bytes(self.latest_tracks, seen)
        out["observers"] = approx_bytes((a.lines, a.zones), seen)
        if a.defects is not None:
            out["defect_watch"] = approx_bytes(a.defects, seen)
        return out

    def pool_status(self) -> dict[str, Any] | None:
        """The shared pool serving this camera (queue, busy workers, inference ms, batch sizes,
        restarts) and this camera's place in it (share, drops, timeouts); None without one."""
        if self.pool is None:
            return None
        st = self.pool.stats()
        mine = st.pop("cameras").get(self.name) or {}
        return {**st, "camera": mine}

    @property
    def results_dropped(self) -> int:
        """Detector results overwritten before the frame loop took them."""
        return self.detection.results_dropped

    @property
    def detector_dropped(self) -> int:
        """Frames handed to the detector that it never ran on (a newer one replaced them while
        it was busy), plus results lost before the tracker applied them."""
        return self.detection.dropped
