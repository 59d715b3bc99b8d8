"""Haar / LBP cascade detector (OpenCV CascadeClassifier).

Cascades are chosen by the short name of a file OpenCV ships in
``cv2.data.haarcascades`` ("frontalface_default", "eye", ...; the full file name
"haarcascade_eye.xml" works too) or by a path to any cascade XML.

Score: OpenCV's grouping reports, per box, how many raw windows voted for it
(``detectMultiScale2``'s numDetections). That count grows like 1/ln(scale_factor)
(more pyramid levels cover the same object), so it is first normalised to the
count expected at scale_factor 1.1, then mapped to 0..1 with
``1 - exp(-n_eff / 10)``. Measured on head-pose-face-detection-male.gif, real
faces get 22-38 votes (score 0.89-0.98) while the duplicate/false boxes get 5
(0.39). ``detectMultiScale3``'s levelWeights (the last stage's sum) separated
them worse there (faces 2.1-6.6, false boxes 0.95-2.1), so the votes are used.
"""
from __future__ import annotations

import math
import os
from functools import lru_cache
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from core.boxes import clip_xyxy
from core.config import HaarConfig
from core.types import Detections, Frame
from detectors.base import DetectorError, as_bgr, closed_guard, config_section, frame_meta, log
from detectors.nms import nms

__all__ = ["HaarDetector", "cascade_names", "resolve_cascade"]

_PREFIX = "haarcascade_"
# Spellings people type that differ from the shipped file names.
_ALIASES = {
    "licence_plate_rus_16stages": "license_plate_rus_16stages",
    "face": "frontalface_default",
}
_VOTE_REF = 10.0  # votes (at scale_factor 1.1) that give score 1 - 1/e


def _cascade_dir() -> Path:
    return Path(cv2.data.haarcascades)


@lru_cache(maxsize=1)
def cascade_names() -> tuple[str, ...]:
    """Short names of the cascades shipped with this OpenCV build (sorted)."""
    d = _cascade_dir()
    if not d.is_dir():
        return ()
    out = []
    for p in d.iterdir():
        if p.suffix == ".xml" and p.name.startswith(_PREFIX):
            out.append(p.stem[len(_PREFIX):])
    return tuple(sorted(out))


def resolve_cascade(name: str) -> tuple[str, Path]:
    """Map a short name, shipped file name or XML path to (short name, path).

    Raises DetectorError listing the valid names when nothing matches.
    """
    if not isinstance(name, str) or not name.strip():
        raise DetectorError(f"cascade must be a non-empty string, got {name!r}")
    raw = name.strip()
    p = Path(os.path.expanduser(raw))
    looks_like_path = os.sep in raw or "/" in raw or p.is_file()
    if looks_like_path:
        if not p.is_file():
            raise DetectorError(f"cascade file {p} not found")
        short = p.stem[len(_PREFIX):] if p.stem.startswith(_PREFIX) else p.stem
        return short, p
    key = raw.lower()
    if key.endswith(".xml"):
        key = key[:-4]
    if key.startswith(_PREFIX):
        key = key[len(_PREFIX):]
    key = _ALIASES.get(key, key)
    if key in cascade_names():
        return key, _cascade_dir() / f"{_PREFIX}{key}.xml"
    raise DetectorError(
        f"unknown Haar cascade {name!r}; valid names: {', '.join(cascade_names())} "
        "(or a path to a cascade XML file)")


def _load(path: Path) -> cv2.CascadeClassifier:
    clf = cv2.CascadeClassifier()
    ok = False
    try:
        ok = clf.load(str(path))
    except cv2.error as e:  # malformed XML raises instead of returning False
        raise DetectorError(f"cannot load cascade {path}: {e}") from e
    if not ok or clf.empty():
        raise DetectorError(f"cannot load cascade {path} (not a cascade XML?)")
    return clf


class HaarDetector:
    """Cascade classifier detector, configured by its `detectors.haar` section
    (core.config.HaarConfig: parameters, defaults and bounds); keyword arguments override
    fields of it. The cascade files are resolved and loaded here (DetectorError when a
    name is unknown or a file is missing or not a cascade).

    nms_iou: the cascade's own grouping keeps a face and a shifted duplicate both, hence NMS.
    """

    name = "haar"
    _closed = False

    def __init__(self, cfg: HaarConfig | None = None, /, **overrides: Any) -> None:
        self.cfg = c = config_section(HaarConfig, cfg, overrides, "haar")
        self.cascade_name, self.cascade_path = resolve_cascade(c.cascade)
        self._clf = _load(self.cascade_path)
        self._nested = None
        self.nested_name = None
        if c.nested:
            self.nested_name, npath = resolve_cascade(c.nested)
            self._nested = _load(npath)
        self.class_names = [self.cascade_name] + ([self.nested_name] if self.nested_name else [])

    # -- scoring -------------------------------------------------------------------------
    def _scores(self, votes: np.ndarray, scale_factor: float, min_neighbors: int) -> np.ndarray:
        if min_neighbors == 0:  # no grouping: every raw window is its own box with 1 vote
            votes = np.ones_like(votes)
        n_eff = votes.astype(np.float64) * (math.log(scale_factor) / math.log(1.1))
        return (1.0 - np.exp(-n_eff / _VOTE_REF)).astype(np.float32)

    def _run(self, clf: cv2.CascadeClassifier, gray: np.ndarray, min_neighbors: int,
             min_size: tuple[int, int], max_size: tuple[int, int] | None
             ) -> tuple[np.ndarray, np.ndarray]:
        win = clf.getOriginalWindowSize()
        if gray.shape[0] < win[1] or gray.shape[1] < win[0]:
            return np.zeros((0, 4), np.float64), np.zeros(0, np.float32)
        kw: dict[str, Any] = {"minSize": min_size}
        if max_size is not None:
            kw["maxSize"] = max_size
        rects, votes = clf.detectMultiScale2(gray, self.cfg.scale_factor, min_neighbors, 0, **kw)
        r = np.asarray(rects, np.float64).reshape(-1, 4)
        v = np.asarray(votes).reshape(-1)
        r[:, 2:] += r[:, :2]
        return r, self._scores(v, self.cfg.scale_factor, min_neighbors)

    @closed_guard
    def detect(self, frame: Frame | np.ndarray) -> Detections:
        seq, ts = frame_meta(frame)
        img = as_bgr(frame)
        if img is None:
            return Detections.empty(seq, ts)
        try:
            return self._detect(img, seq, ts)
        except cv2.error as e:  # odd sizes the cascade cannot handle: log, find nothing
            log.warning("haar: detect failed on frame %s %s: %s", seq, img.shape, e)
            return Detections.empty(seq, ts)

    def close(self) -> None:
        """Release the cascades (idempotent; detect() then finds nothing)."""
        self._closed = True
        self._clf = self._nested = None

    def _detect(self, img: np.ndarray, seq: int, ts: float) -> Detections:
        h, w = img.shape[:2]
        s = min(1.0, self.cfg.max_side / max(h, w))
        gray = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
        if s < 1.0:
            gray = cv2.resize(gray, (max(1, round(w * s)), max(1, round(h * s))),
                              interpolation=cv2.INTER_AREA)
        if self.cfg.equalize:
            gray = cv2.equalizeHist(gray)
        c = self.cfg
        mn = (max(1, round(c.min_size[0] * s)), max(1, round(c.min_size[1] * s)))
        mx = None if c.max_size is None else (max(mn[0], round(c.max_size[0] * s)),
                                              max(mn[1], round(c.max_size[1] * s)))
        boxes, scores = self._run(self._clf, gray, self.cfg.min_neighbors, mn, mx)
        keep = scores >= self.cfg.score_threshold
        boxes, scores = boxes[keep], scores[keep]
        if len(boxes) > 1 and self.cfg.nms_iou < 1.0:
            idx = nms(boxes, scores, self.cfg.nms_iou)
            boxes, scores = boxes[idx], scores[idx]
        cls = np.zeros(len(boxes), np.int32)
        if self._nested is not None and len(boxes):
            boxes, scores, cls = self._nested_pass(gray, boxes, scores)
        if s < 1.0:
            boxes = boxes / s
        boxes = clip_xyxy(boxes, w, h)
        labels = [self.class_names[c] for c in cls]
        return Detections(boxes, scores, cls, label=labels, frame_seq=seq, ts=ts)

    def _nested_pass(self, gray: np.ndarray, boxes: np.ndarray, scores: np.ndarray
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Search the nested cascade inside each parent box (one call per parent)."""
        assert self._nested is not None
        win = self._nested.getOriginalWindowSize()
        parent_ok = np.zeros(len(boxes), bool)
        child_boxes: list[np.ndarray] = []
        child_scores: list[np.ndarray] = []
        ib = np.round(boxes).astype(int)
        for i, (x1, y1, x2, y2) in enumerate(ib):
            roi = gray[max(0, y1):y2, max(0, x1):x2]
            r, sc = self._run(self._nested, roi, self.cfg.nested_min_neighbors, tuple(win), None)
            if len(r):
                parent_ok[i] = True
                r += [max(0, x1), max(0, y1), max(0, x1), max(0, y1)]
                child_boxes.append(r)
                child_scores.append(sc)
        if self.cfg.nested_required:
            boxes, scores = boxes[parent_ok], scores[parent_ok]
        cls = np.zeros(len(boxes), np.int32)
        if self.cfg.nested_output and child_boxes:
            cb = np.concatenate(child_boxes)
            cs = np.concatenate(child_scores)
            keep = cs >= self.cfg.score_threshold
            boxes = np.concatenate([boxes, cb[keep]])
            scores = np.concatenate([scores, cs[keep]])
            cls = np.concatenate([cls, np.ones(int(keep.sum()), np.int32)])
        return boxes, scores, cls

    def __repr__(self) -> str:
        nested = f", nested={self.nested_name!r}" if self.nested_name else ""
        return f"HaarDetector(cascade={self.cascade_name!r}{nested})"
