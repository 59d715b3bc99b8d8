"""The review API through the Flask app (its test client; the store is real, the cameras are
not started): filters, keyset pages, exports equal to the filtered list, counts, detail,
facets, bad parameters, the page itself and the dashboard's link to it."""
from __future__ import annotations

import collections
import csv
import io
import json
import os
import random
from datetime import datetime, timezone

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from core.config import parse_config
from core.types import Event, EventKind
from runtime.vigil import Vigil
from web.app import ROUTE_ROLES, create_app

T0 = 1_779_998_400.0  # a whole hour
N = 640


def jpeg(i: int) -> bytes:
    img = np.full((60, 80, 3), i % 255, np.uint8)
    return cv2.imencode(".jpg", img)[1].tobytes()


def synth(n: int, seed: int = 3) -> list[Event]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        kind = rng.choice(["track_started", "track_ended", "line_crossed", "line_crossed", "zone_enter",
                           "zone_leave", "part_passed", "part_passed", "defect_found", "text_read", "camera_state"])
        cam = "belt" if kind in ("part_passed", "defect_found", "text_read") else rng.choice(["cross", "yard"])
        label = rng.choice(["person", "car"])
        data: dict = {}
        if kind == "line_crossed":
            data = {"line": rng.choice(["gate", "road"]), "direction": rng.choice(["in", "out"])}
            if i % 5 == 0:
                data["clip"] = f"/api/clips/{cam}/{cam}-20260101T000000-{i}.mp4"
        elif kind in ("zone_enter", "zone_leave"):
            data = {"zone": rng.choice(["porch", "drive"]), "dwell_s": 1.5}
        elif kind in ("part_passed", "defect_found"):
            data = {"verdict": "DEFECT" if kind == "defect_found" else "PASS", "serial": f"SN{i:04d}"}
            label = data["verdict"].lower()
        elif kind == "text_read":
            data = {"text": f"SN{i:04d}", "confidence": 91.0}
        elif kind == "camera_state":
            data, label = {"from": "LIVE", "to": "STALLED"}, None
        out.append(Event(EventKind(kind), cam, ts=T0 + round(rng.uniform(0, 5 * 3600), 3), track_id=i, label=label,
                         box=(1.0, 2.0, 30.0, 40.0) if kind != "camera_state" else None, data=data, frame_seq=i))
    return out


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("review")
    cfg = parse_config({"cameras": [{"name": "cross", "source": "synthetic:crossing", "detector": "none"}],
                        "paths": {"data": str(tmp / "data")}, "events": {"retention_days": 3650}})
    vigil = Vigil(cfg)
    app = create_app(vigil)
    stored = []
    for i, ev in enumerate(synth(N)):
        snap = jpeg(i) if ev.box is not None and i % 2 == 0 else None
        eid = vigil.store.put(ev, snap)
        stored.append((Event(ev.kind, ev.camera, ts=ev.ts, track_id=ev.track_id, label=ev.label, box=ev.box,
                             data=ev.data, frame_seq=ev.frame_seq, id=eid), snap is not None))
    yield app.test_client(), stored, vigil
    vigil.stop(timeout=1.0)


def matches(e: Event, q: dict) -> bool:
    d = e.data
    since = q.get("since")
    until = q.get("until")
    return ((q.get("camera") is None or e.camera == q["camera"]) and (q.get("kind") is None or e.kind.value == q["kind"])
            and (q.get("class") is None or e.label == q["class"]) and (q.get("zone") is None or d.get("zone") == q["zone"])
            and (q.get("line") is None or d.get("line") == q["line"])
            and (q.get("verdict") is None or d.get("verdict") == q["verdict"].upper())
            and (q.get("tracks", 1) != 0 or q.get("kind") is not None
                 or e.kind not in (EventKind.TRACK_STARTED, EventKind.TRACK_ENDED))
            and (since is None or e.ts >= float(since)) and (until is None or e.ts < float(until)))


def expected(stored, q) -> list[int]:
    return [e.id for e, _ in sorted((x for x in stored if matches(x[0], q)), key=lambda x: (x[0].ts, x[0].id),
                                    reverse=True)]


def walk(client, q: dict, limit: int = 23) -> list[dict]:
    rows, before = [], None
    for _ in range(1000):
        args = {**q, "limit": limit, **({"before": before} if before else {})}
        r = client.get("/api/review/events", query_string=args)
        assert r.status_code == 200, r.get_json()
        body = r.get_json()
        rows += body["events"]
        before = body["next_before"]
        if before is None:
            return rows
    raise AssertionError("paging did not end")


QUERIES = [{}, {"camera": "cross"}, {"kind": "line_crossed"}, {"class": "car"}, {"zone": "porch"}, {"line": "gate"},
           {"verdict": "defect"}, {"camera": "yard", "kind": "zone_enter", "class": "person"},
           {"since": T0 + 3600, "until": T0 + 2 * 3600 + 0.5}, {"kind": "part_passed", "since": T0 + 4000},
           {"camera": "belt", "line": "gate"}, {"tracks": 0}, {"tracks": 0, "camera": "cross", "since": T0 + 7000},
           {"tracks": 0, "kind": "track_ended"}, {"tracks": 1, "camera": "yard"}]


@pytest.mark.parametrize("q", QUERIES, ids=lambda q: ",".join(f"{k}={v}" for k, v in q.items()) or "all")
def test_filters_and_pages_match_the_stored_events(env, q):
    client, stored, _ = env
    rows = walk(client, q)
    assert [r["id"] for r in rows] == expected(stored, q)
    snap = {e.id: has for e, has in stored}
    for r in rows:
        assert (r["snapshot_url"] is not None) == snap[r["id"]]
        assert r["clip_url"] == (r["data"].get("clip"))


def test_iso_times_are_accepted(env):
    client, stored, _ = env
    iso = datetime.fromtimestamp(T0 + 3600, timezone.utc).isoformat().replace("+00:00", "Z")
    naive = datetime.fromtimestamp(T0 + 7200, timezone.utc).replace(tzinfo=None).isoformat()  # UTC
    rows = walk(client, {"since": iso, "until": naive})
    assert [r["id"] for r in rows] == expected(stored, {"since": T0 + 3600, "until": T0 + 7200})


@pytest.mark.parametrize("q", [{"kind": "line_crossed"}, {"verdict": "PASS", "since": T0 + 1000}, {}])
def test_exports_hold_exactly_the_filtered_list(env, q):
    client, stored, _ = env
    want = expected(stored, q)
    listed = [r["id"] for r in walk(client, q, limit=50)]
    assert listed == want
    r = client.get("/api/review/export.csv", query_string=q)
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/csv")
    assert r.headers["Content-Disposition"].startswith('attachment; filename="vigil-events-')
    rows = list(csv.DictReader(io.StringIO(r.get_data(as_text=True))))
    assert [int(x["id"]) for x in rows] == want
    by_id = {e.id: e for e, _ in stored}
    for x in rows[:50]:
        e = by_id[int(x["id"])]
        assert x["camera"] == e.camera and x["kind"] == e.kind.value and float(x["ts"]) == e.ts
        assert x["class"] == (e.label or "") and json.loads(x["data"]) == dict(e.data)
        assert x["line"] == (e.data.get("line") or "") and x["verdict"] == (e.data.get("verdict") or "")
        assert x["time_utc"].endswith("Z")
    r = client.get("/api/review/export.json", query_string=q)
    assert r.status_code == 200
    body = json.loads(r.get_data(as_text=True))
    assert [x["id"] for x in body["events"]] == want
    # limit cuts the newest n
    r = client.get("/api/review/export.csv", query_string={**q, "limit": 7})
    assert [int(x["id"]) for x in csv.DictReader(io.StringIO(r.get_data(as_text=True)))] == want[:7]


def test_counts_by_kind_and_class_with_the_defect_rate(env):
    client, stored, _ = env
    r = client.get("/api/events/counts", query_string={"bucket": "hour"})
    assert r.status_code == 200
    c = r.get_json()
    assert c["bucket"] == "hour" and c["bucket_s"] == 3600 and c["since"] == T0 and len(c["t"]) == 5
    ref = collections.Counter()
    for e, _ in stored:
        key = f"{e.kind.value} {e.data['direction']}" if e.kind is EventKind.LINE_CROSSED else e.kind.value
        ref[(key, int((e.ts - T0) // 3600))] += 1
    got = {(s["key"], i): v for s in c["series"] for i, v in enumerate(s["values"]) if v}
    assert got == dict(ref)
    assert {"line_crossed in", "line_crossed out", "zone_enter", "part_passed", "defect_found"} <= {s["key"] for s in c["series"]}
    for i in range(5):
        p, d = ref[("part_passed", i)], ref[("defect_found", i)]
        assert c["defect_rate"][i] == (round(d / (p + d), 4) if p + d else None)
    assert c["parts"] == {"passed": sum(ref[("part_passed", i)] for i in range(5)),
                          "defective": sum(ref[("defect_found", i)] for i in range(5))}
    # by class, minute buckets over an exact range, with a filter
    q = {"by": "class", "bucket": "minute", "kind": "line_crossed", "since": T0 + 600, "until": T0 + 4200}
    c = client.get("/api/events/counts", query_string=q).get_json()
    assert c["bucket_s"] == 60 and len(c["t"]) == 60
    ref = collections.Counter(e.label for e, _ in stored if matches(e, q))
    assert {s["key"]: s["total"] for s in c["series"]} == dict(ref)
    assert c["defect_rate"] is None
    # tracks=0 (the page's default): no track series, the others unchanged
    c0 = client.get("/api/events/counts", query_string={"bucket": "hour", "tracks": 0}).get_json()
    c1 = client.get("/api/events/counts", query_string={"bucket": "hour"}).get_json()
    keys0 = {s["key"]: s["values"] for s in c0["series"]}
    assert not {"track_started", "track_ended"} & set(keys0)
    assert keys0 == {s["key"]: s["values"] for s in c1["series"] if not s["key"].startswith("track_")}
    # auto: the matching events' span decides (5 h -> hours; one zone's 3 minutes -> minutes)
    assert client.get("/api/events/counts").get_json()["bucket"] == "hour"
    c = client.get("/api/events/counts", query_string={"since": T0, "until": T0 + 1800}).get_json()
    assert c["bucket"] == "minute" and len(c["t"]) == 30


def test_detail_facets_and_snapshot(env):
    client, stored, vigil = env
    e, has = next((x for x in stored if x[1] and x[0].data.get("clip")), None) or pytest.fail("no clip event")
    d = client.get(f"/api/review/events/{e.id}").get_json()["event"]
    assert d["id"] == e.id and d["kind"] == e.kind.value and d["data"] == dict(e.data)
    assert d["snapshot_url"] == f"/api/events/{e.id}/snapshot.jpg" and d["clip_url"] == e.data["clip"]
    img = client.get(d["snapshot_url"])
    assert img.status_code == 200 and img.data[:2] == b"\xff\xd8"
    assert client.get("/api/review/events/99999999").status_code == 404
    f = client.get("/api/review/facets").get_json()
    assert f["cameras"] == ["belt", "cross", "yard"] and f["zones"] == ["drive", "porch"]
    assert f["lines"] == ["gate", "road"] and f["classes"] == ["car", "defect", "pass", "person"]
    assert f["verdicts"] == ["DEFECT", "PASS", "UNKNOWN"]


@pytest.mark.parametrize("path,args,param", [
    ("/api/review/events", {"kind": "bogus"}, "kind"),
    ("/api/review/events", {"camera": "no such!"}, "camera"),
    ("/api/review/events", {"verdict": "maybe"}, "verdict"),
    ("/api/review/events", {"since": "yesterday"}, "since"),
    ("/api/review/events", {"since": "nan"}, "since"),
    ("/api/review/events", {"since": T0 + 10, "until": T0}, "until"),
    ("/api/review/events", {"limit": 0}, "limit"),
    ("/api/review/events", {"limit": 501}, "limit"),
    ("/api/review/events", {"before": -3}, "before"),
    ("/api/review/events", {"tracks": "no"}, "tracks"),
    ("/api/review/events", {"before": "x"}, "before"),
    ("/api/review/events", {"class": "x" * 65}, "class"),
    ("/api/review/events", {"zone": "a\nb"}, "zone"),
    ("/api/review/export.csv", {"line": "\x00"}, "line"),
    ("/api/review/export.json", {"limit": 100001}, "limit"),
    ("/api/events/counts", {"bucket": "week"}, "bucket"),
    ("/api/events/counts", {"by": "colour"}, "by"),
    ("/api/events/counts", {"bucket": "minute", "since": T0, "until": T0 + 2 * 86400}, "bucket"),
])
def test_bad_parameters_are_a_400_naming_them(env, path, args, param):
    client, _, _ = env
    r = client.get(path, query_string=args)
    assert r.status_code == 400, r.get_data(as_text=True)
    body = r.get_json()
    assert body["parameter"] == param and repr(param) in body["error"]


def test_page_and_dashboard_link(env):
    client, _, _ = env
    r = client.get("/review?camera=cross&kind=line_crossed")
    html = r.get_data(as_text=True)
    assert r.status_code == 200 and "review.js" in html and "review.css" in html and 'id="chart"' in html
    assert '<option value="cross">cross</option>' in html
    assert 'href="/review"' in client.get("/").get_data(as_text=True)
    for ep in ("review", "api_review_events", "api_review_event", "api_review_facets", "api_review_export_csv",
               "api_review_export_json", "api_event_counts"):
        assert ROUTE_ROLES[ep].label == "viewer"


def test_without_a_store_the_api_says_so(tmp_path):
    cfg = parse_config({"cameras": [{"name": "cross", "source": "synthetic:crossing", "detector": "none"}],
                        "paths": {"data": str(tmp_path / "data")}})
    vigil = Vigil(cfg, persist=False)
    try:
        client = create_app(vigil).test_client()
        for path in ("/api/review/events", "/api/review/facets", "/api/events/counts", "/api/review/export.csv"):
            r = client.get(path)
            assert r.status_code == 503 and "not stored" in r.get_json()["error"], path
        assert client.get("/review").status_code == 200
    finally:
        vigil.stop(timeout=1.0)


def test_csv_cells_that_would_be_formulas_are_defused_and_the_page_asks_to_sign_in(tmp_path):
    cfg = parse_config({"cameras": [{"name": "cross", "source": "synthetic:crossing", "detector": "none"}],
                        "paths": {"data": str(tmp_path / "data")}, "server": {"token": "review-token-123"}})
    vigil = Vigil(cfg)
    try:
        # OCR reads whatever the camera sees: a label made to run in a spreadsheet
        vigil.store.put(Event(EventKind.TEXT_READ, "cross", ts=T0, label="=cmd", data={"text": "=HYPERLINK(\"x\")"}))
        vigil.store.put(Event(EventKind.LINE_CROSSED, "cross", ts=T0 + 1, label="-car",
                              data={"line": "@gate", "direction": "in"}))
        client = create_app(vigil).test_client()
        r = client.get("/review")
        assert r.status_code == 302 and r.location.endswith("/login")
        auth_h = {"Authorization": "Bearer review-token-123"}
        rows = list(csv.DictReader(io.StringIO(client.get("/api/review/export.csv", headers=auth_h).get_data(as_text=True))))
        assert [(x["class"], x["text"], x["line"]) for x in rows] == [("'-car", "", "'@gate"), ("'=cmd", "'=HYPERLINK(\"x\")", "")]
        assert json.loads(rows[1]["data"])["text"] == "=HYPERLINK(\"x\")"  # the JSON column keeps the value
        body = client.get("/api/review/export.json", headers=auth_h).get_json()
        assert [e["label"] for e in body["events"]] == ["-car", "=cmd"]  # JSON is data, not defused
    finally:
        vigil.stop(timeout=1.0)


_junk = st.one_of(st.none(), st.text(max_size=30), st.sampled_from(["", "0", "-1", "1e400", "nan", "inf", "9" * 30,
                                                                     "2026-13-45T99:00", "line_crossed", "DEFECT",
                                                                     "hour", "minute", "class", "\x00", "%00"]),
                  st.integers(-10**20, 10**20).map(str), st.floats(allow_nan=True).map(str))
_params = st.dictionaries(st.sampled_from(["camera", "kind", "class", "zone", "line", "verdict", "since", "until",
                                           "tracks", "limit", "before", "bucket", "by", "other"]), _junk, max_size=6)


@settings(max_examples=int(os.environ.get("VIGIL_REVIEW_FUZZ_EXAMPLES", "150")), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(path=st.sampled_from(["/api/review/events", "/api/review/export.csv", "/api/review/export.json",
                             "/api/events/counts", "/api/review/facets", "/review"]),
       params=_params)
def test_any_query_is_answered_never_a_500(env, path, params):
    client, _, _ = env
    q = {k: v for k, v in params.items() if v is not None}
    if path.startswith("/api/review/export"):
        q.setdefault("limit", "20")  # keep each example small
    r = client.get(path, query_string=q)
    body = r.get_data(as_text=True)
    assert r.status_code in (200, 400), (path, q, r.status_code, body[:300])
    if r.status_code == 400:
        err = r.get_json()
        assert err["parameter"] in q and "Traceback" not in body
