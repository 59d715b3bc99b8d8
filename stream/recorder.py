"""H.264 mp4 writing with PyAV (its wheel bundles libx264; OpenCV headless cannot write H.264)."""
from __future__ import annotations

import logging
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

log = logging.getLogger("vigil.recorder")


class RecorderError(RuntimeError):
    pass


class Mp4Writer:
    """Write BGR frames to an H.264 (yuv420p) mp4. Odd sizes are cropped by one pixel
    (yuv420p needs even dimensions); the size is fixed by the first frame."""

    def __init__(self, path: str | Path, fps: float, crf: int = 23, preset: str = "veryfast",
                 threads: int = 0) -> None:
        self.path = Path(path)
        if not fps or fps <= 0:
            raise RecorderError(f"bad fps {fps!r} for {self.path}")
        self.fps = Fraction(fps).limit_denominator(1001)
        self.crf, self.preset, self.threads = crf, preset, int(threads)
        self._container = None
        self._stream = None
        self.size: tuple[int, int] | None = None
        self.frames = 0

    def _open(self, w: int, h: int) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._container = av.open(str(self.path), mode="w", format="mp4")
        except (OSError, av.FFmpegError) as e:
            raise RecorderError(f"cannot create {self.path}: {e}") from None
        st = self._container.add_stream("libx264", rate=self.fps)
        st.width, st.height = w, h
        st.pix_fmt = "yuv420p"
        st.options = {"crf": str(self.crf), "preset": self.preset}
        if self.threads:  # 0: x264 picks (one frame thread per core, each with its buffers)
            st.codec_context.thread_count = self.threads
        self._stream = st
        self.size = (w, h)

    def write(self, image: np.ndarray) -> None:
        h, w = image.shape[:2]
        w2, h2 = w - (w % 2), h - (h % 2)
        if self.size is None:
            self._open(w2, h2)
        elif (w2, h2) != self.size:
            raise RecorderError(f"{self.path}: frame size changed from {self.size} to {(w2, h2)}")
        img = np.ascontiguousarray(image[:h2, :w2])
        frame = av.VideoFrame.from_ndarray(img, format="bgr24")
        for packet in self._stream.encode(frame):
            self._container.mux(packet)
        self.frames += 1

    def close(self) -> None:
        if self._container is None:
            return
        try:
            for packet in self._stream.encode(None):
                self._container.mux(packet)
        finally:
            self._container.close()
            self._container = None

    def __enter__(self) -> "Mp4Writer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
