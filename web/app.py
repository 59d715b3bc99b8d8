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
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable, Iterator
from urllib.parse import urlsplit

from flask import (Flask, Response, g, jsonify, make_response, redirect, render_template, request,
                   send_file)
from werkzeug.exceptions import HTTPException
from werkzeug.middleware.proxy_fix import ProxyFix

from core.camera import Camera, JpegFrame, StreamKind
from core.types import EventKind
from runtime import memory
from runtime.vigil import Vigil
from web import auth
from web.metrics import Metrics
from web.mjpeg import mjpeg_content_type, mjpeg_parts
from web.sessions import SessionError, SessionManager
from web.throttle import AuthCollector, Throttle

log = logging.getLogger("vigil.web")

CAMERA_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
EVENT_KINDS = frozenset(k.value for k in EventKind)

# ------------------------------------------------------------ access
# The minimum role of every route, by endpoint (tests/integration/test_access.py walks the URL
# map: a route missing here fails it, and is served to admins only meanwhile). OPEN: anyone;
# VIEWER: watch and review (read-only); ADMIN: controls and every state-changing endpoint.
_R = auth.Role
ROUTE_ROLES: dict[str, auth.Role] = {
    "healthz": _R.OPEN, "login": _R.OPEN, "logout": _R.OPEN,
    "index": _R.VIEWER, "static": _R.VIEWER, "readyz": _R.VIEWER, "prom_metrics": _R.VIEWER,
    "stream": _R.VIEWER, "exposure_stream": _R.VIEWER, "snapshot": _R.VIEWER, "exposure_still": _R.VIEWER,
    "api_cameras": _R.VIEWER, "api_camera": _R.VIEWER, "api_tracks": _R.VIEWER, "api_sinks": _R.VIEWER,
    "api_events": _R.VIEWER, "api_event_snapshot": _R.VIEWER, "api_events_stream": _R.VIEWER,
    "api_clip": _R.VIEWER, "api_me": _R.VIEWER, "api_memory": _R.VIEWER,
    "api_exposure_reset": _R.ADMIN, "api_auth_rotate": _R.ADMIN,
}
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# the page, its script and its styles come from this server only; no inline script or style
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; media-src 'self'; object-src 'none'; base-uri 'none'; "
       "form-action 'self'; frame-ancestors 'none'")
# the event review page and its JSON (web/review.py): reading, so viewers
ROUTE_ROLES.update({name: _R.VIEWER for name in (
    "review", "api_review_events", "api_review_event", "api_review_facets", "api_review_export_csv",
    "api_review_export_json", "api_event_counts")})
ROUTE_ROLES["api_cluster"] = _R.VIEWER  # cluster mode's nodes and placement (runtime/cluster.py)
NO_AUTH = auth.Principal("anonymous", auth.Role.ADMIN, "open")  # auth off: loopback, as before
_DEFAULT_PORTS = {"http": 80, "https": 443}


def _origin(url: str) -> str | None:
    """scheme://host[:port] of a URL, normalised (lower case, default port dropped)."""
    try:
        u = urlsplit(url.strip())
        port = u.port
    except ValueError:
        return None
    if u.scheme not in _DEFAULT_PORTS or not u.hostname:
        return None
    host = f"[{u.hostname}]" if ":" in u.hostname else u.hostname
    return f"{u.scheme}://{host}" + (f":{port}" if port and port != _DEFAULT_PORTS[u.scheme] else "")


# set by web.server's waitress channel (see web/server.py); absent under other servers
ON_CLIENT_CLOSE = "vigil.on_client_close"
CLIENT_DISCONNECTED = "waitress.client_disconnected"
# without the close hook a stream checks for a gone client at least this often
GONE_POLL_S = 0.25
# an open stream of a signed-in browser re-verifies its session at most this often (and at
# least this often between frames): signing out, expiry or a rotated secret ends the stream
SESSION_RECHECK_S = 1.0


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
    server_cfg = vigil.cfg.server
    timeout = vigil.cfg.server.stream_timeout_s
    # a stream holds a server thread; keep a reserve so the API and /healthz never starve
    max_streams = max(1, vigil.cfg.server.threads - 8)
    streams = StreamSlots(max_streams)
    metrics = Metrics(vigil, streams)
    app.extensions["vigil"] = vigil
    app.extensions["vigil_metrics"] = metrics
    app.extensions["vigil_streams"] = streams

    # who may do what (web/auth.py), sessions (web/sessions.py), throttling (web/throttle.py)
    creds = auth.Credentials(server_cfg)
    auth_on = creds.enabled
    throttle = Throttle.from_config(server_cfg.throttle)
    sessions = SessionManager(secret_ref=server_cfg.session_secret,
                              folder=Path(vigil.cfg.paths.data) / "auth",
                              max_age_s=server_cfg.session_max_age_s) if auth_on else None
    auth_stats = {"logins": 0}
    metrics.registry.register(AuthCollector(throttle, sessions, auth_stats))
    app.extensions["vigil_auth"] = SimpleNamespace(credentials=creds, throttle=throttle,
                                                   sessions=sessions, roles=ROUTE_ROLES,
                                                   enabled=auth_on)
    if server_cfg.trusted_proxies:  # client address and https as the proxy saw them
        n = server_cfg.trusted_proxies
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=n, x_proto=n, x_host=n, x_port=n)  # type: ignore[method-assign]
    public_origin = _origin(server_cfg.public_url) if server_cfg.public_url else None

    # ------------------------------------------------------------ helpers
    def json_error(status: int, message: str, **extra: Any) -> Response:
        resp = jsonify({"error": message, "status": status, **extra})
        resp.status_code = status
        return resp

    def camera_or_none(camera: str) -> Camera | None:
        return vigil.camera(camera) if CAMERA_RE.match(camera) else None

    def unknown_camera(camera: str) -> Response:
        return json_error(404, f"unknown camera {camera[:64]!r}", cameras=vigil.camera_names())

    def session_ended() -> Callable[[], bool] | None:
        """For a stream opened with a session cookie: a check, cheap enough for every frame,
        that turns true once the session no longer verifies (expired, signed out, secret
        rotated, user changed); verified again at most every SESSION_RECHECK_S. None for
        other callers (Bearer / Basic credentials are checked once per request)."""
        who = g.get("principal")
        cookie = request.cookies.get(auth.COOKIE)
        if sessions is None or who is None or who.via != "session" or not cookie:
            return None
        state = {"due": time.monotonic() + SESSION_RECHECK_S, "ended": False}

        def ended() -> bool:
            now = time.monotonic()
            if not state["ended"] and now >= state["due"]:
                state["due"] = now + SESSION_RECHECK_S
                data, why = sessions.verify(cookie, creds.lookup)
                if data is None:
                    state["ended"] = True
                    log.info("stream of %r closed: its session is %s", who.name, why)
            return state["ended"]
        return ended

    def client_watch() -> tuple[Callable | None, Callable[[], bool] | None, float]:
        """(register-a-close-callback or None, gone() or None, longest wait between checks)
        for the current request; a stream ends as soon as its client has gone or its
        session has ended."""
        env = request.environ
        on_close = env.get(ON_CLIENT_CLOSE)
        client_gone = env.get(CLIENT_DISCONNECTED)
        ended = session_ended()
        wait_s = timeout if on_close is not None else min(timeout, GONE_POLL_S)
        if ended is None:
            return on_close, client_gone, wait_s
        if client_gone is None:
            return on_close, ended, min(wait_s, SESSION_RECHECK_S)
        return on_close, (lambda: client_gone() or ended()), min(wait_s, SESSION_RECHECK_S)

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

    # ------------------------------------------------------------ access
    undeclared: set[str] = set()

    def secure_cookies() -> bool:
        return server_cfg.behind_tls or request.is_secure

    def required_role() -> auth.Role:
        rule = request.url_rule
        if rule is None:  # 404 / 405: told only to someone who may see the routes
            return auth.Role.VIEWER
        if request.path in auth.OPEN_PATHS:
            return auth.Role.OPEN
        role = ROUTE_ROLES.get(rule.endpoint)
        if role is None:  # fail closed
            if rule.endpoint not in undeclared:
                undeclared.add(rule.endpoint)
                log.error("route %s (%s) has no role in ROUTE_ROLES: served to admins only",
                          rule.rule, rule.endpoint)
            return auth.Role.ADMIN
        return role

    def cross_site() -> str | None:
        """Why a state-changing request comes from another site (None: it does not, or it is
        not from a browser: those send no Origin and no Sec-Fetch-Site)."""
        site = request.headers.get("Sec-Fetch-Site")
        if site in ("cross-site", "same-site"):
            return f"Sec-Fetch-Site {site}"
        origin = request.headers.get("Origin")
        if origin is None:
            return None
        got = _origin(origin)
        if got is not None and got in (_origin(request.host_url), public_origin):
            return None
        return "Origin is not this server"

    def too_many(wait: float) -> Response:
        secs = max(1, math.ceil(wait))
        resp = json_error(429, f"too many failed sign-ins from this address: retry in {secs} s")
        resp.headers["Retry-After"] = str(secs)
        return resp

    def note_failure(addr: str, fp: bytes, via: str, user: str | None) -> None:
        out = throttle.failure(addr, fp, via)
        if not out.counted:
            return  # the same wrong secret again: refused, counted in /metrics, not logged again
        who = creds.known_user(user)
        lock = f"; locked out for {out.lockout_s:g} s" if out.lockout_s else ""
        log.warning("auth: wrong %s credentials%s from %s (%d distinct failure%s)%s", via,
                    f" for user {who!r}" if who else "", addr[:64], out.failures,
                    "" if out.failures == 1 else "s", lock)

    def session_principal() -> auth.Principal | None:
        cookie = request.cookies.get(auth.COOKIE)
        if not cookie or sessions is None:
            return None
        data, _why = sessions.verify(cookie, creds.lookup)
        if data is None:
            g.clear_cookie = True  # expired, tampered, signed out or for a changed user
            return None
        return auth.Principal(data["u"], auth.ROLES[data["r"]], "session")

    def identify() -> tuple[auth.Principal | None, Response | None]:
        """(principal or None, a 429 to answer instead). A session cookie first; then
        Bearer / Basic, throttled per address."""
        who = session_principal()
        if who is not None:
            return who, None
        parsed = auth.parse_authorization(request.headers.get("Authorization"))
        if parsed is None:
            return None, None
        via, user, secret = parsed
        addr = request.remote_addr or "?"
        wait = throttle.retry_after(addr)
        if wait > 0:
            return None, too_many(wait)
        fp = creds.fingerprint(via, user, secret)
        if not throttle.seen_before(addr, fp):
            u = creds.check(user, secret)
            if u is not None:
                return auth.Principal(u.name, u.role, via), None
        note_failure(addr, fp, via, user)
        return None, None

    @app.before_request
    def _access() -> Response | None:
        if request.method not in SAFE_METHODS:
            why = cross_site()
            if why is not None:
                return json_error(403, f"cross-site request refused ({why})")
        need = required_role()
        if not auth_on:
            g.principal = NO_AUTH
            return None
        if need == auth.Role.OPEN:
            g.principal = session_principal()  # for /login and /logout; never throttled
            return None
        principal, refused = identify()
        g.principal = principal
        if refused is not None:
            return refused
        if principal is None:
            if request.path in ("/", "/review") and request.method == "GET":  # the pages
                return redirect("/login")
            resp = json_error(401, "authentication required (Bearer token, Basic password, or /login)")
            if request.headers.get("Sec-Fetch-Site") != "same-origin":
                # a challenge for MJPEG clients and scripts; the dashboard's own requests get
                # none (no browser password prompt: the page goes to /login instead)
                resp.headers["WWW-Authenticate"] = 'Basic realm="vigil", charset="UTF-8"'
            return resp
        if principal.role < need:
            return json_error(403, f"this needs the {need.label} role (signed in as a "
                                   f"{principal.role.label})")
        return None

    @app.after_request
    def _headers(resp: Response) -> Response:
        h = resp.headers
        h.setdefault("Content-Security-Policy", CSP)
        h.setdefault("X-Content-Type-Options", "nosniff")
        h.setdefault("X-Frame-Options", "DENY")
        h.setdefault("Referrer-Policy", "same-origin")
        if g.get("clear_cookie") and not g.get("cookie_set"):
            resp.delete_cookie(auth.COOKIE, path="/", httponly=True, samesite="Strict",
                               secure=secure_cookies())
        return resp

    @app.route("/login", methods=["GET", "POST"])
    def login():
        if not auth_on or sessions is None:
            return redirect("/")
        if request.method == "GET" and g.get("principal") is not None:
            return redirect("/")
        error, status, user, wait = None, 200, None, 0.0
        if request.method == "POST":
            addr = request.remote_addr or "?"
            user = (request.form.get("username") or "").strip()[:64] or None
            secret = (request.form.get("token") or request.form.get("password") or "")[:auth.MAX_SECRET]
            wait = throttle.retry_after(addr)
            if wait > 0:
                error, status = (f"Too many failed sign-ins from this address: try again in "
                                 f"{max(1, math.ceil(wait))} s."), 429
            else:
                fp = creds.fingerprint("login", user, secret)
                u = creds.check(user, secret) if secret and not throttle.seen_before(addr, fp) else None
                if u is not None:
                    value, max_age = sessions.issue(u.name, u.role.label, u.secret_id)
                    resp = redirect("/")
                    resp.set_cookie(auth.COOKIE, value, max_age=max_age, path="/", httponly=True,
                                    samesite="Strict", secure=secure_cookies())
                    g.cookie_set = True
                    auth_stats["logins"] += 1
                    log.info("auth: %r signed in as %s from %s", u.name, u.role.label, addr[:64])
                    return resp
                if secret:
                    note_failure(addr, fp, "login", user)
                error, status = "Wrong user name or password.", 401
        resp = make_response(render_template("login.html", error=error,
                                             username=creds.known_user(user) or ""), status)
        resp.headers["Cache-Control"] = "no-store"
        if status == 429:
            resp.headers["Retry-After"] = str(max(1, math.ceil(wait)))
        return resp

    @app.post("/logout")
    def logout():
        if sessions is not None and sessions.revoke(request.cookies.get(auth.COOKIE)):
            p = g.get("principal")
            log.info("auth: %r signed out", p.name if p is not None else "?")
        resp = redirect("/login" if auth_on else "/", code=303)
        resp.delete_cookie(auth.COOKIE, path="/", httponly=True, samesite="Strict",
                           secure=secure_cookies())
        g.cookie_set = True
        return resp

    @app.get("/api/me")
    def api_me():
        p: auth.Principal = g.principal
        return jsonify({"auth": auth_on, "user": p.name if auth_on else None,
                        "role": p.role.label, "via": p.via})

    @app.post("/api/auth/rotate")
    def api_auth_rotate():
        if sessions is None:
            return json_error(409, "auth is off (no server.token and no server.users)")
        try:
            sessions.rotate()
        except SessionError as e:
            return json_error(409, str(e))
        log.warning("auth: session secret rotated by %r: every session is signed out", g.principal.name)
        g.clear_cookie = True
        return jsonify({"rotated": True})

    # ------------------------------------------------------------ pages
    def camera_dicts() -> list[dict[str, Any]]:
        return [c.status().to_dict() for c in vigil.cameras.values()]

    @app.get("/")
    def index():
        p: auth.Principal = g.principal
        resp = make_response(render_template("index.html", cameras=camera_dicts(), auth=auth_on,
                                              user=p.name, role=p.role.label,
                                              admin=p.role >= auth.Role.ADMIN))
        resp.headers["Cache-Control"] = "no-store"
        return resp

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

    @app.get("/api/memory")
    def api_memory():
        return jsonify(memory.collect(vigil))

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

    @app.get("/api/cluster")
    def api_cluster():
        """Cluster mode (runtime/cluster.py): nodes (id, name, address, alive, capacity,
        cameras, raylet_pid where local), pending cameras, recent moves; else enabled false."""
        info = getattr(vigil, "cluster_info", None)
        data = info() if info is not None else None
        if data is None:
            return jsonify({"enabled": False, "nodes": [], "pending": [], "moves": []})
        return jsonify({"enabled": True, **data})

    from web.review import register_review  # the review page and its JSON (imports this module)
    register_review(app, vigil)

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
