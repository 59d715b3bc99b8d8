"""Cost matrices and gated assignment between tracks and detections.

Every distance is one broadcast matrix over (tracks, detections) (IoU is core.boxes'); the
assignment is scipy's Hungarian solver on the gated cost, with a shortcut when the gate
already makes the matching unique (each row and column has at most one admissible pair),
which is the common case on sparse scenes and skips the solver's overhead.
"""
from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment

from core.boxes import iou_matrix  # (N, M) float32 IoU by broadcasting; re-exported here

__all__ = ["iou_matrix", "centre_distance_matrix", "gated_assignment"]

_BIG = 1e6


def centre_distance_matrix(a_cxcywh: np.ndarray, b_cxcywh: np.ndarray) -> np.ndarray:
    """Centre distance between boxes divided by the mean height of the two boxes:
    a scale-free distance (1.0 = one object height apart) for gating beyond IoU."""
    d = np.hypot(a_cxcywh[:, None, 0] - b_cxcywh[None, :, 0],
                 a_cxcywh[:, None, 1] - b_cxcywh[None, :, 1])
    h = 0.5 * (a_cxcywh[:, None, 3] + b_cxcywh[None, :, 3])
    return d / np.maximum(h, 1e-6)


def gated_assignment(cost: np.ndarray, gate: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Minimum-cost one-to-one matching restricted to pairs where gate is True.

    Returns (rows, cols) int arrays of matched pairs (every pair inside the gate)."""
    if cost.size == 0 or not gate.any():
        return np.empty(0, np.int64), np.empty(0, np.int64)
    if gate.sum(axis=1).max() == 1 and gate.sum(axis=0).max() == 1:
        r, c = np.nonzero(gate)
        return r.astype(np.int64), c.astype(np.int64)
    # Only rows/columns with at least one admissible pair enter the solver.
    rows = np.flatnonzero(gate.any(axis=1))
    cols = np.flatnonzero(gate.any(axis=0))
    sub_gate = gate[np.ix_(rows, cols)]
    sub = np.where(sub_gate, cost[np.ix_(rows, cols)], _BIG)
    r, c = linear_sum_assignment(sub)
    ok = sub_gate[r, c]
    return rows[r[ok]], cols[c[ok]]
