"""trackers/mot.py hota() against hand-computed values of TrackEval's definition.

The cases exercise what sets HOTA apart from a per-frame IoU matching: the global alignment
score that decides the per-frame matching, and thresholding at each alpha *after* matching
(TrackEval does not rematch a pair that fails an alpha). tests/real/test_mot_real.py checks
the same function against TrackEval itself on TUD-Stadtmitte.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from trackers.mot import _HOTA_ALPHAS, hota


def _rows(*r):
    return np.asarray(r, dtype=np.float64)


def test_alphas_are_trackevals():
    assert _HOTA_ALPHAS.size == 19
    assert _HOTA_ALPHAS[0] == pytest.approx(0.05) and _HOTA_ALPHAS[-1] == pytest.approx(0.95)


def test_fragmented_track_hand_computed():
    """gt 1 in frames 1-4, tracked exactly by id 5 in frames 1-3 and by id 6 in frame 4.
    Every alpha: TP 4, FN = FP = 0, DetA 1. Pair (1, 5): TPA 3 of |gt| 4 + |5| 3 - 3 -> 0.75;
    pair (1, 6): 1 / (4 + 1 - 1) = 0.25. AssA = (3 x 0.75 + 1 x 0.25) / 4 = 0.625."""
    g = _rows(*([f, 1, 0, 0, 10, 10] for f in (1, 2, 3, 4)))
    t = _rows(*([f, 5, 0, 0, 10, 10] for f in (1, 2, 3)), [4, 6, 0, 0, 10, 10])
    h = hota(g, t)
    assert h["deta"] == pytest.approx(1.0)
    assert h["assa"] == pytest.approx(0.625)
    assert h["hota"] == pytest.approx(math.sqrt(0.625))
    assert h["loca"] == pytest.approx(1.0)


def test_alignment_beats_iou_in_the_matching():
    """gt 1 in frames 1-4 (10x10 at the origin); id 5 exact in frames 1-3 and 10x8.2
    (IoU 0.82) in frame 4, where id 6 is exact (IoU 1). Per-frame IoU would match 6; HOTA
    matches by alignment x IoU: A(1,5) = 3.4505 / (4 + 4 - 3.4505) = 0.758 (x 0.82 = 0.62)
    beats A(1,6) = 0.549 / (4 + 1 - 0.549) = 0.123, so frame 4 matches id 5.
    Alphas 0.05..0.80 (16): TP 4, FP 1 (id 6), DetA 0.8; pair (1,5) 4 / (4 + 4 - 4) = 1.
    Alphas 0.85..0.95 (3): the matched pair fails the alpha and nothing is rematched, so
    TP 3, FN 1, FP 2, DetA 3 / 6 = 0.5; pair (1,5) 3 / (4 + 4 - 3) = 0.6, AssA 0.6."""
    g = _rows(*([f, 1, 0, 0, 10, 10] for f in (1, 2, 3, 4)))
    t = _rows(*([f, 5, 0, 0, 10, 10] for f in (1, 2, 3)), [4, 5, 0, 0, 10, 8.2],
              [4, 6, 0, 0, 10, 10])
    h = hota(g, t)
    assert h["deta"] == pytest.approx((16 * 0.8 + 3 * 0.5) / 19)
    assert h["assa"] == pytest.approx((16 * 1.0 + 3 * 0.6) / 19)
    assert h["hota"] == pytest.approx((16 * math.sqrt(0.8) + 3 * math.sqrt(0.5 * 0.6)) / 19)
    assert h["loca"] == pytest.approx((16 * (3 + 0.82) / 4 + 3 * 1.0) / 19)


def test_two_people_swapping_ids_hand_computed():
    """Two people far apart, frames 1-2; the tracker swaps their ids in frame 2. DetA 1;
    each of the four pairs has TPA 1 of 2 + 2 - 1 -> 1/3, so AssA = 1/3, HOTA = sqrt(1/3)."""
    g = _rows([1, 1, 0, 0, 10, 10], [1, 2, 50, 0, 10, 10], [2, 1, 0, 0, 10, 10], [2, 2, 50, 0, 10, 10])
    t = _rows([1, 7, 0, 0, 10, 10], [1, 8, 50, 0, 10, 10], [2, 8, 0, 0, 10, 10], [2, 7, 50, 0, 10, 10])
    h = hota(g, t)
    assert h["deta"] == pytest.approx(1.0)
    assert h["assa"] == pytest.approx(1 / 3)
    assert h["hota"] == pytest.approx(math.sqrt(1 / 3))


def test_order_of_rows_does_not_matter():
    rng = np.random.default_rng(3)
    g = _rows(*([f, i, 20 * i + f, 5, 10, 20] for f in range(1, 9) for i in (1, 2, 3)))
    t = g.copy()
    t[:, 1] = np.where(t[:, 0] > 5, t[:, 1] + 10, t[:, 1])   # new ids after frame 5
    t[:, 2:4] += rng.normal(0, 0.5, (len(t), 2))
    a = hota(g, t)
    b = hota(g[rng.permutation(len(g))], t[rng.permutation(len(t))])
    assert a == pytest.approx(b)
