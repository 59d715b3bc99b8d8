"""/metrics in Prometheus text format, collected through the camera interface at scrape time
(a private registry per app: no global state, nothing to keep in sync)."""
from __future__ import annotations

from typing import Iterator

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

from core.types import SourceState
from runtime import memory

STATES = tuple(s.value for s in SourceState)


class _Collector:
    def __init__(self, vigil, streams=None) -> None:
        self.vigil = vigil
        self.streams = streams  # web.app.StreamSlots (the open-stream cap), if any

    def collect(self) -> Iterator:
        v = self.vigil
        fps = GaugeMetricFamily("vigil_fps", "frames per second by camera and stage", labels=["camera", "stage"])
        frames = CounterMetricFamily("vigil_frames", "frames captured", labels=["camera"])
        drops = CounterMetricFamily("vigil_dropped_frames", "frames replaced before processing (newest-frame policy)", labels=["camera"])
        det_drops = CounterMetricFamily("vigil_detector_dropped_frames", "frames offered to the "
                                        "detector that a newer frame replaced while it was busy",
                                        labels=["camera"])
        errors = CounterMetricFamily("vigil_errors", "errors by camera and stage", labels=["camera", "stage"])
        reconnects = CounterMetricFamily("vigil_reconnects", "times a source came back LIVE", labels=["camera"])
        state = GaugeMetricFamily("vigil_camera_state", "1 for the current state", labels=["camera", "state"])
        det_ms = GaugeMetricFamily("vigil_detector_ms", "median detector time per frame (ms)", labels=["camera"])
        viewers = GaugeMetricFamily("vigil_viewers", "open stream viewers", labels=["camera", "stream"])
        tracks = GaugeMetricFamily("vigil_tracks", "confirmed tracks on the newest frame", labels=["camera"])
        encodes = CounterMetricFamily("vigil_jpeg_encodes", "JPEG encodes", labels=["camera", "stream"])
        latency = HistogramMetricFamily("vigil_latency_seconds", "capture to publish latency", labels=["camera"])
        for name, cam in v.cameras.items():
            st = cam.status()
            cap = st.capture
            for s in STATES:
                state.add_metric([name, s], 1.0 if st.state == s else 0.0)
            if not st.stages:
                continue  # never built (a FailedCamera): only its state
            fps.add_metric([name, "source"], cap.fps)
            for stage in ("detect", "publish"):
                fps.add_metric([name, stage], st.stages[stage].fps)
            frames.add_metric([name], cap.frames_in)
            drops.add_metric([name], cap.dropped)
            det_drops.add_metric([name], st.stages["detect"].dropped)
            errors.add_metric([name, "capture"], cap.errors)
            for stage in ("detect", "track", "publish"):
                errors.add_metric([name, stage], st.stages[stage].errors)
            reconnects.add_metric([name], cap.reconnects)
            if st.stages["detect"].ms_p50 is not None:
                det_ms.add_metric([name], st.stages["detect"].ms_p50)
            for kind, n in st.viewers.items():
                viewers.add_metric([name, kind], n)
            for kind, n in st.encodes.items():
                encodes.add_metric([name, kind], n)
            tracks.add_metric([name], st.tracks)
            latency.add_metric([name], list(st.latency_buckets), st.latency_sum_s)
        yield from (fps, frames, drops, det_drops, errors, reconnects, state, det_ms, viewers, tracks, encodes, latency)
        yield from _pool_families(v)
        yield from _cluster_families(v)
        ev = CounterMetricFamily("vigil_events", "events published", labels=["kind"])
        for kind, n in v.bus.by_kind.items():
            ev.add_metric([kind], n)
        yield ev
        sink_events = CounterMetricFamily("vigil_sink_events", "events by sink and outcome "
                                          "(sent, failed, rejected, retried, dropped, filtered)",
                                          labels=["sink", "name", "outcome"])
        sink_queue = GaugeMetricFamily("vigil_sink_queued", "events waiting in a sink's queue",
                                       labels=["sink", "name"])
        sink_ok = GaugeMetricFamily("vigil_sink_healthy", "1 when the sink delivered since its "
                                    "last failure", labels=["sink", "name"])
        # sinks holding a connection (MQTT): connected, reconnects, every message published
        sink_conn = GaugeMetricFamily("vigil_sink_connected", "1 while the sink is connected to its "
                                      "broker (state and message in /api/sinks)", labels=["sink", "name"])
        sink_reconn = CounterMetricFamily("vigil_sink_reconnects", "times the sink connected again "
                                          "after losing its broker", labels=["sink", "name"])
        sink_msgs = CounterMetricFamily("vigil_sink_messages", "messages published (events, states, "
                                        "counters, discovery)", labels=["sink", "name"])
        for sk in v.sinks():
            for outcome in ("sent", "failed", "rejected", "retried", "dropped", "filtered"):
                sink_events.add_metric([sk["kind"], sk["name"], outcome], sk[outcome])
            sink_queue.add_metric([sk["kind"], sk["name"]], sk.get("queued", 0))
            sink_ok.add_metric([sk["kind"], sk["name"]], 1.0 if sk["healthy"] else 0.0)
            if "connected" in sk:
                sink_conn.add_metric([sk["kind"], sk["name"]], 1.0 if sk["connected"] else 0.0)
                sink_reconn.add_metric([sk["kind"], sk["name"]], sk.get("reconnects", 0))
                sink_msgs.add_metric([sk["kind"], sk["name"]], sk.get("published", 0))
        yield from (sink_events, sink_queue, sink_ok, sink_conn, sink_reconn, sink_msgs)
        yield from _memory_families(v)
        s = self.streams
        if s is not None:
            open_ = GaugeMetricFamily("vigil_stream_slots_open",
                                      "open streams (MJPEG and SSE), each holding a server thread")
            open_.add_metric([], s.open)
            limit = GaugeMetricFamily("vigil_stream_slots_limit",
                                      "most open streams allowed (server.threads - 8)")
            limit.add_metric([], s.limit)
            refused = CounterMetricFamily("vigil_streams_refused",
                                          "streams refused with 503 because every slot was taken")
            refused.add_metric([], s.refused)
            yield from (open_, limit, refused)


def _cluster_families(vigil) -> Iterator:
    """Cluster mode (runtime/cluster.py): per-node series, pending cameras, moves."""
    info_fn = getattr(vigil, "cluster_info", None)
    info = info_fn() if info_fn is not None else None
    if info is None:
        return
    alive = GaugeMetricFamily("vigil_cluster_node_alive", "1 while the node is alive", labels=["node"])
    cap = GaugeMetricFamily("vigil_cluster_node_capacity", "camera slots of the node", labels=["node"])
    cams = GaugeMetricFamily("vigil_cluster_node_cameras", "cameras running on the node", labels=["node"])
    for n in info["nodes"]:
        alive.add_metric([n["name"]], 1.0 if n["alive"] else 0.0)
        cap.add_metric([n["name"]], n["capacity"])
        cams.add_metric([n["name"]], len(n["cameras"]))
    pending = GaugeMetricFamily("vigil_cluster_pending_cameras", "cameras no node can take now")
    pending.add_metric([], len(info["pending"]))
    moves = CounterMetricFamily("vigil_cluster_camera_moves", "times a camera was re-placed on "
                                "another node", labels=["camera"])
    rx = CounterMetricFamily("vigil_cluster_received_bytes", "bytes of status and events the head "
                             "received from the camera's node", labels=["camera"])
    for name, c in info["cameras"].items():
        moves.add_metric([name], c["moves"])
        rx.add_metric([name], c["rx_bytes"])
    yield from (alive, cap, cams, pending, moves, rx)


def _memory_families(vigil) -> Iterator:
    """The memory breakdown of runtime/memory.py: process figures and bytes per component part."""
    rep = memory.collect(vigil)
    p = rep["process"]
    proc = GaugeMetricFamily("vigil_process_memory_bytes", "process memory: rss, and resident "
                             "bytes by mapping kind from /proc/self/smaps (heap, anon, file, stack)",
                             labels=["kind"])
    if p.get("rss_bytes") is not None:
        proc.add_metric(["rss"], p["rss_bytes"])
    for kind, n in (p.get("smaps") or {}).items():
        proc.add_metric([kind], n)
    mal = GaugeMetricFamily("vigil_malloc_bytes", "glibc malloc statistics over every arena "
                            "(mallinfo2): arena, in_use, free, mmap", labels=["kind"])
    for kind in ("arena", "in_use", "free", "mmap"):
        if p.get("malloc"):
            mal.add_metric([kind], p["malloc"][kind])
    parts = GaugeMetricFamily("vigil_memory_bytes", "bytes held by a component's buffers, queues "
                              "and caches, by part (GET /api/memory)",
                              labels=["component", "name", "part"])
    counts = GaugeMetricFamily("vigil_memory_items", "items held by a component part (frames, "
                               "events, JPEG width variants)", labels=["component", "name", "part"])
    limits = GaugeMetricFamily("vigil_memory_limit", "configured cap of a component part (bytes "
                               "for byte parts, items for counted ones)",
                               labels=["component", "name", "part"])
    for r in rep["components"]:
        for fam, key in ((parts, "parts"), (counts, "counts"), (limits, "limits")):
            for part, n in r[key].items():
                fam.add_metric([r["component"], r["name"], part], n)
    yield from (proc, mal, parts, counts, limits)
    tr = rep.get("trim")
    if tr:
        trims = CounterMetricFamily("vigil_malloc_trims", "malloc_trim(0) calls (memory.trim_interval_s)")
        trims.add_metric([], tr["trims"])
        rel = CounterMetricFamily("vigil_malloc_trim_released_bytes", "RSS given back by malloc_trim")
        rel.add_metric([], tr["released_bytes"])
        yield from (trims, rel)


def _pool_families(vigil) -> Iterator:
    """The node's detector pools (stream/pool.py), read from the cameras' status: each pool
    once (from the first camera it serves), and every camera's place in its pool."""
    g = GaugeMetricFamily
    workers = g("vigil_pool_workers", "detector workers of the pool", labels=["pool", "kind"])
    busy = g("vigil_pool_busy_workers", "workers running a request now", labels=["pool"])
    queue = g("vigil_pool_queue", "requests waiting for a worker (one per camera at most)", labels=["pool"])
    inf = g("vigil_pool_inference_ms", "inference time per model call (ms)", labels=["pool", "quantile"])
    batch = g("vigil_pool_batch_size", "frames per model call: mean and max over the recent calls",
              labels=["pool", "stat"])
    restarts = CounterMetricFamily("vigil_pool_restarts", "workers replaced (stuck past "
                                   "pool.timeout_s, or a worker process that died)", labels=["pool"])
    timeouts = CounterMetricFamily("vigil_pool_timeouts", "requests that ran past pool.timeout_s",
                                   labels=["pool"])
    served = CounterMetricFamily("vigil_pool_camera_served", "detector requests of the camera "
                                 "finished by its pool", labels=["camera", "pool"])
    share = g("vigil_pool_camera_share", "the camera's fraction of its pool's finished requests",
              labels=["camera", "pool"])
    seen: set[str] = set()
    for name, cam in vigil.cameras.items():
        p = cam.status().pool
        if not p:
            continue
        pool = p["name"]
        served.add_metric([name, pool], p["camera"].get("served", 0))
        share.add_metric([name, pool], p["camera"].get("share", 0.0))
        if pool in seen:
            continue
        seen.add(pool)
        workers.add_metric([pool, p["kind"]], p["workers"])
        busy.add_metric([pool], p["busy"])
        queue.add_metric([pool], p["queue"])
        for q, key in (("0.5", "inference_ms_p50"), ("0.95", "inference_ms_p95")):
            if p[key] is not None:
                inf.add_metric([pool, q], p[key])
        if p["batch_mean"] is not None:
            batch.add_metric([pool, "mean"], p["batch_mean"])
            batch.add_metric([pool, "max"], p["batch_max"])
        restarts.add_metric([pool], p["restarts"])
        timeouts.add_metric([pool], p["timeouts"])
    yield from (workers, busy, queue, inf, batch, restarts, timeouts, served, share)


class Metrics:
    def __init__(self, vigil, streams=None) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_Collector(vigil, streams))

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
