"""Core value types that flow between stages.

Detections and Tracks are column arrays (one numpy array per field), validated
once in the constructor, so every later stage can trust shapes and finiteness
without re-checking.
"""
from __future__ import annotations

import enum
import time
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

__all__ = ["Frame", "Detections", "Tracks", "Event", "EventKind", "SourceState", "json_default"]


class SourceState(str, enum.Enum):
    """Visible state of a capture source (see stream/capture.py)."""

    CONNECTING = "CONNECTING"
    LIVE = "LIVE"
    STALLED = "STALLED"
    RECONNECTING = "RECONNECTING"
    FAILED = "FAILED"
    ENDED = "ENDED"  # a finite file that is not looped reached its end
    STOPPED = "STOPPED"


@dataclass(frozen=True, eq=False)
class Frame:
    """One decoded image from a source.

    image: (H, W, 3) uint8 BGR. seq: strictly increasing per source.
    ts: capture time on the monotonic clock (time.monotonic()).
    """

    image: np.ndarray
    seq: int
    ts: float
    source: str = ""
    wall_ts: float = field(default_factory=time.time)

    def __post_init__(self) -> None:
        img = self.image
        if not isinstance(img, np.ndarray):
            raise TypeError(f"Frame.image must be a numpy array, got {type(img).__name__}")
        if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
            raise ValueError(f"Frame.image must be (H,W,3) uint8 BGR, got {img.shape} {img.dtype}")
        if img.shape[0] == 0 or img.shape[1] == 0:
            raise ValueError(f"Frame.image is empty: {img.shape}")
        if int(self.seq) < 0:
            raise ValueError(f"Frame.seq must be >= 0, got {self.seq}")
        if not np.isfinite(self.ts):
            raise ValueError(f"Frame.ts must be finite, got {self.ts}")

    @property
    def height(self) -> int:
        return int(self.image.shape[0])

    @property
    def width(self) -> int:
        return int(self.image.shape[1])


def _col(name: str, value: Any, n: int | None, dtype: Any) -> np.ndarray:
    arr = np.asarray(value, dtype=dtype)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    if n is not None and arr.shape[0] != n:
        raise ValueError(f"{name} has {arr.shape[0]} rows, expected {n}")
    return arr


def _str_col(name: str, value: Sequence[str] | np.ndarray | None, n: int) -> np.ndarray | None:
    if value is None:
        return None
    arr = np.empty(n, dtype=object)
    vals = list(value)
    if len(vals) != n:
        raise ValueError(f"{name} has {len(vals)} rows, expected {n}")
    for i, v in enumerate(vals):
        if v is not None and not isinstance(v, str):
            raise ValueError(f"{name}[{i}] must be str or None, got {type(v).__name__}")
        arr[i] = v
    return arr


class Detections:
    """Boxes found in one frame, as column arrays.

    xyxy (N,4) float32 pixel corners with x2>=x1, y2>=y1; score (N,) float32;
    class_id (N,) int32; label / text: optional (N,) object arrays of str|None.
    frame_seq / ts: the frame the detections were computed on (-1 / nan if unknown).
    """

    __slots__ = ("xyxy", "score", "class_id", "label", "text", "frame_seq", "ts")

    def __init__(
        self,
        xyxy: Any,
        score: Any,
        class_id: Any,
        label: Sequence[str] | np.ndarray | None = None,
        text: Sequence[str | None] | np.ndarray | None = None,
        frame_seq: int = -1,
        ts: float = float("nan"),
    ) -> None:
        box = np.asarray(xyxy, dtype=np.float32)
        if box.size == 0:
            box = box.reshape(0, 4)
        if box.ndim != 2 or box.shape[1] != 4:
            raise ValueError(f"xyxy must have shape (N,4), got {box.shape}")
        n = box.shape[0]
        if not np.all(np.isfinite(box)):
            raise ValueError("xyxy contains NaN or inf")
        if n and (np.any(box[:, 2] < box[:, 0]) or np.any(box[:, 3] < box[:, 1])):
            raise ValueError("xyxy rows must satisfy x2 >= x1 and y2 >= y1")
        sc = _col("score", score, n, np.float32)
        if not np.all(np.isfinite(sc)):
            raise ValueError("score contains NaN or inf")
        cls_raw = np.asarray(class_id)
        if cls_raw.size and cls_raw.dtype.kind == "f" and not np.all(np.mod(cls_raw, 1) == 0):
            raise ValueError("class_id must be integers")
        cls = _col("class_id", cls_raw, n, np.int32)
        self.xyxy = np.ascontiguousarray(box)
        self.score = sc
        self.class_id = cls
        self.label = _str_col("label", label, n)
        self.text = _str_col("text", text, n)
        self.frame_seq = int(frame_seq)
        self.ts = float(ts)

    @classmethod
    def empty(cls, frame_seq: int = -1, ts: float = float("nan")) -> "Detections":
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int32),
                   frame_seq=frame_seq, ts=ts)

    def __len__(self) -> int:
        return int(self.xyxy.shape[0])

    def len(self) -> int:  # noqa: A003 - the design names it
        return len(self)

    def select(self, which: Any) -> "Detections":
        """Rows by boolean mask or integer index array (keeps frame_seq/ts)."""
        idx = np.asarray(which)
        if idx.dtype == bool and idx.shape != (len(self),):
            raise ValueError(f"mask has shape {idx.shape}, expected ({len(self)},)")
        if idx.ndim == 0:
            idx = idx.reshape(1)
        return Detections(
            self.xyxy[idx], self.score[idx], self.class_id[idx],
            None if self.label is None else self.label[idx],
            None if self.text is None else self.text[idx],
            self.frame_seq, self.ts,
        )

    def with_frame(self, frame_seq: int, ts: float) -> "Detections":
        out = self.select(np.arange(len(self)))
        out.frame_seq, out.ts = int(frame_seq), float(ts)
        return out

    @staticmethod
    def concat(parts: Sequence["Detections"]) -> "Detections":
        parts = [p for p in parts if p is not None]
        if not parts:
            return Detections.empty()
        n = sum(len(p) for p in parts)
        have_label = any(p.label is not None for p in parts)
        have_text = any(p.text is not None for p in parts)
        lab = [] if have_label else None
        txt = [] if have_text else None
        for p in parts:
            if lab is not None:
                lab.extend(p.label.tolist() if p.label is not None else [None] * len(p))
            if txt is not None:
                txt.extend(p.text.tolist() if p.text is not None else [None] * len(p))
        return Detections(
            np.concatenate([p.xyxy for p in parts]).reshape(n, 4),
            np.concatenate([p.score for p in parts]),
            np.concatenate([p.class_id for p in parts]),
            lab, txt, parts[0].frame_seq, parts[0].ts,
        )

    def __repr__(self) -> str:
        return f"Detections(n={len(self)}, frame_seq={self.frame_seq})"


class Tracks:
    """Tracker output for one frame time: confirmed tracks as column arrays.

    det_index[i] is the row of the detection that updated track i on this
    frame, or -1 while the track coasts on its Kalman prediction.
    """

    __slots__ = ("xyxy", "track_id", "class_id", "score", "age", "det_index", "frame_seq", "ts",
                 "label", "text")

    def __init__(
        self,
        xyxy: Any,
        track_id: Any,
        class_id: Any,
        score: Any,
        age: Any,
        det_index: Any,
        frame_seq: int = -1,
        ts: float = float("nan"),
        label: Sequence[str | None] | np.ndarray | None = None,
        text: Sequence[str | None] | np.ndarray | None = None,
    ) -> None:
        box = np.asarray(xyxy, dtype=np.float32)
        if box.size == 0:
            box = box.reshape(0, 4)
        if box.ndim != 2 or box.shape[1] != 4:
            raise ValueError(f"xyxy must have shape (N,4), got {box.shape}")
        if not np.all(np.isfinite(box)):
            raise ValueError("xyxy contains NaN or inf")
        n = box.shape[0]
        self.xyxy = np.ascontiguousarray(box)
        self.track_id = _col("track_id", track_id, n, np.int64)
        self.class_id = _col("class_id", class_id, n, np.int32)
        self.score = _col("score", score, n, np.float32)
        if not np.all(np.isfinite(self.score)):
            raise ValueError("score contains NaN or inf")
        self.age = _col("age", age, n, np.int32)
        self.det_index = _col("det_index", det_index, n, np.int32)
        if n and np.any(self.det_index < -1):
            raise ValueError("det_index must be >= -1")
        if n and len(np.unique(self.track_id)) != n:
            raise ValueError("track_id values must be unique")
        self.frame_seq = int(frame_seq)
        self.ts = float(ts)
        self.label = _str_col("label", label, n)
        self.text = _str_col("text", text, n)

    @classmethod
    def empty(cls, frame_seq: int = -1, ts: float = float("nan")) -> "Tracks":
        z = np.zeros(0)
        return cls(np.zeros((0, 4), np.float32), z, z, z, z, z, frame_seq, ts)

    def __len__(self) -> int:
        return int(self.xyxy.shape[0])

    def len(self) -> int:  # noqa: A003
        return len(self)

    @property
    def coasting(self) -> np.ndarray:
        return self.det_index < 0

    def select(self, which: Any) -> "Tracks":
        idx = np.asarray(which)
        return Tracks(self.xyxy[idx], self.track_id[idx], self.class_id[idx], self.score[idx],
                      self.age[idx], self.det_index[idx], self.frame_seq, self.ts,
                      None if self.label is None else self.label[idx],
                      None if self.text is None else self.text[idx])

    def to_list(self) -> list[dict[str, Any]]:
        """JSON-friendly rows (for the API)."""
        out = []
        for i in range(len(self)):
            out.append({
                "track_id": int(self.track_id[i]),
                "class_id": int(self.class_id[i]),
                "label": None if self.label is None else self.label[i],
                "text": None if self.text is None else self.text[i],
                "score": round(float(self.score[i]), 4),
                "age": int(self.age[i]),
                "coasting": bool(self.det_index[i] < 0),
                "xyxy": [round(float(v), 1) for v in self.xyxy[i]],
            })
        return out

    def __repr__(self) -> str:
        return f"Tracks(n={len(self)}, frame_seq={self.frame_seq})"


class EventKind(str, enum.Enum):
    TRACK_STARTED = "track_started"
    TRACK_ENDED = "track_ended"
    ZONE_ENTER = "zone_enter"
    ZONE_LEAVE = "zone_leave"
    LINE_CROSSED = "line_crossed"
    TEXT_READ = "text_read"
    DEFECT_FOUND = "defect_found"
    PART_PASSED = "part_passed"
    CAMERA_STATE = "camera_state"


@dataclass(frozen=True)
class Event:
    """Something worth telling a user about. `ts` is wall-clock (epoch seconds)."""

    kind: EventKind
    camera: str
    ts: float = field(default_factory=time.time)
    track_id: int | None = None
    label: str | None = None
    box: tuple[float, float, float, float] | None = None
    data: Mapping[str, Any] = field(default_factory=dict)
    frame_seq: int | None = None
    id: int | None = None  # assigned by the store

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", EventKind(self.kind))
        if not self.camera or not isinstance(self.camera, str):
            raise ValueError("Event.camera must be a non-empty string")
        if not np.isfinite(self.ts):
            raise ValueError("Event.ts must be finite")
        if self.box is not None:
            b = tuple(float(v) for v in self.box)
            if len(b) != 4 or not all(np.isfinite(b)):
                raise ValueError(f"Event.box must be 4 finite numbers, got {self.box}")
            object.__setattr__(self, "box", b)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "kind": self.kind.value, "camera": self.camera, "ts": self.ts,
            "track_id": self.track_id, "label": self.label,
            "box": list(self.box) if self.box else None, "data": dict(self.data),
            "frame_seq": self.frame_seq,
        }


def json_default(o: Any) -> Any:
    """`json.dumps(default=...)` for event data: numpy scalars/arrays, sets and tuples."""
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, (set, frozenset, tuple)):
        return list(o)
    return str(o)
