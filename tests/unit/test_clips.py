"""Event clips: pre-roll from the ring, post-roll, extension by later events, bounded disk."""
from __future__ import annotations

import threading
import time

import av
import numpy as np

from core.types import Frame
from stream.clips import ClipRecorder
from tests.timing import wait_until


def _close(rec: ClipRecorder) -> None:
    """close(), then wait for the clip writers (threads clip-<camera>) to finish: close() gives
    them 2 s of wall time, which a loaded machine can use up before an encode is done."""
    rec.close()

    def busy() -> list[threading.Thread]:
        return [t for t in threading.enumerate() if t.name == f"clip-{rec.camera}" and t.is_alive()]
    assert wait_until(lambda: not busy(), 30) is not None, busy()


def _frames(n, start=0, fps=25.0, size=(64, 96), noise=False):
    rng = np.random.default_rng(0)
    for k in range(start, start + n):
        img = rng.integers(0, 256, (*size, 3), np.uint8) if noise else np.full((*size, 3), k % 255, np.uint8)
        yield Frame(img, k, k / fps, "cam")


def _count(path):
    with av.open(str(path)) as c:
        st = c.streams.video[0]
        assert st.codec_context.name == "h264"
        return sum(1 for _ in c.decode(st))


def _record(rec: ClipRecorder, n: int, event_at: int) -> str:
    """n frames through `rec` with one event on frame `event_at`, then close: the clip's name."""
    frames = list(_frames(n))
    for f in frames[:event_at + 1]:
        rec.add(f)
    name = rec.trigger(frames[event_at].ts)
    for f in frames[event_at + 1:]:
        rec.add(f)
    _close(rec)
    return name


def test_clip_has_pre_and_post_roll(tmp_path):
    rec = ClipRecorder("cam", tmp_path, pre_roll_s=1.0, post_roll_s=2.0, fps=25.0)
    name = _record(rec, 200, 99)
    p = rec.path(name)
    assert p is not None and p.suffix == ".mp4"
    n = _count(p)
    assert 70 <= n <= 80, n  # ~1 s before (26 frames) + 2 s after (50 frames)
    assert rec.stats()["written"] == 1


def test_event_during_clip_extends_it(tmp_path):
    rec = ClipRecorder("cam", tmp_path, pre_roll_s=0.4, post_roll_s=1.0, fps=25.0)
    frames = list(_frames(300))
    for f in frames[:50]:
        rec.add(f)
    a = rec.trigger(frames[49].ts)
    for f in frames[50:70]:
        rec.add(f)
    b = rec.trigger(frames[69].ts)  # while recording: same clip, later end
    for f in frames[70:]:
        rec.add(f)
    _close(rec)
    assert a == b and rec.stats()["started"] == 1
    assert 55 <= _count(rec.path(a)) <= 65  # 0.4 s + (69-49)/25 s + 1 s


def test_ring_is_bounded_by_memory(tmp_path):
    rec = ClipRecorder("cam", tmp_path, pre_roll_s=100.0, max_ring_mb=1.0)
    for f in _frames(500, size=(256, 256)):  # 192 KiB each
        rec.add(f)
    assert rec.stats()["ring_frames"] <= 6


def test_disk_bound_and_name_checks(tmp_path):
    rec = ClipRecorder("cam", tmp_path, pre_roll_s=0.2, post_roll_s=0.2, fps=25.0, max_mb=0.5)
    frames = list(_frames(400, size=(120, 160), noise=True))  # incompressible: ~20 KB a frame
    names = []
    for i, f in enumerate(frames):
        rec.add(f)
        if i % 50 == 10:
            names.append(rec.trigger(f.ts, wall_ts=1_700_000_000 + i))
            time.sleep(0.01)
    _close(rec)
    files = list((tmp_path / "cam").glob("*.mp4"))
    assert len(files) < len(set(names))  # oldest trimmed to stay under max_mb
    assert sum(p.stat().st_size for p in files) <= 0.5 * 2**20 + max(p.stat().st_size for p in files)
    assert rec.path("../../etc/passwd") is None and rec.path("x.mp4") is None


def test_a_clip_being_written_says_so_until_readable(tmp_path):
    """The event links the clip at once; until the file is complete path() is None and
    recording_left_s() tells how long to wait (the API answers 202 with Retry-After)."""
    rec = ClipRecorder("cam", tmp_path, pre_roll_s=0.4, post_roll_s=1.0, fps=25.0)
    frames = list(_frames(80))
    for f in frames[:20]:
        rec.add(f)
    name = rec.trigger(frames[19].ts)
    assert rec.path(name) is None
    left = rec.recording_left_s(name, now_ts=frames[19].ts)
    assert left is not None and 1.9 <= left <= 2.1  # 1 s of post-roll + ~1 s of encoding
    for f in frames[20:]:
        rec.add(f)  # past the post-roll: the clip is closed and encoded
    assert wait_until(lambda: rec.path(name) is not None, 30) is not None
    assert rec.recording_left_s(name) is None
    assert rec.recording_left_s("cam-20260101T000000-99.mp4") is None  # never started
    _close(rec)


def test_encoder_uses_the_configured_preset(tmp_path, monkeypatch):
    """The clip encoder is x264 with the camera's `clips.preset` (ultrafast by default: the
    live pipeline shares the CPU with it) in one thread."""
    from stream import clips
    seen: list[dict] = []
    real = clips.Mp4Writer

    class Spy(real):
        def __init__(self, *a, **k):
            seen.append(k)
            super().__init__(*a, **k)
    monkeypatch.setattr(clips, "Mp4Writer", Spy)
    for preset in ("superfast", None):
        kw = {} if preset is None else {"preset": preset}
        rec = ClipRecorder("cam", tmp_path / str(preset), pre_roll_s=0.5, post_roll_s=0.2, fps=25.0, **kw)
        assert _count(rec.path(_record(rec, 40, 19))) > 0
    assert [(k["preset"], k["threads"]) for k in seen] == [("superfast", 1), ("ultrafast", 1)]
