"""kill -9 of a whole `python main.py run` while events flow: every event id the HTTP API
returned before the kill (/api/events reads the database, so those are committed rows) is in
events.db afterwards, PRAGMA integrity_check is ok, and `main.py run` restarted on the same data
folder starts cleanly, still serves the old events and continues the ids above them.

(The store-level kill -9 test is tests/integration/test_store_kill9.py; this one is the whole
process: capture, pipeline, bus, store writer and web server killed together.)"""
from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
import yaml

from tests.fault.util import free_port, wait_until

pytestmark = [pytest.mark.fault,
              pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")]

ROOT = Path(__file__).resolve().parents[2]


def _config(tmp: Path, port: int) -> Path:
    cfg = {
        "server": {"host": "127.0.0.1", "port": port, "threads": 8},
        "paths": {"data": str(tmp / "data")},
        "logging": {"level": "WARNING"},
        "cameras": [{
            "name": "belt", "source": "synthetic:conveyor", "detector": "motion", "seed": 2,
            "synthetic": {"width": 480, "height": 270},
            "detector_params": {"warmup_frames": 20, "downscale": 2, "var_threshold": 36,
                                "merge_distance": 16},
            "lines": [{"name": "gate", "points": [[0.5, 0.05], [0.5, 0.95]], "normalized": True}],
        }],
        "tracker": {"min_hits": 2},
    }
    p = tmp / "vigil.yaml"
    p.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return p


class Run:
    """One `python main.py run` process; stdout/stderr go to files (never a full pipe)."""

    def __init__(self, cfg: Path, port: int, tmp: Path, tag: str) -> None:
        self.base = f"http://127.0.0.1:{port}"
        self.out = open(tmp / f"{tag}.out", "w+")
        self.err = open(tmp / f"{tag}.err", "w+")
        self.proc = subprocess.Popen([sys.executable, "main.py", "run", "--config", str(cfg),
                                      "--port", str(port)], cwd=ROOT, stdout=self.out,
                                     stderr=self.err, stdin=subprocess.DEVNULL)

    def ready(self, timeout: float = 40.0) -> float:
        def up() -> bool:
            assert self.proc.poll() is None, f"main.py run exited {self.proc.returncode}: {self.stderr()}"
            try:
                return requests.get(self.base + "/readyz", timeout=2).status_code == 200
            except requests.RequestException:
                return False
        took = wait_until(up, timeout, 0.1)
        assert took is not None, f"main.py run not ready after {timeout} s: {self.stderr()}"
        return took

    def events(self) -> list[dict]:
        r = requests.get(self.base + "/api/events?limit=1000", timeout=5)
        assert r.status_code == 200, r.text[:300]
        return r.json()["events"]

    def stderr(self) -> str:
        self.err.flush()
        self.err.seek(0)
        return self.err.read()[-3000:]

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.out.close()
        self.err.close()


def _db(path: Path) -> tuple[list[tuple], set[int]]:
    con = sqlite3.connect(path)  # a plain connection replays the WAL the killed process left
    try:
        check = con.execute("PRAGMA integrity_check").fetchall()
        ids = {r[0] for r in con.execute("SELECT id FROM events")}
    finally:
        con.close()
    return check, ids


def test_kill9_main_run_keeps_acknowledged_events(tmp_path, fault_report):
    port = free_port()
    cfg = _config(tmp_path, port)
    db = tmp_path / "data" / "events.sqlite3"

    run = Run(cfg, port, tmp_path, "first")
    seen: dict[int, dict] = {}
    try:
        run.ready()
        # watch events arrive through the API; kill right after a poll that brought new ones,
        # so the store is busy writing when the process dies
        deadline = time.monotonic() + 25
        polls_with_new = 0
        while time.monotonic() < deadline:
            new = [e for e in run.events() if e["id"] not in seen]
            for e in new:
                seen[e["id"]] = e
            polls_with_new += bool(new)
            if len(seen) >= 40 and polls_with_new >= 5 and new:
                break
            time.sleep(0.15)
        kinds = {e["kind"] for e in seen.values()}
        assert len(seen) >= 10 and kinds - {"camera_state"}, f"events did not flow: {len(seen)} {kinds}"
        os.kill(run.proc.pid, signal.SIGKILL)
        run.proc.wait(10)
        assert run.proc.returncode == -signal.SIGKILL
    finally:
        run.close()

    check, stored = _db(db)
    assert check == [("ok",)], check
    missing = set(seen) - stored
    assert not missing, f"{len(missing)} ids returned by /api/events before the kill are gone: {sorted(missing)[:10]}"
    max_before = max(stored)

    # restart on the same data folder: clean start, old events served, ids continue
    port2 = free_port()
    run2 = Run(cfg, port2, tmp_path, "second")
    try:
        t_ready = run2.ready()
        old = {e["id"] for e in requests.get(run2.base + "/api/events?limit=1000&since=0",
                                            timeout=5).json()["events"]}
        assert old & set(seen), "the old events are not served after the restart"
        fresh: list[int] = []
        got = wait_until(lambda: fresh.extend(e["id"] for e in run2.events() if e["id"] > max_before)
                         or fresh, 20, 0.2)
        assert got is not None, f"no new event after the restart: {run2.stderr()}"
        t0 = time.monotonic()
        run2.proc.send_signal(signal.SIGTERM)
        rc = run2.proc.wait(15)
        stop_s = time.monotonic() - t0
        err = run2.stderr()
    finally:
        run2.close()
    assert rc == 0, f"exit {rc} after SIGTERM: {err}"
    assert "Traceback" not in err and " ERROR " not in err, err
    check2, stored2 = _db(db)
    assert check2 == [("ok",)], check2
    after = sorted(stored2 - stored)
    assert after and after[0] > max_before, (after[:5], max_before)
    assert set(fresh) <= stored2
    fault_report.update({
        "faults_injected": 1,
        "recoveries": 1,
        "inputs_tried": len(seen),
        "events_seen_before_kill": len(seen),
        "events_stored_at_kill": len(stored),
        "kinds": sorted(kinds),
        "lost_acknowledged": len(missing),
        "restart_ready_s": round(t_ready, 2),
        "events_after_restart": len(after),
        "first_id_after_restart": after[0],
        "max_id_before": max_before,
        "sigterm_exit_s": round(stop_s, 2),
    })
