"""Everything a running Vigil holds: one pipeline per camera and the event bus.

A camera whose pipeline cannot even be built (missing model file, bad detector
parameter) is kept as a FAILED entry with its message; the others run.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Any

from core.config import VigilConfig
from core.types import Event, EventKind
from events.bus import EventBus
from stream.pipeline import CameraPipeline

log = logging.getLogger("vigil.runtime")


class Vigil:
    def __init__(self, cfg: VigilConfig, bus: EventBus | None = None) -> None:
        self.cfg = cfg
        self.bus = bus or EventBus()
        self.pipelines: dict[str, CameraPipeline] = {}
        self.failed: dict[str, str] = {}
        self.started_at = time.time()
        self._stopped = threading.Event()

    def start(self) -> "Vigil":
        for cam in self.cfg.cameras:
            if not cam.enabled:
                continue
            try:
                p = CameraPipeline(cam, self.cfg, sink=self.bus.publish)
                p.start()
                self.pipelines[cam.name] = p
            except Exception as e:  # noqa: BLE001 - one camera never stops the others
                msg = f"{type(e).__name__}: {e}" if not str(e).startswith(cam.name) else str(e)
                log.error("[%s] cannot start: %s", cam.name, msg)
                self.failed[cam.name] = msg
                self.bus.publish(Event(EventKind.CAMERA_STATE, cam.name,
                                       data={"from": "CONNECTING", "to": "FAILED", "message": msg}))
        return self

    def camera_names(self) -> list[str]:
        return [c.name for c in self.cfg.cameras if c.enabled]

    def has_camera(self, name: str) -> bool:
        return name in self.pipelines or name in self.failed

    def camera_info(self, name: str) -> dict[str, Any]:
        if name in self.pipelines:
            return self.pipelines[name].snapshot()
        cam = self.cfg.camera(name)
        return {"name": name, "state": "FAILED", "detector": cam.detector,
                "capture": {"state": "FAILED", "last_error": self.failed.get(name)},
                "stages": {}, "latency_ms": {"p50": None, "p95": None},
                "viewers": {"overlay": 0, "exposure": 0}, "tracks": 0, "counters": {}}

    def ready(self) -> bool:
        """Ready when every started camera has produced a frame once (or ended/failed)."""
        return all(p.capture.frames_in > 0 or p.capture.state.value in ("FAILED", "ENDED")
                   for p in self.pipelines.values())

    def stop(self, timeout: float = 2.0) -> bool:
        if self._stopped.is_set():
            return True
        self._stopped.set()
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
        return ok
