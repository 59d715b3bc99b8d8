"""Batched Kalman filter against filterpy, run track by track, and its safety clamps."""
from __future__ import annotations

import numpy as np
from filterpy.common import Q_continuous_white_noise
from filterpy.kalman import predict as fp_predict
from filterpy.kalman import update as fp_update

from trackers.kalman import BoxKalman, cxcywh_to_xyxy, xyxy_to_cxcywh


def _states(rng, n):
    kf = BoxKalman()
    z = np.column_stack([rng.uniform(0, 600, n), rng.uniform(0, 400, n),
                         rng.uniform(10, 80, n), rng.uniform(20, 200, n)])
    x, P = kf.initiate(z)
    x[:, 4:] = rng.normal(0, 30, (n, 4))
    return kf, x, P


def test_q_is_filterpy_continuous_white_noise():
    for dt in (0.01, 0.04, 0.37, 2.0):
        assert np.allclose(BoxKalman.q_base(dt), Q_continuous_white_noise(dim=2, dt=dt, spectral_density=1.0))


def test_batched_predict_update_match_filterpy():
    rng = np.random.default_rng(0)
    kf, x, P = _states(rng, 7)
    dt = 0.12
    F = kf.F(dt)
    Q = kf.Q(dt, x)
    ref = [fp_predict(x[i].copy(), P[i].copy(), F, Q[i]) for i in range(len(x))]
    xb, Pb = kf.predict(x.copy(), P.copy(), dt)
    for i, (xr, Pr) in enumerate(ref):
        assert np.allclose(xb[i], xr) and np.allclose(Pb[i], Pr)
    z = xb[:, :4] + rng.normal(0, 2, (len(x), 4))
    R = kf.R(xb)
    xu, Pu = kf.update(xb, Pb, z)
    for i in range(len(x)):
        xr, Pr = fp_update(xb[i].copy(), Pb[i].copy(), z[i], R[i], kf.H)
        assert np.allclose(xu[i], xr, rtol=1e-9, atol=1e-9)
        assert np.allclose(Pu[i], Pr, rtol=1e-7, atol=1e-9)



def test_block_update_equals_dense_and_keeps_the_structure():
    """update() relies on P being four 2x2 (component, velocity) blocks; after many
    predict/update cycles with varying dt it still is (every other entry exactly 0) and
    update() gives what the dense P H^T S^-1 form gives, state and covariance."""
    rng = np.random.default_rng(5)
    kf, x, P = _states(rng, 9)
    block = np.zeros((8, 8), bool)
    for i in range(4):
        block[np.ix_([i, i + 4], [i, i + 4])] = True
    for step in range(40):
        kf.predict(x, P, float(rng.uniform(0.01, 0.5)))
        z = x[:, :4] + rng.normal(0, 3, (len(x), 4))
        xs, Ps = kf.update(x, P, z)
        xd, Pd = kf.update_dense(x, P, z)
        assert np.allclose(xs, xd, rtol=1e-12, atol=1e-9), step
        assert np.allclose(Ps, Pd, rtol=1e-10, atol=1e-9), step
        assert (Ps[:, ~block] == 0).all() and np.array_equal(Ps, Ps.transpose(0, 2, 1))
        x, P = xs, Ps


def test_prediction_is_time_consistent():
    """One 0.2 s step equals five 0.04 s steps (exact continuous-noise discretisation)."""
    rng = np.random.default_rng(1)
    kf, x, P = _states(rng, 4)
    x[:, 6:] = 0.0  # constant size: Q's size scaling is then the same in both ways
    x1, P1 = kf.predict(x.copy(), P.copy(), 0.2)
    x5, P5 = x.copy(), P.copy()
    for _ in range(5):
        kf.predict(x5, P5, 0.04)
    assert np.allclose(x1, x5)
    assert np.allclose(P1, P5, rtol=1e-9)


def test_predict_never_negative_or_nan():
    kf = BoxKalman()
    x, P = kf.initiate(np.array([[100.0, 100.0, 20.0, 40.0]]))
    x[0, 6:] = [-500.0, -900.0]  # shrinking fast
    for _ in range(100):
        kf.predict(x, P, 0.5)
        b = cxcywh_to_xyxy(x[:, :4])
        assert np.isfinite(b).all() and np.isfinite(P).all()
        assert (b[:, 2] - b[:, 0] >= kf.min_size - 1e-9).all()
        assert (b[:, 3] - b[:, 1] >= kf.min_size - 1e-9).all()


def test_box_conversions_roundtrip():
    b = np.array([[1.0, 2.0, 11.0, 42.0], [0.0, 0.0, 1.0, 1.0]])
    assert np.allclose(cxcywh_to_xyxy(xyxy_to_cxcywh(b)), b)
