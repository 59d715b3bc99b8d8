"""kill -9 while the store writes: every acknowledged id survives and the db is intact."""
from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from core.types import Event, EventKind
from events.store import EventStore

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from store_writer import snapshot_for  # noqa: E402

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")


def _read_acks(proc: subprocess.Popen, target: int, timeout: float) -> list[int]:
    acks: list[int] = []
    deadline = time.monotonic() + timeout
    while len(acks) < target:
        line = proc.stdout.readline()
        if not line:
            raise AssertionError(f"writer exited early (rc={proc.poll()}): {proc.stderr.read()}")
        acks.append(int(line))
        assert time.monotonic() < deadline, "writer too slow"
    return acks


def test_kill9_keeps_every_acknowledged_event(tmp_path):
    db, snaps = tmp_path / "events.sqlite3", tmp_path / "snaps"
    rng = random.Random(1234)
    all_acked: list[int] = []
    for round_ in range(3):
        proc = subprocess.Popen([sys.executable, str(HERE / "store_writer.py"), str(db), str(snaps),
                                 str(round_)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, bufsize=1)
        try:
            acks = _read_acks(proc, rng.randint(250, 600), timeout=60)
            os.kill(proc.pid, signal.SIGKILL)  # mid-write: it never stops writing on its own
            rest = proc.stdout.read()  # acks printed before the kill are acks too
            proc.wait(timeout=10)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            proc.stdout.close()
            proc.stderr.close()
        assert proc.returncode == -signal.SIGKILL
        acks += [int(x) for x in rest.split()]
        assert acks == sorted(set(acks)), "acks must be unique and increasing"
        if all_acked:
            assert acks[0] > all_acked[-1], "ids continue after the previous run"
        all_acked += acks

        con = sqlite3.connect(db)  # a plain connection replays the WAL
        try:
            assert con.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
            stored = {r[0] for r in con.execute("SELECT id FROM events")}
            snap_rows = dict(con.execute("SELECT id, snapshot FROM events WHERE snapshot IS NOT NULL"))
        finally:
            con.close()
        missing = set(all_acked) - stored
        assert not missing, f"round {round_}: {len(missing)} acknowledged ids lost, e.g. {sorted(missing)[:5]}"
        for i in (a for a in all_acked if a % 5 == 0):
            assert (snaps / snap_rows[i]).read_bytes() == snapshot_for(i)

    with EventStore(db, snapshots_dir=snaps) as s:  # and the store itself reopens cleanly
        assert s.max_id() >= all_acked[-1]
        assert s.count() >= len(all_acked)
        assert s.put(Event(EventKind.CAMERA_STATE, "x")) > all_acked[-1]
