"""Helpers shared by the fault tests (servers on 127.0.0.1 only, bounded waits)."""
from __future__ import annotations

import contextlib
import random
import socket
import threading
from typing import Iterator

import requests

from tests.timing import wait_until  # noqa: F401 - the fault tests import it from here
from web.server import VigilServer


@contextlib.contextmanager
def serve(cfg, ready: str = "/healthz", timeout: float = 20.0) -> Iterator[VigilServer]:
    """A real Vigil (waitress on a free loopback port) in this process, like
    tests/integration/webutil.running_server, but it waits for `ready` (default /healthz: a
    camera that never connects keeps /readyz at 503 on purpose)."""
    srv = VigilServer(cfg)
    srv.bind()
    srv.start_pipelines()
    t = threading.Thread(target=srv.run, name="fault-server", daemon=True)
    t.start()
    base = srv.url.rstrip("/")
    srv.base = base  # type: ignore[attr-defined]
    headers = {"Authorization": f"Bearer {cfg.server.token}"} if cfg.server.token else {}
    ok = wait_until(lambda: _ok(base + ready, headers), timeout, 0.1)
    try:
        assert ok is not None, f"server never answered {ready} with 200"
        yield srv
    finally:
        srv.shutdown(timeout=2.0)
        t.join(3.0)


def _ok(url: str, headers: dict) -> bool:
    try:
        return requests.get(url, timeout=2, headers=headers).status_code == 200
    except requests.RequestException:
        return False


class GarbageServer:
    """TCP server on loopback that answers every connection with random bytes, forever:
    with http=True after an `HTTP/1.1 200 OK` header (a broken camera), else raw."""

    def __init__(self, http: bool, seed: int = 0, chunk: int = 65536, interval_s: float = 0.02) -> None:
        self.http = http
        self.seed = seed
        self.chunk, self.interval_s = chunk, interval_s
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.1)
        self.port = int(self.sock.getsockname()[1])
        self.accepted = 0
        self.bytes_sent = 0
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._thread = threading.Thread(target=self._accept, name="garbage-tcp", daemon=True)
        self._thread.start()

    def url(self, scheme: str, path: str = "/stream") -> str:
        return f"{scheme}://127.0.0.1:{self.port}{path}"

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except (socket.timeout, OSError):
                continue
            self.accepted += 1
            t = threading.Thread(target=self._feed, args=(conn, self.accepted), name="garbage-feed",
                                 daemon=True)
            self._threads.append(t)
            t.start()

    def _feed(self, conn: socket.socket, n: int) -> None:
        rng = random.Random(self.seed * 1000 + n)
        pool = rng.randbytes(1 << 20)  # sent in random slices: cheap, still never repeating in step
        try:
            conn.settimeout(0.5)
            with contextlib.suppress(OSError):
                conn.recv(4096)  # the request, whatever it is
            if self.http:
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: video/mp4\r\nConnection: close\r\n\r\n")
            conn.settimeout(2.0)
            while not self._stop.is_set():
                off = rng.randrange(0, len(pool) - self.chunk)
                conn.sendall(pool[off:off + self.chunk])
                self.bytes_sent += self.chunk
                self._stop.wait(self.interval_s)
        except OSError:
            pass
        finally:
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2.0)
        for t in self._threads:
            t.join(3.0)
        self.sock.close()

    def __enter__(self) -> "GarbageServer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
