"""Timing helpers for tests that run on a shared 2-core machine (CI: VIGIL_CI=1).

A wall-clock figure taken once decides nothing on a loaded machine: another process can take
the CPU for a few hundred milliseconds at any moment. The tests keep their limits and get
robust by method instead:

- `wait_for` / `wait_until`: poll a condition (never sleep-then-assert): its value / the seconds it took;
- `best_of`: re-measure (up to 3 times) and judge the best try, so one unlucky
  scheduling gap cannot fail the test while a real regression (slow every time) still does;
- `cost_s`: the cost of a CPU-bound call as min(wall, process CPU time): on a loaded machine
  the wall time grows while the CPU time does not, and other threads of the test process
  (CPU time) do not count in the wall time;
- `RunQueue`: how long a thread was runnable but waiting for a CPU (Linux schedstat), to take
  the time lost to other processes out of a wall-clock figure.
"""
from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


def wait_for(pred: Callable[[], T], timeout: float, step: float = 0.02) -> T:
    """Poll pred() every `step` s; its first truthy value, or after `timeout` s its (falsy)
    value at the deadline. The one polling loop of the tests: `assert wait_for(lambda: ..., 5)`."""
    deadline = time.monotonic() + timeout
    while True:
        got = pred()
        if got or time.monotonic() >= deadline:
            return got
        time.sleep(step)


def wait_until(pred: Callable[[], Any], timeout: float, step: float = 0.02) -> float | None:
    """Seconds until pred() was truthy, or None after `timeout`."""
    t0 = time.monotonic()
    return time.monotonic() - t0 if wait_for(pred, timeout, step) else None


def best_of(measure: Callable[[], T], good: Callable[[T], bool], tries: int = 3) -> list[T]:
    """Run `measure()` until `good(value)` or `tries` runs; returns every value measured (the
    last one is the good one, if any). Assertions about behaviour belong inside `measure`
    (they fail at once, they are not retried): only the figure is measured again."""
    values: list[T] = []
    for _ in range(tries):
        values.append(measure())
        if good(values[-1]):
            break
    return values


def cost_s(fn: Callable[[], Any]) -> float:
    """Seconds one call of fn() costs: min(wall time, this process's CPU time)."""
    w0, c0 = time.perf_counter(), time.process_time()
    fn()
    return min(time.perf_counter() - w0, time.process_time() - c0)


def _schedstat(path: str) -> tuple[float, float] | None:
    """(seconds on a CPU, seconds runnable but waiting for one) from a schedstat file."""
    try:
        with open(path) as f:
            on_cpu, waiting = f.read().split()[:2]
        return int(on_cpu) / 1e9, int(waiting) / 1e9
    except (OSError, ValueError):
        return None


class RunQueue:
    """Run-queue delay of one thread (default: the calling thread) or of a process's main
    thread (pid=...), from /proc/.../schedstat; `available` is False where the kernel has no
    schedstat (then `waited_s()` is 0.0 and the figures stay plain wall-clock ones)."""

    def __init__(self, pid: int | None = None, tid: int | None = None) -> None:
        if pid is not None:
            self.path = f"/proc/{pid}/schedstat"
        else:
            self.path = f"/proc/self/task/{tid or threading.get_native_id()}/schedstat"
        first = _schedstat(self.path)
        self.available = first is not None
        self._start = first or (0.0, 0.0)
        self._last = self._start

    def sample(self) -> None:
        """Read the counters now (a process's last sample before it is reaped counts)."""
        v = _schedstat(self.path)
        if v is not None:
            self._last = v

    def waited_s(self) -> float:
        """Seconds the thread waited for a CPU between construction and the last sample."""
        return max(0.0, self._last[1] - self._start[1])

    def cpu_s(self) -> float:
        return max(0.0, self._last[0] - self._start[0])


def wait_exit_sampling(proc, timeout: float, *samplers: Any, step: float = 0.005) -> int | None:
    """Wait up to `timeout` for the subprocess `proc` to exit, calling each sampler's
    `sample()` until its very end (the exited child is looked at before it is reaped);
    returns its exit code, or None on timeout (the process is left running)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            done = os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            done = True
        for s in samplers:
            s.sample()
        if done is not None:
            return proc.wait(5)
        if time.monotonic() >= deadline:
            return None
        time.sleep(step)


class OtherLoad:
    """Cores used by processes other than this one and `pids` (its children under test) from
    construction to the last `sample()`: tells a quiet machine from a loaded one."""

    def __init__(self, *pids: int) -> None:
        import psutil
        self._psutil = psutil
        self.procs = [psutil.Process()] + [psutil.Process(p) for p in pids]
        self._t0, self._busy0, self._own0 = time.monotonic(), self._busy(), self._own()
        self._last = (self._t0, self._busy0, self._own0)

    def _busy(self) -> float:
        t = self._psutil.cpu_times()
        return sum(t) - t.idle - getattr(t, "iowait", 0.0)

    def _own(self) -> list[float]:
        out = []
        for p in self.procs:
            try:
                c = p.cpu_times()
                out.append(c.user + c.system + c.children_user + c.children_system)
            except self._psutil.Error:  # gone already: its last sample stands
                out.append(-1.0)
        return out

    def sample(self) -> None:
        own = self._own()
        prev = self._last[2]
        own = [o if o >= 0 else p for o, p in zip(own, prev)]
        self._last = (time.monotonic(), self._busy(), own)

    def cores(self) -> float:
        t, busy, own = self._last
        d_own = sum(o - o0 for o, o0 in zip(own, self._own0))
        return max(0.0, ((busy - self._busy0) - d_own) / max(t - self._t0, 1e-3))
