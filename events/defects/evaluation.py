"""Scoring a defect watch against per-frame ground truth (the synthetic conveyor's).

A tool for figures, not part of the watch: it reads only the watch's public, read-only
state (`crossings_after`, `verdicts`, `references`, `judge_ms`, `part_ms`, `frame_size`,
`line`). It lives in events/ (not bench/) because `main.py process synthetic:conveyor --json`
(stream/process.py) reports its figures too, and stream/ must not import bench/; the
benchmark (bench/defects.py) runs it over seeds and adds its baseline.
"""
from __future__ import annotations

import collections
from typing import Any

import numpy as np

from core.boxes import centers, iou_matrix
from events.defects.records import DEFECT, UNKNOWN
from events.defects.watch import DefectWatch

__all__ = ["ConveyorEvaluator"]


class ConveyorEvaluator:
    """Scores a DefectWatch against per-frame ground truth (truth is duck-typed).

    Call `observe(frame_seq, truth)` after `watch.update()` for every frame, where truth has
    `boxes` (N,4) xyxy, `ids` (N,), `defect` (N,) bool and `labels` (N,) str - e.g.
    `SyntheticSource.truth(i)`. A true part is expected to be counted when its true centre
    crosses the watch's line (the watch's own side test: negative to non-negative, on the
    segment) after `skip_frames` (detector warm-up and track confirmation). Each counted
    crossing is matched, on its own frame, to the true box of highest IoU (>= min_iou).
    `summary()` after `watch.flush()` gives the figures.
    """

    def __init__(self, watch: DefectWatch, skip_frames: int = 30, min_iou: float = 0.3) -> None:
        self.watch = watch
        self.skip_frames = int(skip_frames)
        self.min_iou = float(min_iou)
        self._prev_side: dict[int, float] = {}
        self.true_cross: dict[int, dict[str, Any]] = {}    # true id -> info
        self.match: dict[int, int] = {}                     # part number -> true id
        self._last_part = 0                                 # crossings up to it are matched
        self._first_seq: int | None = None

    def observe(self, frame_seq: int, truth: Any, frame_size: tuple[int, int] | None = None) -> None:
        if self._first_seq is None:
            self._first_seq = int(frame_seq)
        w = self.watch
        size = frame_size or w.frame_size
        if size is None:
            return
        boxes = np.asarray(truth.boxes, np.float64).reshape(-1, 4)
        ids = np.asarray(truth.ids).tolist()
        if boxes.shape[0]:
            side, t = w.line.geometry(centers(boxes), size)
            late = frame_seq - self._first_seq >= self.skip_frames
            for r, k in enumerate(ids):
                p = self._prev_side.get(k)
                if late and p is not None and p < 0 <= side[r] and 0 <= t[r] <= 1 \
                        and k not in self.true_cross:
                    self.true_cross[k] = {"defect": bool(truth.defect[r]), "label": truth.labels[r],
                                          "seq": int(frame_seq)}
            self._prev_side = dict(zip(ids, side.tolist()))
        # match crossings the watch made on this frame
        cr = w.crossings_after(self._last_part)
        if cr:
            self._last_part = cr[-1].part
        for c in cr:
            if boxes.shape[0] == 0:
                continue
            iou = iou_matrix(c.box, boxes)[0]
            j = int(np.argmax(iou))
            if iou[j] >= self.min_iou:
                self.match[c.part] = int(ids[j])

    def summary(self) -> dict[str, Any]:
        w = self.watch
        crossings = w.crossings
        truth_ids = set(self.true_cross)
        matched_ids = [k for k in self.match.values()]
        counts = collections.Counter(matched_ids)
        # counted parts whose true part crossed within the evaluated window
        in_window = {p: k for p, k in self.match.items() if k in truth_ids}
        parts = len([c for c in crossings if self.match.get(c.part) in truth_ids
                     or c.part not in self.match])
        dup = sum(v - 1 for k, v in counts.items() if k in truth_ids and v > 1)
        unmatched = sum(1 for c in crossings if c.part not in self.match)
        missed = len(truth_ids - set(matched_ids))
        tp = fp = fn = tn = 0
        read_ok = 0
        judged = 0
        unknown = 0
        by_part = {v.part: v for v in w.verdicts}
        for p, k in in_window.items():
            v = by_part.get(p)
            info = self.true_cross[k]
            if v is not None and v.serial == info["label"]:
                read_ok += 1
            if v is None or v.verdict == UNKNOWN:
                unknown += 1
                continue
            judged += 1
            d = v.verdict == DEFECT
            tp += d and info["defect"]
            fp += d and not info["defect"]
            fn += (not d) and info["defect"]
            tn += (not d) and not info["defect"]
        n_true = len(truth_ids)
        ms = sorted(w.judge_ms)
        pm = sorted(w.part_ms)
        return {
            "parts": parts, "parts_true": n_true, "parts_matched": len(set(in_window.values())),
            "parts_missed": missed, "parts_duplicate": dup, "parts_unmatched": unmatched,
            "count_exact": missed == 0 and dup == 0 and unmatched == 0,
            "defects_true": sum(1 for k in truth_ids if self.true_cross[k]["defect"]),
            "tp": tp, "fp": fp, "fn": fn, "tn": tn, "unknown": unknown,
            "defect_precision": round(tp / (tp + fp), 4) if tp + fp else 1.0,
            "defect_recall": round(tp / (tp + fn), 4) if tp + fn else 1.0,
            "label_read_rate": round(read_ok / len(in_window), 4) if in_window else 0.0,
            "judge_ms_median": round(ms[len(ms) // 2], 2) if ms else None,
            "part_ms_median": round(pm[len(pm) // 2], 2) if pm else None,
            "references": len(w.references),
        }
