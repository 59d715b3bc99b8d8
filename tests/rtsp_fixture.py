"""Test helpers for network sources: a real RTSP server (tests/rtsp_server.py run by the
system python, which has GStreamer's gi bindings; the venv does not) and a TCP server that
accepts connections and never answers.

Use from a test module:

    from tests.rtsp_fixture import rtsp_server, rtsp_server_factory  # noqa: F401 (fixtures)

    def test_x(rtsp_server):            # started; killed at teardown whatever happens
        src = open_source(rtsp_server.url); ...
        rtsp_server.kill()              # SIGKILL, like a crashed camera
        rtsp_server.restart()           # same port, same URL
        rtsp_server.stall() / resume()  # SIGSTOP / SIGCONT: connection open, no data

The fixtures skip with a reason when /usr/bin/python3 lacks gi/GstRtspServer/x264enc, and
fail instead under VIGIL_CI=1 (conftest.require). Debian packages:
    gir1.2-gst-rtsp-server-1.0 python3-gi gstreamer1.0-plugins-ugly
"""
from __future__ import annotations

import functools
import os
import select
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Iterator

import pytest

ROOT = Path(__file__).resolve().parents[1]
SERVER_SCRIPT = ROOT / "tests" / "rtsp_server.py"
SYSTEM_PYTHON = os.environ.get("VIGIL_GST_PYTHON", "/usr/bin/python3")

_PROBE = (
    "import gi\n"
    "gi.require_version('Gst', '1.0'); gi.require_version('GstRtspServer', '1.0')\n"
    "from gi.repository import Gst, GstRtspServer\n"
    "Gst.init(None)\n"
    "missing = [e for e in ('videotestsrc', 'videoconvert', 'x264enc', 'rtph264pay', 'appsrc',"
    " 'decodebin') if Gst.ElementFactory.find(e) is None]\n"
    "print('MISSING ' + ' '.join(missing) if missing else 'OK')\n"
)


@functools.lru_cache(maxsize=None)
def gst_rtsp_available(python: str = SYSTEM_PYTHON) -> tuple[bool, str]:
    """(ok, reason): can `python` run tests/rtsp_server.py?"""
    if not Path(python).is_file():
        return False, f"{python} not found (needed to run the GStreamer RTSP test server)"
    try:
        res = subprocess.run([python, "-c", _PROBE], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, f"{python} could not probe GStreamer: {exc}"
    out = res.stdout.strip()
    if res.returncode != 0:
        last = (res.stderr.strip().splitlines() or ["?"])[-1]
        return False, (f"{python} cannot import gi/GstRtspServer ({last}); install "
                       f"gir1.2-gst-rtsp-server-1.0 python3-gi gstreamer1.0-plugins-ugly")
    if out.startswith("MISSING"):
        return False, f"GStreamer elements missing for the RTSP test server: {out[8:]}"
    return True, "ok"


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class RtspServer:
    """One tests/rtsp_server.py process on a fixed port (chosen once, reused by restart)."""

    def __init__(self, port: int | None = None, mount: str = "/test", file: str | Path | None = None,
                 width: int = 320, height: int = 240, fps: int = 25, gop: int = 0,
                 host: str = "127.0.0.1", python: str = SYSTEM_PYTHON,
                 ready_timeout_s: float = 15.0) -> None:
        self.host = host
        self.port = int(port) if port else free_port(host)
        self.mount = mount if mount.startswith("/") else "/" + mount
        self.file = str(file) if file else None
        self.width, self.height, self.fps, self.gop = width, height, fps, gop
        self.python = python
        self.ready_timeout_s = ready_timeout_s
        self.proc: subprocess.Popen | None = None
        self._stderr = None
        self.starts = 0

    @property
    def url(self) -> str:
        return f"rtsp://{self.host}:{self.port}{self.mount}"

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def _cmd(self) -> list[str]:
        cmd = [self.python, str(SERVER_SCRIPT), "--host", self.host, "--port", str(self.port),
               "--mount", self.mount, "--width", str(self.width), "--height", str(self.height),
               "--fps", str(self.fps), "--gop", str(self.gop)]
        if self.file:
            cmd += ["--file", self.file]
        return cmd

    def start(self) -> "RtspServer":
        """Start and wait for the READY line; retries a busy port for a few seconds."""
        if self.alive:
            raise RuntimeError(f"RTSP server already running on port {self.port}")
        deadline = time.monotonic() + self.ready_timeout_s
        last_err = ""
        while True:
            self._stderr = tempfile.TemporaryFile(mode="w+")
            self.proc = subprocess.Popen(self._cmd(), stdout=subprocess.PIPE, stderr=self._stderr,
                                         stdin=subprocess.DEVNULL, start_new_session=True)
            line = self._wait_ready(deadline)
            if line is not None:
                self.starts += 1
                return self
            self._reap()
            last_err = self._stderr_text()
            # port still held (a previous instance not yet gone): retry until the deadline
            if "cannot listen" in last_err and time.monotonic() < deadline:
                time.sleep(0.2)
                continue
            raise RuntimeError(f"RTSP test server did not become ready on port {self.port}: "
                               f"{last_err.strip() or 'no output'}")

    def _wait_ready(self, deadline: float) -> str | None:
        assert self.proc is not None and self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        buf = b""
        while time.monotonic() < deadline:
            r, _, _ = select.select([fd], [], [], 0.05)
            if r:
                chunk = os.read(fd, 4096)
                if not chunk:
                    return None  # process exited
                buf += chunk
                for line in buf.decode(errors="replace").splitlines():
                    if line.startswith("READY "):
                        return line
            elif self.proc.poll() is not None:
                return None
        return None

    def _stderr_text(self) -> str:
        if self._stderr is None:
            return ""
        try:
            self._stderr.seek(0)
            return self._stderr.read()[-2000:]
        except (OSError, ValueError):
            return ""

    def _reap(self, timeout: float = 5.0) -> None:
        if self.proc is None:
            return
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=timeout)
        if self.proc.stdout is not None:
            self.proc.stdout.close()

    def kill(self) -> None:
        """SIGKILL (a crashed camera: no RTSP teardown, sockets reset by the kernel)."""
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.kill(self.proc.pid, signal.SIGCONT)  # in case it was stalled
                self.proc.kill()
            except ProcessLookupError:
                pass
        self._reap()

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it does not exit within 3 s."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGCONT)
            self.proc.terminate()
            try:
                self.proc.wait(timeout=3.0)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self._reap()

    def restart(self) -> "RtspServer":
        self.kill()
        return self.start()

    def stall(self) -> None:
        """SIGSTOP: connections stay open but no data flows (a frozen camera)."""
        if self.alive:
            os.kill(self.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        if self.alive:
            os.kill(self.proc.pid, signal.SIGCONT)

    def __enter__(self) -> "RtspServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.kill()


class HangingServer:
    """TCP server on loopback that accepts every connection and never sends a byte."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, 0))
        self.sock.listen(16)
        self.sock.settimeout(0.1)
        self.host, self.port = self.sock.getsockname()[:2]
        self.accepted = 0
        self._conns: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="hanging-tcp", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except (socket.timeout, OSError):
                continue
            self.accepted += 1
            self._conns.append(conn)

    def url(self, scheme: str, path: str = "/stream") -> str:
        return f"{scheme}://{self.host}:{self.port}{path}"

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2.0)
        for c in self._conns:
            c.close()
        self.sock.close()

    def __enter__(self) -> "HangingServer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class MjpegServer:
    """HTTP server on loopback streaming multipart/x-mixed-replace JPEG frames (an IP-camera
    MJPEG endpoint) at `fps`; frame i shows grey level (i * 7) % 256 and its index."""

    def __init__(self, width: int = 160, height: int = 120, fps: float = 25.0,
                 path: str = "/video.mjpg") -> None:
        import http.server

        import cv2
        import numpy as np

        self.path = path
        self.connections = 0
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:  # keep pytest output clean
                pass

            def do_GET(self) -> None:  # noqa: N802 - http.server API
                if self.path != outer.path:
                    self.send_error(404)
                    return
                outer.connections += 1
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.end_headers()
                i = 0
                try:
                    while not outer._stop.is_set():
                        img = np.full((height, width, 3), (i * 7) % 256, np.uint8)
                        cv2.putText(img, str(i), (5, height - 10), cv2.FONT_HERSHEY_SIMPLEX, 1.0,
                                    (0, 0, 255), 2)
                        jpg = cv2.imencode(".jpg", img)[1].tobytes()
                        self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\n"
                                         + f"Content-Length: {len(jpg)}\r\n\r\n".encode()
                                         + jpg + b"\r\n")
                        self.wfile.flush()
                        i += 1
                        time.sleep(1.0 / fps)
                except (BrokenPipeError, ConnectionResetError):
                    return

        self._stop = threading.Event()
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = int(self.httpd.server_address[1])
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="mjpeg-server", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.path}"

    def close(self) -> None:
        self._stop.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(timeout=2.0)

    def __enter__(self) -> "MjpegServer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _require_gst() -> None:
    from tests.conftest import require

    ok, reason = gst_rtsp_available()
    require(ok, reason)


@pytest.fixture
def rtsp_server() -> Iterator[RtspServer]:
    """A started test-pattern RTSP server (320x240@25, keyframe every 25 frames); always
    killed at teardown."""
    _require_gst()
    server = RtspServer()
    try:
        server.start()
        yield server
    finally:
        server.kill()


@pytest.fixture
def rtsp_server_factory() -> Iterator:
    """Build more servers: factory(file=..., gop=..., ...) -> started RtspServer; all are
    killed at teardown."""
    _require_gst()
    made: list[RtspServer] = []

    def make(**kwargs: object) -> RtspServer:
        srv = RtspServer(**kwargs)  # type: ignore[arg-type]
        made.append(srv)
        return srv.start()

    try:
        yield make
    finally:
        for srv in made:
            srv.kill()


@pytest.fixture
def hanging_server() -> Iterator[HangingServer]:
    srv = HangingServer()
    try:
        yield srv
    finally:
        srv.close()


@pytest.fixture
def mjpeg_server() -> Iterator[MjpegServer]:
    srv = MjpegServer()
    try:
        yield srv
    finally:
        srv.close()


if __name__ == "__main__":  # manual check: python tests/rtsp_fixture.py
    print(gst_rtsp_available())
    with RtspServer() as s:
        print("serving", s.url)
        time.sleep(1.0)
    sys.exit(0)
