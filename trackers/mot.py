"""MOTChallenge files, running the tracker on them, and scoring with py-motmetrics.

File format (MOT15 2D): one row per box, `frame,id,x,y,w,h,conf,wx,wy,wz`, frames 1-based,
(x, y) the top-left corner in pixels. Detection files have id -1.

Scoring loads ground truth and tracker output through the same `motmetrics.io.loadtxt`
(it shifts boxes by one pixel; doing it to both sides keeps IoU honest) and matches at
IoU >= 0.5, as py-motmetrics' own MOTChallenge tests do.

CLI (also `python main.py eval-mot ...`):
    python -m trackers.mot --det DET.txt --gt GT.txt [--video CLIP] [--appearance on|off] [--json]
    python -m trackers.mot --tracks TRACKS.txt --gt GT.txt [--json]
"""
from __future__ import annotations

import argparse
import configparser
import json
import math
import os
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from core.types import Detections
from trackers.tracker import Tracker, TrackerParams

__all__ = ["read_mot", "write_mot", "iter_frames", "run_on_mot", "score_files", "MotRun",
           "eval_main", "seqinfo"]


# ---------------------------------------------------------------------------- files
def read_mot(path: str | os.PathLike) -> np.ndarray:
    """(N, 10) float64 rows of a MOTChallenge text file, sorted by frame (stable).
    Short rows are padded with -1; an empty file gives shape (0, 10)."""
    p = Path(path)
    with open(p, encoding="utf-8") as fh:
        text = [ln.strip() for ln in fh if ln.strip()]
    if not text:
        return np.zeros((0, 10))
    rows = []
    for n, ln in enumerate(text, 1):
        parts = [v for v in ln.replace(" ", "").split(",") if v != ""]
        if len(parts) < 6:
            raise ValueError(f"{p}:{n}: expected at least 6 comma-separated values, got {len(parts)}")
        try:
            vals = [float(v) for v in parts[:10]]
        except ValueError as exc:
            raise ValueError(f"{p}:{n}: {exc}") from None
        rows.append(vals + [-1.0] * (10 - len(vals)))
    arr = np.asarray(rows, dtype=np.float64)
    if not np.isfinite(arr).all():
        raise ValueError(f"{p}: non-finite values")
    return arr[np.argsort(arr[:, 0], kind="stable")]


def write_mot(path: str | os.PathLike, rows: np.ndarray) -> None:
    """Write (N, >=6) rows [frame, id, x, y, w, h, (conf)] as a MOTChallenge file."""
    rows = np.asarray(rows, dtype=np.float64).reshape(-1, rows.shape[1] if len(rows) else 6)
    with open(path, "w", encoding="utf-8") as fh:
        for r in rows:
            conf = r[6] if rows.shape[1] > 6 else 1.0
            fh.write(f"{int(r[0])},{int(r[1])},{r[2]:.2f},{r[3]:.2f},{r[4]:.2f},{r[5]:.2f},"
                     f"{conf:.4g},-1,-1,-1\n")


def seqinfo(det_path: str | os.PathLike) -> dict[str, str]:
    """The [Sequence] section of the seqinfo.ini next to a det/ or gt/ folder, if any."""
    ini = Path(det_path).resolve().parent.parent / "seqinfo.ini"
    if not ini.is_file():
        return {}
    cp = configparser.ConfigParser()
    cp.read(ini)
    return dict(cp["Sequence"]) if cp.has_section("Sequence") else {}


def iter_frames(rows: np.ndarray, last_frame: int | None = None) -> Iterator[tuple[int, Detections]]:
    """(frame, Detections) for every frame from 1 to the last one, empty frames included.
    Detections.score is the file's confidence column."""
    n_last = int(rows[:, 0].max()) if len(rows) else 0
    if last_frame is not None:
        n_last = max(n_last, int(last_frame))
    frames = rows[:, 0].astype(np.int64)
    starts = np.searchsorted(frames, np.arange(1, n_last + 2))
    xyxy = rows[:, 2:6].copy()
    xyxy[:, 2:] += xyxy[:, :2]
    xyxy = xyxy.astype(np.float32)
    score = rows[:, 6].astype(np.float32)
    for f in range(1, n_last + 1):
        s, e = starts[f - 1], starts[f]
        yield f, Detections(xyxy[s:e], score[s:e], np.zeros(e - s, np.int32), frame_seq=f - 1)


# ---------------------------------------------------------------------------- running
@dataclass
class MotRun:
    rows: np.ndarray                      # tracker output, (N, 7) frame,id,x,y,w,h,conf
    updates: int
    seconds: float                        # time spent inside Tracker.update
    fps: float
    stats: dict[str, Any] = field(default_factory=dict)

    @property
    def hz(self) -> float:
        return self.updates / self.seconds if self.seconds > 0 else float("inf")


def _video_frames(video: str | os.PathLike) -> Iterator[np.ndarray]:
    import cv2  # only when a clip is given

    cap = cv2.VideoCapture(str(video))
    if not cap.isOpened():
        raise OSError(f"cannot open video {video}")
    try:
        while True:
            ok, img = cap.read()
            if not ok:
                return
            yield img
    finally:
        cap.release()


def video_fps(video: str | os.PathLike) -> float:
    import cv2

    cap = cv2.VideoCapture(str(video))
    try:
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
    finally:
        cap.release()
    return fps if math.isfinite(fps) and fps > 0 else 0.0


def run_on_mot(det_rows: np.ndarray, fps: float, tracker: Tracker | None = None,
               video: str | os.PathLike | None = None, last_frame: int | None = None) -> MotRun:
    """Run a tracker over a detection file: one update per frame at ts = (frame-1)/fps,
    with the clip's frame N-1 as image for det frame N when a video is given."""
    if not fps > 0:
        raise ValueError(f"fps must be positive, got {fps}")
    trk = tracker if tracker is not None else Tracker()
    frames = _video_frames(video) if video is not None else None
    out: list[np.ndarray] = []
    spent = 0.0
    n = 0
    clock = time.perf_counter
    for f, dets in iter_frames(det_rows, last_frame):
        img = None
        if frames is not None:
            img = next(frames, None)
        t0 = clock()
        tracks = trk.update((f - 1) / fps, dets, image=img)
        spent += clock() - t0
        n += 1
        if len(tracks):
            b = tracks.xyxy.astype(np.float64)
            blk = np.empty((len(tracks), 7))
            blk[:, 0] = f
            blk[:, 1] = tracks.track_id
            blk[:, 2:4] = b[:, :2]
            blk[:, 4:6] = b[:, 2:] - b[:, :2]
            blk[:, 6] = 1.0
            out.append(blk)
    rows = np.concatenate(out) if out else np.zeros((0, 7))
    return MotRun(rows, n, spent, fps, dict(trk.stats))


# ---------------------------------------------------------------------------- scoring
def _motmetrics():
    if not hasattr(np, "asfarray"):  # motmetrics 1.4 still calls np.asfarray (removed in numpy 2)
        np.asfarray = lambda a, dtype=np.float64: np.asarray(a, dtype=dtype)  # type: ignore[attr-defined]
    import motmetrics as mm

    return mm


def score_files(gt_path: str | os.PathLike, tracks_path: str | os.PathLike,
                iou: float = 0.5) -> dict[str, Any]:
    """CLEAR-MOT and identity metrics of a tracker output file against ground truth."""
    mm = _motmetrics()
    with warnings.catch_warnings():  # pandas deprecation inside motmetrics.io (its -1 px shift)
        warnings.simplefilter("ignore")
        gt = mm.io.loadtxt(str(gt_path), fmt="mot15-2D", min_confidence=1)
        ts = mm.io.loadtxt(str(tracks_path), fmt="mot15-2D")
    acc = mm.utils.compare_to_groundtruth(gt, ts, "iou", distth=iou)
    mh = mm.metrics.create()
    names = ["mota", "motp", "idf1", "idp", "idr", "num_switches", "num_false_positives",
             "num_misses", "mostly_tracked", "mostly_lost", "num_fragmentations", "precision",
             "recall", "num_objects", "num_unique_objects"]
    s = mh.compute(acc, metrics=names, name="seq")
    v = {k: s[k].iloc[0] for k in names}
    ids = int(ts.index.get_level_values(1).nunique()) if len(ts) else 0
    return {
        "mota": float(v["mota"]), "idf1": float(v["idf1"]), "motp_iou": float(1.0 - v["motp"]),
        "idp": float(v["idp"]), "idr": float(v["idr"]),
        "id_switches": int(v["num_switches"]), "fp": int(v["num_false_positives"]),
        "fn": int(v["num_misses"]), "mt": int(v["mostly_tracked"]), "ml": int(v["mostly_lost"]),
        "fragmentations": int(v["num_fragmentations"]), "precision": float(v["precision"]),
        "recall": float(v["recall"]), "gt_boxes": int(v["num_objects"]),
        "gt_ids": int(v["num_unique_objects"]), "ids": ids, "boxes": int(len(ts)),
    }


def track_summary(rows: np.ndarray) -> dict[str, float]:
    """Distinct ids and mean track length (boxes per id) of a tracker output."""
    if len(rows) == 0:
        return {"ids": 0, "boxes": 0, "mean_track_length": 0.0}
    _, counts = np.unique(rows[:, 1].astype(np.int64), return_counts=True)
    return {"ids": int(counts.size), "boxes": int(counts.sum()),
            "mean_track_length": float(counts.mean())}


# ---------------------------------------------------------------------------- CLI
class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # usage + message on stderr, exit 2, no traceback
        self.print_usage(sys.stderr)
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        raise SystemExit(2)


def _param(text: str) -> tuple[str, Any]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    k, v = text.split("=", 1)
    names = {f.name: f.type for f in TrackerParams.__dataclass_fields__.values()}
    if k not in names:
        raise argparse.ArgumentTypeError(f"unknown tracker parameter {k!r} (known: {', '.join(names)})")
    default = getattr(TrackerParams(), k)
    try:
        if isinstance(default, bool):
            val: Any = v.lower() in ("1", "true", "on", "yes")
        else:
            val = type(default)(v)
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad value for {k}: {v!r}") from None
    return k, val


def build_parser(prog: str = "main.py eval-mot") -> argparse.ArgumentParser:
    ap = _Parser(
        prog=prog,
        description="Run Vigil's tracker on a MOTChallenge detection file and score it against "
                    "ground truth with py-motmetrics (IoU 0.5), or score an existing tracker output.",
        epilog="examples:\n"
               "  %(prog)s --det MOT15/TUD-Stadtmitte/det/det.txt --gt MOT15/TUD-Stadtmitte/gt/gt.txt\n"
               "  %(prog)s --det MOT15/PETS09-S2L1/det/det.txt --video vtest.avi --appearance on --json\n"
               "  %(prog)s --tracks out.txt --gt gt.txt --json",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--det", metavar="DET.txt", help="MOTChallenge detection file to track")
    src.add_argument("--tracks", metavar="FILE", help="existing tracker output to score (no tracking)")
    ap.add_argument("--gt", metavar="GT.txt", help="ground truth; without it only track statistics are printed")
    ap.add_argument("--video", metavar="CLIP", help="the sequence's video: det frame N is clip frame N-1 "
                    "(gives dHash its crops)")
    ap.add_argument("--appearance", choices=["on", "off"], default="on",
                    help="use dHash appearance when frames are available (default on)")
    ap.add_argument("--fps", type=float, default=None,
                    help="frame rate for timestamps (default: the clip's, else seqinfo.ini frameRate, else 25)")
    ap.add_argument("--iou", type=float, default=0.5, help="IoU threshold for a match when scoring (default 0.5)")
    ap.add_argument("--out", metavar="FILE", help="write the tracker output here (MOTChallenge format)")
    ap.add_argument("--param", "-p", action="append", type=_param, default=[], metavar="KEY=VALUE",
                    help="override a tracker parameter, e.g. -p max_age_s=2 (repeatable)")
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    return ap


def _print_table(res: dict[str, Any]) -> None:
    keys = ["mota", "idf1", "id_switches", "fp", "fn", "mt", "ml", "ids", "mean_track_length", "hz"]
    for k in keys:
        if k in res:
            v = res[k]
            print(f"{k:>18}: {v:.4f}" if isinstance(v, float) else f"{k:>18}: {v}")


def eval_main(argv: Sequence[str] | None = None, prog: str = "main.py eval-mot") -> int:
    ap = build_parser(prog)
    args = ap.parse_args(list(argv) if argv is not None else None)
    for name in ("det", "tracks", "gt", "video"):
        path = getattr(args, name)
        if path is not None and not Path(path).is_file():
            print(f"{prog}: error: --{name} file not found: {path}", file=sys.stderr)
            return 2
    if args.tracks and not args.gt:
        print(f"{prog}: error: --tracks needs --gt", file=sys.stderr)
        return 2
    if args.fps is not None and not args.fps > 0:
        print(f"{prog}: error: --fps must be positive", file=sys.stderr)
        return 2
    try:
        res: dict[str, Any] = {}
        if args.det:
            params = dict(args.param)
            params.setdefault("appearance", args.appearance == "on")
            try:
                tracker = Tracker(**params)
            except (TypeError, ValueError) as exc:
                print(f"{prog}: error: {exc}", file=sys.stderr)
                return 2
            info = seqinfo(args.det)
            fps = args.fps
            if fps is None and args.video:
                fps = video_fps(args.video) or None
            if fps is None and info.get("framerate"):
                fps = float(info["framerate"])
            fps = fps or 25.0
            det_rows = read_mot(args.det)
            last = int(info["seqlength"]) if info.get("seqlength", "").isdigit() else None
            run = run_on_mot(det_rows, fps, tracker, video=args.video, last_frame=last)
            out_path = args.out
            tmp = None
            if out_path is None:
                fd, tmp = tempfile.mkstemp(prefix="vigil_mot_", suffix=".txt")
                os.close(fd)
                out_path = tmp
            try:
                write_mot(out_path, run.rows)
                if args.gt:
                    res.update(score_files(args.gt, out_path, args.iou))
            finally:
                if tmp is not None:
                    os.unlink(tmp)
            res.update(track_summary(run.rows))
            res.update({"hz": run.hz, "updates": run.updates, "fps": fps,
                        "appearance": bool(tracker.params.appearance and args.video is not None),
                        "reidentified": run.stats.get("reidentified", 0)})
        else:
            res.update(score_files(args.gt, args.tracks, args.iou))
            res.update(track_summary(read_mot(args.tracks)))
    except (OSError, ValueError) as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(res))
    else:
        _print_table(res)
    return 0


if __name__ == "__main__":
    raise SystemExit(eval_main(sys.argv[1:], prog="python -m trackers.mot"))
