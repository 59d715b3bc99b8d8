"""Core value types that flow between stages.

Detections and Tracks are column arrays (one numpy array per field), validated
once in the constructor, so every later stage can trust shapes and finiteness
without re-checking; and frozen (assignment raises, arrays are read-only), so a stage
that hands them on cannot have them changed under it: stages add columns or stamps with
the with_*() builders, which return copies. Extra per-row columns (rotated boxes, OCR
confidence, ...) travel in `data`, a read-only mapping of name -> (N, ...) array.
"""
from __future__ import annotations

import enum
import time
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Mapping, Sequence

import numpy as np

__all__ = ["Frame", "Detections", "Tracks", "Event", "EventKind", "SourceState", "json_default",
           "ROTATED_BOX", "TEXT_CONFIDENCE"]


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


# Names of the extra row-aligned columns (`Detections.data` / `Tracks.data`) that Vigil's own
# stages produce; any other non-empty string is a valid column name too.
ROTATED_BOX = "rotated_box"          # (N,5) float32 cx, cy, w, h, angle_deg (OpenCV RotatedRect)
TEXT_CONFIDENCE = "text_confidence"  # (N,) float32 OCR confidence 0..100, 0 where nothing was read

_set = object.__setattr__
_EMPTY_DATA: Mapping[str, np.ndarray] = MappingProxyType({})


def _ro(arr: np.ndarray) -> np.ndarray:
    """A read-only view of `arr` (the caller's own array and its flags stay as they were)."""
    v = arr.view()
    v.setflags(write=False)
    return v


def _fresh_ro(arr: np.ndarray) -> np.ndarray:
    """A new array (from fancy indexing or concatenation) made read-only in place."""
    arr.setflags(write=False)
    return arr


def _frozen_zeros(shape: tuple[int, ...], dtype: Any) -> np.ndarray:
    return _fresh_ro(np.zeros(shape, dtype))


_E_BOX = _frozen_zeros((0, 4), np.float32)
_E_F32 = _frozen_zeros((0,), np.float32)
_E_I32 = _frozen_zeros((0,), np.int32)
_E_I64 = _frozen_zeros((0,), np.int64)


def _xyxy(xyxy: Any) -> np.ndarray:
    """Boxes as (N, 4) float32, finite (Detections and Tracks). ndarray methods, not
    np.all(...): this runs for every detector result and every tracker frame."""
    box = np.asarray(xyxy, dtype=np.float32)
    if box.size == 0:
        box = box.reshape(0, 4)
    if box.ndim != 2 or box.shape[1] != 4:
        raise ValueError(f"xyxy must have shape (N,4), got {box.shape}")
    if box.shape[0] and not np.isfinite(box).all():
        raise ValueError("xyxy contains NaN or inf")
    return box


def _scores(score: Any, n: int) -> np.ndarray:
    sc = _col("score", score, n, np.float32)
    if n and not np.isfinite(sc).all():
        raise ValueError("score contains NaN or inf")
    return sc


def _col(name: str, value: Any, n: int | None, dtype: Any) -> np.ndarray:
    arr = np.asarray(value, dtype=dtype)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    if n is not None and arr.shape[0] != n:
        raise ValueError(f"{name} has {arr.shape[0]} rows, expected {n}")
    return _ro(arr)


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
    return _fresh_ro(arr)


def _data_col(name: Any, value: Any, n: int) -> np.ndarray:
    if not isinstance(name, str) or not name:
        raise ValueError(f"data column names must be non-empty strings, got {name!r}")
    arr = np.asarray(value)
    if arr.ndim == 0:
        raise ValueError(f"data[{name!r}] must have one row per box, got a scalar")
    if arr.shape[0] != n:
        raise ValueError(f"data[{name!r}] has {arr.shape[0]} rows, expected {n}")
    return _ro(arr)


def _data_cols(data: Mapping[str, Any] | None, n: int) -> Mapping[str, np.ndarray]:
    if not data:
        return _EMPTY_DATA
    if not isinstance(data, Mapping):
        raise TypeError(f"data must be a mapping of column name -> array, got {type(data).__name__}")
    return MappingProxyType({name: _data_col(name, v, n) for name, v in data.items()})


def _rebuild(cls: type, state: dict[str, Any]) -> Any:
    """Unpickling / copy.copy (see _Columns.__reduce__)."""
    for k in cls._ROW_FIELDS:
        if state[k] is not None:
            state[k] = _ro(np.asarray(state[k]))
    state["data"] = MappingProxyType({k: _ro(np.asarray(v)) for k, v in state["data"].items()})
    return cls._make(**state)


class _Columns:
    """What Detections and Tracks share: frozen after construction (assignment raises, every
    array is read-only, `data` is a read-only mapping), changed copies from with_*() builders
    (which share the unchanged arrays, no re-validation), and row selection that carries
    every column, `data` included."""

    __slots__ = ()
    _ROW_FIELDS: tuple[str, ...] = ()  # per-row columns besides `data` (label / text may be None)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"{type(self).__name__} is frozen: build a changed copy with "
                             f"with_frame() / with_text() / with_label() / with_data() (set {name!r})")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"{type(self).__name__} is frozen (delete {name!r})")

    @classmethod
    def _make(cls, **fields: Any) -> Any:
        """An instance from already validated, read-only fields (every slot given)."""
        obj = object.__new__(cls)
        for k in cls.__slots__:
            _set(obj, k, fields[k])
        return obj

    def _fields(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__slots__}

    def _replace(self, **changes: Any) -> Any:
        f = self._fields()
        f.update(changes)
        return type(self)._make(**f)

    def __reduce__(self) -> tuple:
        state = self._fields()
        state["data"] = dict(state["data"])
        return (_rebuild, (type(self), state))

    def __len__(self) -> int:
        return int(self.xyxy.shape[0])  # type: ignore[attr-defined]

    def len(self) -> int:  # noqa: A003 - the design names it
        return len(self)

    def _index(self, which: Any) -> np.ndarray:
        idx = np.asarray(which)
        if idx.dtype == bool:
            if idx.shape != (len(self),):
                raise ValueError(f"mask has shape {idx.shape}, expected ({len(self)},)")
            return idx
        if idx.ndim == 0:
            idx = idx.reshape(1)
        if idx.size == 0:
            return idx.astype(np.intp).reshape(0)
        if idx.dtype.kind not in "iu" or idx.ndim != 1:
            raise ValueError(f"select() takes a boolean mask or 1-D integer indices, got "
                             f"{idx.dtype} {idx.shape}")
        return idx

    def _rows(self, idx: np.ndarray) -> Any:
        f = {}
        for k in self._ROW_FIELDS:
            v = getattr(self, k)
            f[k] = None if v is None else _fresh_ro(v[idx])
        data = self.data  # type: ignore[attr-defined]
        f["data"] = MappingProxyType({k: _fresh_ro(v[idx]) for k, v in data.items()}) \
            if data else _EMPTY_DATA
        f["frame_seq"], f["ts"] = self.frame_seq, self.ts  # type: ignore[attr-defined]
        return type(self)._make(**f)

    def with_text(self, text: Sequence[str | None] | np.ndarray | None) -> Any:
        """A copy with the `text` column replaced (None: no text column)."""
        return self._replace(text=_str_col("text", text, len(self)))

    def with_label(self, label: Sequence[str | None] | np.ndarray | None) -> Any:
        """A copy with the `label` column replaced (None: no label column)."""
        return self._replace(label=_str_col("label", label, len(self)))

    def with_data(self, name: str, values: Any) -> Any:
        """A copy with the extra column `name` added or replaced (values: one row per box,
        any dtype and trailing shape), or removed when values is None."""
        cols = dict(self.data)  # type: ignore[attr-defined]
        if values is None:
            cols.pop(name, None)
        else:
            cols[name] = _data_col(name, values, len(self))
        return self._replace(data=MappingProxyType(cols) if cols else _EMPTY_DATA)

    def _data_repr(self) -> str:
        data = self.data  # type: ignore[attr-defined]
        return f", data={sorted(data)}" if data else ""


def _missing_value(dtype: np.dtype) -> Any:
    if dtype.kind in "fc":
        return np.nan
    if dtype.kind == "O":
        return None
    return _NO_FILL


_NO_FILL = object()


def _concat_data(parts: Sequence[Any]) -> Mapping[str, np.ndarray]:
    """Union of the parts' data columns; a part without a column gets NaN (float columns) or
    None (object columns) in its rows; other dtypes must be present in every non-empty part."""
    names: dict[str, np.ndarray] = {}
    for p in parts:
        for k, v in p.data.items():
            names.setdefault(k, v)
    if not names:
        return _EMPTY_DATA
    out = {}
    for k, proto in names.items():
        chunks = []
        for p in parts:
            v = p.data.get(k)
            if v is None:
                if not len(p):
                    continue
                fill = _missing_value(proto.dtype)
                if fill is _NO_FILL:
                    raise ValueError(f"concat: data column {k!r} ({proto.dtype}) is missing from a "
                                     "part and has no missing value (only float and object columns do)")
                v = np.full((len(p),) + proto.shape[1:], fill, dtype=proto.dtype)
            elif v.shape[1:] != proto.shape[1:]:
                raise ValueError(f"concat: data column {k!r} has rows of shape {v.shape[1:]} and "
                                 f"{proto.shape[1:]}")
            chunks.append(v)
        out[k] = _fresh_ro(np.concatenate(chunks)) if chunks else _ro(proto[:0])
    return MappingProxyType(out)


class Detections(_Columns):
    """Boxes found in one frame, as column arrays. Frozen: validated once here, then never
    changed (assignment raises, arrays are read-only); with_frame() / with_text() /
    with_label() / with_data() return changed copies.

    xyxy (N,4) float32 pixel corners with x2>=x1, y2>=y1; score (N,) float32;
    class_id (N,) int32; label / text: optional (N,) object arrays of str|None.
    data: extra row-aligned columns by name (e.g. ROTATED_BOX (N,5), TEXT_CONFIDENCE (N,)),
    each with N rows of any dtype; carried through select() and concat().
    frame_seq / ts: the frame the detections were computed on (-1 / nan if unknown).
    """

    __slots__ = ("xyxy", "score", "class_id", "label", "text", "data", "frame_seq", "ts")
    _ROW_FIELDS = ("xyxy", "score", "class_id", "label", "text")

    def __init__(
        self,
        xyxy: Any,
        score: Any,
        class_id: Any,
        label: Sequence[str] | np.ndarray | None = None,
        text: Sequence[str | None] | np.ndarray | None = None,
        frame_seq: int = -1,
        ts: float = float("nan"),
        data: Mapping[str, Any] | None = None,
    ) -> None:
        box = _xyxy(xyxy)
        n = box.shape[0]
        if n and ((box[:, 2] < box[:, 0]).any() or (box[:, 3] < box[:, 1]).any()):
            raise ValueError("xyxy rows must satisfy x2 >= x1 and y2 >= y1")
        sc = _scores(score, n)
        cls_raw = np.asarray(class_id)
        if cls_raw.size and cls_raw.dtype.kind == "f" and not (np.mod(cls_raw, 1) == 0).all():
            raise ValueError("class_id must be integers")
        _set(self, "xyxy", _ro(np.ascontiguousarray(box)))
        _set(self, "score", sc)
        _set(self, "class_id", _col("class_id", cls_raw, n, np.int32))
        _set(self, "label", _str_col("label", label, n))
        _set(self, "text", _str_col("text", text, n))
        _set(self, "data", _data_cols(data, n))
        _set(self, "frame_seq", int(frame_seq))
        _set(self, "ts", float(ts))

    @classmethod
    def empty(cls, frame_seq: int = -1, ts: float = float("nan")) -> "Detections":
        return cls._make(xyxy=_E_BOX, score=_E_F32, class_id=_E_I32, label=None, text=None,
                         data=_EMPTY_DATA, frame_seq=int(frame_seq), ts=float(ts))

    def select(self, which: Any) -> "Detections":
        """Rows by boolean mask or integer index array (every column, `data` included;
        keeps frame_seq/ts)."""
        return self._rows(self._index(which))

    def with_frame(self, frame_seq: int, ts: float) -> "Detections":
        """The same rows, stamped with the frame they were computed on."""
        return self._replace(frame_seq=int(frame_seq), ts=float(ts))

    @staticmethod
    def concat(parts: Sequence["Detections"]) -> "Detections":
        """Rows of all parts in order (frame_seq/ts of the first); label / text / data columns
        present in any part are kept, with None / NaN in the rows of parts without them."""
        parts = [p for p in parts if p is not None]
        if not parts:
            return Detections.empty()
        if len(parts) == 1:
            return parts[0]
        have_label = any(p.label is not None for p in parts)
        have_text = any(p.text is not None for p in parts)
        lab = [] if have_label else None
        txt = [] if have_text else None
        for p in parts:
            if lab is not None:
                lab.extend(p.label.tolist() if p.label is not None else [None] * len(p))
            if txt is not None:
                txt.extend(p.text.tolist() if p.text is not None else [None] * len(p))
        n = sum(len(p) for p in parts)
        return Detections._make(
            xyxy=_fresh_ro(np.concatenate([p.xyxy for p in parts]).reshape(n, 4)),
            score=_fresh_ro(np.concatenate([p.score for p in parts])),
            class_id=_fresh_ro(np.concatenate([p.class_id for p in parts])),
            label=_str_col("label", lab, n), text=_str_col("text", txt, n),
            data=_concat_data(parts), frame_seq=parts[0].frame_seq, ts=parts[0].ts)

    def __repr__(self) -> str:
        return f"Detections(n={len(self)}, frame_seq={self.frame_seq}{self._data_repr()})"


class Tracks(_Columns):
    """Tracker output for one frame time: confirmed tracks as column arrays. Frozen like
    Detections (with_frame() / with_text() / with_label() / with_data() return copies).

    det_index[i] is the row of the detection that updated track i on this
    frame, or -1 while the track coasts on its Kalman prediction. data: extra row-aligned
    columns by name, as for Detections.
    """

    __slots__ = ("xyxy", "track_id", "class_id", "score", "age", "det_index", "label", "text",
                 "data", "frame_seq", "ts")
    _ROW_FIELDS = ("xyxy", "track_id", "class_id", "score", "age", "det_index", "label", "text")

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
        data: Mapping[str, Any] | None = None,
    ) -> None:
        box = _xyxy(xyxy)
        n = box.shape[0]
        # (a set for the few ids of a frame, not np.unique: these checks run for every frame
        # the tracker reports)
        tid = _col("track_id", track_id, n, np.int64)
        score = _scores(score, n)
        det = _col("det_index", det_index, n, np.int32)
        if n and det.min() < -1:
            raise ValueError("det_index must be >= -1")
        if n > 1 and (len(set(tid.tolist())) if n <= 64 else len(np.unique(tid))) != n:
            raise ValueError("track_id values must be unique")
        _set(self, "xyxy", _ro(np.ascontiguousarray(box)))
        _set(self, "track_id", tid)
        _set(self, "class_id", _col("class_id", class_id, n, np.int32))
        _set(self, "score", score)
        _set(self, "age", _col("age", age, n, np.int32))
        _set(self, "det_index", det)
        _set(self, "label", _str_col("label", label, n))
        _set(self, "text", _str_col("text", text, n))
        _set(self, "data", _data_cols(data, n))
        _set(self, "frame_seq", int(frame_seq))
        _set(self, "ts", float(ts))

    @classmethod
    def empty(cls, frame_seq: int = -1, ts: float = float("nan")) -> "Tracks":
        return cls._make(xyxy=_E_BOX, track_id=_E_I64, class_id=_E_I32, score=_E_F32,
                         age=_E_I32, det_index=_E_I32, label=None, text=None, data=_EMPTY_DATA,
                         frame_seq=int(frame_seq), ts=float(ts))

    @property
    def coasting(self) -> np.ndarray:
        return self.det_index < 0

    def select(self, which: Any) -> "Tracks":
        """Rows by boolean mask or integer index array (every column, `data` included)."""
        idx = self._index(which)
        out = self._rows(idx)
        if idx.dtype != bool and len(out) > 1 and len(np.unique(out.track_id)) != len(out):
            raise ValueError("select() would repeat a track (track_id values must be unique)")
        return out

    def with_frame(self, frame_seq: int, ts: float) -> "Tracks":
        """The same tracks, stamped with the frame (seq, ts) they are shown on."""
        return self._replace(frame_seq=int(frame_seq), ts=float(ts))

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
        return f"Tracks(n={len(self)}, frame_seq={self.frame_seq}{self._data_repr()})"


class EventKind(str, enum.Enum):
    TRACK_STARTED = "track_started"
    TRACK_ENDED = "track_ended"
    ZONE_ENTER = "zone_enter"
    ZONE_LEAVE = "zone_leave"
    LINE_CROSSED = "line_crossed"
    TEXT_READ = "text_read"
    DEFECT_FOUND = "defect_found"
    PART_PASSED = "part_passed"
    PART_UNKNOWN = "part_unknown"  # a part the watch had no reference to judge against
    CAMERA_STATE = "camera_state"
    CAMERA_MOVED = "camera_moved"  # cluster mode: re-placed on another node (data: from, to, epoch)


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
    snapshot_url: str | None = None  # where its stored snapshot is served (set by the runtime)

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
            "frame_seq": self.frame_seq, "snapshot_url": self.snapshot_url,
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
