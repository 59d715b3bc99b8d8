"""Live cameras sharing the node's detector pool (stream/pool.py) through runtime.Vigil, with
real HOG detectors: one pool for the cameras with the same detector config, every camera
served its share, the camera's own motion gate kept per camera, the pool in each camera's
status, and a killed worker process restarted while the cameras go on."""
from __future__ import annotations

import time

import pytest

from core.config import parse_config
from runtime.vigil import Vigil
from stream.frameloop import PooledDetection
from tests.timing import wait_until

HOG_FAST = {"upscale": 1.0, "win_stride": [16, 16], "max_side": 400}


def _config(tmp_path, kind, n=3, **pool):
    cams = [{"name": f"cam{i}", "source": "synthetic:crossing", "detector": "hog", "seed": i,
             "fps": 10, "resize": {"width": 320}, "detector_params": HOG_FAST,
             "gate": "motion" if i == 0 else "none"} for i in range(n)]
    cams.append({"name": "plain", "source": "synthetic:crossing", "detector": "none", "seed": 9})
    return parse_config({"cameras": cams, "paths": {"data": str(tmp_path)},
                         "pool": {"kind": kind, "workers": 2, **pool}})


def _detected(v, names, n):
    return all(v.cameras[c].status().stages["detect"].processed >= n for c in names)


@pytest.mark.timeout(240)
def test_three_cameras_share_one_thread_pool(tmp_path):
    cfg = _config(tmp_path, "threads")
    v = Vigil(cfg, persist=False).start()
    names = ["cam0", "cam1", "cam2"]
    try:
        assert not v.failed
        assert len(v.pools.pools) == 1                    # one pool for the three HOG cameras
        pool = v.pools.pools[0]
        assert pool.kind == "threads" and pool.n_workers == 2
        assert v.pipelines["plain"].pool is None          # detector none: no pool
        for c in names:
            assert isinstance(v.pipelines[c].detection, PooledDetection)
        # the gate is the camera's own; only the model inside it is the pool's
        gated = v.pipelines["cam0"].analyzer.detector
        assert type(gated).__name__ == "GatedDetector" and gated.inner is pool.model
        assert wait_until(lambda: _detected(v, names, 4), timeout=150, step=0.2) is not None
        statuses = {c: v.cameras[c].status() for c in names}
        for c, st in statuses.items():
            p = st.pool
            assert p is not None and p["kind"] == "threads" and p["workers"] == 2
            assert p["camera"]["served"] >= 4 and p["camera"]["timeouts"] == 0
            assert st.stages["detect"].dropped >= p["camera"]["dropped"] - 2
            assert p["inference_ms_p50"] is not None and p["restarts"] == 0
            assert st.to_dict()["pool"]["camera"]["share"] > 0
            assert st.capture.frames_in > 0 and st.stages["publish"].processed > 0
        served = [statuses[c].pool["camera"]["served"] for c in names]
        # fair share: equal weights, every camera faster than the pool
        assert max(served) - min(served) <= 2 + 0.25 * max(served), served
        assert v.cameras["plain"].status().pool is None
        from web.metrics import Metrics  # /metrics: the pool once, every camera's share
        text = Metrics(v).render()[0].decode()
        assert 'vigil_pool_workers{kind="threads",pool="hog-1"} 2.0' in text
        assert 'vigil_pool_restarts_total{pool="hog-1"} 0.0' in text
        assert 'vigil_pool_inference_ms{pool="hog-1",quantile="0.5"}' in text
        for c in names:
            assert f'vigil_pool_camera_served_total{{camera="{c}",pool="hog-1"}}' in text
        assert 'camera="plain",pool=' not in text
    finally:
        assert v.stop(5.0)
    assert pool._closed and not any(w.thread.is_alive() for w in pool._workers)


@pytest.mark.timeout(300)
def test_a_killed_worker_process_is_restarted_while_cameras_go_on(tmp_path):
    cfg = _config(tmp_path, "processes", timeout_s=30)
    v = Vigil(cfg, persist=False).start()
    names = ["cam0", "cam1", "cam2"]
    try:
        assert not v.failed
        pool = v.pools.pools[0]
        assert pool.kind == "processes"
        assert wait_until(lambda: _detected(v, names, 2), timeout=150, step=0.2) is not None
        procs = [w.model.proc for w in pool._workers]
        assert len(procs) == 2 and all(p.is_alive() for p in procs)
        published = v.cameras["cam1"].status().stages["publish"].processed
        procs[0].kill()
        assert wait_until(lambda: v.cameras["cam1"].status().pool["restarts"] >= 1,
                          timeout=120, step=0.2) is not None
        before = {c: v.cameras[c].status().stages["detect"].processed for c in names}
        assert wait_until(lambda: all(v.cameras[c].status().stages["detect"].processed > before[c]
                                      for c in names), timeout=150, step=0.2) is not None
        st = v.cameras["cam1"].status()
        assert st.pool["restarts"] == 1 and st.pool["workers"] == 2
        assert st.stages["publish"].processed > published    # the camera went on meanwhile
        # the replacement process is up (it may still have been starting a moment ago)
        assert wait_until(lambda: all(w.model.proc.is_alive() for w in pool._workers),
                          timeout=60, step=0.1) is not None
    finally:
        assert v.stop(5.0)
    assert all(not w.model.proc.is_alive() for w in pool._workers)
