"""The event review page and its JSON: look back at what the cameras saw (issue 15).

Routes (registered by register_review(app, vigil) from web.app.create_app; their roles are in
web.app.ROUTE_ROLES, all `viewer`):

- `/review`: the page (web/templates/review.html, static/review.js, static/review.css).
- `/api/review/events`: one page of stored events, newest first, filtered by `camera`, `kind`,
  `class`, `zone`, `line`, `verdict`, `since`, `until` (epoch seconds or ISO 8601; a time
  without a zone is UTC), `tracks` (0: leave out track_started / track_ended unless `kind`
  names one; the page sends 0 unless its box is ticked; default 1), `limit` (1..500, default 50) and `before` (the cursor: the id of the
  last event of the previous page, as `next_before` gave it). Keyset paging: no OFFSET.
- `/api/review/events/<id>`: one event with its snapshot and clip links.
- `/api/review/facets`: the values the filters offer (cameras, kinds, classes, zones, lines,
  verdicts seen in the store).
- `/api/review/export.csv`, `/api/review/export.json`: every event of the filtered list (the
  same filters, newest first, at most `limit` rows, default and maximum 100,000), streamed.
- `/api/events/counts`: counts per `bucket` (`minute`, `hour` or `auto`) `by` `kind` (line
  crossings split in / out) or `class`, with the same filters, and the defect rate per bucket.

A bad parameter is a 400 naming it (web.app.BadParam); without an event store (events are not
persisted) the JSON routes answer 503.
"""
from __future__ import annotations

import csv
import io
import json
import math
import re
import time
from datetime import datetime, timezone
from typing import Any, Iterator

from flask import Flask, Response, g, jsonify, make_response, render_template, request

from core.types import EventKind
from runtime.vigil import Vigil
from web import auth
from web.app import CAMERA_RE, EVENT_KINDS, BadParam, _num

NAME_RE = re.compile(r"^[^\x00-\x1f\x7f]{1,64}$")
VERDICTS = ("PASS", "DEFECT", "UNKNOWN")
TRACK_KINDS = ("track_started", "track_ended")  # left out with tracks=0 (the page's default)
PAGE_MAX = 500
EXPORT_MAX = 100_000
EXPORT_PAGE = 1000
BUCKETS = {"minute": 60, "hour": 3600}
MAX_BUCKETS = {"minute": 1440, "hour": 24 * 400}  # a day of minutes; 400 days of hours
AUTO_MINUTES_UP_TO_S = 3 * 3600  # auto: minute buckets for spans up to 3 h, else hours
CLIP_RE = re.compile(r"^(?:https?://[^/]+)?(/api/clips/[A-Za-z0-9_-]{1,64}/[A-Za-z0-9_.-]{1,120})$")
CSV_COLUMNS = ("id", "time_utc", "ts", "camera", "kind", "track_id", "class", "zone", "line", "direction",
               "verdict", "serial", "text", "x1", "y1", "x2", "y2", "frame_seq", "snapshot_url", "clip", "data")


def _text(name: str) -> str | None:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return None
    if not NAME_RE.match(raw):
        raise BadParam(name, "1 to 64 printable characters")
    return raw


def _time(name: str) -> float | None:
    """Epoch seconds, or an ISO 8601 date/time (UTC when it names no zone)."""
    raw = request.args.get(name)
    if raw is None or raw == "":
        return None
    try:
        v = float(raw)
    except ValueError:
        try:
            dt = datetime.fromisoformat(raw.strip())
        except ValueError:
            raise BadParam(name, f"expected epoch seconds or an ISO 8601 time, got {raw[:40]!r}") from None
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=timezone.utc)
        v = dt.timestamp()
    if not math.isfinite(v) or not 0 <= v <= 1e11:
        raise BadParam(name, f"must be a time between 1970 and 5138, got {raw[:40]!r}")
    return v


def review_filters() -> tuple[dict[str, Any], float | None, float | None]:
    """The filter parameters of the current request: ({store filter: value}, since, until)."""
    camera = request.args.get("camera") or None
    if camera is not None and not CAMERA_RE.match(camera):
        raise BadParam("camera", "letters, digits, _ and - only")
    kind = request.args.get("kind") or None
    if kind is not None and kind not in EVENT_KINDS:
        raise BadParam("kind", f"one of {', '.join(sorted(EVENT_KINDS))}")
    verdict = request.args.get("verdict") or None
    if verdict is not None:
        if verdict.upper() not in VERDICTS:
            raise BadParam("verdict", f"one of {', '.join(VERDICTS)}")
        verdict = verdict.upper()
    tracks = request.args.get("tracks") or "1"
    if tracks not in ("0", "1"):
        raise BadParam("tracks", "0 (leave out track_started / track_ended) or 1")
    since, until = _time("since"), _time("until")
    if since is not None and until is not None and until <= since:
        raise BadParam("until", "must be later than since")
    f = {"camera": camera, "kind": kind, "label": _text("class"), "zone": _text("zone"),
         "line": _text("line"), "verdict": verdict}
    if tracks == "0" and kind is None:
        f["not_kinds"] = TRACK_KINDS
    return {k: v for k, v in f.items() if v is not None}, since, until


def _clip_path(data: dict[str, Any]) -> str | None:
    clip = data.get("clip") if isinstance(data, dict) else None
    m = CLIP_RE.match(clip) if isinstance(clip, str) else None
    return m.group(1) if m else None


def _row(vigil: Vigil, r: dict[str, Any]) -> dict[str, Any]:
    r["snapshot_url"] = vigil.snapshot_url(r["id"]) if r.get("snapshot") else None
    r["clip_url"] = _clip_path(r.get("data") or {})
    return r


def _cell(v: Any) -> Any:
    """A text cell a spreadsheet would run as a formula (OCR text and labels come from whatever
    the camera sees) gets a leading apostrophe (OWASP's CSV-injection advice)."""
    return "'" + v if isinstance(v, str) and v[:1] in ("=", "+", "-", "@", "\t", "\r") else v


def _csv_row(r: dict[str, Any]) -> list[Any]:
    d = r.get("data") or {}
    box = r.get("box") or [None] * 4
    when = datetime.fromtimestamp(r["ts"], timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return [r["id"], when, repr(float(r["ts"])), r["camera"], r["kind"], r.get("track_id"), _cell(r.get("label")),
            _cell(d.get("zone")), _cell(d.get("line")), d.get("direction"), d.get("verdict"), _cell(d.get("serial")),
            _cell(d.get("text")),
            *box, r.get("frame_seq"), r.get("snapshot_url"), r.get("clip_url"),
            json.dumps(d, separators=(",", ":"), sort_keys=True)]


def _series_key(by: str, kind: str, key: str | None) -> str:
    if by == "class":
        return key if key else "(no class)"
    return f"{kind} {key}" if key else kind


def register_review(app: Flask, vigil: Vigil) -> None:
    def configured_cameras() -> list[str]:
        return list(dict.fromkeys([*(c.name for c in vigil.cfg.cameras), *vigil.camera_names()]))

    def json_error(status: int, message: str) -> Response:
        resp = jsonify({"error": message, "status": status})
        resp.status_code = status
        return resp

    def no_store() -> Response:
        return json_error(503, "events are not stored (no event store): nothing to review")

    @app.get("/review")
    def review():
        p: auth.Principal = g.principal
        auth_on = app.extensions["vigil_auth"].enabled
        resp = make_response(render_template("review.html", cameras=configured_cameras(), auth=auth_on,
                                              user=p.name, role=p.role.label,
                                              kinds=sorted(k.value for k in EventKind)))
        resp.headers["Cache-Control"] = "no-store"
        return resp

    @app.get("/api/review/events")
    def api_review_events():
        f, since, until = review_filters()
        limit = _num("limit", 1, PAGE_MAX) or 50
        before = _num("before", 1, 2**63 - 1)
        if vigil.store is None:
            return no_store()
        rows, nxt = vigil.store.review(f, since=since, until=until, before=before, limit=limit)
        return jsonify({"events": [_row(vigil, r) for r in rows], "next_before": nxt, "limit": limit})

    @app.get("/api/review/events/<int:event_id>")
    def api_review_event(event_id: int):
        if vigil.store is None:
            return no_store()
        ev = vigil.store.get(event_id) if event_id < 2**63 else None
        if ev is None:
            return json_error(404, f"no event {event_id}")
        d = ev.to_dict()
        d["snapshot"] = vigil.store.snapshot_path(event_id) is not None
        return jsonify({"event": _row(vigil, d)})

    @app.get("/api/review/facets")
    def api_review_facets():
        if vigil.store is None:
            return no_store()
        st = vigil.store
        cams = sorted(set(configured_cameras()) | set(st.distinct("camera")))
        return jsonify({"cameras": cams, "kinds": sorted(k.value for k in EventKind),
                        "classes": st.distinct("label"), "zones": st.distinct("zone"),
                        "lines": st.distinct("line"), "verdicts": sorted(set(VERDICTS) | set(st.distinct("verdict")))})

    def export_rows(f: dict[str, Any], since: float | None, until: float | None, limit: int
                    ) -> Iterator[dict[str, Any]]:
        before, left = None, limit
        while left > 0:
            rows, before = vigil.store.review(f, since=since, until=until, before=before,
                                              limit=min(EXPORT_PAGE, left))
            for r in rows:
                yield _row(vigil, r)
            left -= len(rows)
            if before is None:
                return

    def export(fmt: str) -> Response:
        f, since, until = review_filters()
        limit = _num("limit", 1, EXPORT_MAX) or EXPORT_MAX
        if vigil.store is None:
            return no_store()
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        rows = export_rows(f, since, until, limit)
        if fmt == "csv":
            def gen() -> Iterator[str]:
                buf = io.StringIO()
                w = csv.writer(buf, lineterminator="\r\n")
                w.writerow(CSV_COLUMNS)
                for i, r in enumerate(rows, 1):
                    w.writerow(_csv_row(r))
                    if i % 500 == 0:
                        yield buf.getvalue()
                        buf.seek(0)
                        buf.truncate()
                yield buf.getvalue()
            resp = Response(gen(), content_type="text/csv; charset=utf-8")
        else:
            def gen() -> Iterator[str]:
                yield '{"filters": ' + json.dumps({**f, "since": since, "until": until}) + ', "events": ['
                for i, r in enumerate(rows):
                    yield ("," if i else "") + json.dumps(r, separators=(",", ":"))
                yield "]}\n"
            resp = Response(gen(), content_type="application/json")
        resp.headers["Content-Disposition"] = f'attachment; filename="vigil-events-{stamp}.{fmt}"'
        resp.headers["Cache-Control"] = "no-store"
        resp.headers["X-Export-Limit"] = str(limit)
        return resp

    app.add_url_rule("/api/review/export.csv", "api_review_export_csv", lambda: export("csv"))
    app.add_url_rule("/api/review/export.json", "api_review_export_json", lambda: export("json"))

    @app.get("/api/events/counts")
    def api_event_counts():
        f, since, until = review_filters()
        bucket = request.args.get("bucket") or "auto"
        if bucket not in ("auto", *BUCKETS):
            raise BadParam("bucket", "one of auto, minute, hour")
        by = request.args.get("by") or "kind"
        if by not in ("kind", "class"):
            raise BadParam("by", "one of kind, class")
        if vigil.store is None:
            return no_store()
        st = vigil.store
        lo, hi = since, until
        if lo is None or hi is None:
            span = st.review_span(f, since, until)
            now = time.time()
            if span is None:
                span = (now - 3600.0, now)
            lo = span[0] if lo is None else lo
            hi = (span[1] + 1e-3) if hi is None else hi
            hi = max(hi, lo + 1e-3)
        if bucket == "auto":
            bucket = "minute" if hi - lo <= AUTO_MINUTES_UP_TO_S else "hour"
        b = BUCKETS[bucket]
        first, end = math.floor(lo / b) * b, math.ceil(hi / b) * b
        n = max(1, (end - first) // b)
        clamped = False
        if n > MAX_BUCKETS[bucket]:
            if bucket == "minute" and since is not None and until is not None:
                raise BadParam("bucket", f"{n} minute buckets from since to until; at most "
                                         f"{MAX_BUCKETS['minute']} (a day): narrow the range or use hour")
            if bucket == "minute":
                bucket, b = "hour", 3600
                first, end = math.floor(lo / b) * b, math.ceil(hi / b) * b
                n = max(1, (end - first) // b)
            if n > MAX_BUCKETS[bucket]:  # keep the newest buckets
                n = MAX_BUCKETS[bucket]
                first = end - n * b
                clamped = True
        q_since = first if since is None or clamped else max(since, first)
        q_until = end if until is None else min(until, end)
        rows = st.counts(f, since=q_since, until=q_until, bucket_s=b, by=by)
        t = [first + i * b for i in range(n)]
        series: dict[str, list[int]] = {}
        kinds: dict[str, str] = {}
        passed, defects = [0] * n, [0] * n
        for start, kind, key, c in rows:
            i = (start - first) // b
            if not 0 <= i < n:
                continue
            name = _series_key(by, kind, key)
            series.setdefault(name, [0] * n)[i] += c
            kinds.setdefault(name, kind if by == "kind" else "class")
            if kind == "part_passed":
                passed[i] += c
            elif kind == "defect_found":
                defects[i] += c
        rate = [round(d / (d + p), 4) if d + p else None for d, p in zip(defects, passed)]
        return jsonify({
            "bucket": bucket, "bucket_s": b, "by": by, "since": first, "until": first + n * b,
            "clamped": clamped, "t": t,
            "series": [{"key": k, "kind": kinds[k], "values": v, "total": sum(v)}
                       for k, v in sorted(series.items())],
            "defect_rate": rate if any(x is not None for x in rate) else None,
            "parts": {"passed": sum(passed), "defective": sum(defects)},
        })
