"""Failed-credential throttling per client address (logins, HTTP Basic, Bearer).

Each client address (an IPv6 address counts by its /64, the block one host is usually given)
gets `free_failures` wrong credentials; each further one locks the address out for a window
that doubles, from `lockout_s` up to `max_lockout_s`:

    failures 1-5: answered at once (401) · 6th: locked 1 s · 7th: 2 s · 8th: 4 s · ... ·
    14th: 256 s · 15th on: 300 s each        (defaults: 5 free, 1 s doubling, 300 s cap)

While locked, every request that *presents* a credential from that address is refused with 429
and Retry-After, without looking at the credential, so a guess made during the window says
nothing (a right one is refused too). A valid session cookie still works: the lock-out is on
guessing, not on the people already signed in behind the same address. An address's count is
forgotten `forget_after_s` after its last counted failure. A success does not reset the count
(else a viewer's own password would buy unlimited guesses at the admin's).

Only *distinct* wrong credentials count: the same wrong secret presented again (a camera
integration retrying an outdated token every few seconds) is refused as before but does not
climb the ladder, because repeating a guess teaches an attacker nothing. The caller passes a
keyed fingerprint of what was presented (never the secret itself; see web.auth.Credentials).

`clock` is injectable (monotonic seconds) so tests move time instead of sleeping.
"""
from __future__ import annotations

import ipaddress
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Callable, Iterator, Optional

VIAS = ("login", "basic", "bearer")


def client_key(addr: Optional[str]) -> str:
    """The throttling key of a client address: IPv4 as is, IPv6 by its /64."""
    if not addr:
        return "?"
    try:
        ip = ipaddress.ip_address(addr.split("%", 1)[0])
    except ValueError:
        return addr[:64]
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((int(ip) >> 64 << 64, 64)))
    return str(ip)


@dataclass
class _Client:
    failures: int = 0              # distinct failures counted
    last: float = 0.0              # clock of the last counted failure
    locked_until: float = 0.0
    seen: "OrderedDict[bytes, None]" = field(default_factory=OrderedDict)  # fingerprints tried


@dataclass(frozen=True)
class Outcome:
    counted: bool          # a new distinct failure (False: a repeat of one already seen)
    failures: int          # distinct failures of this address now
    lockout_s: float       # the lock-out this failure started (0: none)


class Throttle:
    MAX_SEEN = 64  # fingerprints remembered per address

    def __init__(self, free_failures: int = 5, lockout_s: float = 1.0, max_lockout_s: float = 300.0,
                 forget_after_s: float = 3600.0, max_clients: int = 10_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.free_failures = int(free_failures)
        self.lockout_s = float(lockout_s)
        self.max_lockout_s = float(max_lockout_s)
        self.forget_after_s = float(forget_after_s)
        self.max_clients = int(max_clients)
        self.clock = clock
        self._lock = threading.Lock()
        self._clients: "OrderedDict[str, _Client]" = OrderedDict()
        # counters for /metrics
        self.failures_total = {v: 0 for v in VIAS}   # every refused credential (repeats too)
        self.repeats_total = 0                       # of them, repeats of an already-counted one
        self.lockouts_total = 0                      # lock-out windows started
        self.refused_total = 0                       # requests refused (429) while locked

    @classmethod
    def from_config(cls, t, clock: Callable[[], float] = time.monotonic) -> "Throttle":
        return cls(t.free_failures, t.lockout_s, t.max_lockout_s, t.forget_after_s, clock=clock)

    def window(self, n: int) -> float:
        """The lock-out started by the n-th distinct failure (0 for the free ones)."""
        k = n - self.free_failures
        if k <= 0:
            return 0.0
        return min(self.max_lockout_s, self.lockout_s * 2.0 ** min(k - 1, 60))

    def _get(self, key: str, now: float, create: bool) -> Optional[_Client]:
        c = self._clients.get(key)
        if c is not None and c.failures and now - c.last > self.forget_after_s and now >= c.locked_until:
            del self._clients[key]
            c = None
        if c is None and create:
            c = self._clients[key] = _Client()
            while len(self._clients) > self.max_clients:
                self._clients.popitem(last=False)
        elif c is not None:
            self._clients.move_to_end(key)
        return c

    def retry_after(self, addr: Optional[str]) -> float:
        """Seconds this address stays locked out (0: not locked). Counts a refusal when locked."""
        key = client_key(addr)
        with self._lock:
            now = self.clock()
            c = self._get(key, now, create=False)
            if c is None or now >= c.locked_until:
                return 0.0
            self.refused_total += 1
            return c.locked_until - now

    def failure(self, addr: Optional[str], fingerprint: bytes, via: str) -> Outcome:
        key = client_key(addr)
        with self._lock:
            now = self.clock()
            self.failures_total[via] = self.failures_total.get(via, 0) + 1
            c = self._get(key, now, create=True)
            if fingerprint in c.seen:
                c.seen.move_to_end(fingerprint)
                self.repeats_total += 1
                return Outcome(False, c.failures, 0.0)
            c.seen[fingerprint] = None
            while len(c.seen) > self.MAX_SEEN:
                c.seen.popitem(last=False)
            c.failures += 1
            c.last = now
            lock = self.window(c.failures)
            if lock > 0:
                c.locked_until = now + lock
                self.lockouts_total += 1
            return Outcome(True, c.failures, lock)

    def seen_before(self, addr: Optional[str], fingerprint: bytes) -> bool:
        """True if this address already failed with exactly this credential (skip checking it)."""
        with self._lock:
            c = self._get(client_key(addr), self.clock(), create=False)
            return c is not None and fingerprint in c.seen

    def locked_clients(self) -> int:
        with self._lock:
            now = self.clock()
            return sum(1 for c in self._clients.values() if c.locked_until > now)

    def tracked_clients(self) -> int:
        with self._lock:
            return len(self._clients)


class AuthCollector:
    """Prometheus families for the throttle and the sessions (registered on the app's
    private registry next to web.metrics' collector)."""

    def __init__(self, throttle: Throttle, sessions=None, stats: Optional[dict] = None) -> None:
        self.throttle = throttle
        self.sessions = sessions
        self.stats = stats if stats is not None else {}

    def collect(self) -> Iterator:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
        t = self.throttle
        fails = CounterMetricFamily("vigil_auth_failures", "credentials refused (wrong login, "
                                    "Basic or Bearer secret), repeats included", labels=["via"])
        for via, n in sorted(t.failures_total.items()):
            fails.add_metric([via], n)
        repeats = CounterMetricFamily("vigil_auth_repeated_failures", "of those, the same wrong "
                                      "credential again from the same address (not counted "
                                      "towards a lock-out)")
        repeats.add_metric([], t.repeats_total)
        lockouts = CounterMetricFamily("vigil_auth_lockouts", "lock-out windows started")
        lockouts.add_metric([], t.lockouts_total)
        refused = CounterMetricFamily("vigil_auth_throttled", "requests refused with 429 while "
                                      "their address was locked out")
        refused.add_metric([], t.refused_total)
        locked = GaugeMetricFamily("vigil_auth_locked_clients", "client addresses locked out now")
        locked.add_metric([], t.locked_clients())
        logins = CounterMetricFamily("vigil_auth_logins", "successful sign-ins at /login")
        logins.add_metric([], self.stats.get("logins", 0))
        yield from (fails, repeats, lockouts, refused, locked, logins)
        s = self.sessions
        if s is not None:
            rej = CounterMetricFamily("vigil_auth_sessions_rejected", "session cookies refused",
                                      labels=["reason"])
            for reason, n in sorted(s.rejected.items()):
                rej.add_metric([reason], n)
            yield rej
