"""Per-camera analysis shared by the live pipeline and offline `process`:
detector (optionally motion-gated) -> tracker -> track events -> overlay scene.

detect() runs the detector (in the live pipeline's detector thread, or inline offline);
apply(), track() and observe() are the per-frame step (stream.frameloop.FrameStep, one for
both); scene() is what the overlay draws for a frame.
"""
from __future__ import annotations

import logging
import threading
from typing import Any, Callable

import numpy as np

from core.config import CameraConfig, VigilConfig
from core.types import ROTATED_BOX, TEXT_CONFIDENCE, Detections, Event, EventKind, Frame, Tracks
from detectors.base import Detector, build as build_detector
from events.defects import DefectWatch
from events.observers import LineDrawing, TrackObserver, ZoneDrawing
from events.snapshots import frame_snapshot
from events.zones import LineCounter, ZoneCounter
from stream.overlay import LineDraw, OverlayScene, StatusInfo, ZoneDraw
from trackers.tracker import Tracker

log = logging.getLogger("vigil.analyzer")


def build_camera_detector(cam: CameraConfig, cfg: VigilConfig, model: Detector | None = None) -> Detector:
    """The detector named by the camera, built from its config section (with the camera's
    detector_params applied), gated by motion if asked. `model` (the node's shared pool model,
    stream.pool.PooledModel) stands for the detector when given: the gate stays the camera's."""
    det = model if model is not None else \
        build_detector(cam.detector, cfg.detector_section(cam) if cam.detector != "none" else None)
    if cam.gate != "none" and cam.detector not in ("none", "motion"):
        from detectors.motion import GatedDetector
        det = GatedDetector(det, build_detector("motion", cfg.detectors.motion),
                            mode="region" if cam.gate == "motion-region" else "frame")
    return det


_TRACK_EVENTS = {"started": EventKind.TRACK_STARTED, "ended": EventKind.TRACK_ENDED}


# events that get a JPEG snapshot (frame with the box) stored with them
SNAPSHOT_KINDS = frozenset({EventKind.LINE_CROSSED, EventKind.ZONE_ENTER, EventKind.DEFECT_FOUND,
                            EventKind.TEXT_READ, EventKind.TRACK_STARTED})

Emit = Callable[..., Any]  # emit(event, snapshot_jpeg_bytes_or_None)


class Analyzer:
    def __init__(self, camera: str, detector: Detector, tracker: Tracker,
                 emit: Emit | None = None, lines: list[LineCounter] | None = None,
                 zones: list[ZoneCounter] | None = None, snapshots: bool = True,
                 defects: DefectWatch | None = None) -> None:
        self.camera = camera
        self.detector = detector
        self.tracker = tracker
        self.emit = emit
        self.lines = list(lines or [])
        self.zones = list(zones or [])
        self.defects = defects
        self.snapshots = snapshots
        self._frame_size: tuple[int, int] | None = None
        self.has_detector = getattr(detector, "name", "") != "none"
        self.class_names: list[str] = list(getattr(detector, "class_names", []) or [])
        self._lock = threading.Lock()
        self.detections_total = 0
        # distinct confirmed ids: counted from the tracker's "started" events (one per id)
        # rather than kept in a set, so a camera running for months holds no growing state
        self.confirmed_tracks = 0
        self._last_tracks: Tracks = Tracks.empty()
        # ids matched by a detection at the last detector update: between detector runs
        # predict() reports det_index=-1 for every track, but only these are "seen"
        self._matched_ids = np.zeros(0, np.int64)
        # OCR text per track (from a text detector's Detections.text), read once per track
        self._texts: dict[int, str] = {}
        # per live confirmed track, for its track_ended event (the ended track is no longer in
        # the tracks): [started ts, last seen ts, last seen box, class id, label], "seen" being
        # the last update a detection matched it; dropped when it ends, pruned to the shown ids
        # past 4 x tracker.max_tracks (ended events lost from a full tracker event queue)
        self._seen: dict[int, list[Any]] = {}

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
            matched = np.flatnonzero(tracks.det_index >= 0)
            self._matched_ids = tracks.track_id[matched]
            self._remember(tracks, matched, frame.ts)
            if dets.text is not None:
                self._read_texts(frame, tracks, dets)
            self._after(tracks, frame)
            return self._with_text(tracks)

    def _remember(self, tracks: Tracks, matched: np.ndarray, ts: float) -> None:
        """Last seen box / label of every matched track (reported tracks are confirmed ones)."""
        if matched.size:
            seen = self._seen
            labels = tracks.label
            for i, tid, cid, box in zip(matched.tolist(), tracks.track_id[matched].tolist(),
                                        tracks.class_id[matched].tolist(),
                                        tracks.xyxy[matched].tolist()):
                label = labels[i] if labels is not None else None
                entry = seen.get(tid)
                if entry is None:
                    seen[tid] = [ts, ts, box, cid, label]
                else:
                    entry[1:] = ts, box, cid, label
        if len(self._seen) > 4 * self.tracker.params.max_tracks:
            live = set(tracks.track_id.tolist())
            self._seen = {k: v for k, v in self._seen.items() if k in live}

    def _read_texts(self, frame: Frame, tracks: Tracks, dets: Detections) -> None:
        """Carry OCR text from detections to their tracks; one TEXT_READ event per track and
        distinct text (a track re-read with the same text is not reported again)."""
        for i in np.flatnonzero(tracks.det_index >= 0):
            text = dets.text[int(tracks.det_index[i])]
            if not text:
                continue
            tid = int(tracks.track_id[i])
            if self._texts.get(tid) == text:
                continue
            self._texts[tid] = text
            row = int(tracks.det_index[i])
            data: dict[str, Any] = {"text": text}
            conf = dets.data.get(TEXT_CONFIDENCE)
            if conf is not None:
                data["confidence"] = round(float(conf[row]), 1)
            rbox = dets.data.get(ROTATED_BOX)
            if rbox is not None:  # cx, cy, w, h, angle_deg of the text line that was read
                data["rotated_box"] = [round(float(v), 1) for v in rbox[row]]
            self._send(Event(EventKind.TEXT_READ, self.camera, ts=frame.wall_ts, track_id=tid,
                             label=self._label(tracks, int(i)),
                             box=tuple(float(v) for v in tracks.xyxy[i]),
                             data=data, frame_seq=frame.seq), frame)
        if len(self._texts) > 4 * self.tracker.params.max_tracks:  # bounded: keep live ids only
            live = set(int(t) for t in tracks.track_id)
            self._texts = {k: v for k, v in self._texts.items() if k in live}

    def _with_text(self, tracks: Tracks) -> Tracks:
        if self._texts and len(tracks):
            return tracks.with_text([self._texts.get(t) for t in tracks.track_id.tolist()])
        return tracks

    def coasting(self, tracks: Tracks) -> np.ndarray:
        """True for tracks that no detection matched at the last detector update."""
        return ~np.isin(tracks.track_id, self._matched_ids)

    def track(self, frame: Frame) -> Tracks:
        """Tracks at this frame's time (a Kalman prediction between detections)."""
        with self._lock:
            tracks = self.tracker.predict(frame.ts).with_frame(frame.seq, frame.ts)
            self._after(tracks, frame)
            return self._with_text(tracks)

    def _after(self, tracks: Tracks, frame: Frame) -> None:
        self._last_tracks = tracks
        events = self.tracker.pop_events()
        self.confirmed_tracks += sum(1 for kind, _ in events if kind == "started")
        if self.emit is None:
            return
        for kind, tid in events:
            ev_kind = _TRACK_EVENTS.get(kind)
            if ev_kind is None:  # "lost"/"recovered": internal to re-identification
                continue
            box = None
            label = None
            data: dict[str, Any] = {}
            idx = np.flatnonzero(tracks.track_id == tid)
            if idx.size:
                box = tuple(float(v) for v in tracks.xyxy[idx[0]])
                label = self._label(tracks, int(idx[0]))
            if ev_kind is EventKind.TRACK_ENDED:
                seen = self._seen.pop(int(tid), None)
                self._texts.pop(int(tid), None)
                if seen is not None:
                    # an ended track is no longer in the tracks: where and what it was when a
                    # detection last matched it; duration from its track_started frame to then
                    # (the ended event itself comes max_age_s, or reid_window_s, later)
                    started, last, last_box, cid, last_label = seen
                    box = box or tuple(float(v) for v in last_box)
                    label = label or last_label or self._class_name(cid)
                    data["duration_s"] = round(max(0.0, last - started), 3)
            self._send(Event(ev_kind, self.camera, ts=frame.wall_ts, track_id=int(tid), label=label,
                             box=box, data=data, frame_seq=frame.seq), frame)

    def _label(self, tracks: Tracks, i: int) -> str | None:
        if tracks.label is not None and tracks.label[i]:
            return str(tracks.label[i])
        return self._class_name(int(tracks.class_id[i]))

    def _class_name(self, c: int) -> str | None:
        return self.class_names[c] if 0 <= c < len(self.class_names) else None

    def _send(self, ev: Event, frame: Frame) -> None:
        if self.emit is None:
            return
        snap = None
        if self.snapshots and ev.kind in SNAPSHOT_KINDS and ev.box is not None:
            snap = frame_snapshot(frame.image, ev.box, ev.label)
        self.emit(ev, snap)

    @property
    def observers(self) -> list[TrackObserver]:
        """Lines, zones and the defect watch, in that order (events.observers.TrackObserver)."""
        return [*self.lines, *self.zones, *([self.defects] if self.defects is not None else [])]

    def observe(self, frame: Frame, tracks: Tracks) -> None:
        """Zones, lines and the defect watch, once per displayed frame (not for late
        detector updates)."""
        self._frame_size = (frame.width, frame.height)
        observers = self.observers
        if not observers:
            return
        snapshots = self.snapshots and self.emit is not None
        with self._lock:
            for ob in observers:
                for ev, snap in ob.observe(frame, tracks, self.class_names, snapshots=snapshots):
                    if self.emit is not None:
                        self.emit(ev, snap)

    def finish(self) -> None:
        """End of stream: judge parts still waiting for a learned reference."""
        snapshots = self.snapshots and self.emit is not None
        with self._lock:
            for ob in self.observers:
                for ev, snap in ob.flush(snapshots=snapshots):
                    if self.emit is not None:
                        self.emit(ev, snap)

    def close(self) -> None:
        """Release the observers' and the detector's resources (the defect watch's Tesseract
        API; ONNX sessions, OCR thread pools). Idempotent; call it once the threads using
        this analyzer have stopped (a closed detector returns empty Detections)."""
        for part in (*self.observers, self.detector):
            close = getattr(part, "close", None)
            if close is None:
                continue
            try:
                close()
            except Exception:  # noqa: BLE001 - one failing close never stops the others
                log.exception("[%s] closing %r failed", self.camera, part)

    def trails(self) -> dict[int, np.ndarray]:
        with self._lock:
            return self.tracker.trails()

    def scene(self, tracks: Tracks, status: StatusInfo | None = None,
              banner: str | None = None) -> OverlayScene:
        """What the overlay draws on the frame these tracks were reported for: the tracks
        (dashed where no detection matched at the last detector update), their trails, the
        zones and lines with their counts, and the optional status strip and banner."""
        return OverlayScene(tracks=tracks, trails=self.trails(), class_names=tuple(self.class_names),
                            zones=tuple(self.zone_draws()), lines=tuple(self.line_draws()),
                            coasting=self.coasting(tracks), status=status, banner=banner)

    def _drawings(self) -> list[Any]:
        size = self._frame_size
        if size is None:
            return []
        return [d for d in (ob.drawing(size) for ob in self.observers) if d is not None]

    def zone_draws(self) -> list[ZoneDraw]:
        return [ZoneDraw(d.name, d.polygon, d.counts, color=d.color)
                for d in self._drawings() if isinstance(d, ZoneDrawing)]

    def line_draws(self) -> list[LineDraw]:
        return [LineDraw(d.name, d.p1, d.p2, d.count_in, d.count_out, in_side=d.in_side,
                         color=d.color, text=d.text, arrow=d.arrow)
                for d in self._drawings() if isinstance(d, LineDrawing)]

    def counters(self) -> dict[str, Any]:
        out: dict[str, Any] = {"detections": self.detections_total,
                               "confirmed_tracks": self.confirmed_tracks}
        for ob in self.observers:
            out.update(ob.camera_counters())
        return out

    def reset_counters(self) -> None:
        """Counting starts again (MQTT command reset_counters): lines and zones forget their
        counts and per-track sides (a track already inside a zone is counted again once it
        has been seen inside confirm_frames times, as `appeared`), the defect watch its counts,
        parts pending and learned references (a reference file stays). Detections and
        confirmed tracks are totals of the camera's run and stay."""
        with self._lock:
            for ln in self.lines:
                ln.reset(counts=True)
            for z in self.zones:
                z.reset(counts=True)
            if self.defects is not None:
                self.defects.reset()

    def counters_detail(self) -> dict[str, Any]:
        return {"lines": {ln.name: ln.counts() for ln in self.lines},
                "zones": {z.name: z.counts() for z in self.zones}}


def build_analyzer(cam: CameraConfig, cfg: VigilConfig, detector: Detector | None = None,
                   emit: Emit | None = None) -> Analyzer:
    det = detector if detector is not None else build_camera_detector(cam, cfg)
    lines = [LineCounter.from_config(ln, camera=cam.name, anchor=ln.anchor) for ln in cam.lines]
    zones = [ZoneCounter.from_config(z, camera=cam.name, anchor=z.anchor,
                                     confirm_frames=z.confirm_frames) for z in cam.zones]
    defects = None
    if cam.defect_watch is not None and cam.defect_watch.enabled:
        defects = DefectWatch(cam.name, cam.defect_watch)
    return Analyzer(cam.name, det, Tracker(cfg.tracker), emit, lines=lines, zones=zones,
                    snapshots=cfg.events.snapshots, defects=defects)
