"""Run one tracker over a MOTChallenge detection file and write its tracks in MOT format.

This script runs inside a peer's own virtual environment (bench/peers/requirements-*.txt,
created by bench/tracker_peers.py), so it imports only the standard library, numpy and the
tracker it runs; it never imports Vigil's product code, except for `--tracker vigil`, which
runs Vigil's tracker through the same protocol from Vigil's own interpreter.

Protocol (one call = one tracker on one sequence):

    python runner.py --tracker NAME --det det.txt --out tracks.txt --fps 25
                     [--last-frame N] [--params '{"key": value}'] [--video clip.avi]

- Input: `frame,id,x,y,w,h,conf,...` rows (frames 1-based, (x, y) top-left). Every frame
  from 1 to the last one (or --last-frame) is one update, empty frames included, at
  timestamp (frame - 1) / fps.
- Output file: `frame,id,x,y,w,h,1,-1,-1,-1` for every track the tracker reports on a frame
  (ids as the tracker gives them; roboflow's unconfirmed tracks, id -1, are not reported).
- Stdout: one JSON line {"tracker", "package", "version", "params", "updates", "seconds",
  "cpu_seconds", "hz", "hz_cpu", "boxes"}; `seconds` (wall clock) and `cpu_seconds` (process
  CPU time: the work done, not the wait for a core) are spent inside the tracker's update calls only (the
  per-frame inputs are built beforehand, as bench/tracker.py does for Vigil and SORT; a
  throwaway instance first runs --warmup frames untimed, so lazy imports are not timed).
- Exit 2 with a one-line message on stderr for bad arguments or an unknown tracker.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROBOFLOW = {"bytetrack": "ByteTrackTracker", "botsort": "BoTSORTTracker", "ocsort": "OCSORTTracker",
            "cbiou": "CBIoUTracker", "sort": "SORTTracker"}
TRACKERS = (*ROBOFLOW, "norfair", "vigil")


def read_det(path: str) -> np.ndarray:
    rows = np.loadtxt(path, delimiter=",", ndmin=2, dtype=np.float64)
    if rows.size == 0:
        return np.zeros((0, 10))
    if rows.shape[1] < 7:
        raise ValueError(f"{path}: expected at least 7 columns, got {rows.shape[1]}")
    return rows[np.argsort(rows[:, 0], kind="stable")]


def frames_of(rows: np.ndarray, last_frame: int | None) -> list[tuple[np.ndarray, np.ndarray]]:
    """[(xyxy (n, 4) float32, score (n,) float32)] for frames 1..last."""
    n_last = int(rows[:, 0].max()) if len(rows) else 0
    if last_frame:
        n_last = max(n_last, last_frame)
    f = rows[:, 0].astype(np.int64)
    starts = np.searchsorted(f, np.arange(1, n_last + 2))
    xyxy = rows[:, 2:6].copy()
    xyxy[:, 2:] += xyxy[:, :2]
    xyxy = xyxy.astype(np.float32)
    score = rows[:, 6].astype(np.float32)
    return [(xyxy[starts[i]:starts[i + 1]], score[starts[i]:starts[i + 1]]) for i in range(n_last)]


def _roboflow(name: str, params: dict, fps: float):
    import supervision as sv
    import trackers

    cls = getattr(trackers, ROBOFLOW[name])
    kw = {"frame_rate": fps, **params}
    if name == "botsort":
        kw.setdefault("enable_cmc", False)  # camera-motion compensation needs frames; these cameras are static
    trk = cls(**kw)

    def prepare(xyxy, score):
        return sv.Detections(xyxy=xyxy.astype(np.float32), confidence=score,
                             class_id=np.zeros(len(score), int))

    def step(i, det, img=None):
        return trk.update(det, timestamp=i / fps)

    def boxes(out):
        keep = out.tracker_id >= 0 if out.tracker_id is not None else np.zeros(len(out), bool)
        return out.xyxy[keep], out.tracker_id[keep]

    from importlib.metadata import version
    return prepare, step, boxes, "trackers", version("trackers"), kw, lambda i: None


def _norfair(params: dict, fps: float):
    import norfair

    kw = {"distance_function": "iou", "distance_threshold": 0.7, **params}
    trk = norfair.Tracker(**kw)

    def prepare(xyxy, score):
        return [norfair.Detection(points=b.reshape(2, 2).astype(np.float64), scores=np.array([s, s]))
                for b, s in zip(xyxy, score)]

    def step(i, det, img=None):
        return trk.update(detections=det)

    def boxes(objs):
        if not objs:
            return np.zeros((0, 4)), np.zeros(0, np.int64)
        b = np.array([o.estimate.reshape(4) for o in objs], np.float64)
        lo, hi = np.minimum(b[:, :2], b[:, 2:]), np.maximum(b[:, :2], b[:, 2:])
        return np.hstack([lo, hi]), np.array([o.id for o in objs], np.int64)

    from importlib.metadata import version
    return prepare, step, boxes, "norfair", version("norfair"), kw, lambda i: None


def _vigil(params: dict, fps: float, video: str | None):
    root = Path(__file__).resolve().parents[2]
    sys.path.insert(0, str(root))
    from core.types import Detections
    from trackers.tracker import Tracker

    trk = Tracker(**params)
    cap = None
    if video:
        import cv2

        cap = cv2.VideoCapture(video)
        if not cap.isOpened():
            raise OSError(f"cannot open video {video}")

    def prepare(xyxy, score):
        return Detections(xyxy, score, np.zeros(len(score), np.int32))

    def fetch(i):  # the clip's frame i for det frame i + 1, decoded outside the timed call
        if cap is None:
            return None
        ok, img = cap.read()
        return img if ok else None

    def step(i, det, img=None):
        return trk.update(i / fps, det, image=img)

    def boxes(t):
        return t.xyxy.astype(np.float64), t.track_id

    return prepare, step, boxes, "vigil", "checkout", trk.params.model_dump(), fetch


def run(name: str, det: str, out: str, fps: float, last_frame: int | None = None,
        params: dict | None = None, video: str | None = None, warmup: int = 20) -> dict:
    params = dict(params or {})
    if name in ROBOFLOW:
        build = lambda: _roboflow(name, params, fps)  # noqa: E731
    elif name == "norfair":
        build = lambda: _norfair(params, fps)  # noqa: E731
    elif name == "vigil":
        build = lambda: _vigil(params, fps, video)  # noqa: E731
    else:
        raise ValueError(f"unknown tracker {name!r} (one of {', '.join(TRACKERS)})")
    rows = read_det(det)
    # warm-up on a throwaway instance (lazy imports, first-call caches), not timed
    prepare, step, boxes, *_, fetch = build()
    for i, d in enumerate([prepare(x, s) for x, s in frames_of(rows, None)[:warmup]]):
        step(i, d, fetch(i))
    prepare, step, boxes, pkg, ver, used, fetch = build()
    inputs = [prepare(x, s) for x, s in frames_of(rows, last_frame)]
    clock, cpu_clock = time.perf_counter, time.process_time
    spent = cpu = 0.0
    lines = []
    for i, d in enumerate(inputs):
        img = fetch(i)
        t0, c0 = clock(), cpu_clock()
        res = step(i, d, img)
        spent += clock() - t0
        cpu += cpu_clock() - c0
        b, ids = boxes(res)
        for (x1, y1, x2, y2), tid in zip(np.asarray(b, np.float64), np.asarray(ids)):
            lines.append(f"{i + 1},{int(tid)},{x1:.2f},{y1:.2f},{x2 - x1:.2f},{y2 - y1:.2f},1,-1,-1,-1\n")
    Path(out).write_text("".join(lines), encoding="utf-8")
    return {"tracker": name, "package": pkg, "version": ver,
            "params": {k: (v if isinstance(v, (int, float, str, bool, type(None))) else repr(v))
                       for k, v in used.items()},
            "updates": len(inputs), "seconds": spent, "cpu_seconds": cpu,
            "hz": len(inputs) / spent if spent > 0 else None,
            "hz_cpu": len(inputs) / cpu if cpu > 0 else None, "boxes": len(lines)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tracker", required=True, choices=TRACKERS)
    ap.add_argument("--det", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--fps", type=float, required=True)
    ap.add_argument("--last-frame", type=int, default=None)
    ap.add_argument("--params", default="{}", help="JSON object of constructor keyword arguments")
    ap.add_argument("--video", default=None, help="frames for appearance (vigil only)")
    ap.add_argument("--warmup", type=int, default=20, help="untimed frames on a throwaway instance first (default 20)")
    a = ap.parse_args(argv)
    try:
        params = json.loads(a.params)
        if not isinstance(params, dict):
            raise ValueError("--params must be a JSON object")
        if not a.fps > 0:
            raise ValueError(f"--fps must be positive, got {a.fps}")
        if not Path(a.det).is_file():
            raise ValueError(f"--det file not found: {a.det}")
        res = run(a.tracker, a.det, a.out, a.fps, a.last_frame, params, a.video, max(0, a.warmup))
    except (ValueError, TypeError, OSError) as e:
        print(f"runner.py: error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
