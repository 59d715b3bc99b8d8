"""Misbehaving MJPEG clients, run as a separate process so their work does not share the
server's GIL: `stalled` clients send a request and never read; `droppers` clients loop
connect -> request -> read 1 or 2 parts -> close (abruptly, mid-stream) -> short pause, until
`seconds` have passed. One thread, non-blocking sockets, 127.0.0.1 only, bounded by a deadline.

    python -m tests.fault.client_storm --port P [--path /stream/cam.mjpg] [--stalled 10]
        [--droppers 50] [--seconds 60] [--seed 0]

Prints one JSON object: connects, drops, parts read, bytes, status codes seen, errors.
"""
from __future__ import annotations

import argparse
import collections
import errno
import json
import random
import selectors
import socket
import sys
import time

BOUNDARY = b"--frame\r\n"


class Client:
    __slots__ = ("sock", "want", "buf", "status", "parts", "stalled", "wake", "sent")

    def __init__(self, stalled: bool) -> None:
        self.sock: socket.socket | None = None
        self.stalled = stalled
        self.want = 0
        self.buf = b""
        self.status: int | None = None
        self.parts = 0
        self.wake = 0.0
        self.sent = False


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--path", default="/stream/cross.mjpg")
    ap.add_argument("--stalled", type=int, default=10)
    ap.add_argument("--droppers", type=int, default=50)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    rng = random.Random(a.seed)
    request = (f"GET {a.path} HTTP/1.1\r\nHost: 127.0.0.1:{a.port}\r\n"
               f"User-Agent: vigil-fault-storm\r\n\r\n").encode()
    sel = selectors.DefaultSelector()
    stats: dict = {"connects": 0, "drops": 0, "parts": 0, "bytes": 0, "errors": 0,
                   "status": collections.Counter(), "stalled_open": 0, "stalled_bytes_unread": 0}

    def connect(c: Client) -> None:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        if c.stalled:  # a small receive window: the server's writes back up fast
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
        err = s.connect_ex(("127.0.0.1", a.port))
        if err not in (0, errno.EINPROGRESS):
            s.close()
            stats["errors"] += 1
            c.wake = time.monotonic() + 0.05
            return
        c.sock, c.buf, c.status, c.parts, c.sent = s, b"", None, 0, False
        c.want = rng.choice((1, 2))
        stats["connects"] += 1
        sel.register(s, selectors.EVENT_WRITE, c)

    def drop(c: Client, counted: bool = True) -> None:
        if c.sock is not None:
            sel.unregister(c.sock)
            try:  # abortive close (RST) half of the time, like a killed browser tab
                if rng.random() < 0.5:
                    c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                c.sock.close()
            except OSError:
                pass
            c.sock = None
        if counted:
            stats["drops"] += 1
        c.wake = time.monotonic() + rng.uniform(0.0, 0.05)

    clients = [Client(True) for _ in range(a.stalled)] + [Client(False) for _ in range(a.droppers)]
    for c in clients:
        connect(c)
    deadline = time.monotonic() + a.seconds
    while True:
        now = time.monotonic()
        if now >= deadline:
            break
        for key, ev in sel.select(timeout=0.02):
            c: Client = key.data
            s = c.sock
            if s is None:
                continue
            if ev & selectors.EVENT_WRITE and not c.sent:
                try:
                    s.sendall(request)
                except OSError:
                    stats["errors"] += 1
                    drop(c, counted=False)
                    continue
                c.sent = True
                if c.stalled:
                    sel.unregister(s)  # never read again
                    stats["stalled_open"] += 1
                else:
                    sel.modify(s, selectors.EVENT_READ, c)
                continue
            if ev & selectors.EVENT_READ:
                try:
                    data = s.recv(65536)
                except OSError:
                    data = b""
                if not data:  # server closed (503, shutdown): reconnect later
                    if c.status is None:
                        stats["errors"] += 1
                    drop(c, counted=False)
                    continue
                stats["bytes"] += len(data)
                c.buf += data
                if c.status is None and b"\r\n" in c.buf:
                    line = c.buf.split(b"\r\n", 1)[0].split()
                    c.status = int(line[1]) if len(line) > 1 and line[1].isdigit() else -1
                    stats["status"][str(c.status)] += 1
                    if c.status != 200:
                        drop(c, counted=False)
                        continue
                n = c.buf.count(BOUNDARY)
                if n:
                    c.parts += n
                    stats["parts"] += n
                    c.buf = c.buf[-len(BOUNDARY):]
                if c.parts > c.want:  # part `want` is complete once the next boundary shows
                    drop(c)
        now = time.monotonic()
        for c in clients:
            if c.sock is None and not c.stalled and now >= c.wake:
                connect(c)
    for c in clients:
        if c.sock is not None:
            try:
                if c.stalled:
                    stats["stalled_bytes_unread"] += len(c.sock.recv(1 << 22, socket.MSG_DONTWAIT) or b"")
            except OSError:
                pass
            try:
                sel.unregister(c.sock)
            except (KeyError, ValueError):
                pass
            c.sock.close()
    stats["status"] = dict(stats["status"])
    print(json.dumps(stats), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
