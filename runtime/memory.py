"""Where a running Vigil's memory is: the process (RSS, the /proc smaps split, glibc malloc
statistics) and a per-component breakdown (bytes held by each camera's slots, hubs and their
JPEG width variants, long exposure, clip ring and encoder queue, tracker and defect watch; the
event bus ring, the store's write queue, each sink's queue), served as /api/memory and in
/metrics.

    collect(vigil)     {"process": ..., "components": [...], "accounted_bytes", "collect_ms"}
    process_memory()   RSS, smaps split, malloc statistics, tracemalloc totals (when tracing)
    smaps_split()      resident kB of [heap], anonymous mappings (malloc's other arenas, large
                       mmap'd blocks, ONNX Runtime / OpenCV buffers), file-backed, stacks
    malloc_info()      glibc mallinfo2() (every arena): arena, in_use, free, mmap, keepcost

Components are asked through small methods (no reaching into them): a camera through the camera
interface (`Camera.memory()`), the bus, the store and every sink through `memory_bytes()` (a
sink without it is listed with its queue length only). Each component row is
{"component", "name", "bytes", "parts": {part: bytes}, "counts": {...}, "limits": {...}}:
limits are the configured caps (bytes, or items for counts) of the parts that have one, so a
reader sees how close a bounded buffer is to its bound.

What the breakdown cannot see (native memory behind no Python object: ONNX Runtime arenas,
x264 encoder state, Tesseract, SQLite page caches, allocator free lists) is the difference
between the process's anonymous + heap resident memory and `accounted_bytes`; malloc's `free`
is memory held by the allocator but not in use (fragmentation or a high-water mark).
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
import threading
import time
import tracemalloc
from typing import Any, Iterable

__all__ = ["collect", "process_memory", "smaps_split", "malloc_info", "sink_rows"]


# ------------------------------------------------------------------ process
def _read(path: str) -> str | None:
    try:
        with open(path, "r") as f:
            return f.read()
    except OSError:
        return None


def smaps_split(text: str | None = None) -> dict[str, int] | None:
    """Resident bytes by mapping kind from /proc/self/smaps (or `text`): heap ([heap]: the main
    malloc arena), anon (anonymous: other malloc arenas, mmap'd blocks, native libraries'
    buffers), file (file-backed: code, models mapped read-only), stack ([stack] and thread
    stacks are anonymous), other ([vdso], [vvar]...). None off Linux."""
    text = _read("/proc/self/smaps") if text is None else text
    if text is None:
        return None
    out = {"heap": 0, "anon": 0, "file": 0, "stack": 0, "other": 0}
    kind = "other"
    for line in text.splitlines():
        if not line:
            continue
        head = line.split(None, 1)[0]
        if not head.endswith(":"):  # a mapping line: "addr-addr perms offset dev inode [path]"
            parts = line.split(None, 5)
            name = parts[5].strip() if len(parts) > 5 else ""
            if name == "[heap]":
                kind = "heap"
            elif name.startswith("[stack"):
                kind = "stack"
            elif not name or name.startswith("[anon"):
                kind = "anon"
            elif name.startswith("/"):
                kind = "file"
            else:
                kind = "other"
        elif head == "Rss:":
            out[kind] += int(line.split()[1]) * 1024
    return out


def smaps_rollup(text: str | None = None) -> dict[str, int] | None:
    """/proc/self/smaps_rollup in bytes (Rss, Pss, Anonymous, Private_Dirty, Swap, ...)."""
    text = _read("/proc/self/smaps_rollup") if text is None else text
    if text is None:
        return None
    out: dict[str, int] = {}
    for line in text.splitlines():
        p = line.split()
        if len(p) == 3 and p[2] == "kB" and p[0].endswith(":"):
            out[p[0][:-1]] = int(p[1]) * 1024
    return out


class _Mallinfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd",
                                                "usmblks", "fsmblks", "uordblks", "fordblks",
                                                "keepcost")]


_libc: Any = None
_libc_lock = threading.Lock()


def _mallinfo2():
    global _libc
    with _libc_lock:
        if _libc is None:
            _libc = False
            if sys.platform.startswith("linux"):
                try:
                    lib = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
                    fn = lib.mallinfo2  # glibc >= 2.33
                    fn.restype = _Mallinfo2
                    fn.argtypes = []
                    _libc = fn
                except (OSError, AttributeError):
                    _libc = False
        return _libc or None


def malloc_info() -> dict[str, int] | None:
    """glibc malloc statistics over every arena (mallinfo2), in bytes: arena (obtained from
    the system by brk/mmap'd heaps), in_use (allocated chunks), free (held, not in use), mmap
    (large blocks mmap'd on their own), keepcost (releasable top). None where unavailable
    (musl, macOS, glibc < 2.33)."""
    fn = _mallinfo2()
    if fn is None:
        return None
    m = fn()
    return {"arena": int(m.arena), "in_use": int(m.uordblks), "free": int(m.fordblks),
            "mmap": int(m.hblkhd), "mmap_blocks": int(m.hblks), "keepcost": int(m.keepcost),
            "free_chunks": int(m.ordblks)}


def rss_bytes() -> int | None:
    text = _read("/proc/self/statm")
    if text is not None:
        return int(text.split()[1]) * os.sysconf("SC_PAGE_SIZE")
    try:
        import psutil
        return int(psutil.Process().memory_info().rss)
    except Exception:  # noqa: BLE001 - no psutil, no /proc: unknown
        return None


def process_memory(smaps: bool = True) -> dict[str, Any]:
    """RSS, the smaps split (`smaps=False` skips it: it reads every mapping), smaps_rollup,
    malloc statistics and tracemalloc totals (when tracing), in bytes."""
    out: dict[str, Any] = {"rss_bytes": rss_bytes(), "pid": os.getpid()}
    roll = smaps_rollup()
    if roll is not None:
        out["rollup"] = {k: roll[k] for k in ("Rss", "Pss", "Anonymous", "Private_Dirty",
                                              "Shared_Clean", "Swap") if k in roll}
    out["smaps"] = smaps_split() if smaps else None
    out["malloc"] = malloc_info()
    arenas = os.environ.get("MALLOC_ARENA_MAX")
    out["malloc_arena_max"] = int(arenas) if arenas and arenas.isdigit() else None
    if tracemalloc.is_tracing():
        cur, peak = tracemalloc.get_traced_memory()
        out["tracemalloc"] = {"traced": cur, "peak": peak,
                              "overhead": tracemalloc.get_tracemalloc_memory()}
    else:
        out["tracemalloc"] = None
    return out


# ------------------------------------------------------------------ components
def _row(component: str, name: str, parts: dict[str, int], counts: dict[str, int] | None = None,
         limits: dict[str, int] | None = None) -> dict[str, Any]:
    parts = {k: int(v) for k, v in parts.items()}
    return {"component": component, "name": name, "bytes": sum(parts.values()), "parts": parts,
            "counts": dict(counts or {}), "limits": dict(limits or {})}


def _sink_kind(sink: Any) -> str:
    kind = getattr(getattr(sink, "health", None), "kind", None)
    if isinstance(kind, str):
        return kind
    name = type(sink).__name__
    return {"EventStore": "store"}.get(name, name.lower().removesuffix("sink") or name.lower())


def sink_rows(sinks: Iterable[Any]) -> list[dict[str, Any]]:
    """A row per event sink that can say what it holds (`memory_bytes()`, and optionally
    `memory_counts()` / `memory_limits()`)."""
    rows = []
    for sk in sinks:
        fn = getattr(sk, "memory_bytes", None)
        if not callable(fn):
            continue
        try:
            parts = fn()
            counts = sk.memory_counts() if callable(getattr(sk, "memory_counts", None)) else {}
            limits = sk.memory_limits() if callable(getattr(sk, "memory_limits", None)) else {}
        except Exception as e:  # noqa: BLE001 - one sink never breaks the report
            rows.append(dict(_row(_sink_kind(sk), str(getattr(sk, "name", sk)), {}),
                             error=f"{type(e).__name__}: {e}"))
            continue
        name = getattr(sk, "name", None) or str(getattr(sk, "path", "")) or type(sk).__name__
        rows.append(_row(_sink_kind(sk), str(name), parts, counts, limits))
    return rows


def component_rows(vigil: Any) -> list[dict[str, Any]]:
    """The breakdown: one row per camera (through the camera interface), the event bus and
    each sink of the bus (the store, webhooks, MQTT...)."""
    rows = []
    for name, cam in list(vigil.cameras.items()):
        try:
            m = cam.memory()
            rows.append(_row("camera", name, m.parts, m.counts, m.limits))
        except Exception as e:  # noqa: BLE001 - a camera never breaks the report
            rows.append(dict(_row("camera", name, {}), error=f"{type(e).__name__}: {e}"))
    bus = vigil.bus
    if callable(getattr(bus, "memory_bytes", None)):
        rows.append(_row("bus", "events", bus.memory_bytes(), bus.memory_counts(), bus.memory_limits()))
    rows.extend(sink_rows(getattr(bus, "sinks", ())))
    return rows


def collect(vigil: Any, smaps: bool = True, extra: Iterable[dict[str, Any]] = ()) -> dict[str, Any]:
    """The whole report (module docstring). `extra`: rows the caller adds (the web layer's
    own buffers)."""
    t0 = time.perf_counter()
    rows = component_rows(vigil) + list(extra)
    proc = process_memory(smaps=smaps)
    accounted = sum(r["bytes"] for r in rows)
    out = {"process": proc, "components": rows, "accounted_bytes": accounted}
    trimmer = getattr(vigil, "trimmer", None)
    out["trim"] = trimmer.stats() if trimmer is not None else None
    sm = proc.get("smaps")
    if sm is not None:  # native memory behind no listed buffer (see the module docstring)
        out["unaccounted_anon_bytes"] = max(0, sm["heap"] + sm["anon"] - accounted)
    out["collect_ms"] = round((time.perf_counter() - t0) * 1000.0, 2)
    return out


# ------------------------------------------------------------------ returning freed memory
class MallocTrimmer:
    """Every `interval_s`, glibc malloc_trim(0): freed chunks inside malloc's arenas (frame-sized
    buffers freed by capture, detector and encoder threads, whose arenas do not shrink by
    themselves while any chunk above them is in use) are given back to the system
    (madvise(MADV_DONTNEED) of their pages). Without it RSS keeps the allocator's high-water
    mark of every arena, and the fragmentation between live chunks grows it further (see
    BENCHMARKS.md, Soak). A no-op off glibc; interval_s 0 disables it."""

    def __init__(self, interval_s: float = 60.0) -> None:
        self.interval_s = float(interval_s)
        self.trims = 0
        self.released_bytes = 0       # RSS given back, summed over the trims
        self.last_released_bytes = 0
        self.last_ms: float | None = None
        self._fn = _malloc_trim()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def available(self) -> bool:
        return self._fn is not None

    def trim(self) -> int:
        """One malloc_trim(0) now; returns the RSS it gave back (bytes, >= 0)."""
        if self._fn is None:
            return 0
        before = rss_bytes() or 0
        t0 = time.perf_counter()
        self._fn(0)
        self.last_ms = round((time.perf_counter() - t0) * 1000.0, 2)
        freed = max(0, before - (rss_bytes() or 0))
        self.trims += 1
        self.last_released_bytes = freed
        self.released_bytes += freed
        return freed

    def start(self) -> "MallocTrimmer":
        if self.interval_s > 0 and self._fn is not None and self._thread is None:
            self._thread = threading.Thread(target=self._run, name="malloc-trim", daemon=True)
            self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.trim()
            except Exception:  # noqa: BLE001 - never worth a crash
                return

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(2.0)

    def stats(self) -> dict[str, Any]:
        return {"interval_s": self.interval_s, "available": self.available, "trims": self.trims,
                "released_bytes": self.released_bytes,
                "last_released_bytes": self.last_released_bytes, "last_ms": self.last_ms}


def _malloc_trim():
    if not sys.platform.startswith("linux"):
        return None
    try:
        lib = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        fn = lib.malloc_trim
        fn.argtypes = [ctypes.c_size_t]
        fn.restype = ctypes.c_int
        return fn
    except (OSError, AttributeError):
        return None
