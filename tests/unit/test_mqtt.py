"""MqttSink without a broker: topics and payloads (events, states, counters, Home Assistant
discovery), the bounded drop-oldest queue, the in-flight window, commands, and the `mqtt`
config section. A recording client stands in for paho here; tests/integration/
test_mqtt_broker.py runs the same sink against a real mosquitto."""
from __future__ import annotations

import json
import re
from types import SimpleNamespace

import pytest
from paho.mqtt.enums import MQTTErrorCode

from core.camera import CameraStatus, CaptureStatus
from core.config import ConfigError, MqttConfig, parse_config
from core.types import Event, EventKind, SourceState
from events.mqtt import MAX_INFLIGHT, MqttSink, counter_levels, discovery_messages, topic_level

BASE = {"cameras": [{"name": "cam", "source": "synthetic:conveyor"}]}


class Info:
    def __init__(self, rc=MQTTErrorCode.MQTT_ERR_SUCCESS, published=False) -> None:
        self.rc = rc
        self.published = published

    def is_published(self) -> bool:
        return self.published


class Recorder:
    """Records publish() calls like paho's Client; `acks` False keeps qos>0 messages unacknowledged."""

    def __init__(self, acks: bool = True, rc=MQTTErrorCode.MQTT_ERR_SUCCESS) -> None:
        self.sent: list[tuple[str, bytes, int, bool]] = []
        self.infos: list[Info] = []
        self.acks = acks
        self.rc = rc

    def publish(self, topic, payload=None, qos=0, retain=False):
        payload = payload.encode() if isinstance(payload, str) else payload
        self.sent.append((topic, payload, qos, retain))
        info = Info(self.rc, published=self.acks)
        self.infos.append(info)
        return info

    def topics(self) -> list[str]:
        return [t for t, *_ in self.sent]

    def last(self, topic: str) -> bytes | None:
        for t, p, *_ in reversed(self.sent):
            if t == topic:
                return p
        return None


class FakeCamera:
    def __init__(self, name: str, counters: dict, state: str = "LIVE") -> None:
        self.name = name
        self.counters = dict(counters)
        self.state = state
        self.calls: list[str] = []

    def status(self) -> CameraStatus:
        return CameraStatus(name=self.name, state=self.state, source="synthetic:conveyor",
                            detector="motion", detect_every=1,
                            capture=CaptureStatus(state=self.state), counters=dict(self.counters))

    def reset_exposure(self) -> bool:
        self.calls.append("reset_exposure")
        return True

    def reset_counters(self) -> bool:
        self.calls.append("reset_counters")
        return True


COUNTERS = {"detections": 12, "confirmed_tracks": 3, "line gate in": 2, "line gate out": 1,
            "zone dock entries": 4, "zone dock now": 1, "parts": 5, "pass": 4, "defect": 1,
            "defect_rate": 0.2, "labels_read": 5}


def connected_sink(cameras=None, client=None, **cfg) -> tuple[MqttSink, Recorder]:
    sink = MqttSink(MqttConfig(enabled=True, **cfg), cameras=(lambda: cameras or {}), autostart=False)
    sink._client = client or Recorder()
    sink._connected = True
    return sink, sink._client


def ev(i: int, kind=EventKind.LINE_CROSSED, **kw) -> Event:
    return Event(kind, "belt", ts=1700000000.0 + i, track_id=i, label="part", box=(1, 2, 30, 40),
                 data={"line": "gate", "direction": "in"}, frame_seq=10 * i, id=i, **kw)


# ---------------------------------------------------------------- names
@pytest.mark.parametrize("key, levels", [
    ("line gate in", ("line", "gate", "in")),
    ("line gate out", ("line", "gate", "out")),
    ("line main door in", ("line", "main_door", "in")),   # a name with a space
    ("line a/b+#c out", ("line", "a_b__c", "out")),        # wildcards and separators never leak
    ("zone dock entries", ("zone", "dock", "entries")),
    ("zone dock now", ("zone", "dock", "now")),
    ("defect_rate", ("defect_rate",)),
    ("confirmed_tracks", ("confirmed_tracks",)),
    ("line in", ("line_in",)),                             # no name: a plain key
])
def test_counter_levels(key, levels):
    assert counter_levels(key) == levels
    assert all(re.fullmatch(r"[A-Za-z0-9_-]+", lv) for lv in levels)


def test_topic_level():
    assert topic_level("belt-1_a") == "belt-1_a"
    assert topic_level("a b/c#+") == "a_b_c__"
    assert topic_level("") == "_"


# ---------------------------------------------------------------- events
def test_events_are_the_api_payload_in_order_on_prefix_events():
    sink, c = connected_sink(topic_prefix="site/vigil", qos=1)
    events = [ev(i, snapshot_url=f"/api/events/{i}/snapshot.jpg") for i in (1, 2, 3)]
    for e in events:
        sink.submit(e)
    sink._pump()
    got = [(t, json.loads(p), q, r) for t, p, q, r in c.sent if t == "site/vigil/events"]
    assert [g[1] for g in got] == [e.to_dict() for e in events]
    assert got[0][1]["snapshot_url"] == "/api/events/1/snapshot.jpg"
    assert {(q, r) for _, _, q, r in got} == {(1, False)}  # events are never retained
    sink._prune()
    st = sink.stats()
    assert (st["sent"], st["queued"], st["inflight"], st["dropped"]) == (3, 0, 0, 0)


def test_queue_is_bounded_drops_the_oldest_and_counts_them():
    sink = MqttSink(MqttConfig(enabled=True, max_queue=5), autostart=False)  # nothing connects
    for i in range(1, 21):
        sink.submit(ev(i))
    st = sink.stats()
    assert (st["queued"], st["dropped"], st["max_queue"], st["connected"]) == (5, 15, 5, False)
    assert sink.memory_counts()["queue"] == 5 and sink.memory_bytes()["queue"] > 5 * 50
    sink._client = c = Recorder()
    sink._connected = True
    sink._pump()
    assert [json.loads(p)["id"] for t, p, *_ in c.sent if t.endswith("/events")] == [16, 17, 18, 19, 20]


def test_qos1_keeps_at_most_max_inflight_unacknowledged():
    sink, c = connected_sink(qos=1, client=Recorder(acks=False))
    for i in range(1, MAX_INFLIGHT + 11):
        sink.submit(ev(i))
    sink._pump()
    assert len([t for t in c.topics() if t.endswith("/events")]) == MAX_INFLIGHT
    st = sink.stats()
    assert (st["inflight"], st["queued"], st["sent"]) == (MAX_INFLIGHT, 10, 0)
    for info in c.infos:  # the broker acknowledges
        info.published = True
    c.acks = True
    sink._pump()
    sink._prune()
    assert [json.loads(p)["id"] for t, p, *_ in c.sent if t.endswith("/events")] == list(range(1, MAX_INFLIGHT + 11))
    assert sink.stats()["sent"] == MAX_INFLIGHT + 10


def test_qos0_event_not_sent_while_disconnected_stays_first():
    sink, c = connected_sink(qos=0, client=Recorder(rc=MQTTErrorCode.MQTT_ERR_NO_CONN))
    sink.submit(ev(1))
    sink.submit(ev(2))
    sink._pump()
    assert sink.stats()["queued"] == 2 and sink.stats()["sent"] == 0
    sink._client = c2 = Recorder()
    sink._pump()
    assert [json.loads(p)["id"] for t, p, *_ in c2.sent if t.endswith("/events")] == [1, 2]
    assert sink.stats()["sent"] == 2


def test_kinds_filter():
    sink, c = connected_sink(kinds=["line_crossed"])
    sink.submit(ev(1))
    sink.submit(ev(2, kind=EventKind.TRACK_STARTED))
    sink._pump()
    assert [json.loads(p)["kind"] for t, p, *_ in c.sent if t.endswith("/events")] == ["line_crossed"]
    assert sink.stats()["filtered"] == 1


def test_closed_sink_drops_new_events():
    sink = MqttSink(MqttConfig(enabled=True))
    sink.close(timeout=0.1)
    sink.submit(ev(1))
    assert sink.stats()["dropped"] == 1 and sink.stats()["state"] == "closed"


# ---------------------------------------------------------------- states and counters
def test_state_and_counter_topics_retained_and_only_changes_sent():
    cam = FakeCamera("belt", COUNTERS)
    sink, c = connected_sink({"belt": cam}, discovery=False, retain=True, qos=1)
    sink._pump()
    assert c.last("vigil/belt/state") == b"LIVE"
    expect = {"vigil/belt/counts/line/gate/in": b"2", "vigil/belt/counts/line/gate/out": b"1",
              "vigil/belt/counts/zone/dock/entries": b"4", "vigil/belt/counts/zone/dock/now": b"1",
              "vigil/belt/counts/parts": b"5", "vigil/belt/counts/pass": b"4",
              "vigil/belt/counts/defect": b"1", "vigil/belt/counts/defect_rate": b"0.2",
              "vigil/belt/counts/detections": b"12", "vigil/belt/counts/confirmed_tracks": b"3",
              "vigil/belt/counts/labels_read": b"5"}
    for topic, payload in expect.items():
        assert c.last(topic) == payload, topic
    assert all(r for t, _, _, r in c.sent if t.startswith("vigil/belt/"))
    n = len(c.sent)
    sink._poll_at = 0.0  # the next poll is due; nothing changed: nothing sent
    sink._pump()
    assert len(c.sent) == n
    cam.counters["line gate in"] = 3
    cam.state = "RECONNECTING"
    sink._poll_at = 0.0
    sink._pump()
    assert c.sent[n:] == [("vigil/belt/state", b"RECONNECTING", 1, True),
                          ("vigil/belt/counts/line/gate/in", b"3", 1, True)]
    sink._refresh = True  # a (re)connect: everything again (a restarted broker may have lost it)
    sink._pump()
    assert len(c.sent) == n + 2 + 1 + len(expect)


def test_retain_false_and_event_polls_soon():
    cam = FakeCamera("belt", {"line gate in": 0})
    sink, c = connected_sink({"belt": cam}, discovery=False, retain=False, state_interval_s=3600)
    sink._pump()
    assert ("vigil/belt/counts/line/gate/in", b"0", 1, False) in c.sent
    cam.counters["line gate in"] = 1
    sink._pump()  # the hour is not up: no poll
    assert c.last("vigil/belt/counts/line/gate/in") == b"0"
    sink.submit(ev(1))  # a crossing: poll soon (after _POLL_SOON_S since the last poll)
    sink._poll_at -= 1.0
    sink._pump()
    assert c.last("vigil/belt/counts/line/gate/in") == b"1"


# ---------------------------------------------------------------- Home Assistant discovery
REQUIRED = {"name", "unique_id", "availability", "device"}


def test_discovery_configs_follow_home_assistant_format():
    cfg = MqttConfig(enabled=True, client_id="vigil-1", commands=True)
    msgs = discovery_messages(cfg, "belt", list(COUNTERS), "motion")
    topics = [t for t, _ in msgs]
    # <discovery_prefix>/<component>/<node_id>/<object_id>/config, ids of [a-zA-Z0-9_-]
    assert all(re.fullmatch(r"homeassistant/(sensor|button)/vigil-1/[A-Za-z0-9_-]+/config", t) for t in topics)
    assert len(set(topics)) == len(topics)
    uids = [p["unique_id"] for _, p in msgs]
    assert len(set(uids)) == len(uids)
    sensors = {p["state_topic"]: p for t, p in msgs if "/sensor/" in t}
    assert set(sensors) == {"vigil/belt/state"} | {
        "vigil/belt/counts/" + "/".join(counter_levels(k)) for k in COUNTERS}
    for _, p in msgs:
        json.dumps(p)  # plain JSON
        assert REQUIRED <= set(p)
        assert p["availability"] == [{"topic": "vigil/available", "payload_available": "online",
                                      "payload_not_available": "offline"}]
        assert p["device"]["identifiers"] == ["vigil-1_belt"] and p["device"]["name"] == "Vigil belt"
    st = sensors["vigil/belt/state"]
    assert st["device_class"] == "enum" and set(st["options"]) == {s.value for s in SourceState}
    assert "state_class" not in st  # an enum sensor has none
    assert sensors["vigil/belt/counts/line/gate/in"]["state_class"] == "total_increasing"
    assert sensors["vigil/belt/counts/zone/dock/now"]["state_class"] == "measurement"
    assert sensors["vigil/belt/counts/defect_rate"]["state_class"] == "measurement"
    buttons = [p for t, p in msgs if "/button/" in t]
    assert {b["payload_press"] for b in buttons} == {"reset_exposure", "reset_counters"}
    assert {b["command_topic"] for b in buttons} == {"vigil/belt/command"}
    assert not [t for t, _ in discovery_messages(MqttConfig(enabled=True), "belt", [], "motion")
                if "/button/" in t]  # commands off: no buttons


def test_discovery_sent_before_values_and_again_for_new_counters():
    cam = FakeCamera("belt", {"line gate in": 0})
    sink, c = connected_sink({"belt": cam})
    sink._pump()
    topics = c.topics()
    cfgs = [t for t in topics if t.startswith("homeassistant/")]
    assert cfgs == ["homeassistant/sensor/vigil/belt_state/config",
                    "homeassistant/sensor/vigil/belt_line_gate_in/config"]
    assert topics.index(cfgs[-1]) < topics.index("vigil/belt/counts/line/gate/in")
    assert all(r for t, _, _, r in c.sent if t.startswith("homeassistant/"))  # retained
    cam.counters["zone dock now"] = 2
    n = len(c.sent)
    sink._poll_at = 0.0
    sink._pump()
    assert [t for t in c.topics()[n:] if t.startswith("homeassistant/")] == [
        "homeassistant/sensor/vigil/belt_zone_dock_now/config"]


# ---------------------------------------------------------------- commands
def msg(topic: str, payload: bytes):
    return SimpleNamespace(topic=topic, payload=payload)


@pytest.mark.parametrize("payload, call", [(b"reset_counters", "reset_counters"),
                                           (b"reset_exposure", "reset_exposure"),
                                           (b'{"command": "reset_counters"}', "reset_counters")])
def test_commands_when_enabled(payload, call):
    cam = FakeCamera("belt", {})
    sink, c = connected_sink({"belt": cam}, commands=True)
    sink._on_message(c, None, msg("vigil/belt/command", payload))
    assert cam.calls == [call]
    assert json.loads(c.last("vigil/belt/command/result")) == {"command": call, "ok": True, "message": "done"}
    assert sink.stats()["commands"] == 1


def test_commands_off_by_default_and_bad_commands_refused():
    cam = FakeCamera("belt", {})
    sink, c = connected_sink({"belt": cam})
    sink._on_message(c, None, msg("vigil/belt/command", b"reset_counters"))
    assert cam.calls == [] and c.sent == []
    sink, c = connected_sink({"belt": cam}, commands=True)
    sink._on_message(c, None, msg("vigil/belt/command", b"format_disk"))
    res = json.loads(c.last("vigil/belt/command/result"))
    assert res["ok"] is False and "unknown command" in res["message"]
    sink._on_message(c, None, msg("vigil/ghost/command", b"reset_counters"))
    assert c.last("vigil/ghost/command/result") is None  # no answer on made-up topics
    sink._on_message(c, None, msg("vigil/belt/x/command", b"reset_counters"))
    assert cam.calls == [] and sink.stats()["commands_refused"] == 2


def test_home_assistant_birth_republishes_discovery():
    sink, c = connected_sink({"belt": FakeCamera("belt", {})})
    sink._pump()
    sink._on_message(c, None, msg("homeassistant/status", b"online"))
    n = len(c.sent)
    sink._pump()
    assert "homeassistant/sensor/vigil/belt_state/config" in c.topics()[n:]


# ---------------------------------------------------------------- connection states
def test_refused_credentials_are_a_state_with_a_message():
    sink = MqttSink(MqttConfig(enabled=True, username="u", password="wrong-one"))
    rc = type("RC", (), {"is_failure": True, "__str__": lambda self: "Not authorized"})()
    sink._on_connect(None, None, None, rc)
    st = sink.stats()
    assert st["state"] == "refused" and not st["connected"] and not st["healthy"]
    assert "refused the connection: Not authorized" in st["message"]
    assert "mqtt.username and mqtt.password" in st["message"] and "wrong-one" not in st["message"]


# ---------------------------------------------------------------- config
def test_config_defaults_disabled():
    c = parse_config(BASE).mqtt
    assert (c.enabled, c.port, c.qos, c.retain, c.discovery, c.commands) == (False, 1883, 1, True, True, False)


@pytest.mark.parametrize("mqtt, where", [
    ({"topic_prefix": "a/+/b"}, "mqtt.topic_prefix"),
    ({"topic_prefix": "/a"}, "mqtt.topic_prefix"),
    ({"topic_prefix": "a//b"}, "mqtt.topic_prefix"),
    ({"qos": 3}, "mqtt.qos"),
    ({"port": 0}, "mqtt.port"),
    ({"client_id": "a b"}, "mqtt.client_id"),
    ({"kinds": ["line_crosed"]}, "mqtt.kinds"),
    ({"password": "pw-123"}, "password needs username"),
    ({"reconnect_min_s": 5, "reconnect_max_s": 1}, "reconnect_max_s must be >= reconnect_min_s"),
    ({"tls": {"enabled": True, "ca_file": "/no/such/ca.pem"}}, "mqtt.tls.ca_file"),
    ({"hots": "x"}, "mqtt.hots: unknown key"),
])
def test_config_errors_name_the_key(mqtt, where):
    with pytest.raises(ConfigError) as e:
        parse_config({**BASE, "mqtt": mqtt}, "vigil.yaml")
    assert where in str(e.value) and "vigil.yaml" in str(e.value)


def test_config_password_env_and_never_echoed(monkeypatch):
    monkeypatch.delenv("VIGIL_TEST_MQTT_PW", raising=False)
    with pytest.raises(ConfigError) as e:
        parse_config({**BASE, "mqtt": {"username": "u", "password": "env:VIGIL_TEST_MQTT_PW"}})
    assert "mqtt.password" in str(e.value) and "'VIGIL_TEST_MQTT_PW'" in str(e.value)
    # not read by commands that start nothing
    parse_config({**BASE, "mqtt": {"username": "u", "password": "env:VIGIL_TEST_MQTT_PW"}},
                 resolve_secrets=False)
    monkeypatch.setenv("VIGIL_TEST_MQTT_PW", "s3cret")
    c = parse_config({**BASE, "mqtt": {"username": "u", "password": "env:VIGIL_TEST_MQTT_PW"}}).mqtt
    assert c.password == "env:VIGIL_TEST_MQTT_PW"  # the reference is kept; read at connect
    secret = "hunter2-" + "x" * 1100
    with pytest.raises(ConfigError) as e:
        parse_config({**BASE, "mqtt": {"username": "u", "password": secret}})
    assert "mqtt.password" in str(e.value) and "hunter2" not in str(e.value)


def test_sink_name_has_no_credentials():
    sink = MqttSink(MqttConfig(enabled=True, host="broker.lan", port=8883, username="u",
                               password="pw-123", tls={"enabled": True}))
    assert sink.name == "mqtts://broker.lan:8883"
    assert "pw-123" not in json.dumps(sink.stats())


def test_status_failure_of_one_camera_does_not_stop_the_others():
    class Broken(FakeCamera):
        def status(self):
            raise RuntimeError("gone")
    sink, c = connected_sink({"a": Broken("a", {}), "b": FakeCamera("b", {"parts": 1})}, discovery=False)
    sink._pump()
    assert c.last("vigil/b/counts/parts") == b"1" and c.last("vigil/a/state") is None


def test_failed_camera_state_is_published():
    from stream.camera import FailedCamera
    cam = FailedCamera("x", "yolo", "rtsp://u:pw@cam/1", "model file not found")
    sink, c = connected_sink({"x": cam}, discovery=False)
    sink._pump()
    assert c.last("vigil/x/state") == b"FAILED"
    assert cam.reset_counters() is False


def test_client_thread_survives_an_unexpected_error_and_retries():
    attempts = []

    class Boom:
        def __init__(self, **kw):
            self.kw = kw

        def will_set(self, *a, **kw):
            pass

        def connect(self, host, port, keepalive=60):
            attempts.append((host, port))
            raise RuntimeError("boom")

        def disconnect(self):
            pass

        def is_connected(self):
            return False

    sink = MqttSink(MqttConfig(enabled=True, reconnect_min_s=0.02, reconnect_max_s=0.05),
                    client_factory=Boom).start()
    try:
        import time
        deadline = time.monotonic() + 10
        while len(attempts) < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(attempts) >= 3 and sink._thread.is_alive()
        st = sink.stats()
        assert st["state"] == "disconnected" and st["message"] == "unexpected RuntimeError: boom"
        assert attempts[0] == ("127.0.0.1", 1883)
    finally:
        sink.close(timeout=0.2)
    assert not sink._thread.is_alive()


def test_first_event_starts_a_sink_nobody_started():
    sink = MqttSink(MqttConfig(enabled=True, port=1, reconnect_min_s=5, reconnect_max_s=5))
    assert sink.stats()["state"] == "not started"
    sink.submit(ev(1))
    try:
        assert sink._thread is not None and sink._thread.is_alive()
        thread = sink._thread
        sink.submit(ev(2))
        assert sink._thread is thread  # started once
    finally:
        sink.close(timeout=0.2)
    assert not thread.is_alive() and sink.stats()["dropped"] == 2
