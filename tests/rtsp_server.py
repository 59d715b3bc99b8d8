#!/usr/bin/python3
"""A real RTSP server for tests (GStreamer gst-rtsp-server), run by the SYSTEM python.

Usage:
    /usr/bin/python3 tests/rtsp_server.py --port 8554 [--mount /test] [--file PATH]
        [--width 320 --height 240 --fps 25]

Serves H.264 over RTSP (RTP over UDP or interleaved TCP, whichever the client asks for):
- default: a live test pattern (videotestsrc is-live=true, moving ball), WxH @ fps;
- --file PATH: the file decoded, scaled to WxH, paced at fps, re-encoded and looped forever.

Prints one line `READY rtsp://127.0.0.1:PORT/MOUNT` (flushed) once the socket listens, then
runs until SIGTERM/SIGINT. `--port 0` lets the server pick a free port (printed in the READY
line). The listening socket is bound with SO_REUSEADDR (g_socket_bind allow_reuse), so a
restart on the same port after SIGKILL works even with connections left in TIME_WAIT.

Needs (Debian 12): gir1.2-gst-rtsp-server-1.0 python3-gi gstreamer1.0-plugins-ugly
(x264enc; apt pulls in gstreamer1.0-plugins-base/-good/-bad). --file with codecs other
than H.264 (e.g. MS-MPEG4 AVI) also needs gstreamer1.0-libav.
"""
from __future__ import annotations

import argparse
import os
import signal
import sys
import threading

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402

ENCODER = ("x264enc tune=zerolatency speed-preset=ultrafast key-int-max={gop} bframes=0 "
           "! video/x-h264,profile=constrained-baseline "
           "! rtph264pay name=pay0 pt=96 config-interval=1")


class LoopingFile:
    """Decodes a file at real-time pace forever (seek to 0 on EOS) and pushes raw frames
    into whichever appsrc is currently attached (one shared RTSP media)."""

    def __init__(self, path: str, width: int, height: int, fps: int) -> None:
        self.caps = f"video/x-raw,format=I420,width={width},height={height},framerate={fps}/1"
        desc = (f"filesrc location=\"{path}\" ! decodebin ! videoconvert ! videoscale "
                f"! videorate ! {self.caps} ! appsink name=sink sync=true max-buffers=2 drop=true "
                f"emit-signals=true")
        self.pipeline = Gst.parse_launch(desc)
        self.sink = self.pipeline.get_by_name("sink")
        self.sink.connect("new-sample", self._on_sample)
        self._appsrc = None
        self._lock = threading.Lock()
        bus = self.pipeline.get_bus()
        bus.add_signal_watch()
        bus.connect("message", self._on_message)

    def start(self) -> None:
        if self.pipeline.set_state(Gst.State.PLAYING) == Gst.StateChangeReturn.FAILURE:
            raise RuntimeError("could not start the file decoding pipeline")

    def attach(self, appsrc) -> None:
        with self._lock:
            self._appsrc = appsrc

    def detach(self, *_args) -> None:
        with self._lock:
            self._appsrc = None

    def _on_sample(self, sink) -> Gst.FlowReturn:
        sample = sink.emit("pull-sample")
        with self._lock:
            src = self._appsrc
        if sample is not None and src is not None:
            buf = sample.get_buffer().copy()
            buf.pts = buf.dts = Gst.CLOCK_TIME_NONE  # appsrc do-timestamp stamps it
            src.emit("push-buffer", buf)
        return Gst.FlowReturn.OK

    def _on_message(self, _bus, msg) -> None:
        if msg.type == Gst.MessageType.EOS:
            self.pipeline.seek_simple(Gst.Format.TIME, Gst.SeekFlags.FLUSH | Gst.SeekFlags.KEY_UNIT, 0)
        elif msg.type == Gst.MessageType.ERROR:
            err, dbg = msg.parse_error()
            print(f"ERROR file pipeline: {err.message} ({dbg})", file=sys.stderr, flush=True)
            os._exit(3)  # sys.exit would only end this GLib callback


def build_server(args: argparse.Namespace) -> tuple[GstRtspServer.RTSPServer, LoopingFile | None]:
    gop = args.gop if args.gop > 0 else max(1, args.fps)
    factory = GstRtspServer.RTSPMediaFactory()
    feeder: LoopingFile | None = None
    if args.file:
        feeder = LoopingFile(args.file, args.width, args.height, args.fps)
        launch = (f"( appsrc name=src is-live=true format=time do-timestamp=true caps={feeder.caps} "
                  f"! queue max-size-buffers=2 leaky=downstream ! videoconvert ! "
                  + ENCODER.format(gop=gop) + " )")

        def on_configure(_factory, media) -> None:
            src = media.get_element().get_child_by_name("src")
            feeder.attach(src)
            media.connect("unprepared", feeder.detach)

        factory.connect("media-configure", on_configure)
    else:
        launch = (f"( videotestsrc is-live=true pattern=ball "
                  f"! video/x-raw,width={args.width},height={args.height},framerate={args.fps}/1 "
                  f"! videoconvert ! " + ENCODER.format(gop=gop) + " )")
    factory.set_launch(launch)
    factory.set_shared(True)
    server = GstRtspServer.RTSPServer()
    server.set_address(args.host)
    server.set_service(str(args.port))
    server.get_mount_points().add_factory(args.mount, factory)
    return server, feeder


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, default=8554, help="0 = pick a free port")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--mount", default="/test")
    ap.add_argument("--file", default=None, help="serve this file (looped) instead of a test pattern")
    ap.add_argument("--width", type=int, default=320)
    ap.add_argument("--height", type=int, default=240)
    ap.add_argument("--fps", type=int, default=25)
    ap.add_argument("--gop", type=int, default=0, help="keyframe interval in frames (0 = fps, one a second)")
    args = ap.parse_args(argv)
    if not args.mount.startswith("/"):
        args.mount = "/" + args.mount

    Gst.init(None)
    server, feeder = build_server(args)
    loop = GLib.MainLoop()
    try:
        server.attach(None)
    except GLib.Error as exc:
        print(f"ERROR cannot listen on {args.host}:{args.port}: {exc.message}", file=sys.stderr, flush=True)
        return 2
    if feeder is not None:
        feeder.start()
    # Expire sessions of clients that vanished (keeps a long test run tidy).
    GLib.timeout_add_seconds(2, lambda: (server.get_session_pool().cleanup(), True)[1])
    for sig in (signal.SIGTERM, signal.SIGINT):
        GLib.unix_signal_add(GLib.PRIORITY_HIGH, sig, lambda *_: (loop.quit(), False)[1])
    port = server.get_bound_port()
    print(f"READY rtsp://{args.host}:{port}{args.mount}", flush=True)
    loop.run()
    if feeder is not None:
        feeder.pipeline.set_state(Gst.State.NULL)
    return 0


if __name__ == "__main__":
    sys.exit(main())
