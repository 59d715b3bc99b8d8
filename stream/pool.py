"""One detector pool per node, shared by every camera that uses the same detector and model
(issue 13). The cameras keep what is theirs (the motion gate, the tracker); only the model is
shared.

    pool = DetectorPool(DetectorSpec("yolo", cfg.detectors.yolo), workers=2, kind="processes")
    model = pool.model                       # stands for the detector inside a camera's gate
    client = pool.client("cam1", weight=1.0, max_fps=None)
    client.offer(frame, analyzer.detect)     # the newest frame waits; an older waiting one drops
    client.take()                            # [(frame, detections), ...] finished since last time
    for frame, dets in pool.map(frames, lookahead=4): ...   # offline: in frame order

Kinds of pool:
  threads    N worker threads in this process, each with its own single-threaded detector.
  processes  N worker threads here, each driving one worker process with its own
             single-threaded detector; the image goes through a shared-memory block of the
             worker (multiprocessing.shared_memory), only a small header is pickled per frame.
  batch      one detector (one session per device: the GPU path); requests of many cameras are
             run as one `detect_batch` call, pushed when every camera with a request in flight
             has handed its image in, or after the batch window (about one frame period of the
             fastest camera); a camera with nothing new is never waited for.

A request is the camera's own job (its analyzer's detect(): the camera's gate, then the shared
model through `pool.model`); a worker runs it with its model bound to the thread, so the gate's
state stays per camera (at most one request per camera is in flight). Scheduling: a free worker
takes the waiting request of the camera with the smallest virtual time (weighted fair queuing:
each request served adds 1/weight; a camera that was idle starts at the current clock, so it
gets no burst); a camera with `max_fps` is not served more often than that.

Failures: a request running past `timeout_s` marks its worker stuck: the request fails (the
camera goes on: its tracker predicts), the worker is replaced by a fresh one (a stuck worker
process is killed) and `restarts` counts it; a worker process that dies is restarted too. A
detector exception is an error of that request only.
"""
from __future__ import annotations

import itertools
import logging
import multiprocessing as mp
import os
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np

from core.types import Detections, Frame
from detectors.base import build as build_detector
from detectors.base import detect_batch, frame_meta, single_thread_overrides
from stream.frameloop import StageCounters, Update
from stream.slot import LatestSlot
from stream.stats import RateMeter

__all__ = ["DetectorSpec", "DetectorPool", "NodePools", "PoolClient", "PooledModel", "PoolError",
           "WorkerStuck", "default_workers"]

log = logging.getLogger("vigil.pool")

Job = Callable[[Any], Detections]

_local = threading.local()  # .runner: the model of the worker thread running a request


class PoolError(RuntimeError):
    """A request could not be run (pool closed, worker crashed or stuck)."""


class WorkerStuck(PoolError):
    """The request ran past the pool's deadline; its worker was replaced."""


def default_workers() -> int:
    """Workers for `workers: auto`: one per core this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


@dataclass(frozen=True)
class DetectorSpec:
    """What a worker builds: a registry name and its config section, with the single-thread
    overrides (detectors.base.single_thread_overrides) applied when `single_thread` is set.
    Picklable, so a worker process builds the same detector."""

    kind: str
    section: Any = None
    single_thread: bool = True

    def build(self) -> Any:
        sec = self.section
        over = single_thread_overrides(self.kind) if self.single_thread else {}
        if over:
            if sec is None:
                sec = over
            elif isinstance(sec, dict):
                sec = {**sec, **over}
            else:
                sec = sec.model_copy(update=over)
        return build_detector(self.kind, sec)

    def key(self) -> tuple[str, str]:
        """Cameras whose specs have equal keys share one pool."""
        sec = self.section
        if sec is None:
            dumped = ""
        elif isinstance(sec, dict):
            dumped = repr(sorted(sec.items()))
        else:
            dumped = sec.model_dump_json()
        return self.kind, dumped

    def __call__(self) -> Any:
        return self.build()


class _Ms:
    """Bounded window of durations (ms) with p50/p95."""

    def __init__(self, n: int = 512) -> None:
        self.v: deque[float] = deque(maxlen=n)

    def add(self, seconds: float) -> None:
        self.v.append(seconds * 1000.0)

    def pct(self) -> tuple[float | None, float | None]:
        if not self.v:
            return None, None
        a = np.fromiter(self.v, float)
        return round(float(np.median(a)), 3), round(float(np.percentile(a, 95)), 3)


# ------------------------------------------------------------------------------ requests
class _Request:
    __slots__ = ("client", "frame", "fn", "gen", "started", "done", "dets", "error", "index")

    def __init__(self, client: "PoolClient", frame: Any, fn: Job, index: int = 0) -> None:
        self.client = client
        self.frame = frame
        self.fn = fn
        self.gen = 0
        self.started = 0.0
        self.done = threading.Event()
        self.dets: Detections | None = None
        self.error: BaseException | None = None
        self.index = index


class PoolClient:
    """One camera's (or one map()'s) place in the pool: its waiting frame (a LatestSlot:
    the newest only, replaced ones counted in `slot.dropped`), its request in flight, its
    finished results (`results_dropped` counts those overwritten before take())."""

    def __init__(self, pool: "DetectorPool", name: str, weight: float = 1.0,
                 max_fps: float | None = None, results: int = 8, fifo: bool = False,
                 max_inflight: int = 1) -> None:
        if not weight > 0:
            raise ValueError(f"{name}: pool weight must be > 0, got {weight}")
        self.pool = pool
        self.name = name
        self.weight = float(weight)
        self.min_interval = 1.0 / max_fps if max_fps else 0.0
        self.slot: LatestSlot[Any] = LatestSlot()
        self._fn: Job | None = None
        self.fifo = fifo
        self._queue: deque[_Request] = deque()  # fifo clients (map)
        self.max_inflight = max_inflight
        self.inflight = 0
        self.vtime = 0.0
        self.next_at = 0.0
        self.last_served = 0
        self.stage = StageCounters()   # requests finished: processed, errors, ms (queue + run)
        self.timeouts = 0
        self.served = 0
        self.offers = RateMeter()
        self.results_dropped = 0
        self._results: deque[Update] = deque(maxlen=results)
        self.closed = False

    # -- camera side ----------------------------------------------------------------------
    def offer(self, frame: Frame, fn: Job) -> None:
        """Hand `frame` in to be run through `fn` (the camera's detect); a frame still waiting
        is replaced (a drop)."""
        self._fn = fn
        self.offers.tick()
        self.slot.put(frame)
        self.pool._wake()

    def take(self) -> list[Update]:
        """The results finished since the last call, oldest first, each with its frame."""
        out: list[Update] = []
        while self._results:
            out.append(self._results.popleft())
        return out

    @property
    def dropped(self) -> int:
        return self.slot.dropped + self.results_dropped

    def close(self) -> None:
        self.pool._remove(self)

    # -- pool side (under the pool's lock) ------------------------------------------------
    def _waiting(self) -> bool:
        if self.fifo:
            return bool(self._queue)
        s = self.slot
        return s.put_count - s.taken - s.dropped > 0

    def _pop(self) -> _Request:
        if self.fifo:
            return self._queue.popleft()
        frame = self.slot.get(timeout=0)
        return _Request(self, frame, self._fn)  # type: ignore[arg-type]

    def _finish(self, req: _Request) -> None:
        if req.error is None and req.dets is not None and not self.fifo:
            if len(self._results) == self._results.maxlen:
                self.results_dropped += 1
            self._results.append((req.frame, req.dets))

    def stats(self) -> dict[str, Any]:
        s = self.stage.snapshot()
        total = max(1, self.pool._served_total)
        return {"weight": self.weight, "max_fps": round(1.0 / self.min_interval, 3) if self.min_interval else None,
                "served": self.served, "share": round(self.served / total, 4),
                "dropped": self.dropped, "errors": s["errors"], "timeouts": self.timeouts,
                "in_flight": self.inflight, "waiting": self._waiting(), "fps": s["fps"],
                "ms_p50": s["ms_p50"], "ms_p95": s["ms_p95"]}


# ------------------------------------------------------------------------------ models
class PooledModel:
    """What a camera's analyzer holds instead of its own detector (inside its motion gate when
    it has one): detect() runs on the model of the pool worker running the camera's request;
    called outside a worker (a direct call) it goes through the pool as a request of its own.
    close() is the pool's business: here it does nothing."""

    def __init__(self, pool: "DetectorPool", name: str, class_names: list[str]) -> None:
        self._pool = pool
        self.name = name
        self.class_names = list(class_names)

    def detect(self, frame: Frame | np.ndarray) -> Detections:
        runner = getattr(_local, "runner", None)
        if runner is None or getattr(_local, "pool", None) is not self._pool:
            return self._pool.call(frame)
        return runner(frame)

    def close(self) -> None:
        """The pool owns the model (DetectorPool.close)."""


class _ThreadModel:
    """A worker's own in-process detector."""

    def __init__(self, pool: "DetectorPool", det: Any = None) -> None:
        self.pool = pool
        self.det = pool.factory() if det is None else det

    def __call__(self, frame: Any) -> Detections:
        t0 = time.perf_counter()
        try:
            return self.det.detect(frame)
        finally:
            self.pool._record_inference(time.perf_counter() - t0, 1)

    def close(self) -> None:
        close = getattr(self.det, "close", None)
        if close is not None:
            close()


def _child_main(conn: Any, spec: DetectorSpec) -> None:  # pragma: no cover - in the child
    """A worker process: build the detector single-threaded, then answer detect requests whose
    images lie in shared memory blocks named by the parent."""
    from multiprocessing import shared_memory
    try:
        import cv2
        cv2.setNumThreads(1)
    except Exception:  # noqa: BLE001
        pass
    try:
        det = spec.build()
    except BaseException as e:  # noqa: BLE001
        conn.send(("failed", f"{type(e).__name__}: {e}"))
        return
    conn.send(("ready", getattr(det, "name", spec.kind), list(getattr(det, "class_names", []) or [])))
    blocks: dict[str, Any] = {}
    try:
        while True:
            try:
                msg = conn.recv()
            except (EOFError, OSError):
                break
            if msg[0] == "close":
                break
            _, name, shape, dtype = msg
            shm = blocks.get(name)
            if shm is None:
                for old in blocks.values():
                    old.close()
                blocks.clear()
                # a spawned child shares the parent's resource tracker: the parent, which
                # created the block, unlinks it once (attaching registers the same name again)
                shm = shared_memory.SharedMemory(name=name)
                blocks[name] = shm
            img = np.ndarray(shape, dtype=np.dtype(dtype), buffer=shm.buf)
            t0 = time.perf_counter()
            try:
                dets = det.detect(img)
                conn.send(("ok", dets, time.perf_counter() - t0))
            except Exception as e:  # noqa: BLE001
                conn.send(("error", f"{type(e).__name__}: {e}", time.perf_counter() - t0))
            del img
    finally:
        for shm in blocks.values():
            try:
                shm.close()
            except Exception:  # noqa: BLE001
                pass
        close = getattr(det, "close", None)
        if close is not None:
            close()


class _ProcessModel:
    """A worker process and the shared-memory block its images go through (grown when a
    larger image comes). The constructor starts the process; ready() waits for its detector."""

    def __init__(self, pool: "DetectorPool", wait: bool = True) -> None:
        self.pool = pool
        ctx = mp.get_context("spawn")  # never fork a process that runs threads
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_child_main, args=(child, pool.spec),
                                name=f"vigil-pool-{pool.name}", daemon=True)
        self.proc.start()
        child.close()
        self.shm: Any = None
        self.name, self.class_names = pool.name, []
        if wait:
            self.ready()

    def ready(self) -> "_ProcessModel":
        pool = self.pool
        if not self.conn.poll(pool.start_timeout_s):
            self.kill()
            raise PoolError(f"pool {pool.name}: worker process did not start in "
                            f"{pool.start_timeout_s:.0f} s")
        try:
            msg = self.conn.recv()
        except (EOFError, OSError):
            self.kill()
            raise PoolError(f"pool {pool.name}: worker process died while starting") from None
        if msg[0] != "ready":
            self.kill()
            raise PoolError(f"pool {pool.name}: worker process failed: {msg[1]}")
        self.name, self.class_names = msg[1], msg[2]
        return self

    def __call__(self, frame: Any) -> Detections:
        from multiprocessing import shared_memory
        seq, ts = frame_meta(frame)
        img = frame.image if isinstance(frame, Frame) else frame
        img = np.ascontiguousarray(img)
        if self.shm is None or self.shm.size < img.nbytes:
            self._release_shm()
            self.shm = shared_memory.SharedMemory(create=True, size=max(img.nbytes, 1 << 16))
        np.ndarray(img.shape, img.dtype, buffer=self.shm.buf)[...] = img
        try:
            self.conn.send(("detect", self.shm.name, img.shape, img.dtype.str))
            msg = self.conn.recv()
        except (EOFError, OSError, BrokenPipeError) as e:
            raise _Crashed(f"worker process {self.proc.pid} ended "
                           f"(exit code {self.proc.exitcode})") from e
        self.pool._record_inference(msg[2], 1)
        if msg[0] == "error":
            raise PoolError(msg[1])
        dets: Detections = msg[1]
        return dets.with_frame(seq, ts) if dets.frame_seq != seq else dets

    def _release_shm(self) -> None:
        if self.shm is not None:
            try:
                self.shm.close()
                self.shm.unlink()
            except Exception:  # noqa: BLE001
                pass
            self.shm = None

    def kill(self) -> None:
        try:
            if self.proc.is_alive():
                self.proc.kill()
            self.proc.join(2.0)
        except Exception:  # noqa: BLE001
            pass
        try:
            self.conn.close()
        except Exception:  # noqa: BLE001
            pass
        self._release_shm()

    def close(self) -> None:
        try:
            self.conn.send(("close",))
            self.proc.join(2.0)
        except Exception:  # noqa: BLE001
            pass
        self.kill()


class _Crashed(PoolError):
    """The worker process died under a request."""


# ------------------------------------------------------------------------------ workers
class _Worker:
    def __init__(self, pool: "DetectorPool", wid: int, model: Any = None) -> None:
        self.pool = pool
        self.wid = wid
        self.gen = next(pool._gens)
        self.req: _Request | None = None
        self.abandoned = False
        self.model: Any = model  # built by the thread itself when not given
        self.thread = threading.Thread(target=self._run, name=f"pool-{pool.name}-{wid}", daemon=True)

    def _run(self) -> None:
        pool = self.pool
        try:
            if self.model is None:
                self.model = pool._new_model()
        except Exception as e:  # noqa: BLE001
            log.error("pool %s: worker %d cannot build its detector: %s", pool.name, self.wid, e)
            pool._worker_failed(self, e)
            return
        _local.runner = self._call
        _local.pool = pool
        try:
            while True:
                req = pool._next(self)
                if req is None:
                    break
                if req is _RESTART:  # its worker process died while idle
                    if pool._closed:
                        break
                    log.error("pool %s: worker %d: process %s ended (exit code %s); restarting it",
                              pool.name, self.wid, self.model.proc.pid, self.model.proc.exitcode)
                    pool._restart_model(self)
                    if self.model is None:
                        break
                    continue
                t0 = time.perf_counter()
                try:
                    req.dets = req.fn(req.frame)
                except _Crashed as e:
                    req.error = e
                    if pool._closed:  # close() ended the process under this request
                        log.debug("pool %s: worker %d: %s while closing", pool.name, self.wid, e)
                    elif not self.abandoned:  # (a stuck worker's process is killed by the watchdog)
                        log.error("pool %s: worker %d: %s; restarting it", pool.name, self.wid, e)
                        pool._restart_model(self)
                except Exception as e:  # noqa: BLE001
                    req.error = e
                    if not self.abandoned:
                        log.exception("[%s] detector failed on seq %s", req.client.name,
                                      getattr(req.frame, "seq", "?"))
                pool._done(self, req, time.perf_counter() - t0)
                if self.abandoned:
                    break
        finally:
            _local.runner = None
            _local.pool = None
            if self.model is not None:
                try:
                    self.model.close()
                except Exception:  # noqa: BLE001
                    log.exception("pool %s: closing worker %d", pool.name, self.wid)

    def _call(self, frame: Any) -> Detections:
        return self.model(frame)

    def dead(self) -> bool:
        """Its worker process ended (checked while it waits for work)."""
        m = self.model
        return isinstance(m, _ProcessModel) and not m.proc.is_alive()


class _Batcher:
    """Batch kind: one model; the request threads hand images in; one thread runs them as
    batches (detectors.base.detect_batch)."""

    def __init__(self, pool: "DetectorPool", det: Any) -> None:
        self.pool = pool
        self.model = det
        self.items: list[tuple[Any, list]] = []  # (image, [dets|exc, event])
        self.gen = next(pool._gens)
        self.started = 0.0
        self.running: list[tuple[Any, list]] = []
        self.abandoned = False
        self.thread = threading.Thread(target=self._run, name=f"pool-{pool.name}-batch", daemon=True)

    def __call__(self, frame: Any) -> Detections:
        box: list[Any] = [None, threading.Event()]
        pool = self.pool
        with pool._cond:
            if self.abandoned:  # replaced after a stuck batch; the new one is being built
                raise PoolError("batch runner restarting")
            self.items.append((frame, box))
            pool._cond.notify_all()
        box[1].wait()
        if isinstance(box[0], BaseException):
            raise box[0]
        return box[0]

    def _run(self) -> None:
        pool = self.pool
        cond = pool._cond
        while True:
            with cond:
                while not self.items and not pool._closed and not self.abandoned:
                    cond.wait(0.5)
                if pool._closed or self.abandoned:
                    batch, self.items = self.items, []
                    for _, box in batch:
                        box[0] = PoolError("pool closed")
                        box[1].set()
                    break
                first = time.monotonic()
                deadline = first + pool.batch_window_s()
                # full: every request in flight has handed its image in (a camera with nothing
                # new has no request, so it is never waited for), or max_batch
                while (len(self.items) < min(pool.max_batch, pool._demand())
                       and not pool._closed and not self.abandoned):
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    cond.wait(left)
                batch, self.items = self.items[:pool.max_batch], self.items[pool.max_batch:]
                self.running = batch
                self.started = time.monotonic()
            t0 = time.perf_counter()
            try:
                out: list[Any] = detect_batch(self.model, [f for f, _ in batch])
            except Exception as e:  # noqa: BLE001
                out = [e] * len(batch)
            dt = time.perf_counter() - t0
            with cond:
                self.running = []
                self.started = 0.0
                if self.abandoned:  # the watchdog failed these already
                    break
            pool._record_inference(dt, len(batch))
            for (frame, box), dets in zip(batch, out):
                if isinstance(dets, Detections):
                    seq, ts = frame_meta(frame)
                    if dets.frame_seq != seq:
                        dets = dets.with_frame(seq, ts)
                box[0] = dets
                box[1].set()
        close = getattr(self.model, "close", None)
        if close is not None:
            try:
                close()
            except Exception:  # noqa: BLE001
                pass


_RESTART = object()  # _next's answer to a worker whose process died while it waited


class _JobThread:
    """Batch kind: runs one request at a time (the camera's gate, then the batched model)."""

    def __init__(self, pool: "DetectorPool", wid: int) -> None:
        self.pool = pool
        self.wid = wid
        self.req: _Request | None = None
        self.abandoned = False
        self.gen = 0
        self.thread = threading.Thread(target=self._run, name=f"pool-{pool.name}-job{wid}", daemon=True)

    def dead(self) -> bool:
        return False

    def _run(self) -> None:
        pool = self.pool
        _local.pool = pool
        _local.runner = lambda frame: pool._batcher(frame)
        while True:
            req = pool._next(self)
            if req is None:
                break
            t0 = time.perf_counter()
            try:
                req.dets = req.fn(req.frame)
            except Exception as e:  # noqa: BLE001
                req.error = e
                if isinstance(e, WorkerStuck):  # its batch ran past the deadline
                    with pool._cond:
                        req.client.timeouts += 1
                elif not isinstance(e, PoolError):
                    log.exception("[%s] detector failed", req.client.name)
            pool._done(self, req, time.perf_counter() - t0)


# ------------------------------------------------------------------------------ the pool
class DetectorPool:
    """See the module docstring. `factory` builds one detector (a DetectorSpec, which a
    worker process can build too; any callable for threads and batch)."""

    KINDS = ("threads", "processes", "batch")

    def __init__(self, factory: Callable[[], Any], workers: int = 1, kind: str = "threads",
                 name: str | None = None, timeout_s: float = 10.0,
                 batch_window_ms: float | None = None, max_batch: int = 16,
                 start_timeout_s: float = 60.0) -> None:
        if kind not in self.KINDS:
            raise ValueError(f"pool kind must be one of {self.KINDS}, got {kind!r}")
        if kind == "processes" and not isinstance(factory, DetectorSpec):
            raise ValueError("a process pool needs a DetectorSpec (its workers build the detector)")
        self.factory = factory
        self.spec = factory if isinstance(factory, DetectorSpec) else None
        self.kind = kind
        self.name = name or (self.spec.kind if self.spec else "pool")
        self.n_workers = max(1, int(workers))
        self.timeout_s = float(timeout_s)
        self.start_timeout_s = float(start_timeout_s)
        self.batch_window_ms = batch_window_ms
        self.max_batch = max(1, int(max_batch))
        self._cond = threading.Condition()
        self._clients: list[PoolClient] = []
        self._closed = False
        self._gens = itertools.count(1)
        self._serial = itertools.count(1)
        self._vclock = 0.0
        self._served_total = 0
        self._running_jobs = 0
        self.restarts = 0
        self.timeouts = 0
        self.errors = 0
        self.inference = _Ms()
        self.batch_sizes: deque[int] = deque(maxlen=512)
        self.batches = 0
        self._workers: list[Any] = []
        self._batcher: _Batcher | None = None
        self._direct: PoolClient | None = None
        # the model's name and classes, from a probe detector (the first worker's, in threads)
        prebuilt: list[Any] = []
        if kind == "processes":  # started side by side, then waited for
            procs = [_ProcessModel(self, wait=False) for _ in range(self.n_workers)]
            try:
                prebuilt = [m.ready() for m in procs]
            except Exception:
                for m in procs:
                    m.kill()
                raise
            det_name, classes = prebuilt[0].name, prebuilt[0].class_names
        else:
            det = factory()
            det_name = getattr(det, "name", self.name)
            classes = list(getattr(det, "class_names", []) or [])
            if kind == "batch":
                self._init_batcher(det)
            else:
                prebuilt = [_ThreadModel(self, det)]
        self.model = PooledModel(self, det_name, classes)
        if kind == "batch":
            for i in range(max(self.n_workers, 4)):
                self._start_job_thread()
        else:
            for i in range(self.n_workers):
                self._start_worker(i, prebuilt[i] if i < len(prebuilt) else None)
        self._watch_stop = threading.Event()
        self._watchdog = threading.Thread(target=self._watch, name=f"pool-{self.name}-watch", daemon=True)
        self._watchdog.start()
        log.info("pool %s: %s x %d (%s)", self.name, kind, self.n_workers if kind != "batch" else 1,
                 det_name)

    # -- construction helpers ---------------------------------------------------------------
    def _init_batcher(self, det: Any) -> None:
        self._batcher = _Batcher(self, det)
        self._batcher.thread.start()

    def _new_model(self) -> Any:
        if self.kind == "processes":
            return _ProcessModel(self)
        return _ThreadModel(self)

    def _start_worker(self, wid: int, model: Any = None) -> _Worker:
        w = _Worker(self, wid, model)
        self._workers.append(w)
        w.thread.start()
        return w

    def _start_job_thread(self) -> None:
        j = _JobThread(self, len(self._workers))
        self._workers.append(j)
        j.thread.start()

    # -- clients ------------------------------------------------------------------------------
    def client(self, name: str, weight: float = 1.0, max_fps: float | None = None) -> PoolClient:
        c = PoolClient(self, name, weight=weight, max_fps=max_fps)
        self._add(c)
        return c

    def _add(self, c: PoolClient) -> None:
        with self._cond:
            if self._closed:
                raise PoolError(f"pool {self.name} is closed")
            c.vtime = self._vclock
            self._clients.append(c)
            if self.kind == "batch":  # a request thread per camera that may be waiting
                want = min(64, sum(x.max_inflight for x in self._clients))
                while sum(1 for w in self._workers if not w.abandoned) < want:
                    self._start_job_thread()

    def _remove(self, c: PoolClient) -> None:
        with self._cond:
            c.closed = True
            if c in self._clients:
                self._clients.remove(c)
            c.slot.close()

    @property
    def clients(self) -> list[PoolClient]:
        with self._cond:
            return list(self._clients)

    def _wake(self) -> None:
        with self._cond:
            self._cond.notify_all()

    # -- scheduling (workers) ------------------------------------------------------------------
    def _pick(self, now: float) -> tuple[PoolClient | None, float | None]:
        best: PoolClient | None = None
        wait: float | None = None
        for c in self._clients:
            if c.inflight >= c.max_inflight or not c._waiting():
                continue
            if c.next_at > now:
                left = c.next_at - now
                wait = left if wait is None else min(wait, left)
                continue
            v = max(c.vtime, self._vclock)
            if best is None or (v, c.last_served) < (max(best.vtime, self._vclock), best.last_served):
                best = c
        return best, wait

    def _demand(self) -> int:
        """(under the lock) Requests running now plus those waiting to be taken: the most
        images the next batch can hold without waiting for a camera with nothing new."""
        now = time.monotonic()
        n = self._running_jobs
        for c in self._clients:
            free = c.max_inflight - c.inflight
            if free <= 0 or c.next_at > now:
                continue
            n += min(free, len(c._queue)) if c.fifo else int(c._waiting())
        return n

    def _next(self, worker: Any) -> _Request | None:
        """Wait for the next request for `worker` (None: the pool closed or the worker was
        replaced)."""
        with self._cond:
            worker.req = None
            while True:
                if self._closed or worker.abandoned:
                    return None
                if worker.dead():
                    return _RESTART  # type: ignore[return-value]
                now = time.monotonic()
                c, wait = self._pick(now)
                if c is not None:
                    break
                self._cond.wait(0.5 if wait is None else min(0.5, wait))
            req = c._pop()
            c.vtime = max(c.vtime, self._vclock)
            self._vclock = c.vtime
            c.vtime += 1.0 / c.weight
            c.last_served = next(self._serial)
            c.inflight += 1
            if c.min_interval:
                c.next_at = now + c.min_interval
            req.gen = worker.gen
            req.started = time.monotonic()
            worker.req = req
            self._running_jobs += 1
            return req

    def _done(self, worker: Any, req: _Request, seconds: float) -> None:
        with self._cond:
            worker.req = None
            if req.gen != worker.gen or req.done.is_set():  # failed by the watchdog meanwhile
                return
            self._finish(req, seconds)

    def _finish(self, req: _Request, seconds: float) -> None:
        c = req.client
        c.inflight -= 1
        self._running_jobs -= 1
        self._served_total += 1
        c.served += 1
        if req.error is not None:
            c.stage.errors += 1
            self.errors += 1
        else:
            c.stage.record(seconds)
        c._finish(req)
        req.done.set()
        self._cond.notify_all()

    # -- failures --------------------------------------------------------------------------------
    def _watch(self) -> None:
        # its own timer, not the pool's condition: that one is notified on every offer and
        # every finished request (~130 a second at 8 cameras), and each wake took the lock
        # and walked the workers for nothing (0.1 ms of server CPU per frame)
        period = max(0.02, min(0.25, self.timeout_s / 4))
        while not self._watch_stop.wait(period):
            with self._cond:
                if self._closed:
                    return
                now = time.monotonic()
                for w in list(self._workers):
                    req = w.req
                    if (req is not None and not w.abandoned and not req.done.is_set()
                            and req.gen == w.gen and now - req.started > self.timeout_s):
                        if isinstance(w, _JobThread):
                            continue  # its model call is judged by the batcher's deadline
                        self._stuck(w, req, now)
                b = self._batcher
                if (b is not None and b.running and b.started and not b.abandoned
                        and now - b.started > self.timeout_s):
                    self._stuck_batcher(b, now)

    def _stuck(self, w: Any, req: _Request, now: float) -> None:
        """(under the lock) `w` ran `req` past the deadline: fail it, replace the worker."""
        log.error("pool %s: worker %d stuck %.1f s on a request of %s; replacing it",
                  self.name, w.wid, now - req.started, req.client.name)
        w.abandoned = True
        req.error = WorkerStuck(f"request ran past {self.timeout_s:g} s")
        self.timeouts += 1
        req.client.timeouts += 1
        self.restarts += 1
        self._finish(req, now - req.started)
        self._workers.remove(w)
        if isinstance(w.model, _ProcessModel):
            threading.Thread(target=w.model.kill, daemon=True).start()
        nw = _Worker(self, w.wid)
        self._workers.append(nw)
        nw.thread.start()

    def _stuck_batcher(self, b: _Batcher, now: float) -> None:
        log.error("pool %s: batch of %d stuck %.1f s; replacing the batch runner", self.name,
                  len(b.running), now - b.started)
        b.abandoned = True
        self.timeouts += 1
        self.restarts += 1
        err = WorkerStuck(f"batch ran past {self.timeout_s:g} s")
        for _, box in b.running + b.items:
            box[0] = err
            box[1].set()
        b.running, b.items = [], []

        def rebuild() -> None:
            try:
                det = self.factory()
            except Exception as e:  # noqa: BLE001
                log.error("pool %s: cannot rebuild the detector: %s", self.name, e)
                return
            with self._cond:
                if self._closed:
                    return
                self._init_batcher(det)
        # jobs waiting for the model meanwhile fail fast on the abandoned runner
        threading.Thread(target=rebuild, daemon=True).start()

    def _restart_model(self, w: _Worker) -> None:
        """A worker process died under a request: start another one for this worker."""
        with self._cond:
            self.restarts += 1
        old = w.model
        try:
            old.kill()
        except Exception:  # noqa: BLE001
            pass
        try:
            w.model = self._new_model()
        except Exception as e:  # noqa: BLE001
            log.error("pool %s: worker %d cannot restart: %s", self.name, w.wid, e)
            w.model = None
            w.abandoned = True
            self._worker_failed(w, e)

    def _worker_failed(self, w: Any, e: BaseException) -> None:
        """A worker could not build its detector: it is left out (and retried later)."""
        with self._cond:
            if w in self._workers:
                self._workers.remove(w)
            self.errors += 1
            closed = self._closed
        if not closed:
            def retry() -> None:
                time.sleep(2.0)
                with self._cond:
                    if self._closed:
                        return
                    nw = _Worker(self, w.wid)
                    self._workers.append(nw)
                    nw.thread.start()
            threading.Thread(target=retry, daemon=True).start()

    # -- direct use ---------------------------------------------------------------------------------
    def _record_inference(self, seconds: float, n: int) -> None:
        self.inference.add(seconds)
        self.batch_sizes.append(n)
        self.batches += 1

    def batch_window_s(self) -> float:
        """The batch window: batch_window_ms, else one frame period of the fastest camera
        (its offer rate), 1..200 ms; 50 ms before any rate is known."""
        if self.batch_window_ms is not None:
            return self.batch_window_ms / 1000.0
        rates = [c.offers.rate() for c in self._clients if not c.fifo]
        fastest = max(rates, default=0.0)
        return 0.05 if fastest <= 0 else min(0.2, max(0.001, 1.0 / fastest))

    def submit(self, frame: Any, fn: Job | None = None, client: PoolClient | None = None) -> _Request:
        """Queue `frame` (run through `fn`, by default the model) as a request of its own."""
        c = client
        if c is None:  # one shared client for direct submissions, as many in flight as workers
            with self._cond:
                c = self._direct
            if c is None:
                c = PoolClient(self, "direct", fifo=True, max_inflight=self.n_workers)
                self._add(c)
                with self._cond:
                    self._direct = c
        req = _Request(c, frame, fn or self.model.detect)
        with self._cond:
            c._queue.append(req)
            self._cond.notify_all()
        return req

    def call(self, frame: Any, timeout: float | None = None) -> Detections:
        """The model's detections of one frame, run on a worker (waits for it)."""
        c = PoolClient(self, "direct", fifo=True, max_inflight=1)
        self._add(c)
        try:
            req = self.submit(frame, client=c)
            if not req.done.wait(timeout if timeout is not None else self.timeout_s * 2 + 1):
                raise PoolError(f"pool {self.name}: no answer in time")
            if req.error is not None:
                raise req.error
            return req.dets  # type: ignore[return-value]
        finally:
            self._remove(c)

    def map(self, frames: Iterable[Any], lookahead: int | None = None, fn: Job | None = None,
            weight: float = 1.0) -> Iterator[tuple[Any, Detections]]:
        """(frame, detections) for every frame of `frames`, in frame order, with up to
        `lookahead` frames (default: twice the workers) being detected in parallel. `fn`
        (default: the model) runs on a worker for each frame; it must not depend on the order
        it is called in (no motion gate here). A failed frame raises its error here."""
        n = max(1, int(lookahead or 2 * self.n_workers))
        c = PoolClient(self, "map", weight=weight, fifo=True, max_inflight=n)
        self._add(c)
        job = fn or self.model.detect
        pending: deque[_Request] = deque()
        it = iter(frames)
        try:
            exhausted = False
            while True:
                while not exhausted and len(pending) < n:
                    try:
                        f = next(it)
                    except StopIteration:
                        exhausted = True
                        break
                    pending.append(self.submit(f, job, client=c))
                if not pending:
                    return
                req = pending.popleft()
                while not req.done.wait(0.5):
                    if self._closed:
                        raise PoolError(f"pool {self.name} closed")
                if req.error is not None:
                    raise req.error
                yield req.frame, req.dets  # type: ignore[misc]
        finally:
            with self._cond:
                c._queue.clear()
            self._remove(c)

    # -- visibility -------------------------------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        with self._cond:
            p50, p95 = self.inference.pct()
            sizes = list(self.batch_sizes)
            queue = sum((len(c._queue) if c.fifo else int(c._waiting())) for c in self._clients)
            busy = sum(1 for w in self._workers if w.req is not None and not w.abandoned)
            workers = sum(1 for w in self._workers if not w.abandoned)
            if self.kind == "batch":
                workers = 1
                b = self._batcher
                busy = 1 if b is not None and b.running else 0
            cams = {c.name: c.stats() for c in self._clients if not c.fifo}
        return {"name": self.name, "kind": self.kind, "workers": workers, "busy": busy,
                "queue": queue, "inference_ms_p50": p50, "inference_ms_p95": p95,
                "batches": self.batches,
                "batch_mean": round(float(np.mean(sizes)), 3) if sizes else None,
                "batch_max": max(sizes) if sizes else None,
                "batch_window_ms": round(self.batch_window_s() * 1000, 2) if self.kind == "batch" else None,
                "restarts": self.restarts, "timeouts": self.timeouts, "errors": self.errors,
                "served": self._served_total, "cameras": cams}

    # -- shutdown ------------------------------------------------------------------------------
    def close(self, timeout: float = 2.0) -> None:
        """Stop the workers (the ones in a request finish it first, up to `timeout`) and
        release their detectors and processes. Idempotent."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            self._cond.notify_all()
            self._watch_stop.set()
            workers = list(self._workers)
            for c in self._clients:
                for req in (c._queue if c.fifo else ()):
                    req.error = PoolError("pool closed")
                    req.done.set()
        deadline = time.monotonic() + timeout
        for w in workers:
            w.thread.join(max(0.05, deadline - time.monotonic()))
        b = self._batcher
        if b is not None:
            b.thread.join(max(0.05, deadline - time.monotonic()))
        for w in workers:  # a worker process whose thread did not end in time
            m = getattr(w, "model", None)
            if isinstance(m, _ProcessModel) and w.thread.is_alive():
                m.kill()
        self._watchdog.join(0.5)


# ------------------------------------------------------------------------------ per node
# detectors that keep state per camera (a background model) or do nothing are never pooled
UNPOOLED = frozenset({"none", "motion"})


def _on_gpu(section: Any) -> bool:
    """True when the section's ONNX Runtime providers would put it on a GPU."""
    providers = getattr(section, "providers", None)
    if providers is None or providers == "cpu":
        return False
    try:
        import onnxruntime as ort
    except ImportError:
        return False
    return "CUDAExecutionProvider" in ort.get_available_providers()


class NodePools:
    """The node's pools (runtime/vigil.py holds one): a DetectorPool per detector kind and
    resolved config section, built when the first camera using it starts, shared by the rest.
    `pool_for(cam)` is None when pooling is off or the camera's detector is not pooled."""

    # what `kind: auto` picks on CPU (measured: see README, Detector pool)
    CPU_KIND = "processes"

    def __init__(self, pool_cfg: Any, cfg: Any) -> None:
        self.pcfg = pool_cfg
        self.cfg = cfg
        self._pools: dict[tuple[str, str], DetectorPool] = {}
        self._lock = threading.Lock()

    def kind_for(self, section: Any) -> str:
        kind = self.pcfg.kind
        if kind != "auto":
            return kind
        return "batch" if _on_gpu(section) else self.CPU_KIND

    def workers(self) -> int:
        w = self.pcfg.workers
        return default_workers() if w == "auto" else int(w)

    def pool_for(self, cam: Any) -> DetectorPool | None:
        if not self.pcfg.enabled or cam.detector in UNPOOLED:
            return None
        section = self.cfg.detector_section(cam)
        spec = DetectorSpec(cam.detector, section)
        key = spec.key()
        with self._lock:
            pool = self._pools.get(key)
            if pool is None:
                kind = self.kind_for(section)
                pool = DetectorPool(spec, workers=self.workers(), kind=kind,
                                    name=f"{cam.detector}-{len(self._pools) + 1}",
                                    timeout_s=self.pcfg.timeout_s,
                                    batch_window_ms=self.pcfg.batch_window_ms,
                                    max_batch=self.pcfg.max_batch)
                self._pools[key] = pool
            return pool

    @property
    def pools(self) -> list[DetectorPool]:
        with self._lock:
            return list(self._pools.values())

    def stats(self) -> list[dict[str, Any]]:
        return [p.stats() for p in self.pools]

    def close(self, timeout: float = 2.0) -> None:
        for p in self.pools:
            try:
                p.close(timeout)
            except Exception:  # noqa: BLE001
                log.exception("closing pool %s", p.name)
