"""FrameHub: one encode per frame shared by all viewers, slow viewers skip, prompt close."""
from __future__ import annotations

import threading
import time

import cv2
import numpy as np
import pytest

from core.camera import JpegFrame
from stream.hub import FrameHub
from web.mjpeg import mjpeg_content_type, mjpeg_parts, mjpeg_stream


def _img(i: int, w: int = 320, h: int = 240) -> np.ndarray:
    img = np.zeros((h, w, 3), np.uint8)
    img[:, :] = (i * 7 % 256, 80, 160)
    cv2.putText(img, str(i), (20, h // 2), cv2.FONT_HERSHEY_SIMPLEX, 2, (255, 255, 255), 3)
    return img


def _producer(hub: FrameHub, n: int, fps: float, publish_times: list | None = None) -> threading.Thread:
    frames = [_img(i) for i in range(8)]

    def run() -> None:
        period = 1.0 / fps
        t_next = time.monotonic()
        for i in range(n):
            t0 = time.perf_counter()
            hub.publish(frames[i % len(frames)], seq=i, ts=time.monotonic())
            if publish_times is not None:
                publish_times.append(time.perf_counter() - t0)
            t_next += period
            time.sleep(max(0.0, t_next - time.monotonic()))

    th = threading.Thread(target=run, daemon=True)
    th.start()
    return th


def _viewer_loop(hub: FrameHub, out: list, stop: threading.Event, width=None, delay=0.0,
                 ready: threading.Barrier | None = None) -> threading.Thread:
    def run() -> None:
        with hub.subscribe() as v:
            if ready is not None:
                ready.wait()
            while not stop.is_set():
                f = v.next(0.2, width=width)
                if f is None:
                    if hub.closed:
                        break
                    continue
                out.append((f.seq, f.width, time.monotonic()))
                if delay:
                    time.sleep(delay)

    th = threading.Thread(target=run, daemon=True)
    th.start()
    return th


def test_twenty_viewers_one_encode_per_frame():
    hub = FrameHub("cam", quality=70)
    stop = threading.Event()
    n_viewers = 20
    ready = threading.Barrier(n_viewers + 1)
    outs = [[] for _ in range(n_viewers)]
    threads = [_viewer_loop(hub, outs[i], stop, ready=ready) for i in range(n_viewers)]
    ready.wait(5)
    assert hub.viewers == n_viewers and hub.has_viewers()
    prod = _producer(hub, 80, 100.0)
    prod.join(10)
    time.sleep(0.1)
    stop.set()
    hub.close()
    for t in threads:
        t.join(2)
        assert not t.is_alive()
    assert hub.viewers == 0
    assert hub.published == 80
    epf = hub.encodes_per_frame()
    assert set(epf) == {0} and epf[0] == 1.0, epf
    # every encode was for a distinct frame, and every viewer saw increasing seqs
    distinct = {s for o in outs for s, _, _ in o}
    assert hub.encodes == len(distinct)
    for o in outs:
        seqs = [s for s, _, _ in o]
        assert seqs == sorted(set(seqs)) and len(seqs) >= 10
    # the newest frame reached the viewers
    assert max(distinct) == 79


def test_slow_viewer_skips_and_does_not_slow_producer():
    hub = FrameHub()
    stop = threading.Event()
    slow, fast = [], []
    ready = threading.Barrier(3)
    ts = _viewer_loop(hub, slow, stop, delay=0.06, ready=ready)
    tf = _viewer_loop(hub, fast, stop, ready=ready)
    ready.wait(5)
    publish_times: list[float] = []
    t0 = time.monotonic()
    _producer(hub, 60, 100.0, publish_times).join(10)
    elapsed = time.monotonic() - t0
    time.sleep(0.1)
    stop.set()
    hub.close()
    ts.join(2), tf.join(2)
    seqs = [s for s, _, _ in slow]
    assert seqs == sorted(set(seqs))
    assert len(seqs) < 20, "slow viewer should have skipped frames"
    assert any(b - a > 1 for a, b in zip(seqs, seqs[1:])), "no gaps seen"
    assert len(fast) > 2 * len(seqs)
    # the producer kept its pace and publish() never waited on a viewer
    assert elapsed < 0.6 + 0.3
    assert float(np.median(publish_times)) < 0.001
    assert max(publish_times) < 0.05, max(publish_times)  # GIL switches only, never a viewer wait
    assert hub.stats()["frames_skipped"] == 0  # nobody called mark_sent here


def test_no_viewers_no_encodes():
    hub = FrameHub()
    for i in range(50):
        hub.publish(_img(i), i, time.monotonic())
    assert not hub.has_viewers()
    assert hub.encodes == 0 and hub.published == 50
    with hub.subscribe() as v:
        f = v.next(0.1)
        assert f is not None and f.seq == 49  # joins at the newest frame
    assert hub.encodes == 1


def test_width_variants_are_shared_and_bounded():
    hub = FrameHub(max_variants=3)
    img = _img(3, 640, 480)
    hub.publish(img, 7, 1.5)
    results: dict[int, list[JpegFrame]] = {}
    lock = threading.Lock()
    barrier = threading.Barrier(12)

    def get(width):
        with hub.subscribe() as v:
            barrier.wait(5)
            f = v.next(1.0, width=width)
        with lock:
            results.setdefault(width or 0, []).append(f)

    ths = [threading.Thread(target=get, args=(w,)) for w in [None] * 4 + [160] * 4 + [320] * 4]
    for t in ths:
        t.start()
    for t in ths:
        t.join(5)
    assert hub.encodes == 3
    assert hub.encodes_for(width=None) == 1 and hub.encodes_for(width=160) == 1
    for w, frames in results.items():
        assert len({id(f.data) for f in frames}) == 1  # the very same bytes object
        dec = cv2.imdecode(np.frombuffer(frames[0].data, np.uint8), cv2.IMREAD_COLOR)
        exp_w = w or 640
        assert dec.shape == (exp_w * 3 // 4, exp_w, 3)
        assert frames[0].width == exp_w and frames[0].seq == 7 and frames[0].ts == 1.5
    # widths are clamped / rounded; >= source width means full size (same cache entry)
    assert hub.latest(width=10_000).data is results[0][0].data
    assert hub.latest(width=163).data is results[160][0].data
    assert hub.encodes == 3
    assert hub.latest(width=5).width == 32  # a 4th variant: encoded, evicts the LRU one
    assert hub.encodes == 4
    assert hub.latest(width=163).data is results[160][0].data  # recently used: kept
    # a new frame drops the previous frame's cache
    hub.publish(_img(4, 640, 480), 8, 2.0)
    assert hub.latest().seq == 8


def test_close_wakes_waiters_promptly():
    hub = FrameHub()
    hub.publish(_img(0), 0, 0.0)
    woke: list[float] = []
    got: list = []
    started = threading.Barrier(6)

    def wait():
        with hub.subscribe() as v:
            assert v.next(1.0) is not None  # consume the current frame
            started.wait(5)
            r = v.next(10.0)
            woke.append(time.monotonic())
            got.append(r)

    ths = [threading.Thread(target=wait) for _ in range(5)]
    for t in ths:
        t.start()
    started.wait(5)
    time.sleep(0.05)
    t_close = time.monotonic()
    hub.close()
    for t in ths:
        t.join(2)
    assert len(woke) == 5 and got == [None] * 5
    assert max(woke) - t_close < 0.1
    assert hub.closed and hub.viewers == 0
    with hub.subscribe() as v:
        t0 = time.monotonic()
        assert v.next(5.0) is None and v.next(5.0, min_interval=1.0) is None
        assert time.monotonic() - t0 < 0.05
    hub.publish(_img(1), 1, 1.0)  # ignored after close
    assert hub.published == 1


def test_mjpeg_generator_counts_and_early_close():
    hub = FrameHub()
    hub.publish(_img(1), 41, 12.25, wall_ts=1000.5)
    gen = mjpeg_stream(hub, timeout=0.1)
    assert hub.viewers == 0  # not started yet
    part = next(gen)
    assert hub.viewers == 1
    head, rest = part.split(b"\r\n\r\n", 1)
    lines = head.split(b"\r\n")
    assert lines[0] == b"--frame"
    hdr = dict(ln.split(b": ", 1) for ln in lines[1:])
    assert hdr[b"Content-Type"] == b"image/jpeg"
    assert hdr[b"X-Frame-Seq"] == b"41"
    # epoch seconds of the capture, comparable with the client's clock (not the monotonic 12.25)
    assert float(hdr[b"X-Capture-Ts"]) == 1000.5 and b"X-Timestamp" not in hdr
    n = int(hdr[b"Content-Length"])
    assert rest.endswith(b"\r\n") and len(rest) == n + 2
    assert cv2.imdecode(np.frombuffer(rest[:n], np.uint8), cv2.IMREAD_COLOR).shape == (240, 320, 3)
    gen.close()  # client went away
    assert hub.viewers == 0

    # a generator never started leaves no viewer behind; an exception inside subscribe neither
    g2 = mjpeg_stream(hub)
    g2.close()
    with pytest.raises(RuntimeError):
        with hub.subscribe():
            assert hub.viewers == 1
            raise RuntimeError("boom")
    assert hub.viewers == 0
    assert mjpeg_content_type() == "multipart/x-mixed-replace; boundary=frame"


def test_mjpeg_parts_waits_without_spinning_and_ends_on_close_or_stop():
    hub = FrameHub()
    stop = threading.Event()
    cpu: list[float] = []
    parts: list[bytes] = []

    def consume(stop_evt):
        t0 = time.thread_time()
        with hub.subscribe() as v:
            for p in mjpeg_parts(v, timeout=0.05, stop=stop_evt):
                parts.append(p)
        cpu.append(time.thread_time() - t0)

    th = threading.Thread(target=consume, args=(stop,))
    th.start()
    time.sleep(0.5)  # no frames at all: the generator must sleep on the condition
    hub.publish(_img(2), 2, 2.0)
    time.sleep(0.05)
    stop.set()
    th.join(1)
    assert not th.is_alive()
    assert len(parts) == 1 and cpu[0] < 0.1, cpu
    st = hub.stats()
    assert st["frames_sent"] == 1 and st["bytes_sent"] == len(parts[0])

    th2 = threading.Thread(target=consume, args=(None,))
    th2.start()
    time.sleep(0.1)
    hub.close()
    th2.join(1)
    assert not th2.is_alive() and hub.viewers == 0


def test_min_interval_caps_rate_and_latest_snapshot():
    hub = FrameHub()
    assert hub.latest() is None
    stop = threading.Event()
    got: list[int] = []

    def view():
        with hub.subscribe() as v:
            while not stop.is_set():
                f = v.next(0.2, min_interval=0.1)
                if f is not None:
                    got.append(f.seq)

    th = threading.Thread(target=view)
    th.start()
    _producer(hub, 60, 100.0).join(10)
    stop.set()
    th.join(2)
    assert 4 <= len(got) <= 9, got  # ~0.6 s at <= 10 fps
    snap = hub.latest()
    assert snap.seq == 59
    dec = cv2.imdecode(np.frombuffer(snap.data, np.uint8), cv2.IMREAD_COLOR)
    ref = _img(59 % 8)
    assert np.abs(dec.astype(int) - ref).mean() < 6


def test_bad_arguments():
    with pytest.raises(ValueError):
        FrameHub(quality=0)
    with pytest.raises(ValueError):
        FrameHub(max_variants=0)
    hub = FrameHub()
    with pytest.raises(ValueError):
        hub.publish(np.zeros((4, 4, 3), np.float32), 0, 0.0)


def test_cancel_wakes_that_viewer_alone_at_once():
    """The server calls Viewer.cancel() from its own thread when the client disconnects: a
    viewer waiting for a frame (or in an fps-cap pause) returns None at once, the others keep
    waiting, and mjpeg_parts() ends, so the stream's thread and slot are free again."""
    hub = FrameHub()
    hub.publish(_img(0), 0, 0.0)
    ready = threading.Barrier(4)
    woke: dict[str, tuple[float, object]] = {}
    viewers: dict = {}

    def wait(name: str, min_interval: float) -> None:
        with hub.subscribe() as v:
            viewers[name] = v
            assert v.next(1.0) is not None  # consume the current frame
            ready.wait(5)
            r = v.next(10.0, min_interval=min_interval)
            woke[name] = (time.monotonic(), r)

    ths = {n: threading.Thread(target=wait, args=(n, mi), daemon=True)
           for n, mi in (("frame", 0.0), ("capped", 30.0), ("other", 0.0))}
    for t in ths.values():
        t.start()
    ready.wait(5)
    time.sleep(0.1)  # all three are waiting now
    t0 = time.monotonic()
    viewers["frame"].cancel()
    viewers["capped"].cancel()
    ths["frame"].join(2)
    ths["capped"].join(2)
    assert woke["frame"][1] is None and woke["capped"][1] is None
    assert max(woke["frame"][0], woke["capped"][0]) - t0 < 0.5, woke
    time.sleep(0.1)
    assert "other" not in woke and hub.viewers == 1  # not woken by the others' cancel
    hub.publish(_img(1), 1, 1.0)
    ths["other"].join(2)
    assert woke["other"][1].seq == 1  # still served
    assert hub.viewers == 0
    viewers["frame"].cancel()  # idempotent, harmless after the subscription ended

    # mjpeg_parts: a cancel() while it waits ends the generator; gone() ends it before a part
    hub.publish(_img(2), 2, 2.0)
    with hub.subscribe() as v:
        done: list[float] = []

        def consume() -> None:
            for _ in mjpeg_parts(v, timeout=30.0):
                pass
            done.append(time.monotonic())

        th = threading.Thread(target=consume, daemon=True)
        th.start()
        time.sleep(0.2)  # got the newest frame, now waiting for the next
        t0 = time.monotonic()
        v.cancel()
        th.join(2)
        assert done and done[0] - t0 < 0.5
    gone = [False]
    with hub.subscribe() as v:
        gen = mjpeg_parts(v, timeout=0.05, gone=lambda: gone[0])
        assert next(gen).startswith(b"--frame")
        gone[0] = True
        hub.publish(_img(3), 3, 3.0)  # a frame is ready, but the client has gone
        assert list(gen) == []
    assert hub.viewers == 0 and hub.stats()["frames_sent"] >= 1
