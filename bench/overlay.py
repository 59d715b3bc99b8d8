"""Overlay drawing cost at 768x576 with 10 tracks (trails, labels, OCR text, status strip).

Prints one JSON object: median ms per draw for several variants, each also as a ratio to a
bare `image.copy()` measured in the same run (the copy the publisher makes anyway), plus the
median of `--repeats` independent runs so one noisy run does not decide the number.

    python main.py bench overlay --json
"""
from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.types import Tracks  # noqa: E402
from stream.overlay import LineDraw, OverlayRenderer, StatusInfo, ZoneDraw  # noqa: E402

W, H = 768, 576


def _scene(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (H // 8, W // 8, 3), dtype=np.uint8).repeat(8, 0).repeat(8, 1)
    xy = rng.uniform(0, [W - 170, H - 170], (n, 2))
    box = np.concatenate([xy, xy + rng.uniform(40, 160, (n, 2))], 1)
    det_index = np.where(np.arange(n) % 3 == 0, -1, np.arange(n))  # a third coasting (dashed)
    names = ["person", "bicycle", "car"]
    text = ["AB 123" if i % 5 == 2 else None for i in range(n)]

    def tracks(frame: int) -> Tracks:
        # boxes move and scores change every frame, as in a live stream
        shift = np.array([frame % 20, frame % 10, frame % 20, frame % 10], np.float32)
        score = np.round(0.3 + 0.7 * ((np.arange(n) * 37 + frame) % 70) / 70, 2)
        return Tracks(box + shift, np.arange(1, n + 1) * 3, np.arange(n) % 3, score,
                      np.full(n, 9), det_index, text=text)

    trails = {int(i + 1) * 3: np.cumsum(rng.normal(0, 3, (30, 2)), 0) + (box[i, :2] + box[i, 2:]) / 2
              for i in range(n)}
    zones = [ZoneDraw("dock", np.array([[40, 330], [300, 310], [330, 520], [50, 550]]),
                      {"person": 2, "car": 1})]
    lines = [LineDraw("gate", (420, 120), (720, 220), 4, 2)]
    return base, tracks, trails, names, zones, lines


def _median_ms(fn, frames: int) -> float:
    times = []
    for f in range(frames):
        t0 = time.perf_counter()
        fn(f)
        times.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(times)


def run_once(n_tracks: int, frames: int) -> dict[str, float]:
    base, tracks, trails, names, zones, lines = _scene(n_tracks)
    cached = OverlayRenderer()
    uncached = OverlayRenderer(text_cache=False)
    no_fill = OverlayRenderer(zone_fill_alpha=0.0)
    tr = [tracks(f) for f in range(frames)]

    def status(f: int) -> StatusInfo:
        return StatusInfo("cam1", "LIVE", 25.0, 8.0 + (f // 25) % 3, 24.9, 40.0 + f % 7)

    res = {
        "copy_ms": _median_ms(lambda f: base.copy(), frames),
        "tracks_ms": _median_ms(
            lambda f: cached.draw(base.copy(), tr[f], trails, names, status=status(f)), frames),
        "tracks_puttext_ms": _median_ms(
            lambda f: uncached.draw(base.copy(), tr[f], trails, names, status=status(f)), frames),
        "full_ms": _median_ms(
            lambda f: cached.draw(base.copy(), tr[f], trails, names, zones, lines, status(f)), frames),
        "full_no_zone_fill_ms": _median_ms(
            lambda f: no_fill.draw(base.copy(), tr[f], trails, names, zones, lines, status(f)),
            frames),
    }
    return res


def benchmark(tracks: int = 10, frames: int = 300, repeats: int = 5) -> dict:
    """Each overlay variant drawn `frames` times per run, `repeats` runs; medians reported."""
    runs = [run_once(tracks, frames) for _ in range(max(1, repeats))]
    med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    copy = med["copy_ms"]
    out = {
        "bench": "overlay", "width": W, "height": H, "tracks": tracks,
        "frames_per_run": frames, "repeats": len(runs),
        "median_ms": {k: round(v, 4) for k, v in med.items()},
        # the draw itself, excluding the copy (each *_ms above includes its own copy)
        "draw_only_ms": {k: round(v - copy, 4) for k, v in med.items() if k != "copy_ms"},
        "ratio_to_copy": {k: round(v / copy, 2) for k, v in med.items() if k != "copy_ms"},
        "sprite_cache_speedup": round((med["tracks_puttext_ms"] - copy) / (med["tracks_ms"] - copy), 2),
        "runs": [{k: round(v, 4) for k, v in r.items()} for r in runs],
    }
    return out
