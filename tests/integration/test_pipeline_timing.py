"""DESIGN.md "The flow", tested on the real CameraPipeline: with a detector slower than the
source (and detect_every 1 or 3) the overlay still moves at source fps, and detections are
applied at the time of the frame they were computed on, not the time of the frame that is
current when they arrive. Drops are counted and add up.

Injected through the existing seams only:
  * source:   `stream.pipeline.open_source` is monkeypatched to return a live-paced fake
              (25 fps, frame k due at t0 + k * 40 ms, content a pure function of k);
  * detector: the `detector=` argument of CameraPipeline (a fake that sleeps 120 ms per call
              and finds the one bright box in the image, so the box it returns encodes the
              frame it saw: x1 = X0 + V * k);
  * a viewer is subscribed to the overlay hub (the publisher only draws with viewers) and
    pulls JPEGs like an MJPEG client would.
Everything else (Capture, LatestSlot, Analyzer, Tracker, overlay, FrameHub) is the product's.
Observation is by pass-through wrappers: a LatestSlot subclass that keeps a ledger of the
frames the capture produced, and wrappers around Tracker.update / Analyzer.track.

Rates are compared as a ratio against what the fake source really produced in the same
window (the box may be loaded), never against 25 nominal.
"""
from __future__ import annotations

import itertools
import os
import threading
import time
from typing import Any, ClassVar

import numpy as np
import pytest

import stream.pipeline as pipeline_mod
from core.config import parse_config
from core.types import Detections, Frame, SourceState
from detectors.base import frame_meta
from stream.camera import LocalCamera
from stream.pipeline import CameraPipeline
from stream.slot import LatestSlot
from tests.timing import wait_for

FPS = 25.0
INTERVAL = 1.0 / FPS
DETECT_S = 0.120          # 3 source frames per detector call
W, H = 480, 120           # small frames: the test's own CPU use stays low on a loaded box
X0, V = 8, 1              # object's left edge at frame k: X0 + V * k  (px)
BOX_W, BOX_H, Y0 = 40, 40, 40
WRAP = 430                # the object wraps after this many frames (the test ends before)
WARMUP_TIMEOUT_S = 3.0
WINDOW_S = 2.5            # one measured window (~62 source frames)
MAX_WINDOWS = 3           # a further window only when one misses the tolerance (see below)
TOL = 0.05


# ----------------------------------------------------------------------------- fakes
def object_x1(k: int) -> int:
    return X0 + V * (k % WRAP)


def render(k: int) -> np.ndarray:
    """Deterministic frame k: grey background, one bright box at object_x1(k), and k itself
    written in the top-left marker (two 4x4 blocks: low byte, high byte)."""
    img = np.full((H, W, 3), 40, np.uint8)
    x1 = object_x1(k)
    img[Y0:Y0 + BOX_H, x1:x1 + BOX_W] = (230, 230, 230)
    img[Y0 + 10:Y0 + 30, x1 + 10:x1 + 30] = (120, 180, 60)  # some texture for the dHash
    img[0:4, 0:4] = k & 0xFF
    img[0:4, 4:8] = (k >> 8) & 0xFF
    return img


def marker(img: np.ndarray) -> int:
    return int(img[1, 1, 0]) | (int(img[1, 5, 0]) << 8)


class FakeLiveSource:
    """A live camera at 25 fps: read() blocks until frame k is due (t0 + k*INTERVAL)."""

    def __init__(self) -> None:
        self.uri = "fake://live25"
        self.fps = FPS
        self.is_live = True
        self.opens = 0
        self.produced = 0
        self.read_ts: list[float] = []   # monotonic time read() returned frame k
        self._t0: float | None = None
        self._lock = threading.Lock()

    def open(self) -> None:
        self.opens += 1
        self._t0 = time.monotonic()

    def read(self) -> np.ndarray:
        k = self.produced
        delay = self._t0 + k * INTERVAL - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        img = render(k)
        with self._lock:
            self.read_ts.append(time.monotonic())
            self.produced += 1
        return img

    def counts(self) -> int:
        with self._lock:
            return self.produced

    def close(self) -> None:
        pass


class SlowBoxDetector:
    """120 ms per call; finds the bright box in the pixels (so its position encodes the frame
    the detector was given) and tags the Detections with that frame's seq/ts, as real
    detectors do (detectors.base.frame_meta)."""

    name = "fake-slow"
    class_names: ClassVar[list[str]] = ["box"]

    def __init__(self) -> None:
        self.calls: list[tuple[int, float, int, float]] = []  # (seq, ts, marker, box x1)
        self.done_at: list[float] = []  # monotonic time each call returned
        self.lock = threading.Lock()

    def detect(self, frame: Frame | np.ndarray) -> Detections:
        seq, ts = frame_meta(frame)
        img = frame.image if isinstance(frame, Frame) else frame
        time.sleep(DETECT_S)
        row = img[Y0 + 2, :, 0]
        cols = np.flatnonzero(row > 200)
        x1, x2 = float(cols[0]), float(cols[-1] + 1)
        with self.lock:
            self.calls.append((seq, ts, marker(img), x1))
            self.done_at.append(time.monotonic())
        return Detections([[x1, Y0, x2, Y0 + BOX_H]], [0.9], [0], frame_seq=seq, ts=ts)


class LedgerSlot(LatestSlot):
    """The real LatestSlot, plus a ledger of every frame put into it (seq -> ts)."""

    def __init__(self) -> None:
        super().__init__()
        self.ledger: dict[int, float] = {}

    def put(self, item: Frame) -> None:
        self.ledger[item.seq] = item.ts
        super().put(item)


def run_delay_s() -> float | None:
    """Seconds this process's threads have spent runnable but waiting for a CPU (Linux
    schedstat, summed over threads); None where the kernel does not report it."""
    total = 0
    try:
        tids = os.listdir("/proc/self/task")
    except OSError:
        return None
    for tid in tids:
        try:
            with open(f"/proc/self/task/{tid}/schedstat") as f:
                total += int(f.read().split()[1])
        except FileNotFoundError:  # a thread that just ended
            continue
        except (OSError, ValueError, IndexError):
            return None
    return total / 1e9


# ----------------------------------------------------------------------------- the test
@pytest.mark.parametrize("detect_every", [1, 3])
def test_overlay_at_source_fps_and_detections_at_their_frame_time(detect_every, tmp_path, monkeypatch):
    src = FakeLiveSource()
    monkeypatch.setattr(pipeline_mod, "open_source", lambda *a, **k: src)
    cfg = parse_config({
        "server": {"port": 0},
        "paths": {"data": str(tmp_path)},
        "cameras": [{"name": "timing", "source": "synthetic:crossing", "detector": "none",
                     "detect_every": detect_every}],
    })
    det = SlowBoxDetector()
    pipe = CameraPipeline(cfg.cameras[0], cfg, detector=det)
    assert pipe.analyzer.has_detector
    slot = LedgerSlot()
    pipe.capture.slot = slot  # before start: capture and process loop both read this attribute

    tracker = pipe.analyzer.tracker
    updates: list[dict[str, Any]] = []
    real_update = tracker.update

    def recording_update(frame_or_ts, detections, image=None):
        cur = pipe._current  # the frame the process loop is handling right now
        out = real_update(frame_or_ts, detections, image)
        updates.append({
            "frame_seq": frame_or_ts.seq, "frame_ts": frame_or_ts.ts,
            "det_seq": detections.frame_seq, "det_ts": detections.ts,
            "box_x1": float(detections.xyxy[0, 0]) if len(detections) else None,
            "cur_seq": cur.seq, "cur_ts": cur.ts,
            "tracker_t": tracker._t, "out_ts": out.ts,
        })
        return out

    tracker.update = recording_update

    shown: list[tuple[int, float, float, np.ndarray]] = []  # (seq, frame ts, tracks ts, boxes)
    handled_at: list[float] = []  # when the process loop handled each shown frame
    real_track = pipe.analyzer.track

    def recording_track(frame):
        tr = real_track(frame)
        shown.append((frame.seq, frame.ts, tr.ts, tr.xyxy.copy()))
        handled_at.append(time.monotonic())
        return tr

    pipe.analyzer.track = recording_track

    hub = pipe.overlay_hub
    stop_viewer = threading.Event()
    received: list[int] = []

    with hub.subscribe() as viewer:
        def pull() -> None:
            while not stop_viewer.is_set():
                f = viewer.next(timeout=0.2)
                if f is not None:
                    received.append(f.seq)

        vt = threading.Thread(target=pull, name="test-viewer", daemon=True)
        vt.start()
        pipe.start()
        try:
            # warm-up: LIVE, a few detections applied and the box confirmed on screen
            assert wait_for(lambda: pipe.capture.state == SourceState.LIVE, WARMUP_TIMEOUT_S), \
                (pipe.capture.state, pipe.capture.last_error)
            assert wait_for(lambda: len(updates) >= 4 and shown and len(shown[-1][3]) == 1,
                            WARMUP_TIMEOUT_S), (len(updates), LocalCamera(pipe).status())

            # measured windows: the counters are read back to back at each end. On a loaded
            # 2-core box the OS can keep the pipeline's threads off the CPU for a few hundred
            # ms (frames are then dropped, as designed, and counted); so a window that misses
            # the tolerance is followed by another, up to MAX_WINDOWS. A pipeline that really
            # publishes below source fps misses in every window.
            windows = []
            for _ in range(MAX_WINDOWS):
                rd0 = run_delay_s()
                p0, s0, st0, t0 = hub.published, src.counts(), pipe.publish_stage.processed, time.monotonic()
                time.sleep(WINDOW_S)
                p1, s1, st1, t1 = hub.published, src.counts(), pipe.publish_stage.processed, time.monotonic()
                rd1 = run_delay_s()
                rd = None if rd0 is None or rd1 is None else rd1 - rd0
                windows.append((p0, s0, st0, t0, p1, s1, st1, t1, rd))
                if abs((p1 - p0) / max(1, s1 - s0) - 1.0) <= TOL:
                    break
            time.sleep(0.3)  # let frames in flight at t1 reach the hub
        finally:
            ok = pipe.stop()
            stop_viewer.set()
            vt.join(2.0)
    assert ok, "a pipeline thread did not end"
    assert src.opens == 1, "the fake source was reopened (a reconnect would break seq == k)"
    assert src.produced < WRAP, "test ran past the object's wrap-around"

    # ---------------------------------------------------------------- (a) overlay at source fps
    t_start = windows[0][3]
    tried = [f"{(w[4] - w[0]) / max(1, w[5] - w[1]):.3f}" for w in windows]
    p0, s0, st0, t0, p1, s1, st1, t1, rd = min(
        windows, key=lambda w: abs((w[4] - w[0]) / max(1, w[5] - w[1]) - 1.0))
    produced, published = s1 - s0, p1 - p0
    src_fps, pub_fps = produced / (t1 - t0), published / (t1 - t0)
    ratio = published / max(1, produced)
    at = np.array([t for t in handled_at if t0 <= t <= t1])
    gaps = np.diff(at) * 1000.0 if len(at) > 1 else np.zeros(1)
    info = (f"every={detect_every}: source {produced} frames ({src_fps:.2f} fps), "
            f"published {published} ({pub_fps:.2f} fps), ratio {ratio:.3f}, "
            f"detector calls {len(det.calls)}, updates {len(updates)}; window ratios {tried}; "
            f"threads waiting for a CPU: {'n/a' if rd is None else f'{rd:.2f}'} s in {t1 - t0:.2f} s; "
            f"process loop: longest gaps between frames {np.round(np.sort(gaps)[-3:], 1).tolist()} ms "
            "(a gap of n*40 ms loses n-1 frames)")
    print(info)
    # every frame the source produced inside the window reached the hub (by seq, so frames in
    # flight at the window's edges do not count against it)
    in_window = [seq for seq, ts in slot.ledger.items() if t0 <= ts <= t1]
    shown_seqs = {s for s, *_ in shown}
    missed = [s for s in in_window if s not in shown_seqs]
    fps_ok = (abs(ratio - 1.0) <= TOL and len(missed) <= TOL * len(in_window)
              and produced >= 0.8 * FPS * (t1 - t0))
    not_judged = None
    if not fps_ok:
        # No window within tolerance. Only a box that kept this process's threads off the CPU
        # for at least as long as the lost frames last excuses it (then the fps claim cannot
        # be judged here and the test skips at the end, after checking everything else);
        # anything else is a pipeline that does not keep up with its source.
        lost = max(produced - published, len(missed), round(FPS * (t1 - t0)) - produced)
        excused = rd is not None and lost <= TOL * max(1, produced) + rd / INTERVAL
        assert excused, info
        not_judged = f"box too loaded to judge the fps claim ({lost} frames lost, explained by CPU wait): {info}"
    assert abs((st1 - st0) - published) <= 1, "publish stage and hub disagree"
    # and the detector really was the slow stage: far fewer detector runs than frames shown
    assert len(det.calls) < 0.6 * len(shown), info

    # the overlay moves on every frame, not only when detections arrive: the box shown on a
    # frame is the tracker's prediction at that frame's time, close to where the object is
    tracked = [(seq, fts, tts, boxes) for seq, fts, tts, boxes in shown if len(boxes) == 1]
    handled_in_window = [seq for seq, *_ in shown if t0 <= slot.ledger[seq] <= t1]
    tracked_in_window = [seq for seq, *_ in tracked if t0 <= slot.ledger[seq] <= t1]
    assert len(tracked_in_window) >= 0.9 * len(handled_in_window), info
    for seq, fts, tts, _ in tracked:
        assert tts == fts, f"tracks shown on seq {seq} are for time {tts}, not the frame's {fts}"
    late = [(seq, boxes[0, 0]) for seq, _, _, boxes in tracked if slot.ledger[seq] >= t_start]
    err = np.array([abs(x1 - object_x1(seq)) for seq, x1 in late])
    print(f"every={detect_every}: shown box vs object: median {np.median(err):.2f} px, "
          f"p95 {np.percentile(err, 95):.2f} px over {len(err)} frames")
    # (about 0.1 px median here; applying detections at the current frame's time instead
    # shows as a lag of V px per frame of detector latency, ~4 px)
    assert np.median(err) <= 2.0 and np.percentile(err, 95) <= 6.0, \
        f"predicted box lags the object: median {np.median(err):.2f} px, p95 {np.percentile(err, 95):.2f}"
    xs = [x1 for _, x1 in late]
    moved = sum(1 for a, b in itertools.pairwise(xs) if b > a)
    assert moved >= 0.9 * (len(xs) - 1), f"the overlay box stood still between detections ({moved}/{len(xs) - 1})"

    # ---------------------------------------------------------------- (b) detections at their frame
    assert det.calls, "the detector never ran"
    for seq, ts, mark, x1 in det.calls:
        assert mark == seq, f"detector got seq {seq} carrying pixels of source frame {mark}"
        assert ts == slot.ledger[seq], f"frame {seq}: detector saw ts {ts}, capture stamped {slot.ledger[seq]}"
        assert x1 == object_x1(seq)
        assert 0.0 <= ts - src.read_ts[seq] < 0.25, "Frame.ts is not the capture time of that frame"
    # offered every detect_every-th frame the process loop handled (counted in handled
    # frames, not seqs: a capture drop shifts the grid) and took the newest of those
    position = {seq: i for i, (seq, *_) in enumerate(shown)}
    off_grid = [seq for seq, *_ in det.calls if position[seq] % detect_every]
    assert not off_grid, f"detector given frames off the detect_every={detect_every} grid: {off_grid}"
    detected_seqs = [c[0] for c in det.calls]
    assert detected_seqs == sorted(detected_seqs) and len(set(detected_seqs)) == len(detected_seqs)

    # every detection that was ready well before the process loop's last frame was applied
    # (the last one or two may be computed while the pipeline stops)
    applied = {u["frame_seq"] for u in updates}
    unapplied = [c[0] for c, done in zip(det.calls, det.done_at)
                 if done < handled_at[-1] - 0.5 and c[0] not in applied]
    assert not unapplied, f"detections computed but never applied: seqs {unapplied}"
    det_ts = {seq: ts for seq, ts, _, _ in det.calls}
    for u in updates:
        s = u["frame_seq"]
        assert u["det_seq"] == s, f"Detections.frame_seq {u['det_seq']} applied with frame {s}"
        assert s in det_ts, f"tracker updated with frame {s}, which the detector never saw"
        assert u["frame_ts"] == u["det_ts"] == det_ts[s] == slot.ledger[s], u
        assert u["box_x1"] == object_x1(s), f"boxes applied with frame {s} come from another frame: {u}"
        # the detector is slower than the source: a newer frame is current when they land ...
        assert u["cur_seq"] > s and u["cur_ts"] > u["frame_ts"], u
        # ... and the tracker was advanced to the detected frame's time, not the current one's
        assert u["tracker_t"] == u["frame_ts"] and u["out_ts"] == u["frame_ts"], u
    lags = [u["cur_seq"] - u["frame_seq"] for u in updates]
    assert np.mean(lags) >= 2.0, f"detections applied with too small a lag to test anything: {lags}"
    assert tracker.stats["stale_updates"] == 0

    # ---------------------------------------------------------------- (c) drops counted and consistent
    snap = LocalCamera(pipe).status().to_dict()
    cap = snap["capture"]
    frames_in, seen = cap["frames_in"], pipe._frames_seen
    assert src.produced - frames_in in (0, 1)           # at most the frame read as stop came
    assert slot.put_count == frames_in == len(slot.ledger)
    assert slot.taken == seen == snap["stages"]["publish"]["processed"]
    assert cap["dropped"] == slot.dropped
    # with a viewer attached, every frame the process loop handled went to the hub (the one
    # handled as stop() closed the hub excepted)
    assert seen - hub.published in (0, 1), (seen, hub.published)
    assert frames_in - seen - cap["dropped"] in (0, 1)  # the rest: one frame left in the slot
    assert snap["stages"]["detect"]["processed"] == len(det.calls)
    assert snap["stages"]["detect"]["errors"] == 0 and snap["stages"]["track"]["errors"] == 0
    assert snap["stages"]["publish"]["errors"] == 0

    # The detector slot's drops are in the status (stages.detect.dropped, and /metrics); they
    # are checked against the slot itself.
    dslot = pipe.detection.slot
    handed = (seen - 1) // detect_every + 1              # frames offered to the detector
    assert dslot.put_count == handed
    assert dslot.taken == len(det.calls)
    assert handed - dslot.taken - dslot.dropped in (0, 1)
    assert snap["stages"]["detect"]["dropped"] == dslot.dropped + pipe.results_dropped
    not_detected = frames_in - snap["stages"]["detect"]["processed"]
    assert not_detected > 0
    # every frame the detector did not see is a capture drop, a detect_every skip, or a
    # detector-slot drop (newest-frame policy), give or take the one left in a slot
    assert abs(not_detected - (cap["dropped"] + (seen - handed) + dslot.dropped)) <= 2, \
        (not_detected, cap["dropped"], seen - handed, dslot.dropped)
    if detect_every == 1:
        # 25 frames/s offered, ~8/s taken: the detector slot must have dropped most of them
        assert dslot.dropped >= 0.5 * handed, (dslot.dropped, handed)
    print(f"every={detect_every}: frames_in {frames_in}, seen {seen}, capture dropped {cap['dropped']}, "
          f"offered to detector {handed}, detected {len(det.calls)}, detector-slot dropped {dslot.dropped}, "
          f"viewer received {len(received)}; stage ms p50/p95: "
          + ", ".join(f"{k} {v['ms_p50']}/{v['ms_p95']}" for k, v in snap["stages"].items())
          + f"; latency ms {snap['latency_ms']}")
    if not_judged:
        pytest.skip(not_judged)
