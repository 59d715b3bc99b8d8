"""stream/framepool.py: a pooled frame buffer is handed out again only when no one holds it
(issue 18), and frames published by a Capture that decodes into its pool keep their content
while anyone (a ring like the clip pre-roll, a view, another thread) still holds them."""
from __future__ import annotations

import collections
import threading
import time

import cv2
import numpy as np
import pytest

from core.types import Frame
from stream.capture import Capture
from stream.framepool import FramePool
from stream.synthetic import SyntheticSource, make_scene

SHAPE = (48, 64, 3)


def test_free_buffer_is_reused_held_one_never():
    pool = FramePool()
    a = pool.get(SHAPE)
    b = pool.get(SHAPE)          # `a` is held here: a new buffer
    assert not np.shares_memory(a, b)
    held = b
    del b
    c = pool.get(SHAPE)          # `a` and `held` are both still referenced
    assert not np.shares_memory(c, a) and not np.shares_memory(c, held)
    del a
    d = pool.get(SHAPE)          # the first buffer is free now: it comes back
    assert pool.reused == 1
    assert not np.shares_memory(d, held) and not np.shares_memory(d, c)


@pytest.mark.parametrize("holder", ["view", "frame", "memoryview", "list", "mat_result_view"])
def test_every_kind_of_holder_keeps_a_buffer_out_of_the_pool(holder):
    pool = FramePool()
    buf = pool.get(SHAPE)
    buf[:] = 7
    if holder == "view":
        keep = buf[10:20, ::2]
    elif holder == "frame":
        keep = Frame(buf, 1, 0.0, "t")
    elif holder == "memoryview":
        keep = memoryview(buf)
    elif holder == "list":
        keep = [buf]
    else:  # an OpenCV call that returns its dst (the same memory)
        keep = cv2.add(buf, 0, dst=buf)[1:]
    del buf
    for _ in range(5):
        other = pool.get(SHAPE)
        other[:] = 99            # would overwrite the held frame if it were handed out
    arr = np.asarray(keep.image if holder == "frame" else keep[0] if holder == "list" else keep)
    assert np.all(arr == 7)
    assert pool.reused >= 1      # `other` itself was free again each time


def test_bounds_shape_change_and_idle_buffers_let_go():
    pool = FramePool(max_buffers=2)
    held = [pool.get(SHAPE) for _ in range(4)]   # beyond max_buffers: not kept
    assert pool.stats()["buffers"] == 2 and pool.unpooled == 2
    del held
    big = pool.get((96, 128, 3))                  # free buffers of another shape are dropped
    assert big.shape == (96, 128, 3) and pool.stats()["buffers"] == 1
    assert pool.dropped == 2
    pool2 = FramePool(max_bytes=int(np.prod(SHAPE)) * 3, idle_gets=4)
    keep = [pool2.get(SHAPE) for _ in range(5)]
    assert pool2.stats()["buffers"] == 3 and pool2.stats()["bytes"] <= pool2.max_bytes
    del keep                                      # a ring freeing 3 frames at once: all kept
    for k in range(4):
        got = pool2.get(SHAPE)
        assert pool2.stats()["buffers"] == 3, k
        del got
    assert pool2.idle_bytes() == 3 * int(np.prod(SHAPE))
    got = pool2.get(SHAPE)                        # the other two passed over > idle_gets times
    assert got.shape == SHAPE
    assert pool2.stats()["buffers"] == 1 and pool2.idle_bytes() == 0   # `got` is held
    assert pool2.reused == 5 and pool2.dropped == 2
    with pytest.raises(ValueError, match="max_buffers"):
        FramePool(max_buffers=0)


def test_capture_frames_held_by_a_ring_and_a_thread_keep_their_content():
    """A real Capture on the synthetic conveyor (decoded into the pool): a ring like the clip
    pre-roll holds the last 12 frames, a slow thread holds frames for a while; every frame, when
    finally looked at, still equals a fresh render of its index."""
    scene = make_scene("conveyor", seed=3, width=320, height=200)
    ref = make_scene("conveyor", seed=3, width=320, height=200)
    sources: list[SyntheticSource] = []

    def factory():
        s = SyntheticSource("synthetic:conveyor", scene)
        sources.append(s)
        return s

    cap = Capture("t", factory, pace=False, max_frames=300)
    ring: collections.deque = collections.deque(maxlen=12)
    slow: list[tuple[int, np.ndarray]] = []
    bad: list[int] = []
    lock = threading.Lock()

    def slow_reader():
        while len(slow) < 20:
            f = cap.slot.get(timeout=1.0)
            if f is None:
                break
            with lock:
                slow.append((f.seq, f.image))
            time.sleep(0.005)

    cap.start()
    t = threading.Thread(target=slow_reader)
    t.start()
    seen = 0
    deadline = time.monotonic() + 20
    while cap.frames_in < 300 and time.monotonic() < deadline:
        f = cap.slot.peek()
        if f is not None and (not ring or ring[-1].seq != f.seq):
            ring.append(f)
            seen += 1
            for old in list(ring)[:3]:
                if not np.array_equal(old.image, ref.render(old.seq)):
                    bad.append(old.seq)
        time.sleep(0.0005)
    t.join(5)
    cap.stop()
    for seq, img in slow:
        if not np.array_equal(img, ref.render(seq)):
            bad.append(seq)
    assert seen > 20 and len(slow) > 5
    assert bad == []
    st = cap.frame_pool.stats()
    assert sources[0].frame_pool is cap.frame_pool
    assert st["reused"] > 100            # the buffers really were reused
    assert st["buffers"] <= cap.frame_pool.max_buffers
