"""Event clips: an H.264 mp4 around chosen events, with pre-roll from a bounded ring of
recent frames and a post-roll, written by PyAV in a background thread.

The ring holds references to source frames (never copies: frames are not written to after
capture), bounded by `pre_roll_s` and by `max_ring_mb`. An event while a clip is being
recorded extends that clip (up to `max_clip_s`) and links to it instead of starting another.
Disk use is bounded: after each clip the folder is trimmed to `max_mb` and `retention_days`,
oldest first.
"""
from __future__ import annotations

import collections
import logging
import queue
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.memsize import array_bytes
from core.types import Frame
from stream.recorder import Mp4Writer, RecorderError

log = logging.getLogger("vigil.clips")

CLIP_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}-\d{8}T\d{6}-\d{1,12}\.mp4$")


@dataclass
class _Clip:
    name: str
    end_ts: float        # capture-clock time after which no frame is added
    hard_end_ts: float   # max_clip_s from the first frame
    last_seq: int
    queue: "queue.Queue[np.ndarray | None]"
    frames: int = 0
    queued_bytes: int = 0  # frames waiting for the encoder (bounded by max_queue_mb)


class ClipRecorder:
    def __init__(self, camera: str, folder: str | Path, pre_roll_s: float = 2.0, post_roll_s: float = 3.0,
                 max_clip_s: float = 30.0, max_ring_mb: float = 96.0, max_mb: float = 1000.0,
                 retention_days: float = 30.0, fps: float | None = None, crf: int = 26,
                 max_queue_mb: float = 64.0, preset: str = "ultrafast") -> None:
        self.camera = camera
        self.folder = Path(folder) / camera
        self.pre_roll_s = float(pre_roll_s)
        self.post_roll_s = float(post_roll_s)
        self.max_clip_s = float(max_clip_s)
        self.max_ring_bytes = int(max_ring_mb * 2**20)
        self.max_bytes = int(max_mb * 2**20)
        # frames waiting for the encoder: an encoder slower than the camera (a loaded machine)
        # would otherwise queue the whole clip in memory; beyond this frames are left out of
        # the clip (counted in frames_dropped), the camera never waits
        self.max_queue_bytes = int(max_queue_mb * 2**20)
        self.frames_dropped = 0
        self._queued_bytes = 0  # over every clip still being encoded
        self._encoding: dict[str, _Clip] = {}
        self.retention_s = float(retention_days) * 86400.0
        self.fps = fps
        self.crf = int(crf)
        self.preset = preset
        self._ring: collections.deque[Frame] = collections.deque()
        self._ring_bytes = 0
        self._lock = threading.Lock()
        self._active: _Clip | None = None
        self._writing: set[str] = set()  # started, not yet finished (the link is not readable yet)
        self._threads: list[threading.Thread] = []
        self.clips_started = 0
        self.clips_written = 0
        self.errors = 0
        self.last_error: str | None = None

    # ------------------------------------------------------------ per frame (process thread)
    def add(self, frame: Frame) -> None:
        """Every published frame: keep it in the pre-roll ring, feed an active clip."""
        with self._lock:
            self._ring.append(frame)
            self._ring_bytes += frame.image.nbytes
            while self._ring and (frame.ts - self._ring[0].ts > self.pre_roll_s
                                  or self._ring_bytes > self.max_ring_bytes):
                self._ring_bytes -= self._ring.popleft().image.nbytes
            clip = self._active
            if clip is None:
                return
            if frame.ts > min(clip.end_ts, clip.hard_end_ts):
                clip.queue.put(None)
                self._active = None
                return
            if frame.seq > clip.last_seq:
                clip.last_seq = frame.seq
                self._enqueue(clip, frame.image)

    def _enqueue(self, clip: _Clip, image: np.ndarray) -> None:
        """Hand a frame to the clip's encoder, or leave it out past max_queue_mb (lock held)."""
        if self._queued_bytes + image.nbytes > self.max_queue_bytes:
            self.frames_dropped += 1
            return
        clip.queued_bytes += image.nbytes
        self._queued_bytes += image.nbytes
        clip.queue.put(image)
        clip.frames += 1

    # ------------------------------------------------------------ on an event
    def trigger(self, frame_ts: float, wall_ts: float | None = None) -> str:
        """Start (or extend) a clip around an event at capture time `frame_ts`; returns its
        file name (served at /api/clips/<camera>/<name>)."""
        with self._lock:
            if self._active is not None:
                self._active.end_ts = max(self._active.end_ts, frame_ts + self.post_roll_s)
                return self._active.name
            stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(wall_ts or time.time()))
            name = f"{self.camera}-{stamp}-{self.clips_started}.mp4"
            pre = list(self._ring)
            q: queue.Queue[np.ndarray | None] = queue.Queue()  # bounded by max_queue_mb
            start = pre[0].ts if pre else frame_ts
            clip = _Clip(name, frame_ts + self.post_roll_s, start + self.max_clip_s,
                         pre[-1].seq if pre else -1, q)
            for f in pre:
                self._enqueue(clip, f.image)
            self._active = clip
            self._writing.add(name)
            self._encoding[name] = clip
            self.clips_started += 1
        fps = self.fps or _fps_of(pre) or 25.0
        t = threading.Thread(target=self._write, args=(clip, fps), name=f"clip-{self.camera}", daemon=True)
        t.start()
        self._threads = [x for x in self._threads if x.is_alive()] + [t]
        return name

    def _write(self, clip: _Clip, fps: float) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        tmp = self.folder / (clip.name + ".part")
        try:
            # one encoder thread: clips are short and rare, and x264's frame threads each
            # hold frame buffers (the soak showed +40 MB while several clips were open)
            with Mp4Writer(tmp, fps, crf=self.crf, preset=self.preset, threads=1) as w:
                while True:
                    img = clip.queue.get(timeout=self.max_clip_s + self.post_roll_s + 10)
                    if img is None:
                        break
                    with self._lock:
                        clip.queued_bytes -= img.nbytes
                        self._queued_bytes -= img.nbytes
                    w.write(img)
            if w.frames:
                tmp.replace(self.folder / clip.name)
                self.clips_written += 1
            else:
                tmp.unlink(missing_ok=True)
        except (RecorderError, OSError, queue.Empty) as e:
            self.errors += 1
            self.last_error = f"clip {clip.name}: {e}"
            log.warning("[%s] %s", self.camera, self.last_error)
            tmp.unlink(missing_ok=True)
        finally:
            with self._lock:
                self._writing.discard(clip.name)
                self._encoding.pop(clip.name, None)
                self._queued_bytes -= clip.queued_bytes  # frames a failed writer left behind
                clip.queued_bytes = 0
            self._trim()

    def _trim(self) -> None:
        """Keep the camera's clip folder under max_mb and retention_days (oldest first)."""
        try:
            files = sorted((p for p in self.folder.glob("*.mp4")), key=lambda p: p.stat().st_mtime)
        except OSError:
            return
        now = time.time()
        total = sum(p.stat().st_size for p in files)
        for p in files:
            if total <= self.max_bytes and now - p.stat().st_mtime <= self.retention_s:
                break
            total -= p.stat().st_size
            p.unlink(missing_ok=True)

    def path(self, name: str) -> Path | None:
        if not CLIP_NAME.match(name):
            return None
        p = self.folder / name
        return p if p.is_file() else None

    def recording_left_s(self, name: str, now_ts: float | None = None) -> float | None:
        """For a clip still being recorded or encoded: about how many seconds until it is
        readable (its post-roll still to come, plus a little encoding); else None."""
        with self._lock:
            if name not in self._writing:
                return None
            clip = self._active
            left = 0.0
            if clip is not None and clip.name == name and now_ts is not None:
                left = max(0.0, min(clip.end_ts, clip.hard_end_ts) - now_ts)
        return left + 1.0

    def close(self, timeout: float = 2.0) -> None:
        with self._lock:
            if self._active is not None:
                self._active.queue.put(None)
                self._active = None
        deadline = time.monotonic() + timeout
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))

    def memory_bytes(self, seen: set[int] | None = None) -> dict[str, int]:
        """Bytes held: the pre-roll ring (references to source frames, bounded by pre_roll_s
        and max_ring_mb) and the frames queued for the clip encoders (bounded by max_queue_mb)."""
        with self._lock:
            ring = [f.image for f in self._ring]
            queued = [a for c in self._encoding.values() for a in list(c.queue.queue)]
        return {"ring": sum(array_bytes(a, seen) for a in ring),
                "encoder_queue": sum(array_bytes(a, seen) for a in queued if a is not None)}

    def stats(self) -> dict:
        return {"started": self.clips_started, "written": self.clips_written, "errors": self.errors,
                "ring_frames": len(self._ring), "ring_mb": round(self._ring_bytes / 2**20, 1),
                "recording": self._active is not None, "last_error": self.last_error,
                "encoder_queue_mb": round(self._queued_bytes / 2**20, 1),
                "frames_dropped": self.frames_dropped}


def _fps_of(frames: list[Frame]) -> float | None:
    if len(frames) < 2:
        return None
    span = frames[-1].ts - frames[0].ts
    return (len(frames) - 1) / span if span > 0 else None
