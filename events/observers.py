"""One protocol for everything that watches a camera's tracks: counting lines, zones and the
defect watch (`TrackObserver`), and the plain-data drawing each one asks the overlay for.

The analyzer holds a list of observers and treats them alike, once per displayed frame:

    for ob in observers:
        for event, snapshot in ob.observe(frame, tracks, class_names, snapshots=True):
            emit(event, snapshot)

- `observe()` returns the frame's events, each with an optional JPEG snapshot the observer
  made itself (a counting line shows the whole frame with the box, the defect watch the
  judged crop); `snapshots=False` asks for none (nobody stores them: no encoding).
- `camera_counters()` gives the flat name -> number entries the observer adds to its
  camera's counters (the dashboard and `process --json` show them). The observers' own
  read methods (`LineCounter.counts()`, `ZoneCounter.counts()`, `DefectWatch.counters()`)
  stay their fuller, structured views.
- `drawing(frame_size)` describes what to draw, in pixels (`LineDrawing`, `ZoneDrawing`;
  stream.overlay turns them into its LineDraw / ZoneDraw), or None.
- `flush()` is the end of a stream (the defect watch judges the parts still waiting);
  `close()` releases what the observer holds (the defect watch's Tesseract API). Both are
  idempotent; for lines and zones they do nothing.

Events here never import stream/: the drawings are plain data.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Protocol, Sequence, runtime_checkable

import numpy as np

from core.types import Event, Frame, Tracks

__all__ = ["TrackObserver", "LineDrawing", "ZoneDrawing", "Drawing", "Observed"]

Observed = list[tuple[Event, "bytes | None"]]


@dataclass(frozen=True)
class LineDrawing:
    """A line p1->p2 in pixels. in_side is stream.overlay.LineDraw's: +1 the right-hand side
    of p1->p2 on screen (normal (-dy, dx)), -1 the left-hand one (the counting lines' "in"
    side, events.zones). text replaces "NAME in N out M"; arrow False draws no direction."""

    name: str
    p1: tuple[int, int]
    p2: tuple[int, int]
    count_in: int = 0
    count_out: int = 0
    in_side: int = -1
    color: tuple[int, int, int] | None = None
    text: str | None = None
    arrow: bool = True


@dataclass(frozen=True)
class ZoneDrawing:
    """A polygon (K,2) int32 pixels with its occupancy per class."""

    name: str
    polygon: np.ndarray
    counts: Mapping[str, int] = field(default_factory=dict)
    color: tuple[int, int, int] | None = None


Drawing = LineDrawing | ZoneDrawing


@runtime_checkable
class TrackObserver(Protocol):
    name: str

    def observe(self, frame: Frame, tracks: Tracks, class_names: Sequence[str] | None = None, *,
                snapshots: bool = True) -> list[tuple[Event, bytes | None]]: ...

    def camera_counters(self) -> dict[str, Any]: ...

    def drawing(self, frame_size: Sequence[int]) -> Drawing | None: ...

    def flush(self, *, snapshots: bool = True) -> list[tuple[Event, bytes | None]]: ...

    def close(self) -> None: ...
