"""`main.py run` as a user runs it: prints its URL, serves, and on SIGTERM / Ctrl-C (SIGINT)
closes open streams and exits within 2 s."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import pytest
import requests
import yaml

from tests.conftest import ROOT, SHARED_DATA
from tests.integration.webutil import free_port


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_run_serves_and_stops_within_two_seconds(tmp_path, sig):
    port = free_port()
    cfg = {"server": {"port": port}, "paths": {"data": str(tmp_path / "data")},
           "cameras": [{"name": "a", "source": "synthetic:crossing", "detector": "none"},
                       {"name": "b", "source": "synthetic:conveyor", "detector": "motion"}]}
    clip = SHARED_DATA / "video" / "intel" / "car-detection.mp4"  # H.264: FFmpeg frame threads
    if clip.is_file():  # a PyAV-decoded file too: closing it at shutdown once deadlocked
        cfg["cameras"].append({"name": "c", "source": str(clip), "backend": "pyav", "detector": "none"})
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    proc = subprocess.Popen([sys.executable, str(ROOT / "main.py"), "run", "--config", str(path)],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert f"http://127.0.0.1:{port}/" in line, line
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                if requests.get(base + "/readyz", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            time.sleep(0.2)
        got = []
        streams = [requests.get(base + f"/stream/{c['name']}.mjpg", stream=True, timeout=10)
                   for c in cfg["cameras"]]

        def drain(r):
            try:
                for chunk in r.iter_content(8192):
                    got.append(len(chunk))
            except requests.RequestException:
                pass

        threads = [threading.Thread(target=drain, args=(r,), daemon=True) for r in streams]
        for t in threads:
            t.start()
        time.sleep(1.0)
        assert got, "streams deliver frames"
        t0 = time.monotonic()
        os.kill(proc.pid, sig)
        rc = proc.wait(timeout=5)
        took = time.monotonic() - t0
        assert took < 2.0, f"exit took {took:.2f} s"
        assert rc == 0
        for t in threads:
            t.join(2)
            assert not t.is_alive(), "an open stream was left hanging"
        err = proc.stderr.read()
        assert "Traceback" not in err, err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
