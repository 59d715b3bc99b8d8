"""Tracker update rate: Vigil's tracker vs textbook SORT, in the same process.

Boxes only: every frame of the 11 MOT15 sequences in ../shared/data/mot/MOT15/*/det/det.txt
(one update per frame, empty frames included), timing only the update calls; the input is
prepared beforehand for both trackers. With dHash: PETS09-S2L1 detections on the frames of
vtest.avi (the same footage), decoded into memory first, so the time is tracking + hashing.

Each measurement is repeated (--repeats, alternating which tracker runs first) and the
median is reported. Output: one JSON object on stdout (--json) or a short table.

    python -m bench.tracker --json        (also: python main.py bench tracker --json)
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from bench.sort_baseline import Sort
from core.types import Detections
from trackers.mot import iter_frames, read_mot
from trackers.tracker import Tracker

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = Path(os.environ.get("VIGIL_SHARED_DATA", ROOT.parent / "shared" / "data"))


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


def main(argv: Sequence[str] | None = None, prog: str = "main.py bench tracker") -> int:
    ap = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument("--repeats", type=int, default=5, help="timed runs per measurement (median reported)")
    ap.add_argument("--dhash-frames", type=int, default=300, help="vtest frames decoded for the dHash run")
    ap.add_argument("--data", default=str(DEFAULT_DATA), help="shared data folder (default ../shared/data)")
    args = ap.parse_args(list(argv) if argv is not None else None)
    if args.repeats < 1 or args.dhash_frames < 1:
        print(f"{prog}: error: --repeats and --dhash-frames must be >= 1", file=sys.stderr)
        return 2
    try:
        res = run(Path(args.data), args.repeats, args.dhash_frames)
    except (OSError, ValueError) as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(res))
    else:
        for k, v in res.items():
            print(f"{k:>22}: {v}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:], prog="python -m bench.tracker"))
