"""Video sources: one small interface over webcams, files, RTSP/HTTP streams, sample clips
and synthetic scenes, with two decoder backends.

URIs (see parse_uri):
    "0", "/dev/video0"                  webcam (V4L2 on Linux)
    "clips/cam.mp4", "file:///x/y.avi"  a file
    "rtsp://[user:pass@]host[:port]/p"  RTSP, interleaved over TCP (rtsp_transport=tcp)
    "http(s)://host/stream.mjpg"        MJPEG or anything else FFmpeg reads over HTTP
    "sample:bikes"                      samples_dir/bikes or samples_dir/bikes.mp4
    "synthetic:conveyor?speed=150"      a scene from stream/synthetic.py (query = scene params)

The URI grammar itself is core/uri.py (the config schema validates sources with it).

Backends, and why "auto" picks what it picks (measured on the 2-core dev box, shared and
loaded, OpenCV 4.14 with its bundled FFmpeg, PyAV 18, gst-rtsp-server test stream
320x240@25 H.264; the commands are in the lead's report):

- opencv: cv2.VideoCapture with CAP_FFMPEG chosen explicitly (only then are
  CAP_PROP_OPEN_TIMEOUT_MSEC / CAP_PROP_READ_TIMEOUT_MSEC honoured). The only webcam path
  that negotiates pixel formats for you (CAP_V4L2). Errors are a bare False: it cannot tell
  "refused" from "timed out" from "not a video". It stops a file at the first undecodable
  packet (an MJPEG clip with 3 garbled frames out of 30: 10 frames, then end). Network
  open + first frame ~1.2 s because FFmpeg's default stream analysis runs; the only way to
  lower that is the process-wide env var OPENCV_FFMPEG_CAPTURE_OPTIONS (e.g.
  "rtsp_transport;tcp|analyzeduration;100000" gives ~0.25 s), which this module
  deliberately does not set (no global side effects). Without it OpenCV already prefers
  TCP for RTSP (rtsp_flags=prefer_tcp).
- pyav: av.open(url, timeout=(open_s, read_s), options=...). Per-open FFmpeg options, so
  network streams get analyzeduration=0.1 s: RTSP open + first frame ~0.25 s instead of
  ~1.2 s. Errors carry FFmpeg's reason (refused, 404, invalid data, timeout). Corrupt packets
  are counted (`corrupt_packets`) and skipped one by one (the clip above: 27 of 30 frames).
  Do NOT add fflags=nobuffer: it throws away the probed keyframe and delays the first frame
  by a GOP (~1.1 s measured).
- File decode + BGR conversion, frames/s, median of 5 (idle box), pyav/opencv ratio: 0.82
  vtest MS-MPEG4 768x576 (864 vs 1048), 0.95 car H.264 768x432, 1.18 bikes H.264 640x272,
  0.95 bigbuckbunny 720p. That is with YUV->BGR done by OpenCV (_frame_to_bgr); PyAV's own
  swscale bgr24 made it 0.36 / 0.55 / 0.76 / 0.96.

auto = opencv for webcams, pyav for everything else (files, samples, rtsp, http): bounded
and fast network opens, real error messages, survives corrupt packets. Both backends fail
a server that accepts and never answers within the open timeout (with default FFmpeg
settings PyAV hangs forever, OpenCV 30 s).

Never trust a container's frame count (tree.avi claims 444 frames, 68 decode): read() until
it returns None. For live sources None means the stream ended (server gone); a stall longer
than read_timeout_s raises SourceError (PyAV) or returns None (OpenCV cannot tell them
apart). OpenCV may hand out already-buffered frames after the peer vanished; the capture
layer watches time since the last new frame.
"""
from __future__ import annotations

import logging
import math
import os
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from core.uri import BACKENDS, SOURCE_KINDS, ParsedSource, parse_uri, redact_uri
from stream.errors import SourceError
from stream.framepool import FramePool

log = logging.getLogger("vigil.sources")

__all__ = ["VideoSource", "open_source",
           "OpenCVSource", "PyAVSource"]

# FFmpeg demuxer options for network streams (PyAV). analyzeduration is in microseconds.
NETWORK_OPTIONS = {"analyzeduration": "100000", "probesize": "500000"}
RTSP_OPTIONS = {"rtsp_transport": "tcp", **NETWORK_OPTIONS}

# Codecs/containers FFmpeg will "decode" that are not video (a long .txt opens as ANSI art).
_NOT_VIDEO_CODECS = {"ansi", "bintext", "xbin", "idf", "tty"}
_NOT_VIDEO_FORMATS = {"tty", "bin", "xbin", "adf", "idf"}
_MAX_CONSECUTIVE_ERRORS = 50


@runtime_checkable
class VideoSource(Protocol):
    uri: str
    backend: str
    fps: float | None
    is_live: bool

    def open(self) -> None: ...
    def read(self) -> np.ndarray | None: ...
    def close(self) -> None: ...


# ----------------------------------------------------------------------------- base


class _DecoderSource:
    """Shared open/read/close bookkeeping.

    close() may come from another thread while read() is blocked inside the decoder; the
    native handle is then released by the reading thread when its (bounded) read returns,
    never under it.
    """

    backend = ""

    def __init__(self, parsed: ParsedSource, path_or_url: str | int, open_timeout_s: float,
                 read_timeout_s: float, options: dict[str, str] | None = None) -> None:
        self.parsed = parsed
        self.uri = parsed.uri
        self.kind = parsed.kind
        self.target = path_or_url
        self.is_live = parsed.is_live
        self.fps: float | None = None
        self.width = 0
        self.height = 0
        self.open_timeout_s = float(open_timeout_s)
        self.read_timeout_s = float(read_timeout_s)
        self.options = dict(options or {})
        self.frames_read = 0
        self.corrupt_packets = 0
        self.open_seconds = float("nan")
        self._lock = threading.Lock()
        self._busy = False
        self._closed = True
        self._handle: Any = None
        self._first: np.ndarray | None = None
        self._ever_opened = False
        self.frame_pool: FramePool | None = None  # decode into reusable buffers (use_pool)

    def use_pool(self, pool: FramePool | None) -> None:
        """Decode frames into `pool`'s buffers (stream/framepool.py: a buffer is reused only
        when no one holds it). The capture thread owns the pool and hands it to every source
        it opens; None: a new array per frame."""
        self.frame_pool = pool

    # -- helpers
    def _err(self, what: str) -> SourceError:
        return SourceError(f"{redact_uri(self.uri)} ({self.backend}): {what}")

    def _check_file(self) -> None:
        if self.kind in ("file", "sample"):
            p = Path(str(self.target))
            if self.kind == "sample" and not p.is_file():
                raise self._err(f"sample clip {self.parsed.target!r} not found in {p.parent} "
                                f"(run `python main.py assets`)")
            if not p.exists():
                raise self._err(f"file not found: {p}")
            if not p.is_file():
                raise self._err(f"not a regular file: {p}")
            if not os.access(p, os.R_OK):
                raise self._err(f"file not readable: {p}")
            if p.stat().st_size == 0:
                raise self._err(f"file is empty: {p}")

    # -- public API
    def open(self) -> None:
        self.close()
        with self._lock:
            self._closed = False
            self._busy = True
        self._ever_opened = True
        self.frames_read = 0
        self.corrupt_packets = 0
        t0 = time.monotonic()
        ok = False
        try:
            handle = self._open_impl()
            with self._lock:
                self._handle = handle
            # Prime: a source that opens but yields no frame fails at open, not later.
            first = self._read_impl()
            if first is None:
                raise self._err("opened, but no video frame could be decoded")
            with self._lock:
                if self._closed:
                    raise self._err("closed while opening")
                self._first = first
            ok = True
        finally:
            with self._lock:
                self._busy = False
                if not ok:
                    self._closed = True
                release = self._closed
            if release:
                self._release()
        self.height, self.width = first.shape[:2]
        self.open_seconds = time.monotonic() - t0
        log.debug("opened %s with %s in %.3f s (%dx%d, fps=%s)", redact_uri(self.uri),
                  self.backend, self.open_seconds, self.width, self.height, self.fps)

    def read(self) -> np.ndarray | None:
        with self._lock:
            if not self._ever_opened:
                raise self._err("read() before open()")
            if self._closed or (self._handle is None and self._first is None):
                return None  # closed: behaves like the end of the stream
            self._busy = True
        try:
            if self._first is not None:
                img, self._first = self._first, None
            else:
                img = self._read_impl()
            if img is not None:
                self.frames_read += 1
            return img
        finally:
            with self._lock:
                self._busy = False
                release = self._closed
            if release:
                self._release()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._first = None
            if self._busy:
                return  # the reading thread releases when its read returns
        self._release()

    def _release(self) -> None:
        with self._lock:
            handle, self._handle = self._handle, None
        if handle is not None:
            try:
                self._release_impl(handle)
            except Exception:  # noqa: BLE001 - releasing must not raise
                log.exception("releasing %s failed", redact_uri(self.uri))

    @property
    def stats(self) -> dict[str, Any]:
        return {"uri": redact_uri(self.uri), "backend": self.backend, "frames": self.frames_read,
                "corrupt_packets": self.corrupt_packets, "open_s": self.open_seconds,
                "width": self.width, "height": self.height, "fps": self.fps}

    def __enter__(self) -> "_DecoderSource":
        self.open()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({redact_uri(self.uri)!r})"

    # -- backend hooks
    def _open_impl(self) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def _read_impl(self) -> np.ndarray | None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _release_impl(self, handle: Any) -> None:  # pragma: no cover - abstract
        raise NotImplementedError


# ----------------------------------------------------------------------------- OpenCV


def _fourcc_str(v: float) -> str:
    n = int(v)
    return "".join(chr((n >> (8 * i)) & 0xFF) for i in range(4)).strip("\x00 ").lower()


class OpenCVSource(_DecoderSource):
    backend = "opencv"

    def _open_impl(self) -> Any:
        import cv2

        self._check_file()
        o_ms, r_ms = int(self.open_timeout_s * 1000), int(self.read_timeout_s * 1000)
        t0 = time.monotonic()
        if self.kind == "webcam":
            dev = self.target if isinstance(self.target, str) else f"/dev/video{self.target}"
            if os.name == "posix" and Path("/dev").is_dir() and not Path(dev).exists():
                raise self._err(f"no such webcam device {dev}")
            api = cv2.CAP_V4L2 if os.name == "posix" else cv2.CAP_ANY
            cap = cv2.VideoCapture(self.target, api)
            if cap.isOpened():
                # V4L2 builds without timeout support simply return False here (their own
                # select() timeout is 10 s).
                cap.set(cv2.CAP_PROP_READ_TIMEOUT_MSEC, r_ms)
        else:
            cap = cv2.VideoCapture(str(self.target), cv2.CAP_FFMPEG,
                                   [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, o_ms,
                                    cv2.CAP_PROP_READ_TIMEOUT_MSEC, r_ms])
        elapsed = time.monotonic() - t0
        if not cap.isOpened():
            cap.release()
            if self.is_live and elapsed >= 0.9 * self.open_timeout_s:
                raise self._err(f"open timed out after {elapsed:.1f} s")
            if self.kind in ("file", "sample"):
                raise self._err(f"cannot decode {self.target}: not a video or unsupported format")
            raise self._err(f"could not open (after {elapsed:.1f} s): unreachable, refused, "
                            f"not found or not a video stream")
        codec = _fourcc_str(cap.get(cv2.CAP_PROP_FOURCC))
        if codec in _NOT_VIDEO_CODECS:
            cap.release()
            raise self._err(f"not a video (FFmpeg sees {codec!r} text)")
        fps = cap.get(cv2.CAP_PROP_FPS)
        self.fps = None if self.is_live or not (0.5 <= fps <= 1000) else float(fps)
        return cap

    def _read_impl(self) -> np.ndarray | None:
        cap = self._handle
        if cap is None:
            return None
        pool = self.frame_pool
        if pool is not None and self.width and self.height:
            # same size and type: OpenCV writes into it (a stream that changed size gets a new
            # array, and the buffer stays free for the pool)
            ok, img = cap.read(pool.get((self.height, self.width, 3)))
        else:
            ok, img = cap.read()
        if not ok or img is None:
            return None
        if img.ndim == 2:
            import cv2
            img = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
        elif img.shape[2] == 4:
            import cv2
            img = cv2.cvtColor(img, cv2.COLOR_BGRA2BGR)
        return img

    def _release_impl(self, handle: Any) -> None:
        handle.release()


# ----------------------------------------------------------------------------- PyAV


def _frame_to_bgr(frame: Any, pool: FramePool | None = None) -> np.ndarray:
    """PyAV frame -> (H,W,3) uint8 BGR. 8-bit limited-range YUV 4:2:0 (nearly every camera and
    file) goes through OpenCV's SIMD converter: 1.3-1.7 ms instead of 2.4-4.9 ms for
    swscale's bgr24 at 768x432-768x576, same BT.601 maths (mean difference ~1 grey level)."""
    if frame.format.name == "yuv420p" and not (frame.width % 2 or frame.height % 2):
        import cv2

        dst = None if pool is None else pool.get((frame.height, frame.width, 3))
        return cv2.cvtColor(frame.to_ndarray(), cv2.COLOR_YUV2BGR_I420, dst=dst)
    return frame.to_ndarray(format="bgr24")


class PyAVSource(_DecoderSource):
    backend = "pyav"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._stream: Any = None
        self._packets: Any = None
        self._pending: deque = deque()
        self._eof = False
        self._consecutive_errors = 0

    def _describe(self, exc: BaseException, elapsed: float, limit: float, phase: str) -> str:
        import av

        reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
        if isinstance(exc, av.ExitError) or (self.is_live and elapsed >= 0.9 * limit):
            return f"{phase} timed out after {elapsed:.1f} s (limit {limit:g} s)"
        return f"{phase} failed: {reason}"

    def _open_impl(self) -> Any:
        import av

        self._check_file()
        opts: dict[str, str] = {}
        fmt = None
        target = str(self.target)
        if self.kind == "rtsp":
            opts.update(RTSP_OPTIONS)
        elif self.kind == "http":
            opts.update(NETWORK_OPTIONS)
        elif self.kind == "webcam":
            fmt = "v4l2"
            target = self.target if isinstance(self.target, str) else f"/dev/video{self.target}"
            if not Path(target).exists():
                raise self._err(f"no such webcam device {target}")
        opts.update(self.options)
        t0 = time.monotonic()
        try:
            container = av.open(target, mode="r", format=fmt, options=opts,
                                timeout=(self.open_timeout_s, self.read_timeout_s))
        except Exception as exc:  # noqa: BLE001 - every failure becomes a SourceError
            elapsed = time.monotonic() - t0
            if self.kind in ("file", "sample") and isinstance(exc, av.InvalidDataError):
                raise self._err(f"cannot decode {target}: not a video or unsupported format") from None
            raise self._err(self._describe(exc, elapsed, self.open_timeout_s, "open")) from None
        try:
            if container.format.name in _NOT_VIDEO_FORMATS:
                raise self._err(f"not a video (FFmpeg format {container.format.name!r})")
            if not container.streams.video:
                raise self._err("has no video stream")
            stream = container.streams.video[0]
            codec = stream.codec_context.name
            if codec in _NOT_VIDEO_CODECS:
                raise self._err(f"not a video (FFmpeg sees {codec!r} text)")
            if not self.is_live:
                stream.thread_type = "AUTO"   # frame threads: faster files, latency irrelevant
            rate = stream.average_rate or stream.guessed_rate
            self.fps = None if self.is_live or not rate or not (0.5 <= float(rate) <= 1000) else float(rate)
        except SourceError:
            container.close()
            raise
        self._stream = stream
        self._packets = container.demux(stream)
        self._pending.clear()
        self._eof = False
        self._consecutive_errors = 0
        return container

    def _next_packet(self) -> Any:
        """Next packet, None at end of stream. Demux errors on files are counted and skipped."""
        import av

        while True:
            t0 = time.monotonic()
            try:
                return next(self._packets)
            except StopIteration:
                return None
            except EOFError:
                return None
            except av.ExitError as exc:
                raise self._err(self._describe(exc, time.monotonic() - t0, self.read_timeout_s,
                                               "read")) from None
            except (av.FFmpegError, OSError) as exc:
                self._consecutive_errors += 1
                if self.is_live and not isinstance(exc, av.InvalidDataError):
                    raise self._err(self._describe(exc, time.monotonic() - t0, self.read_timeout_s,
                                                   "read")) from None
                self.corrupt_packets += 1
                if self._consecutive_errors > _MAX_CONSECUTIVE_ERRORS:
                    if self.is_live:
                        raise self._err(f"read failed: {_MAX_CONSECUTIVE_ERRORS} demux errors in a "
                                        f"row ({getattr(exc, 'strerror', exc)})") from None
                    log.warning("%s: giving up after %d demux errors in a row, treating as end",
                                redact_uri(self.uri), self._consecutive_errors)
                    return None
                # the generator is finished after raising; a new one resumes at the file position
                self._packets = self._handle.demux(self._stream)

    def _read_impl(self) -> np.ndarray | None:
        import av

        while not self._pending:
            if self._eof or self._handle is None:
                return None
            packet = self._next_packet()
            if packet is None:
                self._eof = True
                try:  # flush frames still inside the decoder (frame threading holds some)
                    self._pending.extend(self._stream.codec_context.decode(None))
                except (av.FFmpegError, ValueError):
                    pass
                continue
            try:
                frames = packet.decode()
            except av.FFmpegError:
                self.corrupt_packets += 1
                self._consecutive_errors += 1
                if self._consecutive_errors > _MAX_CONSECUTIVE_ERRORS and not self.is_live:
                    log.warning("%s: %d undecodable packets in a row, treating as end",
                                redact_uri(self.uri), self._consecutive_errors)
                    self._eof = True
                continue
            self._consecutive_errors = 0
            self._pending.extend(frames)
        return _frame_to_bgr(self._pending.popleft(), self.frame_pool)

    def _release_impl(self, handle: Any) -> None:
        self._packets = None
        self._stream = None
        self._pending.clear()
        handle.close()


# ----------------------------------------------------------------------------- factory


def _positive(name: str, v: float) -> float:
    v = float(v)
    if not (math.isfinite(v) and v > 0):
        raise ValueError(f"{name} must be a positive number of seconds, got {v}")
    return v


def open_source(
    uri: str | int,
    backend: str = "auto",
    open_timeout_s: float = 5.0,
    read_timeout_s: float = 5.0,
    samples_dir: Path | str = Path("samples"),
    synthetic_params: dict[str, Any] | None = None,
    seed: int | None = 0,
    options: dict[str, str] | None = None,
) -> VideoSource:
    """Build (not open) the source for `uri`. Bad URI/backend/parameters: ValueError.

    backend: "auto" | "opencv" | "pyav" (ignored for synthetic scenes).
    synthetic_params override the URI's query parameters; the URI's ?seed= overrides `seed`.
    options: extra FFmpeg demuxer options for the pyav backend (override the defaults).
    """
    parsed = parse_uri(uri)
    if backend not in BACKENDS:
        raise ValueError(f"unknown video backend {backend!r} (known: {', '.join(BACKENDS)})")
    open_timeout_s = _positive("open_timeout_s", open_timeout_s)
    read_timeout_s = _positive("read_timeout_s", read_timeout_s)
    if parsed.kind == "synthetic":
        from stream.synthetic import SyntheticSource, make_scene

        params = {**parsed.params, **(synthetic_params or {})}
        use_seed = parsed.seed if parsed.seed is not None else (0 if seed is None else int(seed))
        scene = make_scene(str(parsed.target), seed=use_seed,
                           **params)  # validates every parameter, "frames" included
        return SyntheticSource(parsed.uri, scene, frames=int(scene.params["frames"]))
    target: str | int = parsed.target
    if parsed.kind == "sample":
        d = Path(samples_dir)
        name = str(parsed.target)
        cands = [d / name, d / f"{name}.mp4"]
        target = str(next((c for c in cands if c.is_file()), cands[-1]))
    if backend == "auto":
        backend = "opencv" if parsed.kind == "webcam" else "pyav"
    cls = PyAVSource if backend == "pyav" else OpenCVSource
    return cls(parsed, target, open_timeout_s, read_timeout_s, options)
