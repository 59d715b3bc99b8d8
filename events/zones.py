"""Counting lines and polygon zones over tracker output.

Both counters are fed one `Tracks` per processed frame (`update(tracks, frame_size)`) and
return the `Event`s that frame produced. Geometry is computed for all tracks at once with
numpy; per-track state lives in column arrays keyed by track id (no per-track objects), and
is bounded: a track absent from `Tracks` for more than `forget_after` updates is dropped,
and at most `max_tracks` states are kept (the least recently seen go first).

Conventions (image coordinates, y grows downwards):

- Anchor of a track: bottom centre of its box (`anchor="bottom"`, where a person or a car
  touches the ground) or the box centre (`anchor="center"`).
- Line sides: walking from p1 to p2 *as seen on screen*, the left-hand side is the "in"
  side (as in core.config.LineConfig). Its normal is (dy, -dx); the signed distance is
  positive on the left. In stream.overlay.LineDraw terms this is `in_side=-1`
  (LineDraw's +1 is the right-hand normal (-dy, dx)); `LineCounter.in_side` holds it.
  `line_geometry()` is the one place this sign is computed: the counting lines and the
  defect watch's inspection line (events.defects) both measure sides with it (`Line`).
- "in" = a crossing from the right side to the left side; "out" = the opposite. (For a
  line drawn top to bottom, "in" is a move from screen-left to screen-right.)
- Event.ts is wall-clock (`wall_ts` argument, else time.time()); dwell times are measured
  on `Tracks.ts` (the monotonic capture clock) so they do not jump with NTP.
- The camera name is given to the constructor (`camera=`); events carry it.

Class names: `Tracks.label[i]` when present, else `class_names[class_id]`, else the class id
as a string. `classes=()` counts every class; otherwise tracks of other classes are ignored
entirely (no state, no events, not in occupancy).

Both counters are also `events.observers.TrackObserver`s (`observe(frame, tracks, ...)` with
snapshots, `camera_counters()`, `drawing()`), which is how the analyzer drives them.
"""
from __future__ import annotations

import threading
import time
from typing import Any, Iterable, Sequence

import numpy as np

from core.boxes import centers
from core.types import Event, EventKind, Frame, Tracks
from events.observers import LineDrawing, ZoneDrawing
from events.snapshots import frame_snapshot

__all__ = ["LineCounter", "ZoneCounter", "Line", "line_geometry", "points_in_polygon"]

_ANCHORS = ("bottom", "center")


# ---------------------------------------------------------------- shared helpers
def _check_common(name: str, camera: str, anchor: str, forget_after: int, max_tracks: int) -> None:
    if not isinstance(name, str) or not name:
        raise ValueError("name must be a non-empty string")
    if not isinstance(camera, str) or not camera:
        raise ValueError("camera must be a non-empty string")
    if anchor not in _ANCHORS:
        raise ValueError(f"anchor must be one of {_ANCHORS}, got {anchor!r}")
    if int(forget_after) < 1:
        raise ValueError(f"forget_after must be >= 1, got {forget_after}")
    if int(max_tracks) < 1:
        raise ValueError(f"max_tracks must be >= 1, got {max_tracks}")


def _points(points: Any, normalized: bool, min_n: int, max_n: int | None, what: str) -> np.ndarray:
    p = np.asarray(points, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] != 2:
        raise ValueError(f"{what} points must have shape (K,2), got {p.shape}")
    if p.shape[0] < min_n or (max_n is not None and p.shape[0] > max_n):
        want = f"{min_n}" if max_n == min_n else f">= {min_n}"
        raise ValueError(f"{what} needs {want} points, got {p.shape[0]}")
    if not np.all(np.isfinite(p)):
        raise ValueError(f"{what} points must be finite")
    if normalized and (np.any(p < 0) or np.any(p > 1)):
        raise ValueError(f"{what} normalized points must lie in 0..1")
    return p


def _resolve(points: np.ndarray, normalized: bool, frame_size: Sequence[int]) -> np.ndarray:
    if not normalized:
        return points
    w, h = float(frame_size[0]), float(frame_size[1])
    if not (w > 0 and h > 0):
        raise ValueError(f"frame_size must be positive (w, h), got {tuple(frame_size)}")
    return points * np.array([w, h])


def line_geometry(p: np.ndarray, xy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Signed distance in pixels of points (N,2) from the directed line p = [p1, p2] (pixels),
    > 0 on its left-hand side as seen on screen (y down; normal (dy, -dx)), and the projection
    parameter t along it (0 at p1, 1 at p2). The one side convention of events/."""
    p = np.asarray(p, np.float64).reshape(2, 2)
    d = p[1] - p[0]
    length = float(np.hypot(d[0], d[1]))
    if length == 0:
        raise ValueError("a line needs two different points")
    r = np.asarray(xy, np.float64).reshape(-1, 2) - p[0]
    s = (r[:, 0] * d[1] - r[:, 1] * d[0]) / length  # dot with left normal (dy, -dx)
    t = (r @ d) / (length * length)
    return s, t


class Line:
    """A directed segment p1->p2, in pixels or (normalized) in 0..1 of the frame: the geometry
    of a counting line and of the defect watch's inspection line (`line_geometry` sides)."""

    def __init__(self, points: Any, normalized: bool = False, what: str = "line") -> None:
        pts = _points(points, normalized, 2, 2, what)
        if np.allclose(pts[0], pts[1]):
            raise ValueError(f"{what}: points must differ")
        self.points = pts
        self.normalized = bool(normalized)
        self.what = what
        self._px: tuple[tuple[float, float], np.ndarray] | None = None  # (frame size, pixels)

    def pixels(self, frame_size: Sequence[int]) -> np.ndarray:
        """[[x1, y1], [x2, y2]] float64 pixels for a (w, h) frame (cached per size; read only)."""
        key = (float(frame_size[0]), float(frame_size[1]))
        hit = self._px
        if hit is not None and hit[0] == key:
            return hit[1]
        px = _resolve(self.points, self.normalized, frame_size)
        if px is self.points:
            px = px.copy()
        px.setflags(write=False)
        self._px = (key, px)
        return px

    def pixel_points(self, frame_size: Sequence[int]) -> tuple[tuple[int, int], tuple[int, int]]:
        """p1, p2 in whole pixels (for drawing)."""
        p = np.rint(self.pixels(frame_size)).astype(int)
        return (int(p[0, 0]), int(p[0, 1])), (int(p[1, 0]), int(p[1, 1]))

    def geometry(self, xy: np.ndarray, frame_size: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        """`line_geometry` of points (N,2) for a (w, h) frame: (signed distance, t)."""
        try:
            return line_geometry(self.pixels(frame_size), xy)
        except ValueError:
            raise ValueError(f"{self.what} has zero length at frame size {tuple(frame_size)}") from None


def _anchors(xyxy: np.ndarray, anchor: str) -> np.ndarray:
    """(N, 2) points that stand for each box: its centre, or its bottom centre."""
    p = centers(xyxy)
    if anchor == "bottom":
        p[:, 1] = np.asarray(xyxy, np.float64)[:, 3]
    return p


def _class_names(tracks: Tracks, class_names: Sequence[str] | None) -> np.ndarray:
    """(N,) object array of class names: the label column where set, else class_names[class_id],
    else the class id as a string."""
    n = len(tracks)
    out = np.empty(n, dtype=object)
    if n == 0:
        return out
    names = np.asarray(list(class_names) if class_names else [], dtype=object)
    cid = tracks.class_id
    ok = (cid >= 0) & (cid < names.shape[0])
    out[ok] = names[cid[ok]]
    if not ok.all():
        out[~ok] = cid[~ok].astype(str).astype(object)
    if tracks.label is not None:
        has = np.not_equal(tracks.label, None)
        out[has] = tracks.label[has]
    return out


def _class_mask(names: np.ndarray, classes: np.ndarray) -> np.ndarray:
    if classes.size == 0 or names.size == 0:
        return np.ones(names.shape[0], bool)
    return np.isin(names, classes)


class _TrackTable:
    """Column arrays of per-track state keyed by track id, with vectorised lookup."""

    def __init__(self, columns: dict[str, tuple[Any, Any]]) -> None:
        # columns: name -> (dtype, fill value for new rows)
        self._spec = columns
        self.ids = np.zeros(0, np.int64)
        self.cols: dict[str, np.ndarray] = {k: np.zeros(0, dt) for k, (dt, _) in columns.items()}

    def __len__(self) -> int:
        return int(self.ids.shape[0])

    def rows_for(self, tids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Rows for `tids` (adding new ones); returns (rows, is_new)."""
        n_old = len(self)
        rows = np.full(tids.shape[0], -1, np.int64)
        if n_old and tids.size:
            order = np.argsort(self.ids, kind="stable")
            sid = self.ids[order]
            pos = np.clip(np.searchsorted(sid, tids), 0, n_old - 1)
            hit = sid[pos] == tids
            rows[hit] = order[pos[hit]]
        new = rows < 0
        k = int(new.sum())
        if k:
            rows[new] = np.arange(n_old, n_old + k)
            self.ids = np.concatenate([self.ids, tids[new]])
            for name, (dt, fill) in self._spec.items():
                self.cols[name] = np.concatenate([self.cols[name], np.full(k, fill, dt)])
        return rows, new

    def keep(self, mask: np.ndarray) -> np.ndarray:
        """Keep rows where mask is True; returns the indices of the dropped rows (old numbering)."""
        dropped = np.flatnonzero(~mask)
        if dropped.size:
            self.ids = self.ids[mask]
            for name in self.cols:
                self.cols[name] = self.cols[name][mask]
        return dropped

    def clear(self) -> None:
        self.ids = self.ids[:0]
        for name in self.cols:
            self.cols[name] = self.cols[name][:0]


def _prune_mask(last_seen: np.ndarray, now: int, forget_after: int, max_tracks: int) -> np.ndarray:
    keep = (now - last_seen) <= forget_after
    if keep.sum() > max_tracks:  # keep the most recently seen
        idx = np.flatnonzero(keep)
        newest = idx[np.argsort(-last_seen[idx], kind="stable")[:max_tracks]]
        keep = np.zeros_like(keep)
        keep[newest] = True
    return keep


def _box(xyxy: np.ndarray, i: int) -> tuple[float, float, float, float]:
    b = xyxy[i]
    return (float(b[0]), float(b[1]), float(b[2]), float(b[3]))


# ---------------------------------------------------------------- counting line
class LineCounter:
    """Counts tracks crossing the segment p1->p2, once per crossing, per class and direction.

    A crossing is counted when a track that was established on one side (its anchor seen
    beyond the hysteresis band there, i.e. |signed distance| > hysteresis_px) is then seen
    beyond the band on the other side for `confirm_frames` consecutive updates, and the point
    where its path crossed the line lies on the segment (projection parameter 0..1).
    Consequences:
      - flicker across the line (shorter than confirm_frames) and wobble inside the band never
        count, nor count the opposite way; a track that stops on the line does not count;
      - a track first seen beyond the line is established there: it has not crossed;
      - a crossing outside the segment's extent moves the track to the new side silently.
    An update where the anchor is inside the band resets the consecutive count.

    Parameters (bounds as in core.config.LineConfig): name; points [[x1,y1],[x2,y2]] (pixels,
    or 0..1 of the frame when normalized); hysteresis_px >= 0 (default 6); confirm_frames >= 1
    (default 3); classes: names counted (empty: all); camera: put in events; anchor:
    "bottom" | "center"; forget_after: updates a track may be absent before its state is
    dropped (default 60); max_tracks: state size cap (default 4096); ignore_coasting: skip
    rows whose det_index is -1 (default False: predictions between detections are the norm).

    Thread-safety: update() and the read methods may be called from different threads.
    """

    in_side = -1  # stream.overlay.LineDraw.in_side for this convention

    def __init__(self, name: str, points: Any, normalized: bool = False, hysteresis_px: float = 6.0,
                 confirm_frames: int = 3, classes: Iterable[str] = (), *, camera: str = "default",
                 anchor: str = "bottom", forget_after: int = 60, max_tracks: int = 4096,
                 ignore_coasting: bool = False) -> None:
        _check_common(name, camera, anchor, forget_after, max_tracks)
        self.line = Line(points, normalized, f"line {name!r}")
        if not (hysteresis_px >= 0 and np.isfinite(hysteresis_px)):
            raise ValueError(f"hysteresis_px must be >= 0, got {hysteresis_px}")
        if int(confirm_frames) < 1:
            raise ValueError(f"confirm_frames must be >= 1, got {confirm_frames}")
        self.name = name
        self.camera = camera
        self.points = self.line.points
        self.normalized = self.line.normalized
        self.hysteresis_px = float(hysteresis_px)
        self.confirm_frames = int(confirm_frames)
        self.classes = frozenset(classes)
        self._classes = np.array(sorted(self.classes), dtype=object)
        self.anchor = anchor
        self.forget_after = int(forget_after)
        self.max_tracks = int(max_tracks)
        self.ignore_coasting = bool(ignore_coasting)
        self._lock = threading.Lock()
        # side: established side (+1 left/"in" side, -1 right, 0 unknown); pending: consecutive
        # updates seen beyond the band on the other side; prev_s/prev_t: last signed distance
        # and projection (for the crossing point); cross_t: projection where it last changed sign.
        self._state = _TrackTable({
            "side": (np.int8, 0), "pending": (np.int32, 0), "prev_s": (np.float64, np.nan),
            "prev_t": (np.float64, np.nan), "cross_t": (np.float64, np.nan),
            "last_seen": (np.int64, 0),
        })
        self._n_updates = 0
        self._in = 0
        self._out = 0
        self._by_class: dict[str, dict[str, int]] = {}

    @classmethod
    def from_config(cls, cfg: Any, camera: str, **kw: Any) -> "LineCounter":
        """From a core.config.LineConfig (or anything with the same attributes)."""
        return cls(cfg.name, cfg.points, cfg.normalized, cfg.hysteresis_px, cfg.confirm_frames,
                   tuple(cfg.classes), camera=camera, **kw)

    def pixel_points(self, frame_size: Sequence[int]) -> tuple[tuple[int, int], tuple[int, int]]:
        """p1, p2 in pixels (for drawing)."""
        return self.line.pixel_points(frame_size)

    def geometry(self, xy: np.ndarray, frame_size: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        """Signed distance in pixels (>0 on the "in"/left side) and projection parameter t
        (0 at p1, 1 at p2) of points (N,2) (`line_geometry`)."""
        return self.line.geometry(xy, frame_size)

    def update(self, tracks: Tracks, frame_size: Sequence[int], class_names: Sequence[str] | None = None,
               wall_ts: float | None = None) -> list[Event]:
        """Advance with one frame's tracks; returns LINE_CROSSED events (possibly empty)."""
        wall = time.time() if wall_ts is None else float(wall_ts)
        with self._lock:
            self._n_updates += 1
            now = self._n_updates
            st = self._state
            events: list[Event] = []
            if len(tracks):
                names = _class_names(tracks, class_names)
                keep = _class_mask(names, self._classes)
                if self.ignore_coasting:
                    keep &= tracks.det_index >= 0
                idx = np.flatnonzero(keep)
                if idx.size:
                    events = self._advance(tracks, idx, names, frame_size, now, wall)
            st.keep(_prune_mask(st.cols["last_seen"], now, self.forget_after, self.max_tracks))
            return events

    def _advance(self, tracks: Tracks, idx: np.ndarray, names: np.ndarray, frame_size: Sequence[int],
                 now: int, wall: float) -> list[Event]:
        st = self._state
        c = st.cols
        s, t = self.geometry(_anchors(tracks.xyxy[idx], self.anchor), frame_size)
        rows, _ = st.rows_for(tracks.track_id[idx])
        h = self.hysteresis_px
        obs = np.where(s > h, 1, np.where(s < -h, -1, 0)).astype(np.int8)

        # where the path changed sign since the last observation: interpolate the projection
        ps, pt = c["prev_s"][rows], c["prev_t"][rows]
        flipped = np.isfinite(ps) & ((ps >= 0) != (s >= 0))
        with np.errstate(divide="ignore", invalid="ignore"):
            alpha = np.where(flipped, ps / (ps - s), 0.0)
        ct = np.where(flipped, pt + alpha * (t - pt), c["cross_t"][rows])
        c["cross_t"][rows] = ct
        c["prev_s"][rows] = s
        c["prev_t"][rows] = t
        c["last_seen"][rows] = now

        side = c["side"][rows]
        pending = c["pending"][rows]
        establish = (side == 0) & (obs != 0)
        other = (side != 0) & (obs == -side)
        pending = np.where(other, pending + 1, 0)
        confirmed = other & (pending >= self.confirm_frames)
        side = np.where(establish | confirmed, obs, side).astype(np.int8)
        pending[confirmed] = 0
        c["side"][rows] = side
        c["pending"][rows] = pending

        counted = confirmed & (ct >= 0.0) & (ct <= 1.0)
        events = []
        for j in np.flatnonzero(counted):  # one iteration per crossing event
            i = int(idx[j])
            direction = "in" if obs[j] > 0 else "out"
            cls = str(names[i])
            if direction == "in":
                self._in += 1
            else:
                self._out += 1
            bc = self._by_class.setdefault(cls, {"in": 0, "out": 0})
            bc[direction] += 1
            events.append(Event(EventKind.LINE_CROSSED, self.camera, ts=wall,
                                track_id=int(tracks.track_id[i]), label=cls,
                                box=_box(tracks.xyxy, i),
                                data={"line": self.name, "direction": direction},
                                frame_seq=tracks.frame_seq if tracks.frame_seq >= 0 else None))
        return events

    # -- events.observers.TrackObserver
    def observe(self, frame: Frame, tracks: Tracks, class_names: Sequence[str] | None = None, *,
                snapshots: bool = True) -> list[tuple[Event, bytes | None]]:
        """update() on the frame's size and wall time; each crossing with a snapshot of the
        frame (box drawn) when `snapshots`."""
        events = self.update(tracks, (frame.width, frame.height), class_names, wall_ts=frame.wall_ts)
        return _with_snapshots(events, frame, snapshots)

    def camera_counters(self) -> dict[str, Any]:
        """{"line NAME in": n, "line NAME out": n}."""
        c = self.counts()
        return {f"line {self.name} in": c["in"], f"line {self.name} out": c["out"]}

    def drawing(self, frame_size: Sequence[int]) -> LineDrawing:
        p1, p2 = self.pixel_points(frame_size)
        c = self.counts()
        return LineDrawing(self.name, p1, p2, c["in"], c["out"], in_side=self.in_side)

    def flush(self, *, snapshots: bool = True) -> list[tuple[Event, bytes | None]]:
        return []

    def close(self) -> None:
        pass

    def counts(self) -> dict[str, Any]:
        """{"in": n, "out": n, "by_class": {cls: {"in": n, "out": n}}}."""
        with self._lock:
            return {"in": self._in, "out": self._out,
                    "by_class": {k: dict(v) for k, v in self._by_class.items()}}

    def tracked(self) -> int:
        """Number of per-track states currently kept."""
        with self._lock:
            return len(self._state)

    def reset(self, counts: bool = True) -> None:
        with self._lock:
            self._state.clear()
            if counts:
                self._in = self._out = 0
                self._by_class = {}


# ---------------------------------------------------------------- polygon zone
def points_in_polygon(xy: np.ndarray, poly: np.ndarray) -> np.ndarray:
    """Even-odd ray casting for N points against a K-vertex polygon, as one (N,K) numpy pass."""
    xy = np.asarray(xy, np.float64).reshape(-1, 2)
    poly = np.asarray(poly, np.float64).reshape(-1, 2)
    if xy.shape[0] == 0:
        return np.zeros(0, bool)
    x, y = xy[:, 0:1], xy[:, 1:2]
    x1, y1 = poly[:, 0][None, :], poly[:, 1][None, :]
    x2, y2 = np.roll(poly[:, 0], -1)[None, :], np.roll(poly[:, 1], -1)[None, :]
    straddle = (y1 > y) != (y2 > y)
    with np.errstate(divide="ignore", invalid="ignore"):
        xint = x1 + (y - y1) * (x2 - x1) / (y2 - y1)
    hits = straddle & (x < xint)
    return (np.count_nonzero(hits, axis=1) % 2) == 1


class ZoneCounter:
    """A polygon zone: enter / leave events, dwell time, occupancy per class, entry counts.

    A track is "inside" once its anchor has been inside the polygon for `confirm_frames`
    consecutive updates (ZONE_ENTER), and "outside" again after `confirm_frames` consecutive
    updates outside (ZONE_LEAVE), or when it has been absent from Tracks for more than
    `forget_after` updates while inside (ZONE_LEAVE with data["reason"] = "lost").
    A track first seen inside the zone enters it (data["appeared"] = True): it is in the
    zone, so occupancy must include it.
    Dwell (seconds, Tracks.ts clock) runs from the first inside observation of the confirmed
    run to the first outside observation (or the last sighting for a lost track).

    Parameters (bounds as in core.config.ZoneConfig): name; points (K >= 3, pixels or 0..1
    when normalized); classes (empty: all); camera; confirm_frames >= 1 (default 2); anchor;
    forget_after (default 60 updates); max_tracks (default 4096).
    """

    def __init__(self, name: str, points: Any, normalized: bool = False, classes: Iterable[str] = (), *,
                 camera: str = "default", confirm_frames: int = 2, anchor: str = "bottom",
                 forget_after: int = 60, max_tracks: int = 4096) -> None:
        _check_common(name, camera, anchor, forget_after, max_tracks)
        if int(confirm_frames) < 1:
            raise ValueError(f"confirm_frames must be >= 1, got {confirm_frames}")
        self.name = name
        self.camera = camera
        self.points = _points(points, normalized, 3, None, f"zone {name!r}")
        self.normalized = bool(normalized)
        self.classes = frozenset(classes)
        self._classes = np.array(sorted(self.classes), dtype=object)
        self.confirm_frames = int(confirm_frames)
        self.anchor = anchor
        self.forget_after = int(forget_after)
        self.max_tracks = int(max_tracks)
        self._lock = threading.Lock()
        # inside: established state (1 inside, 0 outside, -1 unknown); pending: consecutive
        # updates contradicting it; run_ts: Tracks.ts of the first update of that run;
        # enter_ts: ts the current stay began; last_ts: last sighting; cls_row: class name index.
        self._state = _TrackTable({
            "inside": (np.int8, -1), "pending": (np.int32, 0), "run_ts": (np.float64, np.nan),
            "enter_ts": (np.float64, np.nan), "last_ts": (np.float64, np.nan),
            "last_seen": (np.int64, 0), "cls": (np.int32, -1),
            "x1": (np.float32, np.nan), "y1": (np.float32, np.nan), "x2": (np.float32, np.nan),
            "y2": (np.float32, np.nan),
        })
        self._cls_names: list[str] = []
        self._cls_index: dict[str, int] = {}
        self._n_updates = 0
        self._last_ts = float("nan")
        self._entries = 0
        self._entries_by_class: dict[str, int] = {}

    @classmethod
    def from_config(cls, cfg: Any, camera: str, **kw: Any) -> "ZoneCounter":
        """From a core.config.ZoneConfig (or anything with the same attributes)."""
        return cls(cfg.name, cfg.points, cfg.normalized, tuple(cfg.classes), camera=camera, **kw)

    def polygon_px(self, frame_size: Sequence[int]) -> np.ndarray:
        """(K,2) int32 pixel polygon (for drawing)."""
        return np.rint(_resolve(self.points, self.normalized, frame_size)).astype(np.int32)

    def contains(self, xy: np.ndarray, frame_size: Sequence[int]) -> np.ndarray:
        return points_in_polygon(xy, _resolve(self.points, self.normalized, frame_size))

    def _cls_id(self, name: str) -> int:
        k = self._cls_index.get(name)
        if k is None:
            k = self._cls_index[name] = len(self._cls_names)
            self._cls_names.append(name)
        return k

    def update(self, tracks: Tracks, frame_size: Sequence[int], class_names: Sequence[str] | None = None,
               wall_ts: float | None = None) -> list[Event]:
        """Advance with one frame's tracks; returns ZONE_ENTER / ZONE_LEAVE events."""
        wall = time.time() if wall_ts is None else float(wall_ts)
        ts = float(tracks.ts)
        with self._lock:
            self._n_updates += 1
            now = self._n_updates
            if np.isfinite(ts):
                self._last_ts = ts
            st = self._state
            c = st.cols
            events: list[Event] = []
            seq = tracks.frame_seq if tracks.frame_seq >= 0 else None
            if len(tracks):
                names = _class_names(tracks, class_names)
                idx = np.flatnonzero(_class_mask(names, self._classes))
            else:
                names, idx = np.empty(0, object), np.zeros(0, np.int64)
            if idx.size:
                inside_now = self.contains(_anchors(tracks.xyxy[idx], self.anchor), frame_size).astype(np.int8)
                rows, new = st.rows_for(tracks.track_id[idx])
                for j in np.flatnonzero(new):
                    c["cls"][rows[j]] = self._cls_id(str(names[idx[j]]))
                state, pending, run_ts = c["inside"][rows], c["pending"][rows], c["run_ts"][rows]
                same = inside_now == state
                # a new contradicting run starts: remember when (for dwell)
                starting = ~same & (pending == 0)
                run_ts = np.where(starting, ts, run_ts)
                pending = np.where(same, 0, pending + 1)
                first = state < 0  # unknown: outside is established at once, inside is debounced
                settle_out = first & (inside_now == 0)
                flip = ~same & ~settle_out & (pending >= self.confirm_frames)
                entering = flip & (inside_now == 1)
                leaving = flip & (inside_now == 0) & (state == 1)
                new_state = np.where(flip | settle_out, inside_now, state).astype(np.int8)
                enter_ts = np.where(entering, run_ts, c["enter_ts"][rows])
                dwell = np.where(leaving, run_ts - c["enter_ts"][rows], np.nan)
                pending = np.where(flip | settle_out, 0, pending)
                c["inside"][rows] = new_state
                c["pending"][rows] = pending
                c["run_ts"][rows] = run_ts
                c["enter_ts"][rows] = enter_ts
                c["last_ts"][rows] = ts
                c["last_seen"][rows] = now
                for j in np.flatnonzero(entering | leaving):  # one iteration per event
                    i = int(idx[j])
                    cls = str(names[i])
                    tid = int(tracks.track_id[i])
                    if entering[j]:
                        self._entries += 1
                        self._entries_by_class[cls] = self._entries_by_class.get(cls, 0) + 1
                        data = {"zone": self.name, "dwell_s": 0.0, "appeared": bool(state[j] < 0)}
                        kind = EventKind.ZONE_ENTER
                    else:
                        data = {"zone": self.name, "dwell_s": _dwell(dwell[j]), "reason": "left"}
                        kind = EventKind.ZONE_LEAVE
                    events.append(Event(kind, self.camera, ts=wall, track_id=tid, label=cls,
                                        box=_box(tracks.xyxy, i), data=data, frame_seq=seq))
                box = tracks.xyxy[idx]
                for k, col in enumerate(("x1", "y1", "x2", "y2")):
                    c[col][rows] = box[:, k]
            keep = _prune_mask(c["last_seen"], now, self.forget_after, self.max_tracks)
            lost = np.flatnonzero(~keep & (c["inside"] == 1))
            for r in lost:  # tracks that vanished while inside: they left
                events.append(Event(
                    EventKind.ZONE_LEAVE, self.camera, ts=wall, track_id=int(st.ids[r]),
                    label=self._cls_names[int(c["cls"][r])],
                    box=(float(c["x1"][r]), float(c["y1"][r]), float(c["x2"][r]), float(c["y2"][r])),
                    data={"zone": self.name, "dwell_s": _dwell(c["last_ts"][r] - c["enter_ts"][r]),
                          "reason": "lost"}, frame_seq=seq))
            st.keep(keep)
            return events

    # -- events.observers.TrackObserver
    def observe(self, frame: Frame, tracks: Tracks, class_names: Sequence[str] | None = None, *,
                snapshots: bool = True) -> list[tuple[Event, bytes | None]]:
        """update() on the frame's size and wall time; each ZONE_ENTER with a snapshot of the
        frame (box drawn) when `snapshots` (a leave has none)."""
        events = self.update(tracks, (frame.width, frame.height), class_names, wall_ts=frame.wall_ts)
        return _with_snapshots(events, frame, snapshots)

    def camera_counters(self) -> dict[str, Any]:
        """{"zone NAME entries": n, "zone NAME now": tracks inside now}."""
        c = self.counts()
        return {f"zone {self.name} entries": c["entries"], f"zone {self.name} now": sum(c["occupancy"].values())}

    def drawing(self, frame_size: Sequence[int]) -> ZoneDrawing:
        return ZoneDrawing(self.name, self.polygon_px(frame_size), self.occupancy())

    def flush(self, *, snapshots: bool = True) -> list[tuple[Event, bytes | None]]:
        return []

    def close(self) -> None:
        pass

    def occupancy(self) -> dict[str, int]:
        """Tracks inside the zone now, per class."""
        with self._lock:
            c = self._state.cols
            ins = c["cls"][c["inside"] == 1]
            ids, n = np.unique(ins, return_counts=True)
            return {self._cls_names[int(k)]: int(v) for k, v in zip(ids, n)}

    def dwell(self) -> dict[int, float]:
        """Seconds each track now inside has been in the zone (up to the last update's ts)."""
        with self._lock:
            st = self._state
            m = st.cols["inside"] == 1
            d = self._last_ts - st.cols["enter_ts"][m]
            return {int(t): _dwell(v) for t, v in zip(st.ids[m], d)}

    def counts(self) -> dict[str, Any]:
        """{"entries": n, "by_class": {cls: entries}, "occupancy": {cls: n}}."""
        occ = self.occupancy()
        with self._lock:
            return {"entries": self._entries, "by_class": dict(self._entries_by_class), "occupancy": occ}

    def tracked(self) -> int:
        with self._lock:
            return len(self._state)

    def reset(self, counts: bool = True) -> None:
        with self._lock:
            self._state.clear()
            if counts:
                self._entries = 0
                self._entries_by_class = {}


# the kinds a line or zone attaches a frame snapshot to (a leave or a track event has none)
_SNAPSHOT_KINDS = frozenset({EventKind.LINE_CROSSED, EventKind.ZONE_ENTER})


def _with_snapshots(events: list[Event], frame: Frame, snapshots: bool
                    ) -> list[tuple[Event, bytes | None]]:
    return [(e, frame_snapshot(frame.image, e.box, e.label)
             if snapshots and e.kind in _SNAPSHOT_KINDS and e.box is not None else None)
            for e in events]


def _dwell(v: float) -> float:
    v = float(v)
    return round(max(v, 0.0), 3) if np.isfinite(v) else 0.0
