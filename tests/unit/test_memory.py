"""The memory breakdown (runtime/memory.py, core/memsize.py, the components' memory_bytes()):
sizes of known buffers, each counted once; the caps it reports; the /proc parsers on fixed
text; malloc statistics and trimming where glibc has them."""
from __future__ import annotations

import sys
import time

import numpy as np
import pytest

from core.config import parse_config
from core.memsize import approx_bytes, array_bytes
from core.types import Event, EventKind, Frame
from events.bus import EventBus
from events.store import EventStore
from runtime import memory
from stream.camera import FailedCamera, LocalCamera
from stream.clips import ClipRecorder
from stream.exposure import LongExposure
from stream.hub import FrameHub
from stream.pipeline import CameraPipeline
from stream.slot import LatestSlot

H, W = 120, 160
NB = H * W * 3


def _frame(seq: int, ts: float | None = None) -> Frame:
    img = np.full((H, W, 3), seq % 255, np.uint8)
    return Frame(img, seq, time.monotonic() if ts is None else ts)


def test_array_bytes_counts_a_buffer_once_and_views_by_their_base():
    a = np.zeros((100, 100, 3), np.uint8)
    seen: set[int] = set()
    assert array_bytes(a, seen) == 30000
    assert array_bytes(a[10:20], seen) == 0          # a view of a counted array
    assert array_bytes(a, seen) == 0
    assert array_bytes(a[10:20]) == 30000            # alone: its base's data
    assert array_bytes(None) == 0


def test_approx_bytes_of_containers_and_shared_arrays():
    a = np.zeros(1 << 20, np.uint8)
    b = b"x" * 5000
    total = approx_bytes({"a": a, "again": a, "b": b, "list": [a, b]})
    assert (1 << 20) + 5000 <= total < (1 << 20) + 5000 + 2000  # each buffer once, small overheads
    seen: set[int] = set()
    assert approx_bytes(a, seen) >= 1 << 20
    assert approx_bytes([a], seen) < 200                 # already counted for this seen set


def test_slot_and_hub_sizes():
    slot: LatestSlot[Frame] = LatestSlot()
    assert slot.memory_bytes() == 0
    f = _frame(1)
    slot.put(f)
    assert NB <= slot.memory_bytes() < NB + 1000
    hub = FrameHub("t", max_variants=3)
    assert hub.memory_bytes() == {"frame": 0, "jpeg": 0}
    hub.publish(f.image, 1, f.ts)
    full, small = hub.latest(), hub.latest(width=80)
    m = hub.memory_bytes()
    assert m == {"frame": NB, "jpeg": len(full) + len(small)}
    assert hub.jpeg_variants == 2
    for w in (40, 48, 56, 64):                           # more widths than max_variants
        hub.latest(width=w)
    assert hub.jpeg_variants == 3
    seen: set[int] = set()
    slot.memory_bytes(seen)
    assert hub.memory_bytes(seen)["frame"] == 0          # the same image, counted by the slot


def test_clip_ring_and_encoder_queue_cap(tmp_path):
    rec = ClipRecorder("cam", tmp_path, pre_roll_s=100.0, max_ring_mb=1.0, fps=25.0,
                       max_queue_mb=0.5)
    t0 = time.monotonic()
    for i in range(30):
        rec.add(_frame(i, t0 + i * 0.04))
    ring_frames = rec.stats()["ring_frames"]
    assert ring_frames == (1 << 20) // NB                 # bounded by max_ring_mb
    assert rec.memory_bytes()["ring"] == ring_frames * NB
    # the pre-roll goes to the encoder queue, which holds at most max_queue_mb: the rest of
    # the ring is left out of the clip and counted, the camera does not wait
    rec.trigger(t0 + 30 * 0.04)
    assert rec.frames_dropped == ring_frames - int(0.5 * 2**20) // NB
    assert rec.memory_bytes()["encoder_queue"] <= 0.5 * 2**20
    rec.close(5.0)
    assert rec.stats()["encoder_queue_mb"] == 0.0
    assert rec.memory_bytes()["encoder_queue"] == 0


def test_exposure_sizes():
    ex = LongExposure(mode="ema", trails=False)
    assert ex.memory_bytes() == 0
    ex.update(_frame(1).image)
    assert ex.memory_bytes() >= NB * 4                  # the float32 accumulator
    ex = LongExposure(mode="window", window=10, trails=False)
    for i in range(3):
        ex.update(_frame(i).image)
    assert ex.memory_bytes() >= 10 * NB + NB * 4         # the ring of 10 frames + the int32 sum


def test_bus_and_store_report_items_and_their_caps(tmp_path):
    bus = EventBus(ring_size=5)
    for i in range(8):
        bus.publish(Event(EventKind.LINE_CROSSED, "cam", data={"line": "gate", "i": i}))
    assert bus.memory_counts() == {"ring": 5} and bus.memory_limits() == {"ring": 5}
    assert 5 * 100 < bus.memory_bytes()["ring"] < 5 * 5000
    store = EventStore(tmp_path / "e.sqlite3", max_queue=77)
    try:
        assert store.memory_limits() == {"queue": 77}
        store.submit(Event(EventKind.LINE_CROSSED, "cam", data={"line": "gate"}), b"j" * 10000)
        store.flush(5.0) if hasattr(store, "flush") else time.sleep(0.5)
    finally:
        store.close(5.0)
    assert store.memory_counts() == {"queue": 0} and store.memory_bytes() == {"queue": 0}
    rows = memory.sink_rows([store, object()])            # a sink without memory_bytes: no row
    assert [r["component"] for r in rows] == ["store"]


def _pipeline(tmp_path) -> CameraPipeline:
    cfg = parse_config({"paths": {"data": str(tmp_path)}, "cameras": [
        {"name": "belt", "source": "synthetic:conveyor", "detector": "none",
         "clips": {"kinds": ["line_crossed"], "max_ring_mb": 8, "max_queue_mb": 16}}]})
    return CameraPipeline(cfg.cameras[0], cfg)


def test_camera_memory_through_the_interface(tmp_path):
    p = _pipeline(tmp_path)
    cam = LocalCamera(p)
    f = _frame(3)
    p.capture.slot.put(f)
    p.latest_frame = f                                   # the same frame: counted once
    p.overlay_hub.publish(f.image.copy(), 3, f.ts)
    p.clips.add(f)                                       # a reference to it again
    m = cam.memory()
    assert m.camera == "belt"
    assert NB <= m.parts["capture_slot"] < NB + 1000
    assert m.parts["latest_frame"] < 1000 and m.parts["clips.ring"] == 0
    assert m.parts["overlay_hub.frame"] == NB
    assert m.limits["clips.ring"] == 8 * 2**20 and m.limits["clips.encoder_queue"] == 16 * 2**20
    assert m.limits["overlay_hub.jpeg_variants"] == p.overlay_hub.max_variants
    assert m.counts["clips.ring_frames"] == 1
    assert m.total == sum(m.parts.values()) and m.to_dict()["bytes"] == m.total
    assert FailedCamera("x", "none", "0", "broken").memory().total == 0


class _FakeVigil:
    def __init__(self, cameras, bus):
        self.cameras, self.bus = cameras, bus


def test_collect_rows_and_process_figures(tmp_path):
    p = _pipeline(tmp_path)
    p.capture.slot.put(_frame(1))
    bus = EventBus()
    rep = memory.collect(_FakeVigil({"belt": LocalCamera(p), "x": FailedCamera("x", "none", "0", "m")}, bus))
    rows = {(r["component"], r["name"]): r for r in rep["components"]}
    assert rows[("camera", "belt")]["bytes"] >= NB
    assert rows[("camera", "x")]["bytes"] == 0
    assert rows[("bus", "events")]["limits"] == {"ring": 2000}
    assert rep["accounted_bytes"] == sum(r["bytes"] for r in rep["components"])
    proc = rep["process"]
    if sys.platform.startswith("linux"):
        assert proc["rss_bytes"] > 10 * 2**20
        sm = proc["smaps"]
        assert sm["file"] > 0 and sm["heap"] + sm["anon"] > 0
        # the split covers the resident set (smaps and statm are read a moment apart)
        assert abs(sum(sm.values()) - proc["rollup"]["Rss"]) < 0.1 * proc["rollup"]["Rss"]


SMAPS = """\
55d0c0000000-55d0c0021000 r--p 00000000 08:01 1234    /usr/bin/python3.11
Size:                132 kB
Rss:                 100 kB
55d0c1000000-55d0c2000000 rw-p 00000000 00:00 0       [heap]
Rss:                2048 kB
7f0000000000-7f0004000000 rw-p 00000000 00:00 0
Rss:                4096 kB
Anonymous:          4096 kB
7ffd00000000-7ffd00021000 rw-p 00000000 00:00 0       [stack]
Rss:                  12 kB
7ffd00100000-7ffd00102000 r-xp 00000000 00:00 0       [vdso]
Rss:                   4 kB
"""


def test_smaps_parsers_on_fixed_text():
    assert memory.smaps_split(SMAPS) == {"heap": 2048 * 1024, "anon": 4096 * 1024, "file": 100 * 1024,
                                         "stack": 12 * 1024, "other": 4 * 1024}
    roll = memory.smaps_rollup("00400000-7fff rw-p 00000000 00:00 0 [rollup]\nRss: 6260 kB\n"
                               "Anonymous: 4096 kB\n")
    assert roll == {"Rss": 6260 * 1024, "Anonymous": 4096 * 1024}


@pytest.mark.skipif(memory.malloc_info() is None, reason="no glibc mallinfo2 here")
def test_malloc_info_sees_an_allocation_and_trim_gives_memory_back():
    before = memory.malloc_info()
    assert before["arena"] >= before["in_use"] > 0
    # ~25 MB in blocks below the mmap threshold, written (resident), not calloc'ed zero pages
    blocks = [bytearray(b"\x01") * (64 * 1024 - 64) for _ in range(400)]
    grown = memory.malloc_info()
    rss_grown = memory.rss_bytes()
    assert grown["in_use"] - before["in_use"] > 20 * 2**20
    del blocks
    t = memory.MallocTrimmer(interval_s=0)
    assert t.available
    t.trim()
    assert t.trims == 1 and t.last_ms is not None
    assert t.released_bytes == t.last_released_bytes >= 0
    # Where the freed blocks sit depends on what the process allocated before: at the top of
    # the heap free() itself gives them back; inside a fragmented heap (after a long test run)
    # they stay free chunks until malloc_trim releases their pages. Either way RSS drops.
    assert rss_grown - memory.rss_bytes() > 12 * 2**20, (rss_grown, memory.rss_bytes(),
                                                          t.last_released_bytes)


def _series(rss: list[float], step: float = 10.0) -> list[dict]:
    return [{"t": i * step, "rss_mb": v, "threads": 60, "fds": 20, "cameras": {},
             "memory": {"rss_mb": v, "smaps_mb": {"heap": v / 2, "anon": v / 4}, "malloc_mb": None,
                        "accounted_mb": 10.0 + i, "components": {"camera:c": {"ring": float(i)}}}}
            for i, v in enumerate(rss)]


def test_soak_rss_slope_of_each_half_and_where_the_growth_went():
    from bench.soak import memory_growth, verdicts
    # 6 MB/min for the first 5 minutes, then flat: a warm-up or a high-water mark that plateaus
    rss = [400.0 + min(i, 30) for i in range(61)]
    v = verdicts(_series(rss), 0.0)["rss"]
    assert v["slope_first_half_mb_per_min"] == pytest.approx(6.0, rel=0.02)
    assert abs(v["slope_second_half_mb_per_min"]) < 0.01
    leak = verdicts(_series([400.0 + i for i in range(61)]), 0.0)["rss"]  # a leak keeps its slope
    assert leak["slope_first_half_mb_per_min"] == pytest.approx(6.0) == leak["slope_second_half_mb_per_min"]
    g = memory_growth(_series(rss), 0.0)
    assert g["rss_mb"] == {"first": 400.0, "last": 430.0, "first_half": 30.0, "second_half": 0.0}
    assert g["components_mb"] == {"camera:c.ring": 60.0} and g["accounted_mb"] == 60.0
    assert g["smaps_mb"] == {"anon": 7.5, "heap": 15.0}


def test_defect_watch_pool_and_records_are_counted_with_their_caps(tmp_path):
    cfg = parse_config({"paths": {"data": str(tmp_path)}, "cameras": [
        {"name": "belt", "source": "synthetic:conveyor", "detector": "motion",
         "defect_watch": {"enabled": True, "line_x": 0.5, "max_pending": 7, "max_verdicts": 99}}]})
    m = LocalCamera(CameraPipeline(cfg.cameras[0], cfg)).memory()
    assert m.limits["defect_watch.pending"] == 7 and m.limits["defect_watch.verdicts"] == 99
    assert m.counts["defect_watch.pending"] == 0 and m.counts["defect_watch.references"] == 0
    assert "defect_watch" in m.parts
