"""Everything a running Vigil holds: one pipeline per camera, the event bus, the event store
and the sinks. The web layer sees cameras only through the camera interface (`cameras`).

A camera whose pipeline cannot even be built (missing model file, bad detector
parameter) is kept as a FAILED camera with its message; the others run.

Readiness (`readiness()`, served as /readyz): ready when every enabled camera has shown a
frame or reached an end it will not leave by itself (FAILED, ENDED), and at least one camera
works (is not FAILED). A failed camera is listed, and makes the answer `degraded`.
"""
from __future__ import annotations

import dataclasses
import logging
import threading
import time
from typing import Any

from pathlib import Path

from core.camera import Camera
from core.config import VigilConfig
from core.types import Event, EventKind, SourceState
from events.bus import EventBus
from events.mqtt import MqttSink
from events.store import EventStore
from events.webhook import WebhookSink
from runtime.memory import MallocTrimmer
from stream.camera import FailedCamera, LocalCamera
from stream.pipeline import CameraPipeline
from stream.pool import NodePools

log = logging.getLogger("vigil.runtime")


def _set_opencv_threads(n: int) -> None:
    """OpenCV's own thread pool, process-wide. Every camera runs capture, motion, drawing and
    encoding in threads of its own; OpenCV splitting each call over all cores on top of that
    oversubscribes them (a 3-minute soak on 2 cores: 376 frames of the conveyor dropped with 1
    thread, 485-761 with OpenCV's default)."""
    import cv2
    cv2.setNumThreads(n if n > 0 else -1)  # -1: OpenCV's default (0 would mean sequential)


class Vigil:
    def __init__(self, cfg: VigilConfig, bus: EventBus | None = None, persist: bool = True) -> None:
        self.cfg = cfg
        self.store: EventStore | None = None
        self.webhooks: list[WebhookSink] = []
        self.mqtt: MqttSink | None = None
        if bus is None:
            start_id = 0
            if persist:
                ev = cfg.events
                data = Path(cfg.paths.data)
                self.store = EventStore(data / ev.db, retention_days=ev.retention_days,
                                        retention_mb=ev.retention_mb,
                                        snapshots_dir=(data / "snapshots") if ev.snapshots else None)
                start_id = self.store.max_id()
            bus = EventBus(start_id=start_id, links=self._links)
            if self.store is not None:
                bus.add_sink(self.store)
            for wh in cfg.events.webhooks:
                sink = WebhookSink(wh)
                self.webhooks.append(sink)
                bus.add_sink(sink)
            if cfg.mqtt.enabled:  # events/mqtt.py; reads the cameras through their interface
                self.mqtt = MqttSink(cfg.mqtt, cameras=lambda: self.cameras)
                bus.add_sink(self.mqtt)
        self.bus = bus
        self.pipelines: dict[str, CameraPipeline] = {}  # runtime-internal: lifecycle only
        # the node's detector pools, one per detector and model, shared by its cameras
        self.pools = NodePools(cfg.pool, cfg)
        self.failed: dict[str, str] = {}
        self.cameras: dict[str, Camera] = {}  # every enabled camera, in config order
        self.started_at = time.time()
        self._stopped = threading.Event()
        self.trimmer = MallocTrimmer(cfg.memory.trim_interval_s)  # runtime/memory.py

    def start(self) -> "Vigil":
        _set_opencv_threads(self.cfg.pool.opencv_threads)
        self.trimmer.start()
        for cam in self.cfg.cameras:
            if not cam.enabled:
                continue
            try:
                pool = self.pools.pool_for(cam)  # None: a detector of its own (or none)
                p = CameraPipeline(cam, self.cfg, sink=self.bus.publish,
                                   **({"pool": pool} if pool is not None else {}))
                p.start()
                self.pipelines[cam.name] = p
                self.cameras[cam.name] = LocalCamera(p)
            except Exception as e:  # noqa: BLE001 - one camera never stops the others
                msg = f"{type(e).__name__}: {e}" if not str(e).startswith(cam.name) else str(e)
                log.error("[%s] cannot start: %s", cam.name, msg)
                self.failed[cam.name] = msg
                self.cameras[cam.name] = FailedCamera(cam.name, cam.detector, cam.source, msg)
                self.bus.publish(Event(EventKind.CAMERA_STATE, cam.name,
                                       data={"from": "CONNECTING", "to": "FAILED", "message": msg}))
        if self.mqtt is not None:  # connects in the background: an absent broker is a state
            self.mqtt.start()
        return self

    def url(self, path: str) -> str:
        """A path of the web API as readers should follow it (absolute with server.public_url)."""
        base = (self.cfg.server.public_url or "").rstrip("/")
        return base + path

    def snapshot_url(self, event_id: int) -> str:
        return self.url(f"/api/events/{event_id}/snapshot.jpg")

    def _links(self, ev: Event, has_snapshot: bool) -> Event:
        """The event's snapshot link (when the store keeps its snapshot) and an absolute clip
        link: the same payload for the API, SSE and webhooks."""
        changes: dict[str, Any] = {}
        if has_snapshot and self.store is not None and self.store.snapshots_dir is not None:
            changes["snapshot_url"] = self.snapshot_url(ev.id)
        clip = ev.data.get("clip") if ev.data else None
        if isinstance(clip, str) and clip.startswith("/") and self.cfg.server.public_url:
            changes["data"] = {**ev.data, "clip": self.url(clip)}
        return dataclasses.replace(ev, **changes) if changes else ev

    def camera_names(self) -> list[str]:
        return list(self.cameras)

    def camera(self, name: str) -> Camera | None:
        return self.cameras.get(name)

    def readiness(self) -> dict[str, Any]:
        """{"ready", "degraded", "cameras": {name: state}, "failed": [...], "starting": [...]}
        (see the module docstring)."""
        states, failed, starting = {}, [], []
        for name, cam in self.cameras.items():
            st = cam.status()
            states[name] = st.state
            if st.state == SourceState.FAILED:
                failed.append(name)
            elif not st.ready:
                starting.append(name)
        working = len(states) - len(failed)
        return {"ready": not starting and working > 0, "degraded": bool(failed),
                "cameras": states, "failed": failed, "starting": starting}

    def sinks(self) -> list[dict[str, Any]]:
        """Health of every event sink (webhooks, MQTT): counts, queue, last error."""
        return [wh.stats() for wh in self.webhooks] + ([self.mqtt.stats()] if self.mqtt else [])

    def stop(self, timeout: float = 2.0) -> bool:
        if self._stopped.is_set():
            return True
        self._stopped.set()
        self.trimmer.stop()
        deadline = time.monotonic() + timeout
        ok = True
        for p in self.pipelines.values():  # close hubs first so viewers end at once
            p.overlay_hub.close()
            p.exposure_hub.close()
        self.bus.close()
        threads = []
        results: dict[str, bool] = {}
        for name, p in self.pipelines.items():
            t = threading.Thread(target=lambda n=name, pp=p: results.__setitem__(
                n, pp.stop(max(0.1, deadline - time.monotonic()))), daemon=True)
            t.start()
            threads.append(t)
        for t in threads:
            t.join(max(0.05, deadline - time.monotonic() + 0.2))
        ok = all(results.get(n, False) for n in self.pipelines)
        self.pools.close(timeout=max(0.2, deadline - time.monotonic()))  # after the cameras left
        for wh in self.webhooks:
            wh.close(timeout=0.2)
        if self.mqtt is not None:  # the last events, then "offline" and a clean disconnect
            self.mqtt.close(timeout=0.5)
        if self.store is not None:  # flush what the cameras emitted while stopping
            try:
                self.store.close(timeout=max(0.5, deadline - time.monotonic()))
            except Exception:  # noqa: BLE001
                log.exception("closing the event store")
        return ok
