"""The production server: waitress with a thread pool sized from config.

Shutdown (Ctrl-C / SIGTERM): stop the pipelines and close every frame hub (open MJPEG
generators end at once), then close waitress *and its socket map*: waitress's close()
alone leaves open streaming channels running.

A viewer that goes away frees its stream slot at once, not at the next frame. waitress stops
watching a connection for reading while its request is being served (`readable()` is false
while a request is in flight), so a closed socket was only noticed when a write to it failed,
one to three frame intervals later (at 1 fps a dropped viewer held its thread and slot 2-3 s;
under a connect/drop storm at 25 fps the dead viewers filled the stream cap and 31 % of new
viewers got a 503). Our channel lets a streaming response register a callback through
`environ[ON_CLIENT_CLOSE]`; from then on the connection is watched for reading while the
stream runs (what waitress's `channel_request_lookahead=1` does, but for streams only: an API
request from a client that half-closes its side keeps its answer), the main loop sees the
EOF / reset, closes the channel and runs the callbacks (the MJPEG route cancels its hub viewer),
so the generator ends and the thread and slot are back within milliseconds, whatever the
camera's frame rate.
"""
from __future__ import annotations

import ipaddress
import logging
import signal
import socket
import sys
import threading
import time

from waitress.channel import HTTPChannel
from waitress.server import BaseWSGIServer, create_server
from waitress.task import WSGITask

from core.config import VigilConfig
from web.app import create_app
from runtime.vigil import Vigil

log = logging.getLogger("vigil.server")

# environ key: a callable `register(fn) -> unregister` that runs fn() (on waitress's main
# thread, so fn must be quick and thread-safe) once the client's connection has closed; fn runs
# at once if it already has. Missing when the app runs under another server.
ON_CLIENT_CLOSE = "vigil.on_client_close"


class _Task(WSGITask):
    def get_environment(self):
        environ = super().get_environment()
        environ[ON_CLIENT_CLOSE] = self.channel.on_client_close
        return environ


class _Channel(HTTPChannel):
    """waitress's channel, telling the app when its client has gone (see the module doc)."""

    task_class = _Task

    def __init__(self, *args, **kwargs) -> None:
        self._close_lock = threading.Lock()
        self._close_fns: list | None = []  # None once closed
        self._watch = False  # a response is waiting to hear that the client has gone
        super().__init__(*args, **kwargs)

    def readable(self):
        if self._watch:
            # as with channel_request_lookahead=1: keep reading while the request is served,
            # so an EOF or reset closes the channel now (a pipelined request would be queued)
            return not (self.will_close or self.close_when_flushed or len(self.requests) > 1
                        or self.total_outbufs_len)
        return super().readable()

    def on_client_close(self, fn):
        with self._close_lock:
            fns = self._close_fns
            if fns is not None and self.connected:
                fns.append(fn)
                self._watch = True
                registered = True
            else:
                registered = False
        if not registered:
            fn()
            return lambda: None
        self.server.pull_trigger()  # the main loop re-asks readable() now, not at its timeout
        return lambda: self._forget(fn)

    def _forget(self, fn) -> None:
        with self._close_lock:
            if self._close_fns is not None:
                try:
                    self._close_fns.remove(fn)
                except ValueError:
                    pass
                self._watch = bool(self._close_fns)

    def _closed(self) -> None:
        with self._close_lock:
            fns, self._close_fns = self._close_fns, None
        for fn in fns or ():
            try:
                fn()
            except Exception:  # noqa: BLE001
                log.exception("client-close callback")

    def handle_close(self) -> None:  # EOF or reset seen by the main loop, or a failed send
        try:
            super().handle_close()
        finally:
            self._closed()

    def close(self) -> None:  # shutdown closes channels directly
        try:
            super().close()
        finally:
            self._closed()

    def cancel(self) -> None:  # dispatcher shutdown: pending / running tasks cancelled
        super().cancel()
        self._closed()


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        try:
            return ipaddress.ip_address(socket.gethostbyname(host)).is_loopback
        except OSError:
            return False


class VigilServer:
    """Runtime + Flask app + waitress, startable in a thread (tests) or the main thread."""

    def __init__(self, cfg: VigilConfig, persist: bool = True) -> None:
        self.cfg = cfg
        if cfg.cluster.address:  # cameras on a Ray cluster (runtime/cluster.py, optional extra)
            from runtime.cluster import ClusterVigil
            self.vigil: Vigil = ClusterVigil(cfg, persist=persist)
        else:
            self.vigil = Vigil(cfg, persist=persist)
        self.stop_event = threading.Event()
        self.app = create_app(self.vigil, self.stop_event)
        self._server = None
        self._closed = threading.Event()   # run() has returned
        self._running = threading.Event()  # run() is in waitress' loop
        self._stopped = threading.Event()  # shutdown() has finished (the event store is closed)

    def start_pipelines(self) -> None:
        self.vigil.start()

    def bind(self):
        s = self.cfg.server
        self._server = create_server(
            self.app, host=s.host, port=s.port, threads=s.threads,
            channel_timeout=30, connection_limit=max(100, s.threads * 4),
            cleanup_interval=5, ident="vigil", expose_tracebacks=False,
            # a stalled viewer may buffer this much before its thread blocks (an MJPEG part
            # is ~40 KB): bounds the memory ten stalled clients can pin
            outbuf_high_watermark=1024 * 1024)
        # streams learn at once that their client has gone (see the module doc)
        for srv in [self._server, *getattr(self._server, "map", {}).values()]:
            if isinstance(srv, BaseWSGIServer):  # one per listening socket
                srv.channel_class = _Channel
        return self._server

    @property
    def port(self) -> int:
        return int(self._server.effective_port)

    @property
    def url(self) -> str:
        host = self.cfg.server.host
        shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
        if ":" in shown:
            shown = f"[{shown}]"
        return f"http://{shown}:{self.port}/"

    def run(self) -> None:
        """Serve until shutdown() (blocks)."""
        self._running.set()
        try:
            self._server.run()
        except (OSError, ValueError):
            if not self.stop_event.is_set():
                raise
        finally:
            self._running.clear()
            self._closed.set()

    def shutdown(self, timeout: float = 2.0) -> bool:
        if self.stop_event.is_set():
            self._stopped.wait(timeout)
            return True
        t0 = time.monotonic()
        self.stop_event.set()
        try:
            return self._shutdown(t0, timeout)
        finally:
            self._stopped.set()

    def wait_stopped(self, timeout: float) -> bool:
        """Until shutdown() has finished (cameras stopped, event store flushed and closed)."""
        return self._stopped.wait(timeout)

    def _close_sockets(self) -> None:
        srv = self._server
        try:
            srv.close()
        except Exception:  # noqa: BLE001
            log.debug("server close", exc_info=True)
        for ch in list(getattr(srv, "_map", {}).values()):
            try:
                ch.close()
            except Exception:  # noqa: BLE001
                pass

    def _shutdown(self, t0: float, timeout: float) -> bool:
        ok = self.vigil.stop(timeout=max(0.2, timeout - 0.3))
        srv = self._server
        if srv is not None:
            # Close inside waitress' own loop (a trigger thunk): closing its sockets from here
            # leaves the loop asleep in poll() for up to a second (asyncore_loop_timeout).
            closed = threading.Event()

            def close_in_loop() -> None:
                try:
                    self._close_sockets()
                finally:
                    closed.set()
            pulled = False
            if self._running.is_set():
                try:
                    srv.trigger.pull_trigger(close_in_loop)  # runs close_in_loop in the loop
                    pulled = True
                except Exception:  # noqa: BLE001 - never stop shutting down: close from here
                    log.debug("trigger", exc_info=True)
            if not (pulled and closed.wait(0.25)):
                self._close_sockets()
            try:
                srv.task_dispatcher.shutdown(cancel_pending=True, timeout=max(0.1, timeout - (time.monotonic() - t0)))
            except Exception:  # noqa: BLE001
                log.debug("dispatcher shutdown", exc_info=True)
        log.info("stopped in %.2fs", time.monotonic() - t0)
        return ok


def _resolves(host: str) -> bool:
    try:
        socket.getaddrinfo(host, None)
        return True
    except (OSError, UnicodeError):
        return False


def serve(cfg: VigilConfig, config_path: str = "config.yaml") -> int:
    s = cfg.server
    if not s.auth_enabled and not is_loopback(s.host) and _resolves(s.host):
        # (a host that does not resolve cannot be bound: the bind below names that cause)
        if not s.allow_public_without_auth:
            print(f"error: refusing to bind {s.host} without auth: anyone on the network could "
                  "watch these cameras. Set server.token or server.users (see README, Auth), bind "
                  "127.0.0.1, or set server.allow_public_without_auth: true.", file=sys.stderr)
            return 2
        print(f"WARNING: binding {s.host} without auth (server.allow_public_without_auth): anyone "
              "on the network can watch these cameras and use the controls.", file=sys.stderr)
    from events.store import EventStoreError
    from web.auth import CredentialError
    from web.sessions import SessionError
    try:
        server = VigilServer(cfg)
    except (EventStoreError, CredentialError, SessionError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    try:
        server.bind()
    except (OSError, ValueError) as e:  # gaierror, EADDRINUSE, waitress' "Invalid host/port"
        why = getattr(e, "strerror", None) or str(e)
        try:  # waitress says only "Invalid host/port specified": name the cause when it is the host
            socket.getaddrinfo(s.host, None)
        except (OSError, UnicodeError) as ge:
            why = f"no such host or address ({getattr(ge, 'strerror', None) or ge})"
        print(f"error: cannot listen on {s.host}:{s.port} (server.host / --host, server.port / "
              f"--port): {why}", file=sys.stderr)
        server.vigil.stop(timeout=1.0)
        return 1
    unavailable: tuple[type[Exception], ...] = ()
    if cfg.cluster.address:
        from runtime.cluster import ClusterUnavailable
        unavailable = (ClusterUnavailable,)
    try:
        server.start_pipelines()
    except unavailable as e:  # no Ray, or the cluster cannot be started or joined
        print(f"error: {e}", file=sys.stderr)
        server.vigil.stop(timeout=1.0)
        return 1
    for name, cam in server.vigil.cameras.items():
        st = cam.status()
        if st.state == "FAILED" and not st.stages:  # could not even be built
            print(f"camera {name!r} failed to start: {st.capture.last_error}", file=sys.stderr)

    def _stop(signum, _frame):
        log.info("signal %d: shutting down", signum)
        threading.Thread(target=server.shutdown, name="shutdown", daemon=True).start()

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    from core.uri import redact_uri
    cams = ", ".join(f"{c.name} ({redact_uri(c.source)})" for c in cfg.cameras if c.enabled)
    print(f"Vigil dashboard: {server.url}  cameras: {cams}", flush=True)
    server.run()
    # the loop ends once shutdown() closed the sockets; the cameras, sinks and the event
    # store are closed by then or within moments (events already accepted reach the disk)
    if not server.wait_stopped(5.0):
        log.warning("shutdown did not finish within 5 s")
    return 0
