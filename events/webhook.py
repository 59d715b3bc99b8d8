"""Webhook sink: POSTs each event as JSON to a URL from a worker thread.

submit() never blocks the caller: it appends to a bounded deque (dropping the OLDEST event
when full, counted) and wakes the worker. The worker sends events in order, one at a time,
with urllib (no extra dependency). Connection errors, timeouts, 5xx, 408 and 429 are retried
with exponential backoff (backoff_initial_s doubling up to backoff_max_s, +-20% jitter) up to
`retries` times, then the event is given up (stats "failed"). Other 4xx answers mean the
receiver rejects this payload: not retried (stats "rejected"). While one event is being
retried the later ones wait in the queue, so a dead receiver fills the queue and the oldest
events are dropped.

Payload: `event.to_dict()` as UTF-8 JSON, Content-Type application/json, User-Agent vigil.
The snapshot is not sent (a receiver can fetch it from the API by event id).
"""
from __future__ import annotations

import base64
import collections
import json
import logging
import random
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, Mapping, Optional

from core.config import WebhookConfig
from core.memsize import approx_bytes
from core.types import Event, EventKind, json_default
from core.uri import redact_uri
from events.sink_health import SinkHealth, drop_queued, push_newest

__all__ = ["WebhookSink"]

log = logging.getLogger("vigil.events.webhook")

_RETRY_STATUS = frozenset({408, 429})


def _split_userinfo(url: str) -> tuple[str, str | None]:
    """(URL without user:pass@, its `Authorization: Basic` value or None)."""
    parts = urllib.parse.urlsplit(url)
    if parts.username is None and parts.password is None:
        return url, None
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    if parts.port is not None:
        host += f":{parts.port}"
    bare = urllib.parse.urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))
    user = urllib.parse.unquote(parts.username or "")
    pw = urllib.parse.unquote(parts.password or "")
    return bare, "Basic " + base64.b64encode(f"{user}:{pw}".encode()).decode()


class WebhookSink:
    """cfg: one `events.webhooks` entry (core.config.WebhookConfig: url, timeout_s, max_queue,
    retries, kinds, with their defaults and bounds). backoff_initial_s > 0 (default 0.5) and
    backoff_max_s >= backoff_initial_s (default 30) are not configurable (tests shorten them);
    headers: extra HTTP headers (e.g. Authorization).
    """

    def __init__(self, cfg: WebhookConfig, *, backoff_initial_s: float = 0.5, backoff_max_s: float = 30.0,
                 headers: Mapping[str, str] | None = None, name: str | None = None) -> None:
        if not (backoff_initial_s > 0 and backoff_max_s >= backoff_initial_s):
            raise ValueError("need backoff_initial_s > 0 and backoff_max_s >= backoff_initial_s")
        self.cfg = cfg
        self.url, basic = _split_userinfo(cfg.url)
        self.timeout_s = float(cfg.timeout_s)
        self.max_queue = int(cfg.max_queue)
        self.retries = int(cfg.retries)
        self.kinds = frozenset(EventKind(k).value for k in cfg.kinds)
        self.backoff_initial_s = float(backoff_initial_s)
        self.backoff_max_s = float(backoff_max_s)
        self.headers = {"Content-Type": "application/json", "User-Agent": "vigil-webhook/1"}
        if basic:  # urllib takes no user:pass@ in a URL: send it as HTTP Basic
            self.headers["Authorization"] = basic
        self.headers.update(headers or {})
        self.name = name or redact_uri(cfg.url)  # the given URL, password hidden
        self.health = SinkHealth("webhook", self.name, log)
        self._cond = threading.Condition()
        self._queue: collections.deque[Event] = collections.deque()
        self._stop = threading.Event()
        self._closing = False
        self._thread: threading.Thread | None = None  # started on the first submit

    def __repr__(self) -> str:
        return f"WebhookSink({self.url!r})"

    # ------------------------------------------------------------ producer side
    def submit(self, event: Event, snapshot: Optional[bytes] = None) -> None:
        """Queue an event for delivery; O(1), never blocks on the network."""
        if self.kinds and event.kind.value not in self.kinds:
            self.health.count("filtered")
            return
        with self._cond:
            dropped = 1 if self._closing else push_newest(self._queue, self.max_queue, event)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=f"webhook:{self.name}", daemon=True)
                self._thread.start()
            self._cond.notify()
        if dropped:
            self.health.count("dropped", dropped)

    def stats(self) -> dict[str, Any]:
        """sent, failed (gave up after retries), rejected (4xx, not retried), retried (retry
        attempts made), dropped (queue full / closed), filtered (kind not wanted), queued,
        last_error (+ its epoch time), healthy (no failure since the last delivery)."""
        with self._cond:
            queued = len(self._queue)
        return self.health.snapshot(queued=queued, max_queue=self.max_queue)

    def memory_bytes(self) -> dict[str, int]:
        """Bytes of the events waiting (runtime/memory.py); at most max_queue of them."""
        with self._cond:
            items = list(self._queue)
        return {"queue": approx_bytes(items)}

    def memory_counts(self) -> dict[str, int]:
        with self._cond:
            return {"queue": len(self._queue)}

    def memory_limits(self) -> dict[str, int]:
        return {"queue": self.max_queue}

    def close(self, timeout: float = 5.0) -> None:
        """Try to deliver what is queued within `timeout`, then stop; the rest counts as dropped."""
        deadline = time.monotonic() + max(0.0, timeout)
        with self._cond:
            self._closing = True
            self._cond.notify_all()
            t = self._thread
        if t is not None:
            while t.is_alive() and time.monotonic() < deadline:
                with self._cond:
                    empty = not self._queue
                if empty:
                    break
                t.join(min(0.05, max(0.0, deadline - time.monotonic())))
            self._stop.set()  # interrupts a backoff wait
            with self._cond:
                self._cond.notify_all()
            t.join(max(0.0, deadline - time.monotonic()) + self.timeout_s)
            if t.is_alive():
                log.warning("webhook %s: worker still in a request at close", self.name)
        drop_queued(self._queue, self._cond, self.health)

    # ------------------------------------------------------------ worker
    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closing:
                    self._cond.wait()
                if not self._queue or self._stop.is_set():
                    return
                ev = self._queue.popleft()
            try:
                self._deliver(ev)
            except Exception as e:  # noqa: BLE001 - never let one event kill the worker
                self.health.count("failed")
                self.health.error(f"unexpected {type(e).__name__}: {e}")
                log.debug("webhook %s: unexpected error", self.name, exc_info=True)

    def _post(self, body: bytes) -> tuple[int | None, str | None]:
        """(HTTP status, error text); status None for a network error or timeout."""
        req = urllib.request.Request(self.url, data=body, headers=self.headers, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
                resp.read(65536)
                return int(resp.status), None
        except urllib.error.HTTPError as e:
            try:
                e.read(4096)
            except Exception:  # noqa: BLE001
                pass
            finally:
                e.close()
            return int(e.code), f"HTTP {e.code}"
        except (urllib.error.URLError, socket.timeout, TimeoutError, ConnectionError, OSError) as e:
            reason = getattr(e, "reason", e)
            return None, f"{type(reason).__name__}: {reason}"

    def _deliver(self, ev: Event) -> None:
        body = json.dumps(ev.to_dict(), default=json_default, separators=(",", ":")).encode()
        delay = self.backoff_initial_s
        attempt = 0
        while True:
            status, err = self._post(body)
            if status is not None and 200 <= status < 300:
                self.health.count("sent")
                return
            if status is not None and 300 <= status < 500 and status not in _RETRY_STATUS:
                self.health.count("rejected")
                self._note(f"{err or status} (not retried) for event {ev.id}")
                return
            self._note(f"{err} for event {ev.id} (attempt {attempt + 1})")
            if attempt >= self.retries or self._stop.is_set():
                self.health.count("failed")
                return
            wait = min(delay, self.backoff_max_s) * random.uniform(0.8, 1.2)
            if self._stop.wait(wait):
                self.health.count("failed")
                return
            delay = min(delay * 2.0, self.backoff_max_s)
            attempt += 1
            self.health.count("retried")

    def _note(self, msg: str) -> None:
        self.health.error(msg)
