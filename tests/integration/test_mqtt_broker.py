"""Vigil against a real MQTT broker (Debian's mosquitto on a free loopback port, its own
config in a temporary folder) and a real paho subscriber: a run on synthetic:conveyor served
by the real web server publishes its events, camera state, counters and Home Assistant
discovery configs; the broker killed (SIGKILL) and restarted mid-run loses no event inside
the queue bound while the cameras keep running; a broker absent at start, then one refusing
the credentials, are states with a message in /api/sinks, /metrics and the log; an outage
longer than the queue keeps the newest events; TLS with a throwaway CA (verified, unverified,
insecure).

Skipped with a reason without mosquitto; a failure under VIGIL_CI=1 (.ci/run installs it).
"""
from __future__ import annotations

import json
import logging
import re
import time

import pytest
import requests

from core.config import MqttConfig, parse_config
from events.mqtt import MqttSink
from tests.conftest import require
from tests.integration.webutil import running_server
from tests.mqtt_broker import Mosquitto, Subscriber, free_port, mosquitto_available
from tests.timing import wait_until

pytestmark = pytest.mark.timeout(180)

BELT = {"name": "belt", "source": "synthetic:conveyor", "detector": "motion", "seed": 2,
        "detector_params": {"warmup_frames": 40, "downscale": 2, "var_threshold": 36, "merge_distance": 16},
        "lines": [{"name": "gate", "points": [[0.5, 0.05], [0.5, 0.95]], "normalized": True}]}
FAST = {"reconnect_min_s": 0.2, "reconnect_max_s": 1.0, "state_interval_s": 0.5, "keepalive_s": 10}
DISCOVERY_KEYS = {"name", "unique_id", "state_topic", "availability", "device"}


@pytest.fixture(scope="module", autouse=True)
def _mosquitto() -> None:
    ok, reason = mosquitto_available()
    require(ok, reason)


def config(tmp_path, mqtt: dict, cameras=None):
    return parse_config({"server": {"host": "127.0.0.1", "port": 0, "threads": 16},
                         "cameras": cameras or [BELT], "paths": {"data": str(tmp_path / "data")},
                         "tracker": {"min_hits": 2}, "mqtt": {"enabled": True, **FAST, **mqtt}})


def sink_row(base: str) -> dict:
    rows = [s for s in requests.get(base + "/api/sinks", timeout=5).json()["sinks"] if s["kind"] == "mqtt"]
    assert len(rows) == 1, rows
    return rows[0]


def metric(base: str, name: str) -> float | None:
    text = requests.get(base + "/metrics", timeout=5).text
    m = re.search(rf'^{name}\{{name="mqtt://[^"]+",sink="mqtt"\}} ([0-9.e+-]+)$', text, re.M)
    return float(m.group(1)) if m else None


def frames_in(base: str, camera: str) -> int:
    return requests.get(f"{base}/api/cameras/{camera}", timeout=5).json()["capture"]["frames_in"]


def test_run_publishes_events_states_counters_discovery_and_survives_a_broker_restart(tmp_path):
    broker = Mosquitto(tmp_path / "broker").start()
    sub = Subscriber(broker.port, ["vigil/#", "homeassistant/#"])
    try:
        cfg = config(tmp_path, {"port": broker.port, "commands": True, "max_queue": 1000})
        with running_server(cfg) as srv:
            base, vigil = srv.base, srv.vigil

            def crossings():
                return [e for e in sub.events("vigil/events") if e["kind"] == "line_crossed"]

            assert sub.wait(lambda: len(crossings()) >= 1, timeout=60), \
                f"no line_crossed event on vigil/events; sink {sink_row(base)}"
            assert sub.last("vigil/available") == b"online"
            assert sub.wait(lambda: sub.last("vigil/belt/state") == b"LIVE", timeout=10)

            # events: exactly the API's payload (snapshot URL included), in bus order
            got = sub.events("vigil/events")
            api = {e["id"]: e for e in requests.get(base + "/api/events?limit=1000", timeout=5).json()["events"]}
            bus = {e.id: e.to_dict() for e in vigil.bus.recent(limit=2000)}
            for e in got:
                assert e == bus[e["id"]], e
                if e["id"] in api:
                    assert e["snapshot_url"] == api[e["id"]]["snapshot_url"]
            cross = crossings()[0]
            assert cross["camera"] == "belt" and cross["data"]["line"] == "gate"
            assert cross["snapshot_url"] == f"/api/events/{cross['id']}/snapshot.jpg"
            # the store writes in the background: the link works once the event is stored
            assert wait_until(lambda: requests.get(base + cross["snapshot_url"], timeout=5).content[:2]
                              == b"\xff\xd8", timeout=10) is not None
            ids = [e["id"] for e in got]
            assert ids == sorted(ids)

            # counters: one topic each, equal to the camera's counters once they settle
            counts = vigil.camera("belt").status().counters
            assert {"line gate in", "line gate out", "detections", "confirmed_tracks"} <= set(counts)
            assert sub.wait(lambda: sub.last("vigil/belt/counts/line/gate/in") is not None
                            and int(sub.last("vigil/belt/counts/line/gate/in")) +
                            int(sub.last("vigil/belt/counts/line/gate/out") or 0) >= 1, timeout=10)

            # Home Assistant discovery: valid JSON, the keys it needs, topics that exist
            disc = {t: json.loads(p) for t, p, _ in sub.snapshot() if t.startswith("homeassistant/")}
            sensors = {t: p for t, p in disc.items() if t.startswith("homeassistant/sensor/vigil/")}
            assert "homeassistant/sensor/vigil/belt_state/config" in sensors
            assert "homeassistant/sensor/vigil/belt_line_gate_in/config" in sensors
            assert any(t.startswith("homeassistant/button/vigil/belt_reset_counters") for t in disc)
            published = {t for t, _, _ in sub.snapshot()}
            for t, p in sensors.items():
                assert DISCOVERY_KEYS <= set(p), (t, p)
                assert p["state_topic"] in published, (t, p["state_topic"])
                assert p["availability"][0]["topic"] == "vigil/available"
                assert p["device"]["identifiers"] == ["vigil_belt"]
            assert len({p["unique_id"] for p in disc.values()}) == len(disc)

            # the broker crashes: Vigil notices, says so, and keeps running
            assert sink_row(base)["connected"] and metric(base, "vigil_sink_connected") == 1.0
            broker.kill()
            assert wait_until(lambda: not sink_row(base)["connected"], timeout=15) is not None
            row = sink_row(base)
            assert row["state"] == "disconnected" and not row["healthy"]
            assert "127.0.0.1:%d" % broker.port in row["message"]
            assert metric(base, "vigil_sink_connected") == 0.0
            at_kill = vigil.bus.last_id
            frames = frames_in(base, "belt")
            assert wait_until(lambda: vigil.bus.last_id >= at_kill + 3, timeout=40) is not None, \
                "no events while the broker was away"
            assert frames_in(base, "belt") > frames
            assert requests.get(base + "/readyz", timeout=5).status_code == 200
            assert sink_row(base)["queued"] >= 1  # waiting in the bounded queue

            broker.start()
            assert wait_until(lambda: sink_row(base)["connected"], timeout=20) is not None
            row = sink_row(base)
            assert row["reconnects"] >= 1 and metric(base, "vigil_sink_reconnects_total") >= 1
            last = vigil.bus.last_id

            def received() -> set[int]:
                return {e["id"] for e in sub.events("vigil/events")}

            ok = sub.wait(lambda: set(range(1, last + 1)) <= received(), timeout=30)
            missing = sorted(set(range(1, last + 1)) - received())
            assert ok, f"events lost across the restart: {missing[:20]} ({len(missing)}); {sink_row(base)}"
            row = sink_row(base)
            assert row["dropped"] == 0 and row["failed"] == 0
            all_ids = [e["id"] for e in sub.events("vigil/events")]
            print(f"events 1..{last}: {last - at_kill} published while the broker was away or "
                  f"reconnecting, all received ({len(all_ids) - len(set(all_ids))} duplicates, QoS 1)")
            assert sub.wait(lambda: sub.last("vigil/available") == b"online", timeout=5)

            # commands (on here): reset the counters and the exposure over MQTT
            before = sum(v for k, v in vigil.camera("belt").status().counters.items() if k.startswith("line "))
            assert before >= 1
            sub.client.publish("vigil/belt/command", "reset_counters", qos=1)
            assert sub.wait(lambda: sub.last("vigil/belt/command/result") is not None, timeout=10)
            assert json.loads(sub.last("vigil/belt/command/result")) == {
                "command": "reset_counters", "ok": True, "message": "done"}
            after = sum(v for k, v in vigil.camera("belt").status().counters.items() if k.startswith("line "))
            assert after < before
            sub.client.publish("vigil/belt/command", '{"command": "reset_exposure"}', qos=1)
            assert sub.wait(lambda: json.loads(sub.last("vigil/belt/command/result"))["command"]
                            == "reset_exposure", timeout=10)
            assert sink_row(base)["commands"] == 2
        # a clean stop says goodbye: retained "offline"
        assert sub.wait(lambda: sub.last("vigil/available") == b"offline", timeout=10)
    finally:
        sub.close()
        broker.stop()


def test_broker_absent_at_start_then_refusing_credentials_is_a_state_not_a_crash(
        tmp_path, monkeypatch, caplog):
    caplog.set_level(logging.INFO, logger="vigil.events.mqtt")
    port = free_port()  # nothing listens yet
    monkeypatch.setenv("VIGIL_TEST_MQTT_PW", "wrong-password")
    cam = {"name": "cross", "source": "synthetic:crossing", "detector": "none", "seed": 1}
    cfg = config(tmp_path, {"port": port, "username": "vigil", "password": "env:VIGIL_TEST_MQTT_PW"},
                 cameras=[cam])
    broker = None
    try:
        with running_server(cfg) as srv:
            base = srv.base
            assert requests.get(base + "/readyz", timeout=5).status_code == 200
            assert wait_until(lambda: sink_row(base)["state"] == "disconnected", timeout=15) is not None
            row = sink_row(base)
            assert f"cannot reach the broker at 127.0.0.1:{port}" in row["message"]
            assert "refused" in row["message"].lower()  # ECONNREFUSED
            assert not row["healthy"] and metric(base, "vigil_sink_connected") == 0.0

            broker = Mosquitto(tmp_path / "broker", users={"vigil": "right-password"}, port=port).start()
            assert wait_until(lambda: sink_row(base)["state"] == "refused", timeout=20) is not None, sink_row(base)
            row = sink_row(base)
            assert "refused the connection" in row["message"]
            assert ("Not authorized" in row["message"]) or ("Bad user name or password" in row["message"])
            assert "mqtt.username and mqtt.password" in row["message"]
            assert "wrong-password" not in json.dumps(row)
            assert not row["connected"] and metric(base, "vigil_sink_connected") == 0.0
            assert frames_in(base, "cross") > 0  # the camera runs regardless
            logged = [r.getMessage() for r in caplog.records if r.name == "vigil.events.mqtt"]
            assert any("refused the connection" in m for m in logged), logged
            assert any("cannot reach the broker" in m for m in logged), logged

            # the right password is let in by the same broker
            good = MqttSink(MqttConfig(enabled=True, port=port, username="vigil", password="right-password",
                                       client_id="vigil-good", **FAST)).start()
            try:
                assert wait_until(lambda: good.stats()["connected"], timeout=15) is not None, good.stats()
            finally:
                good.close(timeout=1.0)
    finally:
        if broker is not None:
            broker.stop()


def test_outage_longer_than_the_queue_keeps_the_newest_events_and_counts_the_rest(tmp_path):
    """max_queue 3, 10 events while the broker is down: the subscriber gets the newest 3 once
    it is back, and the sink counts 7 dropped."""
    from core.types import Event, EventKind
    broker = Mosquitto(tmp_path / "broker").start()
    sub = Subscriber(broker.port, ["bound/#"])
    sink = MqttSink(MqttConfig(enabled=True, port=broker.port, topic_prefix="bound", max_queue=3,
                               discovery=False, **FAST)).start()
    try:
        assert wait_until(lambda: sink.stats()["connected"], timeout=15) is not None
        broker.kill()
        assert wait_until(lambda: not sink.stats()["connected"], timeout=15) is not None
        for i in range(1, 11):
            sink.submit(Event(EventKind.LINE_CROSSED, "belt", id=i, data={"line": "gate"}))
        st = sink.stats()
        assert (st["queued"], st["dropped"]) == (3, 7)
        broker.start()
        assert sub.wait(lambda: len(sub.events("bound/events")) >= 3, timeout=20), sink.stats()
        time.sleep(0.3)
        assert [e["id"] for e in sub.events("bound/events")] == [8, 9, 10]
        assert sink.stats()["sent"] == 3 and sink.stats()["reconnects"] == 1
    finally:
        sink.close(timeout=1.0)
        sub.close()
        broker.stop()


def test_tls_broker_verified_by_the_configured_ca_and_refused_without_it(tmp_path):
    """mosquitto with a certificate from a throwaway CA: mqtt.tls.ca_file connects (events
    arrive over TLS); without it the certificate fails verification (a state with a message);
    tls.insecure connects anyway (testing only)."""
    from core.types import Event, EventKind
    from tests.mqtt_broker import BrokerCerts
    ok, reason = BrokerCerts.available()
    require(ok, reason)
    certs = BrokerCerts(tmp_path / "certs")
    broker = Mosquitto(tmp_path / "broker", tls=certs).start()
    sub = Subscriber(broker.port, ["tls/#"], ca_file=str(certs.ca))
    sinks = []
    try:
        def sink(**tls) -> MqttSink:
            s = MqttSink(MqttConfig(enabled=True, port=broker.port, topic_prefix="tls", discovery=False,
                                    client_id=f"vigil-tls-{len(sinks)}", tls={"enabled": True, **tls},
                                    **FAST)).start()
            sinks.append(s)
            return s

        good = sink(ca_file=str(certs.ca))
        assert wait_until(lambda: good.stats()["connected"], timeout=15) is not None, good.stats()
        good.submit(Event(EventKind.LINE_CROSSED, "belt", id=1, data={"line": "gate"}))
        assert sub.wait(lambda: [e["id"] for e in sub.events("tls/events")] == [1], timeout=10)
        assert good.name.startswith("mqtts://")

        untrusted = sink()  # the system's CAs do not know the test CA
        assert wait_until(lambda: untrusted.stats()["message"] is not None, timeout=15) is not None
        st = untrusted.stats()
        assert not st["connected"] and st["state"] == "disconnected"
        assert "certificate verify failed" in st["message"], st["message"]

        insecure = sink(insecure=True)
        assert wait_until(lambda: insecure.stats()["connected"], timeout=15) is not None, insecure.stats()
    finally:
        for s in sinks:
            s.close(timeout=1.0)
        sub.close()
        broker.stop()
