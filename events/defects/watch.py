"""The defect watch: count the parts that cross an inspection line, judge each one against
the golden reference of its shape (PASS / DEFECT) and read its serial label.

Flow per frame (`DefectWatch.update(frame, tracks)`):

1. Crossing. The signed side of every reported track's box centre relative to the directed
   inspection line is measured with the counting lines' geometry (events.zones.Line: > 0 on
   the left-hand side of p1->p2 as seen on screen). A track is counted once, on the frame its
   centre goes from the negative to the non-negative side (the counting lines' "in"
   direction: left to right for the default vertical line, drawn top to bottom), if its box
   is part-sized and does not touch the left/right frame edge. A crossing box mostly inside
   the box of a track already counted and present on the same frame (a fragment of the same
   part's motion blob) is not counted again.
2. Crop (crops.cut_part): the frame around the box, padded (the judgement may come later).
3. Serial (serials.SerialReader): one TEXT_READ event per part whose label was read.
4. Reference (shapes.ShapeLibrary): the part is matched to its shape's reference; with none
   yet it waits in the learning pool until `learn_parts` alike parts learn one, and is then
   judged retroactively (references.py says how a reference is learned and compared).
5. Judgement: DEFECT when the largest changed blob exceeds `area_threshold` pixels or the
   dHash distance (label area filled from the reference) exceeds `dhash_threshold`; else
   PASS; UNKNOWN for a part no reference could be found or learned for.

`update()` returns `list[tuple[Event, bytes | None]]`: each event with an optional JPEG
snapshot (the judged crop, the defect blob outlined) meant for `EventBus.publish(event,
snapshot)`. Verdict events carry data {"verdict", "serial", "diff_area", "dhash", "part",
"shape", "retro"}; `retro` is True when the part was judged after it crossed.
The watch is an events.observers.TrackObserver (`observe`, `camera_counters`, `drawing`,
`flush`, `close`).

Read-only state for evaluation and dashboards: `crossings`, `verdicts`, `references`,
`judge_ms`, `part_ms` (tuples), `frame_size`, `line`, `counters()`, `crossings_after()`.

Memory is bounded: pending parts (`max_pending`), verdict and crossing records
(`max_verdicts`), timings (1000 each), track state (dropped after `track_ttl` frames unseen)
and counted ids (4096).
"""
from __future__ import annotations

import collections
import time
from typing import Any, Sequence

import numpy as np

from core.boxes import area, centers, intersection
from core.config import DefectWatchConfig, resolve_section
from core.types import Event, EventKind, Frame, Tracks
from events.defects.crops import PartCrop, crop_snapshot, cut_part
from events.defects.records import DEFECT, PASS, UNKNOWN, Crossing, Verdict
from events.defects.references import Reference, reference_from_image
from events.defects.serials import SerialReader
from events.defects.shapes import Judgement, ShapeLibrary
from events.observers import LineDrawing
from events.zones import Line

__all__ = ["DefectWatch"]

_COUNTER_KEY = {PASS: "pass", DEFECT: "defect", UNKNOWN: "unknown"}


class DefectWatch:
    """Counts parts crossing an inspection line and judges each against a golden reference.

    camera: camera name put on events. cfg: the camera's `defect_watch` section
    (core.config.DefectWatchConfig: every parameter, its default and bounds; `enabled` is
    for the caller); keyword arguments override fields of it, e.g.
    `DefectWatch("cam", ocr=False, learn_parts=3)`; bad ones raise ValueError naming the key.
    The inspection line is `line_x` (vertical, drawn top to bottom) or a directed `line`, in
    fractions of the frame when `normalized`.
    """

    name = "inspection"

    def __init__(self, camera: str, cfg: DefectWatchConfig | None = None, /,
                 **overrides: Any) -> None:
        if not camera or not isinstance(camera, str):
            raise ValueError("DefectWatch camera must be a non-empty string")
        self.cfg = c = resolve_section(DefectWatchConfig, cfg, overrides, where="defect_watch")
        if c.line is not None:
            pts: Any = c.line
        else:
            pts = [[c.line_x, 0.0], [c.line_x, 1.0 if c.normalized else 1e9]]
        self.camera = camera
        self.line = Line(pts, c.normalized, "defect_watch.line")
        self.line_pts = self.line.points
        self._serials = SerialReader(c, camera)   # turns itself off when Tesseract is missing
        file_ref: Reference | None = None
        if c.reference is not None:
            file_ref = reference_from_image(c.reference, c)
        self._shapes = ShapeLibrary(c, file_ref, camera)
        self.reset()

    # ------------------------------------------------------------------ state
    def reset(self) -> None:
        """Forget counts, references learned, pending parts and track state."""
        self._shapes.reset()
        self._sides: dict[int, tuple[float, int]] = {}  # track id -> (side, last frame seq)
        self._counted: collections.OrderedDict[int, None] = collections.OrderedDict()
        self._verdicts: collections.deque[Verdict] = collections.deque(maxlen=self.cfg.max_verdicts)
        self._crossings: collections.deque[Crossing] = collections.deque(maxlen=self.cfg.max_verdicts)
        self._n = {"parts": 0, "pass": 0, "defect": 0, "unknown": 0, "labels_read": 0}
        # ms for a whole judged part at its crossing (crop, OCR, shape match, verdict,
        # snapshot); one registered comparison is timed by the shape library
        self._part_ms: collections.deque[float] = collections.deque(maxlen=1000)
        self._frame_size: tuple[int, int] | None = None

    # ------------------------------------------------------------------ read-only view
    @property
    def crossings(self) -> tuple[Crossing, ...]:
        """Counted parts, oldest first (the last `max_verdicts`)."""
        return tuple(self._crossings)

    def crossings_after(self, part: int) -> list[Crossing]:
        """Crossings of parts numbered above `part`, oldest first (cheap for a few new ones)."""
        out = []
        for c in reversed(self._crossings):
            if c.part <= part:
                break
            out.append(c)
        return out[::-1]

    @property
    def verdicts(self) -> tuple[Verdict, ...]:
        """Judged parts in the order they were judged (the last `max_verdicts`)."""
        return tuple(self._verdicts)

    @property
    def references(self) -> tuple[Reference, ...]:
        return tuple(self._shapes.references)

    @property
    def judge_ms(self) -> tuple[float, ...]:
        """ms of each of the last 1000 registered comparisons."""
        return tuple(self._shapes.judge_ms)

    @property
    def part_ms(self) -> tuple[float, ...]:
        """ms of each of the last 1000 parts judged at their crossing (crop to snapshot)."""
        return tuple(self._part_ms)

    @property
    def frame_size(self) -> tuple[int, int] | None:
        """(w, h) of the last frame seen, None before the first."""
        return self._frame_size

    def counters(self) -> dict[str, Any]:
        """{"parts", "pass", "defect", "unknown", "pending", "labels_read", "defect_rate",
        "references"}; defect_rate = defect / judged (0 when none judged)."""
        judged = self._n["pass"] + self._n["defect"]
        out: dict[str, Any] = dict(self._n)
        out["pending"] = len(self._shapes.pending)
        out["defect_rate"] = round(self._n["defect"] / judged, 4) if judged else 0.0
        out["references"] = len(self._shapes.references)
        return out

    def line_px(self, w: int, h: int) -> np.ndarray:
        """The inspection line ((x1, y1), (x2, y2)) in pixels for a w x h frame."""
        return self.line.pixels((w, h))

    def normalise_serial(self, text: str | None) -> str | None:
        """OCR text -> canonical serial (e.g. "SN 0042"), or None when it does not match."""
        return self._serials.normalise(text)

    # ------------------------------------------------------------------ TrackObserver
    def observe(self, frame: Frame, tracks: Tracks, class_names: Sequence[str] | None = None, *,
                snapshots: bool = True) -> list[tuple[Event, bytes | None]]:
        """update(); snapshots only when `snapshots` and the `snapshot` setting both ask."""
        return self._update(frame, tracks, snapshots and self.cfg.snapshot)

    def camera_counters(self) -> dict[str, Any]:
        """{"parts", "pass", "defect", "defect_rate", "labels_read"} of counters()."""
        c = self.counters()
        return {k: c[k] for k in ("parts", "pass", "defect", "defect_rate", "labels_read")}

    def drawing(self, frame_size: Sequence[int]) -> LineDrawing:
        """The inspection line with its counts as text, no direction arrow."""
        pts = self.line.pixels(frame_size)
        c = self.counters()
        return LineDrawing(self.name, (int(pts[0][0]), int(pts[0][1])), (int(pts[1][0]), int(pts[1][1])),
                           color=(0, 200, 255), arrow=False,
                           text=f"inspection: {c['parts']} parts, {c['pass']} pass, {c['defect']} defect")

    def flush(self, *, snapshots: bool = True) -> list[tuple[Event, bytes | None]]:
        """End of stream: judge every part still waiting (ShapeLibrary.drain: alike leftovers
        learn a reference, a lone part is judged against the nearest-size one, DEFECT as it is
        unlike all of them, or gets UNKNOWN when there is none)."""
        snap = snapshots and self.cfg.snapshot
        return [self._verdict(j, snap) for j in self._shapes.drain()]

    def close(self) -> None:
        """Release the Tesseract API (idempotent; the watch still works, OCR reloads)."""
        self._serials.close()

    # ------------------------------------------------------------------ main entry
    def update(self, frame: Frame, tracks: Tracks) -> list[tuple[Event, bytes | None]]:
        """Feed the tracks reported on `frame`; returns new events with optional JPEG bytes."""
        return self._update(frame, tracks, self.cfg.snapshot)

    def _update(self, frame: Frame, tracks: Tracks, snap: bool) -> list[tuple[Event, bytes | None]]:
        H, W = frame.image.shape[:2]
        self._frame_size = (W, H)
        seq = int(frame.seq)
        out: list[tuple[Event, bytes | None]] = []
        n = len(tracks)
        if n:
            xy = tracks.xyxy.astype(np.float64)
            side, t = self.line.geometry(centers(xy), (W, H))
            ids = tracks.track_id.tolist()
            prev = np.array([self._sides.get(i, (np.nan, 0))[0] for i in ids], np.float64)
            bw, bh = xy[:, 2] - xy[:, 0], xy[:, 3] - xy[:, 1]
            whole = (xy[:, 0] > 1) & (xy[:, 2] < W - 1)
            sized = (bw * bh >= self.cfg.min_part_area) & (np.minimum(bw, bh) >= self.cfg.min_part_side)
            cross = (prev < 0) & (side >= 0) & (t >= 0) & (t <= 1) & whole & sized
            counted = np.array([i in self._counted for i in ids], bool)
            cross &= ~counted
            for r in np.flatnonzero(cross).tolist():
                if self._inside(xy[r], xy[counted]):
                    self._mark_counted(ids[r])
                    continue
                out.extend(self._on_crossing(frame, int(ids[r]), xy[r], snap))
                counted[r] = True
            for i, s in zip(ids, side.tolist()):
                self._sides[i] = (s, seq)
        if len(self._sides) > 4 * max(n, 16):
            self._sides = {k: v for k, v in self._sides.items() if seq - v[1] <= self.cfg.track_ttl}
        return out

    def _mark_counted(self, tid: int) -> None:
        self._counted[tid] = None
        while len(self._counted) > 4096:
            self._counted.popitem(last=False)

    @staticmethod
    def _inside(box: np.ndarray, others: np.ndarray, frac: float = 0.6) -> bool:
        """Is >= `frac` of `box`'s area inside one of `others` (N,4)? (A second track on a
        part already counted: a fragment of its motion blob.)"""
        if others.shape[0] == 0:
            return False
        inside = intersection(box, others)[0] / max(float(area(box)[0]), 1e-6)
        return bool(np.any(inside >= frac))

    # ------------------------------------------------------------------ a counted part
    def _on_crossing(self, frame: Frame, tid: int, box: np.ndarray, snap: bool
                     ) -> list[tuple[Event, bytes | None]]:
        self._mark_counted(tid)
        t_start = time.perf_counter()
        part = self._n["parts"] + 1
        self._n["parts"] = part
        item = cut_part(frame, part, tid, box)
        self._crossings.append(Crossing(part, tid, item.frame_seq, item.box))
        out: list[tuple[Event, bytes | None]] = []
        if self._serials.enabled:
            read = self._serials.read(item.gray, item.size)
            if read is not None:
                item.serial, item.serial_conf = read
                self._n["labels_read"] += 1
                out.append((Event(EventKind.TEXT_READ, self.camera, ts=item.wall_ts, track_id=tid,
                                  label=item.serial, box=item.box, frame_seq=item.frame_seq,
                                  data={"text": item.serial, "confidence": round(item.serial_conf, 1),
                                        "part": part}), None))
        out.extend(self._verdict(j, snap) for j in self._shapes.expire(part))
        m = self._shapes.match(item)
        if m is not None:
            out.append(self._verdict(Judgement(item, m[0], m[1], False), snap))
            self._part_ms.append((time.perf_counter() - t_start) * 1e3)
            return out
        out.extend(self._verdict(j, snap) for j in self._shapes.add(item))
        return out

    def _verdict(self, j: Judgement, snap: bool) -> tuple[Event, bytes | None]:
        item: PartCrop = j.part
        if j.reference is None or j.comparison is None:
            verdict, area_, dd, shape, changed = UNKNOWN, -1, -1, -1, None
        else:
            area_, dd, changed = j.comparison.area, j.comparison.dhash, j.comparison.changed
            verdict = DEFECT if (area_ > self.cfg.area_threshold or dd > self.cfg.dhash_threshold) else PASS
            shape = j.reference.index
        self._n[_COUNTER_KEY[verdict]] += 1
        self._verdicts.append(Verdict(item.track_id, item.serial, verdict, item.frame_seq, item.part,
                                      area_, dd, shape, item.box))
        kind = {DEFECT: EventKind.DEFECT_FOUND, PASS: EventKind.PART_PASSED,
                UNKNOWN: EventKind.PART_UNKNOWN}[verdict]
        ev = Event(kind, self.camera, ts=item.wall_ts, track_id=item.track_id, label=verdict.lower(),
                   box=item.box, frame_seq=item.frame_seq,
                   data={"verdict": verdict, "serial": item.serial, "diff_area": int(area_),
                         "dhash": int(dd), "part": item.part, "shape": shape, "retro": j.retro})
        jpeg = crop_snapshot(item, verdict, changed, self.cfg.jpeg_quality) if snap else None
        return ev, jpeg
