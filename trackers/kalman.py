"""Constant-velocity Kalman filter on boxes, batched over tracks and aware of time.

State per track: [cx, cy, w, h, vx, vy, vw, vh] with velocities in pixels per *second*.
Why not SORT's [cx, cy, area, aspect, ...]: area is quadratic in size, so its noise spans
orders of magnitude between a far and a near object and its prediction can go negative;
the width/height state keeps every component linear in pixels, and every noise term is
scaled by the box's own size, so one set of defaults works at any resolution and distance
(the choice BoT-SORT makes).

Time: F(dt) = [[I, dt I], [0, I]] and the process noise is filterpy's continuous white-noise
acceleration model `filterpy.common.Q_continuous_white_noise` (q * [[dt^3/3, dt^2/2], [dt^2/2, dt]]). That
discretisation is exact, so predicting 0.2 s in one step gives the same covariance as five
0.04 s steps: a detector running every N frames, or dropped frames, need no special case.

filterpy defines the model (Q) and is the test oracle: `tests/unit/test_tracker_kalman.py`
checks that these batched predict/update give the same x and P as `filterpy.kalman.predict`
and `filterpy.kalman.update` run track by track. The math is batched in numpy because a
`KalmanFilter` object per track costs ~40 us per predict+update in Python, which alone would
use most of the frame budget the benchmark asks for.
"""
from __future__ import annotations

import numpy as np

from core.boxes import cxcywh_to_xyxy, xyxy_to_cxcywh  # re-exported: the state's box format

__all__ = ["BoxKalman", "xyxy_to_cxcywh", "cxcywh_to_xyxy"]

_D = np.arange(4)
# flat (8x8) positions of the four diagonals of Q's 2x2 blocks: pos-pos, pos-vel, vel-pos, vel-vel
_PP, _PV, _VP, _VV = _D * 8 + _D, _D * 8 + _D + 4, (_D + 4) * 8 + _D, (_D + 4) * 8 + _D + 4
_QIDX = np.concatenate([_PP, _PV, _VP, _VV])


class BoxKalman:
    """Model parameters and batched, pure predict/update functions.

    Noise is given as a fraction of the box size (w for x and w, h for y and h):
    std_meas: detector box noise (R); std_pos0 / std_vel0: initial uncertainty of position
    and of velocity (per second); accel: spectral density of the white-noise acceleration,
    in (box sizes / s^2)^2 * s; size_accel_ratio: the same for w and h relative to cx and cy
    (boxes change size more slowly than they move). min_size: predicted w/h never go below
    this many pixels (a shrinking velocity that would cross it is stopped).
    """

    def __init__(self, std_meas: float = 0.05, std_pos0: float = 0.1, std_vel0: float = 0.6,
                 accel: float = 0.5, size_accel_ratio: float = 0.25, min_size: float = 1.0) -> None:
        if min(std_meas, std_pos0, std_vel0) <= 0 or accel < 0 or size_accel_ratio < 0:
            raise ValueError("Kalman noise parameters must be positive")
        self.std_meas = float(std_meas)
        self.std_pos0 = float(std_pos0)
        self.std_vel0 = float(std_vel0)
        self.accel = float(accel)
        self.size_accel_ratio = float(size_accel_ratio)
        self.min_size = float(min_size)
        self.H = np.hstack([np.eye(4), np.zeros((4, 4))])
        self._comp_acc = np.array([1.0, 1.0, size_accel_ratio, size_accel_ratio]) * self.accel

    # -- model matrices (also used by the filterpy oracle in the tests) -----------------
    @staticmethod
    def F(dt: float) -> np.ndarray:
        f = np.eye(8)
        f[_D, _D + 4] = dt
        return f

    def Q(self, dt: float, x: np.ndarray) -> np.ndarray:
        """(N, 8, 8) process noise for states x (N, 8) over dt seconds."""
        n = x.shape[0]
        q = np.zeros((n, 8, 8))
        self._add_q(q, dt, x)
        return q

    def R(self, x: np.ndarray) -> np.ndarray:
        """(N, 4, 4) measurement noise for states x."""
        n = x.shape[0]
        r = np.zeros((n, 4, 4))
        r[:, _D, _D] = np.square(self.std_meas * self._scale(x))
        return r

    @staticmethod
    def _scale(x: np.ndarray) -> np.ndarray:
        """(N, 4) size reference per measured component: w, h, w, h."""
        return x[:, [2, 3, 2, 3]]

    @staticmethod
    def q_base(dt: float) -> np.ndarray:
        """filterpy's Q_continuous_white_noise(dim=2, dt, spectral_density=1), written out:
        [[dt^3/3, dt^2/2], [dt^2/2, dt]] (the filterpy call builds it through scipy's
        block_diag, ~0.7 ms per call; the tests check the two agree)."""
        return np.array([[dt ** 3 / 3.0, dt ** 2 / 2.0], [dt ** 2 / 2.0, dt]])

    def _add_q(self, P: np.ndarray, dt: float, x: np.ndarray) -> None:
        if dt <= 0 or self.accel == 0:
            return
        b = self.q_base(dt).ravel()
        s2 = np.square(self._scale(x)) * self._comp_acc          # (N, 4)
        vals = (s2[:, None, :] * b[None, :, None]).reshape(-1, 16)
        if not P.flags.c_contiguous:
            raise ValueError("covariances must be C-contiguous (predict works in place)")
        P.reshape(P.shape[0], 64)[:, _QIDX] += vals

    # -- batched filter ---------------------------------------------------------------------
    def initiate(self, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """States and covariances for new tracks from measurements z (M, 4) [cx, cy, w, h]."""
        m = z.shape[0]
        x = np.zeros((m, 8))
        x[:, :4] = z
        x[:, 2:4] = np.maximum(x[:, 2:4], self.min_size)
        s = self._scale(x)
        P = np.zeros((m, 8, 8))
        P[:, _D, _D] = np.square(self.std_pos0 * s)
        P[:, _D + 4, _D + 4] = np.square(self.std_vel0 * s)
        return x, P

    def predict(self, x: np.ndarray, P: np.ndarray, dt: float) -> tuple[np.ndarray, np.ndarray]:
        """Advance every state by dt seconds (in place; also returned).

        A size velocity that would take w or h below min_size within dt is zeroed first,
        so no prediction produces a degenerate or negative box.
        """
        if x.shape[0] == 0 or dt <= 0:
            return x, P
        shrink = (x[:, 2:4] + dt * x[:, 6:8]) < self.min_size
        if shrink.any():
            x[:, 6:8][shrink] = 0.0
        q_ref = x.copy() if self.accel > 0 else x  # Q uses the size at the start of the step
        x[:, :4] += dt * x[:, 4:]
        # F P F^T for F = [[I, dt I], [0, I]], by blocks: cheaper than two (N,8,8) matmuls.
        A = P[:, :4, :4]
        B = P[:, :4, 4:]
        C = P[:, 4:, :4]
        Dm = P[:, 4:, 4:]
        A += dt * (B + C) + (dt * dt) * Dm
        B += dt * Dm
        C += dt * Dm
        self._add_q(P, dt, q_ref)
        return x, P

    def update(self, x: np.ndarray, P: np.ndarray, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Kalman update of states x (M, 8), P (M, 8, 8) with measurements z (M, 4).
        Returns new arrays (the inputs are not modified).

        Every covariance this model produces is block-structured: `initiate` makes it
        diagonal, and F, Q and R couple a component (cx, cy, w, h) only with its own velocity,
        so P is four independent 2x2 blocks [[pp, pv], [vp, vv]] inside the 8x8 array (every
        other entry exactly 0). The update is then four scalar Kalman gains per track,
        S = pp + r, K = (pp, vp) / S, written on the block entries: the same numbers as the
        dense P H^T S^-1 form (`update_dense`, which the tests compare it with) at a third
        of its cost, the single largest step of a tracker update."""
        m = x.shape[0]
        if m == 0:
            return x, P
        Pf = P.reshape(m, 64)
        pp, pv, vp, vv = Pf[:, _PP], Pf[:, _PV], Pf[:, _VP], Pf[:, _VV]
        s = pp + np.square(self.std_meas * x[:, [2, 3, 2, 3]])
        kp, kv = pp / s, vp / s
        y = z - x[:, :4]
        x_new = x.copy()
        x_new[:, :4] += kp * y
        x_new[:, 4:] += kv * y
        P_new = P.copy()
        Pn = P_new.reshape(m, 64)
        Pn[:, _PP] = pp - kp * pp
        Pn[:, _VV] = vv - kv * pv
        Pn[:, _PV] = Pn[:, _VP] = 0.5 * ((pv - kp * pv) + (vp - kv * pp))   # symmetric
        x_new[:, 2:4] = np.maximum(x_new[:, 2:4], self.min_size)
        return x_new, P_new

    def update_dense(self, x: np.ndarray, P: np.ndarray, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The textbook update for any covariance (K = P H^T S^-1, P - K H P, symmetrised):
        the reference `update` is tested against."""
        if x.shape[0] == 0:
            return x, P
        S = P[:, :4, :4] + self.R(x)
        PHt = P[:, :, :4]                                  # (M, 8, 4)
        K = np.linalg.solve(S, PHt.transpose(0, 2, 1)).transpose(0, 2, 1)  # P H^T S^-1 (S symmetric)
        y = z - x[:, :4]
        x_new = x + np.einsum("mij,mj->mi", K, y)
        P_new = P - K @ PHt.transpose(0, 2, 1)
        P_new = 0.5 * (P_new + P_new.transpose(0, 2, 1))
        x_new[:, 2:4] = np.maximum(x_new[:, 2:4], self.min_size)
        return x_new, P_new
