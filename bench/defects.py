"""Defect watch on the synthetic conveyor, scored against its ground truth.

    python main.py bench defects --json [--seeds 0 1 2] [--frames 1300] [--speed 240]

Pipeline per frame: ConveyorScene.render -> MotionDetector -> Tracker -> DefectWatch, and
ConveyorEvaluator.observe(scene.truth(i)) (events/defects/evaluation.py: it reads only the
watch's public view, and lives in events/ because `process synthetic:conveyor --json`
reports the same figures and stream/ may not import bench/). Per seed: part count against the true crossings,
defect precision / recall, label read rate, ms per judged part. The baseline, scored on the
same parts in the same run, is a dHash-only judge (DEFECT iff the dHash distance to the
reference exceeds the watch's dhash_threshold): what the registered pixel difference adds.
Figures over seeds are medians (and min) of the per-seed values.

Motion settings (MOTION_DEFAULTS) matter on a busy belt: MOG2 with OpenCV's default history
learns the parts themselves into the background (they cover a pixel ~60 % of the time), so a
slow model (history 10000) learned from the belt at start-up (prefill=False) is used.
"""
from __future__ import annotations

import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from core.types import Frame  # noqa: E402
from detectors.motion import MotionDetector  # noqa: E402
from events.defects import UNKNOWN, ConveyorEvaluator, DefectWatch  # noqa: E402
from stream.synthetic import make_scene  # noqa: E402
from trackers.tracker import Tracker  # noqa: E402

SCENE_DEFAULTS: dict[str, Any] = {"prefill": False, "speed": 240.0}
MOTION_DEFAULTS: dict[str, Any] = {"downscale": 2.0, "history": 10000, "close_kernel": 15}
TRACKER_DEFAULTS: dict[str, Any] = {}


def _truth(scene: Any, i: int) -> Any:
    """scene.truth(i), or None where it fails: ConveyorScene.truth raised IndexError when a
    part's only on-screen columns are empty outline corners (reported to its owner)."""
    try:
        return scene.truth(i)
    except IndexError:
        return None


def _baseline_dhash(watch: DefectWatch, ev: ConveyorEvaluator) -> dict[str, Any]:
    tp = fp = fn = 0
    by_part = {v.part: v for v in watch.verdicts}
    for p, k in ev.match.items():
        info = ev.true_cross.get(k)
        v = by_part.get(p)
        if info is None or v is None or v.verdict == UNKNOWN:
            continue
        d = v.dhash > watch.cfg.dhash_threshold
        tp += d and info["defect"]
        fp += d and not info["defect"]
        fn += (not d) and info["defect"]
    return {"defect_precision": round(tp / (tp + fp), 4) if tp + fp else 1.0,
            "defect_recall": round(tp / (tp + fn), 4) if tp + fn else 1.0}


def evaluate_conveyor(seed: int = 0, frames: int = 1300, scene: dict[str, Any] | None = None,
                      motion: dict[str, Any] | None = None, tracker: dict[str, Any] | None = None,
                      **params: Any) -> dict[str, Any]:
    """Run scene -> motion -> tracker -> DefectWatch(**params) for `frames` frames and score it.

    Returns the ConveyorEvaluator summary ({"parts", "parts_true", "defect_precision",
    "defect_recall", "label_read_rate", "count_exact", ...}) plus "seed", "frames",
    "fps" (whole pipeline), "baseline_dhash" and the watch's counters.
    """
    sc = make_scene("conveyor", seed=seed, **{**SCENE_DEFAULTS, **(scene or {})})
    md = MotionDetector(**{**MOTION_DEFAULTS, **(motion or {})})
    tr = Tracker(**{**TRACKER_DEFAULTS, **(tracker or {})})
    watch = DefectWatch("bench", **params)
    ev = ConveyorEvaluator(watch, skip_frames=30)
    dt = 1.0 / sc.fps
    t0 = time.perf_counter()
    for i in range(frames):
        f = Frame(sc.render(i), i, i * dt)
        tracks = tr.update(f, md.update(f))
        watch.update(f, tracks)
        truth = _truth(sc, i)
        if truth is not None:
            ev.observe(i, truth, (f.width, f.height))
    watch.flush()
    wall = time.perf_counter() - t0
    out = ev.summary()
    out.update(seed=seed, frames=frames, fps=round(frames / wall, 1),
               baseline_dhash=_baseline_dhash(watch, ev), counters=watch.counters())
    return out


def benchmark(seeds: list[int] = (0, 1, 2), frames: int = 1300,
              speed: float | None = None) -> dict[str, Any]:
    """The defect watch on synthetic:conveyor, one run per seed, against the scene's truth."""
    seeds = list(seeds)
    speed = SCENE_DEFAULTS["speed"] if speed is None else speed
    runs = [evaluate_conveyor(s, frames, scene={"speed": speed}) for s in seeds]

    def agg(key: str, src: str | None = None) -> dict[str, float | None]:
        # None where a run had nothing to measure (no part reached the line in a short run)
        vals = [float(v) for r in runs if (v := (r[src] if src else r)[key]) is not None]
        if not vals:
            return {"median": None, "min": None}
        return {"median": round(statistics.median(vals), 4), "min": round(min(vals), 4)}

    rec, base_rec = agg("defect_recall"), agg("defect_recall", "baseline_dhash")
    result = {
        "bench": "defects", "python": platform.python_version(), "frames": frames,
        "speed_px_s": speed, "seeds": seeds,
        "count_exact_all": all(r["count_exact"] for r in runs),
        "defect_precision": agg("defect_precision"), "defect_recall": rec,
        "label_read_rate": agg("label_read_rate"),
        "judge_ms_median": agg("judge_ms_median"),
        "baseline_dhash": {"defect_precision": agg("defect_precision", "baseline_dhash"),
                           "defect_recall": base_rec},
        # None when the baseline finds nothing (a ratio to 0 says nothing)
        "recall_ratio_vs_baseline": (round(rec["median"] / base_rec["median"], 2)
                                     if rec["median"] is not None and base_rec["median"] else None),
        "part_ms_median": agg("part_ms_median"),
        "runs": runs,
    }
    return result
