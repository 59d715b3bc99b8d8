"""Flask app factory: dashboard, MJPEG streams, snapshots, JSON API, SSE, metrics.

Errors are JSON (`{"error": ...}`) with the right status: 404 for unknown cameras,
400 naming the bad query parameter, never a traceback.
"""
from __future__ import annotations

import json
import logging
import math
import re
import threading
import time
from typing import Any, Callable, Iterator

from flask import Flask, Response, jsonify, redirect, render_template, request, send_file
from werkzeug.exceptions import HTTPException

from core.camera import Camera, JpegFrame, StreamKind
from core.types import EventKind
from runtime.vigil import Vigil
from web import auth
from web.metrics import Metrics
from web.mjpeg import mjpeg_content_type, mjpeg_parts

log = logging.getLogger("vigil.web")

CAMERA_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
EVENT_KINDS = frozenset(k.value for k in EventKind)


# set by web.server's waitress channel (see web/server.py); absent under other servers
ON_CLIENT_CLOSE = "vigil.on_client_close"
CLIENT_DISCONNECTED = "waitress.client_disconnected"
# without the close hook a stream checks for a gone client at least this often
GONE_POLL_S = 0.25


class StreamSlots:
    """The open-stream cap: each open stream (MJPEG, SSE) holds a server thread, so at most
    `limit` may be open and the rest of the pool is kept for the API and /healthz. A slot is
    held from the request until the stream's generator ends (the thread is then free)."""

    def __init__(self, limit: int) -> None:
        self.limit = int(limit)
        self._sem = threading.BoundedSemaphore(self.limit)
        self._lock = threading.Lock()
        self.open = 0
        self.refused = 0
        self.opened_total = 0

    def acquire(self) -> bool:
        if not self._sem.acquire(blocking=False):
            with self._lock:
                self.refused += 1
            return False
        with self._lock:
            self.open += 1
            self.opened_total += 1
        return True

    def release(self) -> None:
        with self._lock:
            self.open -= 1
        self._sem.release()


class BadParam(Exception):
    def __init__(self, name: str, why: str) -> None:
        super().__init__(f"bad query parameter {name!r}: {why}")
        self.name = name


def _num(name: str, lo: float, hi: float, kind: Callable[[str], Any] = int) -> Any:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return None
    try:
        v = kind(raw)
    except (TypeError, ValueError):
        raise BadParam(name, f"expected a {'number' if kind is float else 'whole number'}, got {raw[:40]!r}")
    if isinstance(v, float) and not math.isfinite(v):
        raise BadParam(name, "must be finite")
    if not lo <= v <= hi:
        raise BadParam(name, f"must be between {lo:g} and {hi:g}, got {raw[:40]}")
    return v


def create_app(vigil: Vigil, stop_event: threading.Event | None = None) -> Flask:
    app = Flask(__name__, template_folder="templates", static_folder="static")
    app.config["JSON_SORT_KEYS"] = False
    stop = stop_event or threading.Event()
    token = vigil.cfg.server.token
    timeout = vigil.cfg.server.stream_timeout_s
    # a stream holds a server thread; keep a reserve so the API and /healthz never starve
    max_streams = max(1, vigil.cfg.server.threads - 8)
    streams = StreamSlots(max_streams)
    metrics = Metrics(vigil, streams)
    app.extensions["vigil"] = vigil
    app.extensions["vigil_metrics"] = metrics
    app.extensions["vigil_streams"] = streams

    # ------------------------------------------------------------ helpers
    def json_error(status: int, message: str, **extra: Any) -> Response:
        resp = jsonify({"error": message, "status": status, **extra})
        resp.status_code = status
        return resp

    def camera_or_none(camera: str) -> Camera | None:
        return vigil.camera(camera) if CAMERA_RE.match(camera) else None

    def unknown_camera(camera: str) -> Response:
        return json_error(404, f"unknown camera {camera[:64]!r}", cameras=vigil.camera_names())

    def client_watch() -> tuple[Callable | None, Callable[[], bool] | None, float]:
        """(register-a-close-callback or None, gone() or None, longest wait between checks)
        for the current request; a stream ends as soon as its client has gone."""
        env = request.environ
        on_close = env.get(ON_CLIENT_CLOSE)
        gone = env.get(CLIENT_DISCONNECTED)
        return on_close, gone, (timeout if on_close is not None else min(timeout, GONE_POLL_S))

    def stream_response(cam: Camera, kind: StreamKind) -> Response:
        hub = cam.frames(kind)
        if hub is None:
            return json_error(503, f"camera {cam.name!r} has no frames ({cam.status().state})")
        width = _num("width", 32, 3840)
        fps = _num("fps", 0.1, 120, float)
        on_close, gone, wait_s = client_watch()
        if not streams.acquire():
            return json_error(503, f"too many open streams ({max_streams}); raise server.threads")

        def gen() -> Iterator[bytes]:
            try:
                with hub.subscribe() as viewer:
                    # the server cancels the viewer the moment the client disconnects: the
                    # generator ends between frames and the slot is free again
                    forget = on_close(viewer.cancel) if on_close is not None else None
                    try:
                        yield from mjpeg_parts(viewer, b"frame", wait_s, stop, width,
                                               1.0 / fps if fps else 0.0, gone=gone)
                    finally:
                        if forget is not None:
                            forget()
            finally:
                streams.release()

        resp = Response(gen(), mimetype=None, content_type=mjpeg_content_type(b"frame"),
                        direct_passthrough=True)
        resp.headers["Cache-Control"] = "no-cache, no-store, must-revalidate, private"
        resp.headers["Pragma"] = "no-cache"
        resp.headers["X-Accel-Buffering"] = "no"
        return resp

    def still_response(cam: Camera, kind: StreamKind) -> Response:
        frame: JpegFrame | None = cam.snapshot(kind, _num("width", 32, 3840))
        if frame is None:
            return json_error(503, f"no frame yet for camera {cam.name!r} ({cam.status().state})")
        resp = Response(frame.data, content_type="image/jpeg")
        resp.headers["Cache-Control"] = "no-store"
        resp.headers["X-Frame-Seq"] = str(frame.seq)
        resp.headers["X-Capture-Ts"] = f"{frame.wall_ts:.6f}"  # epoch seconds
        return resp

    # ------------------------------------------------------------ auth
    @app.before_request
    def _auth() -> Response | None:
        if not token or request.path in auth.OPEN_PATHS:
            return None
        if auth.presented_ok(token, request.headers.get("Authorization"),
                             request.cookies.get(auth.COOKIE)):
            return None
        if request.path == "/" and request.method == "GET":
            return redirect("/login")
        resp = json_error(401, "authentication required (Bearer token, Basic password, or /login)")
        resp.headers["WWW-Authenticate"] = 'Basic realm="vigil", charset="UTF-8"'
        return resp

    @app.route("/login", methods=["GET", "POST"])
    def login():
        if not token:
            return redirect("/")
        error = None
        if request.method == "POST":
            given = (request.form.get("token") or "")[:512]
            if auth.presented_ok(token, f"Bearer {given}", None):
                resp = redirect("/")
                resp.set_cookie(auth.COOKIE, auth.cookie_value(token), httponly=True,
                                samesite="Strict", max_age=30 * 24 * 3600,
                                secure=request.is_secure)
                return resp
            error = "wrong token"
        return render_template("login.html", error=error), (401 if error else 200)

    # ------------------------------------------------------------ pages
    def camera_dicts() -> list[dict[str, Any]]:
        return [c.status().to_dict() for c in vigil.cameras.values()]

    @app.get("/")
    def index():
        return render_template("index.html", cameras=camera_dicts(), auth=bool(token))

    # ------------------------------------------------------------ streams
    def _route_stream(kind: StreamKind, still: bool) -> Callable[[str], Response]:
        def view(camera: str) -> Response:
            cam = camera_or_none(camera)
            if cam is None:
                return unknown_camera(camera)
            return still_response(cam, kind) if still else stream_response(cam, kind)
        return view

    app.add_url_rule("/stream/<camera>.mjpg", "stream", _route_stream(StreamKind.OVERLAY, False))
    app.add_url_rule("/exposure/<camera>.mjpg", "exposure_stream", _route_stream(StreamKind.EXPOSURE, False))
    app.add_url_rule("/snapshot/<camera>.jpg", "snapshot", _route_stream(StreamKind.OVERLAY, True))
    app.add_url_rule("/exposure/<camera>.jpg", "exposure_still", _route_stream(StreamKind.EXPOSURE, True))

    # ------------------------------------------------------------ API
    @app.get("/api/cameras")
    def api_cameras():
        return jsonify({"cameras": camera_dicts()})

    @app.get("/api/cameras/<camera>")
    def api_camera(camera: str):
        cam = camera_or_none(camera)
        return jsonify(cam.status().to_dict()) if cam is not None else unknown_camera(camera)

    @app.get("/api/cameras/<camera>/tracks")
    def api_tracks(camera: str):
        cam = camera_or_none(camera)
        return jsonify(cam.tracks().to_dict()) if cam is not None else unknown_camera(camera)

    @app.post("/api/cameras/<camera>/exposure/reset")
    def api_exposure_reset(camera: str):
        cam = camera_or_none(camera)
        if cam is None:
            return unknown_camera(camera)
        if not cam.reset_exposure():
            return json_error(409, f"camera {camera!r} is not running ({cam.status().state})")
        return jsonify({"camera": camera, "reset": True})

    @app.get("/api/sinks")
    def api_sinks():
        return jsonify({"sinks": vigil.sinks()})

    def _event_query() -> dict[str, Any]:
        camera = request.args.get("camera") or None
        if camera is not None and (not CAMERA_RE.match(camera)):
            raise BadParam("camera", "letters, digits, _ and - only")
        kind = request.args.get("kind") or None
        if kind is not None and kind not in EVENT_KINDS:
            raise BadParam("kind", f"one of {', '.join(sorted(EVENT_KINDS))}")
        since = _num("since", 0, 1e11, float)
        limit = _num("limit", 1, 1000) or 100
        return {"camera": camera, "kind": kind, "since": since, "limit": limit}

    @app.get("/api/events")
    def api_events():
        q = _event_query()
        store = vigil.store
        if store is not None:
            rows = store.query_dicts(**q)
        else:
            rows = [e.to_dict() for e in vigil.bus.recent(**q)]
        for r in rows:
            r["snapshot_url"] = vigil.snapshot_url(r["id"]) if r.get("snapshot") else None
        return jsonify({"events": rows})

    @app.get("/api/events/<int:event_id>/snapshot.jpg")
    def api_event_snapshot(event_id: int):
        data = vigil.store.snapshot_bytes(event_id) if vigil.store is not None else None
        if data is None:
            return json_error(404, f"no snapshot for event {event_id}")
        resp = Response(data, content_type="image/jpeg")
        resp.headers["Cache-Control"] = "private, max-age=86400"
        return resp

    @app.get("/api/events/stream")
    def api_events_stream():
        q = _event_query()
        last = request.headers.get("Last-Event-ID")
        try:
            after = int(last) if last else vigil.bus.last_id
        except ValueError:
            raise BadParam("Last-Event-ID", "expected a whole number")
        on_close, gone, _wait = client_watch()
        if not streams.acquire():
            return json_error(503, "too many open streams")
        keepalive_s = max(timeout, 1.0) * 5

        def gen() -> Iterator[str]:
            nonlocal after
            forget = None
            try:
                if on_close is not None:  # the server watches the socket from now on
                    forget = on_close(lambda: None)
                yield "retry: 2000\n\n"
                wrote = time.monotonic()
                while not stop.is_set() and not vigil.bus.closed:
                    if gone is not None and gone():
                        return  # client disconnected: free the slot now, not at a keepalive
                    # short waits, so a gone client is seen within GONE_POLL_S (the bus has no
                    # per-waiter wake-up); a keepalive after keepalive_s without a write
                    evs = vigil.bus.wait_after(after, timeout=GONE_POLL_S if gone is not None
                                               else keepalive_s)
                    for ev in evs:
                        after = max(after, ev.id or 0)
                        if q["camera"] and ev.camera != q["camera"]:
                            continue
                        if q["kind"] and ev.kind.value != q["kind"]:
                            continue
                        wrote = time.monotonic()
                        yield f"id: {ev.id}\nevent: {ev.kind.value}\ndata: {json.dumps(ev.to_dict())}\n\n"
                    if time.monotonic() - wrote >= keepalive_s or (not evs and gone is None):
                        wrote = time.monotonic()
                        yield ": keepalive\n\n"
            finally:
                if forget is not None:
                    forget()
                streams.release()

        resp = Response(gen(), content_type="text/event-stream")
        resp.headers["Cache-Control"] = "no-cache"
        resp.headers["X-Accel-Buffering"] = "no"
        return resp

    @app.get("/api/clips/<camera>/<name>")
    def api_clip(camera: str, name: str):
        cam = camera_or_none(camera)
        if cam is None:
            return unknown_camera(camera)
        clip = cam.clip(name)
        if clip is not None and clip.state == "recording":
            resp = jsonify({"clip": name, "camera": camera, "status": "recording",
                            "retry_after_s": clip.retry_after_s})
            resp.status_code = 202
            resp.headers["Retry-After"] = str(max(1, math.ceil(clip.retry_after_s or 1)))
            return resp
        if clip is None or clip.path is None:
            return json_error(404, f"no clip {name[:80]!r} for camera {camera!r}")
        return send_file(clip.path, mimetype="video/mp4", conditional=True, max_age=3600)

    @app.get("/metrics")
    def prom_metrics():
        body, ctype = metrics.render()
        return Response(body, content_type=ctype)

    @app.get("/healthz")
    def healthz():
        return jsonify({"ok": True, "uptime_s": round(time.time() - vigil.started_at, 1)})

    @app.get("/readyz")
    def readyz():
        body = vigil.readiness()
        resp = jsonify(body)
        resp.status_code = 200 if body["ready"] else 503
        return resp

    # ------------------------------------------------------------ errors
    @app.errorhandler(BadParam)
    def _bad_param(e: BadParam):
        return json_error(400, str(e), parameter=e.name)

    @app.errorhandler(HTTPException)
    def _http(e: HTTPException):
        return json_error(e.code or 500, e.description or e.name)

    @app.errorhandler(Exception)
    def _any(e: Exception):
        log.exception("unhandled error on %s %s", request.method, request.path)
        return json_error(500, "internal error (see the server log)")

    return app
