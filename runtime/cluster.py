"""Vigil on a Ray cluster (optional extra: requirements-cluster.txt, `ray==2.60.*`).

What runs where:

- **Worker nodes** (every node with a `camera_slot` resource) run one `NodeHost` actor each,
  started when the node joins, holding the cameras placed there: today's CameraPipeline
  (capture, decode, motion gate, detector, tracker, overlay, encode) and the node's detector
  pools (stream/pool.py) in that actor's process. Pixels stay there: what crosses nodes is
  the camera's status, its new events (with their snapshot JPEG), tracks on request, and the
  JPEG of a stream only while someone on the head watches it.
- **The head** (this process, the Ray driver) runs the `Controller` (desired cameras, placement,
  health, re-placement), the single event writer (the head's EventBus and EventStore, as
  without a cluster) and the dashboard, which sees every camera through the camera interface
  (`RemoteCamera`, core/camera.py).

Placement: a node's capacity is its `camera_slot` resource (`ray start
--resources='{"camera_slot": 8}'`, or cluster.capacity for `local:N`); the controller places
each camera on the host with the most free slots (spread), or on its preferred `node` (a node
declaring the resource `vigil_node:<name>`; `local:N` names them head, worker1..N) while that
node is alive and not full: soft, so while it is gone the camera runs elsewhere. A camera no
node can take is PENDING (listed, readiness 503) until a node with a free slot joins. The
first plan waits (up to 60 s) for every node's host, so it spreads over all of them.

Failure: when a node dies (Ray's health checks, cluster.health_check_*), its host actor dies;
the controller sees the node dead or the actor gone and builds each of its cameras again,
epoch + 1, in the host of a surviving node (already running: a warm process, so this takes
a pipeline's start, not a process's), and publishes a `camera_moved` event {from, to, epoch}. A new epoch's track
ids start at epoch * 1,000,000 + 1 (no id reused). A camera whose *source* fails is not moved:
it reconnects where it is, as without a cluster.

Events: each actor numbers its events 1, 2, ... per epoch and keeps them (bounded ring) until
the head's next poll acknowledges them (`poll(after=seq)`); the head publishes only seq > the
last it took, so a retried poll never duplicates an event. Each stored event's data carries
`delivery: {node, epoch, seq}`. Events a dead node had not yet handed over (at most one poll
interval, 0.25 s) are lost with it.

Bounded everywhere: one poll in flight per camera; one frame call in flight per camera and
stream (the head's relay fetches the newest JPEG once per frame for all its viewers there, and
only while it has viewers); the actor keeps a watched stream drawn only while the head keeps
asking (a lease of 3 s); no object reference is kept past its reply.
"""
from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import pickle
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any, Iterator

from core.camera import (CameraStatus, CaptureStatus, ClipFile, FrameFeed, JpegFrame,
                         StreamKind, TrackList, failed_status)
from core.config import CameraConfig, VigilConfig
from core.types import Event, EventKind
from core.uri import redact_uri

log = logging.getLogger("vigil.cluster")

__all__ = ["ClusterUnavailable", "ClusterVigil", "RemoteCamera", "NodeHost", "HostedCamera", "parse_address",
           "require_ray", "LocalCluster", "local_env", "EPOCH_ID_STRIDE", "NODE_RESOURCE_PREFIX"]

ROOT = Path(__file__).resolve().parent.parent
EPOCH_ID_STRIDE = 1_000_000        # track ids of epoch e start at e * stride + 1
NODE_RESOURCE_PREFIX = "vigil_node:"
SLOT = "camera_slot"
PENDING = "PENDING"
EVENT_RING = 4096                  # events an actor keeps for the head before dropping the oldest
POLL_INTERVAL_S = 0.25
HOST_START_GRACE_S = 60.0          # the first plan waits this long at most for every node's host
LEASE_S = 3.0                      # a watched stream stays drawn this long after the last fetch
INSTALL_HINT = (".venv/bin/pip install -r requirements-cluster.txt -c constraints.txt "
                "(the `cluster` extra: ray==2.60.0)")


class ClusterUnavailable(RuntimeError):
    """Ray is missing, or the cluster could not be started or joined (message for a person)."""


def require_ray():
    try:
        import ray  # noqa: F401
    except ImportError:
        raise ClusterUnavailable(f"--cluster needs Ray, which is not installed: {INSTALL_HINT}") from None
    return ray


def parse_address(address: str | None) -> tuple[str, Any]:
    """A cluster.address as core.config.ClusterConfig validated it (its grammar and bounds live
    there only): "local:N" -> ("local", N); "auto" -> ("auto", None); "HOST:PORT" -> ("address",
    address)."""
    if not address:
        raise ValueError(f"cluster address {address!r}: expected local:N, auto or HOST:PORT")
    if address == "auto":
        return "auto", None
    if address.startswith("local:"):
        return "local", int(address[len("local:"):])
    return "address", address


def _reachable(address: str, timeout: float = 5.0) -> None:
    """A TCP connection to the head's GCS port opens, or ClusterUnavailable (Ray itself would
    retry an unreachable address for minutes)."""
    import socket
    host, _, port = address.rpartition(":")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as e:
        raise ClusterUnavailable(f"cluster {address!r}: cannot reach the Ray head's GCS port "
                                 f"({getattr(e, 'strerror', None) or e}); start it with `ray start "
                                 f"--head` (README, Cluster)") from None


def system_config(cc) -> dict[str, int]:
    """Ray's health-check settings from the cluster section (the head's GCS applies them)."""
    return {"health_check_period_ms": int(cc.health_check_period_ms),
            "health_check_failure_threshold": int(cc.health_check_failure_threshold),
            "health_check_timeout_ms": int(cc.health_check_timeout_ms),
            "health_check_initial_delay_ms": 0}


def local_env() -> None:
    """The environment of a local cluster; set before `import ray` (Ray reads it then)."""
    # every node of a local cluster binds 127.0.0.1 (measured: without it nodes advertise the
    # host's external address); token auth is Ray 2.60's default, named so it stays on
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    os.environ["RAY_AUTH_MODE"] = "token"
    if not (os.environ.get("RAY_AUTH_TOKEN") or os.environ.get("RAY_AUTH_TOKEN_PATH")):
        # a fresh token for this local cluster, inherited by its processes, never on disk
        import secrets
        os.environ["RAY_AUTH_TOKEN"] = secrets.token_hex(32)
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


class LocalCluster:
    """A head and N worker nodes on this machine (ray.cluster_utils, a DeveloperAPI: Ray is
    pinned exactly), every one bound to 127.0.0.1. The head gets cluster.head_capacity slots,
    each worker cluster.capacity. For trying the cluster mode and for tests."""

    def __init__(self, workers: int, cc, head_capacity: int | None = None) -> None:
        local_env()
        ray = require_ray()
        from ray.cluster_utils import Cluster
        self.cc = cc
        head_cap = cc.head_capacity if head_capacity is None else head_capacity
        store = int(cc.object_store_mb) << 20
        self.cluster = Cluster(initialize_head=True, head_node_args={
            "num_cpus": 1, "resources": {SLOT: head_cap, f"{NODE_RESOURCE_PREFIX}head": 1},
            "object_store_memory": store, "include_dashboard": False,
            "_system_config": system_config(cc)})
        self.workers: dict[str, Any] = {}
        self._n = 0
        self._ray = ray
        try:
            for _ in range(workers):
                self.add_worker()
            self.cluster.wait_for_nodes()
        except Exception:
            self.shutdown()
            raise

    @property
    def address(self) -> str:
        return self.cluster.address

    def add_worker(self, capacity: int | None = None, name: str | None = None):
        self._n += 1
        name = name or f"worker{self._n}"
        node = self.cluster.add_node(
            num_cpus=1, resources={SLOT: self.cc.capacity if capacity is None else capacity,
                                   f"{NODE_RESOURCE_PREFIX}{name}": 1},
            object_store_memory=int(self.cc.object_store_mb) << 20)
        self.workers[name] = node
        return node

    def kill_worker(self, name: str) -> None:
        """SIGKILL the node's processes (raylet and its workers): a crash, not a drain."""
        node = self.workers.pop(name)
        self.cluster.remove_node(node, allow_graceful=False)

    def freeze_worker(self, name: str) -> list[int]:
        """SIGSTOP the node's processes (raylet, its workers, its agents): a node that hangs or
        drops off the network without closing a connection, so only Ray's health checks can
        tell it is gone. kill_worker() ends it later."""
        import signal
        pids = self.node_pids(self.workers[name])
        for pid in sorted(pids):
            try:
                os.kill(pid, signal.SIGSTOP)
            except OSError:
                pass
        return sorted(pids)

    @staticmethod
    def node_pids(node: Any) -> set[int]:
        """Every process of a cluster_utils node: its raylet, agents and workers, with their
        children."""
        import psutil
        pids: set[int] = set()
        for procs in node.all_processes.values():
            for info in procs:
                try:
                    p = psutil.Process(info.process.pid)
                    pids.add(p.pid)
                    pids.update(c.pid for c in p.children(recursive=True))
                except psutil.Error:
                    pass
        return pids

    def raylet_pids(self) -> dict[str, int]:
        out = {}
        for name, node in [("head", self.cluster.head_node), *self.workers.items()]:
            try:
                out[name] = int(node.all_processes["raylet"][0].process.pid)
            except Exception:  # noqa: BLE001
                pass
        return out

    def shutdown(self) -> None:
        try:
            self.cluster.shutdown()
        except Exception:  # noqa: BLE001
            log.exception("local cluster shutdown")


# ------------------------------------------------------------------ on the worker nodes
class HostedCamera:
    """One camera's pipeline inside its node's NodeHost actor process."""

    def __init__(self, cam: CameraConfig, cfg: VigilConfig, epoch: int, pool: Any = None) -> None:
        os.chdir(ROOT)  # relative paths (models, samples, data) as on the head
        from stream.camera import LocalCamera
        from stream.pipeline import CameraPipeline
        self.name = cam.name
        self.epoch = int(epoch)
        self._lock = threading.Lock()
        self._events: deque[tuple[int, Event, bytes | None]] = deque()
        self._seq = 0
        self.events_dropped = 0
        self._leases: dict[str, list] = {}  # kind -> [ExitStack, viewer, last use]
        self._stop = threading.Event()
        self.error: str | None = None
        self.pipeline = None
        self.camera = None
        self._cam = cam
        try:
            p = CameraPipeline(cam, cfg, sink=self._on_event,
                               **({"pool": pool} if pool is not None else {}))
            tracker = getattr(p.analyzer, "tracker", None)
            if tracker is not None and hasattr(tracker, "_next_id"):
                tracker._next_id = self.epoch * EPOCH_ID_STRIDE + 1  # a new epoch reuses no id
            p.start()
            self.pipeline, self.camera = p, LocalCamera(p)
        except Exception as e:  # noqa: BLE001 - shown as FAILED, not retried forever
            self.error = f"{type(e).__name__}: {e}"
        threading.Thread(target=self._reap, name=f"lease-{cam.name}", daemon=True).start()

    def _on_event(self, ev: Event, snapshot: bytes | None = None) -> None:
        with self._lock:
            self._seq += 1
            self._events.append((self._seq, ev, snapshot))
            while len(self._events) > EVENT_RING:
                self._events.popleft()
                self.events_dropped += 1

    def poll(self, after: int) -> tuple[CameraStatus, list[tuple[int, Event, bytes | None]], int]:
        """(status, events with seq > after, events dropped); events <= after are forgotten."""
        with self._lock:
            while self._events and self._events[0][0] <= after:
                self._events.popleft()
            events = list(self._events)
            dropped = self.events_dropped
        return self.status(), events, dropped

    def status(self) -> CameraStatus:
        if self.camera is None:
            c = self._cam
            return failed_status(c.name, c.detector, redact_uri(c.source), self.error or "not started")
        return self.camera.status()

    def tracks(self) -> TrackList:
        return self.camera.tracks() if self.camera is not None else TrackList(self.name, None, ())

    def frame(self, kind: str, widths: list[int], timeout: float) -> dict[int, JpegFrame] | None:
        """The next JPEG of `kind` (newer than the last this stream handed out) at each width
        key (0 = full size): the head's relay asks once per frame for all its viewers."""
        if self.camera is None:
            return None
        viewer = self._lease(StreamKind(kind))
        first = viewer.next(timeout=timeout, width=widths[0] or None)
        if first is None:
            return None
        out = {widths[0]: first}
        feed = self.camera.frames(StreamKind(kind))
        for w in widths[1:]:
            f = feed.latest(w or None)
            if f is not None:
                out[w] = f
        return out

    def _lease(self, kind: StreamKind):
        with self._lock:
            lease = self._leases.get(kind.value)
            if lease is None or not lease[1].active:
                stack = contextlib.ExitStack()
                viewer = stack.enter_context(self.camera.frames(kind).subscribe())
                lease = [stack, viewer, time.monotonic()]
                self._leases[kind.value] = lease
            lease[2] = time.monotonic()
            return lease[1]

    def _reap(self) -> None:
        while not self._stop.wait(0.5):
            now = time.monotonic()
            with self._lock:
                old = [k for k, v in self._leases.items() if now - v[2] > LEASE_S]
                stacks = [self._leases.pop(k)[0] for k in old]
            for s in stacks:  # nobody on the head watches: the pipeline stops drawing
                s.close()

    def snapshot(self, kind: str, width: int | None) -> JpegFrame | None:
        return self.camera.snapshot(StreamKind(kind), width) if self.camera is not None else None

    def reset_exposure(self) -> bool:
        return self.camera.reset_exposure() if self.camera is not None else False

    def reset_counters(self) -> bool:
        return self.camera.reset_counters() if self.camera is not None else False

    def clip(self, name: str) -> tuple[ClipFile | None, bytes | None]:
        if self.camera is None:
            return None, None
        c = self.camera.clip(name)
        if c is None or c.state != "ready" or c.path is None:
            return c, None
        return c, Path(c.path).read_bytes()

    def memory(self) -> "CameraMemory":
        if self.camera is not None:
            return self.camera.memory()
        from core.camera import CameraMemory
        return CameraMemory(self.name)

    def stop(self, timeout: float = 2.0) -> bool:
        self._stop.set()
        with self._lock:
            stacks = [v[0] for v in self._leases.values()]
            self._leases.clear()
        for s in stacks:
            s.close()
        return self.pipeline.stop(timeout) if self.pipeline is not None else True


class NodeHost:
    """The actor on one node holding the cameras placed there (ray.remote(NodeHost), pinned to
    its node, threaded). Started when the node joins, so re-placing a camera after a node died
    costs building its pipeline in a warm process, not starting one."""

    def __init__(self, node: str) -> None:
        os.chdir(ROOT)  # relative paths (models, samples, data) as on the head
        import stream.pipeline  # noqa: F401 - warm: the imports are paid now, not at failover
        self.node = node
        self.cams: dict[str, HostedCamera] = {}
        self._lock = threading.Lock()
        self.pools = None  # this node's detector pools (stream/pool.py), made at the first add

    def where(self) -> dict[str, Any]:
        import ray
        return {"node_id": ray.get_runtime_context().get_node_id(), "pid": os.getpid(),
                "node": self.node}

    def add(self, cam: CameraConfig, cfg: VigilConfig, epoch: int) -> dict[str, Any]:
        old = self.cams.pop(cam.name, None)
        if old is not None:
            old.stop(1.0)
        pool = None
        try:
            if self.pools is None:
                from stream.pool import NodePools
                self.pools = NodePools(cfg.pool, cfg)
            pool = self.pools.pool_for(cam)
        except Exception as e:  # noqa: BLE001 - the camera then fails with its own message
            log.error("[%s] detector pool on %s: %s", cam.name, self.node, e)
        hc = HostedCamera(cam, cfg, epoch, pool)
        with self._lock:
            self.cams[cam.name] = hc
        return {"camera": cam.name, "epoch": epoch, "error": hc.error}

    def remove(self, name: str, timeout: float = 2.0) -> bool:
        with self._lock:
            hc = self.cams.pop(name, None)
        return hc.stop(timeout) if hc is not None else True

    def poll(self, cursors: dict[str, int]) -> dict[str, tuple]:
        """{camera: (status, events after its cursor, events dropped)} for the cameras asked."""
        with self._lock:
            cams = {n: self.cams.get(n) for n in cursors}
        return {n: hc.poll(cursors[n]) for n, hc in cams.items() if hc is not None}

    def call(self, name: str, method: str, *args):
        hc = self.cams.get(name)
        if hc is None:
            raise KeyError(f"camera {name!r} is not on node {self.node}")
        return getattr(hc, method)(*args)

    def stop_all(self, timeout: float = 2.0) -> bool:
        with self._lock:
            cams, self.cams = list(self.cams.values()), {}
        results: list[bool] = []
        threads = [threading.Thread(target=lambda c=c: results.append(c.stop(timeout)), daemon=True)
                   for c in cams]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout + 0.5)
        if self.pools is not None:  # after the cameras left
            self.pools.close(timeout=timeout)
        return len(results) == len(cams) and all(results)


# ------------------------------------------------------------------ on the head
class _RelayViewer:
    def __init__(self, feed: "RelayFeed") -> None:
        self.feed = feed
        self._gen = 0
        self._active = True
        self._last = -float("inf")
        self.width_key = 0

    @property
    def active(self) -> bool:
        return self._active and not self.feed.closed

    def cancel(self) -> None:
        with self.feed._cond:
            self._active = False
            self.feed._cond.notify_all()

    def mark_sent(self, nbytes: int) -> None:
        self.feed.bytes_sent += int(nbytes)

    def next(self, timeout: float, width: int | None = None,
             min_interval: float = 0.0) -> JpegFrame | None:
        key = self.feed.key(width)
        deadline = time.monotonic() + timeout
        f = self.feed
        with f._cond:
            if key != self.width_key or self not in f._subs:
                self.width_key = key
            f._ensure_pump()
            while True:
                if not self.active:
                    return None
                frames = f._frames
                if f._gen > self._gen and frames is not None and key in frames \
                        and time.monotonic() >= self._last + min_interval:
                    self._gen = f._gen
                    self._last = time.monotonic()
                    return frames[key]
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                f._cond.wait(min(left, 0.25))


class RelayFeed:
    """The head's FrameFeed for one remote camera and stream kind: while it has viewers, one
    pump thread fetches the newest JPEG (one call in flight; every width its viewers asked
    for in that one call) and hands it to all of them. No viewers, no calls."""

    def __init__(self, cam: "RemoteCamera", kind: StreamKind) -> None:
        self.cam = cam
        self.kind = kind
        self._cond = threading.Condition()
        self._subs: set[_RelayViewer] = set()
        self._frames: dict[int, JpegFrame] | None = None
        self._gen = 0
        self._pump: threading.Thread | None = None
        self.closed = False
        self.fetches = 0
        self.bytes_in = 0
        self.bytes_sent = 0

    @staticmethod
    def key(width: int | None) -> int:
        if not width:
            return 0
        return max(32, (int(width) // 8) * 8)

    @property
    def viewers(self) -> int:
        return len(self._subs)

    @contextlib.contextmanager
    def subscribe(self) -> Iterator[_RelayViewer]:
        v = _RelayViewer(self)
        with self._cond:
            self._subs.add(v)
            self._ensure_pump()
        try:
            yield v
        finally:
            with self._cond:
                v._active = False
                self._subs.discard(v)

    def _ensure_pump(self) -> None:  # caller holds _cond
        if self.closed or (self._pump is not None and self._pump.is_alive()):
            return
        self._pump = threading.Thread(target=self._run, name=f"relay-{self.cam.name}-{self.kind.value}",
                                      daemon=True)
        self._pump.start()

    def _run(self) -> None:
        import ray
        idle_since = None
        while True:
            with self._cond:
                if self.closed:
                    return
                widths = sorted({v.width_key for v in self._subs})
                if not widths:
                    idle_since = idle_since or time.monotonic()
                    if time.monotonic() - idle_since > 1.0:
                        self._pump = None
                        return
                    self._cond.wait(0.2)
                    continue
                idle_since = None
            ref = self.cam._remote("frame", self.kind.value, widths, 1.0)
            if ref is None:
                time.sleep(0.2)
                continue
            try:
                got = ray.get(ref, timeout=5.0)
            except Exception:  # noqa: BLE001 - moved, dying or slow: the controller replaces it
                time.sleep(0.2)
                continue
            if not got:
                continue
            with self._cond:
                self.fetches += 1
                self.bytes_in += sum(len(f.data) for f in got.values())
                self._frames = got
                self._gen += 1
                self._cond.notify_all()

    def latest(self, width: int | None = None) -> JpegFrame | None:
        with self._cond:
            frames = self._frames
        if frames and self.key(width) in frames:
            return frames[self.key(width)]
        return self.cam.snapshot(self.kind, width)

    def close(self) -> None:
        with self._cond:
            self.closed = True
            self._cond.notify_all()


class RemoteCamera:
    """The camera interface (core/camera.py) for a camera living in a NodeHost actor,
    possibly on another node. status() is the controller's newest poll (no call); tracks,
    snapshot, memory and clips are one call each, at most one in flight per camera."""

    def __init__(self, slot: "_Slot") -> None:
        self._slot = slot
        self.name = slot.cam.name
        self._feeds = {k: RelayFeed(self, k) for k in StreamKind}
        self._call_lock = threading.Lock()

    def _remote(self, method: str, *args):
        """An ObjectRef of host.call(camera, method, *args), or None while not placed."""
        s = self._slot
        host = s.host
        if host is None or not s.ready:
            return None
        return host.actor.call.remote(self.name, method, *args)

    def _call(self, method: str, *args, timeout: float = 3.0, default=None):
        import ray
        with self._call_lock:  # one call in flight per camera
            ref = self._remote(method, *args)
            if ref is None:
                return default
            try:
                return ray.get(ref, timeout=timeout)
            except Exception as e:  # noqa: BLE001
                log.debug("[%s] %s failed: %s", self.name, method, e)
                return default

    def status(self) -> CameraStatus:
        s = self._slot
        viewers = {k.value: f.viewers for k, f in self._feeds.items()}
        return dataclasses.replace(s.status, node=s.node if s.ready else None, viewers=viewers)

    def tracks(self) -> TrackList:
        return self._call("tracks", default=TrackList(self.name, None, ()))

    def frames(self, kind: StreamKind) -> FrameFeed | None:
        return self._feeds.get(StreamKind(kind))

    def snapshot(self, kind: StreamKind, width: int | None = None,
                 timeout: float = 2.0) -> JpegFrame | None:
        return self._call("snapshot", StreamKind(kind).value, width, timeout=timeout + 1.0)

    def reset_exposure(self) -> bool:
        return bool(self._call("reset_exposure", default=False))

    def reset_counters(self) -> bool:
        return bool(self._call("reset_counters", default=False))

    def clip(self, name: str) -> ClipFile | None:
        """A ready clip is copied from its node to the head's clips folder once."""
        c, data = self._call("clip", name, timeout=10.0, default=(None, None))
        if c is None or data is None:
            return c
        local = Path(self._slot.cfg.paths.data) / "clips" / "cluster" / self.name / Path(name).name
        if not local.is_file():
            local.parent.mkdir(parents=True, exist_ok=True)
            tmp = local.with_suffix(".part")
            tmp.write_bytes(data)
            tmp.replace(local)
        return ClipFile(c.name, "ready", local)

    def memory(self) -> "CameraMemory":
        from core.camera import CameraMemory  # the memory breakdown (runtime/memory.py)
        return self._call("memory", default=CameraMemory(self.name))

    def close(self) -> None:
        for f in self._feeds.values():
            f.close()


class _Host:
    """The NodeHost actor of one node, as the controller knows it."""

    def __init__(self, node: dict[str, Any], actor) -> None:
        self.node_id = node["id"]
        self.name = node["name"]
        self.capacity = node["capacity"]
        self.actor = actor
        self.ready = False
        self.ready_ref = actor.where.remote()
        self.poll_ref = None
        self.poll_names: list[str] = []
        self.pid: int | None = None
        self.unavailable = 0  # polls in a row that found the actor unreachable


class _Slot:
    """One desired camera: its host, epoch, node, newest status and event cursor."""

    def __init__(self, cam: CameraConfig, cfg: VigilConfig) -> None:
        self.cam = cam
        self.cfg = cfg
        self.host: _Host | None = None
        self.epoch = -1
        self.ready = False
        self.add_ref = None
        self.node: str | None = None
        self.prev_node: str | None = None
        self.lost_at: float | None = None
        self.cursor = 0
        self.placed_at = 0.0
        self.moves = 0
        self.rx_bytes = 0
        self.events_dropped = 0
        self.status = self.pending_status("waiting for a node with a free camera_slot")

    def pending_status(self, message: str) -> CameraStatus:
        c = self.cam
        return CameraStatus(name=c.name, state=PENDING, source=redact_uri(c.source),
                            detector=c.detector, detect_every=c.detect_every,
                            capture=CaptureStatus(state=PENDING, last_error=message),
                            viewers={k.value: 0 for k in StreamKind})


class Controller:
    """The head's control loop: a NodeHost on every live node with camera slots, each desired
    camera placed on one (its preferred node if alive and not full, else the host with the
    most free slots), polled (status + events: one call in flight per host), and re-placed
    when its node dies. Cameras no host can take stay PENDING until one can."""

    def __init__(self, cfg: VigilConfig, publish) -> None:
        import ray
        self.ray = ray
        self.cfg = cfg
        self.publish = publish
        self.slots: dict[str, _Slot] = {c.name: _Slot(c, cfg) for c in cfg.cameras if c.enabled}
        self._host_cls = ray.remote(NodeHost)
        self.hosts: dict[str, _Host] = {}  # node id -> host
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.nodes: list[dict[str, Any]] = []
        self.moves: list[dict[str, Any]] = []
        self.local_pids: dict[str, int] = {}
        self._known: dict[str, tuple[str, int, bool]] = {}  # node id -> (name, slots, head)
        self._placing = False
        self._started = time.monotonic()
        self.refresh_nodes()

    # --------------------------------------------------------- nodes
    def refresh_nodes(self) -> None:
        out = []
        for n in self.ray.nodes():
            res = n.get("Resources") or {}
            names = [k[len(NODE_RESOURCE_PREFIX):] for k in res if k.startswith(NODE_RESOURCE_PREFIX)]
            nid = n["NodeID"]
            if names:
                self._known[nid] = (names[0], int(res.get(SLOT, 0)), "node:__internal_head__" in res)
            # a dead node's resources are gone from the table: its name as last seen alive
            name, cap, head = self._known.get(nid, (nid[:8], int(res.get(SLOT, 0)),
                                                    "node:__internal_head__" in res))
            alive = bool(n.get("Alive"))
            out.append({"id": nid, "name": name, "address": n.get("NodeManagerAddress"),
                        "alive": alive, "capacity": cap if alive else 0, "head": head})
        # a dead node stays listed (alive false) until a live one takes its name
        live = {n["name"] for n in out if n["alive"]}
        self.nodes = [n for n in out if n["alive"] or n["name"] not in live]

    def _sync_hosts(self) -> None:
        alive = {n["id"]: n for n in self.nodes if n["alive"]}
        for node_id in list(self.hosts):
            if node_id not in alive:
                self._host_lost(self.hosts[node_id], "node died")
        for node_id, n in alive.items():
            if node_id not in self.hosts and n["capacity"] > 0:
                from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
                actor = self._host_cls.options(
                    num_cpus=0, max_restarts=0, max_task_retries=0,
                    max_concurrency=16 + 4 * n["capacity"],
                    scheduling_strategy=NodeAffinitySchedulingStrategy(node_id, soft=False),
                ).remote(n["name"])
                self.hosts[node_id] = _Host(n, actor)

    def _host_lost(self, h: _Host, why: str) -> None:
        self.hosts.pop(h.node_id, None)
        try:
            self.ray.kill(h.actor, no_restart=True)
        except Exception:  # noqa: BLE001
            pass
        for s in self.slots.values():
            if s.host is h:
                log.warning("[%s] lost with node %s (%s): placing it again", s.cam.name, h.name, why)
                s.prev_node = s.node if s.ready else (s.prev_node or h.name)
                s.lost_at = time.monotonic()
                s.host, s.ready, s.add_ref, s.node = None, False, None, None
                s.status = s.pending_status(f"re-placing (node {h.name} is gone)")

    # --------------------------------------------------------- placement
    def _choose(self, s: _Slot) -> _Host | None:
        used: dict[str, int] = {}
        for o in self.slots.values():
            if o.host is not None:
                used[o.host.node_id] = used.get(o.host.node_id, 0) + 1
        free = [(h.capacity - used.get(h.node_id, 0), h) for h in self.hosts.values() if h.ready]
        free = [(f, h) for f, h in free if f > 0]
        if not free:
            return None
        if s.cam.node:
            for f, h in free:
                if h.name == s.cam.node:
                    return h
        return max(free, key=lambda fh: (fh[0], -len(fh[1].name), fh[1].name))[1]

    def _place(self, s: _Slot) -> None:
        h = self._choose(s)
        if h is None:
            if s.status.state != PENDING:
                s.status = s.pending_status("waiting for a node with a free camera_slot")
            return
        s.epoch += 1
        s.host, s.ready, s.cursor, s.node = h, False, 0, h.name
        s.placed_at = time.monotonic()
        s.add_ref = h.actor.add.remote(s.cam, self.cfg, s.epoch)

    def _added(self, s: _Slot, info: dict[str, Any]) -> None:
        s.ready, s.add_ref = True, None
        log.info("[%s] placed on %s (epoch %d)", s.cam.name, s.node, s.epoch)
        if s.prev_node is not None and s.prev_node != s.node:
            s.moves += 1
            move = {"from": s.prev_node, "to": s.node, "epoch": s.epoch,
                    "after_s": round(time.monotonic() - (s.lost_at or s.placed_at), 3)}
            self.moves.append({"camera": s.cam.name, **move})
            del self.moves[:-256]
            self.publish(Event(EventKind.CAMERA_MOVED, s.cam.name, data=move), None)
        s.prev_node = None

    def _polled(self, s: _Slot, result) -> None:
        status, events, dropped = result
        s.rx_bytes += len(pickle.dumps(result, protocol=5))
        s.status = status
        s.events_dropped = dropped
        for seq, ev, snap in events:
            if seq <= s.cursor:
                continue  # handed over before: a retried poll never duplicates
            s.cursor = seq
            data = {**ev.data, "delivery": {"node": s.node, "epoch": s.epoch, "seq": seq}}
            self.publish(dataclasses.replace(ev, data=data), snap)

    # --------------------------------------------------------- loop
    def start(self) -> "Controller":
        self._started = time.monotonic()
        self._thread = threading.Thread(target=self._loop, name="cluster-controller", daemon=True)
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.is_set():
            t0 = time.monotonic()
            try:
                self.step()
            except Exception:  # noqa: BLE001 - the loop never dies
                log.exception("cluster controller")
            left = POLL_INTERVAL_S - (time.monotonic() - t0)
            if left > 0:
                self._stop.wait(left)

    def step(self) -> None:
        from ray.exceptions import ActorUnavailableError, RayActorError
        self.refresh_nodes()
        self._sync_hosts()
        # at start, wait (up to HOST_START_GRACE_S) for every node's host, so the first plan
        # spreads over all of them instead of filling whichever started first
        if not self._placing and (all(h.ready for h in self.hosts.values())
                                  or time.monotonic() - self._started > HOST_START_GRACE_S):
            self._placing = True
        for s in self.slots.values():
            if s.host is None and self._placing:
                self._place(s)
        pending: dict[Any, tuple[str, Any]] = {}
        for h in self.hosts.values():
            if not h.ready:
                pending[h.ready_ref] = ("host", h)
                continue
            if h.poll_ref is None:
                names = [s.cam.name for s in self.slots.values() if s.host is h and s.ready]
                if names:
                    h.poll_names = names
                    h.poll_ref = h.actor.poll.remote({n: self.slots[n].cursor for n in names})
            if h.poll_ref is not None:
                pending[h.poll_ref] = ("poll", h)
        for s in self.slots.values():
            if s.add_ref is not None:
                pending[s.add_ref] = ("add", s)
        refs = list(pending)
        if not refs:
            return
        done, _ = self.ray.wait(refs, num_returns=len(refs), timeout=POLL_INTERVAL_S)
        for ref in done:
            what, obj = pending[ref]
            try:
                value = self.ray.get(ref, timeout=1.0)
            except ActorUnavailableError as e:
                # unreachable: a dead process, or a blip on the network. Lost at the second poll
                # in a row that says so (or when Ray's health checks declare the node dead)
                h = obj if what != "add" else obj.host
                if what == "poll":
                    obj.poll_ref = None
                    obj.unavailable += 1
                    if obj.unavailable < 2:
                        continue
                if h is not None and h.node_id in self.hosts:
                    self._host_lost(h, type(e).__name__)
                continue
            except RayActorError as e:
                h = obj if what != "add" else obj.host
                if h is not None and h.node_id in self.hosts:
                    self._host_lost(h, type(e).__name__)
                continue
            except Exception:  # noqa: BLE001
                log.exception("cluster %s", what)
                if what == "poll":
                    obj.poll_ref = None
                elif what == "add":
                    obj.add_ref, obj.host, obj.node = None, None, None
                continue
            if what == "host":
                obj.ready, obj.ready_ref, obj.pid = True, None, value.get("pid")
                log.info("node %s ready (%d camera slots)", obj.name, obj.capacity)
            elif what == "add":
                if obj.host is not None:
                    self._added(obj, value)
            else:
                obj.poll_ref = None
                obj.unavailable = 0
                for name, result in value.items():
                    s = self.slots.get(name)
                    if s is not None and s.host is obj and s.ready:
                        self._polled(s, result)

    def stop(self, timeout: float = 2.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        hosts = [h for h in self.hosts.values() if h.ready]
        refs = [h.actor.stop_all.remote(max(0.2, timeout - 0.5)) for h in hosts]
        if refs:
            try:
                self.ray.wait(refs, num_returns=len(refs), timeout=timeout)
            except Exception:  # noqa: BLE001
                pass
        for h in hosts:  # a last poll: events emitted while stopping are not lost
            names = [s.cam.name for s in self.slots.values() if s.host is h and s.ready]
            if not names:
                continue
            try:
                got = self.ray.get(h.actor.poll.remote({n: self.slots[n].cursor for n in names}),
                                   timeout=1.0)
                for name, result in got.items():
                    self._polled(self.slots[name], result)
            except Exception:  # noqa: BLE001
                pass
        for h in list(self.hosts.values()):
            try:
                self.ray.kill(h.actor, no_restart=True)
            except Exception:  # noqa: BLE001
                pass
        self.hosts.clear()

    def info(self) -> dict[str, Any]:
        """/api/cluster: the nodes with their cameras, the pending cameras, recent moves."""
        by_node: dict[str, list[str]] = {}
        pending = []
        for s in self.slots.values():
            if s.ready and s.node is not None:
                by_node.setdefault(s.node, []).append(s.cam.name)
            else:
                pending.append(s.cam.name)
        hosts = {h.node_id: h for h in self.hosts.values()}
        nodes = []
        for n in self.nodes:
            h = hosts.get(n["id"])
            row = dict(n, cameras=by_node.get(n["name"], []) if n["alive"] else [],
                       host_ready=bool(h and h.ready))
            pid = self.local_pids.get(n["name"]) if n["alive"] else None
            if pid is not None:
                row["raylet_pid"] = pid
            nodes.append(row)
        return {"nodes": nodes, "pending": pending, "moves": self.moves[-32:],
                "cameras": {s.cam.name: {"node": s.node if s.ready else None, "epoch": s.epoch,
                                         "ready": s.ready, "moves": s.moves, "rx_bytes": s.rx_bytes,
                                         "events_dropped": s.events_dropped}
                            for s in self.slots.values()}}


# ------------------------------------------------------------------ the head's runtime
def _vigil_base():
    from runtime.vigil import Vigil
    return Vigil


class ClusterVigil(_vigil_base()):
    """Vigil with its cameras on a Ray cluster (cluster.address: local:N, auto or HOST:PORT):
    the event bus/store, sinks and the web layer as without a cluster; `cameras` are
    RemoteCameras; `cluster_info()` feeds /api/cluster."""

    def __init__(self, cfg: VigilConfig, bus=None, persist: bool = True,
                 local: LocalCluster | None = None) -> None:
        super().__init__(cfg, bus=bus, persist=persist)
        self.local = local
        self._own_local = False
        self.controller: Controller | None = None

    def start(self) -> "ClusterVigil":
        cc = self.cfg.cluster
        kind, arg = parse_address(cc.address)
        if kind == "local" and self.local is None:
            local_env()
        if kind == "address":
            _reachable(arg)
        # a head that answers but not as a Ray GCS: a few attempts, not Ray's 20 (read at import)
        os.environ.setdefault("RAY_NUM_REDIS_GET_RETRIES", "5")
        ray = require_ray()
        trimmer = getattr(self, "trimmer", None)  # runtime/memory.py's malloc trimmer
        if trimmer is not None:
            trimmer.start()
        renv = {"env_vars": {"PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}}
        try:
            if kind == "local" and self.local is None:
                self.local = LocalCluster(arg, cc)
                self._own_local = True
            if os.environ.get("RAY_AUTH_MODE") != "token":
                log.warning("RAY_AUTH_MODE is not 'token': joining a Ray cluster without token "
                            "authentication (README, Cluster: never on an untrusted network)")
            if not ray.is_initialized():
                address = self.local.address if self.local is not None else arg if kind == "address" else "auto"
                ray.init(address=address, runtime_env=renv, include_dashboard=False,
                         logging_level=logging.WARNING, log_to_driver=False)
        except ClusterUnavailable:
            raise
        except Exception as e:  # noqa: BLE001
            if self._own_local and self.local is not None:
                self.local.shutdown()
            raise ClusterUnavailable(f"cluster {cc.address!r}: cannot start or join it: "
                                     f"{type(e).__name__}: {e}") from None
        self.controller = Controller(self.cfg, self.bus.publish)
        if self.local is not None:
            self.controller.local_pids = self.local.raylet_pids()
        for name, s in self.controller.slots.items():
            self.cameras[name] = RemoteCamera(s)
        self.controller.start()
        mqtt = getattr(self, "mqtt", None)  # events/mqtt.py reads the cameras through their interface
        if mqtt is not None:
            mqtt.start()
        return self

    def cluster_info(self) -> dict[str, Any] | None:
        if self.controller is None:
            return None
        if self.local is not None:
            self.controller.local_pids = self.local.raylet_pids()
        return {"address": self.cfg.cluster.address,
                "auth_mode": os.environ.get("RAY_AUTH_MODE", "disabled"), **self.controller.info()}

    def stop(self, timeout: float = 2.0) -> bool:
        if self._stopped.is_set():
            return True
        for cam in self.cameras.values():
            if isinstance(cam, RemoteCamera):
                cam.close()
        if self.controller is not None:
            self.controller.stop(timeout=max(1.0, timeout))
        ok = super().stop(timeout=timeout)
        if self._own_local:
            try:
                import ray
                ray.shutdown()
            except Exception:  # noqa: BLE001
                pass
            self.local.shutdown()
        return ok

