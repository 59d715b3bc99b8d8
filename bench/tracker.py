"""Tracker update rate: Vigil's tracker vs textbook SORT, in the same process.

Boxes only: every frame of the 11 MOT15 sequences in ../shared/data/mot/MOT15/*/det/det.txt
(one update per frame, empty frames included), timing only the update calls; the input is
prepared beforehand for both trackers. With dHash: PETS09-S2L1 detections on the frames of
vtest.avi (the same footage), decoded into memory first, so the time is tracking + hashing.

Each measurement is repeated (--repeats, alternating which tracker runs first) and the
median is reported. Output: one JSON object on stdout (--json) or a short table.

    python main.py bench tracker --json
"""
from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.sort_baseline import Sort
from core.types import Detections
from trackers.mot import iter_frames, read_mot
from trackers.tracker import Tracker



def _load_sequences(mot_dir: Path) -> dict[str, list[Detections]]:
    seqs = {}
    for det in sorted(mot_dir.glob("*/det/det.txt")):
        seqs[det.parent.parent.name] = [d for _, d in iter_frames(read_mot(det))]
    return seqs


def _time_vigil(seqs: dict[str, list[Detections]], fps: float = 25.0) -> tuple[float, int]:
    spent, n = 0.0, 0
    clock = time.perf_counter
    for frames in seqs.values():
        trk = Tracker(appearance=False)
        t0 = clock()
        for i, d in enumerate(frames):
            trk.update(i / fps, d)
        spent += clock() - t0
        n += len(frames)
    return spent, n


def _time_sort(seqs_np: dict[str, list[np.ndarray]]) -> tuple[float, int]:
    spent, n = 0.0, 0
    clock = time.perf_counter
    for frames in seqs_np.values():
        trk = Sort()
        t0 = clock()
        for d in frames:
            trk.update(d)
        spent += clock() - t0
        n += len(frames)
    return spent, n


def _time_dhash(images: list[np.ndarray], dets: list[Detections], fps: float) -> float:
    trk = Tracker(appearance=True)
    clock = time.perf_counter
    t0 = clock()
    for i, (img, d) in enumerate(zip(images, dets)):
        trk.update(i / fps, d, image=img)
    return clock() - t0


def run(data: Path, repeats: int = 5, dhash_frames: int = 300) -> dict[str, Any]:
    mot_dir = data / "mot" / "MOT15"
    seqs = _load_sequences(mot_dir)
    if not seqs:
        raise FileNotFoundError(f"no */det/det.txt under {mot_dir}")
    seqs_np = {k: [np.hstack([d.xyxy.astype(np.float64), d.score[:, None].astype(np.float64)])
                   for d in v] for k, v in seqs.items()}
    # warm-up (imports, caches), not timed
    _time_vigil({k: v[:50] for k, v in seqs.items()})
    _time_sort({k: v[:50] for k, v in seqs_np.items()})
    vig, base = [], []
    n_updates = 0
    for r in range(repeats):
        order = (0, 1) if r % 2 == 0 else (1, 0)
        for which in order:
            if which == 0:
                s, n_updates = _time_vigil(seqs)
                vig.append(n_updates / s)
            else:
                s, n = _time_sort(seqs_np)
                base.append(n / s)
    n_dets = sum(len(d) for v in seqs.values() for d in v)
    out: dict[str, Any] = {
        "hz": statistics.median(vig), "baseline_hz": statistics.median(base),
        "ratio": statistics.median(vig) / statistics.median(base),
        "hz_runs": [round(v, 1) for v in vig], "baseline_hz_runs": [round(v, 1) for v in base],
        "sequences": len(seqs), "updates": n_updates,
        "dets_per_frame": n_dets / max(n_updates, 1), "repeats": repeats,
    }
    video = data / "video" / "opencv" / "vtest.avi"
    det = mot_dir / "PETS09-S2L1" / "det" / "det.txt"
    if video.is_file() and det.is_file():
        import cv2

        cap = cv2.VideoCapture(str(video))
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 10.0)
        images = []
        while len(images) < dhash_frames:
            ok, img = cap.read()
            if not ok:
                break
            images.append(img)
        cap.release()
        dets = [d for _, d in iter_frames(read_mot(det))][:len(images)]
        _time_dhash(images[:20], dets[:20], fps)
        runs = [len(dets) / _time_dhash(images, dets, fps) for _ in range(repeats)]
        out.update({"dhash_hz": statistics.median(runs),
                    # load-independent view: dHash rate over the SORT rate measured in this run
                    "dhash_ratio_to_baseline": statistics.median(runs) / out["baseline_hz"], "dhash_hz_runs": [round(v, 1) for v in runs],
                    "dhash_frames": len(dets),
                    "dhash_dets_per_frame": sum(len(d) for d in dets) / max(len(dets), 1)})
    else:
        out.update({"dhash_hz": None, "dhash_skipped": f"{video} or {det} not found"})
    return out
