"""Per-camera analysis shared by the live pipeline and offline `process`:
detector (optionally motion-gated) -> tracker -> track events.

The live pipeline calls detect() in its detector thread and apply()/track() in its
process thread; offline processing calls them in sequence on every frame.
"""
from __future__ import annotations

import logging
import threading
from typing import Any, Callable

import numpy as np

from core.config import CameraConfig, VigilConfig
from core.types import Detections, Event, EventKind, Frame, Tracks
from detectors.base import Detector, build as build_detector
from trackers.tracker import Tracker

log = logging.getLogger("vigil.analyzer")


def tracker_params(cfg: VigilConfig) -> dict[str, Any]:
    return cfg.tracker.model_dump()


def build_camera_detector(cam: CameraConfig, cfg: VigilConfig) -> Detector:
    """The detector named by the camera, with its config section, gated by motion if asked."""
    params = cfg.detector_section(cam).model_dump() if cam.detector != "none" else {}
    det = build_detector(cam.detector, params)
    if cam.gate == "motion" and cam.detector not in ("none", "motion"):
        from detectors.motion import GatedDetector
        gate = build_detector("motion", cfg.detectors.motion.model_dump())
        det = GatedDetector(det, gate)
    return det


_TRACK_EVENTS = {"started": EventKind.TRACK_STARTED, "ended": EventKind.TRACK_ENDED}


class Analyzer:
    def __init__(self, camera: str, detector: Detector, tracker: Tracker,
                 emit: Callable[[Event], None] | None = None) -> None:
        self.camera = camera
        self.detector = detector
        self.tracker = tracker
        self.emit = emit
        self.has_detector = getattr(detector, "name", "") != "none"
        self.class_names: list[str] = list(getattr(detector, "class_names", []) or [])
        self._lock = threading.Lock()
        self.detections_total = 0
        self.confirmed_ids: set[int] = set()
        self._last_tracks: Tracks = Tracks.empty()
        # ids matched by a detection at the last detector update: between detector runs
        # predict() reports det_index=-1 for every track, but only these are "seen"
        self._matched_ids = np.zeros(0, np.int64)

    def detect(self, frame: Frame) -> Detections:
        dets = self.detector.detect(frame)
        if dets.frame_seq != frame.seq:
            dets = dets.with_frame(frame.seq, frame.ts)
        return dets

    def apply(self, frame: Frame, dets: Detections) -> Tracks:
        """Feed detections computed on `frame` to the tracker (at that frame's time)."""
        with self._lock:
            self.detections_total += len(dets)
            tracks = self.tracker.update(frame, dets)
            self._matched_ids = tracks.track_id[tracks.det_index >= 0].copy()
            self._after(tracks, frame)
            return tracks

    def coasting(self, tracks: Tracks) -> np.ndarray:
        """True for tracks that no detection matched at the last detector update."""
        return ~np.isin(tracks.track_id, self._matched_ids)

    def track(self, frame: Frame) -> Tracks:
        """Tracks at this frame's time (a Kalman prediction between detections)."""
        with self._lock:
            tracks = self.tracker.predict(frame.ts)
            tracks.frame_seq = frame.seq
            self._after(tracks, frame)
            return tracks

    def _after(self, tracks: Tracks, frame: Frame) -> None:
        self._last_tracks = tracks
        self.confirmed_ids.update(int(t) for t in tracks.track_id)
        if self.emit is None:
            self.tracker.pop_events()
            return
        for kind, tid in self.tracker.pop_events():
            ev_kind = _TRACK_EVENTS.get(kind)
            if ev_kind is None:  # "lost"/"recovered": internal to re-identification
                continue
            box = None
            label = None
            idx = np.flatnonzero(tracks.track_id == tid)
            if idx.size:
                box = tuple(float(v) for v in tracks.xyxy[idx[0]])
                if tracks.label is not None:
                    label = tracks.label[idx[0]]
            self.emit(Event(ev_kind, self.camera, track_id=int(tid), label=label, box=box,
                            frame_seq=frame.seq))

    def trails(self) -> dict[int, np.ndarray]:
        with self._lock:
            return self.tracker.trails()

    # zones, lines and the defect watch plug in here (events issue); none configured -> empty
    def zone_draws(self) -> list:
        return []

    def line_draws(self) -> list:
        return []

    def counters(self) -> dict[str, Any]:
        return {"detections": self.detections_total, "confirmed_tracks": len(self.confirmed_ids)}


def build_analyzer(cam: CameraConfig, cfg: VigilConfig, detector: Detector | None = None,
                   emit: Callable[[Event], None] | None = None) -> Analyzer:
    det = detector if detector is not None else build_camera_detector(cam, cfg)
    return Analyzer(cam.name, det, Tracker(**tracker_params(cfg)), emit)
