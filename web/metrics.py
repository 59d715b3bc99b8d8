"""/metrics in Prometheus text format, collected from the live pipelines at scrape time
(a private registry per app: no global state, nothing to keep in sync)."""
from __future__ import annotations

from typing import Iterator

from prometheus_client import CollectorRegistry, generate_latest, CONTENT_TYPE_LATEST
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

STATES = ("CONNECTING", "LIVE", "STALLED", "RECONNECTING", "FAILED", "ENDED", "STOPPED")


class _Collector:
    def __init__(self, vigil, streams=None) -> None:
        self.vigil = vigil
        self.streams = streams  # web.app.StreamSlots (the open-stream cap), if any

    def collect(self) -> Iterator:
        v = self.vigil
        fps = GaugeMetricFamily("vigil_fps", "frames per second by camera and stage", labels=["camera", "stage"])
        frames = CounterMetricFamily("vigil_frames", "frames captured", labels=["camera"])
        drops = CounterMetricFamily("vigil_dropped_frames", "frames replaced before processing (newest-frame policy)", labels=["camera"])
        errors = CounterMetricFamily("vigil_errors", "errors by camera and stage", labels=["camera", "stage"])
        reconnects = CounterMetricFamily("vigil_reconnects", "times a source came back LIVE", labels=["camera"])
        state = GaugeMetricFamily("vigil_camera_state", "1 for the current state", labels=["camera", "state"])
        det_ms = GaugeMetricFamily("vigil_detector_ms", "median detector time per frame (ms)", labels=["camera"])
        viewers = GaugeMetricFamily("vigil_viewers", "open stream viewers", labels=["camera", "stream"])
        tracks = GaugeMetricFamily("vigil_tracks", "confirmed tracks on the newest frame", labels=["camera"])
        encodes = CounterMetricFamily("vigil_jpeg_encodes", "JPEG encodes", labels=["camera", "stream"])
        latency = HistogramMetricFamily("vigil_latency_seconds", "capture to publish latency", labels=["camera"])
        for name, p in v.pipelines.items():
            cap = p.capture
            fps.add_metric([name, "source"], cap.rate.rate())
            fps.add_metric([name, "detect"], p.detect_stage.rate.rate())
            fps.add_metric([name, "publish"], p.publish_stage.rate.rate())
            frames.add_metric([name], cap.frames_in)
            drops.add_metric([name], cap.slot.dropped)
            errors.add_metric([name, "capture"], cap.errors)
            errors.add_metric([name, "detect"], p.detect_stage.errors)
            errors.add_metric([name, "track"], p.track_stage.errors)
            errors.add_metric([name, "publish"], p.publish_stage.errors)
            reconnects.add_metric([name], cap.reconnects)
            for s in STATES:
                state.add_metric([name, s], 1.0 if cap.state.value == s else 0.0)
            snap = p.detect_stage.snapshot()
            if snap["ms_p50"] is not None:
                det_ms.add_metric([name], snap["ms_p50"])
            viewers.add_metric([name, "overlay"], p.overlay_hub.viewers)
            viewers.add_metric([name, "exposure"], p.exposure_hub.viewers)
            encodes.add_metric([name, "overlay"], p.overlay_hub.encodes)
            encodes.add_metric([name, "exposure"], p.exposure_hub.encodes)
            tracks.add_metric([name], len(p.latest_tracks))
            buckets, total = p.latency.histogram()
            latency.add_metric([name], buckets, total)
        for name in v.failed:
            for s in STATES:
                state.add_metric([name, s], 1.0 if s == "FAILED" else 0.0)
        yield from (fps, frames, drops, errors, reconnects, state, det_ms, viewers, tracks, encodes, latency)
        ev = CounterMetricFamily("vigil_events", "events published", labels=["kind"])
        for kind, n in v.bus.by_kind.items():
            ev.add_metric([kind], n)
        yield ev
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


class Metrics:
    def __init__(self, vigil, streams=None) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_Collector(vigil, streams))

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
