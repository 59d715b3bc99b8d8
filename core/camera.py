"""The camera interface: the one narrow, typed, read-mostly view of a camera that the web
layer, metrics and event consumers use. Its values are plain data (frozen dataclasses that
serialise to JSON and pickle), so the same interface can later stand for a camera in another
process or on another node.

    camera.status()               CameraStatus: state, stages, counters, latency, source redacted
    camera.tracks()               TrackList: the tracks on the newest frame
    camera.frames(kind)           FrameFeed: the newest JPEG of a stream kind, at any width
    camera.snapshot(kind, width)  JpegFrame | None: the next frame (or the newest)
    camera.reset_exposure()       restart the long exposure
    camera.reset_counters()       restart the line, zone and defect-watch counts
    camera.clip(name)             ClipFile | None: an event clip, ready or still recording
    camera.memory()               CameraMemory: bytes held by its buffers, by part
"""
from __future__ import annotations

import enum
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ContextManager, Protocol, runtime_checkable

from core.types import SourceState

__all__ = ["StreamKind", "JpegFrame", "ClipFile", "StageStatus", "CaptureStatus", "CameraStatus",
           "TrackInfo", "TrackList", "FrameFeed", "FrameViewer", "Camera", "CameraMemory",
           "failed_status"]


class StreamKind(str, enum.Enum):
    OVERLAY = "overlay"     # the live frame with tracks, zones, lines and status drawn
    EXPOSURE = "exposure"   # the long exposure (frames averaged: motion leaves trails)


@dataclass(frozen=True)
class JpegFrame:
    """One encoded frame. ts: capture time (monotonic, for latency inside Vigil); wall_ts:
    capture time in epoch seconds (what clients compare with their own clock)."""

    data: bytes
    seq: int
    ts: float
    wall_ts: float
    width: int
    height: int

    def __len__(self) -> int:
        return len(self.data)


@dataclass(frozen=True)
class StageStatus:
    processed: int = 0
    errors: int = 0
    dropped: int = 0  # inputs replaced by newer ones before this stage took them (detect)
    fps: float = 0.0
    ms_p50: float | None = None
    ms_p95: float | None = None


@dataclass(frozen=True)
class CaptureStatus:
    state: str
    state_for_s: float = 0.0
    attempts: int = 0
    reconnects: int = 0
    last_error: str | None = None
    frames_in: int = 0
    dropped: int = 0
    errors: int = 0
    fps: float = 0.0
    native_fps: float | None = None
    last_frame_age_s: float | None = None
    live_source: bool = False


@dataclass(frozen=True)
class CameraStatus:
    name: str
    state: str
    source: str  # redacted: never a password
    detector: str
    detect_every: int
    capture: CaptureStatus
    stages: dict[str, StageStatus] = field(default_factory=dict)  # detect, track, publish
    latency_ms: dict[str, float | None] = field(default_factory=lambda: {"p50": None, "p95": None})
    # capture -> publish latency, Prometheus style: cumulative (le, count) pairs and the sum (s)
    latency_buckets: tuple[tuple[str, int], ...] = ()
    latency_sum_s: float = 0.0
    viewers: dict[str, int] = field(default_factory=dict)   # per stream kind
    encodes: dict[str, int] = field(default_factory=dict)   # JPEG encodes per stream kind
    tracks: int = 0
    counters: dict[str, Any] = field(default_factory=dict)
    clips: dict[str, Any] | None = None
    node: str | None = None  # cluster mode: the node it runs on (None: this process, or pending)
    # the node's detector pool serving this camera (None: a detector of its own): kind, workers,
    # busy, queue, inference_ms_p50/p95, batch_mean/max, restarts, timeouts; and under "camera"
    # this camera's served, share, dropped, timeouts, in_flight
    pool: dict[str, Any] | None = None

    @property
    def ready(self) -> bool:
        """Has shown a frame, or reached an end it will not leave by itself."""
        return self.capture.frames_in > 0 or self.state in (SourceState.FAILED, SourceState.ENDED)

    def to_dict(self) -> dict[str, Any]:
        """The API's view (`/api/cameras/<name>`)."""
        d = asdict(self)
        for k in ("latency_buckets", "latency_sum_s", "encodes"):
            d.pop(k)
        return d


def failed_status(name: str, detector: str, source: str, message: str) -> CameraStatus:
    """The status of a camera whose pipeline could not even be built."""
    failed = SourceState.FAILED.value
    return CameraStatus(name=name, state=failed, source=source, detector=detector,
                        detect_every=1, capture=CaptureStatus(state=failed, last_error=message),
                        viewers={k.value: 0 for k in StreamKind})


@dataclass(frozen=True)
class ClipFile:
    """An event clip: readable at `path` when state is "ready"; while "recording" (post-roll
    still being captured, or encoding) it is not readable yet: ask again in retry_after_s."""

    name: str
    state: str  # "ready" | "recording"
    path: Path | None = None
    retry_after_s: float | None = None


@dataclass(frozen=True)
class CameraMemory:
    """Bytes a camera's buffers hold, by part (capture_slot, overlay_hub.jpeg, clips.ring,
    tracker, ...; each buffer counted once), with counts (JPEG width variants, ring frames)
    and the configured caps (bytes or items) of the parts that have one."""

    camera: str
    parts: dict[str, int] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    limits: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.parts.values())

    def to_dict(self) -> dict[str, Any]:
        return {"bytes": self.total, "parts": dict(self.parts), "counts": dict(self.counts),
                "limits": dict(self.limits)}


@dataclass(frozen=True)
class TrackInfo:
    track_id: int
    class_id: int
    label: str | None
    score: float
    age: int
    xyxy: tuple[float, float, float, float]
    coasting: bool  # no detection matched it at the last detector update: a prediction
    text: str | None = None


@dataclass(frozen=True)
class TrackList:
    camera: str
    frame_seq: int | None
    tracks: tuple[TrackInfo, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"camera": self.camera, "frame_seq": self.frame_seq,
                "tracks": [dict(asdict(t), xyxy=list(t.xyxy)) for t in self.tracks]}


class FrameViewer(Protocol):
    """One subscriber of a FrameFeed (see stream.hub.Viewer)."""

    @property
    def active(self) -> bool: ...
    def next(self, timeout: float, width: int | None = None,
             min_interval: float = 0.0) -> JpegFrame | None: ...
    def cancel(self) -> None: ...
    def mark_sent(self, nbytes: int) -> None: ...


class FrameFeed(Protocol):
    """The newest JPEG of one stream kind (in process: stream.hub.FrameHub)."""

    def subscribe(self) -> ContextManager[FrameViewer]: ...
    def latest(self, width: int | None = None) -> JpegFrame | None: ...


@runtime_checkable
class Camera(Protocol):
    name: str

    def status(self) -> CameraStatus: ...
    def tracks(self) -> TrackList: ...
    def frames(self, kind: StreamKind) -> FrameFeed | None: ...
    def snapshot(self, kind: StreamKind, width: int | None = None,
                 timeout: float = 2.0) -> JpegFrame | None: ...
    def reset_exposure(self) -> bool: ...
    def reset_counters(self) -> bool: ...
    def clip(self, name: str) -> ClipFile | None: ...
    def memory(self) -> CameraMemory: ...
