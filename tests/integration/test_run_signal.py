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
from tests.timing import OtherLoad, RunQueue, wait_exit_sampling, wait_until

# cores taken by other processes during the exit below which the machine counts as quiet
QUIET_CORES = 0.25


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_run_serves_and_stops_within_two_seconds(tmp_path, sig):
    """The exit is timed from the signal to the process's end. On a quiet machine that wall
    time is judged as it is; when other processes take the CPU (a shared 2-core box), the time
    the process's main thread (which runs the exit) spent runnable but waiting for a CPU is
    taken out first: a blocking join or a slow teardown still fails, a busy neighbour does not."""
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
        if not line:
            proc.wait(10)
            pytest.fail(f"main.py run exited ({proc.returncode}) before printing its URL: "
                        f"{proc.stderr.read()[-3000:]}")
        assert f"http://127.0.0.1:{port}/" in line, line
        base = f"http://127.0.0.1:{port}"

        def ready() -> bool:
            try:
                return requests.get(base + "/readyz", timeout=2).status_code == 200
            except requests.RequestException:
                return False
        assert wait_until(ready, 30, 0.2) is not None, "main.py run never became ready"
        streams = [requests.get(base + f"/stream/{c['name']}.mjpg", stream=True, timeout=10)
                   for c in cfg["cameras"]]
        got = [0] * len(streams)

        def drain(i, r):
            try:
                for chunk in r.iter_content(8192):
                    got[i] += len(chunk)
            except requests.RequestException:
                pass

        threads = [threading.Thread(target=drain, args=(i, r), daemon=True) for i, r in enumerate(streams)]
        for t in threads:
            t.start()
        assert wait_until(lambda: all(got), 15) is not None, f"streams deliver frames: {got}"
        rq = RunQueue(pid=proc.pid)
        load = OtherLoad(proc.pid)
        t0 = time.monotonic()
        os.kill(proc.pid, sig)
        rc = wait_exit_sampling(proc, 5.0, rq, load)
        took = time.monotonic() - t0
        assert rc is not None, "main.py run still running 5 s after the signal"
        assert rc == 0
        for t in threads:
            t.join(2)
            assert not t.is_alive(), "an open stream was left hanging"
        err = proc.stderr.read()
        assert "Traceback" not in err, err
        others, waited = load.cores(), rq.waited_s()
        judged = took if others < QUIET_CORES else took - waited
        print(f"\nexit {took:.2f} s; main thread waited {waited:.2f} s for a CPU; other processes "
              f"used {others:.2f} cores; judged {judged:.2f} s")
        assert judged < 2.0, (f"exit took {took:.2f} s (main thread waited {waited:.2f} s of it for a "
                              f"CPU, other processes used {others:.2f} cores)")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
