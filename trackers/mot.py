"""MOTChallenge files, running the tracker on them, and scoring with py-motmetrics.

File format (MOT15 2D): one row per box, `frame,id,x,y,w,h,conf,wx,wy,wz`, frames 1-based,
(x, y) the top-left corner in pixels. Detection files have id -1.

Scoring loads ground truth and tracker output through the same `motmetrics.io.loadtxt`
(it shifts boxes by one pixel; doing it to both sides keeps IoU honest) and matches at
IoU >= 0.5, as py-motmetrics' own MOTChallenge tests do. HOTA / DetA / AssA / LocA
(py-motmetrics has none) follow TrackEval's definition, see `hota()`.

The command line is `python main.py eval-mot` (see main.py); `evaluate()` is what it runs.
"""
from __future__ import annotations

import configparser
import math
import os
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from core.types import Detections
from trackers.tracker import Tracker

__all__ = ["read_mot", "write_mot", "iter_frames", "run_on_mot", "score_files", "MotRun",
           "evaluate", "seqinfo", "track_summary", "hota"]


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
    g_rows = read_mot(gt_path)
    g_rows = g_rows[g_rows[:, 6] >= 1]  # the same ground truth motmetrics scores (min_confidence=1)
    h = hota(g_rows, read_mot(tracks_path))
    return {**h,
        "mota": float(v["mota"]), "idf1": float(v["idf1"]), "motp_iou": float(1.0 - v["motp"]),
        "idp": float(v["idp"]), "idr": float(v["idr"]),
        "id_switches": int(v["num_switches"]), "fp": int(v["num_false_positives"]),
        "fn": int(v["num_misses"]), "mt": int(v["mostly_tracked"]), "ml": int(v["mostly_lost"]),
        "fragmentations": int(v["num_fragmentations"]), "precision": float(v["precision"]),
        "recall": float(v["recall"]), "gt_boxes": int(v["num_objects"]),
        "gt_ids": int(v["num_unique_objects"]), "ids": ids, "boxes": int(len(ts)),
    }


_HOTA_ALPHAS = np.arange(0.05, 0.99, 0.05)  # TrackEval's 19 localisation thresholds


def _iou_xywh(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N, M) IoU of [x, y, w, h] boxes (TrackEval's box similarity)."""
    ax2, ay2 = a[:, 0] + a[:, 2], a[:, 1] + a[:, 3]
    bx2, by2 = b[:, 0] + b[:, 2], b[:, 1] + b[:, 3]
    iw = np.clip(np.minimum(ax2[:, None], bx2[None]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    ih = np.clip(np.minimum(ay2[:, None], by2[None]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    inter = iw * ih
    union = (a[:, 2] * a[:, 3])[:, None] + (b[:, 2] * b[:, 3])[None] - inter
    out = np.zeros_like(inter)
    np.divide(inter, union, out=out, where=union > 0)
    return out


def hota(gt_rows: np.ndarray, tr_rows: np.ndarray) -> dict[str, float]:
    """HOTA, DetA, AssA and LocA as TrackEval defines them (Luiten et al., IJCV 2020; TrackEval
    `metrics/hota.py`): a global alignment score per (gt id, tracker id) pair from the summed
    per-frame IoU-normalised similarities, a per-frame Hungarian matching that maximises
    alignment x IoU, then for each alpha in 0.05..0.95 the matches with IoU >= alpha give
    DetA = TP / (TP + FN + FP), AssA = mean over TPs of the pair's TPA / (TPA + FNA + FPA),
    HOTA(alpha) = sqrt(DetA * AssA); the reported values are the means over the 19 alphas.
    Rows are MOTChallenge [frame, id, x, y, w, h, ...] (no distractor preprocessing:
    MOT15 2D ground truth has no classes)."""
    from scipy.optimize import linear_sum_assignment

    na = _HOTA_ALPHAS.size
    if len(gt_rows) == 0 or len(tr_rows) == 0:
        z = {"hota": 0.0, "deta": 0.0, "assa": 0.0, "loca": 1.0}
        if len(gt_rows) == 0 and len(tr_rows) == 0:
            z.update(hota=1.0, deta=1.0, assa=1.0)
        return z
    g_uid, g_id = np.unique(gt_rows[:, 1].astype(np.int64), return_inverse=True)
    t_uid, t_id = np.unique(tr_rows[:, 1].astype(np.int64), return_inverse=True)
    g_f, t_f = gt_rows[:, 0].astype(np.int64), tr_rows[:, 0].astype(np.int64)
    frames = np.union1d(g_f, t_f)
    per_frame = []
    pot = np.zeros((g_uid.size, t_uid.size))
    g_cnt = np.bincount(g_id, minlength=g_uid.size).astype(np.float64)[:, None]
    t_cnt = np.bincount(t_id, minlength=t_uid.size).astype(np.float64)[None, :]
    eps = np.finfo(float).eps
    for f in frames:
        gi, ti = np.flatnonzero(g_f == f), np.flatnonzero(t_f == f)
        if gi.size == 0 or ti.size == 0:
            continue
        sim = _iou_xywh(gt_rows[gi, 2:6], tr_rows[ti, 2:6])
        den = sim.sum(0)[None, :] + sim.sum(1)[:, None] - sim
        sim_iou = np.zeros_like(sim)
        m = den > eps
        sim_iou[m] = sim[m] / den[m]
        pot[np.ix_(g_id[gi], t_id[ti])] += sim_iou
        per_frame.append((g_id[gi], t_id[ti], sim))
    glob = pot / (g_cnt + t_cnt - pot)
    tp = np.zeros(na)
    loc = np.zeros(na)
    mc = np.zeros((na, g_uid.size, t_uid.size))
    for gids, tids, sim in per_frame:
        score = glob[np.ix_(gids, tids)] * sim
        r, c = linear_sum_assignment(-score)
        for a, alpha in enumerate(_HOTA_ALPHAS):
            ok = sim[r, c] >= alpha - eps
            tp[a] += ok.sum()
            loc[a] += sim[r[ok], c[ok]].sum()
            np.add.at(mc[a], (gids[r[ok]], tids[c[ok]]), 1)
    n_g, n_t = float(len(gt_rows)), float(len(tr_rows))
    fn, fp = n_g - tp, n_t - tp
    ass_a = mc / np.maximum(g_cnt[None] + t_cnt[None] - mc, 1)
    assa = (mc * ass_a).sum(axis=(1, 2)) / np.maximum(1.0, tp)
    deta = tp / np.maximum(1.0, tp + fn + fp)
    h = np.sqrt(deta * assa)
    loca = np.where(tp > 0, loc / np.maximum(tp, 1), 1.0)
    return {"hota": float(h.mean()), "deta": float(deta.mean()), "assa": float(assa.mean()),
            "loca": float(loca.mean())}


def track_summary(rows: np.ndarray) -> dict[str, float]:
    """Distinct ids and mean track length (boxes per id) of a tracker output."""
    if len(rows) == 0:
        return {"ids": 0, "boxes": 0, "mean_track_length": 0.0}
    _, counts = np.unique(rows[:, 1].astype(np.int64), return_counts=True)
    return {"ids": int(counts.size), "boxes": int(counts.sum()),
            "mean_track_length": float(counts.mean())}


# ---------------------------------------------------------------------------- evaluation
def evaluate(*, det: str | None = None, tracks: str | None = None, gt: str | None = None,
             video: str | None = None, appearance: bool = True, fps: float | None = None,
             iou: float = 0.5, out: str | None = None,
             params: dict[str, Any] | None = None) -> dict[str, Any]:
    """`main.py eval-mot`: track `det` (or take `tracks`) and score against `gt` when given.

    Raises ValueError for inputs that cannot be used (missing files, bad tracker parameters)
    and OSError for files that cannot be read or written."""
    if (det is None) == (tracks is None):
        raise ValueError("give exactly one of det (to track) or tracks (to score)")
    for name, path in (("det", det), ("tracks", tracks), ("gt", gt), ("video", video)):
        if path is not None and not Path(path).is_file():
            raise ValueError(f"--{name} file not found: {path}")
    if tracks is not None and gt is None:
        raise ValueError("--tracks needs --gt")
    res: dict[str, Any] = {}
    if tracks is not None:
        res.update(score_files(gt, tracks, iou))
        res.update(track_summary(read_mot(tracks)))
        return _finite(res)
    kw = dict(params or {})
    kw.setdefault("appearance", appearance)
    tracker = Tracker(**kw)  # unknown keys and bad values: ValueError naming the key
    info = seqinfo(det)
    if fps is None and video:
        fps = video_fps(video) or None
    if fps is None and info.get("framerate"):
        fps = float(info["framerate"])
    fps = fps or 25.0
    last = int(info["seqlength"]) if info.get("seqlength", "").isdigit() else None
    run = run_on_mot(read_mot(det), fps, tracker, video=video, last_frame=last)
    out_path, tmp = out, None
    if out_path is None:
        fd, tmp = tempfile.mkstemp(prefix="vigil_mot_", suffix=".txt")
        os.close(fd)
        out_path = tmp
    try:
        write_mot(out_path, run.rows)
        if gt:
            res.update(score_files(gt, out_path, iou))
    finally:
        if tmp is not None:
            os.unlink(tmp)
    res.update(track_summary(run.rows))
    res.update({"hz": run.hz, "updates": run.updates, "fps": fps,
                "appearance": bool(tracker.params.appearance and video is not None),
                "reidentified": run.stats.get("reidentified", 0)})
    return _finite(res)


def _finite(res: dict[str, Any]) -> dict[str, Any]:
    """Metrics that are undefined (MOTA of a ground truth with no boxes is -inf, IDF1 0/0 NaN)
    become None: JSON has no NaN or Infinity, and a reader should not parse them as numbers."""
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in res.items()}
