"""A real MQTT broker for tests: Debian's mosquitto on a free loopback port, with its own
config file, password file and persistence folder in a temporary directory, plus a real paho
subscriber that records what it receives.

    broker = Mosquitto(tmp_path).start()          # anonymous
    broker = Mosquitto(tmp_path, users={"vigil": "secret"}).start()   # allow_anonymous false
    broker.kill()      # SIGKILL, like a crashed broker
    broker.restart()   # same port; subscriptions of persistent sessions survive
    certs = BrokerCerts(tmp_path / "certs")      # openssl: a test CA and a 127.0.0.1 certificate
    broker = Mosquitto(tmp_path, tls=certs).start()                   # TLS listener
    broker.stop()

`mosquitto_available()` says whether /usr/sbin/mosquitto and mosquitto_passwd are there
(.ci/run installs the `mosquitto` package; tests use conftest.require with it).
"""
from __future__ import annotations

import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

MOSQUITTO = os.environ.get("VIGIL_MOSQUITTO", "/usr/sbin/mosquitto")
MOSQUITTO_PASSWD = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"


def mosquitto_available() -> tuple[bool, str]:
    for exe in (MOSQUITTO, MOSQUITTO_PASSWD):
        if not (Path(exe).is_file() and os.access(exe, os.X_OK)):
            return False, f"{exe} not found (Debian package mosquitto)"
    return True, ""


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Mosquitto:
    def __init__(self, folder: Path, users: dict[str, str] | None = None, port: int | None = None,
                 tls: "BrokerCerts | None" = None) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.users = dict(users or {})
        self.proc: subprocess.Popen | None = None
        self.log_path = self.folder / "mosquitto.log"
        self.conf = self.folder / "mosquitto.conf"
        # run as root, mosquitto would switch to user "mosquitto", who cannot write this folder
        lines = [f"user {pwd.getpwuid(os.getuid()).pw_name}", f"listener {self.port} 127.0.0.1",
                 f"allow_anonymous {'false' if self.users else 'true'}",
                 "persistence true", f"persistence_location {self.folder}/",
                 # save at every subscription change: a persistent session outlives a SIGKILL
                 "autosave_interval 1", "autosave_on_changes true",
                 "log_dest stderr", "log_type error", "log_type warning", "log_type notice",
                 "log_type information", "connection_messages true"]
        if tls is not None:  # TLS on this listener (the options follow its `listener` line)
            lines[2:2] = [f"cafile {tls.ca}", f"certfile {tls.cert}", f"keyfile {tls.key}"]
        if self.users:
            pw = self.folder / "passwd"
            pw.write_text("")
            for user, secret in self.users.items():
                subprocess.run([MOSQUITTO_PASSWD, "-b", str(pw), user, secret], check=True,
                               capture_output=True, timeout=30)
            os.chmod(pw, 0o600)
            lines.append(f"password_file {pw}")
        self.conf.write_text("\n".join(lines) + "\n")

    def start(self, timeout: float = 10.0) -> "Mosquitto":
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([MOSQUITTO, "-c", str(self.conf)], stdout=log, stderr=log,
                                     stdin=subprocess.DEVNULL)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mosquitto exited with {self.proc.returncode}: {self.log()[-2000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"mosquitto did not listen on {self.port} within {timeout} s: {self.log()[-2000:]}")

    def kill(self) -> None:
        """SIGKILL: no goodbye to anyone (clients see the connection drop)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def restart(self) -> "Mosquitto":
        self.kill()
        return self.start()

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""


class BrokerCerts:
    """A throwaway CA and a server certificate for 127.0.0.1 / localhost, made by `openssl`."""

    def __init__(self, folder: Path) -> None:
        f = Path(folder)
        f.mkdir(parents=True, exist_ok=True)
        self.ca, self.cert, self.key = f / "ca.pem", f / "server.pem", f / "server.key"
        ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
        run = lambda *a: subprocess.run(["openssl", *a], check=True, capture_output=True, timeout=60)  # noqa: E731
        run("req", "-x509", *ec, "-keyout", str(f / "ca.key"), "-out", str(self.ca), "-days", "2",
            "-subj", "/CN=vigil test CA")
        run("req", *ec, "-keyout", str(self.key), "-out", str(f / "server.csr"), "-subj", "/CN=localhost")
        (f / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
        run("x509", "-req", "-in", str(f / "server.csr"), "-CA", str(self.ca), "-CAkey", str(f / "ca.key"),
            "-CAcreateserial", "-out", str(self.cert), "-days", "2", "-extfile", str(f / "san.ext"))

    @staticmethod
    def available() -> tuple[bool, str]:
        return (shutil.which("openssl") is not None, "openssl not found (to make test certificates)")


class Subscriber:
    """A real paho client subscribed to `topics` (QoS 1, persistent session, so messages
    queued for it while the broker restarts are delivered); records every message."""

    def __init__(self, port: int, topics: list[str], client_id: str = "vigil-test-subscriber",
                 username: str | None = None, password: str | None = None,
                 ca_file: str | None = None) -> None:
        self.topics = topics
        self.messages: list[tuple[str, bytes, bool]] = []  # (topic, payload, retain)
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        c = paho.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=client_id,
                        protocol=paho.MQTTv311, clean_session=False)
        if username:
            c.username_pw_set(username, password)
        if ca_file:
            c.tls_set(ca_certs=str(ca_file))
        c.reconnect_delay_set(0.1, 0.5)
        c.on_connect = self._on_connect
        c.on_message = self._on_message
        c.on_subscribe = lambda *a: self._subscribed.set()
        self.client = c
        c.connect("127.0.0.1", port, keepalive=10)
        c.loop_start()
        if not self._subscribed.wait(10):
            raise RuntimeError("test subscriber: no SUBACK within 10 s")

    def _on_connect(self, client: Any, userdata: Any, flags: Any, rc: Any, props: Any = None) -> None:
        if not rc.is_failure:
            client.subscribe([(t, 1) for t in self.topics])

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        with self._lock:
            self.messages.append((msg.topic, bytes(msg.payload), bool(msg.retain)))

    def snapshot(self) -> list[tuple[str, bytes, bool]]:
        with self._lock:
            return list(self.messages)

    def last(self, topic: str) -> bytes | None:
        for t, p, _ in reversed(self.snapshot()):
            if t == topic:
                return p
        return None

    def events(self, topic: str) -> list[dict[str, Any]]:
        return [json.loads(p) for t, p, _ in self.snapshot() if t == topic]

    def wait(self, predicate, timeout: float = 20.0, interval: float = 0.05) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return True
            time.sleep(interval)
        return bool(predicate())

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
