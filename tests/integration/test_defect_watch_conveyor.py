"""Acceptance: synthetic conveyor -> MotionDetector -> Tracker -> DefectWatch (default
settings) against the scene's ground truth.

1300 frames at 240 px/s show ~44 parts crossing the line (three shapes, ~20 % defective).
Measured ~15-30 s on the shared 2-core machine (see bench/defects.py for several seeds).
"""
from __future__ import annotations

import time

import pytest

from bench.defects import evaluate_conveyor


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_defect_watch_on_conveyor_meets_acceptance():
    t0 = time.perf_counter()
    r = evaluate_conveyor(seed=1, frames=1300)
    wall = time.perf_counter() - t0
    print({k: r[k] for k in ("parts", "parts_true", "tp", "fp", "fn", "defect_precision",
                             "defect_recall", "label_read_rate", "part_ms_median", "fps")},
          f"wall {wall:.1f} s")
    assert r["parts_true"] >= 40
    # every true part that crossed the line counted exactly once, nothing extra
    assert r["count_exact"], r
    assert r["parts"] == r["parts_true"]
    assert r["unknown"] == 0
    assert r["defects_true"] >= 5
    assert r["defect_recall"] >= 0.9 and r["defect_precision"] >= 0.9, r
    assert r["label_read_rate"] >= 0.8, r
    assert r["counters"]["references"] == 3          # flange, bracket, nut
    assert r["counters"]["pending"] == 0
