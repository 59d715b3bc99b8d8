"""MJPEG over HTTP (multipart/x-mixed-replace) for viewers of a frame feed.

Each part carries `X-Frame-Seq` (the camera's frame number) and `X-Capture-Ts` (when the frame
was captured, epoch seconds: comparable with the client's own clock).
"""
from __future__ import annotations

import threading
from typing import Callable, Iterator

from core.camera import FrameFeed, FrameViewer, JpegFrame

__all__ = ["mjpeg_content_type", "mjpeg_parts", "mjpeg_stream"]


def mjpeg_content_type(boundary: bytes | str = b"frame") -> str:
    b = boundary.decode() if isinstance(boundary, bytes) else boundary
    return f"multipart/x-mixed-replace; boundary={b}"


def _part(frame: JpegFrame, boundary: bytes) -> bytes:
    head = (b"--%s\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\nX-Frame-Seq: %d\r\n"
            b"X-Capture-Ts: %.6f\r\n\r\n" % (boundary, len(frame.data), frame.seq, frame.wall_ts))
    return head + frame.data + b"\r\n"


def mjpeg_parts(viewer: FrameViewer, boundary: bytes = b"frame", timeout: float = 1.0,
                stop: threading.Event | None = None, width: int | None = None,
                min_interval: float = 0.0,
                gone: Callable[[], bool] | None = None) -> Iterator[bytes]:
    """multipart/x-mixed-replace parts for one subscribed viewer.

    Blocks on the viewer's condition between frames (no spinning); every `timeout` seconds
    without a frame it re-checks `stop`, `gone` and the hub. Ends when the hub is closed,
    `stop` is set, `gone()` is true (the client disconnected), or the viewer was cancelled
    or its subscription ended. `gone` is checked before each part, so a client that went
    away between frames gets no more writes; for it to be noticed *between* frames, have
    the server call `viewer.cancel()` when it sees the client go (or pass a short
    `timeout`). Each part counts as sent once the server asks for the next one (that is
    when the previous one was written).
    """
    if isinstance(boundary, str):
        boundary = boundary.encode()
    while True:
        if (stop is not None and stop.is_set()) or not viewer.active \
                or (gone is not None and gone()):
            return
        frame = viewer.next(timeout, width=width, min_interval=min_interval)
        if frame is None:
            continue  # timeout (loop re-checks stop / gone) or closed / cancelled (returns)
        if (stop is not None and stop.is_set()) or (gone is not None and gone()):
            return
        part = _part(frame, boundary)
        yield part
        viewer.mark_sent(len(part))


def mjpeg_stream(hub: FrameFeed, boundary: bytes = b"frame", timeout: float = 1.0,
                 stop: threading.Event | None = None, width: int | None = None,
                 min_interval: float = 0.0,
                 gone: Callable[[], bool] | None = None) -> Iterator[bytes]:
    """subscribe() + mjpeg_parts(): hand this generator to the web framework; the viewer
    is unsubscribed when the client goes away (the server closes the generator)."""
    with hub.subscribe() as viewer:
        yield from mjpeg_parts(viewer, boundary, timeout, stop, width, min_interval, gone)
