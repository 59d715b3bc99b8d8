"""MQTT sink: events, camera states and counters to an MQTT broker (paho-mqtt), with Home
Assistant discovery and optional commands.

Topics (PREFIX = mqtt.topic_prefix, CAMERA = a camera name):

    PREFIX/available                 "online" / "offline", retained; "offline" is also the
                                     last will, so a crash or a lost connection shows
    PREFIX/events                    every event as JSON, exactly the API's `Event.to_dict()`
                                     (snapshot_url included), not retained
    PREFIX/CAMERA/state              the camera's state (LIVE, RECONNECTING, ...), retained
                                     when mqtt.retain
    PREFIX/CAMERA/counts/...         one topic per counter of the camera (`status().counters`):
                                     counts/line/NAME/in, counts/line/NAME/out,
                                     counts/zone/NAME/entries, counts/zone/NAME/now,
                                     counts/parts, counts/pass, counts/defect,
                                     counts/defect_rate, counts/labels_read (defect watch),
                                     counts/detections, counts/confirmed_tracks; retained
                                     when mqtt.retain
    PREFIX/CAMERA/command            (only with mqtt.commands) "reset_exposure" or
                                     "reset_counters" (or {"command": "..."})
    PREFIX/CAMERA/command/result     the answer: {"command", "ok", "message"}
    DISCOVERY/sensor/NODE/CAMERA_KEY/config   Home Assistant discovery (retained), one sensor
                                     per state and counter; DISCOVERY/button/... per command
                                     when commands are on. NODE is mqtt.client_id.

Never blocks a camera: submit() appends the event to a bounded deque (the OLDEST is dropped
when full, counted as "dropped") and returns. One thread owns the client: it connects,
runs paho's network loop, polls the cameras' state and counters (through the camera
interface, every state_interval_s, sooner after an event that changes them) and publishes
only values that changed. Events wait in the deque while the broker is away and are sent in
order once it is back; with qos >= 1 at most MAX_INFLIGHT more are in flight with paho, which
sends them again after a reconnect until the broker acknowledges them, so a broker restart
loses nothing while fewer than max_queue events arrive meanwhile (qos 0 is at most once).
Reconnects back off from reconnect_min_s doubling to reconnect_max_s (+-20 % jitter). A
broker that is absent or refuses the credentials is a state (`stats()["state"]`, served by
/api/sinks and /metrics, and logged), never an exception.

Authentication and authorisation of commands are the broker's: whoever may publish to
PREFIX/CAMERA/command controls the camera, so turn commands on only with a broker that
requires credentials and an ACL for that topic.
"""
from __future__ import annotations

import collections
import json
import logging
import os
import random
import re
import ssl
import threading
import time
from typing import Any, Callable, Mapping, Optional

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode

from core.camera import Camera
from core.config import MqttConfig
from core.types import Event, EventKind, SourceState, json_default
from events.sink_health import SinkHealth, drop_queued, push_newest

__all__ = ["MqttSink", "counter_levels", "discovery_messages", "topic_level", "COMMANDS",
           "MAX_INFLIGHT"]

log = logging.getLogger("vigil.events.mqtt")

MAX_INFLIGHT = 20          # qos >= 1 events handed to paho and not yet acknowledged
COMMANDS = ("reset_exposure", "reset_counters")
# events after which a camera's state or counters change: poll them soon, not at the next tick
_POLL_KINDS = frozenset({EventKind.CAMERA_STATE, EventKind.LINE_CROSSED, EventKind.ZONE_ENTER,
                         EventKind.ZONE_LEAVE, EventKind.DEFECT_FOUND, EventKind.PART_PASSED,
                         EventKind.PART_UNKNOWN})
_POLL_SOON_S = 0.2         # the soonest poll after such an event
_LEVEL_BAD = re.compile(r"[^A-Za-z0-9_-]")
# counters kept at their value (not growing totals) in Home Assistant's statistics
_MEASUREMENTS = ("now", "defect_rate")


def topic_level(name: str) -> str:
    """One topic level (and Home Assistant id part) from a name: letters, digits, _ and -."""
    return _LEVEL_BAD.sub("_", str(name)) or "_"


def counter_levels(key: str) -> tuple[str, ...]:
    """A camera counter's flat key (`CameraStatus.counters`) -> its topic levels under counts/:
    "line gate in" -> ("line", "gate", "in"), "zone dock now" -> ("zone", "dock", "now"),
    "defect_rate" -> ("defect_rate",). Names are made topic-safe (topic_level)."""
    for kind, suffixes in (("line", ("in", "out")), ("zone", ("entries", "now"))):
        if key.startswith(kind + " "):
            for s in suffixes:
                name = key[len(kind) + 1:-(len(s) + 1)]
                if key.endswith(" " + s) and name:
                    return kind, topic_level(name), s
    return (topic_level(key),)


def _value(v: Any) -> str:
    if isinstance(v, bool):
        return "1" if v else "0"
    if isinstance(v, (int, float)):
        return repr(v) if isinstance(v, float) else str(v)
    return json.dumps(v, default=json_default, separators=(",", ":"))


def discovery_messages(cfg: MqttConfig, camera: str, keys: list[str], detector: str = "",
                       with_state: bool = True) -> list[tuple[str, dict[str, Any]]]:
    """(topic, payload) of Home Assistant MQTT discovery configs for one camera: a sensor for
    its state (`with_state`), one per counter key, and a button per command when commands
    are on. Payload keys as Home Assistant's MQTT sensor/button documents them."""
    node = topic_level(cfg.client_id)
    cam = topic_level(camera)
    base = f"{cfg.topic_prefix}/{camera}"
    device = {"identifiers": [f"{node}_{cam}"], "name": f"Vigil {camera}",
              "manufacturer": "Vigil", "model": f"camera ({detector})" if detector else "camera"}
    common = {"availability": [{"topic": f"{cfg.topic_prefix}/available",
                                "payload_available": "online", "payload_not_available": "offline"}],
              "device": device, "origin": {"name": "Vigil"}, "qos": cfg.qos}
    d = cfg.discovery_prefix
    out: list[tuple[str, dict[str, Any]]] = []
    if with_state:
        uid = f"{node}_{cam}_state"
        out.append((f"{d}/sensor/{node}/{cam}_state/config",
                    {"name": "state", "unique_id": uid, "state_topic": f"{base}/state",
                     "device_class": "enum", "options": [s.value for s in SourceState],
                     "icon": "mdi:cctv", **common}))
    for key in keys:
        levels = counter_levels(key)
        flat = "_".join(levels)
        uid = f"{node}_{cam}_{flat}"
        measurement = levels[-1] in _MEASUREMENTS
        out.append((f"{d}/sensor/{node}/{cam}_{flat}/config",
                    {"name": key, "unique_id": uid,
                     "state_topic": f"{base}/counts/{'/'.join(levels)}",
                     "state_class": "measurement" if measurement else "total_increasing",
                     "icon": "mdi:percent" if levels[-1] == "defect_rate" else "mdi:counter",
                     **common}))
    if cfg.commands:
        for command in COMMANDS:
            uid = f"{node}_{cam}_{command}"
            out.append((f"{d}/button/{node}/{cam}_{command}/config",
                        {"name": command.replace("_", " "), "unique_id": uid,
                         "command_topic": f"{base}/command", "payload_press": command, **common}))
    return out


class MqttSink:
    """cfg: the `mqtt` section (core.config.MqttConfig: every key, default and bound).
    cameras: returns the cameras by name (the camera interface), read when states, counters
    and commands need them; None publishes events only. start() starts the client thread;
    with autostart the first submitted event does it too (a runtime that forgot to)."""

    def __init__(self, cfg: MqttConfig, cameras: Callable[[], Mapping[str, Camera]] | None = None,
                 *, client_factory: Callable[..., Any] | None = None, autostart: bool = True) -> None:
        self.autostart = autostart
        self.cfg = cfg
        self._cameras = cameras or (lambda: {})
        self.max_queue = int(cfg.max_queue)
        self.kinds = frozenset(cfg.kinds)
        self.prefix = cfg.topic_prefix
        self.name = f"{'mqtts' if cfg.tls.enabled else 'mqtt'}://{cfg.host}:{cfg.port}"
        self.health = SinkHealth("mqtt", self.name, log)
        self._client_factory = client_factory or paho.Client
        self._cond = threading.Condition()
        self._queue: collections.deque[Event] = collections.deque()
        self._closing = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._client: Any = None
        # worker-thread state (read by stats() without a lock: plain values)
        self._state = "not started"
        self._message: str | None = None
        self._connected = False
        self._connects = 0
        self._reconnects = 0
        self._published = 0          # every message: events, states, counters, discovery
        self._commands = 0
        self._commands_refused = 0
        self._inflight: list[tuple[Any, int | None]] = []  # (MQTTMessageInfo, event id)
        self._retained: dict[str, tuple[bytes, bool]] = {}  # topic -> (payload, retain) to send
        self._last: dict[str, bytes] = {}                   # topic -> last value sent
        self._known_keys: dict[str, tuple[str, ...]] = {}   # camera -> counter keys announced
        self._refresh = True
        self._poll_at = 0.0
        self._poll_soon = False
        self._flush_deadline = float("inf")

    def __repr__(self) -> str:
        return f"MqttSink({self.name!r})"

    # ------------------------------------------------------------ producer side
    def submit(self, event: Event, snapshot: Optional[bytes] = None) -> None:
        """Queue an event to publish; O(1), never blocks on the network."""
        if event.kind in _POLL_KINDS:
            self._poll_soon = True
        if self.kinds and event.kind.value not in self.kinds:
            self.health.count("filtered")
            return
        with self._cond:
            dropped = 1 if self._closing.is_set() else push_newest(self._queue, self.max_queue, event)
        if dropped:
            self.health.count("dropped", dropped)
        elif self._thread is None and self.autostart:  # a runtime that did not call start()
            self.start()

    # ------------------------------------------------------------ lifecycle
    def start(self) -> "MqttSink":
        """Start the client thread (connects in the background: never raises for a broker
        that is absent)."""
        with self._cond:
            if self._thread is not None or self._closing.is_set():
                return self
            self._state = "connecting"
            self._thread = threading.Thread(target=self._run, name=f"mqtt:{self.cfg.host}", daemon=True)
        self._thread.start()
        return self

    def close(self, timeout: float = 2.0) -> None:
        """Publish what is queued within `timeout` (when connected), then "offline" and a
        clean disconnect; what is left counts as dropped."""
        deadline = time.monotonic() + max(0.0, timeout)
        self._flush_deadline = deadline
        self._closing.set()
        t = self._thread
        if t is not None:
            t.join(max(0.0, deadline - time.monotonic()) + 1.0)
            if t.is_alive():
                self._stop.set()
                t.join(2.0)
                if t.is_alive():
                    log.warning("mqtt %s: client thread still running at close", self.name)
        drop_queued(self._queue, self._cond, self.health)
        self._state = "closed"

    # ------------------------------------------------------------ views
    def stats(self) -> dict[str, Any]:
        """The sink outcomes of events (sent, dropped, filtered, failed...), queued/max_queue,
        inflight, and the connection: state (connecting, connected, disconnected, refused,
        closed), connected, message (why not connected), connects, reconnects, published
        (every message sent: events, states, counters, discovery), commands, commands_refused.
        healthy: connected to the broker."""
        with self._cond:
            queued = len(self._queue)
        return self.health.snapshot(
            queued=queued, max_queue=self.max_queue, inflight=len(self._inflight),
            state=self._state, connected=self._connected, message=self._message,
            connects=self._connects, reconnects=self._reconnects, published=self._published,
            commands=self._commands, commands_refused=self._commands_refused,
            healthy=self._connected)

    def memory_bytes(self) -> dict[str, int]:
        """Bytes of what waits (runtime/memory.py): the queued events, as JSON."""
        with self._cond:
            items = list(self._queue)
        return {"queue": sum(len(self._event_payload(e)) for e in items)}

    def memory_counts(self) -> dict[str, int]:
        with self._cond:
            return {"queue": len(self._queue), "inflight": len(self._inflight)}

    def memory_limits(self) -> dict[str, int]:
        return {"queue": self.max_queue, "inflight": MAX_INFLIGHT}

    # ------------------------------------------------------------ client thread
    def _make_client(self) -> Any:
        cfg = self.cfg
        c = self._client_factory(callback_api_version=CallbackAPIVersion.VERSION2,
                                 client_id=cfg.client_id, protocol=paho.MQTTv311, clean_session=True)
        if cfg.username is not None:
            pw = cfg.password
            if pw is not None and pw.startswith("env:"):
                pw = os.environ.get(pw[4:])
            c.username_pw_set(cfg.username, pw)
        if cfg.tls.enabled:
            t = cfg.tls
            c.tls_set(ca_certs=t.ca_file, certfile=t.cert_file, keyfile=t.key_file,
                      cert_reqs=ssl.CERT_NONE if t.insecure else ssl.CERT_REQUIRED)
            if t.insecure:
                c.tls_insecure_set(True)
        c.will_set(f"{self.prefix}/available", "offline", qos=1, retain=True)
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_message = self._on_message
        return c

    def _run(self) -> None:
        try:
            self._client = self._make_client()
        except Exception as e:  # noqa: BLE001 - a bad TLS file: a state, not a crash
            self._fail("failed", f"cannot set up the client: {type(e).__name__}: {e}")
            return
        delay = self.cfg.reconnect_min_s
        while not self._stop.is_set():
            if self._closing.is_set() and not self._connected:
                break
            try:
                if self._connect() and self._session():
                    delay = self.cfg.reconnect_min_s
            except Exception as e:  # noqa: BLE001 - the client thread never dies of a bug
                log.exception("mqtt %s: unexpected error in the client thread", self.name)
                self._connected = False
                self._fail("disconnected", f"unexpected {type(e).__name__}: {e}")
                try:
                    self._client.disconnect()
                except Exception:  # noqa: BLE001
                    pass
            if self._stop.is_set() or self._closing.is_set():
                break
            wait = delay * random.uniform(0.8, 1.2)
            log.debug("mqtt %s: next attempt in %.1f s", self.name, wait)
            self._closing.wait(wait)
            delay = min(delay * 2.0, self.cfg.reconnect_max_s)
        self._shutdown()

    def _fail(self, state: str, message: str) -> None:
        """A failed attempt: state and message for stats(), the sink's error (logged at once
        when a failing spell starts, then rate-limited) and a log line for every change of
        state within a spell (absent -> refusing credentials...)."""
        changed = state != self._state
        self._state = state
        self._message = message
        if changed and not self.health.snapshot()["healthy"]:
            log.warning("mqtt %s: %s", self.name, message)
        self.health.error(message)

    def _connect(self) -> bool:
        """Open the TCP (and TLS) connection; the CONNACK is read by the session loop."""
        try:
            self._client.connect(self.cfg.host, self.cfg.port, keepalive=self.cfg.keepalive_s)
            return True
        except (OSError, ValueError) as e:
            reason = getattr(e, "strerror", None) or str(e) or type(e).__name__
            self._fail("disconnected", f"cannot reach the broker at {self.cfg.host}:{self.cfg.port}: "
                                       f"{reason}")
            return False

    def _session(self) -> bool:
        """Run the network loop and publish until the connection ends. True when the broker
        accepted the connection."""
        c = self._client
        started = time.monotonic()
        accepted = False
        while not self._stop.is_set():
            busy = self._connected and self._pump()
            rc = c.loop(timeout=0.0 if busy else 0.05)
            if self._connected:
                accepted = True
            if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                break
            if not self._connected and time.monotonic() - started > max(5.0, self.cfg.keepalive_s):
                self._fail("disconnected", "the broker did not answer the connection (no CONNACK)")
                c.disconnect()
                break
            if self._closing.is_set() and self._drained():
                break
        self._connected = False
        return accepted

    def _drained(self) -> bool:
        with self._cond:
            empty = not self._queue
        return (empty and not self._inflight) or time.monotonic() > self._flush_deadline

    def _shutdown(self) -> None:
        c = self._client
        if c is None:
            return
        try:
            if c.is_connected():
                info = c.publish(f"{self.prefix}/available", "offline", qos=1, retain=True)
                end = time.monotonic() + 0.5
                while not info.is_published() and time.monotonic() < end:
                    if c.loop(timeout=0.05) != MQTTErrorCode.MQTT_ERR_SUCCESS:
                        break
                c.disconnect()
                c.loop(timeout=0.05)
        except Exception:  # noqa: BLE001 - closing never raises
            log.debug("mqtt %s: error while disconnecting", self.name, exc_info=True)
        self._connected = False
        self._state = "closed"

    # ------------------------------------------------------------ paho callbacks (this thread)
    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason_code: Any,
                    properties: Any = None) -> None:
        if reason_code.is_failure:
            hint = ""
            if str(reason_code) in ("Bad user name or password", "Not authorized"):
                hint = " (check mqtt.username and mqtt.password)"
            self._connected = False
            self._fail("refused", f"the broker at {self.cfg.host}:{self.cfg.port} refused the "
                                  f"connection: {reason_code}{hint}")
            return
        self._connected = True
        self._connects += 1
        if self._connects > 1:
            self._reconnects += 1
        self._state = "connected"
        self._message = None
        log.info("mqtt %s: connected (topic prefix %r)%s", self.name, self.prefix,
                 f", reconnect {self._reconnects}" if self._reconnects else "")
        self._refresh = True
        client.publish(f"{self.prefix}/available", "online", qos=1, retain=True)
        self._published += 1
        if self.cfg.commands:
            client.subscribe(f"{self.prefix}/+/command", qos=1)
        if self.cfg.discovery:
            client.subscribe(f"{self.cfg.discovery_prefix}/status", qos=1)

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, reason_code: Any,
                       properties: Any = None) -> None:
        was = self._connected
        self._connected = False
        if self._state == "refused" or self._closing.is_set():
            return
        if was:
            by_server = bool(getattr(flags, "is_disconnect_packet_from_server", False))
            why = f": {reason_code}" if by_server else " (it closed the connection or the network failed)"
            self._fail("disconnected", f"lost the connection to the broker at "
                                       f"{self.cfg.host}:{self.cfg.port}{why}")

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        topic = msg.topic
        if topic == f"{self.cfg.discovery_prefix}/status":
            if msg.payload.strip() == b"online":  # Home Assistant restarted: announce again
                self._refresh = True
            return
        parts = topic.split("/")
        base = self.prefix.split("/")
        if not (self.cfg.commands and len(parts) == len(base) + 2 and parts[-1] == "command"):
            return
        self._command(client, parts[-2], msg.payload)

    def _command(self, client: Any, camera: str, payload: bytes) -> None:
        text = payload.decode("utf-8", "replace").strip()
        command = text
        if text.startswith("{"):
            try:
                command = str(json.loads(text).get("command", ""))
            except (ValueError, AttributeError):
                command = ""
        cam = self._cameras().get(camera)
        ok = False
        if command not in COMMANDS:
            msg = f"unknown command {command[:40]!r}; one of {', '.join(COMMANDS)}"
        elif cam is None:
            msg = f"unknown camera {camera!r}"
        else:
            try:
                fn = getattr(cam, command, None)
                ok = bool(fn()) if fn is not None else False
                msg = "done" if ok else f"camera {camera!r} cannot {command.replace('_', ' ')} now"
            except Exception as e:  # noqa: BLE001 - a command never kills the client thread
                msg = f"{type(e).__name__}: {e}"
        if ok:
            self._commands += 1
            self._poll_soon = True
            log.info("mqtt %s: command %s on camera %s", self.name, command, camera)
        else:
            self._commands_refused += 1
            log.warning("mqtt %s: command on camera %s refused: %s", self.name, camera, msg)
        if cam is not None:  # answer on a known camera's topic only (no topics made up by senders)
            body = json.dumps({"command": command, "ok": ok, "message": msg})
            client.publish(f"{self.prefix}/{camera}/command/result", body, qos=self.cfg.qos)
            self._published += 1

    # ------------------------------------------------------------ publishing (this thread)
    def _event_payload(self, ev: Event) -> bytes:
        return json.dumps(ev.to_dict(), default=json_default, separators=(",", ":")).encode()

    def _pump(self) -> bool:
        """Publish what is due; True when more is waiting (loop again without sleeping)."""
        now = time.monotonic()
        if self._refresh:
            self._refresh = False
            self._last.clear()
            self._known_keys.clear()
            self._poll_at = 0.0
        if now >= self._poll_at or (self._poll_soon and now >= self._poll_at - self.cfg.state_interval_s
                                    + _POLL_SOON_S):
            self._poll_soon = False
            self._poll_at = now + self.cfg.state_interval_s
            self._poll()
        c = self._client
        qos = self.cfg.qos
        while self._retained:
            topic, (payload, retain) = next(iter(self._retained.items()))
            info = c.publish(topic, payload, qos=qos, retain=retain)
            if info.rc == MQTTErrorCode.MQTT_ERR_NO_CONN and qos == 0:
                return False  # sent again after the reconnect (a full refresh)
            del self._retained[topic]
            self._last[topic] = payload
            self._published += 1
        self._prune()
        sent = 0
        while len(self._inflight) < (MAX_INFLIGHT if qos else 1 << 30) and sent < 200:
            with self._cond:
                if not self._queue:
                    break
                ev = self._queue.popleft()
            info = c.publish(f"{self.prefix}/events", self._event_payload(ev), qos=qos)
            if info.rc == MQTTErrorCode.MQTT_ERR_NO_CONN and qos == 0:
                with self._cond:  # not sent: first again once connected
                    self._queue.appendleft(ev)
                return False
            if info.rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN):
                self.health.count("failed")
                self.health.error(f"publishing event {ev.id}: {paho.error_string(info.rc)}")
                continue
            self._published += 1
            sent += 1
            if qos == 0:
                self.health.count("sent")
            else:  # paho keeps it (and sends it again after a reconnect) until acknowledged
                self._inflight.append((info, ev.id))
        with self._cond:
            more = bool(self._queue)
        return (more and len(self._inflight) < MAX_INFLIGHT) or bool(self._retained)

    def _prune(self) -> None:
        if not self._inflight:
            return
        keep = []
        done = 0
        for info, eid in self._inflight:
            try:
                published = info.is_published()
            except (ValueError, RuntimeError):
                published = False
                self.health.count("failed")
                continue
            if published:
                done += 1
            else:
                keep.append((info, eid))
        self._inflight = keep
        if done:
            self.health.count("sent", done)

    def _poll(self) -> None:
        """Each camera's state and counters; changed values (and discovery configs of new
        counters) are queued to publish."""
        try:
            cameras = dict(self._cameras())
        except Exception:  # noqa: BLE001
            log.debug("mqtt %s: listing cameras failed", self.name, exc_info=True)
            return
        retain = self.cfg.retain
        for name, cam in cameras.items():
            try:
                st = cam.status()
            except Exception as e:  # noqa: BLE001 - one camera never stops the others
                log.debug("mqtt %s: status of %s failed: %s", self.name, name, e)
                continue
            keys = tuple(st.counters)
            if self.cfg.discovery and self._known_keys.get(name) != keys:
                announced = set(self._known_keys.get(name, ()))
                new = [k for k in keys if k not in announced]
                for topic, payload in discovery_messages(self.cfg, name, new, st.detector,
                                                         with_state=name not in self._known_keys):
                    self._retained[topic] = (json.dumps(payload, separators=(",", ":")).encode(), True)
            self._known_keys[name] = keys
            base = f"{self.prefix}/{name}"
            self._put(f"{base}/state", st.state.encode(), retain)
            for key, value in st.counters.items():
                self._put(f"{base}/counts/{'/'.join(counter_levels(key))}", _value(value).encode(), retain)

    def _put(self, topic: str, payload: bytes, retain: bool) -> None:
        if self._last.get(topic) != payload:
            self._retained[topic] = (payload, retain)
