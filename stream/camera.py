"""A camera pipeline of this process behind the camera interface (core/camera.py): the only
view of it that the web layer, metrics and event consumers get."""
from __future__ import annotations

import dataclasses

import numpy as np

from core.camera import (CameraMemory, CameraStatus, CaptureStatus, ClipFile, FrameFeed, JpegFrame,
                         StageStatus, StreamKind, TrackInfo, TrackList, failed_status)
from core.uri import redact_uri
from stream.pipeline import CameraPipeline

__all__ = ["LocalCamera", "FailedCamera"]


class LocalCamera:
    """Camera interface over a CameraPipeline running in this process."""

    def __init__(self, pipeline: CameraPipeline) -> None:
        self._p = pipeline
        self.name = pipeline.name
        self._feeds = {StreamKind.OVERLAY: pipeline.overlay_hub,
                       StreamKind.EXPOSURE: pipeline.exposure_hub}

    def status(self) -> CameraStatus:
        p = self._p
        lat = p.latency.percentiles(50, 95)
        buckets, total = p.latency.histogram()
        stages = {k: StageStatus(**s.snapshot()) for k, s in
                  (("detect", p.detect_stage), ("track", p.track_stage), ("publish", p.publish_stage))}
        stages["detect"] = dataclasses.replace(stages["detect"], dropped=p.detector_dropped)
        return CameraStatus(
            name=p.name, state=p.capture.state.value, source=redact_uri(p.cam.source),
            detector=p.cam.detector, detect_every=p.cam.detect_every,
            capture=CaptureStatus(**p.capture.snapshot()), stages=stages,
            latency_ms={"p50": None if lat[0] is None else round(lat[0] * 1000, 2),
                        "p95": None if lat[1] is None else round(lat[1] * 1000, 2)},
            latency_buckets=tuple(buckets), latency_sum_s=float(total),
            viewers={k.value: f.viewers for k, f in self._feeds.items()},
            encodes={k.value: f.encodes for k, f in self._feeds.items()},
            tracks=len(p.latest_tracks), counters=p.analyzer.counters(),
            clips=None if p.clips is None else p.clips.stats(), pool=p.pool_status())

    def tracks(self) -> TrackList:
        p = self._p
        t = p.latest_tracks
        names = p.analyzer.class_names
        coasting = p.analyzer.coasting(t).tolist()
        labels = t.label.tolist() if t.label is not None else [None] * len(t)
        texts = t.text.tolist() if t.text is not None else [None] * len(t)
        rows = []
        for i, (tid, cid, score, age, box) in enumerate(zip(
                t.track_id.tolist(), t.class_id.tolist(), t.score.tolist(), t.age.tolist(),
                np.asarray(t.xyxy, np.float64).tolist())):
            label = labels[i] or (names[cid] if 0 <= cid < len(names) else None)
            rows.append(TrackInfo(int(tid), int(cid), label, round(float(score), 4), int(age),
                                  tuple(round(v, 1) for v in box), bool(coasting[i]), texts[i]))
        return TrackList(self.name, int(t.frame_seq), tuple(rows))

    def frames(self, kind: StreamKind) -> FrameFeed | None:
        return self._feeds.get(StreamKind(kind))

    def snapshot(self, kind: StreamKind, width: int | None = None,
                 timeout: float = 2.0) -> JpegFrame | None:
        feed = self._feeds[StreamKind(kind)]
        with feed.subscribe() as viewer:  # subscribing makes the publisher draw
            frame = viewer.next(timeout=timeout, width=width)
        return frame if frame is not None else feed.latest(width)

    def reset_exposure(self) -> bool:
        self._p.exposure.reset()
        return True

    def reset_counters(self) -> bool:
        self._p.analyzer.reset_counters()
        return True

    def clip(self, name: str) -> ClipFile | None:
        clips = self._p.clips
        if clips is None:
            return None
        path = clips.path(name)
        if path is not None:
            return ClipFile(name, "ready", path)
        current = self._p.latest_frame
        left = clips.recording_left_s(name, None if current is None else current.ts)
        return None if left is None else ClipFile(name, "recording", retry_after_s=round(left, 1))

    def memory(self) -> CameraMemory:
        p = self._p
        counts = {f"{k.value}_hub.jpeg_variants": f.jpeg_variants for k, f in self._feeds.items()}
        limits = {f"{k.value}_hub.jpeg_variants": f.max_variants for k, f in self._feeds.items()}
        if p.clips is not None:
            st = p.clips.stats()
            counts["clips.ring_frames"] = st["ring_frames"]
            counts["clips.frames_dropped"] = st["frames_dropped"]
            limits["clips.ring"] = p.clips.max_ring_bytes
            limits["clips.encoder_queue"] = p.clips.max_queue_bytes
        counts["tracker.tracks"] = len(p.latest_tracks)
        dw = p.analyzer.defects
        if dw is not None:  # its learning pool holds part crops (~0.5 MB each) up to max_pending
            c = dw.counters()
            counts["defect_watch.pending"] = c["pending"]
            counts["defect_watch.references"] = c["references"]
            counts["defect_watch.verdicts"] = len(dw.verdicts)
            limits["defect_watch.pending"] = dw.cfg.max_pending
            limits["defect_watch.verdicts"] = dw.cfg.max_verdicts
        return CameraMemory(self.name, p.memory_bytes(), counts, limits)


class FailedCamera:
    """A configured camera whose pipeline could not even be built (missing model file, bad
    detector parameter): it answers with its state and message; it has no frames."""

    def __init__(self, name: str, detector: str, source: str, message: str) -> None:
        self.name = name
        self._status = failed_status(name, detector, redact_uri(source), message)

    def status(self) -> CameraStatus:
        return self._status

    def tracks(self) -> TrackList:
        return TrackList(self.name, None, ())

    def frames(self, kind: StreamKind) -> FrameFeed | None:
        return None

    def snapshot(self, kind: StreamKind, width: int | None = None,
                 timeout: float = 2.0) -> JpegFrame | None:
        return None

    def reset_exposure(self) -> bool:
        return False

    def reset_counters(self) -> bool:
        return False

    def clip(self, name: str) -> ClipFile | None:
        return None

    def memory(self) -> CameraMemory:
        return CameraMemory(self.name)
