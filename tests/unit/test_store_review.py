"""EventStore review queries: filters, keyset pages, hourly rollup counts, facets, the
migration of a database made before them, and that each filter is answered by an index."""
from __future__ import annotations

import collections
import random
import sqlite3
import time

import pytest

from core.types import Event, EventKind
from events.store import REVIEW_INDEXES, EventStore

T0 = 1_779_998_400.0  # a whole hour: whole-hour ranges below are exact
CLASSES = ("person", "car", "bicycle")


def make_events(n: int, seed: int = 0, span_s: float = 6 * 3600.0) -> list[Event]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        kind = rng.choice(["track_started", "line_crossed", "line_crossed", "zone_enter", "part_passed",
                           "defect_found", "camera_state"])
        cam = "belt" if kind in ("part_passed", "defect_found") else rng.choice(["street", "door"])
        label = rng.choice(CLASSES)
        data: dict = {}
        if kind == "line_crossed":
            data = {"line": rng.choice(["gate", "road"]), "direction": rng.choice(["in", "out"])}
        elif kind == "zone_enter":
            data = {"zone": rng.choice(["yard", "porch"])}
        elif kind in ("part_passed", "defect_found"):
            data = {"verdict": "DEFECT" if kind == "defect_found" else "PASS"}
            label = data["verdict"].lower()
        elif kind == "camera_state":
            label = None
        # a few events share a timestamp (the keyset must break ties by id)
        ts = T0 + (round(rng.uniform(0, span_s)) if i % 7 else round(rng.uniform(0, span_s) / 100) * 100)
        out.append(Event(EventKind(kind), cam, ts=ts, track_id=i, label=label, data=data))
    return out


@pytest.fixture
def filled(tmp_path):
    st = EventStore(tmp_path / "ev.sqlite3", retention_days=36500, batch_ms=2, max_batch=1000)
    evs = make_events(1500)
    ids = [f.result(timeout=20) for f in [st.submit(e) for e in evs]]
    stored = [Event(e.kind, e.camera, ts=e.ts, track_id=e.track_id, label=e.label, data=e.data, id=i)
              for e, i in zip(evs, ids)]
    yield st, stored
    st.close()


def matches(e: Event, f: dict, since=None, until=None) -> bool:
    d = e.data
    return ((f.get("camera") is None or e.camera == f["camera"]) and (f.get("kind") is None or e.kind.value == f["kind"])
            and (f.get("label") is None or e.label == f["label"]) and (f.get("zone") is None or d.get("zone") == f["zone"])
            and (f.get("line") is None or d.get("line") == f["line"])
            and (f.get("verdict") is None or d.get("verdict") == f["verdict"])
            and e.kind.value not in f.get("not_kinds", ())
            and (since is None or e.ts >= since) and (until is None or e.ts < until))


def walk(st: EventStore, f: dict, limit: int, **kw) -> list[dict]:
    rows, before, pages = [], None, 0
    while True:
        page, before = st.review(f, before=before, limit=limit, **kw)
        rows += page
        pages += 1
        assert len(page) <= limit
        if before is None:
            return rows
        assert len(page) == limit and pages < 10_000


FILTERS = [{}, {"camera": "street"}, {"kind": "line_crossed"}, {"label": "car"}, {"zone": "yard"},
           {"line": "gate"}, {"verdict": "DEFECT"}, {"camera": "door", "kind": "zone_enter", "label": "person"},
           {"camera": "belt", "zone": "yard"}, {"not_kinds": ["track_started", "camera_state"]},
           {"camera": "street", "not_kinds": ["line_crossed"]}]


@pytest.mark.parametrize("f", FILTERS, ids=lambda f: ",".join(f) or "none")
def test_filters_and_keyset_pages_give_exactly_the_filtered_list(filled, f):
    st, stored = filled
    since, until = T0 + 3600, T0 + 5 * 3600 + 17
    for kw in ({}, {"since": since, "until": until}):
        want = sorted((e for e in stored if matches(e, f, kw.get("since"), kw.get("until"))),
                      key=lambda e: (e.ts, e.id), reverse=True)
        got = walk(st, f, 37, **kw)
        assert [r["id"] for r in got] == [e.id for e in want]
        if want:
            assert got[0]["kind"] == want[0].kind.value and got[0]["data"] == dict(want[0].data)
    if f == {"camera": "belt", "zone": "yard"}:
        assert walk(st, f, 10) == []


def test_a_cursor_whose_event_is_gone_continues_from_about_there(filled):
    st, stored = filled
    page, before = st.review({}, limit=100)
    # the cursor's row deleted behind the page's back (retention): the next page still comes
    with sqlite3.connect(str(st.path), isolation_level=None) as c:
        c.execute("DELETE FROM events WHERE id = ?", (before,))
    nxt, _ = st.review({}, before=before, limit=50)
    assert nxt and all(r["id"] != before for r in nxt)
    assert nxt[0]["ts"] <= page[-1]["ts"]


@pytest.mark.parametrize("by", ["kind", "class"])
def test_counts_rollup_equals_the_events_and_follows_deletes(filled, by):
    st, stored = filled
    f = {"camera": "street", "not_kinds": ["track_started"]}

    def ref(bucket: int, evs, since=None, until=None):
        c = collections.Counter()
        for e in evs:
            if matches(e, f, since, until):
                key = e.data.get("direction") if by == "kind" else e.label
                c[(int(e.ts // bucket) * bucket, e.kind.value, key)] += 1
        return sorted((b, k, key, n) for (b, k, key), n in c.items())

    def norm(rows):
        return sorted(rows, key=lambda r: (r[0], r[1], r[2] or ""))

    for bucket in (60, 3600, 7200):
        assert norm(st.counts(f, bucket_s=bucket, by=by)) == norm(ref(bucket, stored))
    # whole-hour buckets: the range is taken in whole hours
    got = st.counts(f, since=T0 + 3600, until=T0 + 3 * 3600, bucket_s=3600, by=by)
    assert norm(got) == norm(ref(3600, stored, T0 + 3600, T0 + 3 * 3600)) and got
    # minute buckets over an exact range
    assert norm(st.counts(f, since=T0 + 1234, until=T0 + 4321, bucket_s=60, by=by)) == \
        norm(ref(60, stored, T0 + 1234, T0 + 4321))
    # the rollup follows deletes (retention deletes rows one by one, as here)
    gone = {e.id for e in stored[::3]}
    with sqlite3.connect(str(st.path), isolation_level=None) as c:
        c.executemany("DELETE FROM events WHERE id = ?", [(i,) for i in gone])
    left = [e for e in stored if e.id not in gone]
    assert norm(st.counts(f, bucket_s=3600, by=by)) == norm(ref(3600, left))
    st.counts_rollup = False  # the same figures grouped from the events
    assert norm(st.counts(f, bucket_s=3600, by=by)) == norm(ref(3600, left))


def test_retention_keeps_the_rollup_in_step(tmp_path):
    st = EventStore(tmp_path / "ev.sqlite3", retention_days=1, batch_ms=2)
    try:
        now = time.time()
        old = [Event(EventKind.ZONE_ENTER, "c", ts=now - 3 * 86400 + i, data={"zone": "z"}) for i in range(20)]
        new = [Event(EventKind.ZONE_ENTER, "c", ts=now - 60 + i, data={"zone": "z"}) for i in range(5)]
        for e in old + new:
            st.put(e)
        assert sum(r[3] for r in st.counts()) == 25
        assert st.run_retention()["by_age"] == 20
        assert sum(r[3] for r in st.counts()) == 5
        with sqlite3.connect(str(st.path)) as c:  # emptied hours are removed, not kept at 0
            assert c.execute("SELECT COUNT(*) FROM event_counts_hourly WHERE n <= 0").fetchone()[0] == 0
    finally:
        st.close()


def test_span_and_distinct(filled):
    st, stored = filled
    assert st.distinct("zone") == ["porch", "yard"]
    assert st.distinct("line") == ["gate", "road"]
    assert st.distinct("verdict") == ["DEFECT", "PASS"]
    assert st.distinct("camera") == ["belt", "door", "street"]
    assert st.distinct("label") == sorted({e.label for e in stored if e.label})
    assert st.distinct("label", limit=2) == sorted({e.label for e in stored if e.label})[:2]
    with pytest.raises(ValueError):
        st.distinct("data")
    yard = [e.ts for e in stored if e.data.get("zone") == "yard"]
    assert st.review_span({"zone": "yard"}) == (min(yard), max(yard))
    assert st.review_span({"camera": "belt", "zone": "yard"}) is None


@pytest.mark.parametrize("f,index", [({"zone": "yard"}, "ix_events_zone_ts"), ({"line": "gate"}, "ix_events_line_ts"),
                                     ({"verdict": "DEFECT"}, "ix_events_verdict_ts"),
                                     ({"label": "car"}, "ix_events_label_ts"),
                                     ({"camera": "door"}, "ix_events_camera_ts"),
                                     ({"kind": "zone_enter"}, "ix_events_kind_ts"),
                                     ({"not_kinds": ["track_started", "track_ended"]}, "ix_events_ts")])
def test_each_filter_is_an_index_search_without_a_sort(filled, f, index):
    st, _ = filled
    for kw in ({}, {"since": T0, "until": T0 + 3600, "before": 5}):
        plan = " | ".join(st.review_explain(f, **kw))
        assert f"USING INDEX {index}" in plan and "TEMP B-TREE" not in plan, plan


OLD_SCHEMA = """
CREATE TABLE events (id INTEGER PRIMARY KEY AUTOINCREMENT, ts REAL NOT NULL, camera TEXT NOT NULL,
    kind TEXT NOT NULL, track_id INTEGER, label TEXT, x1 REAL, y1 REAL, x2 REAL, y2 REAL,
    data TEXT NOT NULL DEFAULT '{}', frame_seq INTEGER, snapshot TEXT, snapshot_bytes INTEGER NOT NULL DEFAULT 0);
CREATE INDEX ix_events_ts ON events(ts);
"""


def test_a_database_made_before_the_review_columns_is_migrated(tmp_path):
    path = tmp_path / "old.sqlite3"
    with sqlite3.connect(str(path)) as c:
        c.executescript(OLD_SCHEMA)
        c.executemany("INSERT INTO events (ts, camera, kind, label, data) VALUES (?,?,?,?,?)",
                      [(T0 + i, "cam", "zone_enter" if i % 2 else "line_crossed", "person",
                        '{"zone":"yard"}' if i % 2 else '{"line":"gate","direction":"in"}') for i in range(100)])
    st = EventStore(path, retention_days=36500)
    try:
        cols = {r[1] for r in st._read("PRAGMA table_xinfo(events)")}
        assert {"zone", "line", "direction", "verdict"} <= cols
        names = {r[0] for r in st._read("SELECT name FROM sqlite_master WHERE type='index'")}
        assert set(REVIEW_INDEXES) <= names
        rows, _ = st.review({"zone": "yard"}, limit=1000)
        assert len(rows) == 50 and rows[0]["ts"] == T0 + 99
        assert sum(n for *_k, n in st.counts({"line": "gate"})) == 50  # the rollup was backfilled
        st.put(Event(EventKind.LINE_CROSSED, "cam", ts=T0 + 200, data={"line": "gate", "direction": "out"}))
        by_dir = collections.Counter()
        for _b, _k, d, n in st.counts({"line": "gate"}):
            by_dir[d] += n
        assert by_dir == {"in": 50, "out": 1}
    finally:
        st.close()
    # opening it again changes nothing (idempotent)
    st = EventStore(path, retention_days=36500)
    try:
        assert sum(n for *_k, n in st.counts()) == 101
    finally:
        st.close()


def test_the_api_query_and_the_review_page_build_the_same_where(filled):
    """query() (the JSON API) and review() share one WHERE builder: the same filters give the
    same plan, on the same index."""
    st, _ = filled
    for api, review in (({"camera": "door"}, {"camera": "door"}), ({"kind": "zone_enter"}, {"kind": "zone_enter"}),
                        ({"camera": "door", "kind": "zone_enter"}, {"camera": "door", "kind": "zone_enter"})):
        for rng in ({}, {"since": T0, "until": T0 + 3600}):
            assert st.explain(**api, **rng) == st.review_explain(review, **rng)
