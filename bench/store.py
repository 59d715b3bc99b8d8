"""Event store queries behind the review page, on 100,000 synthetic events.

    python main.py bench store --json [--events 100000] [--days 7] [--rounds 40] [--repeats 3]

Fills a fresh EventStore (through its writer thread, as the runtime does) with `--events`
events spread over `--days` days on three cameras, in the mix a running Vigil stores (track
start/end, line crossings in/out, zone enter/leave, parts passed/defective, text, camera
states), then times each query type the review page makes (events.store.EventStore.review,
review_span, counts, distinct) over `--rounds` rounds with varied parameters, the types
interleaved round by round: p50 / p95 / max ms per type, each the median of `--repeats` runs. The same queries are then timed again with the review indexes dropped
(REVIEW_INDEXES: what the store had before them) and counts() grouping the events instead of
reading the hourly rollup table, as the baseline measured in the same run,
and each type's p95 ratio (baseline / indexed) is given. Goal: p95 < 50 ms per type.
Rows are decoded to dicts (what the API serves), so the figures include that cost.
"""
from __future__ import annotations

import os
import random
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from core.types import Event, EventKind  # noqa: E402
from events.store import COUNT_BUCKETS, REVIEW_INDEXES, EventStore  # noqa: E402

GOAL_P95_MS = 50.0
CAMERAS = ("street", "conveyor", "door")
# kind -> share of events (what a day of the shipped config stores, roughly)
MIX = {"track_started": 0.28, "track_ended": 0.28, "line_crossed": 0.14, "zone_enter": 0.08,
       "zone_leave": 0.08, "part_passed": 0.09, "defect_found": 0.01, "text_read": 0.035,
       "camera_state": 0.005}
CLASSES = ("person", "car", "bicycle", "truck", "dog")
ZONES = ("yard", "porch")
LINES = ("gate", "road")


def synth_events(n: int, days: float, end_ts: float, seed: int = 0) -> list[Event]:
    """n events over [end_ts - days, end_ts), ts increasing, in the MIX."""
    rng = random.Random(seed)
    kinds = list(MIX)
    weights = [MIX[k] for k in kinds]
    t0 = end_ts - days * 86400.0
    ts = np.sort(np.random.default_rng(seed).uniform(t0, end_ts, n))
    out = []
    for i in range(n):
        kind = rng.choices(kinds, weights)[0]
        if kind in ("part_passed", "defect_found"):
            cam = "conveyor"
        elif kind == "camera_state":
            cam = rng.choice(CAMERAS)
        else:
            cam = rng.choice(("street", "door")) if kind != "text_read" else "conveyor"
        label = rng.choice(CLASSES) if cam != "conveyor" else "part"
        data: dict[str, Any] = {}
        if kind == "line_crossed":
            data = {"line": LINES[cam == "door"], "direction": rng.choice(("in", "out"))}
        elif kind in ("zone_enter", "zone_leave"):
            data = {"zone": ZONES[cam == "door"], "dwell_s": round(rng.uniform(0, 30), 1)}
        elif kind in ("part_passed", "defect_found"):
            verdict = "DEFECT" if kind == "defect_found" else "PASS"
            label = verdict.lower()
            data = {"verdict": verdict, "serial": f"SN{i:06d}", "diff_area": rng.randint(0, 900)}
        elif kind == "text_read":
            data = {"text": f"SN{i:06d}", "confidence": 90.0}
        elif kind == "camera_state":
            data = {"from": "LIVE", "to": "STALLED"}
            label = None
        out.append(Event(EventKind(kind), cam, ts=float(ts[i]), track_id=i % 5000, label=label,
                         box=(10.0, 20.0, 110.0, 220.0) if kind != "camera_state" else None,
                         data=data, frame_seq=i))
    return out


def _queries(end_ts: float, days: float, ids: tuple[int, int]) -> dict[str, Callable[[EventStore, random.Random], Any]]:
    """query type -> one call with parameters drawn from rng (the review page's requests)."""
    t0 = end_ts - days * 86400.0

    def some_day(rng: random.Random) -> tuple[float, float]:
        s = rng.uniform(t0, end_ts - 86400.0)
        return s, s + 86400.0

    def page(**kw: Any) -> Callable[[EventStore, random.Random], Any]:
        def q(st: EventStore, rng: random.Random) -> Any:
            return st.review({k: (v(rng) if callable(v) else v) for k, v in kw.items()}, limit=50)
        return q

    def deep(st: EventStore, rng: random.Random) -> Any:
        # a page far back: the cursor is a random event id (keyset, so no OFFSET to walk)
        return st.review({}, before=rng.randint(ids[0] + 100, ids[1]), limit=50)

    def deep_kind(st: EventStore, rng: random.Random) -> Any:
        return st.review({"kind": "line_crossed"}, before=rng.randint(ids[0] + 100, ids[1]), limit=50)

    def day_range(st: EventStore, rng: random.Random) -> Any:
        s, u = some_day(rng)
        return st.review({}, since=s, until=u, limit=50)

    def combo(st: EventStore, rng: random.Random) -> Any:
        s, u = some_day(rng)
        return st.review({"camera": "street", "kind": "line_crossed", "label": rng.choice(CLASSES)},
                         since=s, until=u, limit=50)

    def zone_day(st: EventStore, rng: random.Random) -> Any:
        s, u = some_day(rng)
        return st.review({"zone": rng.choice(ZONES)}, since=s, until=u, limit=50)

    def defects_day(st: EventStore, rng: random.Random) -> Any:
        s, u = some_day(rng)
        return st.review({"verdict": "DEFECT"}, since=s, until=u, limit=50)

    def no_tracks(st: EventStore, rng: random.Random) -> Any:
        # the review page's default: everything but track start/end
        return st.review({"not_kinds": ["track_started", "track_ended"]}, limit=50)

    def no_tracks_day(st: EventStore, rng: random.Random) -> Any:
        s, u = some_day(rng)
        return st.review({"camera": rng.choice(CAMERAS), "not_kinds": ["track_started", "track_ended"]},
                         since=s, until=u, limit=50)

    def rare_empty(st: EventStore, rng: random.Random) -> Any:
        # nothing matches (defects on a street camera within an hour): the worst case for a
        # filter that the index does not answer alone
        s = rng.uniform(t0, end_ts - 3600.0)
        return st.review({"camera": "street", "verdict": "DEFECT"}, since=s, until=s + 3600.0, limit=50)

    def counts_day_hour(st: EventStore, rng: random.Random) -> Any:
        s, u = some_day(rng)
        return st.counts({}, since=s, until=u, bucket_s=COUNT_BUCKETS["hour"], by="kind")

    def counts_2h_minute(st: EventStore, rng: random.Random) -> Any:
        s = rng.uniform(t0, end_ts - 7200.0)
        return st.counts({"camera": rng.choice(CAMERAS)}, since=s, until=s + 7200.0,
                         bucket_s=COUNT_BUCKETS["minute"], by="kind")

    def counts_all_class(st: EventStore, rng: random.Random) -> Any:
        return st.counts({"kind": rng.choice(("line_crossed", "zone_enter"))}, bucket_s=3600, by="class")

    def counts_all_kind(st: EventStore, rng: random.Random) -> Any:
        return st.counts({}, bucket_s=3600, by="kind")

    def span(st: EventStore, rng: random.Random) -> Any:
        return st.review_span({"zone": rng.choice(ZONES)})

    def facets(st: EventStore, rng: random.Random) -> Any:
        return [st.distinct(c) for c in ("camera", "kind", "label", "zone", "line", "verdict")]

    return {
        "page_newest": page(),
        "page_camera": page(camera=lambda r: r.choice(CAMERAS)),
        "page_kind": page(kind=lambda r: r.choice(list(MIX))),
        "page_class": page(label=lambda r: r.choice(CLASSES)),
        "page_zone": page(zone=lambda r: r.choice(ZONES)),
        "page_line": page(line=lambda r: r.choice(LINES)),
        "page_verdict_defect": page(verdict="DEFECT"),
        "page_deep_cursor": deep,
        "page_deep_cursor_kind": deep_kind,
        "page_day_range": day_range,
        "page_camera_kind_class_day": combo,
        "page_zone_day": zone_day,
        "page_defects_day": defects_day,
        "page_no_tracks": no_tracks,
        "page_no_tracks_camera_day": no_tracks_day,
        "page_no_match_hour": rare_empty,
        "counts_day_by_hour": counts_day_hour,
        "counts_2h_by_minute_camera": counts_2h_minute,
        "counts_all_by_hour_class": counts_all_class,
        "counts_all_by_hour_kind": counts_all_kind,
        "span_zone": span,
        "facets": facets,
    }


def _time(store: EventStore, queries: dict[str, Callable], rounds: int, seed: int, repeats: int
          ) -> dict[str, dict[str, float]]:
    """Per query type: p50 / p95 / max ms. Types are interleaved round by round (a burst of load
    from other processes hits every type alike), and each figure is the median over `repeats`
    independent runs of `rounds` calls."""
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in queries}
    for rep in range(repeats):
        rngs = {name: random.Random(seed + 1000 * rep + i) for i, name in enumerate(queries)}
        for name, q in queries.items():
            q(store, rngs[name])  # warm the page cache and the statement cache
        ms: dict[str, list[float]] = {name: [] for name in queries}
        for _ in range(rounds):
            for name, q in queries.items():
                t = time.perf_counter()
                q(store, rngs[name])
                ms[name].append((time.perf_counter() - t) * 1e3)
        for name, xs in ms.items():
            a = np.array(xs)
            runs[name].append({"p50_ms": float(np.percentile(a, 50)), "p95_ms": float(np.percentile(a, 95)),
                               "max_ms": float(a.max())})
    return {name: {k: round(float(np.median([r[k] for r in rs])), 3) for k in ("p50_ms", "p95_ms", "max_ms")}
            for name, rs in runs.items()}


def benchmark(n_events: int = 100_000, days: float = 7.0, rounds: int = 40, seed: int = 0,
              folder: str | None = None, repeats: int = 3) -> dict[str, Any]:
    end_ts = time.time()
    tmp = tempfile.TemporaryDirectory(prefix="vigil-bench-store-", dir=folder)
    try:
        path = Path(tmp.name) / "events.sqlite3"
        store = EventStore(path, retention_days=days + 30, retention_mb=10_000, max_batch=4096,
                           batch_ms=5, max_queue=n_events + 1)
        load_before = os.getloadavg()[0]
        evs = synth_events(n_events, days, end_ts, seed)
        t = time.perf_counter()
        futs = [store.submit(e) for e in evs]
        ids = [f.result(timeout=600) for f in futs]
        fill_s = time.perf_counter() - t
        queries = _queries(end_ts, days, (min(ids), max(ids)))
        plans = {"page_zone": store.review_explain({"zone": "yard"}),
                 "page_camera_kind_class_day": store.review_explain(
                     {"camera": "street", "kind": "line_crossed", "label": "car"}, since=end_ts - 86400, until=end_ts),
                 "page_zone_day": store.review_explain({"zone": "yard"}, since=end_ts - 86400, until=end_ts)}
        indexed = _time(store, queries, rounds, seed, repeats)
        sizes = store.size_bytes()
        # baseline: the same queries on the same rows without the review indexes
        with sqlite3.connect(str(path), isolation_level=None) as conn:
            for name in REVIEW_INDEXES:
                conn.execute(f"DROP INDEX {name}")
        store.counts_rollup = False  # and counts() groups the events themselves
        baseline = _time(store, queries, max(5, rounds // 4), seed, repeats)
        store.close()
    finally:
        tmp.cleanup()
    worst = max(indexed, key=lambda k: indexed[k]["p95_ms"])
    return {
        "benchmark": "store",
        "events": n_events, "days": days, "rounds": rounds, "repeats": repeats,
        "baseline_rounds": max(5, rounds // 4),
        "fill_s": round(fill_s, 2), "fill_events_per_s": round(n_events / fill_s),
        "db_mb": round(sizes["db"] / 2**20, 1),
        "goal_p95_ms": GOAL_P95_MS,
        "indexed": indexed,
        "without_review_indexes": baseline,
        "p50_ratio_baseline_over_indexed": {k: round(baseline[k]["p50_ms"] / max(indexed[k]["p50_ms"], 1e-3), 1)
                                            for k in indexed},
        "p95_ratio_baseline_over_indexed": {k: round(baseline[k]["p95_ms"] / max(indexed[k]["p95_ms"], 1e-3), 1)
                                            for k in indexed},
        "worst_p95": {"query": worst, "p95_ms": indexed[worst]["p95_ms"]},
        "goal_met": all(v["p95_ms"] < GOAL_P95_MS for v in indexed.values()),
        "plans": plans,
        "load_avg_1m": {"before": round(load_before, 2), "after": round(os.getloadavg()[0], 2)},
    }


def markdown(res: dict[str, Any]) -> str:
    """The BENCHMARKS.md table of one run: p50/p95 per query type, indexed and without."""
    rows = ["| query | p50 ms | p95 ms | p50 without review indexes | p50 ratio |", "|---|---|---|---|---|"]
    base = res.get("without_review_indexes", {})
    for name, v in res["indexed"].items():
        b = base.get(name, {})
        rows.append(f"| {name} | {v['p50_ms']} | {v['p95_ms']} | {b.get('p50_ms', '—')} | "
                    f"{res['p50_ratio_baseline_over_indexed'].get(name, '—')}x |")
    w = res["worst_p95"]
    la = res.get("load_avg_1m", {})
    return "\n".join([
        f"{res['events']:,} events over {res['days']} days, {res['rounds']} rounds x {res['repeats']} "
        f"repeats (medians); worst p95 {w['p95_ms']} ms ({w['query']}), goal p95 < {res['goal_p95_ms']} "
        f"ms: {'met' if res['goal_met'] else 'NOT met'}; fill {res['fill_events_per_s']:,} events/s; "
        f"load {la.get('before')} / {la.get('after')}.", "", *rows])


if __name__ == "__main__":
    import json
    print(json.dumps(benchmark()))
