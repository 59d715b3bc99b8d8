"""LongExposure: exact window mean, EMA convergence, trails, resets, thread safety."""
from __future__ import annotations

import threading

import numpy as np
import pytest

from stream.exposure import LongExposure


def _moving_square(n: int, h: int = 60, w: int = 96, size: int = 12, step: int = 5,
                   seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    bg = rng.integers(20, 120, (h, w, 3), dtype=np.uint8)
    out = []
    for i in range(n):
        f = bg.copy()
        x = (i * step) % (w - size)
        f[20:20 + size, x:x + size] = (250, 240, 230)
        f = np.clip(f.astype(np.int16) + rng.integers(-3, 4, f.shape), 0, 255).astype(np.uint8)
        out.append(f)
    return out


def test_window_mean_is_exact_on_moving_square():
    frames = _moving_square(40)
    n = 7
    exp = LongExposure(mode="window", window=n, trails=False)
    for i, f in enumerate(frames):
        exp.update(f)
        got = exp.image()
        ref = np.mean(np.stack(frames[max(0, i - n + 1):i + 1]).astype(np.float64), axis=0)
        assert got.dtype == np.uint8 and got.shape == f.shape
        assert np.abs(got.astype(np.float64) - ref).max() <= 0.5 + 1e-6, i  # rounded to nearest
        assert exp.count == min(i + 1, n)
    assert exp.frames == 40


@pytest.mark.parametrize("mode", ["ema", "window"])
@pytest.mark.parametrize("trails", [False, True])
def test_static_scene_returns_the_scene(mode, trails):
    img = np.random.default_rng(1).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    exp = LongExposure(mode=mode, alpha=0.3, window=5, trails=trails, trails_weight=1.0)
    assert exp.image() is None
    for _ in range(12):
        exp.update(img)
    assert np.array_equal(exp.image(), img)


def test_ema_converges_like_the_formula():
    a = np.full((16, 16, 3), 200, np.uint8)
    b = np.full((16, 16, 3), 40, np.uint8)
    alpha = 0.1
    exp = LongExposure(mode="ema", alpha=alpha, trails=False)
    exp.update(a)
    for k in range(1, 61):
        exp.update(b)
        expected = 40 + 160 * (1 - alpha) ** k
        assert abs(float(exp.image()[0, 0, 0]) - expected) <= 0.51, k
    assert np.abs(exp.image().astype(int) - 40).max() <= 1


def test_resolution_change_and_manual_reset():
    exp = LongExposure(mode="window", window=4, trails=False)
    for _ in range(5):
        exp.update(np.full((20, 30, 3), 100, np.uint8))
    exp.update(np.full((10, 12, 3), 7, np.uint8))
    assert exp.frames == 1 and exp.resets == 1 and exp.count == 1
    img = exp.image()
    assert img.shape == (10, 12, 3) and np.all(img == 7)
    exp.reset()
    assert exp.frames == 0 and exp.image() is None and exp.resets == 2
    exp.update(np.full((10, 12), 9, np.uint8))  # greyscale works too
    assert exp.image().shape == (10, 12) and np.all(exp.image() == 9)


def test_trails_show_current_object_and_fading_trail():
    h, w = 40, 200
    bg = np.full((h, w, 3), 30, np.uint8)
    exp = LongExposure(mode="ema", alpha=0.1, trails=True, trails_weight=0.5)
    plain = LongExposure(mode="ema", alpha=0.1, trails=False)
    for _ in range(30):
        exp.update(bg), plain.update(bg)
    for i in range(30):
        f = bg.copy()
        x = 10 + 5 * i
        f[15:25, x:x + 10] = 250
        exp.update(f), plain.update(f)
    out, avg = exp.image(), plain.image()
    ref = 0.5 * avg.astype(np.float64) + 0.5 * f
    assert np.abs(out - ref).max() <= 1.0
    # the current position stands out clearly; the plain average only holds a faint ghost
    obj = int(out[20, 155:165, 0].min())
    assert obj > 140 and int(avg[20, 160, 0]) < 100
    # behind it: a trail above the background, older parts fainter, all below the object
    trail = out[20, 20:131:10, 0].astype(int)
    assert np.all(trail > 30) and trail[-1] > trail[0] + 5 and np.all(np.diff(trail) >= -1)
    assert trail.max() < obj - 50
    # far from anything that moved: the background
    assert np.all(out[0:10, :, 0] == 30)


def test_image_is_consistent_while_another_thread_updates():
    exp = LongExposure(mode="window", window=8, trails=False)
    vals = list(range(0, 250, 10))
    stop = threading.Event()
    bad: list[str] = []

    def reader() -> None:
        while not stop.is_set():
            img = exp.image()
            if img is None:
                continue
            lo, hi = int(img.min()), int(img.max())
            if lo != hi:
                bad.append(f"torn image {lo}..{hi}")
                return

    th = threading.Thread(target=reader)
    th.start()
    for _ in range(6):
        for v in vals:  # uniform frames: any window mean is uniform unless read mid-update
            exp.update(np.full((240, 320, 3), v, np.uint8))
    stop.set()
    th.join(5)
    assert not bad, bad


def test_window_memory_cap_and_bounds():
    exp = LongExposure(mode="window", window=1000, max_memory_mb=16, trails=False)
    exp.update(np.zeros((576, 768, 3), np.uint8))
    frame_bytes = 576 * 768 * 3
    assert exp.effective_window == (16 * 2**20) // frame_bytes
    assert exp.stats()["window"] == exp.effective_window
    for kw in ({"mode": "median"}, {"alpha": 0.0}, {"alpha": 1.5}, {"window": 1},
               {"window": 1001}, {"trails_weight": 1.1}):
        with pytest.raises(ValueError):
            LongExposure(**kw)
    with pytest.raises(ValueError):
        LongExposure().update(np.zeros((4, 4, 3), np.float32))


def test_unwatched_ema_accumulates_a_quarter_of_the_frames_with_the_same_time_constant():
    """Nobody watching: one accumulation per IDLE_EVERY frames, weighted for the frames it
    stands for; the picture a viewer then gets is the watched one's within a few grey levels
    (exact for a static scene), and every frame counts again once watched."""
    from stream.exposure import IDLE_EVERY

    frames = _moving_square(120, step=1)
    watched, idle = (LongExposure(mode="ema", alpha=0.05, trails=False) for _ in range(2))
    for f in frames:
        watched.update(f)
        idle.update(f, watched=False)
    assert idle.frames == watched.frames == 120
    assert watched.accumulated == 120
    assert idle.accumulated <= 1 + 120 // IDLE_EVERY
    diff = np.abs(idle.image().astype(int) - watched.image().astype(int))
    # the mean picture is the same; along the moving square's path the trail was sampled
    # every IDLE_EVERY frames (a sample weighs at most 1 - 0.95**4 = 0.19 of 255)
    assert diff.mean() < 1.0 and diff.max() <= 48, (diff.max(), diff.mean())
    # ... and that sampled past fades like any other once watched: three time constants on,
    # the pictures agree within rounding
    for f in frames[:60]:
        watched.update(f)
        idle.update(f)
    diff = np.abs(idle.image().astype(int) - watched.image().astype(int))
    assert diff.max() <= 2, diff.max()
    # a static scene: the same picture as accumulating every frame
    a, b = (LongExposure(mode="ema", alpha=0.2, trails=False) for _ in range(2))
    start, scene = frames[0], frames[60]
    a.update(start), b.update(start)
    for _ in range(40):
        a.update(scene)
        b.update(scene, watched=False)
    assert np.abs(a.image().astype(int) - b.image().astype(int)).max() <= 1
    # watched: every frame is accumulated
    n = idle.accumulated
    for f in frames[:5]:
        idle.update(f)
    assert idle.accumulated == n + 5


def test_window_mode_keeps_every_frame_unwatched():
    frames = _moving_square(20)
    a, b = (LongExposure(mode="window", window=5, trails=False) for _ in range(2))
    for f in frames:
        a.update(f)
        b.update(f, watched=False)
    assert np.array_equal(a.image(), b.image())
