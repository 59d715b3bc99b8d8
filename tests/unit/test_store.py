"""EventStore: group commit, acknowledgement after commit, queries, retention, snapshots, ids."""
from __future__ import annotations

import itertools
import sqlite3
import threading
import time

import pytest

from core.types import Event, EventKind
from events.bus import EventBus
from events.store import EventStore, EventStoreClosed, EventStoreError, EventStoreFull
from tests.timing import best_of

NOW = time.time()


def ev(i: int | None = None, camera: str = "cam1", kind: EventKind = EventKind.LINE_CROSSED,
       ts: float | None = None, **data) -> Event:
    return Event(kind, camera, ts=NOW if ts is None else ts, track_id=7, label="person",
                 box=(1.0, 2.0, 30.5, 40.25), data=data or {"line": "door", "direction": "in"},
                 frame_seq=11, id=i)


@pytest.fixture
def store(tmp_path):
    s = EventStore(tmp_path / "db" / "events.sqlite3", snapshots_dir=tmp_path / "snaps", batch_ms=20)
    yield s
    s.close()


def test_many_submits_few_commits_and_ids_kept(store):
    n = 2000
    futs = [store.submit(ev(i + 1)) for i in range(n)]
    ids = [f.result(timeout=10) for f in futs]
    assert ids == list(range(1, n + 1))  # the bus's ids are the primary keys
    st = store.stats()
    assert st["events"] == n
    # max_batch=256 -> at least 8 transactions; group commit keeps it near that
    assert 8 <= st["commits"] <= 60, st
    assert st["max_batch"] == 256
    assert store.count() == n


def test_batch_window_groups_a_trickle(tmp_path):
    """8 submits 10 ms apart (~0.1 s) fall in one 400 ms window: one commit. A run in which a
    loaded machine stretched the trickle past half the window proves nothing either way and is
    run again on a fresh store (up to 3 runs); a trickle that fits is always judged."""
    def trickle(k: int) -> float:
        with EventStore(tmp_path / f"e{k}.db", batch_ms=400) as s:
            t0 = time.monotonic()
            futs = []
            for i in range(8):
                futs.append(s.submit(ev()))
                time.sleep(0.01)
            early = futs[0].done()
            span = time.monotonic() - t0
            if span >= 0.2:
                return span
            assert not early  # not acknowledged before its commit
            [f.result(5) for f in futs]
            assert s.stats()["commits"] == 1
            assert time.monotonic() - t0 >= 0.35
            return span

    runs = itertools.count()
    spans = best_of(lambda: trickle(next(runs)), lambda span: span < 0.2)
    assert min(spans) < 0.2, f"8 submits 10 ms apart never fitted in 0.2 s: {spans}"

    # put() is urgent: it does not wait out the window (re-measured on a delayed run)
    with EventStore(tmp_path / "put.db", batch_ms=400) as s:
        def put() -> float:
            t0 = time.monotonic()
            s.put(ev())
            return time.monotonic() - t0
        took = best_of(put, lambda t: t < 0.3)
        assert min(took) < 0.3, took


def test_ack_means_committed_and_visible(store):
    seen = []

    def check(fut):  # runs in the writer thread right after set_result
        seen.append(store.get(fut.result()) is not None)

    futs = [store.submit(ev()) for _ in range(300)]
    for f in futs:
        f.add_done_callback(check)
    for f in futs:
        f.result(5)
    store.flush()  # callbacks run in the writer before it handles the flush
    assert len(seen) == 300 and all(seen)
    # a second connection sees it too
    con = sqlite3.connect(store.path)
    assert con.execute("SELECT COUNT(*) FROM events").fetchone()[0] == 300
    con.close()


def test_query_filters_order_and_plans(store):
    rows = []
    for i in range(60):
        cam = f"cam{i % 3}"
        kind = (EventKind.LINE_CROSSED, EventKind.ZONE_ENTER)[i % 2]
        rows.append(store.submit(Event(kind, cam, ts=NOW - 600 + i * 10, track_id=i, data={"i": i})))
    ids = [f.result(5) for f in rows]
    got = store.query(limit=1000)
    assert [e.id for e in got] == ids[::-1]  # newest first
    assert [e.data["i"] for e in store.query(camera="cam1", limit=5)] == [58, 55, 52, 49, 46]
    zone = store.query(kind="zone_enter", camera="cam0", limit=100)
    assert {e.data["i"] % 6 for e in zone} == {3} and len(zone) == 10
    assert [e.data["i"] for e in store.query(since=NOW - 600 + 570)] == [59, 58, 57]
    assert [e.data["i"] for e in store.query(after_id=ids[56], limit=2)] == [59, 58]
    assert [e.data["i"] for e in store.query(camera="cam2", after_id=ids[50])] == [59, 56, 53]
    assert [e.data["i"] for e in store.query(until=NOW - 600 + 20, limit=10)] == [1, 0]
    assert store.query(kind=EventKind.TEXT_READ) == []
    assert len(store.query(limit=0)) == 1  # clamped
    e = store.get(ids[5])
    assert e.kind is EventKind.ZONE_ENTER and e.camera == "cam2" and e.track_id == 5 and e.data == {"i": 5}
    with pytest.raises(ValueError):
        store.query(kind="nonsense")
    for plan in (store.explain(camera="c"), store.explain(kind="zone_enter"),
                 store.explain(camera="c", kind="zone_enter"), store.explain(since=1.0),
                 store.explain(camera="c", since=1.0)):
        assert any("USING INDEX" in p for p in plan) and not any("TEMP B-TREE" in p for p in plan), plan
    assert any("PRIMARY KEY" in p for p in store.explain(camera="c", after_id=3))


def test_event_round_trip_fields(store):
    src = Event(EventKind.TEXT_READ, "gate", ts=NOW, track_id=3, label="plate", box=(1, 2, 3, 4),
                data={"text": "AB 123", "conf": 0.9, "n": [1, 2]}, frame_seq=99, id=42)
    store.put(src)
    back = store.get(42)
    assert back == src


def test_snapshot_round_trip_and_disabled(tmp_path, store):
    jpeg = b"\xff\xd8\xff\xe0" + bytes(range(256)) * 20 + b"\xff\xd9"
    rid = store.put(ev(5), jpeg)
    p = store.snapshot_path(rid)
    assert p is not None and p.is_file() and p.is_relative_to(tmp_path / "snaps")
    assert store.snapshot_bytes(rid) == jpeg
    assert store.query_dicts(limit=1)[0]["snapshot"] is True
    rid2 = store.put(ev(6))
    assert store.snapshot_path(rid2) is None and store.snapshot_bytes(rid2) is None
    assert store.size_bytes()["snapshots"] == len(jpeg)
    with EventStore(tmp_path / "nosnap.db") as s2:
        r = s2.put(ev(), jpeg)
        assert s2.snapshot_path(r) is None and s2.stats()["snapshots_skipped"] == 1


def test_retention_by_age_removes_rows_and_files(tmp_path, store):
    old = [store.submit(ev(ts=NOW - 40 * 86400 + i), b"old" * 100) for i in range(50)]
    new = [store.submit(ev(ts=NOW - 3600 + i), b"new" * 100) for i in range(20)]
    old_ids = [f.result(5) for f in old]
    new_ids = [f.result(5) for f in new]
    old_files = [store.snapshot_path(i) for i in old_ids]
    assert all(p is not None for p in old_files)
    assert store.run_retention() == {"by_age": 50, "by_size": 0}
    assert sorted(e.id for e in store.query(limit=1000)) == new_ids
    assert not any(p.exists() for p in old_files)
    assert all(store.snapshot_path(i) is not None for i in new_ids)
    assert store.stats()["retention_deleted"] == 50


def test_retention_by_size_trims_oldest(tmp_path):
    snaps = tmp_path / "snaps"
    limit_mb = 0.25
    with EventStore(tmp_path / "e.db", retention_mb=limit_mb, snapshots_dir=snaps) as s:
        futs = [s.submit(ev(ts=NOW + i), b"\x00" * 8000) for i in range(100)]  # ~800 kB of files
        ids = [f.result(5) for f in futs]
        res = s.run_retention()
        assert res["by_age"] == 0 and res["by_size"] > 60
        kept = sorted(e.id for e in s.query(limit=1000))
        assert kept == ids[-len(kept):]  # the newest survive
        on_disk = sum(p.stat().st_size for p in snaps.rglob("*.jpg"))
        assert on_disk == s.size_bytes()["snapshots"] == 8000 * len(kept)
        used = s._read("PRAGMA page_count")[0][0] - s._read("PRAGMA freelist_count")[0][0]
        used *= s._read("PRAGMA page_size")[0][0]
        assert used + on_disk <= limit_mb * 1024 * 1024
        assert s.run_retention() == {"by_age": 0, "by_size": 0}  # under the limit now


def test_reopen_continues_ids_and_bus_numbering(tmp_path):
    path = tmp_path / "e.db"
    with EventStore(path) as s:
        assert s.max_id() == 0
        bus = EventBus(start_id=s.max_id())
        bus.add_sink(s)
        pubs = [bus.publish(ev()) for _ in range(25)]
        s.flush()
        assert [e.id for e in s.query(limit=100)][::-1] == [e.id for e in pubs] == list(range(1, 26))
        assert s.put(ev()) == 26  # no id given: the next one
    with EventStore(path) as s:
        assert s.max_id() == 26
        bus = EventBus(start_id=s.max_id())
        bus.add_sink(s)
        e = bus.publish(ev())
        s.flush()
        assert e.id == 27 and s.get(27) is not None
        # an id that exists already is kept safe: stored under a new id, counted
        assert s.put(ev(3)) == 28 and s.stats()["id_conflicts"] == 1
        assert s.get(3).id == 3
    # ids are never reused, even after every row was deleted
    con = sqlite3.connect(path)
    con.execute("DELETE FROM events")
    con.commit()
    con.close()
    with EventStore(path) as s:
        assert s.max_id() == 28 and s.put(ev()) == 29


def test_close_flushes_pending_and_refuses_after(tmp_path):
    s = EventStore(tmp_path / "e.db", batch_ms=5000)
    futs = [s.submit(ev()) for _ in range(500)]
    s.close(timeout=10)
    assert all(f.done() and f.exception() is None for f in futs)
    late = s.submit(ev())
    assert isinstance(late.exception(timeout=1), EventStoreClosed)
    with pytest.raises(EventStoreClosed):
        s.query()
    with EventStore(tmp_path / "e.db") as s2:
        assert s2.count() == 500


def test_queue_full_and_write_errors_are_reported(tmp_path):
    path = tmp_path / "e.db"
    s = EventStore(path, max_queue=10, batch_ms=0, busy_timeout_s=1.0)
    try:
        s.put(ev())
        blocker = sqlite3.connect(path, isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")  # hold the write lock: the writer waits, then fails
        first = s.submit(ev())
        deadline = time.monotonic() + 2
        while s.stats()["queued"] and time.monotonic() < deadline:
            time.sleep(0.005)  # until the writer took `first` and waits for the lock
        futs = [s.submit(ev()) for _ in range(15)]
        full = [f for f in futs if f.done() and isinstance(f.exception(), EventStoreFull)]
        assert len(full) == 5 and s.stats()["dropped"] == 5
        with pytest.raises(EventStoreError, match="e.db"):
            first.result(timeout=5)  # busy timeout expired: reported, not swallowed
        blocker.execute("ROLLBACK")
        blocker.close()
        rest = [f.result(timeout=5) for f in futs if f not in full]
        assert len(rest) == 10
        assert s.stats()["write_errors"] >= 1
        assert s.count() == 11
    finally:
        s.close()


def test_corrupt_or_unwritable_db_names_the_file(tmp_path):
    bad = tmp_path / "corrupt.sqlite3"
    bad.write_bytes(b"this is not a database at all" * 100)
    with pytest.raises(EventStoreError, match="corrupt.sqlite3.*(corrupt|not a database)"):
        EventStore(bad)
    blocker = tmp_path / "afile"
    blocker.write_text("x")
    with pytest.raises(EventStoreError, match="afile"):
        EventStore(blocker / "sub" / "events.db")
    with pytest.raises(ValueError):
        EventStore(tmp_path / "x.db", retention_days=0)


def test_submit_is_cheap_and_threads_can_share(store):
    lat = []
    errs = []

    def producer(k):
        try:
            for i in range(300):
                t0 = time.perf_counter()
                store.submit(ev(camera=f"c{k}"))
                lat.append(time.perf_counter() - t0)
        except Exception as e:  # noqa: BLE001
            errs.append(e)

    threads = [threading.Thread(target=producer, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    store.flush()
    assert not errs and store.count() == 1200
    assert all(store.count(camera=f"c{k}") == 300 for k in range(4))
    lat.sort()
    assert lat[len(lat) // 2] < 1e-3  # median well under a millisecond even on a loaded machine
