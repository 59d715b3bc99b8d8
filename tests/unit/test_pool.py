"""The node's detector pool (stream/pool.py): map() order, fairness and bounds, stuck and
crashed workers, cross-camera batching, with fake detectors of controlled delays."""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from core.types import Detections, Frame
from stream.pool import DetectorPool, DetectorSpec, PoolError, WorkerStuck


class Sleeper:
    """Detects one box whose x is the frame's seq, after `delay` seconds (per call); records
    the concurrency it saw and the batches it was given."""

    name = "sleeper"
    class_names = ["thing"]
    live = 0
    peak = 0
    lock = threading.Lock()

    def __init__(self, delay=0.01, stuck_on=None, batch_delay=None):
        self.delay = delay
        self.stuck_on = stuck_on  # a seq this detector hangs on (once)
        self.batch_delay = batch_delay
        self.batches: list[int] = []
        self.closed = False

    def _one(self, frame):
        seq = frame.seq if isinstance(frame, Frame) else -1
        return Detections([[seq, 0, seq + 10, 10]], [0.9], [0], frame_seq=seq,
                          ts=frame.ts if isinstance(frame, Frame) else float("nan"))

    def detect(self, frame):
        cls = type(self)
        with cls.lock:
            cls.live += 1
            cls.peak = max(cls.peak, cls.live)
        try:
            if self.stuck_on is not None and getattr(frame, "seq", None) == self.stuck_on:
                self.stuck_on = None
                time.sleep(1.5)
            time.sleep(self.delay)
            return self._one(frame)
        finally:
            with cls.lock:
                cls.live -= 1

    def detect_batch(self, frames):
        self.batches.append(len(frames))
        time.sleep(self.batch_delay if self.batch_delay is not None else self.delay)
        return [self._one(f) for f in frames]

    def close(self):
        self.closed = True


def frames(n, cam="cam", start=0):
    img = np.zeros((8, 8, 3), np.uint8)
    return [Frame(img, k, k * 0.04, cam) for k in range(start, start + n)]


def test_map_yields_every_frame_in_order_computed_in_parallel():
    built = []

    def factory():
        d = Sleeper(delay=0.03)
        built.append(d)
        return d

    Sleeper.peak = 0
    pool = DetectorPool(factory, workers=3, kind="threads")
    try:
        t0 = time.perf_counter()
        out = list(pool.map(frames(30), lookahead=6))
        wall = time.perf_counter() - t0
    finally:
        pool.close()
    assert [f.seq for f, _ in out] == list(range(30))
    assert [int(d.xyxy[0, 0]) for _, d in out] == list(range(30))  # each frame's own result
    assert all(d.frame_seq == f.seq for f, d in out)
    assert Sleeper.peak >= 2                      # frames really ran side by side
    assert wall < 30 * 0.03 * 0.8, wall           # faster than one after another
    assert len(built) == 3 and all(d.closed for d in built)  # one detector per worker, closed


def test_map_raises_a_failed_frames_error_and_ends_cleanly():
    class Bad(Sleeper):
        def detect(self, frame):
            if frame.seq == 5:
                raise ValueError("bad frame")
            return super().detect(frame)

    pool = DetectorPool(lambda: Bad(0.001), workers=2)
    try:
        got = []
        with pytest.raises(ValueError, match="bad frame"):
            for f, _ in pool.map(frames(20), lookahead=3):
                got.append(f.seq)
        assert got == [0, 1, 2, 3, 4]
        assert [f.seq for f, _ in pool.map(frames(4))] == [0, 1, 2, 3]  # the pool goes on
        assert pool.stats()["cameras"] == {}   # map clients are gone
    finally:
        pool.close()


def test_model_call_outside_a_worker_goes_through_the_pool():
    pool = DetectorPool(lambda: Sleeper(0.001), workers=1)
    try:
        d = pool.model.detect(frames(1, start=7)[0])
        assert int(d.xyxy[0, 0]) == 7 and d.frame_seq == 7
        assert pool.model.name == "sleeper" and pool.model.class_names == ["thing"]
    finally:
        pool.close()


def test_spec_builds_single_threaded_sections():
    from core.config import YoloConfig
    spec = DetectorSpec("yolo", YoloConfig())
    over = spec.section.model_copy(update={"intra_op_threads": 1, "inter_op_threads": 1})
    assert DetectorSpec("yolo", over).key() != spec.key()
    assert DetectorSpec("yolo", YoloConfig()).key() == spec.key()


def _drive(clients, seconds, period=0.002, start=0):
    """Offer a new frame to every client every `period` seconds (cameras faster than the
    pool); returns the number of frames offered to each."""
    end = time.monotonic() + seconds
    k = start
    while time.monotonic() < end:
        for c, fn in clients:
            c.offer(Frame(np.zeros((8, 8, 3), np.uint8), k, time.monotonic(), c.name), fn)
        k += 1
        time.sleep(period)
    return k - start


def _job(pool, per_client_live, name):
    def fn(frame):
        with Sleeper.lock:
            per_client_live[name] = per_client_live.get(name, 0) + 1
            per_client_live["peak_" + name] = max(per_client_live.get("peak_" + name, 0),
                                                  per_client_live[name])
        try:
            return pool.model.detect(frame)
        finally:
            with Sleeper.lock:
                per_client_live[name] -= 1
    return fn


def test_round_robin_shares_equally_one_request_in_flight_and_drops_counted():
    pool = DetectorPool(lambda: Sleeper(0.01), workers=2)
    live: dict = {}
    cs = [pool.client(f"c{i}") for i in range(3)]
    try:
        offered = _drive([(c, _job(pool, live, c.name)) for c in cs], 1.0)
        time.sleep(0.1)
        served = [c.served for c in cs]
        st = pool.stats()
    finally:
        pool.close()
    assert max(served) - min(served) <= 2, served                 # fair share
    assert sum(served) > 30
    for c in cs:
        assert live["peak_" + c.name] == 1                       # never two in flight at once
        # every frame offered was either served or replaced while waiting (newest only)
        assert abs(offered - c.served - c.slot.dropped) <= 1, (offered, c.served, c.slot.dropped)
        got = c.take()
        assert len(got) + c.results_dropped == c.served           # results bounded, drops counted
        assert all(d.frame_seq == f.seq for f, d in got)
    assert set(st["cameras"]) == {"c0", "c1", "c2"}
    assert abs(sum(v["share"] for v in st["cameras"].values()) - 1.0) < 0.02
    assert st["workers"] == 2 and st["restarts"] == 0 and st["inference_ms_p50"] >= 10.0


def test_weights_and_target_fps():
    pool = DetectorPool(lambda: Sleeper(0.01), workers=1)
    heavy, light, capped = pool.client("heavy", weight=2.0), pool.client("light"), \
        pool.client("capped", max_fps=10)
    live: dict = {}
    try:
        _drive([(c, _job(pool, live, c.name)) for c in (heavy, light, capped)], 1.2)
    finally:
        pool.close()
    assert 1.6 <= heavy.served / light.served <= 2.5, (heavy.served, light.served)
    assert 8 <= capped.served <= 14, capped.served                # ~10/s over 1.2 s


def test_an_idle_camera_gets_no_burst_when_it_comes_back():
    pool = DetectorPool(lambda: Sleeper(0.01), workers=1)
    a, b = pool.client("a"), pool.client("b")
    live: dict = {}
    try:
        _drive([(a, _job(pool, live, "a"))], 0.5)
        a0 = a.served
        _drive([(a, _job(pool, live, "a")), (b, _job(pool, live, "b"))], 0.5, start=10_000)
    finally:
        pool.close()
    assert abs((a.served - a0) - b.served) <= 2, (a.served - a0, b.served)


def test_stuck_worker_is_replaced_and_counted_while_other_cameras_go_on():
    built = []

    def factory():
        d = Sleeper(0.005, stuck_on=3 if not built else None)  # the first detector hangs on seq 3
        built.append(d)
        return d

    pool = DetectorPool(factory, workers=1, timeout_s=0.3)
    a, b = pool.client("a"), pool.client("b")
    live: dict = {}
    try:
        img = np.zeros((8, 8, 3), np.uint8)
        fa = _job(pool, live, "a")
        for k in range(6):  # a's seq 3 hangs its worker for 1.5 s
            a.offer(Frame(img, k, 0.0, "a"), fa)
            time.sleep(0.03)
        t0 = time.monotonic()
        served_b = []
        fb = _job(pool, live, "b")
        while time.monotonic() - t0 < 1.0:
            b.offer(Frame(img, 100, 0.0, "b"), fb)
            time.sleep(0.01)
            served_b += b.take()
        st = pool.stats()
    finally:
        pool.close()
    assert st["restarts"] == 1 and st["timeouts"] == 1 and a.timeouts == 1
    assert st["cameras"]["a"]["timeouts"] == 1 and st["cameras"]["a"]["errors"] == 1
    assert len(served_b) >= 10      # served by the replacement worker well before 1.5 s
    assert len(built) == 2 and st["workers"] == 1


def test_batch_pushed_as_soon_as_every_camera_in_flight_handed_in():
    det = Sleeper(0.001, batch_delay=0.01)
    pool = DetectorPool(lambda: det, kind="batch", batch_window_ms=2000)
    cs = [pool.client(f"c{i}") for i in range(4)]
    img = np.zeros((8, 8, 3), np.uint8)
    try:
        t0 = time.monotonic()
        for i, c in enumerate(cs):
            c.offer(Frame(img, i, 0.0, c.name), pool.model.detect)
        while sum(len(c._results) for c in cs) < 4 and time.monotonic() - t0 < 5:
            time.sleep(0.005)
        wall = time.monotonic() - t0
        outs = [c.take() for c in cs]
        # two of the four cameras have nothing new: the next batch does not wait for them
        t1 = time.monotonic()
        for i, c in enumerate(cs[:2]):
            c.offer(Frame(img, 10 + i, 0.0, c.name), pool.model.detect)
        while sum(len(c._results) for c in cs[:2]) < 2 and time.monotonic() - t1 < 5:
            time.sleep(0.005)
        wall2 = time.monotonic() - t1
        st = pool.stats()
    finally:
        pool.close()
    assert wall < 1.0 and wall2 < 1.0, (wall, wall2)   # far less than the 2 s window
    assert det.batches == [4, 2], det.batches
    for i, got in enumerate(outs):  # each camera got its own frame's detections
        (f, d), = got
        assert f.seq == i and int(d.xyxy[0, 0]) == i and d.frame_seq == i
    assert st["batch_max"] == 4 and st["kind"] == "batch"


def test_batch_window_does_not_wait_for_a_camera_still_in_its_gate():
    det = Sleeper(0.001, batch_delay=0.005)
    pool = DetectorPool(lambda: det, kind="batch", batch_window_ms=150)
    cs = [pool.client(f"c{i}") for i in range(4)]
    img = np.zeros((8, 8, 3), np.uint8)

    def slow_gate(frame):  # this camera's own part (its gate) takes 1 s before the model
        time.sleep(1.0)
        return pool.model.detect(frame)

    try:
        t0 = time.monotonic()
        for i, c in enumerate(cs):
            c.offer(Frame(img, i, 0.0, c.name), slow_gate if i == 3 else pool.model.detect)
        while sum(len(c._results) for c in cs[:3]) < 3 and time.monotonic() - t0 < 5:
            time.sleep(0.002)
        fast = time.monotonic() - t0
        while len(cs[3]._results) < 1 and time.monotonic() - t0 < 5:
            time.sleep(0.002)
    finally:
        pool.close()
    assert 0.15 <= fast < 0.9, fast           # pushed after the window, not after the gate
    # the slow camera's image came alone, after the others' batch (one batch of 3 on a quiet
    # machine; a thread scheduled later than the window on a loaded one makes it two)
    assert det.batches[-1] == 1 and sum(det.batches[:-1]) == 3, det.batches


def test_batched_results_equal_single_results():
    det = Sleeper(0.0, batch_delay=0.0)
    pool = DetectorPool(lambda: det, kind="batch", batch_window_ms=5)
    try:
        batched = [(f.seq, d.xyxy.tolist(), d.frame_seq) for f, d in pool.map(frames(24), lookahead=8)]
    finally:
        pool.close()
    single = [(f.seq, det.detect(f).xyxy.tolist(), f.seq) for f in frames(24)]
    assert batched == single
    assert max(det.batches) > 1


def test_closed_pool_refuses_clients():
    pool = DetectorPool(lambda: Sleeper(0.0), workers=1)
    pool.close()
    with pytest.raises(PoolError):
        pool.client("late")
    pool.close()  # idempotent


@pytest.mark.timeout(180)
def test_process_workers_share_memory_and_a_crashed_worker_restarts():
    """Real HOG detectors in two worker processes: results equal the in-process detector's;
    a killed worker process is restarted and counted, the pool goes on."""
    from core.config import HogConfig
    from detectors.hog import HogDetector
    rng = np.random.default_rng(1)
    img = (rng.random((240, 320, 3)) * 255).astype(np.uint8)
    img[60:200, 130:180] = 30
    fs = [Frame(img, k, k * 0.1, "cam") for k in range(4)]
    ref = HogDetector(HogConfig())
    want = [ref.detect(f).xyxy.tolist() for f in fs]
    pool = DetectorPool(DetectorSpec("hog", HogConfig()), workers=2, kind="processes", timeout_s=30)
    try:
        got = [d.xyxy.tolist() for _, d in pool.map(fs, lookahead=2)]
        assert got == want
        victim = pool._workers[0].model.proc
        victim.kill()
        victim.join(5)
        # found dead while idle (no request needed), restarted and counted
        t0 = time.monotonic()
        while pool.restarts < 1 and time.monotonic() - t0 < 60:
            time.sleep(0.05)
        assert pool.restarts == 1
        cs = [pool.client("cam1"), pool.client("cam2")]  # two cameras keep both workers busy
        results = []
        t0 = time.monotonic()
        k = 0
        after = 0
        while after < 4 and time.monotonic() - t0 < 120:
            for c in cs:
                c.offer(Frame(img, 100 + k, 0.0, c.name), pool.model.detect)
            k += 1
            time.sleep(0.05)
            got = [r for c in cs for r in c.take()]
            results += got
            after += len(got)
        st = pool.stats()
    finally:
        pool.close()
    assert after >= 4 and st["restarts"] == 1, st     # served again after the restart
    assert all(d.xyxy.tolist() == want[0] for _, d in results)
    assert st["workers"] == 2


def test_pooled_detection_keeps_the_live_schedulers_contract_with_a_gate_per_camera():
    """PooledDetection (stream/frameloop.py) on a pool: every Nth frame offered, results with
    the frame they were computed on, applied by the FrameStep at that frame's time; each
    camera's motion gate is its own while the model is the pool's."""
    from core.config import parse_config
    from detectors.motion import GatedDetector, MotionDetector
    from stream.analyzer import build_analyzer, build_camera_detector
    from stream.frameloop import FrameStep, PooledDetection

    cfg = parse_config({"cameras": [{"name": f"cam{i}", "source": "synthetic:crossing",
                                     "detector": "hog", "gate": "motion"} for i in range(2)],
                        "tracker": {"min_hits": 1, "appearance": False}})
    pool = DetectorPool(lambda: Sleeper(0.002), workers=2)
    scheds, steps = [], []
    try:
        for cam in cfg.cameras:
            det = build_camera_detector(cam, cfg, model=pool.model)
            assert isinstance(det, GatedDetector) and det.inner is pool.model
            an = build_analyzer(cam, cfg, detector=det)
            scheds.append(PooledDetection(an, cam.name, pool.client(cam.name), every=2))
            steps.append(FrameStep(an))
        gates = [s.analyzer.detector.gate for s in scheds]
        assert gates[0] is not gates[1] and all(isinstance(g, MotionDetector) for g in gates)
        assert scheds[0].start() is None                 # no thread of its own
        got: list = [[], []]
        for k in range(8):
            for i, s in enumerate(scheds):
                f = Frame(np.zeros((48, 64, 3), np.uint8), k, k * 0.04, s.camera)
                ups = s.updates(f)
                got[i] += ups
                steps[i].advance(f, ups)
                if k % 2 == 0:  # let the pool finish this one (no drops in this test)
                    deadline = time.monotonic() + 2.0
                    while s.stage.processed < k // 2 + 1 and time.monotonic() < deadline:
                        time.sleep(0.002)
        for i, s in enumerate(scheds):
            time.sleep(0.05)
            got[i] += s.client.take()   # what finished after the last frame
            assert [(f.seq, d.frame_seq) for f, d in got[i]] == [(k, k) for k in (0, 2, 4, 6)]
            assert s.dropped == 0 and s.stage.processed == 4 and s.slot.put_count == 4
            # the gate saw exactly this camera's frames (its state is the camera's own)
            assert s.analyzer.detector.gate._frames == 4
            s.stop()
        assert pool.stats()["cameras"] == {}
    finally:
        pool.close()


def test_direct_submissions_share_one_client():
    pool = DetectorPool(lambda: Sleeper(0.002), workers=2)
    try:
        reqs = [pool.submit(f) for f in frames(6)]
        for r in reqs:
            assert r.done.wait(5)
        assert [int(r.dets.xyxy[0, 0]) for r in reqs] == list(range(6))
        assert len([c for c in pool.clients if c.name == "direct"]) == 1
    finally:
        pool.close()


def test_node_pools_share_one_pool_per_detector_config():
    from core.config import parse_config
    from stream.pool import NodePools
    cams = [{"name": "a", "source": "synthetic:crossing", "detector": "hog"},
            {"name": "b", "source": "synthetic:crossing", "detector": "hog", "gate": "motion"},
            {"name": "c", "source": "synthetic:crossing", "detector": "hog",
             "detector_params": {"upscale": 1.0}},
            {"name": "d", "source": "synthetic:crossing", "detector": "motion"},
            {"name": "e", "source": "synthetic:crossing", "detector": "none"}]
    cfg = parse_config({"cameras": cams, "pool": {"kind": "threads", "workers": 1}})
    nodes = NodePools(cfg.pool, cfg)
    try:
        pa, pb, pc = (nodes.pool_for(cfg.camera(n)) for n in "abc")
        assert pa is pb and pa is not pc            # same model config shares; other params do not
        assert nodes.pool_for(cfg.camera("d")) is None and nodes.pool_for(cfg.camera("e")) is None
        assert len(nodes.pools) == 2 and [s["kind"] for s in nodes.stats()] == ["threads"] * 2
        assert pa.n_workers == 1
        auto = NodePools(parse_config({"cameras": cams[:1]}).pool, cfg)
        assert auto.kind_for(cfg.detectors.hog) == "processes"    # CPU: worker processes
        assert auto.workers() >= 1
        off = parse_config({"cameras": cams[:1], "pool": {"enabled": False}})
        assert NodePools(off.pool, off).pool_for(off.cameras[0]) is None
    finally:
        nodes.close()
    assert pa._closed and pc._closed


def test_stuck_batch_is_failed_and_the_batch_runner_rebuilt():
    built = []

    class Hang(Sleeper):
        def detect_batch(self, frames):
            if not built[1:] and any(getattr(f, "seq", None) == 1 for f in frames):
                time.sleep(1.5)        # the first detector hangs on the batch holding seq 1
            return super().detect_batch(frames)

    def factory():
        d = Hang(0.0, batch_delay=0.002)
        built.append(d)
        return d

    pool = DetectorPool(factory, kind="batch", timeout_s=0.3, batch_window_ms=5)
    c = pool.client("cam")
    img = np.zeros((8, 8, 3), np.uint8)
    try:
        got = []
        t0 = time.monotonic()
        k = 0
        while len(got) < 5 and time.monotonic() - t0 < 10:
            c.offer(Frame(img, k, 0.0, "cam"), pool.model.detect)
            k += 1
            time.sleep(0.02)
            got += c.take()
        st = pool.stats()
    finally:
        pool.close()
    assert st["restarts"] == 1 and st["timeouts"] == 1 and c.timeouts == 1
    assert len(built) == 2 and len(got) >= 5 and 1 not in [f.seq for f, _ in got]


def test_close_under_requests_restarts_nothing_and_logs_no_error(caplog):
    """A close whose timeout ends the worker processes under requests in flight (a shutdown
    with busy cameras) neither restarts them nor reports a crash."""
    import logging

    from core.config import HogConfig
    img = (np.random.default_rng(2).random((720, 1280, 3)) * 255).astype(np.uint8)
    pool = DetectorPool(DetectorSpec("hog", HogConfig()), workers=2, kind="processes", timeout_s=30)
    cs = [pool.client("cam1"), pool.client("cam2")]
    try:
        t0 = time.monotonic()
        while pool.stats()["busy"] < 2 and time.monotonic() - t0 < 30:
            for c in cs:
                c.offer(Frame(img, 1, 0.0, c.name), pool.model.detect)
            time.sleep(0.005)
        assert pool.stats()["busy"] == 2
        caplog.set_level(logging.DEBUG, logger="vigil.pool")
    finally:
        pool.close(timeout=0.0)
    time.sleep(0.3)
    assert pool.restarts == 0
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
    assert all(not w.model.proc.is_alive() for w in pool._workers if w.model is not None)
